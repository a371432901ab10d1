package bolt

import (
	"fmt"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// An account record is everything the store keeps about one subject
// besides its customer and comps, in one key: what Clerk said of a user
// and when the gateway saw them, the subject's Stripe customer, and what
// the listing index holds of it (index.go):
//
//	accounts  Clerk ID (user_…, org_…)  → 0x01, flags, [email, first seen, last seen, organisations],
//	                                      [customer ID], [rank, statuses (dict), plans (dict), [listing email]]
//
// Flags say which parts follow. The listing part is written with the index
// keys it makes, in the same transaction (putAccount), so the record always
// names the keys it has: a write reads the old ones from it, and no other
// record repeats the email or times the keys are made of. The listing's
// email is stored only when it is not the user's own, lower-cased.
//
// Schemas 1 and 2 kept these in three buckets: users (JSON), subjects
// (subject → customer ID) and listed (JSON); Open migrates them.
const (
	bucketAccounts = "accounts"
	accountVersion = 1
)

const (
	acctUser      = 1 << iota // a recorded Clerk user
	acctCustomer              // a linked Stripe customer
	acctListed                // in the listing index
	acctListEmail             // the listing's email is not the user's
	acctOrgs                  // the user belongs to organisations
)

// account is an account record: what it holds, and how a write changes
// it, are the domain's (proxy.AccountRecord); its encoding is this file's.
type account = proxy.AccountRecord

// listing is what the index holds of a listed subject (proxy.ListingOf).
type listing = proxy.Listing

func encodeAccount(tx *bbolt.Tx, a *account) ([]byte, error) {
	var listEmail bool
	if a.List != nil {
		listEmail = a.List.Email != strings.ToLower(a.Email)
	}
	e := enc{b: make([]byte, 0, 64+len(a.Email))}
	e.byte1(accountVersion)
	e.uvarint(bit(a.User, acctUser) | bit(a.Customer != "", acctCustomer) | bit(a.List != nil, acctListed) |
		bit(listEmail, acctListEmail) | bit(len(a.OrgIDs) > 0, acctOrgs))
	if a.User {
		e.str(a.Email)
		e.time(a.FirstSeen)
		e.time(a.LastSeen)
		if len(a.OrgIDs) > 0 {
			e.uvarint(uint64(len(a.OrgIDs)))
			for _, o := range a.OrgIDs {
				e.str(o)
			}
		}
	}
	if a.Customer != "" {
		e.str(a.Customer)
	}
	if l := a.List; l != nil {
		e.uvarint(uint64(l.Rank))
		for _, list := range [][]string{l.Statuses, l.Plans} {
			e.uvarint(uint64(len(list)))
			for _, s := range list {
				e.dict(tx, s)
			}
		}
		if listEmail {
			e.str(l.Email)
		}
	}
	return e.b, e.err
}

func decodeAccount(tx *bbolt.Tx, data []byte) (account, error) {
	d := dec{b: data}
	if v := d.byte1(); v != accountVersion {
		if d.err != nil {
			return account{}, d.err
		}
		return account{}, fmt.Errorf("account record version %d, this tollgate reads %d: %w", v, accountVersion, ErrUnsupportedVersion)
	}
	var a account
	flags := d.uvarint()
	if flags&acctUser != 0 {
		a.User = true
		a.Email = d.str()
		a.FirstSeen = d.time()
		a.LastSeen = d.time()
		if flags&acctOrgs != 0 {
			n := d.uvarint()
			if n > uint64(len(d.b)) {
				return account{}, errCorrupt
			}
			a.OrgIDs = make([]string, n)
			for i := range a.OrgIDs {
				a.OrgIDs[i] = d.str()
			}
		}
	}
	if flags&acctCustomer != 0 {
		a.Customer = d.str()
	}
	if flags&acctListed != 0 {
		l := &listing{Rank: int(d.uvarint())}
		for _, list := range []*[]string{&l.Statuses, &l.Plans} {
			n := d.uvarint()
			if n > uint64(len(d.b)) {
				return account{}, errCorrupt
			}
			for range n {
				*list = append(*list, d.dict(tx))
			}
		}
		l.Email = strings.ToLower(a.Email)
		if flags&acctListEmail != 0 {
			l.Email = d.str()
		}
		a.List = l
	}
	return a, d.end()
}

// accountCustomer reads only the customer a subject's record links ("":
// none), allocating nothing else: the request path's read.
func accountCustomer(tx *bbolt.Tx, id string) (string, error) {
	b := optionalBucket(tx, bucketAccounts)
	if b == nil {
		return "", nil
	}
	data := b.Get([]byte(id))
	if data == nil {
		return "", nil
	}
	d := dec{b: data}
	if v := d.byte1(); v != accountVersion {
		a, err := decodeAccount(tx, data) // the error it names
		return a.Customer, fmt.Errorf("account %s: %w", id, err)
	}
	flags := d.uvarint()
	if flags&acctCustomer == 0 {
		return "", d.err
	}
	if flags&acctUser != 0 {
		d.raw()
		d.time()
		d.time()
		if flags&acctOrgs != 0 {
			for n := d.uvarint(); n > 0 && d.err == nil; n-- {
				d.raw()
			}
		}
	}
	customer := d.str()
	if d.err != nil {
		return "", fmt.Errorf("account %s: %w", id, d.err)
	}
	return customer, nil
}

// getAccount reads a subject's record; ok is false when it has none.
func getAccount(tx *bbolt.Tx, id string) (account, bool, error) {
	b := optionalBucket(tx, bucketAccounts)
	if b == nil {
		return account{}, false, nil
	}
	data := b.Get([]byte(id))
	if data == nil {
		return account{}, false, nil
	}
	a, err := decodeAccount(tx, data)
	if err != nil {
		return account{}, false, fmt.Errorf("account %s: %w", id, err)
	}
	return a, true, nil
}

// putAccount replaces the record prev (nil: none) of subject id with next,
// moving the index keys and counters that differ, and deletes the record
// when next keeps nothing.
func putAccount(tx *bbolt.Tx, id string, prev, next *account) (err error) {
	// The user's customer may take its email from this record: when that
	// email changes or goes, the customer is written again, with its own.
	var dependent *customerRecord
	if prev != nil && prev.User && prev.Customer != "" && (!next.User || next.Email != prev.Email) {
		rec, ok, err := getCustomerWith(tx, prev.Customer, id, prev)
		if err != nil {
			return fmt.Errorf("account %s: %w", id, err)
		}
		if ok && rec.Subject == id {
			dependent = &rec
		}
	}
	if dependent != nil {
		defer func() {
			if err == nil {
				err = writeCustomer(tx, prev.Customer, dependent, next.Email)
			}
		}()
	}
	if err := reindexKeys(tx, id, prev, next); err != nil {
		return fmt.Errorf("account %s: %w", id, err)
	}
	b, err := createdBucket(tx, bucketAccounts)
	if err != nil {
		return err
	}
	if next.Empty() {
		if prev == nil {
			return nil
		}
		return b.Delete([]byte(id))
	}
	data, err := encodeAccount(tx, next)
	if err == nil {
		err = put(b, []byte(id), data, strings.IndexByte(id, '_')+1) // users and organisations
	}
	if err != nil {
		return fmt.Errorf("account %s: %w", id, err)
	}
	return nil
}

// editAccount applies edit to a copy of subject id's record (an empty one
// when it has none) and stores the result.
func editAccount(tx *bbolt.Tx, id string, edit func(*account)) error {
	prev, ok, err := getAccount(tx, id)
	if err != nil {
		return err
	}
	next := prev.Clone()
	edit(&next)
	if !ok {
		return putAccount(tx, id, nil, &next)
	}
	return putAccount(tx, id, &prev, &next)
}

// accountView reads what the store records of subject, whose record is a:
// the user, the linked customer and its subscriptions, every comp
// (proxy.AccountRecord.View says what counts). ok is false when it records
// nothing (no user, no customer that names it back, no comp).
func accountView(tx *bbolt.Tx, subject proxy.Subject, a *account) (proxy.Account, bool, error) {
	var cust *proxy.CustomerRecord
	if a.Customer != "" {
		rec, ok, err := getCustomerWith(tx, a.Customer, subject.ID, a)
		if err != nil {
			return proxy.Account{}, false, err
		}
		if ok {
			cust = &rec.CustomerRecord
		}
	}
	comps, err := compsOf(tx, subject)
	if err != nil {
		return proxy.Account{}, false, err
	}
	pa, ok := a.View(subject, cust, comps)
	return pa, ok, nil
}

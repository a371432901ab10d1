package bolt

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// customerRecord is a customers bucket's value, as the store works with
// it. On disk it is version 3, binary (encodeCustomer):
//
//	0x02, flags (had trial 1, deleted 2, the subject's email 4), subject (a
//	bare Clerk ID), [email], synced at, the number of subscriptions, each
//	subscription
//
// and a subscription is: flags (cancel at period end 1, comp 2, a
// customer ID other than the record's 4, a synced-at other than the
// record's 8), ID, [customer ID], status (dict), the number of prices and
// each (dict), plan (dict), current period end, trial end, past due since,
// [synced at], paused collection (dict), collection resumes at, amount,
// currency (dict), interval (dict), interval count, created, ended at,
// billing cycle anchor.
//
// The email is left out when it is the Clerk email of the user the record
// names, as it mostly is (Checkout gives Stripe the user's): the record
// then reads it from the user's account record, and a change of that
// email writes the customer's own first (putAccount).
//
// Version 2 was the same without the billing cycle anchor, version 1 JSON
// (customerRecordV1); both are read still.
//
// What the record holds, and how a commit changes it, are the domain's
// (proxy.CustomerRecord); its encoding is this file's.
type customerRecord struct {
	proxy.CustomerRecord
	sharedEmail bool // decoded: Email is the subject's, not read yet
}

const customerVersion = 3

const (
	custHadTrial = 1 << iota
	custDeleted
	custSubjectEmail
)

const (
	subCancelAtPeriodEnd = 1 << iota
	subComp
	subOwnCustomer
	subOwnSyncedAt
)

// encodeCustomer writes rec, whose key is customerID; subjectEmail is the
// Clerk email of the user rec.Subject names ("" if none).
func encodeCustomer(tx *bbolt.Tx, customerID string, rec *customerRecord, subjectEmail string) ([]byte, error) {
	shared := rec.Email != "" && rec.Subject != "" && rec.Email == subjectEmail
	e := enc{b: make([]byte, 0, 64+96*len(rec.Subscriptions))}
	e.byte1(customerVersion)
	e.uvarint(bit(rec.HadTrial, custHadTrial) | bit(rec.Deleted, custDeleted) | bit(shared, custSubjectEmail))
	e.str(rec.Subject)
	if !shared {
		e.str(rec.Email)
	}
	e.time(rec.SyncedAt)
	e.uvarint(uint64(len(rec.Subscriptions)))
	for i := range rec.Subscriptions {
		s := &rec.Subscriptions[i]
		e.uvarint(bit(s.CancelAtPeriodEnd, subCancelAtPeriodEnd) | bit(s.Comp, subComp) |
			bit(s.CustomerID != customerID, subOwnCustomer) | bit(!s.SyncedAt.Equal(rec.SyncedAt), subOwnSyncedAt))
		e.str(s.ID)
		if s.CustomerID != customerID {
			e.str(s.CustomerID)
		}
		e.dict(tx, string(s.Status))
		e.uvarint(uint64(len(s.PriceIDs)))
		for _, p := range s.PriceIDs {
			e.dict(tx, p)
		}
		e.dict(tx, s.Plan)
		e.time(s.CurrentPeriodEnd)
		e.time(s.TrialEnd)
		e.time(s.PastDueSince)
		if !s.SyncedAt.Equal(rec.SyncedAt) {
			e.time(s.SyncedAt)
		}
		e.dict(tx, s.PausedCollection)
		e.time(s.CollectionResumesAt)
		e.varint(s.Amount)
		e.dict(tx, s.Currency)
		e.dict(tx, s.Interval)
		e.varint(s.IntervalCount)
		e.time(s.Created)
		e.time(s.EndedAt)
		e.time(s.BillingCycleAnchor)
	}
	if e.err != nil {
		return nil, e.err
	}
	return e.b, nil
}

// decodeCustomer reads a customer record of any version. The strings the
// dictionary holds are shared; the rest are copied. An email the subject's
// record holds is left to resolve.
func decodeCustomer(tx *bbolt.Tx, customerID string, data []byte) (customerRecord, error) {
	if len(data) > 0 && data[0] == '{' {
		var v1 customerRecordV1
		if err := decodeRecord(data, &v1); err != nil {
			return customerRecord{}, err
		}
		return v1.current(), nil
	}
	d := dec{b: data}
	v := d.byte1()
	if v != customerVersion && v != 2 {
		return customerRecord{}, fmt.Errorf("customer record version %d, this tollgate reads %d: %w", v, customerVersion, ErrUnsupportedVersion)
	}
	var rec customerRecord
	flags := d.uvarint()
	rec.HadTrial, rec.Deleted = flags&custHadTrial != 0, flags&custDeleted != 0
	rec.Subject = d.str()
	if rec.sharedEmail = flags&custSubjectEmail != 0; !rec.sharedEmail {
		rec.Email = d.str()
	}
	rec.SyncedAt = d.time()
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return customerRecord{}, errCorrupt
	}
	if n > 0 {
		rec.Subscriptions = make([]proxy.Subscription, n)
	}
	for i := range rec.Subscriptions {
		s := &rec.Subscriptions[i]
		f := d.uvarint()
		s.CancelAtPeriodEnd, s.Comp = f&subCancelAtPeriodEnd != 0, f&subComp != 0
		s.ID = d.str()
		s.CustomerID = customerID
		if f&subOwnCustomer != 0 {
			s.CustomerID = d.str()
		}
		s.Status = proxy.SubscriptionStatus(d.dict(tx))
		if np := d.uvarint(); np > 0 && np <= uint64(len(d.b)) {
			s.PriceIDs = make([]string, np)
			for j := range s.PriceIDs {
				s.PriceIDs[j] = d.dict(tx)
			}
		} else if np > 0 {
			d.fail()
		}
		s.Plan = d.dict(tx)
		s.CurrentPeriodEnd = d.time()
		s.TrialEnd = d.time()
		s.PastDueSince = d.time()
		s.SyncedAt = rec.SyncedAt
		if f&subOwnSyncedAt != 0 {
			s.SyncedAt = d.time()
		}
		s.PausedCollection = d.dict(tx)
		s.CollectionResumesAt = d.time()
		s.Amount = d.varint()
		s.Currency = d.dict(tx)
		s.Interval = d.dict(tx)
		s.IntervalCount = d.varint()
		s.Created = d.time()
		s.EndedAt = d.time()
		if v >= 3 {
			s.BillingCycleAnchor = d.time()
		}
	}
	if err := d.end(); err != nil {
		return customerRecord{}, err
	}
	return rec, nil
}

// getCustomer reads a customer record; ok is false when there is none.
func getCustomer(tx *bbolt.Tx, customerID string) (rec customerRecord, ok bool, err error) {
	return getCustomerWith(tx, customerID, "", nil)
}

// getCustomerWith is getCustomer given the account record a of subject
// subjectID (nil: none), which the customer's email may come from.
func getCustomerWith(tx *bbolt.Tx, customerID, subjectID string, a *account) (rec customerRecord, ok bool, err error) {
	if rec, ok, err = readCustomer(tx, customerID); !ok || err != nil {
		return rec, ok, err
	}
	if rec.sharedEmail {
		if a == nil || rec.Subject != subjectID {
			owner, _, err := getAccount(tx, rec.Subject)
			if err != nil {
				return customerRecord{}, false, fmt.Errorf("customer %s: %w", customerID, err)
			}
			a = &owner
		}
		rec.Email, rec.sharedEmail = a.Email, false
	}
	return rec, true, nil
}

// readCustomer reads a customer record, its email left unread when it is
// its user's (sharedEmail): for what needs no email.
func readCustomer(tx *bbolt.Tx, customerID string) (rec customerRecord, ok bool, err error) {
	b, err := bucket(tx, bucketCustomers)
	if err != nil {
		return rec, false, err
	}
	data := b.Get([]byte(customerID))
	if data == nil {
		return rec, false, nil
	}
	if rec, err = decodeCustomer(tx, customerID, data); err != nil {
		return customerRecord{}, false, fmt.Errorf("customer %s: %w", customerID, err)
	}
	return rec, true, nil
}

// putCustomer stores rec, reading the email of the user it names now.
func putCustomer(tx *bbolt.Tx, customerID string, rec *customerRecord) error {
	var email string
	if rec.Subject != "" {
		a, _, err := getAccount(tx, rec.Subject)
		if err != nil {
			return err
		}
		email = a.Email
	}
	return writeCustomer(tx, customerID, rec, email)
}

// writeCustomer stores rec, the user it names having subjectEmail.
func writeCustomer(tx *bbolt.Tx, customerID string, rec *customerRecord, subjectEmail string) error {
	b, err := bucket(tx, bucketCustomers)
	if err != nil {
		return err
	}
	data, err := encodeCustomer(tx, customerID, rec, subjectEmail)
	if err == nil && b.Get([]byte(customerID)) == nil {
		err = countIn(tx, tagCustomers, 1)
	}
	if err == nil {
		err = put(b, []byte(customerID), data, 0)
	}
	if err != nil {
		return fmt.Errorf("customer %s: %w", customerID, err)
	}
	return nil
}

// customerRecordV1 is the JSON record of schemas 1 and 2.
type customerRecordV1 struct {
	V             int                  `json:"v"`
	Subject       string               `json:"subject,omitempty"` // "user:user_…" / "org:org_…"
	Email         string               `json:"email,omitempty"`
	Subscriptions []subscriptionRecord `json:"subscriptions,omitempty"`
	HadTrial      bool                 `json:"had_trial,omitempty"`
	Deleted       bool                 `json:"deleted,omitempty"`
	SyncedAt      time.Time            `json:"synced_at,omitzero"`
}

func (r *customerRecordV1) version() int { return r.V }

func (r *customerRecordV1) current() customerRecord {
	_, id, _ := strings.Cut(r.Subject, ":")
	return customerRecord{CustomerRecord: proxy.CustomerRecord{Subject: id, Email: r.Email, Subscriptions: fromRecords(r.Subscriptions),
		HadTrial: r.HadTrial, Deleted: r.Deleted, SyncedAt: r.SyncedAt}}
}

// subscriptionRecord is a subscription in a version 1 customer record.
type subscriptionRecord struct {
	ID                string    `json:"id"`
	CustomerID        string    `json:"customer_id,omitempty"`
	Status            string    `json:"status"`
	PriceIDs          []string  `json:"price_ids,omitempty"`
	Plan              string    `json:"plan,omitempty"`
	CurrentPeriodEnd  time.Time `json:"current_period_end,omitzero"`
	TrialEnd          time.Time `json:"trial_end,omitzero"`
	CancelAtPeriodEnd bool      `json:"cancel_at_period_end,omitempty"`
	PastDueSince      time.Time `json:"past_due_since,omitzero"`
	SyncedAt          time.Time `json:"synced_at,omitzero"`
	Comp              bool      `json:"comp,omitempty"`
	PausedCollection  string    `json:"paused_collection,omitempty"`
	CollectionResumes time.Time `json:"collection_resumes_at,omitzero"`
	Amount            int64     `json:"amount,omitempty"`
	Currency          string    `json:"currency,omitempty"`
	Interval          string    `json:"interval,omitempty"`
	IntervalCount     int64     `json:"interval_count,omitempty"`
	Created           time.Time `json:"created,omitzero"`
	EndedAt           time.Time `json:"ended_at,omitzero"`
}

func fromRecords(recs []subscriptionRecord) []proxy.Subscription {
	if len(recs) == 0 {
		return nil
	}
	out := make([]proxy.Subscription, len(recs))
	for i, r := range recs {
		out[i] = proxy.Subscription{
			ID:                  r.ID,
			CustomerID:          r.CustomerID,
			Status:              proxy.SubscriptionStatus(r.Status),
			PriceIDs:            slices.Clone(r.PriceIDs),
			Plan:                r.Plan,
			CurrentPeriodEnd:    r.CurrentPeriodEnd,
			TrialEnd:            r.TrialEnd,
			CancelAtPeriodEnd:   r.CancelAtPeriodEnd,
			PastDueSince:        r.PastDueSince,
			SyncedAt:            r.SyncedAt,
			Comp:                r.Comp,
			PausedCollection:    r.PausedCollection,
			CollectionResumesAt: r.CollectionResumes,
			Amount:              r.Amount,
			Currency:            r.Currency,
			Interval:            r.Interval,
			IntervalCount:       r.IntervalCount,
			Created:             r.Created,
			EndedAt:             r.EndedAt,
		}
	}
	return out
}

package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// A store of schema 1 or 2 (JSON records; users, subjects and the listing
// in buckets of their own) is migrated by Open into a new file beside it,
// PATH.migrating, which then replaces it: the old file is never changed,
// so a migration cut short (a crash, a full disk) leaves it as it was and
// the next Open starts over; and the new file holds no page the old
// format freed. Every step reads the old store in key order and writes a
// few thousand records per transaction, so memory stays that of one
// batch however large the store: the disk needs room for both files.
//
// The steps: every bucket the format did not change, as it is (events,
// cursors, organisations, comps, audit, revocations, and any this
// tollgate does not know); customers and history re-encoded; the users',
// subjects' and comp holders' account records, each with its listing and
// index keys; the dashboard's counters, summed on the way.

// migrateBatch is how many records one transaction of a migration writes:
// a transaction holds every page it changes in memory until it commits,
// and a subject's index keys land on pages all over their lists.
const migrateBatch = 2000

// converted are the old buckets a migration converts or derives anew; every
// other one is copied.
var converted = map[string]bool{bucketMeta: true, bucketCustomers: true, bucketHistory: true,
	"users": true, "subjects": true, "listed": true, "listing": true, "listing_counts": true, bucketStats: true}

type migration struct {
	old, db *bbolt.DB
	now     time.Time
	log     *slog.Logger
	facts   map[string][2]int64 // the dashboard's counters, summed from the customers
}

// migrate converts the store old (at path, of schema from) into a new
// file and moves it over path. It returns the new file, open; old is
// left open for the caller to close.
func migrate(old *bbolt.DB, path string, from uint64, opts Options) (_ *bbolt.DB, err error) {
	start := time.Now()
	tmp := path + ".migrating"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// Nothing is synced until the whole file is, before it replaces the
	// old one.
	db, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: opts.Timeout, NoSync: true, NoGrowSync: true})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = db.Close()
			_ = os.Remove(tmp)
		}
	}()
	opts.Logger.Info("bolt: migrating the store to the current format", "path", path, "schema", from, "to", schemaVersion)
	m := &migration{old: old, db: db, now: opts.Now(), log: opts.Logger, facts: map[string][2]int64{}}
	for _, step := range []struct {
		name string
		run  func() error
	}{
		{"copy", m.copyUnchanged},
		{"customers", m.customers},
		{"history", m.history},
		{"accounts", m.accounts},
		{"events", func() error { return indexEvents(m.db, from, m.log) }},
		{"counters", m.finish},
	} {
		if err := step.run(); err != nil {
			return nil, fmt.Errorf("migrate %s: %w", step.name, err)
		}
	}
	db.NoSync, db.NoGrowSync = opts.NoSync, opts.NoSync
	if err := db.Sync(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil { // make the rename durable
		_ = d.Sync()
		_ = d.Close()
	}
	opts.Logger.Info("bolt: store migrated", "path", path, "took", time.Since(start).Round(time.Millisecond))
	// What the batches held is garbage now: give it back before serving.
	debug.FreeOSMemory()
	return db, nil
}

// each calls fn with the old bucket's keys in order, migrateBatch to a
// transaction of the new store, and logs its progress.
func (m *migration) each(name string, fn func(otx, tx *bbolt.Tx, k, v []byte) error) error {
	var after []byte
	n := 0
	for {
		more := false
		err := m.old.View(func(otx *bbolt.Tx) error {
			b := otx.Bucket([]byte(name))
			if b == nil {
				return nil
			}
			return m.db.Update(func(tx *bbolt.Tx) error {
				c := b.Cursor()
				k, v := c.First()
				if after != nil {
					k, v = seekFrom(c, after, true, true)
				}
				for i := 0; k != nil; k, v = c.Next() {
					if i == migrateBatch {
						more = true
						break
					}
					if err := fn(otx, tx, k, v); err != nil {
						return fmt.Errorf("%s %q: %w", name, k, err)
					}
					after, i, n = slices.Clone(k), i+1, n+1
				}
				return nil
			})
		})
		if err != nil || !more {
			return err
		}
		if n%(20*migrateBatch) == 0 {
			m.log.Info("bolt: migrating", "bucket", name, "done", n)
		}
	}
}

// copyUnchanged copies every bucket the format keeps, with its sequence.
func (m *migration) copyUnchanged() error {
	var names []string
	err := m.old.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			if !converted[string(name)] {
				names = append(names, string(name))
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, name := range names {
		err := m.each(name, func(_, tx *bbolt.Tx, k, v []byte) error {
			dst, err := createdBucket(tx, name)
			if err != nil {
				return err
			}
			if v != nil {
				return put(dst, k, v, 0)
			}
			return copyNested(m.old, name, k, dst)
		})
		if err != nil {
			return err
		}
		if err := m.copySequence(name, name); err != nil {
			return err
		}
	}
	return nil
}

// copyNested copies a bucket nested in an old top-level bucket, whole.
func copyNested(old *bbolt.DB, top string, name []byte, dst *bbolt.Bucket) error {
	return old.View(func(tx *bbolt.Tx) error {
		var cp func(src, dst *bbolt.Bucket) error
		cp = func(src, dst *bbolt.Bucket) error {
			if err := dst.SetSequence(src.Sequence()); err != nil {
				return err
			}
			return src.ForEach(func(k, v []byte) error {
				if v != nil {
					return dst.Put(k, v)
				}
				child, err := dst.CreateBucketIfNotExists(k)
				if err != nil {
					return err
				}
				return cp(src.Bucket(k), child)
			})
		}
		child, err := dst.CreateBucketIfNotExists(name)
		if err != nil {
			return err
		}
		return cp(tx.Bucket([]byte(top)).Bucket(name), child)
	})
}

// copySequence carries an old bucket's sequence (NextSequence) over.
func (m *migration) copySequence(from, to string) error {
	var seq uint64
	err := m.old.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket([]byte(from)); b != nil {
			seq = b.Sequence()
		}
		return nil
	})
	if err != nil || seq == 0 {
		return err
	}
	return m.db.Update(func(tx *bbolt.Tx) error {
		b, err := createdBucket(tx, to)
		if err != nil {
			return err
		}
		return b.SetSequence(seq)
	})
}

// customers re-encodes every customer and sums the dashboard's counters.
func (m *migration) customers() error {
	if err := m.db.Update(func(tx *bbolt.Tx) error { _, err := createdBucket(tx, bucketCustomers); return err }); err != nil {
		return err
	}
	return m.each(bucketCustomers, func(otx, tx *bbolt.Tx, k, v []byte) error {
		rec, err := decodeCustomer(tx, string(k), v)
		if err != nil {
			return err
		}
		// The email its user will have, as the accounts step copies it.
		var email string
		if users := otx.Bucket([]byte("users")); users != nil && rec.Subject != "" {
			if data := users.Get([]byte(rec.Subject)); data != nil {
				var u userRecordV1
				if err := decodeRecord(data, &u); err != nil {
					return fmt.Errorf("user %s: %w", rec.Subject, err)
				}
				email = u.Email
			}
		}
		for i := range rec.Subscriptions {
			for _, c := range proxy.SubscriptionFacts(&rec.Subscriptions[i]) {
				f := m.facts[c.Key()]
				m.facts[c.Key()] = [2]int64{f[0] + c.Count, f[1] + c.Amount}
			}
		}
		return writeCustomer(tx, string(k), &rec, email)
	})
}

// history re-encodes every entry under its new key, in the same order.
func (m *migration) history() error {
	err := m.each(bucketHistory, func(_, tx *bbolt.Tx, k, v []byte) error {
		cus, rest, ok := bytes.Cut(k, []byte{0})
		if !ok || len(rest) != 16 {
			return errCorrupt
		}
		var rec historyRecord
		if err := decodeRecord(v, &rec); err != nil {
			return err
		}
		at := time.Unix(0, int64(beUint64(rest)))
		sub := proxy.Subscription{ID: rec.SubscriptionID, Plan: rec.Plan, Status: proxy.SubscriptionStatus(rec.Status),
			CurrentPeriodEnd: rec.PeriodEnd, CancelAtPeriodEnd: rec.CancelAtPeriodEnd}
		data, err := encodeHistory(tx, &sub)
		if err != nil {
			return err
		}
		b, err := createdBucket(tx, bucketHistory)
		if err != nil {
			return err
		}
		return put(b, historyKey(string(cus), at, beUint64(rest[8:])), data, 0)
	})
	if err != nil {
		return err
	}
	return m.copySequence(bucketHistory, bucketHistory)
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

// userRecordV1 is the users bucket's JSON record of schemas 1 and 2.
type userRecordV1 struct {
	V         int       `json:"v"`
	Email     string    `json:"email,omitempty"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	OrgIDs    []string  `json:"org_ids,omitempty"`
}

func (r *userRecordV1) version() int { return r.V }

// oldSubjects walks, in Clerk ID order, the IDs an old store's bucket
// names: users (the ID), subjects ("user:ID", "org:ID") and the comps'
// index ("user:ID" NUL comp ID). Each form of key sorts as its ID does.
type oldSubjects struct {
	c         *bbolt.Cursor
	qualified bool   // keys are "kind:ID…"
	id        string // the current ID; "" past the end
	v         []byte
}

// from positions at the first ID after after ("": the first).
func (o *oldSubjects) from(after string) {
	if o.c == nil {
		return
	}
	if after == "" {
		o.set(o.c.First())
		return
	}
	key := after
	if o.qualified {
		kind := proxy.SubjectUser
		if strings.HasPrefix(after, "org_") {
			kind = proxy.SubjectOrg
		}
		key = proxy.Subject{Kind: kind, ID: after}.String()
	}
	o.set(o.c.Seek([]byte(key)))
	for o.id != "" && o.id <= after {
		o.step()
	}
}

func (o *oldSubjects) set(k, v []byte) {
	o.id, o.v = "", nil
	if k == nil {
		return
	}
	o.id, o.v = string(k), v
	if o.qualified {
		_, id, _ := strings.Cut(o.id, ":")
		o.id, _, _ = strings.Cut(id, "\x00")
	}
}

// step moves to the next ID, past every key of the current one.
func (o *oldSubjects) step() {
	for cur := o.id; o.id == cur && cur != ""; {
		o.set(o.c.Next())
	}
}

// accounts makes every subject's account record, listing and index keys:
// one per ID among the old users, subjects and comp holders.
func (m *migration) accounts() error {
	after, n := "", 0
	for {
		more := false
		err := m.old.View(func(otx *bbolt.Tx) error {
			streams := [3]*oldSubjects{{}, {qualified: true}, {qualified: true}}
			for i, name := range []string{"users", "subjects", bucketCompsBySubject} {
				if b := otx.Bucket([]byte(name)); b != nil {
					streams[i].c = b.Cursor()
				}
				streams[i].from(after)
			}
			return m.db.Update(func(tx *bbolt.Tx) error {
				for i := 0; ; i++ {
					id := ""
					for _, s := range streams {
						if s.id != "" && (id == "" || s.id < id) {
							id = s.id
						}
					}
					if id == "" {
						return nil
					}
					if i == migrateBatch {
						more = true
						return nil
					}
					var a account
					if s := streams[0]; s.id == id {
						var u userRecordV1
						if err := decodeRecord(s.v, &u); err != nil {
							return fmt.Errorf("user %s: %w", id, err)
						}
						a = account{User: true, Email: u.Email, FirstSeen: u.FirstSeen, LastSeen: u.LastSeen, OrgIDs: u.OrgIDs}
					}
					if s := streams[1]; s.id == id {
						a.Customer = string(s.v)
					}
					if err := m.account(tx, id, &a); err != nil {
						return fmt.Errorf("account %s: %w", id, err)
					}
					for _, s := range streams {
						if s.id == id {
							s.step()
						}
					}
					after, n = id, n+1
				}
			})
		})
		if err != nil || !more {
			return err
		}
		if n%(20*migrateBatch) == 0 {
			m.log.Info("bolt: migrating", "bucket", bucketAccounts, "done", n)
		}
	}
}

// account writes one subject's record with its listing.
func (m *migration) account(tx *bbolt.Tx, id string, a *account) error {
	subject, err := proxy.ParseSubject(id)
	if err != nil {
		return nil // not a subject any listing shows: as the old index did
	}
	if a.User && subject.Kind != proxy.SubjectUser {
		a.User = false
	}
	pa, listed, err := accountView(tx, subject, a)
	if err != nil {
		return err
	}
	if listed {
		a.List = listingOf(&pa, m.now)
	}
	return putAccount(tx, id, nil, a)
}

// finish writes the dashboard's counters and the schema.
func (m *migration) finish() error {
	return m.db.Update(func(tx *bbolt.Tx) error {
		stats, err := createdBucket(tx, bucketStats)
		if err != nil {
			return err
		}
		keys := make([]string, 0, len(m.facts))
		for k := range m.facts {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if f := m.facts[k]; f != [2]int64{} {
				if err := put(stats, []byte(k), append(be64(f[0]), be64(f[1])...), 0); err != nil {
					return err
				}
			}
		}
		return initialize(tx)
	})
}

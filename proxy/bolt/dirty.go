package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// The dirty bucket holds the customers whose sync a webhook deferred
// (proxy.DirtyMark), in one bucket of four key families, so that every
// question the worker and the metrics ask is a cursor's First or a Get,
// never a walk:
//
//	"c" customer ID                → marked-at, due (unix ns), seq (uint64), attempts (uint32), big-endian
//	"q" due (unix ns) customer ID  → empty: the marks by when they may be tried
//	"a" marked-at (unix ns) customer ID → empty: the marks by age
//	"n"                            → how many customers are marked, uint64
//
// It is created by the first mark; a store without it has no backlog.
const bucketDirty = "dirty"

const (
	dirtyRecord = 'c'
	dirtyByDue  = 'q'
	dirtyByAge  = 'a'
	dirtyValLen = 8 + 8 + 8 + 4
)

var dirtyCount = []byte("n")

// markBatchDelay is how long a MarkDirty waits for others to share its
// commit (bbolt's MaxBatchDelay, 10 ms by default). A commit's fsync
// already gathers the marks that arrive while it runs; waiting longer only
// adds to every webhook's answer: at 8 deliveries in flight, 10 ms held
// the ingest near 600 events a second, 2 ms lets it reach the disk's pace.
const markBatchDelay = 2 * time.Millisecond

func dirtyKey(family byte, at time.Time, customerID string) []byte {
	k := make([]byte, 0, 9+len(customerID))
	k = append(k, family)
	if family != dirtyRecord {
		k = binary.BigEndian.AppendUint64(k, uint64(at.UnixNano()))
	}
	return append(k, customerID...)
}

func decodeDirty(customerID string, v []byte) (proxy.DirtyMark, error) {
	if len(v) != dirtyValLen {
		return proxy.DirtyMark{}, fmt.Errorf("dirty mark %s is %d bytes, want %d", customerID, len(v), dirtyValLen)
	}
	return proxy.DirtyMark{
		CustomerID: customerID,
		MarkedAt:   time.Unix(0, int64(binary.BigEndian.Uint64(v[0:8]))).UTC(),
		Due:        time.Unix(0, int64(binary.BigEndian.Uint64(v[8:16]))).UTC(),
		Seq:        binary.BigEndian.Uint64(v[16:24]),
		Attempts:   int(binary.BigEndian.Uint32(v[24:28])),
	}, nil
}

func encodeDirty(m proxy.DirtyMark) []byte {
	v := make([]byte, 0, dirtyValLen)
	v = binary.BigEndian.AppendUint64(v, uint64(m.MarkedAt.UnixNano()))
	v = binary.BigEndian.AppendUint64(v, uint64(m.Due.UnixNano()))
	v = binary.BigEndian.AppendUint64(v, m.Seq)
	return binary.BigEndian.AppendUint32(v, uint32(m.Attempts))
}

// getDirty reads a customer's mark; ok is false when it has none.
func getDirty(b *bbolt.Bucket, customerID string) (proxy.DirtyMark, bool, error) {
	v := b.Get(dirtyKey(dirtyRecord, time.Time{}, customerID))
	if v == nil {
		return proxy.DirtyMark{}, false, nil
	}
	m, err := decodeDirty(customerID, v)
	return m, err == nil, err
}

// putDirty stores m and its two index keys, replacing old's (when had).
func putDirty(b *bbolt.Bucket, m proxy.DirtyMark, old proxy.DirtyMark, had bool) error {
	if had {
		if err := deleteDirtyIndex(b, old); err != nil {
			return err
		}
	} else if err := addDirtyCount(b, 1); err != nil {
		return err
	}
	if err := b.Put(dirtyKey(dirtyRecord, time.Time{}, m.CustomerID), encodeDirty(m)); err != nil {
		return err
	}
	if err := b.Put(dirtyKey(dirtyByDue, m.Due, m.CustomerID), nil); err != nil {
		return err
	}
	return b.Put(dirtyKey(dirtyByAge, m.MarkedAt, m.CustomerID), nil)
}

func deleteDirtyIndex(b *bbolt.Bucket, m proxy.DirtyMark) error {
	if err := b.Delete(dirtyKey(dirtyByDue, m.Due, m.CustomerID)); err != nil {
		return err
	}
	return b.Delete(dirtyKey(dirtyByAge, m.MarkedAt, m.CustomerID))
}

func addDirtyCount(b *bbolt.Bucket, d int64) error {
	var n uint64
	if v := b.Get(dirtyCount); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	n = uint64(max(int64(n)+d, 0))
	return b.Put(dirtyCount, binary.BigEndian.AppendUint64(nil, n))
}

// MarkDirty records that eventID was received and that customerID must be
// read again from Stripe, in one transaction: the event is then a
// duplicate for every later delivery, and the mark outlives a crash. A
// customer already marked keeps its age and its due time (a customer
// waiting out Stripe's failures is not retried sooner for a new event)
// and gets a new Seq.
//
// Webhooks call it by the hundred a second, so it goes through bbolt's
// Batch: concurrent marks share one commit and one fsync. Batch may run
// the function twice when another in its batch fails; it only writes in
// its transaction, which is rolled back in between.
func (s *Store) MarkDirty(ctx context.Context, customerID, eventID string) error {
	if customerID == "" {
		return errors.New("bolt: mark dirty: empty customer id")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: mark dirty %s: %w", customerID, err)
	}
	now := s.now()
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		if eventID != "" {
			if err := markEvent(tx, eventID, now); err != nil {
				return err
			}
		}
		b, err := tx.CreateBucketIfNotExists([]byte(bucketDirty))
		if err != nil {
			return err
		}
		old, had, err := getDirty(b, customerID)
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		m := proxy.DirtyMark{CustomerID: customerID, MarkedAt: now, Due: now, Seq: seq}
		if had {
			m.MarkedAt, m.Due, m.Attempts = old.MarkedAt, old.Due, old.Attempts
		}
		return putDirty(b, m, old, had)
	})
	if err != nil {
		return fmt.Errorf("bolt: mark dirty %s: %w", customerID, err)
	}
	return nil
}

// DirtyDue returns up to limit marks due at now, the earliest due first,
// and when the next mark not returned is due (zero when there is none).
func (s *Store) DirtyDue(ctx context.Context, now time.Time, limit int) ([]proxy.DirtyMark, time.Time, error) {
	var (
		out  []proxy.DirtyMark
		next time.Time
	)
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucketDirty))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		prefix := []byte{dirtyByDue}
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) < 9 {
				return fmt.Errorf("dirty index key of %d bytes", len(k))
			}
			due := time.Unix(0, int64(binary.BigEndian.Uint64(k[1:9])))
			if len(out) >= limit || due.After(now) {
				next = due.UTC()
				return nil
			}
			m, ok, err := getDirty(b, string(k[9:]))
			if err != nil {
				return err
			}
			if ok {
				out = append(out, m)
			}
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("bolt: dirty due: %w", err)
	}
	return out, next, nil
}

// ClearDirty removes m's customer's mark if it is still m (its Seq): the
// customer was read from Stripe from syncStart on. When an event came in
// meanwhile the mark stays, due at once, aged from syncStart: the events
// before the fetch began are covered, the new one is not. It reports
// whether the mark was removed.
func (s *Store) ClearDirty(ctx context.Context, m proxy.DirtyMark, syncStart time.Time) (bool, error) {
	cleared := false
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		cleared = false
		b := tx.Bucket([]byte(bucketDirty))
		if b == nil {
			return nil
		}
		cur, ok, err := getDirty(b, m.CustomerID)
		if err != nil || !ok {
			return err
		}
		if cur.Seq == m.Seq {
			cleared = true
			if err := deleteDirtyIndex(b, cur); err != nil {
				return err
			}
			if err := b.Delete(dirtyKey(dirtyRecord, time.Time{}, cur.CustomerID)); err != nil {
				return err
			}
			return addDirtyCount(b, -1)
		}
		next := cur
		if syncStart.After(next.MarkedAt) {
			next.MarkedAt = syncStart
		}
		next.Due, next.Attempts = syncStart, 0
		return putDirty(b, next, cur, true)
	})
	if err != nil {
		return false, fmt.Errorf("bolt: clear dirty %s: %w", m.CustomerID, err)
	}
	return cleared, nil
}

// RetryDirty puts a marked customer's next try off until due, after a
// failed sync, and counts the attempt. A customer no longer marked is left
// alone.
func (s *Store) RetryDirty(ctx context.Context, customerID string, due time.Time) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucketDirty))
		if b == nil {
			return nil
		}
		cur, ok, err := getDirty(b, customerID)
		if err != nil || !ok {
			return err
		}
		next := cur
		next.Due, next.Attempts = due, cur.Attempts+1
		return putDirty(b, next, cur, true)
	})
	if err != nil {
		return fmt.Errorf("bolt: retry dirty %s: %w", customerID, err)
	}
	return nil
}

// DirtyBacklog is how many customers are marked and the oldest mark's
// time: a Get and a cursor's First.
func (s *Store) DirtyBacklog(ctx context.Context) (proxy.Backlog, error) {
	var out proxy.Backlog
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucketDirty))
		if b == nil {
			return nil
		}
		if v := b.Get(dirtyCount); len(v) == 8 {
			out.Customers = int(binary.BigEndian.Uint64(v))
		}
		prefix := []byte{dirtyByAge}
		if k, _ := b.Cursor().Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) >= 9 {
			out.Oldest = time.Unix(0, int64(binary.BigEndian.Uint64(k[1:9]))).UTC()
		}
		return nil
	})
	if err != nil {
		return proxy.Backlog{}, fmt.Errorf("bolt: dirty backlog: %w", err)
	}
	return out, nil
}

// StoredCustomer reads what the store holds of a customer (its subject,
// email, subscriptions, deleted flag, last sync), for the reconcile to
// compare with Stripe's listing; ok is false for a customer never stored.
func (s *Store) StoredCustomer(ctx context.Context, customerID string) (proxy.CustomerState, bool, error) {
	var (
		st proxy.CustomerState
		ok bool
	)
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		rec, known, err := getCustomer(tx, customerID)
		if err != nil || !known {
			return err
		}
		ok = true
		st = proxy.CustomerState{CustomerID: customerID, Email: rec.Email, Subscriptions: rec.Subscriptions,
			Deleted: rec.Deleted, SyncedAt: rec.SyncedAt}
		if rec.Subject != "" {
			st.Subject, err = proxy.ParseSubject(rec.Subject)
		}
		return err
	})
	if err != nil {
		return proxy.CustomerState{}, false, fmt.Errorf("bolt: stored customer %s: %w", customerID, err)
	}
	return st, ok, nil
}

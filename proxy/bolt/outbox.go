package bolt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// The usage outbox (README "Usage billing"): rows of metered usage waiting
// to be sent to Stripe as meter events, in buckets created by the first
// row:
//
//	outbox          seq (uint64 big-endian)           → JSON row: immutable once written
//	outbox_state    seq                               → JSON state: pending, sent or flagged, attempts, the last failure
//	outbox_pending  seq                               → empty: the rows not yet accepted, oldest first
//	outbox_usage    subject NUL event NUL at (unix s) seq → value (uint64): what a subject used, for the account page
//	outbox_meta     "pending", "flagged", "sent"      → counts (uint64)
//
// seq is the outbox bucket's own sequence (bbolt's NextSequence): it
// moves in the transaction that writes the row, so a row that was never
// committed never took one that a later row could reuse, and a committed
// one is never taken again. The writer is made afresh each time the file
// is opened (Store.writer): a file restored from a backup takes sequences
// again from an earlier point, and a copy could be opened by a second
// gateway, but neither under the same writer. Together they make each
// row's meter event identifier (proxy.UsageRow.Identifier) unique.
const (
	bucketOutbox        = "outbox"
	bucketOutboxState   = "outbox_state"
	bucketOutboxPending = "outbox_pending"
	bucketOutboxUsage   = "outbox_usage"
	bucketOutboxMeta    = "outbox_meta"
)

var (
	outboxCounts = map[proxy.OutboxStatus][]byte{
		proxy.OutboxPending: []byte("pending"),
		proxy.OutboxFlagged: []byte("flagged"),
		proxy.OutboxSent:    []byte("sent"),
	}
)

// ErrUsageSettled and ErrNoUsageRow are the domain's.
var (
	ErrUsageSettled = proxy.ErrUsageSettled
	ErrNoUsageRow   = proxy.ErrNoUsageRow
)

type usageRecord struct {
	V         int    `json:"v"`
	Writer    string `json:"w"`
	Subject   string `json:"s"`
	Customer  string `json:"c"`
	EventName string `json:"e"`
	Window    int64  `json:"win"`
	At        int64  `json:"at"`
	Value     int64  `json:"n"`
}

func (r usageRecord) version() int { return r.V }

type usageStateRecord struct {
	V        int    `json:"v"`
	Status   uint8  `json:"st"`
	Attempts int    `json:"a,omitempty"`
	First    int64  `json:"first,omitempty"` // unix ns
	Next     int64  `json:"next,omitempty"`  // unix ns
	Done     int64  `json:"done,omitempty"`  // unix ns
	Note     string `json:"note,omitempty"`
}

func (r usageStateRecord) version() int { return r.V }

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

func usageKey(r *proxy.UsageRow) []byte {
	k := make([]byte, 0, len(r.Subject.String())+len(r.EventName)+18)
	k = append(k, r.Subject.String()...)
	k = append(k, 0)
	k = append(k, r.EventName...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, uint64(r.At.Unix()))
	return binary.BigEndian.AppendUint64(k, r.Seq)
}

// AppendUsage writes rows to the outbox in one transaction and returns
// them with their writer and sequence. Either every row is written or none.
func (s *Store) AppendUsage(ctx context.Context, rows []proxy.UsageRow) ([]proxy.UsageRow, error) {
	var out []proxy.UsageRow
	err := s.update(ctx, func(tx *bbolt.Tx) (err error) {
		out, err = s.appendUsage(tx, rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: append usage: %w", err)
	}
	return out, nil
}

// appendUsage writes rows in tx, the caller's transaction: the quota
// counters' flush (README "Limits") calls it in the transaction that saves
// the counters, so usage and counters commit together or not at all.
func (s *Store) appendUsage(tx *bbolt.Tx, rows []proxy.UsageRow) ([]proxy.UsageRow, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	for i := range rows {
		if err := rows[i].Validate(); err != nil {
			return nil, err
		}
	}
	var bs [5]*bbolt.Bucket
	for i, name := range [...]string{bucketOutbox, bucketOutboxState, bucketOutboxPending, bucketOutboxUsage, bucketOutboxMeta} {
		b, err := createdBucket(tx, name)
		if err != nil {
			return nil, err
		}
		bs[i] = b
	}
	box, states, pending, usage, meta := bs[0], bs[1], bs[2], bs[3], bs[4]
	writer := s.writer
	out := make([]proxy.UsageRow, len(rows))
	for i, r := range rows {
		seq, err := box.NextSequence()
		if err != nil {
			return nil, err
		}
		r.Writer, r.Seq = writer, seq
		r.Window, r.At = r.Window.Truncate(time.Second).UTC(), r.At.Truncate(time.Second).UTC()
		rec, err := json.Marshal(usageRecord{V: recordVersion, Writer: writer, Subject: r.Subject.String(), Customer: r.Customer,
			EventName: r.EventName, Window: r.Window.Unix(), At: r.At.Unix(), Value: r.Value})
		if err != nil {
			return nil, err
		}
		st, err := json.Marshal(usageStateRecord{V: recordVersion, Status: uint8(proxy.OutboxPending)})
		if err != nil {
			return nil, err
		}
		k := seqKey(seq)
		for _, put := range []struct {
			b    *bbolt.Bucket
			k, v []byte
		}{{box, k, rec}, {states, k, st}, {pending, k, nil}, {usage, usageKey(&r), binary.BigEndian.AppendUint64(nil, uint64(r.Value))}} {
			if err := put.b.Put(put.k, put.v); err != nil {
				return nil, err
			}
		}
		out[i] = r
	}
	return out, addOutboxCount(meta, outboxCounts[proxy.OutboxPending], int64(len(rows)))
}

// newWriterID is 8 random hex digits.
func newWriterID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func addOutboxCount(meta *bbolt.Bucket, key []byte, n int64) error {
	var cur uint64
	if v := meta.Get(key); len(v) == 8 {
		cur = binary.BigEndian.Uint64(v)
	}
	next := int64(cur) + n
	if next < 0 {
		next = 0
	}
	return meta.Put(key, binary.BigEndian.AppendUint64(nil, uint64(next)))
}

func readOutboxCount(meta *bbolt.Bucket, key []byte) int {
	if v := meta.Get(key); len(v) == 8 {
		return int(binary.BigEndian.Uint64(v))
	}
	return 0
}

func decodeUsage(seq uint64, v []byte) (proxy.UsageRow, error) {
	var rec usageRecord
	if err := decodeRecord(v, &rec); err != nil {
		return proxy.UsageRow{}, fmt.Errorf("usage row %d: %w", seq, err)
	}
	sub, err := proxy.ParseSubject(rec.Subject)
	if err != nil {
		return proxy.UsageRow{}, fmt.Errorf("usage row %d: %w", seq, err)
	}
	return proxy.UsageRow{Writer: rec.Writer, Seq: seq, Subject: sub, Customer: rec.Customer, EventName: rec.EventName,
		Window: time.Unix(rec.Window, 0).UTC(), At: time.Unix(rec.At, 0).UTC(), Value: rec.Value}, nil
}

func decodeUsageState(seq uint64, v []byte) (proxy.OutboxState, error) {
	var rec usageStateRecord
	if err := decodeRecord(v, &rec); err != nil {
		return proxy.OutboxState{}, fmt.Errorf("usage row %d state: %w", seq, err)
	}
	st := proxy.OutboxState{Status: proxy.OutboxStatus(rec.Status), Attempts: rec.Attempts, Note: rec.Note}
	if rec.First != 0 {
		st.First = time.Unix(0, rec.First).UTC()
	}
	if rec.Next != 0 {
		st.Next = time.Unix(0, rec.Next).UTC()
	}
	if rec.Done != 0 {
		st.Done = time.Unix(0, rec.Done).UTC()
	}
	return st, nil
}

// entry reads one row and its state in tx.
func entry(tx *bbolt.Tx, seq uint64) (proxy.OutboxEntry, error) {
	box, states := optionalBucket(tx, bucketOutbox), optionalBucket(tx, bucketOutboxState)
	if box == nil || states == nil {
		return proxy.OutboxEntry{}, fmt.Errorf("%w: %d", ErrNoUsageRow, seq)
	}
	k := seqKey(seq)
	v, sv := box.Get(k), states.Get(k)
	if v == nil || sv == nil {
		return proxy.OutboxEntry{}, fmt.Errorf("%w: %d", ErrNoUsageRow, seq)
	}
	row, err := decodeUsage(seq, v)
	if err != nil {
		return proxy.OutboxEntry{}, err
	}
	st, err := decodeUsageState(seq, sv)
	if err != nil {
		return proxy.OutboxEntry{}, err
	}
	return proxy.OutboxEntry{Row: row, State: st}, nil
}

// DueUsage lists up to limit pending rows whose Next has come at now,
// oldest first.
func (s *Store) DueUsage(ctx context.Context, now time.Time, limit int) ([]proxy.OutboxEntry, error) {
	var out []proxy.OutboxEntry
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		pending := optionalBucket(tx, bucketOutboxPending)
		if pending == nil {
			return nil
		}
		c := pending.Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			e, err := entry(tx, binary.BigEndian.Uint64(k))
			if err != nil {
				return err
			}
			if e.State.Next.After(now) {
				continue
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: due usage: %w", err)
	}
	return out, nil
}

// SetUsageState records what became of a row. A row marked sent is
// settled: any later change is ErrUsageSettled, so it is never sent again.
// A flagged row may be made pending again (an admin's retry) or marked
// sent (an admin found it in Stripe).
func (s *Store) SetUsageState(ctx context.Context, seq uint64, st proxy.OutboxState) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		old, err := entry(tx, seq)
		if err != nil {
			return err
		}
		if old.State.Status == proxy.OutboxSent {
			return fmt.Errorf("%w: %d", ErrUsageSettled, seq)
		}
		switch st.Status {
		case proxy.OutboxPending, proxy.OutboxSent, proxy.OutboxFlagged:
		default:
			return fmt.Errorf("usage row %d: unknown status %d", seq, st.Status)
		}
		rec := usageStateRecord{V: recordVersion, Status: uint8(st.Status), Attempts: st.Attempts, Note: st.Note}
		if !st.First.IsZero() {
			rec.First = st.First.UnixNano()
		}
		if !st.Next.IsZero() {
			rec.Next = st.Next.UnixNano()
		}
		if !st.Done.IsZero() {
			rec.Done = st.Done.UnixNano()
		}
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		k := seqKey(seq)
		if err := tx.Bucket([]byte(bucketOutboxState)).Put(k, v); err != nil {
			return err
		}
		if old.State.Status == st.Status {
			return nil
		}
		pending := tx.Bucket([]byte(bucketOutboxPending))
		if st.Status == proxy.OutboxPending {
			err = pending.Put(k, nil)
		} else {
			err = pending.Delete(k)
		}
		if err != nil {
			return err
		}
		meta := tx.Bucket([]byte(bucketOutboxMeta))
		if err := addOutboxCount(meta, outboxCounts[old.State.Status], -1); err != nil {
			return err
		}
		return addOutboxCount(meta, outboxCounts[st.Status], 1)
	})
	if err != nil {
		return fmt.Errorf("bolt: usage state: %w", err)
	}
	return nil
}

// UsageEntry reads one row and its state.
func (s *Store) UsageEntry(ctx context.Context, seq uint64) (proxy.OutboxEntry, error) {
	var e proxy.OutboxEntry
	err := s.view(ctx, func(tx *bbolt.Tx) (err error) {
		e, err = entry(tx, seq)
		return err
	})
	return e, err
}

// OutboxStats counts the rows by state and finds the oldest pending one:
// counters and a cursor's First, never a walk.
func (s *Store) OutboxStats(ctx context.Context) (proxy.OutboxStats, error) {
	var st proxy.OutboxStats
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		meta := optionalBucket(tx, bucketOutboxMeta)
		if meta == nil {
			return nil
		}
		st.Pending = readOutboxCount(meta, outboxCounts[proxy.OutboxPending])
		st.Flagged = readOutboxCount(meta, outboxCounts[proxy.OutboxFlagged])
		st.Sent = readOutboxCount(meta, outboxCounts[proxy.OutboxSent])
		if k, _ := tx.Bucket([]byte(bucketOutboxPending)).Cursor().First(); k != nil {
			e, err := entry(tx, binary.BigEndian.Uint64(k))
			if err != nil {
				return err
			}
			st.Oldest = e.Row.At
		}
		return nil
	})
	if err != nil {
		return proxy.OutboxStats{}, fmt.Errorf("bolt: outbox stats: %w", err)
	}
	return st, nil
}

// FlaggedUsage lists up to limit flagged rows, oldest first, for the
// admin console. It walks the states: flagged rows are few, and an admin
// asks.
func (s *Store) FlaggedUsage(ctx context.Context, limit int) ([]proxy.OutboxEntry, error) {
	var out []proxy.OutboxEntry
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		states := optionalBucket(tx, bucketOutboxState)
		if states == nil {
			return nil
		}
		c := states.Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			st, err := decodeUsageState(seq, v)
			if err != nil {
				return err
			}
			if st.Status != proxy.OutboxFlagged {
				continue
			}
			e, err := entry(tx, seq)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: flagged usage: %w", err)
	}
	return out, nil
}

// MeteredUsage sums what subject used of the meter eventName since since
// (the rows written for it, sent or not): the account page's "usage so
// far". A range of one subject's keys, never a walk of the outbox.
func (s *Store) MeteredUsage(ctx context.Context, subject proxy.Subject, eventName string, since time.Time) (int64, error) {
	billed, err := s.MeteredUsageBetween(ctx, subject, eventName, since, time.Time{})
	if err != nil {
		return 0, err
	}
	var open int64
	err = s.view(ctx, func(tx *bbolt.Tx) (err error) {
		open, err = meteredOpen(tx, subject, eventName, since)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("bolt: metered usage: %w", err)
	}
	return billed + open, nil
}

// MeteredUsageBetween sums subject's rows of the meter eventName whose
// timestamps fall in [from, to); a zero to has no end.
func (s *Store) MeteredUsageBetween(ctx context.Context, subject proxy.Subject, eventName string, from, to time.Time) (int64, error) {
	prefix := append(append(append([]byte(subject.String()), 0), eventName...), 0)
	start := binary.BigEndian.AppendUint64(bytes.Clone(prefix), uint64(max(from.Unix(), 0)))
	var end []byte
	if !to.IsZero() {
		end = binary.BigEndian.AppendUint64(bytes.Clone(prefix), uint64(max(to.Unix(), 0)))
	}
	var n int64
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		usage := optionalBucket(tx, bucketOutboxUsage)
		if usage == nil {
			return nil
		}
		c := usage.Cursor()
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if end != nil && bytes.Compare(k, end) >= 0 {
				break
			}
			if len(v) != 8 {
				return fmt.Errorf("usage %q: %w", k, errCorrupt)
			}
			n += int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bolt: metered usage: %w", err)
	}
	return n, nil
}

// PruneUsage deletes the sent rows whose timestamp is before before (the
// retention, README "Usage billing"): the row, its state and its usage
// entry. It finds them in a read transaction, which blocks no writer, and
// deletes them a thousand to a write transaction. A pending or flagged row
// is never deleted; a sent one never changes again, so what the read
// found is still true when it is deleted.
func (s *Store) PruneUsage(ctx context.Context, before time.Time) (int, error) {
	type dead struct{ seq, usage []byte }
	var found []dead
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		states := optionalBucket(tx, bucketOutboxState)
		if states == nil {
			return nil
		}
		box := tx.Bucket([]byte(bucketOutbox))
		c := states.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			st, err := decodeUsageState(seq, v)
			if err != nil {
				return err
			}
			if st.Status != proxy.OutboxSent {
				continue
			}
			row, err := decodeUsage(seq, box.Get(k))
			if err != nil {
				return err
			}
			if row.At.Before(before) {
				found = append(found, dead{seq: bytes.Clone(k), usage: usageKey(&row)})
			}
		}
		return nil
	})
	n := 0
	for len(found) > 0 && err == nil {
		batch := found[:min(len(found), 1000)]
		found = found[len(batch):]
		gone := 0
		err = s.update(ctx, func(tx *bbolt.Tx) error {
			states := tx.Bucket([]byte(bucketOutboxState))
			gone = 0
			for _, d := range batch {
				st, err := decodeUsageState(binary.BigEndian.Uint64(d.seq), states.Get(d.seq))
				if err != nil || st.Status != proxy.OutboxSent {
					continue // gone already (a prune racing this one)
				}
				for _, del := range []struct {
					b string
					k []byte
				}{{bucketOutbox, d.seq}, {bucketOutboxState, d.seq}, {bucketOutboxUsage, d.usage}} {
					if err := tx.Bucket([]byte(del.b)).Delete(del.k); err != nil {
						return err
					}
				}
				gone++
			}
			return addOutboxCount(tx.Bucket([]byte(bucketOutboxMeta)), outboxCounts[proxy.OutboxSent], -int64(gone))
		})
		if err == nil {
			n += gone
		}
	}
	if err != nil {
		return n, fmt.Errorf("bolt: prune usage: %w", err)
	}
	return n, nil
}

var _ proxy.UsageOutbox = (*Store)(nil)

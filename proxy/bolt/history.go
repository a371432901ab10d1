package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// A history entry is one change of one subscription, keyed by its
// customer and when the sync committed it (its newest entries last):
//
//	history  customer ID, NUL, at (unix nanoseconds, 8 bytes big-endian), seq (orderedUint)
//	         → 0x02, subscription ID, plan (dict), status (dict), period end, flags (cancel at period end 1)
//
// Version 1 (schemas 1 and 2) was JSON with the time in the value too
// (historyRecord), and a seq of 8 bytes; Open migrates them.
const historyVersion = 2

// historyKey is an entry's key.
func historyKey(customerID string, at time.Time, seq uint64) []byte {
	k := append([]byte(customerID), 0)
	k = binary.BigEndian.AppendUint64(k, uint64(at.UnixNano()))
	return orderedUint(k, seq)
}

func encodeHistory(tx *bbolt.Tx, s *proxy.Subscription) ([]byte, error) {
	e := enc{b: make([]byte, 0, 32+len(s.ID))}
	e.byte1(historyVersion)
	e.str(s.ID)
	e.dict(tx, s.Plan)
	e.dict(tx, string(s.Status))
	e.time(s.CurrentPeriodEnd)
	e.uvarint(bit(s.CancelAtPeriodEnd, 1))
	return e.b, e.err
}

// decodeHistory reads an entry of either version; at is the key's.
func decodeHistory(tx *bbolt.Tx, at time.Time, data []byte) (proxy.HistoryEntry, error) {
	if len(data) > 0 && data[0] == '{' {
		var rec historyRecord
		if err := decodeRecord(data, &rec); err != nil {
			return proxy.HistoryEntry{}, err
		}
		return proxy.HistoryEntry{At: rec.At, SubscriptionID: rec.SubscriptionID, Plan: rec.Plan,
			Status: proxy.SubscriptionStatus(rec.Status), PeriodEnd: rec.PeriodEnd, CancelAtPeriodEnd: rec.CancelAtPeriodEnd}, nil
	}
	d := dec{b: data}
	if v := d.byte1(); v != historyVersion {
		if d.err != nil {
			return proxy.HistoryEntry{}, d.err
		}
		return proxy.HistoryEntry{}, fmt.Errorf("history record version %d, this tollgate reads %d: %w", v, historyVersion, ErrUnsupportedVersion)
	}
	h := proxy.HistoryEntry{At: at, SubscriptionID: d.str(), Plan: d.dict(tx)}
	h.Status = proxy.SubscriptionStatus(d.dict(tx))
	h.PeriodEnd = d.time()
	h.CancelAtPeriodEnd = d.uvarint()&1 != 0
	return h, d.end()
}

// historyRecord is a version 1 entry.
type historyRecord struct {
	V                 int       `json:"v"`
	At                time.Time `json:"at"`
	SubscriptionID    string    `json:"subscription_id"`
	Plan              string    `json:"plan,omitempty"`
	Status            string    `json:"status"`
	PeriodEnd         time.Time `json:"period_end,omitzero"`
	CancelAtPeriodEnd bool      `json:"cancel_at_period_end,omitempty"`
}

func (r *historyRecord) version() int { return r.V }

// appendHistory records one entry per changed subscription of a customer.
func appendHistory(tx *bbolt.Tx, customerID string, at time.Time, changed []proxy.Subscription) error {
	if len(changed) == 0 {
		return nil
	}
	b, err := createdBucket(tx, bucketHistory)
	if err != nil {
		return err
	}
	for _, s := range changed {
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		v, err := encodeHistory(tx, &s)
		if err == nil {
			err = put(b, historyKey(customerID, at, seq), v, len(customerID)+1) // each customer's entries
		}
		if err != nil {
			return fmt.Errorf("history of %s: %w", customerID, err)
		}
	}
	return nil
}

// History returns up to limit subscription changes of a customer, newest
// first. limit <= 0 or above proxy.MaxAuditPage means proxy.MaxAuditPage.
func (s *Store) History(ctx context.Context, customerID string, limit int) ([]proxy.HistoryEntry, error) {
	var out []proxy.HistoryEntry
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		out, err = historyOf(tx, customerID, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: history of %s: %w", customerID, err)
	}
	return out, nil
}

func historyOf(tx *bbolt.Tx, customerID string, limit int) ([]proxy.HistoryEntry, error) {
	if limit <= 0 || limit > proxy.MaxAuditPage {
		limit = proxy.MaxAuditPage
	}
	b := optionalBucket(tx, bucketHistory)
	if customerID == "" || b == nil {
		return nil, nil
	}
	prefix := []byte(customerID + "\x00")
	c := b.Cursor()
	// Start after the last key with prefix: the first key of the next
	// prefix ("cus_1\x01…"), then step back.
	var k, v []byte
	if next, _ := c.Seek([]byte(customerID + "\x01")); next == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	var out []proxy.HistoryEntry
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Prev() {
		if len(k) < len(prefix)+8 {
			return nil, fmt.Errorf("history entry %q: %w", k, errCorrupt)
		}
		at := time.Unix(0, int64(binary.BigEndian.Uint64(k[len(prefix):]))).UTC()
		h, err := decodeHistory(tx, at, v)
		if err != nil {
			return nil, fmt.Errorf("history entry %q: %w", k, err)
		}
		out = append(out, h)
	}
	return out, nil
}

package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// Metered usage (README "Usage billing"): each meter window's count, as
// each opening of the file counted it, and the part of it already billed
// through the usage outbox (outbox.go), in buckets created by the first
// flush that carries one:
//
//	meters       subject NUL event NUL start (8 bytes) NUL writer → end (8), used (8), billed (8), customer
//	meters_open  end (8 bytes) meters key                         → empty: windows with units not yet billed
//
// used is absolute for its writer (Store.writer, new at each Open), the
// larger of old and new kept: a flush saved twice changes nothing, and a
// process that restarts counts under a new writer from zero instead of
// reading its old count back. A window is billed by the flush that runs
// after its end: one outbox row of used less billed, written in the
// transaction that saves the counts, which sets billed to used. Units a
// late flush adds to an ended window are billed in that same transaction.
// So the outbox's rows sum to exactly what was counted and saved, and a
// unit is billed at most once.
const (
	bucketMeters     = "meters"
	bucketMetersOpen = "meters_open"
)

func meterKey(k *proxy.MeterKey, writer string) []byte {
	b := make([]byte, 0, 64)
	b = append(b, k.Subject.String()...)
	b = append(b, 0)
	b = append(b, k.EventName...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(k.Start.Unix()))
	b = append(b, 0)
	return append(b, writer...)
}

type meterValue struct {
	end          int64
	used, billed int64
	customer     string
}

func decodeMeter(v []byte) (meterValue, bool) {
	if len(v) < 24 {
		return meterValue{}, false
	}
	return meterValue{end: int64(binary.BigEndian.Uint64(v)), used: int64(binary.BigEndian.Uint64(v[8:])),
		billed: int64(binary.BigEndian.Uint64(v[16:])), customer: string(v[24:])}, true
}

func (m meterValue) encode() []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 24+len(m.customer)), uint64(m.end))
	v = binary.BigEndian.AppendUint64(v, uint64(m.used))
	v = binary.BigEndian.AppendUint64(v, uint64(m.billed))
	return append(v, m.customer...)
}

// parseMeterKey reads a meters key back into the row it bills.
func parseMeterKey(k []byte, m meterValue) (proxy.MeterKey, error) {
	parts := bytes.SplitN(k, []byte{0}, 3)
	if len(parts) != 3 || len(parts[2]) < 9 {
		return proxy.MeterKey{}, fmt.Errorf("bolt: meter count %q: %w", k, errCorrupt)
	}
	sub, err := proxy.ParseSubject(string(parts[0]))
	if err != nil {
		return proxy.MeterKey{}, fmt.Errorf("bolt: meter count %q: %w", k, err)
	}
	return proxy.MeterKey{Subject: sub, Customer: m.customer, EventName: string(parts[1]),
		Start: time.Unix(int64(binary.BigEndian.Uint64(parts[2][:8])), 0).UTC(), End: time.Unix(m.end, 0).UTC()}, nil
}

func validMeterCount(mc *proxy.MeterCount) error {
	k := &mc.Key
	if !k.Subject.Valid() || !proxy.ValidMeterEventName(k.EventName) || strings.ContainsRune(k.EventName, 0) ||
		k.Start.IsZero() || !k.End.After(k.Start) || mc.Used < 0 {
		return fmt.Errorf("bolt: meter count: invalid %s %q %v–%v %d", k.Subject, k.EventName, k.Start, k.End, mc.Used)
	}
	return nil
}

// SaveUsageCounts saves quota counters and meter counts and bills every
// meter window ended at now, in one transaction (limits.MeterStore).
func (s *Store) SaveUsageCounts(ctx context.Context, replica string, counts []proxy.QuotaCount, meters []proxy.MeterCount, now time.Time) (rows int, nextClose time.Time, err error) {
	if err := validQuotaCounts(replica, counts); err != nil {
		return 0, time.Time{}, err
	}
	for i := range meters {
		if err := validMeterCount(&meters[i]); err != nil {
			return 0, time.Time{}, err
		}
	}
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		rows, nextClose = 0, time.Time{}
		if err := saveQuotaCounts(tx, replica, counts); err != nil {
			return err
		}
		var mb, open *bbolt.Bucket
		if len(meters) > 0 {
			var err error
			if mb, err = createdBucket(tx, bucketMeters); err != nil {
				return err
			}
			if open, err = createdBucket(tx, bucketMetersOpen); err != nil {
				return err
			}
		} else {
			mb, open = optionalBucket(tx, bucketMeters), optionalBucket(tx, bucketMetersOpen)
		}
		for i := range meters {
			mc := &meters[i]
			k := meterKey(&mc.Key, s.writer)
			old, ok := decodeMeter(mb.Get(k))
			if ok && old.used >= mc.Used {
				continue
			}
			nv := meterValue{end: mc.Key.End.Unix(), used: mc.Used, billed: old.billed, customer: mc.Key.Customer}
			if ok {
				nv.customer = old.customer
			}
			if err := mb.Put(k, nv.encode()); err != nil {
				return err
			}
			ok2 := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(k)), uint64(nv.end))
			if err := open.Put(append(ok2, k...), nil); err != nil {
				return err
			}
		}
		if open == nil {
			return nil
		}
		// Bill the windows that ended: one row each for what is unbilled.
		var bill []proxy.UsageRow
		var billed [][]byte
		c := open.Cursor()
		for ok, _ := c.First(); ok != nil; ok, _ = c.Next() {
			if len(ok) < 8 {
				return fmt.Errorf("bolt: open meter %q: %w", ok, errCorrupt)
			}
			end := time.Unix(int64(binary.BigEndian.Uint64(ok)), 0).UTC()
			if now.Before(end) {
				nextClose = end
				break
			}
			k := ok[8:]
			m, good := decodeMeter(mb.Get(k))
			if !good {
				return fmt.Errorf("bolt: meter count %q: %w", k, errCorrupt)
			}
			billed = append(billed, bytes.Clone(ok))
			if m.used <= m.billed {
				continue
			}
			key, err := parseMeterKey(k, m)
			if err != nil {
				return err
			}
			row := proxy.UsageRowFor(key, m.used-m.billed)
			if row.Validate() != nil {
				// No customer to bill (the gateway counts only requests a
				// subscription granted, so not expected): left open, in the
				// account page's usage, never blocking the counters' save.
				billed = billed[:len(billed)-1]
				continue
			}
			bill = append(bill, row)
			m.billed = m.used
			if err := mb.Put(bytes.Clone(k), m.encode()); err != nil {
				return err
			}
		}
		if _, err := s.appendUsage(tx, bill); err != nil {
			return err
		}
		for _, ok := range billed {
			if err := open.Delete(ok); err != nil {
				return err
			}
		}
		rows = len(bill)
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("bolt: save usage counts: %w", err)
	}
	return rows, nextClose, nil
}

// meteredOpen sums subject's units of eventName not yet billed, in
// windows that end after since (a window is at most an hour long).
func meteredOpen(tx *bbolt.Tx, subject proxy.Subject, eventName string, since time.Time) (int64, error) {
	mb := optionalBucket(tx, bucketMeters)
	if mb == nil {
		return 0, nil
	}
	prefix := append(append(append([]byte(subject.String()), 0), eventName...), 0)
	from := binary.BigEndian.AppendUint64(bytes.Clone(prefix), uint64(max(since.Add(-proxy.MeterWindowLength).Unix(), 0)))
	var n int64
	c := mb.Cursor()
	for k, v := c.Seek(from); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		m, ok := decodeMeter(v)
		if !ok {
			return 0, fmt.Errorf("bolt: meter count %q: %w", k, errCorrupt)
		}
		if m.end > since.Unix() {
			n += m.used - m.billed
		}
	}
	return n, nil
}

// pruneMeters deletes the meter counts of windows that ended before t and
// are billed in full: a day after its end no process still counts into a
// window (the limiter lets a window go once saved and ended).
func (s *Store) pruneMeters(ctx context.Context, before time.Time) (int, error) {
	var dead [][]byte
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		mb := optionalBucket(tx, bucketMeters)
		if mb == nil {
			return nil
		}
		c := mb.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if m, ok := decodeMeter(v); ok && m.end < before.Unix() && m.used == m.billed {
				dead = append(dead, bytes.Clone(k))
			}
		}
		return nil
	})
	if err != nil || len(dead) == 0 {
		return 0, err
	}
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		mb := tx.Bucket([]byte(bucketMeters))
		for _, k := range dead {
			if m, ok := decodeMeter(mb.Get(k)); ok && m.used == m.billed {
				if err := mb.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return len(dead), err
}

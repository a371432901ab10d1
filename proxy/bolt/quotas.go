package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// Quota counters (README "Limits"), in one bucket created by the first
// flush:
//
//	quotas  subject NUL plan NUL route NUL start (8 bytes) NUL replica → end (8 bytes), used (8 bytes)
//
// Times are unix seconds, big-endian, so a subject's counters sit together
// in the order of their plans, routes and windows. A value is one
// replica's absolute count: a flush writes what it counted, never a delta,
// and the larger of the old and new values is kept (SaveQuotaCounts), so
// a flush repeated or reordered changes nothing. One process opens a bbolt
// file, so its replica is "" (limits.One); the key keeps the name for the
// storetest suite every store passes.
const bucketQuotas = "quotas"

func quotaPrefix(k *proxy.QuotaKey) []byte {
	b := make([]byte, 0, 64)
	b = append(b, k.Subject.String()...)
	b = append(b, 0)
	b = append(b, k.Plan...)
	b = append(b, 0)
	b = append(b, k.Route...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(k.Start.Unix()))
	b = append(b, 0)
	return b
}

func validQuotaKey(k *proxy.QuotaKey, replica string) error {
	if !k.Subject.Valid() || k.Plan == "" || k.Route == "" || k.Start.IsZero() || !k.End.After(k.Start) ||
		strings.ContainsRune(k.Plan+k.Route+replica, 0) {
		return fmt.Errorf("bolt: quota counter: invalid key %s %q %q %v–%v", k.Subject, k.Plan, k.Route, k.Start, k.End)
	}
	return nil
}

// QuotaCount reads one counter: replica's own value and every replica's sum.
func (s *Store) QuotaCount(ctx context.Context, replica string, key proxy.QuotaKey) (own, total int64, err error) {
	if err := validQuotaKey(&key, replica); err != nil {
		return 0, 0, err
	}
	prefix := quotaPrefix(&key)
	err = s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucketQuotas))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(v) != 16 {
				return fmt.Errorf("bolt: quota counter %q: %w", k, errCorrupt)
			}
			used := int64(binary.BigEndian.Uint64(v[8:]))
			total += used
			if string(k[len(prefix):]) == replica {
				own = used
			}
		}
		return nil
	})
	return own, total, err
}

// SaveQuotaCounts writes each counter's absolute value for replica in one
// transaction, keeping the larger where the store holds more.
func (s *Store) SaveQuotaCounts(ctx context.Context, replica string, counts []proxy.QuotaCount) error {
	if err := validQuotaCounts(replica, counts); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bbolt.Tx) error { return saveQuotaCounts(tx, replica, counts) })
}

func validQuotaCounts(replica string, counts []proxy.QuotaCount) error {
	for i := range counts {
		if err := validQuotaKey(&counts[i].Key, replica); err != nil {
			return err
		}
		if counts[i].Used < 0 {
			return errors.New("bolt: quota counter: negative count")
		}
	}
	return nil
}

// saveQuotaCounts writes counts in tx (SaveQuotaCounts, SaveUsageCounts).
func saveQuotaCounts(tx *bbolt.Tx, replica string, counts []proxy.QuotaCount) error {
	if len(counts) == 0 {
		return nil
	}
	b, err := createdBucket(tx, bucketQuotas)
	if err != nil {
		return err
	}
	for i := range counts {
		qc := &counts[i]
		k := append(quotaPrefix(&qc.Key), replica...)
		if old := b.Get(k); len(old) == 16 && int64(binary.BigEndian.Uint64(old[8:])) >= qc.Used {
			continue
		}
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(qc.Key.End.Unix()))
		v = binary.BigEndian.AppendUint64(v, uint64(qc.Used))
		if err := b.Put(k, v); err != nil {
			return err
		}
	}
	return nil
}

// QuotaUsage lists subject's counters whose window has not ended at now,
// every replica's summed.
func (s *Store) QuotaUsage(ctx context.Context, subject proxy.Subject, now time.Time) ([]proxy.QuotaCount, error) {
	prefix := append([]byte(subject.String()), 0)
	var out []proxy.QuotaCount
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucketQuotas))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			parts := bytes.SplitN(k[len(prefix):], []byte{0}, 3)
			if len(parts) != 3 || len(parts[2]) < 9 || len(v) != 16 {
				return fmt.Errorf("bolt: quota counter %q: %w", k, errCorrupt)
			}
			end := time.Unix(int64(binary.BigEndian.Uint64(v[:8])), 0).UTC()
			if !now.Before(end) {
				continue
			}
			key := proxy.QuotaKey{Subject: subject, Plan: string(parts[0]), Route: string(parts[1]),
				Start: time.Unix(int64(binary.BigEndian.Uint64(parts[2][:8])), 0).UTC(), End: end}
			used := int64(binary.BigEndian.Uint64(v[8:]))
			if n := len(out); n > 0 && out[n-1].Key == key {
				out[n-1].Used += used
				continue
			}
			out = append(out, proxy.QuotaCount{Key: key, Used: used})
		}
		return nil
	})
	return slices.Clip(out), err
}

// PruneQuotaCounts deletes the counters whose window ended before t. It
// finds them in a read transaction, which blocks no writer, and deletes
// them a thousand to a write transaction, so a flush never waits long.
func (s *Store) PruneQuotaCounts(ctx context.Context, before time.Time) (int, error) {
	var dead [][]byte
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucketQuotas))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) == 16 && int64(binary.BigEndian.Uint64(v[:8])) < before.Unix() {
				dead = append(dead, bytes.Clone(k))
			}
		}
		return nil
	})
	n := 0
	for len(dead) > 0 && err == nil {
		batch := dead[:min(len(dead), 1000)]
		dead = dead[len(batch):]
		err = s.update(ctx, func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte(bucketQuotas))
			for _, k := range batch {
				// A counter's window never moves: what ended stays ended.
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			n += len(batch)
		}
	}
	if err == nil {
		// Billed meter counts of windows as old (README "Usage billing").
		var m int
		m, err = s.pruneMeters(ctx, before)
		n += m
	}
	return n, err
}

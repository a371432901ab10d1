package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// The processed webhook events (Stripe's event IDs, and Clerk's Svix
// message IDs as "svix:…"), with when each was first processed, and the
// same by time, so that pruning reads only what it deletes:
//
//	events          event ID                               → processed-at, unix nanoseconds, uint64 big-endian
//	events_by_time  processed-at (uint64 BE nanos), event ID → empty
//
// Both are written in the transaction that marks the event, never apart.
// Schema 4 added events_by_time; Open builds it for an older store
// (indexEvents).
const bucketEventsByTime = "events_by_time"

// eventTimeKey is an event's key in events_by_time.
func eventTimeKey(at uint64, eventID []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(eventID)), at), eventID...)
}

// markEvent records eventID as processed at now, keeping an earlier time.
func markEvent(tx *bbolt.Tx, eventID string, now time.Time) error {
	b, err := bucket(tx, bucketEvents)
	if err != nil {
		return err
	}
	if b.Get([]byte(eventID)) != nil {
		return nil
	}
	byTime, err := bucket(tx, bucketEventsByTime)
	if err != nil {
		return err
	}
	at := uint64(now.UnixNano())
	if err := put(b, []byte(eventID), binary.BigEndian.AppendUint64(nil, at), 0); err != nil {
		return fmt.Errorf("mark event %s: %w", eventID, err)
	}
	// Marks come in time order: appending, bbolt fills its pages.
	if err := put(byTime, eventTimeKey(at, []byte(eventID)), nil, 0); err != nil {
		return fmt.Errorf("mark event %s: %w", eventID, err)
	}
	return nil
}

// EventProcessed reports whether a Stripe event was already processed.
func (s *Store) EventProcessed(ctx context.Context, eventID string) (bool, error) {
	var done bool
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketEvents)
		if err != nil {
			return err
		}
		done = b.Get([]byte(eventID)) != nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("bolt: event %s: %w", eventID, err)
	}
	return done, nil
}

// MarkEvent records a Stripe event as processed on its own, for events that
// change nothing (unknown types, objects Stripe answers 404 for), so their
// retries are deduplicated too.
func (s *Store) MarkEvent(ctx context.Context, eventID string) error {
	if eventID == "" {
		return errors.New("bolt: mark event: empty event id")
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error { return markEvent(tx, eventID, s.now()) })
	if err != nil {
		return fmt.Errorf("bolt: mark event %s: %w", eventID, err)
	}
	return nil
}

// PruneEvents forgets at most limit events processed before before, the
// oldest first, in one transaction, and returns how many it forgot. It
// reads events_by_time from its start and stops at the first key at or
// after before: it never walks what it keeps. How long to keep them is
// the caller's (stripe.EventRetention).
func (s *Store) PruneEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	cut := uint64(max(before.UnixNano(), 0))
	var n int
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		n = 0
		events, err := bucket(tx, bucketEvents)
		if err != nil {
			return err
		}
		byTime, err := bucket(tx, bucketEventsByTime)
		if err != nil {
			return err
		}
		// Collect first: deleting under a cursor skips keys.
		var old [][]byte
		c := byTime.Cursor()
		for k, _ := c.First(); k != nil && len(old) < limit; k, _ = c.Next() {
			if len(k) < 8 {
				return fmt.Errorf("%s key %x: %w", bucketEventsByTime, k, errCorrupt)
			}
			if binary.BigEndian.Uint64(k) >= cut {
				break
			}
			old = append(old, slices.Clone(k))
		}
		for _, k := range old {
			if err := byTime.Delete(k); err != nil {
				return err
			}
			if err := events.Delete(k[8:]); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bolt: prune events: %w", err)
	}
	return n, nil
}

// indexEvents makes events_by_time from events, migrateBatch keys to a
// transaction (a store of schema 3 kept no index: every event it
// processed is there, however old), and then sets the schema to 4 in
// place. A run cut short leaves schema 3 and keys that the next run puts
// again, unchanged.
func indexEvents(db *bbolt.DB, from uint64, log interface{ Info(string, ...any) }) error {
	start := time.Now()
	var after []byte
	n := 0
	for {
		more := false
		err := db.Update(func(tx *bbolt.Tx) error {
			events := optionalBucket(tx, bucketEvents) // a migration copies no empty bucket
			byTime, err := createdBucket(tx, bucketEventsByTime)
			if err != nil || events == nil {
				return err
			}
			c := events.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = seekFrom(c, after, true, true)
			}
			for i := 0; k != nil; k, v = c.Next() {
				if i == migrateBatch {
					more = true
					break
				}
				if len(v) != 8 {
					return fmt.Errorf("event %s: processed-at is %d bytes, want 8", k, len(v))
				}
				if err := byTime.Put(eventTimeKey(binary.BigEndian.Uint64(v), k), nil); err != nil {
					return err
				}
				after, i, n = slices.Clone(k), i+1, n+1
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("index events: %w", err)
		}
		if !more {
			break
		}
	}
	if from == 3 {
		err := db.Update(func(tx *bbolt.Tx) error {
			meta, err := bucket(tx, bucketMeta)
			if err != nil {
				return err
			}
			return setSchema(meta, schemaVersion)
		})
		if err != nil {
			return err
		}
	}
	log.Info("bolt: indexed the processed events by time", "events", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

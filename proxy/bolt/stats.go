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

// The dashboard's counters (proxy.SubscriptionFacts), kept in the same
// transaction as the subscriptions they count:
//
//	stats  proxy.Fact.Key()  → count, amount: two int64 big-endian
//
// CommitCustomer takes the stored subscriptions' facts away and adds the
// fresh ones', so reading the dashboard reads a few hundred counters, never
// the subscriptions.
const bucketStats = "stats"

// countFacts adds (sign 1) or takes away (sign -1) the facts of subs.
func countFacts(tx *bbolt.Tx, subs []proxy.Subscription, sign int64) error {
	if len(subs) == 0 {
		return nil
	}
	b, err := createdBucket(tx, bucketStats)
	if err != nil {
		return err
	}
	for i := range subs {
		for _, c := range proxy.SubscriptionFacts(&subs[i]) {
			key := []byte(c.Key())
			var count, amount int64
			if v := b.Get(key); len(v) == 16 {
				count, amount = int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:]))
			}
			count += sign * c.Count
			amount += sign * c.Amount
			if count == 0 && amount == 0 {
				if err := b.Delete(key); err != nil {
					return err
				}
				continue
			}
			if err := b.Put(key, append(be64(count), be64(amount)...)); err != nil {
				return fmt.Errorf("counter %q: %w", key, err)
			}
		}
	}
	return nil
}

// Dashboard reads the counters and builds the dashboard at the store's
// now: the undated counters and the dated ones of the last
// proxy.DashboardDays days.
func (s *Store) Dashboard(ctx context.Context) (proxy.Dashboard, error) {
	now := s.now()
	var counters []proxy.Counter
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		counters = nil
		b := optionalBucket(tx, bucketStats)
		if b == nil {
			return nil
		}
		read := func(from, prefix []byte) error {
			c := b.Cursor()
			for k, v := c.Seek(from); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				f, err := proxy.ParseFactKey(string(k))
				if err != nil {
					return err
				}
				if len(v) != 16 {
					return fmt.Errorf("counter %q is %d bytes, want 16", k, len(v))
				}
				counters = append(counters, proxy.Counter{Fact: f, Count: int64(binary.BigEndian.Uint64(v)), Amount: int64(binary.BigEndian.Uint64(v[8:]))})
			}
			return nil
		}
		for _, kind := range []proxy.FactKind{proxy.FactStatus, proxy.FactRevenue, proxy.FactTrial} {
			p := []byte(string(kind) + "\x00")
			if err := read(p, p); err != nil {
				return err
			}
		}
		first := now.AddDate(0, 0, 1-proxy.DashboardDays)
		for _, kind := range proxy.DatedKinds() {
			if err := read([]byte(proxy.DatedKey(kind, first)), []byte(string(kind)+"\x00")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return proxy.Dashboard{}, fmt.Errorf("bolt: dashboard: %w", err)
	}
	return proxy.BuildDashboard(counters, now), nil
}

// Now is the store's clock (Options.Now).
func (s *Store) Now() time.Time { return s.now() }

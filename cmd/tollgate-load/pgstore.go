package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
	"github.com/tollgate/tollgate/proxy/cache"
	"github.com/tollgate/tollgate/proxy/postgres"
	"github.com/tollgate/tollgate/proxy/postgres/pgtest"
	"github.com/tollgate/tollgate/proxy/stripe"
)

// loadStore is what the scenarios ask of either store.
type loadStore interface {
	stripe.Store
	proxy.EntitlementSource
	Close() error
}

// openLoadStore opens a fresh store of the kind named ("bolt" or
// "postgres"). PostgreSQL is dsn's database, or, without one, a throwaway
// cluster started here (fsync and synchronous_commit on, as in
// production) and removed by the returned cleanup.
func openLoadStore(ctx context.Context, kind, dsn string) (loadStore, string, func(), error) {
	switch kind {
	case "bolt":
		dir, err := os.MkdirTemp("", "tollgate-load-")
		if err != nil {
			return nil, "", nil, err
		}
		s, err := bolt.Open(filepath.Join(dir, "tollgate.db"), bolt.Options{})
		if err != nil {
			os.RemoveAll(dir)
			return nil, "", nil, err
		}
		return s, "bbolt", func() { s.Close(); os.RemoveAll(dir) }, nil
	case "postgres":
		desc := "PostgreSQL at -dsn"
		cleanup := func() {}
		if dsn == "" {
			c, err := pgtest.StartCluster(pgtest.Options{Durable: true})
			if err != nil {
				return nil, "", nil, err
			}
			if dsn, err = c.CreateDB(ctx, fmt.Sprintf("load_%d", time.Now().UnixNano())); err != nil {
				c.Remove()
				return nil, "", nil, err
			}
			desc, cleanup = "PostgreSQL (a throwaway local cluster, fsync and synchronous_commit on)", func() { c.Remove() }
		}
		s, err := postgres.Open(ctx, dsn, postgres.Options{Migrate: true, MaxConns: 16})
		if err != nil {
			cleanup()
			return nil, "", nil, err
		}
		return s, desc, func() { s.Close(); cleanup() }, nil
	}
	return nil, "", nil, fmt.Errorf("unknown store %q; want bolt or postgres", kind)
}

// coldMisses commits n paying customers of distinct users, then reads
// each user once through an empty LRU (the request path's miss), and
// returns the reads' latencies, sorted.
func coldMisses(ctx context.Context, s loadStore, n int) ([]time.Duration, error) {
	now := time.Now()
	for i := range n {
		st := proxy.CustomerState{CustomerID: fmt.Sprintf("cus_cold_%d", i), Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: fmt.Sprintf("user_cold_%d", i)},
			Subscriptions: []proxy.Subscription{{ID: fmt.Sprintf("sub_cold_%d", i), Status: proxy.StatusActive, Plan: "pro", PriceIDs: []string{"price_pro"},
				CurrentPeriodEnd: now.Add(30 * 24 * time.Hour)}}}
		if _, _, err := s.CommitCustomer(ctx, st, ""); err != nil {
			return nil, err
		}
	}
	lru, err := cache.NewEntitlementCache(s, n)
	if err != nil {
		return nil, err
	}
	out := make([]time.Duration, 0, n)
	for _, i := range randPerm(n) {
		start := time.Now()
		e, err := lru.Entitlements(ctx, proxy.Subject{Kind: proxy.SubjectUser, ID: fmt.Sprintf("user_cold_%d", i)})
		took := time.Since(start)
		if err != nil || e == nil || len(e.Subscriptions) != 1 {
			return nil, fmt.Errorf("cold read %d: %v %v", i, e, err)
		}
		out = append(out, took)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out, nil
}

// randPerm is 0..n-1 in an order no index favours.
func randPerm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = (i*7919 + 13) % n
	}
	if n%7919 == 0 {
		for i := range p {
			p[i] = i
		}
	}
	return slices.Clip(p)
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

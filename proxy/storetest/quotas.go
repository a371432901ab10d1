package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/limits"
)

// QuotaCounters runs the limits.Store suite against stores made fresh by
// open. multiReplica says whether the store is shared by replicas (each
// replica's counts are kept apart and summed); bbolt's is not, but it
// keeps the replica names all the same.
func QuotaCounters(t *testing.T, open func(t *testing.T) limits.Store) {
	ctx := context.Background()
	jan := time.Date(2025, 1, 15, 9, 30, 0, 0, time.UTC)
	feb := time.Date(2025, 2, 15, 9, 30, 0, 0, time.UTC)
	mar := time.Date(2025, 3, 15, 9, 30, 0, 0, time.UTC)
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	acme := proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"}
	key := func(sub proxy.Subject, plan, route string, start, end time.Time) proxy.QuotaKey {
		return proxy.QuotaKey{Subject: sub, Plan: plan, Route: route, Start: start, End: end}
	}
	proJan := key(ada, "pro", "258AVO", jan, feb)
	check := func(t *testing.T, s limits.Store, replica string, k proxy.QuotaKey, wantOwn, wantTotal int64) {
		t.Helper()
		own, total, err := s.QuotaCount(ctx, replica, k)
		if err != nil {
			t.Fatal(err)
		}
		if own != wantOwn || total != wantTotal {
			t.Errorf("QuotaCount(%q, %s %s) = own %d total %d, want %d and %d", replica, k.Plan, k.Route, own, total, wantOwn, wantTotal)
		}
	}

	t.Run("an unknown counter is zero", func(t *testing.T) {
		s := open(t)
		check(t, s, "", proJan, 0, 0)
	})

	t.Run("saved values are absolute and idempotent", func(t *testing.T) {
		s := open(t)
		for _, used := range []int64{3, 7, 7, 7} { // the same flush repeated
			if err := s.SaveQuotaCounts(ctx, "", []proxy.QuotaCount{{Key: proJan, Used: used}}); err != nil {
				t.Fatal(err)
			}
		}
		check(t, s, "", proJan, 7, 7)
	})

	t.Run("an older flush never lowers a counter", func(t *testing.T) {
		s := open(t)
		for _, used := range []int64{9, 4} {
			if err := s.SaveQuotaCounts(ctx, "", []proxy.QuotaCount{{Key: proJan, Used: used}}); err != nil {
				t.Fatal(err)
			}
		}
		check(t, s, "", proJan, 9, 9)
	})

	t.Run("replicas are kept apart and summed", func(t *testing.T) {
		s := open(t)
		if err := s.SaveQuotaCounts(ctx, "r1", []proxy.QuotaCount{{Key: proJan, Used: 5}}); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveQuotaCounts(ctx, "r2", []proxy.QuotaCount{{Key: proJan, Used: 2}}); err != nil {
			t.Fatal(err)
		}
		check(t, s, "r1", proJan, 5, 7)
		check(t, s, "r2", proJan, 2, 7)
		check(t, s, "r3", proJan, 0, 7)
	})

	t.Run("counters are per subject, plan, route and window", func(t *testing.T) {
		s := open(t)
		others := []proxy.QuotaCount{
			{Key: key(acme, "pro", "258AVO", jan, feb), Used: 1},
			{Key: key(ada, "free", "258AVO", jan, feb), Used: 2},
			{Key: key(ada, "pro", "*", jan, feb), Used: 3},
			{Key: key(ada, "pro", "258AVO", feb, mar), Used: 4},
			{Key: proJan, Used: 5},
		}
		if err := s.SaveQuotaCounts(ctx, "", others); err != nil {
			t.Fatal(err)
		}
		for _, qc := range others {
			check(t, s, "", qc.Key, qc.Used, qc.Used)
		}
	})

	t.Run("usage lists a subject's current windows", func(t *testing.T) {
		s := open(t)
		counts := []proxy.QuotaCount{
			{Key: key(ada, "pro", "258AVO", jan, feb), Used: 10},                             // ended at feb
			{Key: key(ada, "pro", "258AVO", feb, mar), Used: 4},                              // current
			{Key: key(ada, "pro", "*", feb.Add(-time.Hour), feb.Add(23*time.Hour)), Used: 6}, // current
			{Key: key(acme, "team", "*", feb, mar), Used: 8},                                 // another subject
		}
		if err := s.SaveQuotaCounts(ctx, "r1", counts); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveQuotaCounts(ctx, "r2", []proxy.QuotaCount{{Key: key(ada, "pro", "258AVO", feb, mar), Used: 1}}); err != nil {
			t.Fatal(err)
		}
		got, err := s.QuotaUsage(ctx, ada, feb.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		want := []proxy.QuotaCount{
			{Key: key(ada, "pro", "*", feb.Add(-time.Hour), feb.Add(23*time.Hour)), Used: 6},
			{Key: key(ada, "pro", "258AVO", feb, mar), Used: 5},
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("usage (-want +got):\n%s", d)
		}
		none, err := s.QuotaUsage(ctx, proxy.Subject{Kind: proxy.SubjectUser, ID: "user_nobody"}, feb)
		if err != nil || len(none) != 0 {
			t.Errorf("usage of a subject with no counters = %v, %v; want none", none, err)
		}
	})

	t.Run("prune deletes ended windows only", func(t *testing.T) {
		s := open(t)
		old, cur := key(ada, "pro", "258AVO", jan, feb), key(ada, "pro", "258AVO", feb, mar)
		if err := s.SaveQuotaCounts(ctx, "", []proxy.QuotaCount{{Key: old, Used: 3}, {Key: cur, Used: 4}}); err != nil {
			t.Fatal(err)
		}
		n, err := s.PruneQuotaCounts(ctx, feb.Add(time.Hour))
		if err != nil || n != 1 {
			t.Errorf("prune = %d, %v; want 1", n, err)
		}
		check(t, s, "", old, 0, 0)
		check(t, s, "", cur, 4, 4)
	})

	t.Run("invalid keys are refused", func(t *testing.T) {
		s := open(t)
		for _, k := range []proxy.QuotaKey{
			key(proxy.Subject{}, "pro", "*", jan, feb),
			key(ada, "", "*", jan, feb),
			key(ada, "pro", "", jan, feb),
			key(ada, "pro", "*", feb, jan),
		} {
			if err := s.SaveQuotaCounts(ctx, "", []proxy.QuotaCount{{Key: k, Used: 1}}); err == nil {
				t.Errorf("saving %+v succeeded", k)
			}
		}
	})
}

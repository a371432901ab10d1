package postgres

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/limits"
	"github.com/tollgate/tollgate/proxy/storetest"
)

// TestQuotaCounters runs the quota counters' suite (limits.Store) against
// PostgreSQL: each store a fresh database.
func TestQuotaCounters(t *testing.T) {
	storetest.QuotaCounters(t, func(t *testing.T) limits.Store { return open(t, time.Now) })
}

var (
	_ limits.Store      = (*Store)(nil)
	_ limits.BatchStore = (*Store)(nil)
)

// Two replicas, each its own opening of one database (its own writer),
// wired as app.go wires them (Shared: each flush reads the other's
// counts), admit and flush at once, round after round: the quota is kept within
// README "Limits"' bound (at most what the other replica admits between
// two reads), and the store's total is exactly what was admitted.
func TestQuotaCounters_TwoReplicasWithinTheBound(t *testing.T) {
	ctx := context.Background()
	const q, perInterval = 100, 7
	jan1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return jan1.Add(time.Hour) }
	a := open(t, now)
	b, err := Open(ctx, a.dsn, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Writer() == b.Writer() {
		t.Fatalf("two openings share the writer %q", a.Writer())
	}
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Quota: q, Period: proxy.PeriodMonth}}
	var reps []*limits.Limiter
	for _, s := range []*Store{a, b} {
		l, err := limits.New(limits.Options{Store: s, Replica: s.Writer(), Shared: true, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, l)
	}
	admitted, refusedRounds := 0, 0
	for round := 0; refusedRounds < 3 && round < 100; round++ {
		counts := make([]int, len(reps))
		var wg sync.WaitGroup
		for i, l := range reps {
			wg.Go(func() {
				for range perInterval {
					ad, err := l.Admit(ctx, ada, "pro", e, time.Time{}, now())
					if err != nil {
						t.Error(err)
						return
					}
					if ad.Reason == limits.Allowed {
						counts[i]++
						ad.Settle(http.StatusOK, 1)
					}
				}
				if err := l.Flush(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if counts[0]+counts[1] == 0 {
			refusedRounds++
		}
		admitted += counts[0] + counts[1]
	}
	if admitted < q || admitted > q+2*perInterval {
		t.Errorf("two replicas admitted %d against a quota of %d; want %d to %d", admitted, q, q, q+2*perInterval)
	}
	key := proxy.QuotaKey{Subject: ada, Plan: "pro", Route: "*", Start: jan1, End: jan1.AddDate(0, 1, 0)}
	if _, total, err := a.QuotaCount(ctx, "", key); err != nil || total != int64(admitted) {
		t.Errorf("the store holds %d (%v), %d were admitted", total, err, admitted)
	}
	t.Logf("two replicas on PostgreSQL, quota %d, %d a replica between flushes: %d admitted", q, perInterval, admitted)
}

// QuotaCounts reads many counters in one statement and answers, key by
// key and in their order, what QuotaCount answers: a flush re-reads every
// counter a replica holds (limits.Options.Shared), one round trip in all.
func TestQuotaCounts_AsQuotaCountKeyByKey(t *testing.T) {
	ctx := context.Background()
	jan1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := open(t, func() time.Time { return jan1.Add(time.Hour) })
	key := func(id, route string) proxy.QuotaKey {
		return proxy.QuotaKey{Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: id}, Plan: "pro", Route: route, Start: jan1, End: jan1.AddDate(0, 1, 0)}
	}
	ada, adaAPI, bob, none := key("user_ada", "*"), key("user_ada", "api"), key("user_bob", "*"), key("user_cy", "*")
	for _, w := range []struct {
		replica string
		counts  []proxy.QuotaCount
	}{
		{"r1", []proxy.QuotaCount{{Key: ada, Used: 3}, {Key: bob, Used: 7}}},
		{"r2", []proxy.QuotaCount{{Key: ada, Used: 5}, {Key: adaAPI, Used: 2}}},
	} {
		if err := s.SaveQuotaCounts(ctx, w.replica, w.counts); err != nil {
			t.Fatal(err)
		}
	}
	keys := []proxy.QuotaKey{bob, none, ada, adaAPI, ada}
	own, total, err := s.QuotaCounts(ctx, "r1", keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(own) != len(keys) || len(total) != len(keys) {
		t.Fatalf("QuotaCounts: %d and %d answers for %d keys", len(own), len(total), len(keys))
	}
	for i, k := range keys {
		o, tot, err := s.QuotaCount(ctx, "r1", k)
		if err != nil {
			t.Fatal(err)
		}
		if own[i] != o || total[i] != tot {
			t.Errorf("key %d (%s %s): QuotaCounts %d/%d, QuotaCount %d/%d", i, k.Subject, k.Route, own[i], total[i], o, tot)
		}
	}
	if own, total, err := s.QuotaCounts(ctx, "r1", nil); err != nil || len(own)+len(total) != 0 {
		t.Errorf("no keys: %v %v %v", own, total, err)
	}
}

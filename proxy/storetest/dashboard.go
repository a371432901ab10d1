package storetest

import (
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate/proxy"
)

// model is what the customers' subscriptions are, as the test wrote them:
// the dashboard a store answers must be BuildDashboard of their facts.
type model map[string][]proxy.Subscription

func (m model) dashboard(now time.Time) proxy.Dashboard {
	sums := map[proxy.Fact]*proxy.Counter{}
	for _, id := range slices.Sorted(maps.Keys(m)) {
		for i := range m[id] {
			for _, c := range proxy.SubscriptionFacts(&m[id][i]) {
				if sums[c.Fact] == nil {
					sums[c.Fact] = &proxy.Counter{Fact: c.Fact}
				}
				sums[c.Fact].Count += c.Count
				sums[c.Fact].Amount += c.Amount
			}
		}
	}
	var counters []proxy.Counter
	for _, c := range sums {
		counters = append(counters, *c)
	}
	slices.SortFunc(counters, func(a, b proxy.Counter) int {
		if a.Key() < b.Key() {
			return -1
		}
		return 1
	})
	return proxy.BuildDashboard(counters, now)
}

// Dashboard runs the gateway.AdminStore dashboard suite: the counters kept
// with the writes equal those of the subscriptions stored, after every
// kind of write.
func Dashboard(t *testing.T, open Open) {
	opts := cmp.Options{cmpopts.IgnoreUnexported(proxy.PlanBreakdown{}), equateEmpty()}
	check := func(t *testing.T, s Store, m model, now time.Time, step string) {
		t.Helper()
		got, err := s.Dashboard(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(m.dashboard(now), got, opts); diff != "" {
			t.Errorf("%s: dashboard (-from the subscriptions +the store's counters):\n%s", step, diff)
		}
	}
	commit := func(t *testing.T, s Store, m model, st proxy.CustomerState) {
		t.Helper()
		mustCommit(t, s, st, "")
		if st.Deleted {
			delete(m, st.CustomerID)
		} else {
			m[st.CustomerID] = slices.Clone(st.Subscriptions)
		}
	}
	day := 24 * time.Hour
	trial := func(id string, st proxy.SubscriptionStatus, plan string) proxy.Subscription {
		s := priced(id, st, plan)
		s.TrialEnd = T0().Add(-time.Hour)
		return s
	}

	t.Run("counters follow every write", func(t *testing.T) {
		s, clk := fresh(t, open)
		m := model{}
		check(t, s, m, T0(), "empty")
		yearly := priced("sub_y", proxy.StatusActive, "pro")
		yearly.Amount, yearly.Interval, yearly.Currency = 12000, "year", "EUR"
		unpriced := priced("sub_u", proxy.StatusActive, "team")
		unpriced.Amount = 0
		commit(t, s, m, proxy.CustomerState{CustomerID: "cus_a", Subject: userSubject("user_a"),
			Subscriptions: []proxy.Subscription{priced("sub_a", proxy.StatusActive, "pro"), yearly, unpriced}})
		commit(t, s, m, proxy.CustomerState{CustomerID: "cus_b", Subject: userSubject("user_b"),
			Subscriptions: []proxy.Subscription{priced("sub_b", proxy.StatusTrialing, "pro")}})
		commit(t, s, m, proxy.CustomerState{CustomerID: "cus_orphan",
			Subscriptions: []proxy.Subscription{priced("sub_o", proxy.StatusPastDue, "team")}})
		commit(t, s, m, proxy.CustomerState{CustomerID: "cus_t", Subject: orgSubject("org_t"),
			Subscriptions: []proxy.Subscription{trial("sub_t1", proxy.StatusActive, "team"), trial("sub_t2", proxy.StatusCanceled, "pro")}})
		check(t, s, m, T0(), "after the first commits")
		if d, _ := s.Dashboard(t.Context()); d.Active != 4 || d.Trialing != 1 || d.PastDue != 1 || d.Canceled != 1 || d.Unpriced != 1 {
			t.Errorf("dashboard: active %d trialing %d past due %d canceled %d unpriced %d; want 4 1 1 1 1",
				d.Active, d.Trialing, d.PastDue, d.Canceled, d.Unpriced)
		}

		// Updates replace what a subscription counted: the trial converts,
		// one is canceled today, a price changes, one disappears.
		converted := priced("sub_b", proxy.StatusActive, "pro")
		converted.TrialEnd = T0()
		canceled := priced("sub_a", proxy.StatusCanceled, "pro")
		canceled.EndedAt = T0().Add(time.Hour)
		dearer := yearly
		dearer.Amount = 24000
		commit(t, s, m, proxy.CustomerState{CustomerID: "cus_b", Subject: userSubject("user_b"), Subscriptions: []proxy.Subscription{converted}})
		commit(t, s, m, proxy.CustomerState{CustomerID: "cus_a", Subject: userSubject("user_a"), Subscriptions: []proxy.Subscription{canceled, dearer}})
		check(t, s, m, T0(), "after the updates")

		// The same state again changes nothing.
		commit(t, s, m, proxy.CustomerState{CustomerID: "cus_a", Subject: userSubject("user_a"), Subscriptions: []proxy.Subscription{canceled, dearer}})
		check(t, s, m, T0(), "after a repeated commit")

		// Relinks, comps and users change no subscription.
		must(t, s.LinkCustomer(t.Context(), userSubject("user_c"), "cus_orphan"))
		mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_b", Subject: userSubject("user_c"), Subscriptions: []proxy.Subscription{converted}}, "")
		mustPutComp(t, s, proxy.Comp{ID: "comp_1", Subject: userSubject("user_d"), Plan: "pro", ExpiresAt: T0().Add(day)})
		must(t, s.DeleteUser(t.Context(), "user_a"))
		check(t, s, m, T0(), "after relinks, a comp and a user's deletion")

		// Deletions take a customer's subscriptions away.
		commit(t, s, m, proxy.CustomerState{CustomerID: "cus_t", Deleted: true})
		commit(t, s, m, proxy.CustomerState{CustomerID: "cus_never", Deleted: true})
		check(t, s, m, T0(), "after the deletions")

		// The days move with the store's clock, not with a write.
		clk.Set(T0().Add(10 * day))
		check(t, s, m, T0().Add(10*day), "ten days later")
		if added, _ := func() (int64, int64) { d, _ := s.Dashboard(t.Context()); return d.Window(7) }(); added != 0 {
			t.Errorf("new in the week ten days on: %d, want 0", added)
		}
	})

	// Concurrent commits of different customers each add their own
	// facts, none lost to another's update of the same counter.
	t.Run("concurrent commits count every subscription", func(t *testing.T) {
		s, _ := fresh(t, open)
		m := model{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				id := string(rune('a' + i))
				st := proxy.CustomerState{CustomerID: "cus_" + id, Subject: userSubject("user_" + id),
					Subscriptions: []proxy.Subscription{priced("sub_"+id, proxy.StatusActive, "pro")}}
				if _, _, err := s.CommitCustomer(t.Context(), st, ""); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				m[st.CustomerID] = st.Subscriptions
				mu.Unlock()
			})
		}
		wg.Wait()
		check(t, s, m, T0(), "after 20 concurrent commits")
		if p, err := s.ListPage(t.Context(), proxy.UserFilter{Status: "active"}); err != nil || p.Total != 20 {
			t.Errorf("active total %d, %v; want 20", p.Total, err)
		}
	})
}

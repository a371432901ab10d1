package stripe

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// backlog is the store's backlog now.
func (h *harness) backlog() proxy.Backlog {
	bl, err := h.b.Backlog(context.Background())
	if err != nil {
		panic(err)
	}
	return bl
}

// drainDirty syncs every marked customer once, in the test's goroutine,
// as the worker would (its pacing is TestDirty_ConvergesWithinBacklogOverPace's).
func (h *harness) drainDirty(t *testing.T) {
	t.Helper()
	for range 100 {
		marks, _, err := h.store.DirtyDue(t.Context(), h.clock.Now().Add(time.Hour), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(marks) == 0 {
			return
		}
		for _, m := range marks {
			h.b.syncDirty(t.Context(), m)
		}
	}
	t.Fatalf("backlog not drained: %+v", h.backlog())
}

// spentBackground leaves the background lane without room for an eager
// sync: every customer-naming webhook is marked dirty.
func spentBackground(h *harness) {
	h.b.SetPacing(Pacing{Background: Lane{Rate: 1e-3, Burst: 4}})
	h.b.background.drain()
}

// markedAda gives Ada an active subscription and delivers its webhook with
// the background lane spent, so that her customer stays marked for the
// worker rather than synced at once.
func markedAda(t *testing.T, h *harness) (cus, sub string) {
	t.Helper()
	cus, sub = withActiveAda(h)
	spentBackground(h)
	if rec := h.deliver(event("evt_1", "customer.subscription.updated", subObject(sub, cus, "active"))); rec.Code != http.StatusOK {
		t.Fatal(rec.Code)
	}
	return cus, sub
}

// virtualLanes runs the background lane and the worker's waits on the
// test's clock: a wait advances it.
func virtualLanes(h *harness, lane Lane) {
	h.b.SetPacing(Pacing{Background: lane})
	bk := h.b.background
	bk.mu.Lock()
	bk.now, bk.last, bk.tokens = h.clock.Now, h.clock.Now(), float64(lane.Burst)
	bk.mu.Unlock()
}

// Ensure a burst is acknowledged without a Stripe call, many events of one
// customer fold into one mark and one fetch, duplicates do nothing, and
// the state committed is Stripe's, whatever the (reordered, stale) event
// bodies said.
func TestDirty_BurstIsDeferredFoldedAndConvergesOnStripe(t *testing.T) {
	h := newHarness(t)
	spentBackground(h)
	const customers = 5
	cus := make([]string, customers)
	subs := make([]string, customers)
	for i := range cus {
		cus[i] = h.stripe.customer("", map[string]string{MetaUserID: fmt.Sprintf("user_%d", i)})
		subs[i] = h.stripe.subscribeWith(cus[i], "active", "price_pro")
	}
	h.stripe.setStatus(subs[0], "canceled") // after its events were "sent" below, say
	n := 0
	for round := range 4 {
		for i := range cus {
			// The bodies lie (a stale status, events out of order):
			// only the customer ID is read.
			status := []string{"canceled", "active", "past_due", "incomplete"}[(round+i)%4]
			body := event(fmt.Sprintf("evt_%d_%d", round, i), "customer.subscription.updated", subObject(subs[i], cus[i], status))
			if rec := h.deliver(body); rec.Code != http.StatusOK {
				t.Fatalf("event %d: %d", n, rec.Code)
			}
			n++
		}
	}
	if rec := h.deliver(event("evt_0_0", "customer.subscription.deleted", subObject(subs[0], cus[0], "canceled"))); rec.Code != http.StatusOK {
		t.Fatalf("duplicate: %d", rec.Code)
	}
	if c := h.calls.all(); len(c) != 0 {
		t.Fatalf("%d Stripe calls while acknowledging a burst, want none", len(c))
	}
	if bl := h.backlog(); bl.Customers != customers || !bl.Oldest.Equal(h.clock.Now()) {
		t.Fatalf("backlog = %+v, want %d customers", bl, customers)
	}
	h.drainDirty(t)
	if got := len(h.calls.to("GET", "/v1/customers/")); got != customers {
		t.Errorf("%d customer fetches for %d events over %d customers, want one per customer", got, n, customers)
	}
	for i := range cus {
		want := map[string]proxy.SubscriptionStatus{subs[i]: proxy.StatusActive}
		if i == 0 {
			want[subs[i]] = proxy.StatusCanceled
		}
		ents, _ := h.cache.last(proxy.Subject{Kind: proxy.SubjectUser, ID: fmt.Sprintf("user_%d", i)})
		if diff := cmp.Diff(want, statuses(ents)); diff != "" {
			t.Errorf("customer %d (-Stripe +tollgate):\n%s", i, diff)
		}
	}
	if bl := h.backlog(); bl != (proxy.Backlog{}) {
		t.Errorf("backlog after the drain: %+v", bl)
	}
}

// Ensure an event that arrives while the worker is reading its customer
// from Stripe keeps the customer marked: the fetch may predate the change.
func TestDirty_EventDuringTheFetchKeepsTheMark(t *testing.T) {
	h := newHarness(t)
	cus, sub := markedAda(t, h)
	var once sync.Once
	h.calls.setHook(func(method, path string) {
		if path == "/v1/subscriptions" {
			once.Do(func() {
				h.stripe.setStatus(sub, "canceled")
				if rec := h.deliver(event("evt_2", "customer.subscription.deleted", subObject(sub, cus, "canceled"))); rec.Code != http.StatusOK {
					t.Errorf("event during the fetch: %d", rec.Code)
				}
			})
		}
	})
	marks, _, _ := h.store.DirtyDue(t.Context(), h.clock.Now(), 10)
	h.b.syncDirty(t.Context(), marks[0])
	if bl := h.backlog(); bl.Customers != 1 {
		t.Fatalf("backlog after a fetch that raced an event: %+v, want the customer still marked", bl)
	}
	h.drainDirty(t)
	if ents, _ := h.cache.last(userAda()); statuses(ents)[sub] != proxy.StatusCanceled {
		t.Errorf("after the second fetch: %v, want canceled", statuses(ents))
	}
}

// Ensure the worker drains a backlog within (backlog ÷ pace) plus a
// little, on the test's clock, while an admin's sync made meanwhile finds
// the lane's room and does not wait.
func TestDirty_ConvergesWithinBacklogOverPaceAndEagerSyncsDoNotWait(t *testing.T) {
	h := newHarness(t)
	adaCus, _ := withActiveAda(h)
	const customers = 40
	lane := Lane{Rate: 10, Burst: 10} // 5 customers a second
	spentBackground(h)
	for i := range customers {
		c := h.stripe.customer("", nil)
		h.stripe.subscribeWith(c, "active", "price_pro")
		if rec := h.deliver(event(fmt.Sprintf("evt_%d", i), "customer.updated", map[string]any{"id": c, "object": "customer"})); rec.Code != http.StatusOK {
			t.Fatal(rec.Code)
		}
	}
	virtualLanes(h, lane)
	start := h.clock.Now()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		mu          sync.Mutex
		adminWaited = -1
		drained     = make(chan time.Time, 1)
	)
	h.b.sleep = func(sctx context.Context, d time.Duration) error {
		mu.Lock()
		if adminWaited == 1 { // a wait inside the admin's sync
			adminWaited = 2
		}
		mu.Unlock()
		if bl := h.backlog(); bl.Customers == 0 {
			select {
			case drained <- h.clock.Now():
			default:
			}
			<-sctx.Done()
			return sctx.Err()
		}
		mu.Lock()
		first := adminWaited < 0
		if first {
			adminWaited = 1
		}
		mu.Unlock()
		if first {
			// The worker waits for room: an admin's sync now.
			before := len(h.calls.all())
			if err := h.b.SyncCustomer(t.Context(), adaCus, ""); err != nil {
				t.Errorf("admin sync: %v", err)
			}
			if len(h.calls.all()) < before+2 {
				t.Error("admin sync made no Stripe calls")
			}
			mu.Lock()
			if adminWaited == 2 {
				t.Error("the admin's sync waited behind the backlog")
			}
			adminWaited = 3
			mu.Unlock()
		}
		h.clock.Advance(d)
		return nil
	}
	done := make(chan struct{})
	go func() { h.b.RunDirty(ctx); close(done) }()
	end := <-drained
	cancel()
	<-done
	took := end.Sub(start)
	bound := time.Duration(float64(customers)/(lane.Rate/2)*float64(time.Second)) + 2*time.Second
	if took > bound {
		t.Errorf("drained %d customers in %s of the test's clock, want at most %s (backlog ÷ pace + 2 s)", customers, took, bound)
	}
	if got := len(h.calls.to("GET", "/v1/customers/")); got != customers+1 {
		t.Errorf("%d customer fetches, want %d (one per marked customer, and the admin's)", got, customers+1)
	}
	t.Logf("%d customers drained in %s of the test's clock (bound %s)", customers, took, bound)
}

// Ensure that with bulk work holding the lane at its room, a SyncCustomer
// takes its two calls without a wait, and bulk work then waits.
func TestDirty_RoomIsKeptForEagerSyncs(t *testing.T) {
	h := newHarness(t)
	cus, _ := withActiveAda(h)
	virtualLanes(h, Lane{Rate: 10, Burst: 10})
	for {
		if _, ok := h.b.background.reserveAbove(2); !ok { // the worker's way: stops at the room
			break
		}
	}
	var waits []time.Duration
	h.b.sleep = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return nil }
	if err := h.b.SyncCustomer(t.Context(), cus, ""); err != nil {
		t.Fatal(err)
	}
	if len(waits) != 0 {
		t.Errorf("an eager sync behind bulk work waited %v, want no wait", waits)
	}
	if d, ok := h.b.background.reserveAbove(2); ok || d <= 0 {
		t.Errorf("bulk work after the eager sync: ok %v, wait %v; want it to wait for the room to refill", ok, d)
	}
}

// Ensure the backlog check (advisory: /readyz warns on it, still 200)
// errs while the oldest mark is more than BacklogMaxAge old, and stops
// once the worker catches up.
func TestDirty_ReadinessWarnsWhenFarBehind(t *testing.T) {
	h := newHarness(t)
	check := h.b.BacklogCheck(0)
	markedAda(t, h)
	h.clock.Advance(BacklogMaxAge)
	if err := check(t.Context()); err != nil {
		t.Errorf("at %s: %v, want no warning", BacklogMaxAge, err)
	}
	h.clock.Advance(time.Second)
	if err := check(t.Context()); err == nil {
		t.Error("oldest mark past BacklogMaxAge: no warning, want one")
	}
	h.drainDirty(t)
	if err := check(t.Context()); err != nil {
		t.Errorf("after the drain: %v", err)
	}
}

// Ensure a failed sync puts the mark off with a growing wait capped at
// dirtyRetryMax, and a customer the key cannot see keeps its mark the
// same way (each try counted as customer_unseen) until the key can see
// it: the mark is all that is left of an event already acknowledged, so
// dropping it would lose the event.
func TestDirty_FailuresAndUnseenCustomersBackOffAndKeepTheMark(t *testing.T) {
	obs := &testObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	_, sub := markedAda(t, h)
	// tries syncs the due mark n times, each when due, and returns the
	// wait each left before the next.
	tries := func(n int) []time.Duration {
		t.Helper()
		var dues []time.Duration
		for range n {
			marks, next, _ := h.store.DirtyDue(t.Context(), h.clock.Now(), 10)
			if len(marks) != 1 {
				t.Fatalf("due: %v (next %v)", marks, next)
			}
			h.b.syncDirty(t.Context(), marks[0])
			_, next, _ = h.store.DirtyDue(t.Context(), h.clock.Now(), 10)
			if next.IsZero() {
				t.Fatalf("after try %d: no mark left, want it kept (backlog %+v)", len(dues)+1, h.backlog())
			}
			dues = append(dues, next.Sub(h.clock.Now()))
			h.clock.Advance(next.Sub(h.clock.Now()))
		}
		return dues
	}
	h.calls.fail("GET", "/v1/customers/", 500, "", -1)
	if diff := cmp.Diff([]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, tries(3)); diff != "" {
		t.Errorf("waits after failures (-want +got):\n%s", diff)
	}
	h.calls.clearFailures()
	h.calls.fail("GET", "/v1/customers/", 404, "resource_missing", -1)
	want := []time.Duration{8 * time.Second, 16 * time.Second, 32 * time.Second, 64 * time.Second,
		128 * time.Second, 256 * time.Second, dirtyRetryMax, dirtyRetryMax}
	if diff := cmp.Diff(want, tries(len(want))); diff != "" {
		t.Errorf("waits while the key cannot see the customer (-want +got):\n%s", diff)
	}
	if bl := h.backlog(); bl.Customers != 1 {
		t.Errorf("unseen customer: backlog %+v, want its mark kept", bl)
	}
	if got := obs.count(AnomalyCustomerUnseen); got != len(want) {
		t.Errorf("%d customer_unseen anomalies, want one per try (%d)", got, len(want))
	}
	// The key is put right (or Stripe's read caught up): the next try
	// syncs the customer and clears the mark.
	h.calls.clearFailures()
	h.stripe.setStatus(sub, "canceled")
	h.drainDirty(t)
	if bl := h.backlog(); bl != (proxy.Backlog{}) {
		t.Errorf("backlog once the customer is seen: %+v, want empty", bl)
	}
	if ents, _ := h.cache.last(userAda()); statuses(ents)[sub] != proxy.StatusCanceled {
		t.Errorf("after the key can see the customer: %v, want canceled (the deferred event not lost)", statuses(ents))
	}
}

// Ensure a sync stopped by shutdown leaves its mark as it was read: due at
// the next start, its attempt not counted, so the next real failure waits
// the first step of the backoff rather than a longer one.
func TestDirty_StoppedSyncLeavesTheMarkAsRead(t *testing.T) {
	h := newHarness(t)
	cus, _ := markedAda(t, h)
	before, _, err := h.store.DirtyDue(t.Context(), h.clock.Now(), 10)
	if err != nil || len(before) != 1 {
		t.Fatalf("due: %v, %v", before, err)
	}
	ctx, stop := context.WithCancel(t.Context())
	h.calls.setHook(func(method, path string) {
		if method == "GET" && path == "/v1/customers/"+cus {
			stop() // the gateway shuts down during the fetch
		}
	})
	h.b.syncDirty(ctx, before[0])
	if ctx.Err() == nil {
		t.Fatal("the hook did not stop the sync")
	}
	h.calls.setHook(nil)
	t.Logf("backlog %+v", h.backlog())
	after, _, err := h.store.DirtyDue(t.Context(), h.clock.Now(), 10)
	if diff := cmp.Diff(before, after); err != nil || diff != "" {
		t.Fatalf("mark after a stopped sync (-before +after), %v:\n%s", err, diff)
	}
	h.calls.fail("GET", "/v1/customers/", 500, "", -1)
	h.b.syncDirty(t.Context(), after[0])
	if _, next, _ := h.store.DirtyDue(t.Context(), h.clock.Now(), 10); next.Sub(h.clock.Now()) != time.Second {
		t.Errorf("wait after the first real failure: %v, want 1s", next.Sub(h.clock.Now()))
	}
}

// dueReads calls after with every batch the worker reads from the store.
type dueReads struct {
	Store
	after func(marks []proxy.DirtyMark)
}

func (s *dueReads) DirtyDue(ctx context.Context, now time.Time, limit int) ([]proxy.DirtyMark, time.Time, error) {
	marks, next, err := s.Store.DirtyDue(ctx, now, limit)
	if err == nil {
		s.after(marks)
	}
	return marks, next, err
}

// Ensure a mark the worker read while its customer's sync was in flight,
// and that the sync cleared before the worker reached it, is read again
// rather than synced a second time: one fetch of the customer, not two.
func TestDirty_MarkClearedAfterTheReadIsNotSyncedTwice(t *testing.T) {
	var h *harness
	reads := 0 // only the worker reads through dueReads
	h = newHarness(t, func(c *Config) {
		c.Store = &dueReads{Store: c.Store, after: func([]proxy.DirtyMark) {
			if reads++; reads == 2 {
				// The second batch holds the mark of the sync started
				// from the first: that sync ends (its kick) before the
				// worker looks at the batch.
				<-h.b.dirtyKick
			}
		}}
	})
	cus, _ := markedAda(t, h)
	virtualLanes(h, Lane{Rate: 1000, Burst: 1000})
	select {
	case <-h.b.dirtyKick: // the webhook's, from markedAda
	default:
	}
	// The worker idles only when nothing is due and no sync is in flight:
	// every sync it started has fetched by then.
	idle := make(chan struct{})
	var idleOnce sync.Once
	h.b.sleep = func(ctx context.Context, d time.Duration) error {
		if d == dirtyIdle {
			idleOnce.Do(func() { close(idle) })
		}
		return ctx.Err()
	}
	var fetches atomic.Int32
	h.calls.setHook(func(method, path string) {
		if method == "GET" && path == "/v1/customers/"+cus {
			fetches.Add(1)
		}
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		h.b.RunDirty(ctx)
		close(done)
	}()
	<-idle
	cancel()
	<-done
	h.calls.setHook(nil)
	if n := fetches.Load(); n != 1 {
		t.Errorf("%d fetches of the customer, want 1: a mark its sync had cleared was synced again", n)
	}
	if bl := h.backlog(); bl != (proxy.Backlog{}) {
		t.Errorf("backlog: %+v, want empty", bl)
	}
}

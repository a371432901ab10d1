package stripe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// bgBilling records what the loops ask of Stripe, in order.
type bgBilling struct {
	calls      chan string
	syncAllErr error
	pruned     int // what PruneEvents says it forgot
}

func newBGBilling() *bgBilling { return &bgBilling{calls: make(chan string, 1000)} }

func (f *bgBilling) SyncCustomer(_ context.Context, id, _ string) error {
	f.calls <- "sync " + id
	return nil
}
func (f *bgBilling) RefreshPrices(context.Context) error { f.calls <- "prices"; return nil }
func (f *bgBilling) CatchUp(context.Context) (int, error) {
	f.calls <- "catch-up"
	return 0, nil
}
func (f *bgBilling) SyncAll(context.Context) (int, error) {
	f.calls <- "sync-all"
	return 0, f.syncAllErr
}

func (f *bgBilling) PruneEvents(context.Context) (int, error) {
	f.calls <- "prune"
	return f.pruned, nil
}

// RunDirty is the dirty worker, tested on its own (dirty_test.go).
func (f *bgBilling) RunDirty(ctx context.Context) { <-ctx.Done() }

// next returns the next call, failing the test if none comes.
func (f *bgBilling) next(t *testing.T) string {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no call to Stripe")
		return ""
	}
}

// bgWaits is a sleep the test steps through: every wait is handed to the
// test, and ends when the test says so.
type bgWaits struct {
	asked chan time.Duration
	pass  chan struct{}
}

func newBGWaits() *bgWaits {
	return &bgWaits{asked: make(chan time.Duration), pass: make(chan struct{})}
}

func (w *bgWaits) sleep(ctx context.Context, d time.Duration) error {
	select {
	case w.asked <- d:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-w.pass:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait returns the next wait asked for, failing the test if none comes.
func (w *bgWaits) wait(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-w.asked:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("the loop never waited")
		return 0
	}
}

// bgClock is a clock the test moves.
type bgClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *bgClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *bgClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestBackground(f *bgBilling, cfg BackgroundConfig, now func() time.Time, w *bgWaits) *Background {
	return newBackground(f, cfg, slog.New(slog.DiscardHandler), now, w.sleep)
}

// run runs loop in the background until the test ends, and makes sure it
// has returned by then.
func runLoop(t *testing.T, loop func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { loop(ctx); close(done) }()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the loop did not stop with its context")
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestBackground_StaleCustomerIsResyncedOncePerHourByTheInjectedClock(t *testing.T) {
	clk := &bgClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f := newBGBilling()
	bg := newTestBackground(f, BackgroundConfig{}, clk.Now, newBGWaits())
	bg.Stale("cus_1")
	bg.Stale("cus_1")
	clk.Advance(staleResyncGap - time.Minute)
	bg.Stale("cus_1")
	if n := len(bg.queue); n != 1 {
		t.Fatalf("within the hour: %d re-syncs queued, want 1", n)
	}
	clk.Advance(time.Minute)
	bg.Stale("cus_1")
	bg.Stale("cus_2")
	if n := len(bg.queue); n != 3 {
		t.Fatalf("an hour later, and another customer: %d queued, want 3", n)
	}
	runLoop(t, bg.resyncStale)
	for _, want := range []string{"sync cus_1", "sync cus_1", "sync cus_2"} {
		if got := f.next(t); got != want {
			t.Errorf("call %q, want %q", got, want)
		}
	}
}

func TestBackground_StaleNeverBlocksTheGate(t *testing.T) {
	clk := &bgClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	bg := newTestBackground(newBGBilling(), BackgroundConfig{}, clk.Now, newBGWaits())
	for i := range staleMemoSize + staleQueueSize {
		bg.Stale(fmt.Sprintf("cus_%d", i)) // nobody drains the queue
	}
	if n := len(bg.queue); n != staleQueueSize {
		t.Errorf("queue %d, want full at %d", n, staleQueueSize)
	}
	if n := len(bg.last); n > staleMemoSize+1 {
		t.Errorf("%d customers remembered, want at most %d", n, staleMemoSize+1)
	}
}

func TestBackground_ReconcileOnAnEmptyStoreListsAtOnce(t *testing.T) {
	f, w := newBGBilling(), newBGWaits()
	every := 6 * time.Hour
	bg := newTestBackground(f, BackgroundConfig{ReconcileInterval: every,
		StoreEmpty: func(context.Context) (bool, error) { return true, nil }}, time.Now, w)
	runLoop(t, bg.reconcile)
	if got := f.next(t); got != "catch-up" {
		t.Fatalf("first %q, want the catch-up on undelivered events", got)
	}
	if d := w.wait(t); d != 0 {
		t.Fatalf("first listing after %v, want at once on an empty store", d)
	}
	w.pass <- struct{}{}
	for _, want := range []string{"sync-all", "catch-up"} {
		if got := f.next(t); got != want {
			t.Fatalf("call %q, want %q", got, want)
		}
	}
	if d := w.wait(t); d < every || d > every+every/10 {
		t.Errorf("next listing after %v, want %v plus up to a tenth", d, every)
	}
}

func TestBackground_ReconcileWaitsItsIntervalWhenTheStoreHasCustomers(t *testing.T) {
	f, w := newBGBilling(), newBGWaits()
	f.syncAllErr = errors.New("stripe is down")
	every := time.Hour
	bg := newTestBackground(f, BackgroundConfig{ReconcileInterval: every,
		StoreEmpty: func(context.Context) (bool, error) { return false, nil }}, time.Now, w)
	runLoop(t, bg.reconcile)
	if got := f.next(t); got != "catch-up" {
		t.Fatalf("first %q, want the catch-up", got)
	}
	for range 2 {
		if d := w.wait(t); d < every || d > every+every/10 {
			t.Fatalf("listing after %v, want %v plus up to a tenth", d, every)
		}
		w.pass <- struct{}{}
		// A failed listing is not followed by a catch-up: the next wait.
		if got := f.next(t); got != "sync-all" {
			t.Fatalf("call %q, want sync-all", got)
		}
	}
}

func TestBackground_ReconcileWithoutIntervalOnlyCatchesUp(t *testing.T) {
	f, w := newBGBilling(), newBGWaits()
	bg := newTestBackground(f, BackgroundConfig{}, time.Now, w)
	done := make(chan struct{})
	go func() { bg.reconcile(t.Context()); close(done) }()
	if got := f.next(t); got != "catch-up" {
		t.Fatalf("first %q, want the catch-up", got)
	}
	select {
	case <-done:
	case d := <-w.asked:
		t.Fatalf("waited %v for a listing with reconcile_interval 0 and a store that has customers", d)
	case <-time.After(10 * time.Second):
		t.Fatal("reconcile did not return")
	}
}

func TestBackground_PricesRefreshEveryTenMinutes(t *testing.T) {
	f, w := newBGBilling(), newBGWaits()
	bg := newTestBackground(f, BackgroundConfig{}, time.Now, w)
	runLoop(t, bg.refreshPrices)
	for range 2 {
		if d := w.wait(t); d != 10*time.Minute {
			t.Fatalf("refresh after %v, want 10m", d)
		}
		w.pass <- struct{}{}
		if got := f.next(t); got != "prices" {
			t.Fatalf("call %q, want prices", got)
		}
	}
}

func TestBackground_RunStopsWithItsContext(t *testing.T) {
	bg := newTestBackground(newBGBilling(), BackgroundConfig{ReconcileInterval: time.Hour}, time.Now, newBGWaits())
	stop := runLoop(t, bg.Run)
	stop()
}

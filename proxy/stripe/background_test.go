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

	mu            sync.Mutex
	pricesErr     error
	now           func() time.Time // PublishPrices' stamp
	sharedAt      time.Time        // the price catalogue in the store
	sharedMissing int              // the configured prices it lacks
}

func newBGBilling() *bgBilling { return &bgBilling{calls: make(chan string, 1000), now: time.Now} }

// none fails the test if a call was made that next did not take.
func (f *bgBilling) none(t *testing.T) {
	t.Helper()
	select {
	case c := <-f.calls:
		t.Errorf("unexpected call %q", c)
	default:
	}
}

func (f *bgBilling) SyncCustomer(_ context.Context, id, _ string) error {
	f.calls <- "sync " + id
	return nil
}
func (f *bgBilling) RefreshPrices(context.Context) error {
	f.calls <- "prices"
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pricesErr
}

func (f *bgBilling) setPricesErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pricesErr = err
}
func (f *bgBilling) PublishPrices(context.Context) error {
	f.mu.Lock()
	f.sharedAt, f.sharedMissing = f.now(), 0
	f.mu.Unlock()
	f.calls <- "publish"
	return nil
}
func (f *bgBilling) SharedPrices(context.Context) (time.Time, int, error) {
	f.mu.Lock()
	at, missing := f.sharedAt, f.sharedMissing
	f.mu.Unlock()
	f.calls <- "shared"
	return at, missing, nil
}
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

// TestBackground_PricesRefreshTenMinutesAfterTheStoredCatalogue: the
// leader's refresh comes ten minutes after the catalogue in the store was
// published (by another leader 4 minutes ago: in 6), is published, and the
// next is ten minutes later; a store without one is refreshed at once, and
// a stamp ahead of the clock waits ten minutes, no more.
func TestBackground_PricesRefreshTenMinutesAfterTheStoredCatalogue(t *testing.T) {
	clk := &bgClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f, w := newBGBilling(), newBGWaits()
	f.now, f.sharedAt = clk.Now, clk.Now().Add(-4*time.Minute)
	bg := newTestBackground(f, BackgroundConfig{}, clk.Now, w)
	stop := runLoop(t, bg.refreshPrices)
	for i, want := range []time.Duration{6 * time.Minute, 10 * time.Minute, 10 * time.Minute} {
		if got := f.next(t); got != "shared" {
			t.Fatalf("refresh %d: call %q, want the store's catalogue read first", i, got)
		}
		if d := w.wait(t); d != want {
			t.Fatalf("refresh %d after %v, want %v", i, d, want)
		}
		clk.Advance(want)
		w.pass <- struct{}{}
		for _, c := range []string{"prices", "publish"} {
			if got := f.next(t); got != c {
				t.Fatalf("refresh %d: call %q, want %q", i, got, c)
			}
		}
	}
	stop()

	// A refresh that fails is not published (the stored stamp stays, so
	// the next try is not put off ten minutes), and is tried again a
	// minute later, not at once.
	f, w = newBGBilling(), newBGWaits()
	f.now, f.sharedAt, f.pricesErr = clk.Now, clk.Now().Add(-time.Hour), errors.New("stripe down")
	stop = runLoop(t, newTestBackground(f, BackgroundConfig{}, clk.Now, w).refreshPrices)
	for i, want := range []time.Duration{0, priceRetryEvery, priceRetryEvery} {
		if i == 0 {
			if got := f.next(t); got != "shared" {
				t.Fatalf("call %q, want the store's catalogue read first", got)
			}
		}
		if d := w.wait(t); d != want {
			t.Fatalf("failing refresh %d after %v, want %v", i, d, want)
		}
		clk.Advance(want)
		w.pass <- struct{}{}
		if got := f.next(t); got != "prices" {
			t.Fatalf("failing refresh %d: call %q, want prices (and no publish)", i, got)
		}
	}
	if d := w.wait(t); d != priceRetryEvery {
		t.Fatalf("after the failures: refresh after %v, want %v", d, priceRetryEvery)
	}
	f.setPricesErr(nil) // Stripe answers again: published, then the stamp rules
	clk.Advance(priceRetryEvery)
	w.pass <- struct{}{}
	for _, c := range []string{"prices", "publish", "shared"} {
		if got := f.next(t); got != c {
			t.Fatalf("recovered refresh: call %q, want %q", got, c)
		}
	}
	stop()

	for _, c := range []struct {
		name string
		at   time.Time
		want time.Duration
	}{{"none stored", time.Time{}, 0}, {"stale", clk.Now().Add(-time.Hour), 0}, {"ahead of the clock", clk.Now().Add(time.Hour), 10 * time.Minute}} {
		f, w := newBGBilling(), newBGWaits()
		f.now, f.sharedAt = clk.Now, c.at
		stop := runLoop(t, newTestBackground(f, BackgroundConfig{}, clk.Now, w).refreshPrices)
		if d := w.wait(t); d != c.want {
			t.Errorf("%s: refresh after %v, want %v", c.name, d, c.want)
		}
		stop()
	}
}

// TestBackground_LoadPricesFromAFreshCatalogue: at start, a catalogue in
// the store published within ten minutes and holding every configured
// price is taken without a call to Stripe; one that is stale, lacks a
// price or is absent is replaced by a load from Stripe, then published
// if it succeeded.
func TestBackground_LoadPricesFromAFreshCatalogue(t *testing.T) {
	clk := &bgClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	for _, c := range []struct {
		name    string
		at      time.Time
		missing int
		want    []string
	}{
		{"fresh", clk.Now().Add(-9 * time.Minute), 0, []string{"shared"}},
		{"stale", clk.Now().Add(-11 * time.Minute), 0, []string{"shared", "prices", "publish"}},
		{"a price missing", clk.Now(), 1, []string{"shared", "prices", "publish"}},
		{"none", time.Time{}, 2, []string{"shared", "prices", "publish"}},
		// A load that failed is not stored: stamped now, it would put
		// off the leader's refresh.
		{"none, Stripe failing", time.Time{}, 2, []string{"shared", "prices"}},
	} {
		f := newBGBilling()
		f.now, f.sharedAt, f.sharedMissing = clk.Now, c.at, c.missing
		if c.name == "none, Stripe failing" {
			f.pricesErr = errors.New("stripe down")
		}
		newTestBackground(f, BackgroundConfig{}, clk.Now, newBGWaits()).LoadPrices(t.Context())
		for _, want := range c.want {
			if got := f.next(t); got != want {
				t.Errorf("%s: call %q, want %q", c.name, got, want)
			}
		}
		f.none(t)
	}
}

// TestBackground_RunLocalReadsPricesWithoutCallingStripe: a replica that
// does not lead reads the catalogue from the store every minute and never
// asks Stripe for a price (the leader's RunShared does).
func TestBackground_RunLocalReadsPricesWithoutCallingStripe(t *testing.T) {
	f, w := newBGBilling(), newBGWaits()
	stop := runLoop(t, newTestBackground(f, BackgroundConfig{}, time.Now, w).RunLocal)
	for range 3 {
		if d := w.wait(t); d != time.Minute {
			t.Fatalf("read after %v, want 1m", d)
		}
		w.pass <- struct{}{}
		if got := f.next(t); got != "shared" {
			t.Fatalf("call %q, want the store's catalogue", got)
		}
	}
	stop()
	f.none(t)
}

func TestBackground_RunStopsWithItsContext(t *testing.T) {
	bg := newTestBackground(newBGBilling(), BackgroundConfig{ReconcileInterval: time.Hour}, time.Now, newBGWaits())
	stop := runLoop(t, bg.Run)
	stop()
}

package stripe

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// The background loops keep the store right when webhooks go missing: a
// subscription the gate finds stale is re-synced, the prices on the upgrade
// page are reloaded, and events Stripe failed to deliver are caught up and
// the whole account listed now and then. None of them is on a request's
// path.
const (
	// staleResyncGap is how often one customer may be re-synced because
	// the gate found its subscription stale.
	staleResyncGap = time.Hour
	// staleQueueSize bounds the customers waiting for a stale re-sync; the
	// gate never waits for a place.
	staleQueueSize = 256
	// staleMemoSize bounds the customers remembered for staleResyncGap.
	staleMemoSize = 10000
	// staleSyncTimeout bounds one stale re-sync.
	staleSyncTimeout = 30 * time.Second
	// priceRefreshEvery is how often the configured prices are reloaded
	// from Stripe (by the leader, with several replicas).
	priceRefreshEvery = 10 * time.Minute
	// priceFollowEvery is how often a replica reads the price catalogue
	// the leader published (a read of the store, no call to Stripe).
	priceFollowEvery = time.Minute
	// priceRetryEvery is how soon the leader tries again after a refresh
	// that failed (which it does not publish).
	priceRetryEvery = time.Minute
	// firstPricesTimeout bounds the price load before the gateway serves.
	firstPricesTimeout = 5 * time.Second
)

// BackgroundConfig configures a Background.
type BackgroundConfig struct {
	// ReconcileInterval is stripe.reconcile_interval: how often every
	// subscription is listed account-wide, plus up to a tenth of it at
	// random so a fleet restarted together does not list at once. 0: never
	// (but see StoreEmpty).
	ReconcileInterval time.Duration
	// StoreEmpty reports whether the store knows no customer yet; if so
	// the first reconcile runs at start. nil: the store is taken as not
	// empty.
	StoreEmpty func(context.Context) (bool, error)
}

// loopBilling is what the loops ask of Stripe: a *Billing, or a test's
// fake.
type loopBilling interface {
	SyncCustomer(ctx context.Context, customerID, eventID string) error
	RefreshPrices(ctx context.Context) error
	PublishPrices(ctx context.Context) error
	SharedPrices(ctx context.Context) (time.Time, int, error)
	CatchUp(ctx context.Context) (int, error)
	SyncAll(ctx context.Context) (int, error)
	RunDirty(ctx context.Context)
	PruneEvents(ctx context.Context) (int, error)
}

// Background runs the loops beside the gateway: the re-sync of customers
// the gate reports stale (Stale), the price refresh (and, on a replica
// that does not lead, the reading of the prices the leader stored), the
// reconcile and the dirty worker (dirty.go). It
// uses the Billing's clock, logger and waits. Build it with
// Billing.Background, then call Run once.
type Background struct {
	b     loopBilling
	cfg   BackgroundConfig
	log   *slog.Logger
	obs   EventsObserver // nil: none
	now   func() time.Time
	sleep func(context.Context, time.Duration) error // nil error: d passed; else ctx ended

	queue chan string
	mu    sync.Mutex
	last  map[string]time.Time // customer → when it was last queued
}

// Background returns the loops for b; they start with Run.
func (b *Billing) Background(cfg BackgroundConfig) *Background {
	bg := newBackground(b, cfg, b.log, b.now, b.sleep)
	bg.obs, _ = b.obs.(EventsObserver)
	return bg
}

func newBackground(b loopBilling, cfg BackgroundConfig, log *slog.Logger, now func() time.Time, sleep func(context.Context, time.Duration) error) *Background {
	return &Background{b: b, cfg: cfg, log: log, now: now, sleep: sleep,
		queue: make(chan string, staleQueueSize), last: map[string]time.Time{}}
}

// Stale implements proxy.StaleNotifier: it queues a re-sync of a customer
// whose active period ended long ago without news (a missed webhook), at
// most once per staleResyncGap per customer. It never blocks: when the
// queue is full the customer waits for the next request or the reconcile.
func (bg *Background) Stale(customerID string) {
	now := bg.now()
	bg.mu.Lock()
	if t, ok := bg.last[customerID]; ok && now.Sub(t) < staleResyncGap {
		bg.mu.Unlock()
		return
	}
	if len(bg.last) > staleMemoSize {
		clear(bg.last) // bounded: at worst a customer is re-synced early
	}
	bg.last[customerID] = now
	bg.mu.Unlock()
	select {
	case bg.queue <- customerID:
	default:
	}
}

// LoadPrices loads the configured prices once, for at most a few seconds,
// so the first upgrade page shows amounts: from the catalogue in the store
// when it holds every configured price and was published within
// priceRefreshEvery (another replica's, or this gateway's before a
// restart), else from Stripe, and then publishes them if every one
// loaded. Call it
// before serving; the loops keep them fresh. A failure is logged: it only
// leaves amounts off the page.
func (bg *Background) LoadPrices(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, firstPricesTimeout)
	defer cancel()
	if at, missing, err := bg.b.SharedPrices(ctx); err == nil && missing == 0 && !at.IsZero() && bg.now().Sub(at) < priceRefreshEvery {
		return
	}
	if err := bg.b.RefreshPrices(ctx); err != nil {
		// Not stored: a catalogue stamped now would put off the leader's
		// refresh for ten minutes.
		bg.log.Warn("stripe: loading prices", "err", err)
		return
	}
	if err := bg.b.PublishPrices(ctx); err != nil {
		bg.log.Warn("stripe: storing the prices for the other replicas", "err", err)
	}
}

// Run runs the loops until ctx ends and returns when all have stopped:
// the stale re-syncs and RunShared's, for a gateway alone on its store
// (which refreshes the prices itself, so follows no catalogue).
func (bg *Background) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { bg.resyncStale(ctx) })
	wg.Go(func() { bg.RunShared(ctx) })
	wg.Wait()
}

// RunLocal runs the loops each replica runs for itself until ctx ends:
// the re-syncs of stale customers its own requests queued (Stale), and
// the reading of the price catalogue the leader publishes, for its own
// pages (a read of the store a minute; no call to Stripe).
func (bg *Background) RunLocal(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { bg.resyncStale(ctx) })
	wg.Go(func() { bg.followPrices(ctx) })
	wg.Wait()
}

// RunShared runs the loops that must run once for every replica sharing
// a store until ctx ends: the catch-up of undelivered events, the
// reconcile, the dirty worker and the price refresh, which spend the
// Stripe rate limit for all of them, and the pruning of processed events
// (prune.go). Replicas of one PostgreSQL store run it on the leader only
// (README, "Running several replicas").
func (bg *Background) RunShared(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { bg.reconcile(ctx) })
	wg.Go(func() { bg.b.RunDirty(ctx) })
	wg.Go(func() { bg.pruneEvents(ctx) })
	wg.Go(func() { bg.refreshPrices(ctx) })
	wg.Wait()
}

// resyncStale re-syncs the customers Stale queued, one at a time.
func (bg *Background) resyncStale(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-bg.queue:
			sctx, cancel := context.WithTimeout(ctx, staleSyncTimeout)
			if err := bg.b.SyncCustomer(sctx, id, ""); err != nil && ctx.Err() == nil {
				bg.log.Warn("stripe: re-sync of a stale subscription", "customer", id, "err", err)
			}
			cancel()
		}
	}
}

// refreshPrices reloads the configured prices from Stripe for the upgrade
// page priceRefreshEvery after the catalogue in the store was published
// (so a new leader does not reload what the last one just did, nor wait
// ten minutes more for a stale one), and publishes them for the other
// replicas; a failure only leaves amounts off the page (or stale). A
// refresh that failed is not published, as a replica's load at start is
// not: stamped now, it would put off the next try by ten minutes. The
// leader tries again priceRetryEvery later.
func (bg *Background) refreshPrices(ctx context.Context) {
	failed := false
	for {
		wait := priceRefreshEvery
		if failed {
			wait = priceRetryEvery
		} else if at, _, err := bg.b.SharedPrices(ctx); err == nil {
			// Never sooner than now, never later than priceRefreshEvery
			// (a stamp ahead of this replica's clock).
			wait = min(max(at.Add(priceRefreshEvery).Sub(bg.now()), 0), priceRefreshEvery)
		}
		if bg.sleep(ctx, wait) != nil {
			return
		}
		err := bg.b.RefreshPrices(ctx)
		if failed = err != nil; failed {
			if ctx.Err() == nil {
				bg.log.Warn("stripe: loading prices", "err", err)
			}
			continue
		}
		if err := bg.b.PublishPrices(ctx); err != nil && ctx.Err() == nil {
			bg.log.Warn("stripe: storing the prices for the other replicas", "err", err)
		}
	}
}

// followPrices takes the catalogue the leader publishes every
// priceFollowEvery (a replica that is not leading calls Stripe for no
// price); a failure keeps the prices it has.
func (bg *Background) followPrices(ctx context.Context) {
	for bg.sleep(ctx, priceFollowEvery) == nil {
		if _, _, err := bg.b.SharedPrices(ctx); err != nil && ctx.Err() == nil {
			bg.log.Debug("stripe: reading the prices the leader stored", "err", err)
		}
	}
}

// reconcile first processes the events Stripe failed to deliver while
// tollgate was away, then lists every subscription account-wide (not a
// call per customer): at once when the store is empty, and every
// ReconcileInterval, jittered, so missed webhooks cannot leave state wrong
// for long. After each successful listing it catches up again.
func (bg *Background) reconcile(ctx context.Context) {
	catchUp := func() {
		if n, err := bg.b.CatchUp(ctx); err != nil && ctx.Err() == nil {
			bg.log.Warn("stripe: catching up on undelivered events", "err", err, "processed", n)
		} else if n > 0 {
			bg.log.Info("stripe: caught up on undelivered events", "processed", n)
		}
	}
	catchUp()
	every := bg.cfg.ReconcileInterval
	first := true
	for {
		wait := time.Duration(-1) // never
		if every > 0 {
			wait = every + time.Duration(rand.Int64N(int64(every/10)+1))
		}
		if first {
			first = false
			if bg.cfg.StoreEmpty != nil {
				if empty, err := bg.cfg.StoreEmpty(ctx); err == nil && empty {
					wait = 0
				}
			}
		}
		if wait < 0 {
			return
		}
		if bg.sleep(ctx, wait) != nil {
			return
		}
		n, err := bg.b.SyncAll(ctx)
		if err != nil && ctx.Err() == nil {
			bg.log.Warn("stripe: reconcile", "err", err, "customers", n)
			continue
		}
		bg.log.Info("stripe: reconciled", "customers", n)
		catchUp()
	}
}

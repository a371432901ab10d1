package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/apikey"
	"github.com/tollgate/tollgate/proxy/cache"
	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/config"
	"github.com/tollgate/tollgate/proxy/gateway"
	"github.com/tollgate/tollgate/proxy/limits"
	"github.com/tollgate/tollgate/proxy/metrics"
	"github.com/tollgate/tollgate/proxy/postgres"
	"github.com/tollgate/tollgate/proxy/stripe"
)

// appDeps are the outside things an app can be given instead of the
// real ones (tests and the demo inject clocks and clients).
type appDeps struct {
	Logger     *slog.Logger
	AccessLog  gateway.LineBuffer // only with Logger slog's JSON handler (no options) over the same output
	Now        func() time.Time
	HTTPClient *http.Client // for Clerk's Backend API
	// OwnBodyTimeout shortens proxy.OwnBodyTimeout (tests).
	OwnBodyTimeout time.Duration
	// WrapAPIKeys, if set, wraps the store the API key cache reads
	// (tests: counting its reads).
	WrapAPIKeys func(proxy.APIKeyStore) proxy.APIKeyStore
}

// app is a wired tollgate: the public handler, its parts, and what must
// be closed.
type app struct {
	Handler http.Handler
	Server  *gateway.Server
	Store   appStore            // nil without Clerk or billing
	PG      *postgres.Store     // the same store when store.driver is postgres, else nil
	Billing *stripe.Billing     // nil without billing
	Meters  *stripe.MeterSender // the usage outbox's sender; nil without billing. With PostgreSQL it runs on the leader
	meters  atomic.Pointer[stripe.MeterSender]
	Clerk   *clerk.Client // nil without Clerk
	Cache   *cache.EntitlementCache
	Metrics *metrics.Metrics
	// Keys is the API key store every key lookup and revocation goes
	// through (gate, account page, console, admin API): it caches found
	// keys briefly and drops a key it revokes. nil: api_keys is off.
	Keys *apikey.CachedStore
	// Limiter counts plans' limits for every server a reload builds; its
	// counters are flushed to the store (README "Limits").
	Limiter *limits.Limiter
	// Replicas is this replica's heartbeat and its count of the live
	// replicas (PostgreSQL); nil on bbolt, where the count is limits.One.
	Replicas *postgres.Replicas
	// Several replicas (PostgreSQL): the LRU's miss path refuses while the
	// listener is not following the change log; the leader runs the work
	// done once for all (app.startReplica).
	fresh    *freshEntitlements
	state    *gateway.State
	listener *postgres.Listener
	leader   *postgres.Leader
	shared   func(ctx context.Context)      // the leader's work (Stripe's shared loops); nil without billing
	current  atomic.Pointer[gateway.Server] // swapped by Reload
	opts     gateway.Options                // how the current server was built
	revoker  *lateRevoker
	ownBody  time.Duration // deadline for the bodies of tollgate's own endpoints (admin API too)
	reloads  sync.Mutex
	closers  []func() error
	stop     context.CancelFunc // ends the background loops
	bg       sync.WaitGroup
}

// Close stops the background loops, then closes what was opened, newest
// first (the seen batcher flushes before the store closes).
func (g *app) Close() error {
	if g.stop != nil {
		g.stop()
	}
	g.bg.Wait()
	var errs []error
	for i := len(g.closers) - 1; i >= 0; i-- {
		errs = append(errs, g.closers[i]())
	}
	return errors.Join(errs...)
}

// newApp is the one place that knows every concrete type.
func newApp(cfg *proxy.Config, deps appDeps) (*app, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	g := &app{ownBody: deps.OwnBodyTimeout}
	if g.ownBody <= 0 {
		g.ownBody = gateway.OwnBodyTimeout
	}
	ctx, stop := context.WithCancel(context.Background())
	g.stop = stop
	ok := false
	defer func() {
		if !ok {
			g.Close()
		}
	}()
	g.Metrics = metrics.New()
	opts := gateway.Options{Config: cfg, Logger: deps.Logger, AccessLog: deps.AccessLog, Now: deps.Now, Observer: g.Metrics, OwnBodyTimeout: deps.OwnBodyTimeout}
	if cfg.Clerk.PublishableKey != "" {
		clerkHTTP := deps.HTTPClient
		if clerkHTTP == nil {
			clerkHTTP = &http.Client{Timeout: 10 * time.Second}
		}
		counted := *clerkHTTP
		counted.Transport = g.Metrics.ClerkTransport(clerkHTTP.Transport, clerk.EndpointLabel)
		ccfg := clerkConfig(cfg)
		ccfg.HTTPClient, ccfg.Logger, ccfg.Now = &counted, deps.Logger.With("component", "clerk"), deps.Now
		cc, err := clerk.New(ccfg)
		if err != nil {
			return nil, fmt.Errorf("clerk: %w", err)
		}
		opts.Auth, opts.Portal, opts.Ender, opts.UserSessions = cc, cc, cc, cc
		g.Clerk = cc
		g.Metrics.SetRefreshStretch(cc.RefreshStretch)
	}
	if g.Clerk != nil || cfg.Stripe.SecretKey != "" {
		if err := g.openStore(ctx, cfg, deps, &opts); err != nil {
			return nil, err
		}
	}
	g.openAPIKeys(ctx, cfg, deps, &opts)
	if err := g.openLimits(ctx, cfg, deps, &opts); err != nil {
		return nil, err
	}
	// What outlives a reload is built here, once, with what Clerk ended
	// before a restart.
	stateOpts := gateway.StateOptions{Observer: g.Metrics}
	if g.Clerk != nil {
		stateOpts.Sessions = g.Clerk
	}
	if g.Store != nil {
		stateOpts.Revocations = g.Store
	}
	opts.State = gateway.NewState(stateOpts)
	g.state = opts.State
	now := time.Now
	if deps.Now != nil {
		now = deps.Now
	}
	if _, err := opts.State.LoadRevocations(ctx, now()); err != nil {
		return nil, err
	}
	if cfg.Stripe.SecretKey != "" {
		if err := g.openBilling(ctx, cfg, deps, &opts); err != nil {
			return nil, err
		}
	}
	// Clerk's webhooks revoke gateway sessions, which live in the server
	// built below: the revoker is pointed at it once it exists.
	revoker := &lateRevoker{}
	if g.Clerk != nil && len(cfg.Clerk.WebhookSecrets) > 0 {
		h, err := clerk.NewWebhookHandler(clerk.WebhookConfig{
			Secrets: cfg.Clerk.WebhookSecrets, Users: g.Store, Orgs: g.Store, Sessions: revoker, Memberships: revoker,
			Logger: deps.Logger.With("component", "clerk-webhook"), Now: deps.Now,
			Dedupe: func(ctx context.Context, id string) (bool, func() error, error) {
				seen, err := g.Store.EventProcessed(ctx, "svix:"+id)
				return seen, func() error { return g.Store.MarkEvent(context.WithoutCancel(ctx), "svix:"+id) }, err
			},
			// The store forgets processed IDs after this (README "Billing").
			MaxAge: stripe.EventRetention,
			// Each Clerk object's messages ordered by Clerk's time, kept
			// for good (docs/SECURITY.md, "Trust boundaries").
			Order: g.Store,
		})
		if err != nil {
			return nil, fmt.Errorf("clerk webhooks: %w", err)
		}
		opts.Internal = append(opts.Internal, gateway.InternalRoute{Pattern: "POST " + clerk.WebhookPath, Handler: h, Webhook: true})
	}
	srv, err := gateway.New(opts)
	if err != nil {
		return nil, err
	}
	revoker.set(srv)
	g.opts, g.revoker = opts, revoker
	g.current.Store(srv)
	g.Server = srv
	g.startReplica(ctx, deps)
	g.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.current.Load().ServeHTTP(w, r) })
	if g.Cache != nil {
		// A subject's subscriptions changed (a webhook's sync, a comp):
		// its open tunnels are judged again at once.
		g.Cache.OnChange(func(s proxy.Subject) { g.current.Load().EntitlementsChanged(s) })
	}
	ok = true
	return g, nil
}

// config is the config now serving.
func (g *app) config() *proxy.Config {
	g.reloads.Lock()
	defer g.reloads.Unlock()
	return g.opts.Config
}

// clerkConfig and stripeConfig are what the config says about each
// service, mapped once for the gateway (newApp) and for `check -online`;
// the callers add clients, loggers, clocks and stores.
func clerkConfig(cfg *proxy.Config) clerk.Config {
	return clerk.Config{
		PublishableKey:    cfg.Clerk.PublishableKey,
		SecretKey:         cfg.Clerk.SecretKey,
		JWTKey:            cfg.Clerk.JWTKey,
		AuthorizedParties: cfg.Clerk.AuthorizedParties,
		APIURL:            cfg.Clerk.APIURL,
		ProxyURL:          cfg.Clerk.ProxyURL,
		FrontendAPIURL:    cfg.Clerk.FrontendAPIURL,
		SignInURL:         cfg.Clerk.SignInURL,
		PublicURL:         cfg.PublicURL,
		ExtraOrigins:      cfg.ExtraOrigins,
		ClientAddr:        func(r *http.Request) string { return gateway.ClientAddr(r, cfg.TrustedProxies) },
	}
}

func stripeConfig(cfg *proxy.Config) stripe.Config {
	return stripe.Config{
		SecretKey:      cfg.Stripe.SecretKey,
		WebhookSecrets: cfg.Stripe.WebhookSecrets,
		APIURL:         cfg.Stripe.APIURL,
		PublicURL:      cfg.PublicURL,
		InternalPrefix: cfg.InternalPrefix,
		Plans:          cfg.Plans,
		Access:         cfg.Stripe.Access(),
	}
}

// Reload swaps in a new config's routes, plans and pages without dropping a
// connection: requests in flight finish on the old server, new ones get the
// new one. Settings that need a restart (listeners, keys, secrets, the
// store) must be unchanged, or the new config is refused and the old one
// keeps serving.
func (g *app) Reload(cfg *proxy.Config) error {
	g.reloads.Lock()
	defer g.reloads.Unlock()
	old := g.opts.Config
	if err := config.CheckReload(old, cfg); err != nil {
		return err
	}
	opts := g.opts
	opts.Config = cfg
	srv, err := gateway.New(opts)
	if err != nil {
		return err
	}
	if g.Billing != nil {
		g.Billing.SetPlans(cfg.Plans)
		g.Billing.SetAccess(cfg.Stripe.Access())
	}
	g.opts = opts
	g.current.Store(srv)
	g.revoker.set(srv)
	g.Server = srv
	return nil
}

// openStore opens the store (bbolt, or PostgreSQL migrated under its
// advisory lock), the LRU in front of it, and the batched last-seen
// recorder: users are listed for the site owner even without billing.
// With PostgreSQL it also starts LISTENing at once, so that nothing
// another replica commits while this one starts is missed (the listener
// runs from startReplica).
func (g *app) openStore(ctx context.Context, cfg *proxy.Config, deps appDeps, opts *gateway.Options) error {
	store, pg, err := openDB(ctx, cfg.Store, deps.Now, true)
	if err != nil {
		return err
	}
	g.Store, g.PG = store, pg
	g.closers = append(g.closers, store.Close)
	if err := g.openCache(store, cfg.Store.CacheSize); err != nil {
		return err
	}
	if pg != nil {
		logger := deps.Logger.With("component", "postgres")
		l, err := pg.Listen(ctx, postgres.ListenConfig{
			Apply:  func(ctx context.Context, c postgres.Change) error { return g.applyChange(ctx, c, logger) },
			Purge:  g.Cache.Purge,
			Logger: logger,
			Now:    deps.Now,
		})
		if err != nil {
			return err
		}
		g.listener, g.fresh.fresh = l, l.Fresh
		g.closers = append(g.closers, l.Close)
	}
	seen := proxy.NewTimeBatcher(store.RecordSeen, proxy.DefaultBatchInterval, "last seen", deps.Logger).WithResolution(proxy.SeenResolution)
	opts.Seen = seen
	opts.Admin, opts.Directory, opts.Trials, opts.Orgs, opts.Forget = store, store, store, store, g.Cache
	opts.Usage, opts.Outbox = store, store // every store keeps the usage outbox (appStore)
	g.closers = append(g.closers, seen.Close)
	g.background(func() { seen.Run(ctx) })
	return nil
}

// openLimits builds the limiter over the store's quota counters (memory
// only without a store: nothing is then remembered across a restart) and
// starts its flush loop, which flushes once more when the app closes,
// before the store does.
func (g *app) openLimits(ctx context.Context, cfg *proxy.Config, deps appDeps, opts *gateway.Options) error {
	var st limits.Store = limits.NewMemoryStore()
	if g.Store != nil {
		st = g.Store // every store keeps quota counters and the usage outbox (appStore)
	}
	// bbolt: one process per file, its replica "". PostgreSQL: each
	// replica's counters under the store's writer, new at each start
	// (README "Limits", "Several replicas").
	replica := ""
	if g.PG != nil {
		replica = g.PG.Writer()
	}
	for i := range cfg.Plans {
		if _, ok := st.(limits.MeterStore); cfg.Plans[i].Meter != nil && !ok {
			// Counted and never billed would be a silent loss: refuse.
			return fmt.Errorf("plans.%s.meter: metered plans need a store (store.path or store.dsn) to keep the usage outbox in (README \"Usage billing\")", cfg.Plans[i].Key)
		}
	}
	var reps limits.Replicas = limits.One{}
	if g.PG != nil {
		// Several replicas: each enforces 1/n of a rate, n counted from
		// heartbeats in the database, under the writer its counters are
		// kept under; the first beat is now, so n is known before this
		// replica serves (README "Limits").
		r, err := g.PG.Replicas(ctx, postgres.ReplicasConfig{ID: replica, Logger: deps.Logger.With("component", "replicas")})
		if err != nil {
			return err
		}
		g.Replicas, reps = r, r
		g.Metrics.SetReplicas(r.LiveReplicas, r.Age)
		// Its Run deletes the row when the app closes: after the public
		// listener has stopped admitting, before the store closes.
		g.background(func() { r.Run(ctx) })
	}
	l, err := limits.New(limits.Options{Store: st, Replicas: reps, Replica: replica, Shared: g.PG != nil, Observer: g.Metrics,
		Logger: deps.Logger.With("component", "limits"), Now: deps.Now, Billed: g.kickMeters, MeterWindow: cfg.MeterWindow})
	if err != nil {
		return err
	}
	g.Limiter, opts.Limiter = l, l
	// The account page's metered usage: billed rows, open windows and the
	// counts not yet flushed (README "Usage billing").
	opts.Usage = l
	g.Metrics.SetQuotaFlushLag(l.FlushLag)
	interval := cfg.QuotaFlush
	if interval <= 0 {
		interval = config.DefaultQuotaFlush
	}
	g.background(func() { l.Run(ctx, interval) })
	return nil
}

// startReplica starts what several replicas of one PostgreSQL store need,
// once the gateway is built: the listener follows the change log, and the
// replica competes for leadership of the work done once for all (Stripe's
// shared loops, and the change log's pruning). Nothing with bbolt.
func (g *app) startReplica(ctx context.Context, deps appDeps) {
	if g.PG == nil {
		return
	}
	l := g.listener
	g.background(func() { l.Run(ctx) })
	pg, shared := g.PG, g.shared
	logger := deps.Logger.With("component", "leader")
	leader, wait := pg.Lead(ctx, postgres.LeadConfig{Logger: logger, Run: func(ctx context.Context) {
		var wg sync.WaitGroup
		wg.Go(func() { pruneChanges(ctx, pg, logger) })
		if shared != nil {
			wg.Go(func() { shared(ctx) })
		}
		wg.Wait()
	}})
	g.leader = leader
	g.background(func() {
		<-ctx.Done()
		wait()
	})
}

// pruneChanges deletes the change log's old entries every ten minutes
// (the leader's work).
func pruneChanges(ctx context.Context, pg *postgres.Store, logger *slog.Logger) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if n, err := pg.PruneChanges(ctx); err != nil && ctx.Err() == nil {
			logger.Warn("postgres: pruning the change log", "err", err)
		} else if n > 0 {
			logger.Debug("postgres: pruned the change log", "entries", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// openAPIKeys puts the API key Authenticator in front of Clerk's: a
// request carrying a key (tollgate's, or Clerk's with clerk.api_keys) is
// the key's; any other goes to Clerk as before.
func (g *app) openAPIKeys(ctx context.Context, cfg *proxy.Config, deps appDeps, opts *gateway.Options) {
	ko := apikey.Options{Live: cfg.LiveMode(), Header: cfg.APIKeys.Header, Next: opts.Auth, Now: deps.Now}
	if cfg.APIKeys.Enabled && g.Store != nil {
		used := proxy.NewTimeBatcher(g.Store.RecordAPIKeysUsed, proxy.DefaultBatchInterval, "api key last used", deps.Logger)
		g.closers = append(g.closers, used.Close)
		g.background(func() { used.Run(ctx) })
		var keys proxy.APIKeyStore = g.Store
		if deps.WrapAPIKeys != nil {
			keys = deps.WrapAPIKeys(keys)
		}
		// NewCachedStore fails only for a size below 1.
		g.Keys, _ = apikey.NewCachedStore(keys, apikey.DefaultCacheSize, apikey.DefaultCacheTTL, deps.Now)
		ko.Store, ko.Used = g.Keys, used
		opts.APIKeys = g.Keys
	}
	if cfg.Clerk.APIKeys && g.Clerk != nil {
		ko.Clerk = g.Clerk
	}
	if ko.Store != nil || ko.Clerk != nil {
		opts.Auth = apikey.New(ko)
	}
}

// openBilling builds the Stripe adapter on the open store, mounts the
// webhook, loads the prices, and starts Stripe's background loops (stale
// re-syncs, price refresh, reconcile).
func (g *app) openBilling(ctx context.Context, cfg *proxy.Config, deps appDeps, opts *gateway.Options) error {
	store, cache := g.Store, g.Cache
	sc := stripeConfig(cfg)
	sc.Store, sc.Cache, sc.Observer = store, cache, g.Metrics
	sc.Logger, sc.Now = deps.Logger.With("component", "stripe"), deps.Now
	sc.HTTPClient = &http.Client{Timeout: 20 * time.Second, Transport: g.Metrics.StripeTransport(nil, stripe.EndpointLabel)}
	if g.Clerk != nil {
		sc.Directory = g.Clerk
	}
	billing, err := stripe.New(sc)
	if err != nil {
		return fmt.Errorf("stripe: %w", err)
	}
	g.Billing = billing
	g.Metrics.StripeAnomalyKinds(stripe.Anomalies())
	g.Metrics.SetWebhookBacklog(func() (int, time.Duration, error) {
		bctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		bl, err := billing.Backlog(bctx)
		return bl.Customers, bl.Age(deps.Now()), err
	})
	deps.Logger.Info("stripe: key mode", "live", billing.Livemode())
	opts.Entitlements, opts.Billing, opts.Prices, opts.Sync = cache, billing, billing, billing
	opts.Internal = append(opts.Internal, gateway.InternalRoute{Pattern: "POST " + stripe.WebhookPath, Handler: billing.WebhookHandler(), Webhook: true})

	loops := billing.Background(stripe.BackgroundConfig{
		ReconcileInterval: cfg.Stripe.ReconcileInterval,
		StoreEmpty:        store.Empty,
	})
	opts.Stale = loops
	loops.LoadPrices(ctx)

	// The usage outbox's sender (README "Usage billing"), and the pruning
	// of the rows it sent.
	g.Meters = billing.MeterSender(stripe.MeterConfig{Store: store, Observer: g.Metrics})
	g.meters.Store(g.Meters)
	meters, logger := g.Meters, deps.Logger.With("component", "usage")
	if g.PG != nil {
		// Several replicas: each re-syncs its own stale customers and
		// reads the prices the leader stores; the reconcile, catch-up,
		// dirty worker, price refresh and the usage outbox's sender run
		// on the leader, only while it leads (the lease's context ends
		// when it stops leading: README "Running several replicas").
		g.background(func() { loops.RunLocal(ctx) })
		g.shared = func(ctx context.Context) {
			var wg sync.WaitGroup
			wg.Go(func() { loops.RunShared(ctx) })
			wg.Go(func() { meters.Run(ctx) })
			wg.Go(func() { pruneUsage(ctx, store, deps.Now, logger) })
			wg.Wait()
		}
		return nil
	}
	// One gateway per bbolt file: it always leads.
	g.background(func() { loops.Run(ctx) })
	g.background(func() { meters.Run(ctx) })
	g.background(func() { pruneUsage(ctx, store, deps.Now, logger) })
	return nil
}

// pruneUsage deletes the usage outbox's sent rows older than
// proxy.UsageRetention, at once and then hourly (the leader's work).
func pruneUsage(ctx context.Context, store proxy.UsageOutbox, now func() time.Time, logger *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := store.PruneUsage(ctx, now().Add(-proxy.UsageRetention)); err != nil && ctx.Err() == nil {
			logger.Warn("usage outbox: pruning sent rows", "err", err)
		} else if n > 0 {
			logger.Info("usage outbox: pruned sent rows", "rows", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// kickMeters wakes the usage outbox's sender after a flush wrote rows
// (the limiter's flush loop starts before the sender exists).
func (g *app) kickMeters() {
	if m := g.meters.Load(); m != nil {
		m.Kick()
	}
}

func (g *app) background(fn func()) {
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		fn()
	}()
}

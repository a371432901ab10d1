package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
	"github.com/tollgate/tollgate/proxy/cache"
	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/config"
	"github.com/tollgate/tollgate/proxy/gateway"
	"github.com/tollgate/tollgate/proxy/metrics"
	"github.com/tollgate/tollgate/proxy/stripe"
)

const defaultConfigPath = "/etc/tollgate/config.yaml"

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	configPath := fs.String("config", defaultConfigPath, "path to the YAML config")
	logFormat := fs.String("log", "json", "log format: json or text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger := newLogger(stderr, *logFormat)
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		logger.Warn("config", "warning", w)
	}
	gw, err := newApp(cfg, appDeps{Logger: logger})
	if err != nil {
		return err
	}
	defer gw.Close()
	stopAdmin, err := serveAdmin(ctx, cfg, gw, logger)
	if err != nil {
		return err
	}
	defer stopAdmin() // before gw.Close: the admin listener and its syncs end before the store closes
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, *configPath, gw, logger)
	logger.Info("tollgate serving", "version", version, "addr", ln.Addr().String(), "public_url", cfg.PublicURL.String(), "upstream", cfg.Upstream.String())
	return serveUntilDone(ctx, ln, gw.Handler, logger)
}

// reloadOnHUP re-reads the config on every SIGHUP; a bad one is refused
// and logged, and the running config keeps serving.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, path string, gw *app, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := config.Load(path)
		if err == nil {
			err = gw.Reload(cfg)
		}
		if err != nil {
			logger.Error("config reload refused; the running config keeps serving", "err", err)
			continue
		}
		for _, w := range cfg.Warnings {
			logger.Warn("config", "warning", w)
		}
		logger.Info("config reloaded", "routes", len(cfg.Routes.Rules), "plans", len(cfg.Plans))
	}
}

func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	configPath := fs.String("config", defaultConfigPath, "path to the YAML config")
	online := fs.Bool("online", false, "also confirm the Clerk and Stripe keys work and every configured price exists, is active and of the right kind")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if *online {
		if err := checkOnline(cfg, stdout); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s: ok (%d routes, %d plans, %d warnings)\n", *configPath, len(cfg.Routes.Rules), len(cfg.Plans), len(cfg.Warnings))
	return nil
}

// checkOnline calls Clerk and Stripe with the configured keys: the keys
// work, the prices exist, are active and of the right kind, and test and
// live keys are not mixed. It opens no store and changes nothing.
func checkOnline(cfg *proxy.Config, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var problems []error
	if cfg.Clerk.PublishableKey != "" {
		cc, err := clerk.New(clerk.Config{PublishableKey: cfg.Clerk.PublishableKey, SecretKey: cfg.Clerk.SecretKey,
			JWTKey: cfg.Clerk.JWTKey, AuthorizedParties: cfg.Clerk.AuthorizedParties, APIURL: cfg.Clerk.APIURL,
			ProxyURL: cfg.Clerk.ProxyURL, FrontendAPIURL: cfg.Clerk.FrontendAPIURL, SignInURL: cfg.Clerk.SignInURL, PublicURL: cfg.PublicURL})
		if err == nil {
			err = cc.Ready(ctx)
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("clerk: %w", err))
		} else {
			fmt.Fprintln(stdout, "clerk: keys work")
		}
	}
	if cfg.Stripe.SecretKey != "" {
		clerkLive := strings.HasPrefix(cfg.Clerk.PublishableKey, "pk_live_")
		stripeLive := strings.Contains(cfg.Stripe.SecretKey, "_live_")
		if cfg.Clerk.PublishableKey != "" && clerkLive != stripeLive {
			// Clerk's publishable and secret keys are checked against each
			// other by the config; across services a mix may be deliberate
			// (a staging site on production sign-in), so say it, loudly.
			fmt.Fprintf(stdout, "warning: keys mixed: a Clerk %s instance with a Stripe %s key\n", liveOrTest(clerkLive), liveOrTest(stripeLive))
		}
		b, err := stripe.New(stripe.Config{SecretKey: cfg.Stripe.SecretKey, WebhookSecrets: cfg.Stripe.WebhookSecrets,
			APIURL: cfg.Stripe.APIURL, PublicURL: cfg.PublicURL, InternalPrefix: cfg.InternalPrefix, Plans: cfg.Plans,
			Store: offlineStore{}})
		if err == nil {
			err = b.Ready(ctx)
		}
		if err == nil {
			if perr := b.RefreshPrices(ctx); perr != nil {
				problems = append(problems, fmt.Errorf("stripe prices: %w", perr))
			} else {
				fmt.Fprintln(stdout, "stripe: key works; every configured price exists, is active and of the right kind")
			}
		} else {
			problems = append(problems, fmt.Errorf("stripe: %w", err))
		}
	}
	return errors.Join(problems...)
}

func liveOrTest(live bool) string {
	if live {
		return "live"
	}
	return "test"
}

// offlineStore satisfies stripe.Store for `check -online`, which must not
// open the real store (a running gateway holds its lock). Nothing that
// check calls touches it.
type offlineStore struct{}

func (offlineStore) CustomerOf(context.Context, proxy.Subject) (string, error) { return "", nil }
func (offlineStore) SubjectOf(context.Context, string) (proxy.Subject, bool, error) {
	return proxy.Subject{}, false, nil
}
func (offlineStore) LinkCustomer(context.Context, proxy.Subject, string) error { return errOffline }
func (offlineStore) CommitCustomer(context.Context, proxy.CustomerState, string) (proxy.Subject, *proxy.Entitlements, error) {
	return proxy.Subject{}, nil, errOffline
}
func (offlineStore) EventProcessed(context.Context, string) (bool, error) { return false, errOffline }
func (offlineStore) MarkEvent(context.Context, string) error              { return errOffline }
func (offlineStore) HadTrial(context.Context, string) (bool, error)       { return false, errOffline }
func (offlineStore) Cursor(context.Context, string) (string, error)       { return "", errOffline }
func (offlineStore) SetCursor(context.Context, string, string) error      { return errOffline }

var errOffline = errors.New("check -online opens no store")

// appDeps are the outside things an app can be given instead of the
// real ones (tests and the demo inject clocks and clients).
type appDeps struct {
	Logger     *slog.Logger
	Now        func() time.Time
	HTTPClient *http.Client // for Clerk's Backend API
	// OwnBodyTimeout shortens proxy.OwnBodyTimeout (tests).
	OwnBodyTimeout time.Duration
}

// app is a wired tollgate: the public handler, its parts, and what must
// be closed.
type app struct {
	Handler http.Handler
	Server  *gateway.Server
	Store   *bolt.Store     // nil without billing
	Billing *stripe.Billing // nil without billing
	Clerk   *clerk.Client   // nil without Clerk
	Cache   *cache.EntitlementCache
	Metrics *metrics.Metrics
	current atomic.Pointer[gateway.Server] // swapped by Reload
	opts    gateway.Options                // how the current server was built
	revoker *lateRevoker
	ownBody time.Duration // deadline for the bodies of tollgate's own endpoints (admin API too)
	reloads sync.Mutex
	closers []func() error
	stop    context.CancelFunc // ends the background loops
	bg      sync.WaitGroup
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
	opts := gateway.Options{Config: cfg, Logger: deps.Logger, Now: deps.Now, Observer: g.Metrics, OwnBodyTimeout: deps.OwnBodyTimeout}
	if cfg.Clerk.PublishableKey != "" {
		clerkHTTP := deps.HTTPClient
		if clerkHTTP == nil {
			clerkHTTP = &http.Client{Timeout: 10 * time.Second}
		}
		counted := *clerkHTTP
		counted.Transport = g.Metrics.ClerkTransport(clerkHTTP.Transport, clerk.EndpointLabel)
		cc, err := clerk.New(clerk.Config{
			PublishableKey:    cfg.Clerk.PublishableKey,
			SecretKey:         cfg.Clerk.SecretKey,
			JWTKey:            cfg.Clerk.JWTKey,
			AuthorizedParties: cfg.Clerk.AuthorizedParties,
			APIURL:            cfg.Clerk.APIURL,
			ProxyURL:          cfg.Clerk.ProxyURL,
			FrontendAPIURL:    cfg.Clerk.FrontendAPIURL,
			SignInURL:         cfg.Clerk.SignInURL,
			PublicURL:         cfg.PublicURL,
			ClientAddr:        func(r *http.Request) string { return gateway.ClientAddr(r, cfg.TrustedProxies) },
			HTTPClient:        &counted,
			Logger:            deps.Logger.With("component", "clerk"),
			Now:               deps.Now,
		})
		if err != nil {
			return nil, fmt.Errorf("clerk: %w", err)
		}
		opts.Auth, opts.Portal, opts.Ender = cc, cc, cc
		g.Clerk = cc
		g.Metrics.SetRefreshStretch(cc.RefreshStretch)
	}
	// What outlives a reload is built here, once.
	stateOpts := gateway.StateOptions{Observer: g.Metrics}
	if g.Clerk != nil {
		stateOpts.Sessions = g.Clerk
	}
	opts.State = gateway.NewState(stateOpts)
	if g.Clerk != nil || cfg.Stripe.SecretKey != "" {
		if err := g.openStore(ctx, cfg, deps, &opts); err != nil {
			return nil, err
		}
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
			Secrets: cfg.Clerk.WebhookSecrets, Users: clerkUsers{g.Store}, Orgs: clerkOrgs{g.Store}, Sessions: revoker, Memberships: revoker,
			Logger: deps.Logger.With("component", "clerk-webhook"), Now: deps.Now,
			Dedupe: func(ctx context.Context, id string) (bool, func() error, error) {
				seen, err := g.Store.EventProcessed(ctx, "svix:"+id)
				return seen, func() error { return g.Store.MarkEvent(context.WithoutCancel(ctx), "svix:"+id) }, err
			},
		})
		if err != nil {
			return nil, fmt.Errorf("clerk webhooks: %w", err)
		}
		opts.Internal = append(opts.Internal, gateway.InternalRoute{Pattern: "POST /webhooks/clerk", Handler: h, Webhook: true})
	}
	srv, err := gateway.New(opts)
	if err != nil {
		return nil, err
	}
	revoker.set(srv)
	g.opts, g.revoker = opts, revoker
	g.current.Store(srv)
	g.Server = srv
	g.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.current.Load().ServeHTTP(w, r) })
	if g.Cache != nil {
		// A subject's subscriptions changed (a webhook's sync, a comp):
		// its open tunnels are judged again at once.
		g.Cache.OnChange(func(s proxy.Subject) { g.current.Load().EntitlementsChanged(s) })
	}
	ok = true
	return g, nil
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
	if err := restartOnlyChanges(old, cfg); err != nil {
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

// restartOnlyChanges names the settings a reload cannot apply.
func restartOnlyChanges(old, cfg *proxy.Config) error {
	var keys []string
	if old.Listen != cfg.Listen {
		keys = append(keys, "listen")
	}
	if old.PublicURL.String() != cfg.PublicURL.String() {
		keys = append(keys, "public_url")
	}
	if old.InternalPrefix != cfg.InternalPrefix {
		keys = append(keys, "internal_prefix")
	}
	if !reflect.DeepEqual(old.Clerk, cfg.Clerk) {
		keys = append(keys, "clerk")
	}
	if old.Stripe.SecretKey != cfg.Stripe.SecretKey || old.Stripe.APIURL != cfg.Stripe.APIURL ||
		!reflect.DeepEqual(old.Stripe.WebhookSecrets, cfg.Stripe.WebhookSecrets) {
		keys = append(keys, "stripe")
	}
	if old.Store != cfg.Store {
		keys = append(keys, "store")
	}
	if !reflect.DeepEqual(old.Admin, cfg.Admin) {
		keys = append(keys, "admin")
	}
	if len(keys) > 0 {
		return fmt.Errorf("reload refused: %s changed; restart tollgate to apply", strings.Join(keys, ", "))
	}
	return nil
}

// lateRevoker forwards revocations to the server once it is built.
type lateRevoker struct {
	mu  sync.Mutex
	srv *gateway.Server
}

func (l *lateRevoker) set(s *gateway.Server) { l.mu.Lock(); l.srv = s; l.mu.Unlock() }

func (l *lateRevoker) RevokeSession(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		l.srv.RevokeSession(id)
	}
}

func (l *lateRevoker) RevokeUser(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		l.srv.RevokeUser(id)
	}
}

func (l *lateRevoker) RevokeMembership(orgID, userID string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		l.srv.RevokeMembership(orgID, userID, at)
	}
}

func (l *lateRevoker) UpdateMembership(orgID, userID, role string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		l.srv.UpdateMembership(orgID, userID, role, at)
	}
}

func (l *lateRevoker) RevokeOrganization(orgID string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		l.srv.RevokeOrganization(orgID, at)
	}
}

// directory answers the pages' questions from the store: a user's email
// and whether a subject's customer had a trial.
type directory struct{ store *bolt.Store }

func (d directory) Email(ctx context.Context, userID string) (string, error) {
	// The summary's email is Clerk's (from its webhooks), else the one the
	// user gave Stripe Checkout.
	u, err := d.store.UserDetail(ctx, proxy.Subject{Kind: proxy.SubjectUser, ID: userID}, 1)
	if err != nil {
		return "", err
	}
	return u.Email, nil
}

func (d directory) HadTrial(ctx context.Context, s proxy.Subject) (bool, error) {
	cus, err := d.store.CustomerOf(ctx, s)
	if err != nil || cus == "" {
		return false, err
	}
	return d.store.HadTrial(ctx, cus)
}

// userRows lists the store's users for the public admin page.
type userRows struct{ store *bolt.Store }

func (u userRows) UserRows(ctx context.Context, status, plan, after string, limit int) ([]gateway.UserRow, string, error) {
	sums, next, err := u.store.ListUsers(ctx, bolt.UserFilter{Status: status, Plan: plan, After: after, Limit: limit})
	if err != nil {
		return nil, "", err
	}
	rows := make([]gateway.UserRow, 0, len(sums))
	for _, s := range sums {
		rows = append(rows, gateway.UserRow{ID: s.ID, Email: s.Email, CustomerID: s.CustomerID, Plans: s.Plans,
			Status: s.Status, PeriodEnd: s.PeriodEnd, LastSeen: s.LastSeen})
	}
	return rows, next, nil
}

// clerkUsers records Clerk's users in the store.
type clerkUsers struct{ store *bolt.Store }

func (c clerkUsers) PutUser(ctx context.Context, u clerk.ClerkUser) error {
	rec := bolt.User{ID: u.ID, Email: u.Email}
	// Memberships arrive in their own events: keep the ones already known.
	if old, err := c.store.User(ctx, u.ID); err == nil {
		rec.OrgIDs = old.OrgIDs
	} else if !errors.Is(err, proxy.ErrNotFound) {
		return err
	}
	return c.store.PutUser(ctx, rec)
}

// clerkOrgs keeps Clerk's organisations and memberships in the store, for
// the admin listing of organisation plans.
type clerkOrgs struct{ store *bolt.Store }

func (c clerkOrgs) PutOrg(ctx context.Context, o clerk.ClerkOrg) error {
	return c.store.PutOrg(ctx, bolt.Org{ID: o.ID, Slug: o.Slug, Name: o.Name})
}
func (c clerkOrgs) DeleteOrg(ctx context.Context, id string) error { return c.store.DeleteOrg(ctx, id) }
func (c clerkOrgs) PutMembership(ctx context.Context, orgID, userID, role string) error {
	return c.store.PutMembership(ctx, orgID, userID, role)
}
func (c clerkOrgs) DeleteMembership(ctx context.Context, orgID, userID string) error {
	return c.store.DeleteMembership(ctx, orgID, userID)
}

func (c clerkUsers) DeleteUser(ctx context.Context, id string) error {
	return c.store.DeleteUser(ctx, id)
}

// openStore opens bbolt, the LRU in front of it, and the batched last-seen
// recorder: users are listed for the site owner even without billing.
func (g *app) openStore(ctx context.Context, cfg *proxy.Config, deps appDeps, opts *gateway.Options) error {
	store, err := bolt.Open(cfg.Store.Path, bolt.Options{Timeout: time.Second, Now: deps.Now})
	if err != nil {
		return err
	}
	g.Store = store
	g.closers = append(g.closers, store.Close)
	cache, err := cache.NewEntitlementCache(store, cfg.Store.CacheSize)
	if err != nil {
		return err
	}
	cache.SetObserver(g.Metrics)
	g.Cache = cache
	seen := store.NewSeenBatcher(bolt.DefaultSeenInterval, deps.Logger)
	opts.Seen = seen
	opts.Users = userRows{store}
	opts.Directory = directory{store}
	g.closers = append(g.closers, seen.Close)
	g.background(func() { seen.Run(ctx) })
	return nil
}

// openBilling builds the Stripe adapter on the open store, mounts the
// webhook, loads the prices, and starts Stripe's background loops (stale
// re-syncs, price refresh, reconcile).
func (g *app) openBilling(ctx context.Context, cfg *proxy.Config, deps appDeps, opts *gateway.Options) error {
	store, cache := g.Store, g.Cache
	sc := stripe.Config{
		SecretKey: cfg.Stripe.SecretKey, WebhookSecrets: cfg.Stripe.WebhookSecrets, APIURL: cfg.Stripe.APIURL,
		PublicURL: cfg.PublicURL, InternalPrefix: cfg.InternalPrefix, Plans: cfg.Plans, Access: cfg.Stripe.Access(),
		Store: store, Cache: cache, Logger: deps.Logger.With("component", "stripe"), Now: deps.Now,
		Observer:   g.Metrics,
		HTTPClient: &http.Client{Timeout: 20 * time.Second, Transport: g.Metrics.StripeTransport(nil, stripe.EndpointLabel)},
	}
	if g.Clerk != nil {
		sc.Directory = g.Clerk
	}
	billing, err := stripe.New(sc)
	if err != nil {
		return fmt.Errorf("stripe: %w", err)
	}
	g.Billing = billing
	g.Metrics.StripeAnomalyKinds(stripe.Anomalies())
	deps.Logger.Info("stripe: key mode", "live", billing.Livemode())
	opts.Entitlements, opts.Billing, opts.Prices = cache, billing, billing
	opts.Internal = append(opts.Internal, gateway.InternalRoute{Pattern: "POST /webhooks/stripe", Handler: billing.WebhookHandler(), Webhook: true})

	loops := billing.Background(stripe.BackgroundConfig{
		ReconcileInterval: cfg.Stripe.ReconcileInterval,
		StoreEmpty: func(ctx context.Context) (bool, error) {
			c, err := store.Counts(ctx)
			return c.Customers == 0, err
		},
	})
	opts.Stale = loops
	loops.LoadPrices(ctx)
	g.background(func() { loops.Run(ctx) })
	return nil
}

func (g *app) background(fn func()) {
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		fn()
	}()
}

// serveUntilDone serves until ctx ends, then shuts down gracefully: the
// listener closes at once and in-flight requests get up to 30 s to finish.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down", "grace", "30s")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

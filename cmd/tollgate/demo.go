package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/config"
	"github.com/tollgate/tollgate/proxy/sandbox/clerk"
	"github.com/tollgate/tollgate/proxy/sandbox/demoapp"
	"github.com/tollgate/tollgate/proxy/sandbox/stripe"
)

//go:embed demo.yaml
var demoConfig []byte

// demo is a running `tollgate demo`: the sandbox, the demo app and the
// gateway, each on its own loopback port.
type demo struct {
	URL       string // the gateway, what a person opens
	ClerkURL  string
	AppURL    string
	Config    *proxy.Config
	Clerk     *clerksandbox.Clerk
	Stripe    *stripesandbox.Stripe
	StripeURL string
	gateway   *app
	// serving and admin are what the listeners serve: the gateway and its
	// admin handler, swapped together when a test restarts the gateway
	// on the same store with another config.
	serving atomic.Pointer[app]
	admin   atomic.Pointer[http.Handler]
	servers []*http.Server
	gwLn    net.Listener
	logger  *slog.Logger
	dir     string // the demo's store lives here, removed on Close

	AdminURL           string // the admin listener: health, metrics, admin API
	AdminToken         string
	adminLn            net.Listener
	stopAdmin          context.CancelFunc
	webhookSecret      string            // the sandbox signs Stripe webhooks with it
	clerkWebhookSecret string            // Svix secret of the Clerk webhook endpoint (tests sign with it)
	env                map[string]string // what ${VAR} in demo.yaml expanded to
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "Runs everything locally: a demo app, sandbox stand-ins for Clerk and Stripe, and the gateway in front of the app.", stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "where the gateway listens (loopback); falls back to a free port if taken")
	verbose := fs.Bool("v", false, "log every request")
	dev := fs.Bool("dev", false, "run the sandbox Clerk as a development instance (pk_test_): dev browser, handshakes in the URL")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	d, err := startDemo(demoOptions{Addr: *addr, Logger: logger, Development: *dev})
	if err != nil {
		return err
	}
	defer d.Close()
	fmt.Fprint(stdout, d.banner(*dev))
	return d.serveUntilDone(ctx)
}

// banner is what `tollgate demo` prints: where everything is, three
// things to try, and the sandbox's keys with the init command that
// rehearses the quickstart against it.
func (d *demo) banner(dev bool) string {
	instance := "a production instance (pk_live_)"
	if dev {
		instance = "a development instance (pk_test_)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `
tollgate demo is running. Open %[1]s/
The sandbox Clerk is %[7]s.

  Gateway   %[1]s   (this is what visitors see)
  App       %[2]s   (the unmodified demo app behind it)
  Sandbox   %[3]s   (stands in for Clerk's sign-in)
            %[4]s   (stands in for Stripe's Checkout and billing portal)
  Admin     %[5]s   (health, metrics; API token %[6]s)

Three things to try:
  1. %[1]s/settings/
     A signed_in route. You are sent to the sandbox sign-in; pick Ada and you
     come back signed in. The page shows the X-Tollgate-User header the
     unmodified app received from the gateway.
  2. %[1]s/routes/415VNA/
     A paid route. Signed in without a plan, you land on the upgrade page
     (Pro, $12.00 a month or $120.00 a year, 7-day trial for $1.00; Team,
     billed to an organisation). Start the trial, "pay" on the sandbox
     Checkout page (any billing address: automatic tax is on), and you are
     back on the same route with access (plan pro, status trialing) before
     any webhook arrives.
  3. %[1]s/.tollgate/account
     Your plan, status and trial end. "Manage billing" opens the sandbox
     portal: cancel at period end, then move the sandbox clock 8 days on;
     Stripe's webhook ends access and the route sends you to upgrade again.
  Also: %[1]s/app/ keeps its fetch() calls working after the 60-second Clerk
  token expires; %[1]s/admin/ is denied (403); the public %[1]s/ passes as is.
  And: %[1]s/routes/TIDES/ is metered (README "Limits"): signed in without a
  plan, 20 calls a day (free:); the API plan ($19.00 a month) 1,000 a month
  at up to 20 a second; Pro 10,000. ?cost=N makes a call cost N. Over the
  quota a page load says what was used and when it resets, with the plan
  that has more; an API call gets 429 with RateLimit fields. The account
  page shows the usage bar. Pay as you go (%[1]s/.tollgate/subscribe/payg)
  bills each call, a cent, through Stripe's meter (README "Usage billing"):
  the account page's usage moves as you call; every 5 s the calls become a
  meter event (the admin console shows the outbox).
`, d.URL, d.AppURL, d.ClerkURL, d.StripeURL, d.AdminURL, d.AdminToken, instance)
	fmt.Fprintf(&b, `
The sandbox's keys are stand-ins it made up for this run, not keys of any
real Clerk or Stripe account, so they are shown here, to paste into
tollgate init when you rehearse it against the sandbox:

  Stripe  secret key       %[1]s
          API base         %[2]s
  Clerk   publishable key  %[3]s
          secret key       %[4]s
          API base         %[5]s/v1
          Frontend API     %[5]s
          sign-in page     %[5]s/sign-in

To rehearse the quickstart's tollgate init against this sandbox (in another
terminal, in a directory of your own), put a second gateway in front of the
demo app; init asks for the keys above and the plans:

  tollgate init -dir rehearsal -public-url http://127.0.0.1:8090 -upstream %[6]s \
    -listen 127.0.0.1:8090 -store-path rehearsal/tollgate.db -admin-listen 127.0.0.1:8091 \
    -stripe-api-url %[2]s -clerk-api-url %[5]s/v1 \
    -clerk-frontend-api-url %[5]s -clerk-sign-in-url %[5]s/sign-in
  tollgate serve -config rehearsal/config.yaml -env-file rehearsal/tollgate.env
`, d.Stripe.SecretKey(), d.StripeURL, d.Clerk.PublishableKey(), d.Clerk.SecretKey(), d.ClerkURL, d.AppURL)
	if !dev {
		b.WriteString("  (with tollgate demo -dev, the sandbox Clerk's keys are test keys like the Stripe one, and init warns of no mix)\n")
	}
	b.WriteString("\nPress Ctrl+C to stop.\n")
	return b.String()
}

// demoOptions let tests run the demo on a free port with a fake clock.
type demoOptions struct {
	Addr   string // gateway address; "" for a free loopback port
	Logger *slog.Logger
	Now    func() time.Time // shared by the gateway and the sandbox
	// Tweak changes the parsed demo config before the gateway is built
	// (tests: shorter timeouts).
	Tweak func(*proxy.Config)
	// OwnBodyTimeout shortens the deadline of tollgate's own endpoints'
	// bodies (tests).
	OwnBodyTimeout time.Duration
	// NonceHandshake makes the sandbox Clerk answer handshakes with a
	// nonce (exchanged through the Backend API) instead of the token.
	NonceHandshake bool
	// Development runs the sandbox Clerk as a development instance
	// (pk_test_), and so the gateway against one.
	Development bool
	// ClerkSkew sets the sandbox Clerk's clock this far ahead of the
	// gateway's (negative: behind), as a laptop, WSL or Docker clock that
	// is off would be.
	ClerkSkew time.Duration
	// Stripe configures the sandbox Stripe (tests: the account's default
	// API version, live-mode prices). Now and Logger are set here.
	Stripe stripesandbox.Options
	// WrapAPIKeys wraps the store the gateway's API key cache reads
	// (tests: counting its reads).
	WrapAPIKeys func(proxy.APIKeyStore) proxy.APIKeyStore
}

// startDemo starts the sandbox and the demo app on free loopback ports,
// then wires the gateway with the embedded demo config.
func startDemo(o demoOptions) (_ *demo, err error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	addr, logger := o.Addr, o.Logger
	d := &demo{logger: logger}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	gwLn, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		fmt.Fprintf(os.Stderr, "tollgate demo: %s is taken, using a free port\n", addr)
		gwLn, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return nil, fmt.Errorf("demo: listen: %w", err)
	}
	d.gwLn = gwLn
	d.URL = "http://" + gwLn.Addr().String()
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: listen: %w", err)
	}
	d.adminLn = adminLn
	d.AdminURL = "http://" + adminLn.Addr().String()

	clerkNow := o.Now
	if skew := o.ClerkSkew; skew != 0 {
		now := o.Now
		clerkNow = func() time.Time { return now().Add(skew) }
	}
	clerkSandbox, err := clerksandbox.New(clerksandbox.Options{Logger: logger.With("component", "sandbox-clerk"), Now: clerkNow,
		NonceHandshake: o.NonceHandshake, Development: o.Development})
	if err != nil {
		return nil, err
	}
	d.Clerk = clerkSandbox
	if d.ClerkURL, err = d.start(clerkSandbox.Handler()); err != nil {
		return nil, err
	}
	clerkSandbox.SetBaseURL(d.ClerkURL)
	if d.AppURL, err = d.start(demoapp.New(demoapp.Options{})); err != nil {
		return nil, err
	}
	so := o.Stripe
	so.Now, so.Logger = o.Now, logger.With("component", "sandbox-stripe")
	// The demo config turns automatic tax on: the sandbox account has
	// Stripe Tax set up, as a real one would need.
	so.StripeTax = true
	if len(so.Prices) == 0 && len(so.Meters) == 0 {
		// The pay-as-you-go plan's meter and its metered price (README
		// "Usage billing").
		so.Meters = []stripesandbox.Meter{stripesandbox.DemoMeter()}
		so.Prices = append(stripesandbox.DefaultPrices(), stripesandbox.DemoMeteredPrice())
	}
	d.Stripe = stripesandbox.New(so)
	if d.StripeURL, err = d.start(d.Stripe.Handler()); err != nil {
		return nil, err
	}
	d.Stripe.SetBaseURL(d.StripeURL)

	dir, err := os.MkdirTemp("", "tollgate-demo-")
	if err != nil {
		return nil, err
	}
	d.dir = dir
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	whsec := make([]byte, 24)
	_, _ = rand.Read(whsec)
	webhookSecret := "whsec_" + hex.EncodeToString(whsec)
	d.webhookSecret = webhookSecret
	svix := make([]byte, 24)
	_, _ = rand.Read(svix)
	d.clerkWebhookSecret = "whsec_" + base64.StdEncoding.EncodeToString(svix)
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	d.AdminToken = hex.EncodeToString(token)
	env := map[string]string{
		"DEMO_ADMIN_LISTEN":       adminLn.Addr().String(),
		"TOLLGATE_ADMIN_TOKEN":    d.AdminToken,
		"DEMO_LISTEN":             gwLn.Addr().String(),
		"DEMO_PUBLIC_URL":         d.URL,
		"DEMO_UPSTREAM":           d.AppURL,
		"DEMO_STORE":              filepath.Join(dir, "tollgate.db"),
		"DEMO_CLERK_URL":          d.ClerkURL,
		"DEMO_STRIPE_URL":         d.StripeURL,
		"CLERK_PUBLISHABLE_KEY":   clerkSandbox.PublishableKey(),
		"CLERK_SECRET_KEY":        clerkSandbox.SecretKey(),
		"TOLLGATE_SESSION_SECRET": hex.EncodeToString(secret),
		"STRIPE_SECRET_KEY":       d.Stripe.SecretKey(),
		"STRIPE_WEBHOOK_SECRET":   webhookSecret,
		"CLERK_WEBHOOK_SECRET":    d.clerkWebhookSecret,
	}
	d.env = env
	cfg, err := config.Parse("demo.yaml (embedded)", demoConfig, func(k string) string { return env[k] })
	if err != nil {
		return nil, err
	}
	if o.Tweak != nil {
		o.Tweak(cfg)
	}
	d.Config = cfg
	gw, err := newApp(cfg, appDeps{Logger: logger, Now: o.Now, OwnBodyTimeout: o.OwnBodyTimeout, WrapAPIKeys: o.WrapAPIKeys})
	if err != nil {
		return nil, err
	}
	d.gateway = gw
	// The sandbox Clerk sends no webhooks: the demo records its
	// organisations as Clerk's organization.created webhook would, so that
	// the pages can name them.
	for _, o := range clerkSandbox.Organizations() {
		if err := gw.Store.PutOrg(context.Background(), proxy.Org{ID: o.ID, Slug: o.Slug, Name: o.Name}); err != nil {
			return nil, err
		}
	}
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	d.stopAdmin = stopAdmin
	ah, err := gw.adminHandler(adminCtx, cfg, logger, func(fn func()) { go fn() })
	if err != nil {
		return nil, err
	}
	d.serving.Store(gw)
	d.admin.Store(&ah)
	adminSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*d.admin.Load()).ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	d.servers = append(d.servers, adminSrv)
	go func() { _ = adminSrv.Serve(adminLn) }()
	d.adminLn = nil
	d.Stripe.SetWebhook(d.URL+cfg.InternalPrefix+"/webhooks/stripe", webhookSecret)
	return d, nil
}

// start serves h on a free loopback port.
func (d *demo) start(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	d.servers = append(d.servers, srv)
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

func (d *demo) serveUntilDone(ctx context.Context) error {
	ln := d.gwLn
	d.gwLn = nil
	return serveUntilDone(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.serving.Load().Handler.ServeHTTP(w, r)
	}), d.serving.Load().state, d.logger)
}

// Close stops everything the demo started.
func (d *demo) Close() {
	if d.stopAdmin != nil {
		d.stopAdmin()
	}
	if d.adminLn != nil {
		_ = d.adminLn.Close()
	}
	if d.Stripe != nil {
		_ = d.Stripe.Close()
	}
	for _, s := range d.servers {
		_ = s.Close()
	}
	if d.gwLn != nil {
		_ = d.gwLn.Close()
	}
	if d.gateway != nil {
		_ = d.gateway.Close()
	}
	if d.dir != "" {
		_ = os.RemoveAll(d.dir)
	}
}

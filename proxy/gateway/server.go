package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/limits"
)

// Observer learns what the gate decided and how the upstream answered, for
// metrics. Implemented by proxy/metrics.
type Observer interface {
	Decision(decision, rule, access string, took time.Duration)
	Upstream(status int, took time.Duration)
}

// AccountPortal builds the URLs of Clerk's hosted pages, each sending the
// visitor back to returnURL. Implemented by proxy/clerk.
type AccountPortal interface {
	SignInURL(returnURL, devBrowserToken string) string
	SignUpURL(returnURL, devBrowserToken string) string
	// OrganizationURL is where the visitor deals with their organisations.
	OrganizationURL(returnURL, devBrowserToken string) string
}

// InternalRoute is one extra handler under internal_prefix, mounted by main
// (webhooks, checkout, admin page…). Pattern is an http.ServeMux pattern
// relative to the prefix, e.g. "POST /webhooks/stripe".
type InternalRoute struct {
	Pattern string
	Handler http.Handler
	Auth    InternalAuth
	// Webhook bounds its bodies being read at once (WebhookBodyReads,
	// WebhookBodyBytes, WebhookBodyTimeout); the rest get 503 and are
	// delivered again.
	Webhook bool
}

// InternalAuth says what an internal route needs to know of the visitor.
type InternalAuth int

const (
	// AuthNone: no identity is looked up (webhooks, assets).
	AuthNone InternalAuth = iota
	// AuthOptional: the identity, if any, is in the context
	// (IdentityFromContext); signed-out visitors reach the handler too.
	AuthOptional
	// AuthRequired: signed-out visitors are handled as on a signed_in route
	// (handshake, sign-in redirect or 401) and never reach the handler.
	AuthRequired
)

// Options wires a Server. Only Config is required; main supplies the rest.
type Options struct {
	Config       *proxy.Config
	Auth         proxy.Authenticator     // nil: nobody is ever signed in
	Portal       AccountPortal           // nil: signed-out visitors get 401 pages instead of redirects
	Ender        proxy.SessionEnder      // nil: sign-out cannot end a Clerk session, and says so
	UserSessions UserSessionsEnder       // nil: the admin console cannot end a user's Clerk sessions, and says so
	Entitlements proxy.EntitlementSource // nil: paid routes are never unlocked
	Billing      proxy.Billing           // nil: no checkout (the upgrade page still lists plans)
	Prices       proxy.PriceCatalog      // nil: plans are shown without amounts
	Seen         proxy.SeenRecorder      // nil: users' last-seen times are not recorded
	Observer     Observer                // nil: no metrics
	Admin        AdminStore              // nil: the admin console has nothing to show
	Sync         CustomerSyncer          // nil: the admin console cannot sync a customer from Stripe
	Forget       EntitlementsForgetter   // nil: nothing cached to drop after a comp changes
	Directory    proxy.Directory         // local, never Clerk (nil: pages show no email)
	Trials       Trials                  // nil: pages hedge about trials
	Orgs         Orgs                    // nil: pages name organisations by their slug
	Stale        proxy.StaleNotifier     // nil: long-ended periods are not re-synced
	APIKeys      proxy.APIKeyStore       // nil: the account page has no API keys section
	// Limiter enforces plans' limits (README "Limits"); shared by every
	// config's Server, built once by main. nil: a request on a limited
	// route gets 503 (fail closed).
	Limiter  *limits.Limiter
	Usage    proxy.MeteredUsage // nil: the account page shows no metered usage
	Outbox   OutboxReader       // nil: the admin console shows no usage outbox
	Internal []InternalRoute
	// State is what outlives a reload, built once by main (NewState) and
	// given to every Server. nil: a fresh one (tests).
	State  *State
	Logger *slog.Logger // nil: discard
	// AccessLog, when set, takes the access log's lines in place of
	// Logger: only where Logger is slog's JSON handler (no options) over
	// the same output, whose lines these are (LineBuffer).
	AccessLog LineBuffer
	Now       func() time.Time // nil: time.Now
	// OwnBodyTimeout is how long tollgate's own endpoints wait for a whole
	// request body (0: OwnBodyTimeout). Tests shorten it.
	OwnBodyTimeout time.Duration
}

// Server is the gateway: tollgate's own endpoints, the gate, and the
// reverse proxy to the upstream.
type Server struct {
	cfg        *proxy.Config
	auth       proxy.Authenticator
	portal     AccountPortal
	ents       proxy.EntitlementSource
	billing    proxy.Billing
	prices     proxy.PriceCatalog
	seen       proxy.SeenRecorder
	obs        Observer
	adminStore AdminStore
	syncer     CustomerSyncer
	forget     EntitlementsForgetter
	directory  proxy.Directory
	trials     Trials
	orgs       Orgs
	stale      proxy.StaleNotifier
	ender      proxy.SessionEnder
	userEnder  UserSessionsEnder
	gw         *gatewaySessions // this config's settings over the State's sessions
	keyFails   *keyFailures
	apiKeys    proxy.APIKeyStore // nil: no API keys section
	limiter    *limits.Limiter   // nil: limited routes answer 503
	usage      proxy.MeteredUsage
	outbox     OutboxReader
	tunnels    *tunnels      // upgraded connections on gated routes; the State's
	ownBody    time.Duration // OwnBodyTimeout, or the test's
	upstream   *httputil.ReverseProxy
	internal   *http.ServeMux
	transport  http.RoundTripper
	pages      *pages
	log        *slog.Logger
	accessLog  LineBuffer // nil: the access log goes through log
	now        func() time.Time
	prefix     string
	ruleLabels []string // metrics labels of the rules, by index

	// billingOn: Options.Billing was given (Checkout and the portal exist).
	billingOn bool
	// billingLimits bounds each user's requests that cost Stripe calls.
	billingLimits *billingLimiter
}

// New builds a Server from validated options.
func New(o Options) (*Server, error) {
	if o.Config == nil {
		return nil, errors.New("gateway.New: no config")
	}
	cfg := o.Config
	s := &Server{cfg: cfg, auth: o.Auth, portal: o.Portal, ents: o.Entitlements, billing: o.Billing, prices: o.Prices, seen: o.Seen, obs: o.Observer, adminStore: o.Admin, syncer: o.Sync, forget: o.Forget, directory: o.Directory, trials: o.Trials, orgs: o.Orgs, stale: o.Stale, ender: o.Ender, userEnder: o.UserSessions, log: o.Logger, accessLog: o.AccessLog, now: o.Now, prefix: cfg.InternalPrefix, ownBody: o.OwnBodyTimeout, apiKeys: o.APIKeys, limiter: o.Limiter,
		usage: o.Usage, outbox: o.Outbox}
	if s.ownBody <= 0 {
		s.ownBody = OwnBodyTimeout
	}
	s.billingOn = o.Billing != nil
	s.ruleLabels = ruleLabels(len(cfg.Routes.Rules))
	setDefault(&s.auth, proxy.Authenticator(signedOut{}))
	setDefault(&s.portal, AccountPortal(noPortal{}))
	setDefault(&s.ents, proxy.EntitlementSource(noEntitlements{}))
	setDefault(&s.billing, proxy.Billing(noBilling{}))
	setDefault(&s.prices, proxy.PriceCatalog(noPrices{}))
	setDefault(&s.seen, proxy.SeenRecorder(nopSeen{}))
	setDefault(&s.obs, Observer(nopObserver{}))
	setDefault(&s.directory, proxy.Directory(noDirectory{}))
	setDefault(&s.trials, Trials(noTrials{}))
	setDefault(&s.orgs, Orgs(noOrgs{}))
	setDefault(&s.stale, proxy.StaleNotifier(nopStale{}))
	setDefault(&s.ender, proxy.SessionEnder(noEnder{}))
	setDefault(&s.userEnder, UserSessionsEnder(noEnder{}))
	setDefault(&s.forget, EntitlementsForgetter(nopForget{}))
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.prefix == "" {
		s.prefix = "/.tollgate"
	}
	st := o.State
	if st == nil {
		st = NewState(StateOptions{Observer: o.Observer})
	}
	gw, err := newGatewaySessions(cfg.Session, cfg.PublicURL.Scheme == "https", st.sessions)
	if err != nil {
		return nil, err
	}
	s.gw, s.tunnels, s.transport, s.billingLimits, s.keyFails = gw, st.tunnels, st.transport, st.billing, st.keyFails
	p, err := newPages(cfg.Pages, s.prefix)
	if err != nil {
		return nil, err
	}
	s.pages = p
	var ul upstreamLimits
	if cfg.CostHeader != "" || hasLimits(cfg) || hasMeters(cfg) {
		ul = upstreamLimits{costFolded: foldHeaderName(cfg.CostHeader), settle: s.settleLimit}
	}
	s.upstream = newUpstream(cfg.Upstream, cfg.Clerk.ForwardCookies, cfg.APIKeys.Header, cfg.Clerk.APIKeys, s.streamStarted, s.transport, s.log, s.writeError, s.obs, ul)
	if err := s.mountInternal(o.Internal); err != nil {
		return nil, err
	}
	// The open tunnels outlive a reload; the newest server judges them.
	s.tunnels.setJudge(s)
	return s, nil
}

func (s *Server) mountInternal(extra []InternalRoute) (err error) {
	mux := http.NewServeMux()
	defer func() {
		// ServeMux panics on a conflicting pattern; that is a wiring bug in
		// main, so report it as an error rather than crash at startup.
		if r := recover(); r != nil {
			err = fmt.Errorf("internal routes: %v", r)
		}
	}()
	mux.HandleFunc("GET "+s.prefix+"/healthz", func(w http.ResponseWriter, r *http.Request) {
		// Liveness only, for `tollgate healthcheck` and load balancers; the
		// detailed readiness lives on the admin listener.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET "+s.prefix+"/assets/style.css", s.pages.serveCSS)
	mux.HandleFunc("GET "+s.prefix+"/assets/finishing.js", s.pages.serveFinishingJS)
	mux.HandleFunc("GET "+s.prefix+"/assets/keys.js", s.pages.serveKeysJS)
	// Signing out changes state, so it is a same-origin POST; a GET (a
	// link from the app) shows the one-button page that makes it.
	signOutCSRF := http.NewCrossOriginProtection()
	signOutCSRF.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.writeError(w, r, http.StatusForbidden) }))
	mux.Handle("GET "+s.prefix+"/sign-out", s.withIdentity(AuthOptional, http.HandlerFunc(s.handleSignOutPage)))
	mux.Handle("POST "+s.prefix+"/sign-out", signOutCSRF.Handler(s.withIdentity(AuthOptional, http.HandlerFunc(s.handleSignOut))))
	mux.Handle("GET "+s.prefix+"/api/me", s.withIdentity(AuthOptional, http.HandlerFunc(s.handleMe)))
	// Links for an app's own "Sign in" and "Sign up" buttons.
	mux.Handle("GET "+s.prefix+"/sign-in", s.withIdentity(AuthOptional, s.portalLink(AccountPortal.SignInURL)))
	mux.Handle("GET "+s.prefix+"/sign-up", s.withIdentity(AuthOptional, s.portalLink(AccountPortal.SignUpURL)))
	mux.HandleFunc(s.prefix+"/auth", s.handleForwardAuth)
	s.mountAdmin(mux)
	mux.Handle("GET "+s.prefix+"/session", s.withIdentity(AuthOptional, http.HandlerFunc(s.handleSession)))
	for _, r := range append(s.billingRoutes(), extra...) {
		method, path, ok := strings.Cut(r.Pattern, " ")
		if !ok {
			method, path = "", r.Pattern
		} else {
			method += " "
		}
		h := s.withIdentity(r.Auth, r.Handler)
		if r.Webhook {
			h = s.webhookLimit(h, WebhookBodyReads, WebhookBodyReadsPerAddr, WebhookBodyBytes)
		}
		mux.Handle(method+s.prefix+path, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.writeError(w, r, http.StatusNotFound) })
	s.internal = mux
	return nil
}

// ServeHTTP is the whole gateway, wrapped in the access log and recovery.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	req := &request{sw: statusWriter{ResponseWriter: w}, log: logEntry{at: start}}
	sw := &req.sw
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v) // the stdlib's signal to cut a streamed response
			}
			s.log.ErrorContext(r.Context(), "panic serving request", "path", r.URL.Path, "panic", fmt.Sprint(v))
			if !sw.wroteHeader {
				s.writeError(sw, r, http.StatusInternalServerError)
			}
		}
		s.logRequest(r, req, start)
	}()
	s.serve(sw, r.WithContext(withRequest(r.Context(), req)), req)
}

// hasLimits reports whether any plan, or free:, has limits.
func hasLimits(cfg *proxy.Config) bool {
	if cfg.Free != nil && len(cfg.Free.Limits) > 0 {
		return true
	}
	for i := range cfg.Plans {
		if len(cfg.Plans[i].Limits) > 0 {
			return true
		}
	}
	return false
}

// hasMeters reports whether any plan is metered (README "Usage billing").
func hasMeters(cfg *proxy.Config) bool {
	for i := range cfg.Plans {
		if cfg.Plans[i].Meter != nil {
			return true
		}
	}
	return false
}

// setDefault puts the no-op in place of an absent dependency.
func setDefault[T any](dep *T, noop T) {
	if any(*dep) == nil {
		*dep = noop
	}
}

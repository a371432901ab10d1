package proxy

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Config is tollgate's whole configuration, parsed from YAML by ParseConfig
// and validated. Field comments give the YAML key.
type Config struct {
	Listen         string         // listen, default ":8080"
	PublicURL      *url.URL       // public_url, required: the origin visitors see
	Upstream       *url.URL       // upstream, required
	TrustedProxies []netip.Prefix // trusted_proxies: CIDRs allowed to supply X-Forwarded-*
	ExtraOrigins   []*url.URL     // extra_origins
	// Hosts is hosts:, lower case without port, with public_url's and
	// extra_origins' hosts added; empty means any Host is served.
	Hosts          []string
	InternalPrefix string // internal_prefix, default "/.tollgate"
	DefaultAccess  Access // default_access, default paid

	Clerk   ClerkConfig
	Session SessionConfig
	Stripe  StripeConfig
	Plans   []Plan // plans, in file order; Plan.Key is the YAML key
	Routes  *RuleSet
	Store   StoreConfig
	Admin   AdminConfig
	Pages   PagesConfig

	Timeouts TimeoutsConfig
	APIKeys  APIKeysConfig // api_keys

	// Free is free:, what signed-in visitors with no granting plan get
	// (Key FreePlanKey, no prices): its routes and limits. nil: nothing.
	Free *Plan
	// CostHeader is cost_header: a response header the upstream sets to
	// what a request cost against quotas (default 1); tollgate removes it
	// from the response, and from requests. "": every request costs 1.
	CostHeader string
	// QuotaFlush is quota_flush: how often quota counters are written to
	// the store, default 1s (README "Limits").
	QuotaFlush time.Duration
	// MeterWindow is meter_window: how much time one usage row of a
	// metered plan covers, default and at most an hour (README "Usage
	// billing"); shorter for demos and tests.
	MeterWindow time.Duration

	// Warnings are non-fatal findings (shadowed rules, method-filtered rules
	// that fall through to weaker ones), each with file:line.
	Warnings []string
}

// OriginFor is the configured origin a request's Host names: the
// extra_origins entry with that host (and port), else public_url's. URLs
// that send the visitor back (sign-in, the handshake) are built from it, so
// a visitor on an extra origin comes back to it and to its cookies, while a
// Host that names no configured origin never becomes a redirect target.
func OriginFor(publicURL *url.URL, extra []*url.URL, requestHost string) *url.URL {
	h := hostKey(requestHost)
	for _, o := range extra {
		if hostKey(o.Host) == h {
			return &url.URL{Scheme: o.Scheme, Host: o.Host}
		}
	}
	return &url.URL{Scheme: publicURL.Scheme, Host: publicURL.Host}
}

// hostKey is a Host as origins compare it: lower case, without the
// trailing dot DNS ignores, the port kept.
func hostKey(h string) string {
	name, port := h, ""
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		name, port = h[:i], h[i:]
	}
	return strings.ToLower(strings.TrimSuffix(name, ".")) + port
}

// HostAllowed reports whether a request's Host (any case, with or without
// port) may be served: always when hosts: is unset.
func (c *Config) HostAllowed(host string) bool {
	if len(c.Hosts) == 0 {
		return true
	}
	h := RequestHost(host)
	for _, a := range c.Hosts {
		if a == h {
			return true
		}
	}
	return false
}

// ClerkConfig is the clerk: section.
type ClerkConfig struct {
	PublishableKey    string   // publishable_key, required when any rule is not public/deny
	SecretKey         string   // secret_key
	JWTKey            string   // jwt_key: PEM public key (optional)
	AuthorizedParties []string // authorized_parties (default: public_url's origin)
	WebhookSecrets    []string // webhook_secret: one string or a list
	// ForwardCookies passes Clerk's cookies (__session, __client_uat,
	// __clerk_*) on to the upstream, for an app that verifies Clerk itself.
	ForwardCookies bool // forward_cookies, default false
	// ProxyURL is proxy_url: where Clerk's Frontend API is proxied (the
	// name Clerk's SDKs use). Handshakes go through it, and tokens whose
	// issuer is it are accepted, as are the instance's own. Absolute; a
	// path in the file is resolved against public_url.
	ProxyURL       string
	APIURL         string // api_url: Backend API base incl. /v1 (default https://api.clerk.com/v1)
	FrontendAPIURL string // frontend_api_url: overrides https://<fapi host from the key> (sandbox, tests)
	SignInURL      string // sign_in_url: overrides <accounts>/sign-in
	// APIKeys accepts Clerk's API keys (ak_…), verified through Clerk's
	// Backend API and cached by the key's hash.
	APIKeys bool // api_keys, default false
}

// APIKeysConfig is the api_keys: section: tollgate's own keys
// (README "Paid APIs").
type APIKeysConfig struct {
	// Enabled accepts tollgate keys (tg_live_…/tg_test_…) and shows the
	// account page's API keys section.
	Enabled bool // enabled, default false
	// Header is a header read for a key besides Authorization: Bearer,
	// e.g. X-API-Key ("": none). It is never forwarded.
	Header string // header
	// MaxFailures is how many refused keys a client address may present
	// in a minute before the next refused ones are answered 429.
	MaxFailures int // max_failures, default 20
}

// LiveMode reports whether the Stripe key is a live-mode one: tollgate's
// keys are then tg_live_, else tg_test_.
func (c *Config) LiveMode() bool {
	return strings.HasPrefix(c.Stripe.SecretKey, "sk_live_") || strings.HasPrefix(c.Stripe.SecretKey, "rk_live_")
}

// SessionConfig is the session: section (the __tollgate gateway cookie).
type SessionConfig struct {
	Secret  string        // secret: 32+ bytes
	TTL     time.Duration // ttl, default 12h
	Refresh time.Duration // refresh, default 60s
}

// TimeoutsConfig is the timeouts: section: how long connections may last
// beyond the server's fixed limits (docs/SECURITY.md, "Server limits").
type TimeoutsConfig struct {
	// BodyIdle cuts a request body forwarded to the upstream when no byte
	// of it arrives for this long (408). Never an absolute limit: a steady
	// upload of any size passes. 0: no limit.
	BodyIdle time.Duration // body_idle, default 60s
	// TunnelMaxLifetime closes an upgraded connection (a WebSocket) on a
	// signed_in or paid route this long after it opened. 0: no limit
	// (revocations and lapsed plans still close it).
	TunnelMaxLifetime time.Duration // tunnel_max_lifetime, default 1h
}

// StripeConfig is the stripe: section.
type StripeConfig struct {
	SecretKey      string        // secret_key
	WebhookSecrets []string      // webhook_secret: one string or a list
	PastDueGrace   time.Duration // past_due_grace, 0: no cap while Stripe retries
	// ReconcileInterval is how often the whole account is re-listed from
	// Stripe (jittered by up to a tenth); 0 turns the periodic reconcile
	// off (the first one, into an empty store, still runs).
	ReconcileInterval time.Duration // reconcile_interval, default 6h
	APIURL            string        // api_url (default https://api.stripe.com)
	// PausedCollection is what a subscription whose payment collection is
	// paused grants: keep (default) or revoke.
	PausedCollection PausedCollectionPolicy // paused_collection
	// AllowPromotionCodes lets visitors enter a promotion code in Checkout.
	AllowPromotionCodes bool // allow_promotion_codes, default false
	// AutomaticTax has Stripe Tax work out the tax in Checkout, which then
	// asks for the visitor's billing address (and saves it on the customer).
	AutomaticTax bool // automatic_tax, default false
}

// Access is the policy the paid decision applies.
func (c StripeConfig) Access() AccessPolicy {
	return AccessPolicy{PastDueGrace: c.PastDueGrace, PausedCollection: c.PausedCollection}
}

// Access is the whole access policy: Stripe's statuses and the plans'
// scopes, for what is judged per subject (the admin listing).
func (c *Config) Access() AccessPolicy {
	pol := c.Stripe.Access()
	pol.PlanScopes = make(map[string]SubjectKind, len(c.Plans))
	for _, p := range c.Plans {
		pol.PlanScopes[p.Key] = p.Scope
	}
	return pol
}

// Plan is one entry of plans:.
type Plan struct {
	Key           string      // the YAML key, e.g. "pro"
	Name          string      // name, default Key
	Prices        []string    // prices
	Routes        []string    // routes: route IDs, or "*" for all
	TrialDays     int         // trial_days
	TrialFeePrice string      // trial_fee_price
	Scope         SubjectKind // scope: user (default) or organization (SubjectOrg)
	// Description is description: one or two sentences under the plan's
	// name on the upgrade page.
	Description string
	// Features is features: what the plan includes, one line each, shown
	// as a list with check marks.
	Features []string
	// Highlight is highlight: a short label ("Most popular") that marks the
	// plan out on the upgrade page; "" for none.
	Highlight string
	// Limits is limits:, in file order (README "Limits"); LimitFor picks
	// the entry for a route.
	Limits []LimitEntry
	// Meter is meter:, the plan's usage billed through a Stripe Billing
	// Meter (README "Usage billing"); nil for none. Its price is one of
	// Prices only when the plan is pure pay-as-you-go (prices: omitted).
	Meter *PlanMeter
}

// HasPrice reports whether id is one of the plan's prices.
func (p *Plan) HasPrice(id string) bool {
	return slices.Contains(p.Prices, id)
}

// UnlocksRoute reports whether the plan unlocks routeID. A paid rule without
// an ID ("") is unlocked by any plan.
func (p *Plan) UnlocksRoute(routeID string) bool {
	if routeID == "" {
		return true
	}
	for _, r := range p.Routes {
		if r == "*" || strings.EqualFold(r, routeID) {
			return true
		}
	}
	return false
}

// StoreDriver names the store's engine (store.driver).
type StoreDriver string

const (
	StoreBolt     StoreDriver = "bolt"     // one bbolt file, one gateway (the default)
	StorePostgres StoreDriver = "postgres" // one PostgreSQL database, any number of replicas
)

// StoreConfig is the store: section.
type StoreConfig struct {
	Driver    StoreDriver // driver, default "bolt"
	Path      string      // path, default "tollgate.db" (bolt)
	CacheSize int         // cache_size, default 10000
	// DSN is the PostgreSQL connection string (postgres://… or key=value
	// pairs), usually ${DATABASE_URL}; it may carry a password, so it is
	// never logged.
	DSN string
	// The pool (postgres): max_conns (default 10), min_conns (default 1),
	// max_conn_lifetime (default 1h), max_conn_idle (default 10m),
	// connect_timeout (default 5s).
	MaxConns        int
	MinConns        int
	MaxConnLifetime time.Duration
	MaxConnIdle     time.Duration
	ConnectTimeout  time.Duration
}

// AdminConfig is the admin: section.
type AdminConfig struct {
	Listen string   // listen: no admin listener when empty
	Token  string   // token: no admin API when empty
	Users  []string // users: Clerk user IDs allowed on the public admin page
}

// PagesConfig is the pages: section: branding of the built-in pages.
type PagesConfig struct {
	ProductName  string // product_name, default "tollgate"
	LogoURL      string // logo_url
	AccentColor  string // accent_color, a #rrggbb colour, default "#4f46e5"
	SupportURL   string // support_url
	TemplatesDir string // templates_dir: optional directory of template overrides
}

// ConfigError is one problem found in a config file. ParseConfig returns all
// of them joined with errors.Join; errors.As finds the first.
type ConfigError struct {
	File string // as given to ParseConfig ("" from CompileRules)
	Line int    // 1-based; 0 when the problem has no line
	Key  string // dotted key path, e.g. "routes[2].access"; "" for the file as a whole
	Msg  string // what is wrong and what would be valid
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Package clerk authenticates tollgate's visitors with Clerk.
//
// It implements proxy.Authenticator: a request's Clerk credentials (an
// "Authorization: Bearer" session token, else the __session and
// __client_uat cookies) become a proxy.AuthResult, following the decision
// table of Clerk's own backend SDK (@clerk/backend authenticateRequest),
// including the handshake that refreshes a browser's session when the app
// behind the gateway runs no Clerk JavaScript. It also implements
// proxy.SessionChecker and proxy.AccountPortal, and looks up users' emails
// in the Backend API.
//
// clerk-sdk-go does the signature work and talks to the Backend API; the
// cookie handling, the handshake, the checks the SDK leaves out (exact
// issuer, token category, sub and sid, azp policy) and the key and token
// caches are here. Nothing here is global: every Client carries its own
// Backend API configuration, caches, clock and logger.
package clerk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	"github.com/clerk/clerk-sdk-go/v2/session"
	"github.com/clerk/clerk-sdk-go/v2/user"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tollgate/tollgate/proxy"
)

const (
	defaultLeeway  = 5 * time.Second
	defaultTimeout = 10 * time.Second
	tokenCacheSize = 10_000
)

// Config configures a Client.
type Config struct {
	PublishableKey string // pk_live_… or pk_test_…: Frontend API host, instance type, cookie suffix
	SecretKey      string // Backend API key: JWKS, handshake nonces, sessions, users
	// JWTKey is the instance's PEM public key (CLERK_JWT_KEY). When set,
	// tokens are verified with no network call at all.
	JWTKey string
	// AuthorizedParties lists the origins allowed in a token's azp claim.
	// A token with an azp not on the list is rejected; a token without azp
	// is accepted (Clerk omits it for top-level navigations). Empty: any.
	AuthorizedParties []string
	APIURL            string // Backend API base including /v1; default https://api.clerk.com/v1
	// ProxyURL is where the instance's Frontend API is proxied (Clerk's
	// proxyUrl): handshakes go through it, and tokens it issued (iss equal
	// to it, as clerk-sdk-go's ProxyURL rule has it) are accepted, as are
	// tokens issued by the instance's own Frontend API host.
	ProxyURL string
	// FrontendAPIURL overrides "https://" + the Frontend API host as the
	// base of handshake redirects when there is no ProxyURL (sandbox,
	// tests). It changes no issuer.
	FrontendAPIURL string
	// SignInURL overrides <Account Portal>/sign-in. When it ends in
	// /sign-in, the other Account Portal pages (/sign-up, /organization)
	// are its siblings; otherwise they stay the key's.
	SignInURL string
	// PublicURL is the origin visitors see. Redirect URLs handed to Clerk
	// are built from it (or from the ExtraOrigins entry the request's Host
	// names, proxy.OriginFor) and the request's path, never from a Host or
	// X-Forwarded-* header that names no configured origin. Required.
	PublicURL    *url.URL
	ExtraOrigins []*url.URL
	HTTPClient   *http.Client     // nil: a client with a 10 s timeout
	Logger       *slog.Logger     // nil: discard
	Now          func() time.Time // nil: time.Now
	Leeway       time.Duration    // clock skew allowed on exp/nbf/iat; 0: 5 s
	// ClientAddr names the visitor a request comes from, for the
	// per-client bound on handshake nonce exchanges (main passes
	// proxy.ClientAddr with trusted_proxies). nil: the TCP peer.
	ClientAddr func(*http.Request) string
}

// Client authenticates requests against one Clerk instance. It is safe for
// concurrent use.
type Client struct {
	pk          proxy.PublishableKey
	issuer      string // "https://" + Frontend API host: an accepted iss
	proxyIssuer string // the Frontend API proxy's URL: the other one ("" without a proxy)
	fapiBase    string // where handshakes go
	// signIn, signUp and organization are the Account Portal's pages.
	signIn, signUp, organization *url.URL
	// clearSession are the Set-Cookie values that drop the session token
	// cookies Clerk's handshake sets on the app's host (sign-out).
	clearSession []string
	origin       *url.URL // PublicURL's scheme and host
	extra        []*url.URL
	parties      map[string]struct{}
	leeway       time.Duration
	now          func() time.Time
	apiKeys      *apiKeyCache // Clerk API key verdicts by the key's hash
	log          *slog.Logger
	hasSecret    bool
	pem          *clerk.JSONWebKey // CLERK_JWT_KEY, or nil: JWKS
	keys         *keyStore         // nil with a PEM key
	backend      clerk.Backend     // for calls the SDK has no method for
	sessions     *session.Client
	users        *user.Client
	nonces       *nonceGuard
	budget       *apiBudget // every Backend API call but the JWKS goes through it
	tokens       *lru.Cache[[32]byte, *verified]
	names        cookieNames
	production   bool
	clientAddrFn func(*http.Request) string

	verifications atomic.Int64 // signature checks done; read by tests
}

var (
	_ proxy.Authenticator  = (*Client)(nil)
	_ proxy.SessionChecker = (*Client)(nil)
	_ proxy.SessionEnder   = (*Client)(nil)
)

// New checks cfg, parses the publishable key and loads the PEM key if any.
// It makes no network call.
func New(cfg Config) (*Client, error) {
	pk, err := proxy.ParsePublishableKey(cfg.PublishableKey)
	if err != nil {
		return nil, err
	}
	if cfg.PublicURL == nil || (cfg.PublicURL.Scheme != "https" && cfg.PublicURL.Scheme != "http") || cfg.PublicURL.Host == "" {
		return nil, errors.New("clerk: PublicURL must be an absolute http(s) URL")
	}
	if cfg.SecretKey == "" && cfg.JWTKey == "" {
		return nil, errors.New("clerk: a secret key is required to fetch the JWKS when no JWT key is set")
	}
	c := &Client{
		clientAddrFn: cfg.ClientAddr,
		pk:           pk,
		issuer:       "https://" + pk.FrontendAPIHost,
		fapiBase:     "https://" + pk.FrontendAPIHost,
		origin:       &url.URL{Scheme: cfg.PublicURL.Scheme, Host: cfg.PublicURL.Host},
		extra:        cfg.ExtraOrigins,
		leeway:       cfg.Leeway,
		now:          cfg.Now,
		log:          cfg.Logger,
		hasSecret:    cfg.SecretKey != "",
		names:        newCookieNames(pk.CookieSuffix),
		production:   pk.Production,
	}
	if c.leeway <= 0 {
		c.leeway = defaultLeeway
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if cfg.FrontendAPIURL != "" {
		u, err := absoluteURL("FrontendAPIURL", cfg.FrontendAPIURL)
		if err != nil {
			return nil, err
		}
		c.fapiBase = strings.TrimSuffix(u.String(), "/")
	}
	if cfg.ProxyURL != "" {
		u, err := absoluteURL("ProxyURL", cfg.ProxyURL)
		if err != nil {
			return nil, err
		}
		c.proxyIssuer = strings.TrimSuffix(u.String(), "/")
		c.fapiBase = c.proxyIssuer // clerk/javascript: frontendApi = proxyUrl
	}
	portal := pk.AccountsURL
	c.signIn, _ = url.Parse(portal + "/sign-in")
	if cfg.SignInURL != "" {
		u, err := absoluteURL("SignInURL", cfg.SignInURL)
		if err != nil {
			return nil, err
		}
		c.signIn = u
		if base, ok := strings.CutSuffix(u.Path, "/sign-in"); ok {
			p := *u
			p.Path, p.RawPath, p.RawQuery = base, "", ""
			portal = p.String()
		}
	}
	c.signUp, _ = url.Parse(portal + "/sign-up")
	c.organization, _ = url.Parse(portal + "/organization")
	secure := ""
	if c.origin.Scheme == "https" {
		secure = "; Secure"
	}
	for _, name := range []string{cookieSession, c.names.session} {
		c.clearSession = append(c.clearSession, name+"=; Path=/; Max-Age=0; SameSite=Lax"+secure)
	}
	if len(cfg.AuthorizedParties) > 0 {
		c.parties = make(map[string]struct{}, len(cfg.AuthorizedParties))
		for _, p := range cfg.AuthorizedParties {
			c.parties[strings.TrimSuffix(p, "/")] = struct{}{}
		}
	}
	if c.tokens, err = lru.New[[32]byte, *verified](tokenCacheSize); err != nil {
		return nil, fmt.Errorf("clerk: token cache: %w", err)
	}
	c.nonces = newNonceGuard(c.production, c.now)

	apiURL := strings.TrimSuffix(cfg.APIURL, "/")
	if apiURL == "" {
		apiURL = proxy.DefaultClerkAPIURL
	} else if _, err := absoluteURL("APIURL", apiURL); err != nil {
		return nil, err
	}
	base := cfg.HTTPClient
	if base == nil {
		base = &http.Client{Timeout: defaultTimeout}
	}
	// Every Backend API call is counted against Clerk's budget and held
	// back while a 429's Retry-After runs (budget.go).
	c.budget = newAPIBudget(c.production, 0, c.now)
	c.apiKeys = newAPIKeyCache()
	httpClient := *base
	next := base.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	httpClient.Transport = &budgetTransport{next: next, budget: c.budget}
	// Key is always set, even empty, so the SDK never falls back to its
	// package-level key.
	backendConfig := func() clerk.BackendConfig {
		return clerk.BackendConfig{HTTPClient: &httpClient, URL: clerk.String(apiURL), Key: clerk.String(cfg.SecretKey)}
	}
	bc := backendConfig()
	c.backend = clerk.NewBackend(&bc)
	c.sessions = session.NewClient(&clerk.ClientConfig{BackendConfig: backendConfig()})
	c.users = user.NewClient(&clerk.ClientConfig{BackendConfig: backendConfig()})

	if cfg.JWTKey != "" {
		if c.pem, err = parsePEMKey(cfg.JWTKey); err != nil {
			return nil, err
		}
	} else {
		c.keys = &keyStore{
			client: jwks.NewClient(&clerk.ClientConfig{BackendConfig: backendConfig()}),
			now:    c.now,
			log:    c.log,
		}
	}
	return c, nil
}

func absoluteURL(field, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("clerk: %s: %w", field, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("clerk: %s must be an absolute http(s) URL", field)
	}
	return u, nil
}

// PublishableKey returns what the configured publishable key encodes.
func (c *Client) PublishableKey() proxy.PublishableKey { return c.pk }

// Ready reports whether tokens can be verified: the PEM key is loaded, or
// the JWKS has been (or can now be) fetched.
func (c *Client) Ready(ctx context.Context) error {
	if c.pem != nil {
		return nil
	}
	if err := c.keys.ready(ctx); err != nil {
		return fmt.Errorf("clerk: %w", err)
	}
	return nil
}

// clientAddr is the visitor's address as main says to read it.
func (c *Client) clientAddr(r *http.Request) string {
	if c.clientAddrFn != nil {
		return c.clientAddrFn(r)
	}
	return r.RemoteAddr
}

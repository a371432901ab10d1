package clerksandbox

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v3"
)

// Wire constants of the Clerk stand-in.
const (
	// KeyID is the kid of every token the sandbox signs (Clerk uses the
	// instance ID).
	KeyID = "ins_sandbox"
	// ClientCookie is the sandbox's own client cookie, standing in for
	// the HttpOnly __client cookie Clerk keeps on its Frontend API host.
	ClientCookie = "__sandbox_client"
	// DefaultFAPIHost is the Frontend API host encoded in the
	// publishable key (and the issuer of tokens) unless configured.
	DefaultFAPIHost = "clerk.tollgate.test"
	// DefaultDevFAPIHost is the same for a development instance,
	// shaped like Clerk's (<slug>.clerk.accounts.dev).
	DefaultDevFAPIHost = "tollgate-sandbox.clerk.accounts.dev"
	// DevBrowserCookie is the Account Portal's own memory of a
	// development instance's dev browser (Clerk keeps it as __clerk_db_jwt
	// on the accounts.dev site; the sandbox, sharing 127.0.0.1 with the
	// app, names it so the app's host never sees a Clerk cookie it would
	// not see with Clerk).
	DevBrowserCookie = "__sandbox_db_jwt"

	// APIVersion is the Clerk API version the sandbox emulates: the
	// __clerk_api_version current Clerk SDKs send with a handshake (the
	// Backend API version Clerk's JavaScript backend SDK declares it
	// supports), so a gateway that names another version shows up in
	// HandshakeVersions.
	APIVersion = "2026-05-12"

	sessionCategory = "cl_B7d4PD111AAA" // header "cat" of session and handshake tokens
	uatMaxAge       = 315360000         // ten years, as Clerk sets __client_uat
	sessionLife     = 7 * 24 * time.Hour
	sessionAbandon  = 30 * 24 * time.Hour
	nonceTTL        = 5 * time.Minute
	defaultTokenTTL = 60 * time.Second
	apiWindow       = 10 * time.Second
)

// User is a demo user the sandbox knows. OrgID, OrgSlug, OrgName and
// OrgRole describe the user's active organisation, if any; OrgName defaults
// to the slug in words ("acme-labs": "Acme Labs"); OrgRole is "admin" or
// "basic_member" (it travels in the token's o.rol claim, so the SDK reports
// "org:admin" or "org:basic_member").
type User struct {
	ID        string
	FirstName string
	LastName  string
	Email     string
	OrgID     string
	OrgSlug   string
	OrgName   string
	OrgRole   string
}

// Organization is an organisation of the sandbox's users.
type Organization struct {
	ID, Slug, Name string
}

// Name is the user's display name.
func (u User) Name() string {
	return strings.TrimSpace(u.FirstName + " " + u.LastName)
}

// DefaultUsers returns the demo users used when Options.Users is
// empty: Ada, a plain user; Grace, admin of organisation "acme" (Acme Inc.);
// Linus, a member of "acme".
func DefaultUsers() []User {
	return []User{
		{ID: "user_ada", FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com"},
		{ID: "user_grace", FirstName: "Grace", LastName: "Hopper", Email: "grace@example.com",
			OrgID: "org_acme", OrgSlug: "acme", OrgName: "Acme Inc.", OrgRole: "admin"},
		{ID: "user_linus", FirstName: "Linus", LastName: "Torvalds", Email: "linus@example.com",
			OrgID: "org_acme", OrgSlug: "acme", OrgName: "Acme Inc.", OrgRole: "basic_member"},
	}
}

// Options configures New. The zero value is usable.
type Options struct {
	// FAPIHost is the Frontend API host inside the publishable key and the
	// issuer of every token (https://<FAPIHost>). Default
	// DefaultFAPIHost. It need not resolve: the gateway is pointed at
	// the sandbox with its frontend_api_url and api_url overrides.
	FAPIHost string
	// Users are the demo users (default DefaultUsers()).
	Users []User
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives sign-ins, revocations and handshakes (default: discard).
	Logger *slog.Logger
	// TokenTTL is the life of a session token (default 60s, like Clerk).
	TokenTTL time.Duration
	// NonceHandshake delivers handshake payloads through the
	// __clerk_handshake_nonce cookie (fetched from the Backend API) instead
	// of the __clerk_handshake token cookie, when the handshake request
	// carries format=nonce as Clerk's SDKs send it.
	NonceHandshake bool
	// AllowedRedirectOrigins are origins ("https://app.example.test:8443")
	// that redirect_url may point at, besides http(s) on 127.0.0.1, ::1 and
	// localhost (any port), which are always allowed.
	AllowedRedirectOrigins []string
	// Key signs every token. Nil generates a fresh RSA-2048 key.
	Key *rsa.PrivateKey
	// APIRateLimit is how many Backend API requests per 10 s the instance
	// answers before it says 429 with Retry-After, as Clerk does (0:
	// Clerk's, 1,000 for a production instance and 100 for a development
	// one; the JWKS is not limited). SetAPIRateLimit changes it.
	APIRateLimit int
	// Development makes the sandbox a development instance (pk_test_), as
	// Clerk's are: the client is the dev browser, whose token
	// (__clerk_db_jwt) travels in URLs between the app and Clerk; the
	// Account Portal sends the browser back with __clerk_db_jwt in the
	// URL; the handshake payload (or nonce) comes back in the URL, never a
	// cookie; and nothing the sandbox sets on its own host is a Clerk
	// cookie the app's host could read (on Clerk they live on another
	// site).
	Development bool
}

// Clerk is an in-memory stand-in for a Clerk production instance: Backend
// API, Frontend API handshake and a hosted sign-in page, all served by
// Handler on one server. Like Clerk's Account Portal it has no sign-out
// page: a session ends through the Backend API's revoke. Create it with
// New.
type Clerk struct {
	dev       bool // a development instance
	fapiHost  string
	issuer    string
	now       func() time.Time
	log       *slog.Logger
	ttl       time.Duration
	nonceMode bool
	allowed   map[string]bool // allowed redirect origins, "scheme://host[:port]"
	key       *rsa.PrivateKey
	signer    jose.Signer
	pk, sk    string
	jwks      []byte // marshalled JSON Web Key Set
	createdAt time.Time
	users     []User
	userIdx   map[string]int
	orgs      map[string]*orgState // by org ID
	pages     *template.Template

	orgMu   sync.Mutex
	members map[string]membership // by user ID: the user's organisation now
	handler http.Handler

	mu           sync.Mutex
	rateLimit    int       // Backend API requests per apiWindow
	windowStart  time.Time // of the rate limit's current window
	windowCalls  int
	limited      int              // 429s answered
	holds        map[string]*hold // Backend API routes held (tests), by pattern
	baseURL      string
	clients      map[string]*clientState  // by client cookie value
	sessions     map[string]*sessionState // by session ID
	nonces       map[string]nonceEntry    // by nonce
	calls        map[string]int           // Backend API calls, by route pattern
	apiVersions  map[string]int           // handshakes, by __clerk_api_version
	lastSignInAt map[string]time.Time     // by user ID
	apiKeys      map[string]*apiKeyState  // Clerk API keys, by ID
}

type orgState struct {
	id, slug, name, createdBy string
	members                   int64 // guarded by orgMu after New
}

// membership is a user's (one) organisation and role in it.
type membership struct {
	orgID, orgSlug, role string
}

// New builds the Clerk stand-in, generating an RSA-2048 signing key
// unless opts.Key is set.
func New(opts Options) (*Clerk, error) {
	c := &Clerk{
		dev:          opts.Development,
		fapiHost:     opts.FAPIHost,
		now:          opts.Now,
		log:          opts.Logger,
		ttl:          opts.TokenTTL,
		nonceMode:    opts.NonceHandshake,
		allowed:      map[string]bool{},
		key:          opts.Key,
		userIdx:      map[string]int{},
		orgs:         map[string]*orgState{},
		members:      map[string]membership{},
		clients:      map[string]*clientState{},
		sessions:     map[string]*sessionState{},
		nonces:       map[string]nonceEntry{},
		calls:        map[string]int{},
		apiVersions:  map[string]int{},
		holds:        map[string]*hold{},
		rateLimit:    opts.APIRateLimit,
		lastSignInAt: map[string]time.Time{},
	}
	if c.rateLimit <= 0 {
		c.rateLimit = 1000
		if c.dev {
			c.rateLimit = 100
		}
	}
	if c.fapiHost == "" {
		c.fapiHost = DefaultFAPIHost
		if c.dev {
			c.fapiHost = DefaultDevFAPIHost
		}
	}
	if strings.ContainsAny(c.fapiHost, "/:$ ") || !strings.Contains(c.fapiHost, ".") {
		return nil, fmt.Errorf("sandbox: clerk FAPIHost %q: want a bare host name with a dot, like %q", c.fapiHost, DefaultFAPIHost)
	}
	c.issuer = "https://" + c.fapiHost
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.ttl <= 0 {
		c.ttl = defaultTokenTTL
	}
	for _, o := range opts.AllowedRedirectOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("sandbox: clerk AllowedRedirectOrigins %q: want an origin like https://app.example.test:8443", o)
		}
		c.allowed[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}

	users := opts.Users
	if len(users) == 0 {
		users = DefaultUsers()
	}
	c.users = slices.Clone(users)
	for i := range c.users {
		u := &c.users[i]
		if !strings.HasPrefix(u.ID, "user_") || len(u.ID) == len("user_") {
			return nil, fmt.Errorf("sandbox: clerk user %d: ID %q must start with user_", i, u.ID)
		}
		if _, dup := c.userIdx[u.ID]; dup {
			return nil, fmt.Errorf("sandbox: clerk user %q listed twice", u.ID)
		}
		c.userIdx[u.ID] = i
		if u.OrgID == "" {
			if u.OrgSlug != "" || u.OrgRole != "" || u.OrgName != "" {
				return nil, fmt.Errorf("sandbox: clerk user %q: OrgSlug/OrgName/OrgRole need an OrgID", u.ID)
			}
			continue
		}
		if !strings.HasPrefix(u.OrgID, "org_") {
			return nil, fmt.Errorf("sandbox: clerk user %q: OrgID %q must start with org_", u.ID, u.OrgID)
		}
		switch u.OrgRole {
		case "":
			u.OrgRole = "basic_member"
		case "admin", "basic_member":
		default:
			return nil, fmt.Errorf("sandbox: clerk user %q: OrgRole %q: want admin or basic_member", u.ID, u.OrgRole)
		}
		if u.OrgSlug == "" {
			u.OrgSlug = strings.ToLower(strings.TrimPrefix(u.OrgID, "org_"))
		}
		if u.OrgName == "" {
			u.OrgName = orgName(u.OrgSlug)
		}
		org := c.orgs[u.OrgID]
		if org == nil {
			org = &orgState{id: u.OrgID, slug: u.OrgSlug, name: u.OrgName}
			c.orgs[u.OrgID] = org
		} else if org.slug != u.OrgSlug || org.name != u.OrgName {
			return nil, fmt.Errorf("sandbox: clerk organisation %q has two slugs or names: %q and %q, %q and %q", u.OrgID, org.slug, u.OrgSlug, org.name, u.OrgName)
		}
		org.members++
		c.members[u.ID] = membership{orgID: u.OrgID, orgSlug: u.OrgSlug, role: u.OrgRole}
		if org.createdBy == "" && u.OrgRole == "admin" {
			org.createdBy = u.ID
		}
	}

	if c.key == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("sandbox: clerk signing key: %w", err)
		}
		c.key = k
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: c.key},
		(&jose.SignerOptions{}).WithType("JWT").
			WithHeader("kid", KeyID).
			WithHeader("cat", sessionCategory))
	if err != nil {
		return nil, fmt.Errorf("sandbox: clerk signer: %w", err)
	}
	c.signer = signer
	c.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &c.key.PublicKey, KeyID: KeyID, Algorithm: string(jose.RS256), Use: "sig",
	}}})
	if err != nil {
		return nil, fmt.Errorf("sandbox: clerk jwks: %w", err)
	}

	kind := "live"
	if c.dev {
		kind = "test"
	}
	c.pk = "pk_" + kind + "_" + base64.RawStdEncoding.EncodeToString([]byte(c.fapiHost+"$"))
	c.sk = "sk_" + kind + "_sandbox_" + randomHex(16)
	c.createdAt = c.now()

	c.pages, err = template.New("clerk").ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("sandbox: clerk pages: %w", err)
	}
	c.handler = c.routes()
	return c, nil
}

// Handler serves the Backend API under /v1 (bearer secret key), the
// Frontend API handshake at /v1/client/handshake, the public JWKS at
// /.well-known/jwks.json, and the Account Portal's /sign-in, /sign-up and
// /organization pages.
func (c *Clerk) Handler() http.Handler { return c.handler }

// SetBaseURL records the sandbox's own URL ("http://127.0.0.1:4100"), once
// its listener is up. It is used for links in pages.
func (c *Clerk) SetBaseURL(u string) {
	c.mu.Lock()
	c.baseURL = strings.TrimRight(u, "/")
	c.mu.Unlock()
}

func (c *Clerk) base() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.baseURL
}

// Development reports whether the sandbox is a development instance.
func (c *Clerk) Development() bool { return c.dev }

// PublishableKey is the instance's pk_live_ key (pk_test_ for a
// development instance): base64 of "<FAPIHost>$".
func (c *Clerk) PublishableKey() string { return c.pk }

// SecretKey is the Backend API secret (sk_live_sandbox_…, sk_test_sandbox_…
// for a development instance), random per instance.
func (c *Clerk) SecretKey() string { return c.sk }

// FAPIHost is the Frontend API host inside the publishable key.
func (c *Clerk) FAPIHost() string { return c.fapiHost }

// Issuer is the iss claim of every session token: https://<FAPIHost>.
func (c *Clerk) Issuer() string { return c.issuer }

// PublicKeyPEM is the PKIX PEM of the signing key, as Clerk shows it for
// networkless verification (CLERK_JWT_KEY).
func (c *Clerk) PublicKeyPEM() string {
	der, err := x509.MarshalPKIXPublicKey(&c.key.PublicKey)
	if err != nil { // cannot happen for an RSA key
		panic(fmt.Sprintf("sandbox: marshal public key: %v", err))
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Users returns the demo users, with defaults filled in and their
// organisations as they are now.
func (c *Clerk) Users() []User {
	out := make([]User, 0, len(c.users))
	for _, u := range c.users {
		u, _ = c.user(u.ID)
		out = append(out, u)
	}
	return out
}

// Organizations are the organisations of the demo users, by ID.
func (c *Clerk) Organizations() []Organization {
	out := make([]Organization, 0, len(c.orgs))
	for _, o := range c.orgs {
		out = append(out, Organization{ID: o.id, Slug: o.slug, Name: o.name})
	}
	slices.SortFunc(out, func(a, b Organization) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// user is a demo user with their organisation as it is now.
func (c *Clerk) user(id string) (User, bool) {
	i, ok := c.userIdx[id]
	if !ok {
		return User{}, false
	}
	u := c.users[i]
	c.orgMu.Lock()
	m := c.members[id]
	c.orgMu.Unlock()
	u.OrgID, u.OrgSlug, u.OrgRole, u.OrgName = m.orgID, m.orgSlug, m.role, ""
	if o := c.orgs[m.orgID]; o != nil {
		u.OrgName = o.name
	}
	return u, true
}

// RemoveMembership removes userID from organisation orgID, as the Backend
// API's DELETE /v1/organizations/{org}/memberships/{user} does: from now
// on the user's sessions have no active organisation (the session object's
// last_active_organization_id is null) and their new tokens carry no "o"
// claim. Tokens already issued keep theirs until they expire, as Clerk's
// do. It reports whether the user was a member.
func (c *Clerk) RemoveMembership(orgID, userID string) bool {
	c.orgMu.Lock()
	defer c.orgMu.Unlock()
	m, ok := c.members[userID]
	if !ok || m.orgID != orgID {
		return false
	}
	delete(c.members, userID)
	if o := c.orgs[orgID]; o != nil {
		o.members--
	}
	c.log.Info("sandbox clerk: membership removed", "org", orgID, "user", userID)
	return true
}

// SetMembershipRole changes userID's role in orgID ("admin" or
// "basic_member"), as the Backend API's PATCH of a membership does; new
// tokens carry it. It reports whether the user is a member.
func (c *Clerk) SetMembershipRole(orgID, userID, role string) bool {
	if role != "admin" && role != "basic_member" {
		return false
	}
	c.orgMu.Lock()
	defer c.orgMu.Unlock()
	m, ok := c.members[userID]
	if !ok || m.orgID != orgID {
		return false
	}
	m.role = role
	c.members[userID] = m
	return true
}

func orgName(slug string) string {
	words := strings.FieldsFunc(slug, func(r rune) bool { return r == '-' || r == '_' })
	for i, w := range words {
		r, n := utf8.DecodeRuneInString(w)
		words[i] = string(unicode.ToUpper(r)) + w[n:]
	}
	if len(words) == 0 {
		return slug
	}
	return strings.Join(words, " ")
}

// randomID is a Clerk-looking identifier body (base32, 26 characters).
func randomID() string { return rand.Text() }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

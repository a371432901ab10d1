// Package proxy is tollgate's domain: who a visitor is (Identity), what they
// hold (Entitlements), what a route asks of them (Rule), and the pure decision
// that joins the three. It also owns the gateway handler, the upstream reverse
// proxy and the built-in pages.
//
// proxy imports no SDK: Clerk, Stripe and bbolt live in the adapter packages
// proxy/clerk, proxy/stripe and proxy/bolt, which implement the small
// interfaces declared here. So nothing on the request path can call Stripe
// by accident: the compiler will not let it.
package proxy

import (
	"context"
	"net/http"
	"time"
)

// Access is what a route asks of a visitor.
type Access string

const (
	AccessPublic   Access = "public"    // forwarded as is
	AccessSignedIn Access = "signed_in" // a valid Clerk session
	AccessPaid     Access = "paid"      // a Clerk session and an entitling subscription
	AccessDeny     Access = "deny"      // never forwarded
)

// Valid reports whether a is one of the four access levels.
func (a Access) Valid() bool {
	switch a {
	case AccessPublic, AccessSignedIn, AccessPaid, AccessDeny:
		return true
	}
	return false
}

// Identity is a verified Clerk session, produced only by an Authenticator or
// by the gateway session cookie that a verified Clerk token once earned.
type Identity struct {
	UserID    string // Clerk "sub", user_…
	SessionID string // Clerk "sid", sess_…
	OrgID     string // active organisation, org_… (empty: none)
	OrgSlug   string
	OrgRole   string    // "org:admin", "org:member", … (always with the org: prefix)
	IssuedAt  time.Time // of the token (or of the gateway cookie)
	ExpiresAt time.Time // of the token (or of the gateway cookie)
	Source    string    // "bearer", "cookie", "handshake", "gateway", "api_key" or "clerk_api_key": for logs and metrics
	// KeyID is the API key the request carried (tollgate's key_… or
	// Clerk's ak_… ID, never the secret); empty for a session. An
	// organisation's key has OrgID and no UserID: no person is acting.
	KeyID string
	// KeyScopes are the key's scopes (route IDs or ScopeAll).
	KeyScopes []string
}

// IsAPIKey reports whether the identity is an API key's rather than a
// session's: it carries no cookies and no session to check.
func (id *Identity) IsAPIKey() bool { return id != nil && id.KeyID != "" }

// IsOrgAdmin reports whether the identity administers its active organisation.
func (id *Identity) IsOrgAdmin() bool {
	return id != nil && id.OrgID != "" && id.OrgRole == "org:admin"
}

// AuthState is the outcome of authenticating a request against Clerk.
type AuthState int

const (
	SignedOut AuthState = iota // no usable session
	SignedIn                   // Identity is set
	Handshake                  // send the browser to Location to refresh its Clerk session
)

func (s AuthState) String() string {
	switch s {
	case SignedIn:
		return "signed_in"
	case Handshake:
		return "handshake"
	}
	return "signed_out"
}

// AuthResult is what an Authenticator says about one request.
type AuthResult struct {
	State    AuthState
	Identity *Identity // set when State == SignedIn
	// Reason explains the state for logs and metrics (Clerk's reason names,
	// e.g. "session-token-expired"). Never shown to visitors.
	Reason string
	// Location is the handshake URL (State == Handshake), or, after a
	// development handshake was resolved from the query string, the clean URL
	// to send the browser back to (State == SignedIn or SignedOut).
	Location string
	// SetCookies are Set-Cookie header values that must reach the browser on
	// whatever response follows: handshake directives and the redirect-loop
	// counter. They are appended, never replacing the upstream's own.
	SetCookies []string
	// Refreshable is true when the visitor is signed out only because the
	// Clerk session token is missing or expired while __client_uat says the
	// client is signed in, i.e. when the gateway session cookie may stand in.
	// On a Handshake it says the same of the moment the handshake is not
	// made (a redirect loop): never when the request's own Clerk cookies
	// came twice.
	Refreshable bool
	// ClientUAT is the __client_uat value (unix seconds, 0: signed out).
	ClientUAT int64
	// StaleSessionID is the sid of an expired but otherwise valid __session.
	StaleSessionID string
	// DevBrowserToken is Clerk's development-instance __clerk_db_jwt, to be
	// appended to redirects to Clerk's hosted pages (empty in production).
	DevBrowserToken string
	// APIKeyErr is set when the request presented an API key and it was
	// refused (State SignedOut): the gate answers 401 invalid_api_key,
	// never a sign-in page, and counts the failure against the client's
	// address; 503 when it wraps ErrAPIKeyUnavailable.
	APIKeyErr error
}

// Authenticator turns a request's Clerk credentials into an AuthResult.
// Implemented by proxy/clerk. It never writes to w; the gate does.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request) AuthResult
}

// SessionStatus is what Clerk says of a session when asked.
type SessionStatus struct {
	Active bool
	// OrgID is the session's active organisation now ("": none), Clerk's
	// last_active_organization_id: what the session's next token carries.
	OrgID string
}

// SessionChecker asks Clerk about a session: whether it is still active,
// and its organisation. Implemented by proxy/clerk with the Backend API
// (one call); the gate caches its answers, one call per session at a
// time. An error wrapping ErrRateLimited says Clerk's Backend API budget
// is spent: the gateway session then serves its last known answer, within
// MaxRefreshStretch × session.refresh of it.
type SessionChecker interface {
	CheckSession(ctx context.Context, sessionID string) (SessionStatus, error)
}

// RefreshPacer is implemented by a SessionChecker whose budget can run
// short: RefreshStretch says how many times session.refresh a gateway
// session may now go without a check (1 to MaxRefreshStretch).
type RefreshPacer interface {
	RefreshStretch() float64
}

// MaxRefreshStretch bounds how long a gateway session goes without a
// session check when Clerk's Backend API budget runs short: at most this
// many times session.refresh since Clerk last said it was active (5
// minutes at the default 60 s). README "The Backend API budget".
const MaxRefreshStretch = 5

// SessionEnder ends a Clerk session in Clerk itself, for sign-out.
// Implemented by proxy/clerk with the Backend API.
type SessionEnder interface {
	// EndSession revokes the session; once it returns nil, no handshake
	// brings the session back. clear are Set-Cookie values that drop the
	// session token cookies from this host, to send whatever the outcome.
	EndSession(ctx context.Context, sessionID string) (clear []string, err error)
}

// Subscription is one Stripe subscription as tollgate last learned it from
// Stripe (never from a webhook payload's fields).
type Subscription struct {
	ID               string
	CustomerID       string
	Status           SubscriptionStatus
	PriceIDs         []string // recurring prices on the subscription's items
	Plan             string   // config key of the plan those prices belong to ("" if none)
	CurrentPeriodEnd time.Time
	// BillingCycleAnchor is Stripe's billing_cycle_anchor: monthly quotas
	// reset on its day of the month (QuotaAnchor). Zero: not known.
	BillingCycleAnchor time.Time
	TrialEnd           time.Time
	CancelAtPeriodEnd  bool
	PastDueSince       time.Time // when tollgate first saw it past_due (zero otherwise)
	// PausedCollection is pause_collection.behavior while Stripe does not
	// collect payment (keep_as_draft, mark_uncollectible or void; "" when
	// it collects); the status stays active meanwhile. CollectionResumesAt
	// is its resumes_at (zero: until someone resumes it).
	PausedCollection    string
	CollectionResumesAt time.Time
	SyncedAt            time.Time // when Stripe last told us about it
	// Comp marks a complimentary grant made by an admin, not a Stripe
	// subscription (Comp.Subscription): it is active until
	// CurrentPeriodEnd, then it is not.
	Comp bool
	// What the subscription costs, for the admin dashboard (never for a
	// decision): the sum of its recurring items' unit amount times
	// quantity, in Currency's minor unit, every IntervalCount Intervals
	// ("day", "week", "month" or "year"). Amount 0: unknown (metered or
	// tiered prices).
	Amount        int64
	Currency      string // ISO code, lower case
	Interval      string
	IntervalCount int64
	Created       time.Time // when Stripe created it
	EndedAt       time.Time // when it ended (status canceled); zero while it runs
}

// Entitlements is everything one subject holds: its Stripe customer's
// subscriptions and its comps. All says which of them count at a moment.
type Entitlements struct {
	Subject       Subject
	CustomerID    string
	Subscriptions []Subscription // the customer's, as last synced
	Comps         []Comp         // every comp, revoked and expired ones too, oldest first
	SyncedAt      time.Time
}

// EntitlementSource returns a subject's entitlements on the request path:
// from memory or local storage, never from Stripe. (nil, nil) means none are
// known. Implemented by the LRU in front of proxy/bolt.
type EntitlementSource interface {
	Entitlements(ctx context.Context, subject Subject) (*Entitlements, error)
}

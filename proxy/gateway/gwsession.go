package gateway

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tollgate/tollgate/proxy"
)

// Names of tollgate's own session cookie (README "Sessions").
const (
	// GatewayCookie is its name when public_url is http.
	GatewayCookie = "__tollgate"
	// GatewayCookieSecure is its name when public_url is https. Browsers
	// accept a __Host- cookie only when it is Secure, has Path=/ and no
	// Domain, so no sibling subdomain can set one for this host
	// (docs/SECURITY.md, "No cookie tossing"). On https the plain name is
	// not read at all.
	GatewayCookieSecure = "__Host-tollgate"
)

// gatewaySession is what the __tollgate cookie carries, sealed.
type gatewaySession struct {
	UserID    string `json:"u"`
	SessionID string `json:"s"`
	OrgID     string `json:"o,omitempty"`
	OrgSlug   string `json:"os,omitempty"`
	OrgRole   string `json:"or,omitempty"`
	Issued    int64  `json:"i"` // unix seconds: when a verified Clerk token earned it (tollgate's clock)
	Checked   int64  `json:"c"` // unix seconds: when Clerk last confirmed the session active (tollgate's clock)
	// ClerkIAT is the iat of the Clerk token that earned the cookie, unix
	// seconds on Clerk's clock: what __client_uat, also Clerk's, is
	// compared with. 0 in cookies sealed before it existed: Issued then.
	ClerkIAT int64 `json:"t,omitempty"`
}

// clerkTime is when, on Clerk's clock, the cookie's Clerk token was issued.
func (gs *gatewaySession) clerkTime() int64 {
	if gs.ClerkIAT > 0 {
		return gs.ClerkIAT
	}
	return gs.Issued
}

var errBadSeal = errors.New("gateway cookie: not sealed by this gateway")

// sealer seals and opens __tollgate values with AES-256-GCM. The key is
// derived from session.secret, so rotating the secret signs everyone out of
// the gateway session (not out of Clerk).
type sealer struct{ aead cipher.AEAD }

func newSealer(secret string) (*sealer, error) {
	key := sha256.Sum256([]byte("tollgate gateway session v1\x00" + secret))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("session secret: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("session secret: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(gs *gatewaySession, name string) (string, error) {
	plain, err := json.Marshal(gs)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	// The cookie name is authenticated data, so a value cannot be replayed
	// under another cookie name (__tollgate's under __Host-tollgate's).
	out := s.aead.Seal(nonce, nonce, plain, []byte(name))
	return base64.RawURLEncoding.EncodeToString(out), nil
}

func (s *sealer) open(value, name string) (*gatewaySession, error) {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, errBadSeal
	}
	ns := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:ns], raw[ns:], []byte(name))
	if err != nil {
		return nil, errBadSeal
	}
	var gs gatewaySession
	if err := json.Unmarshal(plain, &gs); err != nil || gs.UserID == "" || gs.SessionID == "" {
		return nil, errBadSeal
	}
	return &gs, nil
}

// gatewaySessions runs the __tollgate cookie: issue after a verified Clerk
// token, accept only where README "Sessions" allows, re-check Clerk every
// refresh. Its settings (and the cache of opened values, which only this
// secret can open) belong to one config; what Clerk said (checks,
// revocations, membership changes) is the long-lived sessionState, shared
// across reloads.
type gatewaySessions struct {
	*sessionState
	name    string // GatewayCookie, or GatewayCookieSecure on https
	sealer  *sealer
	ttl     time.Duration
	refresh time.Duration
	secure  bool
	// opened remembers cookie values already opened, so a busy visitor's
	// requests skip the AES-GCM open and JSON decode (the values are
	// immutable: a renewed cookie is a new value).
	opened *lru.Cache[string, gatewaySession]
}

// sessionState is what the gateway sessions learn from Clerk, kept for as
// long as the process runs (State).
type sessionState struct {
	checker proxy.SessionChecker // nil: the cookie is never renewed past refresh
	pacer   proxy.RefreshPacer   // the checker's, if it has one: stretches refresh as its budget runs short
	obs     SessionCheckObserver
	// checks remembers Clerk's answer per session for one refresh period,
	// so a burst of XHRs asks the Backend API once.
	checks *lru.Cache[string, sessionCheck]
	// flights are the session checks under way, one per session: the
	// requests that need the same answer meanwhile wait for it.
	flightMu sync.Mutex
	flights  map[string]*checkFlight
	// revoked holds sessions Clerk told us (webhook) or showed us ended.
	revoked *lru.Cache[string, time.Time]
	// revokedUsers holds users Clerk deleted: every gateway cookie issued
	// to them before that moment is dead.
	revokedUsers *lru.Cache[string, time.Time]
	// orgs holds the membership changes Clerk's webhooks reported, applied
	// to every identity issued before them (see orgChanges).
	orgs *orgChanges
	// store keeps revoked, revokedUsers and orgs across restarts
	// (revocations.go).
	store proxy.RevocationStore
}

type sessionCheck struct {
	status proxy.SessionStatus
	at     time.Time
}

type checkFlight struct {
	done   chan struct{}
	status proxy.SessionStatus
	err    error
}

// SessionCheckObserver learns what became of each session check the
// gateway session needed, for metrics: "clerk" (Clerk answered), "shared"
// (another request's call answered), "stale" (Clerk's budget was spent:
// the last known answer was served), "failed". Implemented by
// proxy/metrics; an Observer may implement it.
type SessionCheckObserver interface {
	SessionCheck(result string)
}

// Session check outcomes (SessionCheckObserver).
const (
	checkClerk  = "clerk"
	checkShared = "shared"
	checkStale  = "stale"
	checkFailed = "failed"
)

// sessionCheckTimeout bounds one session check, whoever waits for it.
const sessionCheckTimeout = 10 * time.Second

func newSessionState(checker proxy.SessionChecker, obs Observer) *sessionState {
	// Room for every session the Backend API budget can check in a
	// refresh period, stretched (README "The Backend API budget").
	checks, _ := lru.New[string, sessionCheck](50000)
	revoked, _ := lru.New[string, time.Time](100000)
	revokedUsers, _ := lru.New[string, time.Time](100000)
	st := &sessionState{checker: checker, checks: checks, flights: map[string]*checkFlight{}, revoked: revoked,
		revokedUsers: revokedUsers, orgs: newOrgChanges()}
	st.pacer, _ = checker.(proxy.RefreshPacer)
	st.obs, _ = obs.(SessionCheckObserver)
	return st
}

// newGatewaySessions applies one config's session settings to the
// long-lived state. Without session.secret (no route needs a session) a
// random one seals cookies nobody will be given.
func newGatewaySessions(cfg proxy.SessionConfig, secure bool, st *sessionState) (*gatewaySessions, error) {
	secret := cfg.Secret
	if secret == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		secret = string(b)
	}
	s, err := newSealer(secret)
	if err != nil {
		return nil, err
	}
	opened, _ := lru.New[string, gatewaySession](10000)
	name := GatewayCookie
	if secure {
		name = GatewayCookieSecure
	}
	return &gatewaySessions{sessionState: st, name: name, sealer: s, ttl: cfg.TTL, refresh: cfg.Refresh, secure: secure, opened: opened}, nil
}

// refreshNow is session.refresh, stretched while the checker's budget runs
// short (at most MaxRefreshStretch times).
func (g *gatewaySessions) refreshNow() time.Duration {
	if g.pacer == nil {
		return g.refresh
	}
	s := min(max(g.pacer.RefreshStretch(), 1), proxy.MaxRefreshStretch)
	return time.Duration(float64(g.refresh) * s)
}

func (g *gatewaySessions) observe(result string) {
	if g.obs != nil {
		g.obs.SessionCheck(result)
	}
}

// revoke makes any gateway cookie naming sessionID invalid at once.
func (g *gatewaySessions) revoke(sessionID string, now time.Time) {
	if sessionID == "" {
		return // no session: nothing to end, and "" would match every key identity
	}
	g.revoked.Add(sessionID, now)
	g.checks.Remove(sessionID)
}

// isRevoked reports whether Clerk told us this identity's session, or its
// user, is gone since the token was issued.
func (g *gatewaySessions) isRevoked(id *proxy.Identity) bool {
	if _, ok := g.revoked.Get(id.SessionID); ok && id.SessionID != "" {
		return true
	}
	at, ok := g.revokedUsers.Get(id.UserID)
	return ok && !id.IssuedAt.After(at)
}

// read opens the request's gateway cookie. dup reports two or more of
// them: one may have been planted (on http a sibling subdomain can set a
// domain-wide cookie of any name), so neither is used.
func (g *gatewaySessions) read(r *http.Request) (gs *gatewaySession, dup bool) {
	v, ok, dup := g.readValue(r)
	if !ok {
		return nil, dup
	}
	return &v, false // a copy: callers may change it
}

// readValue is read without a copy on the heap, for callers that only
// look (ok: there is exactly one cookie and it opened).
func (g *gatewaySessions) readValue(r *http.Request) (gs gatewaySession, ok, dup bool) {
	v, n := cookieValue(r, g.name)
	if n != 1 || v == "" {
		return gatewaySession{}, false, n > 1
	}
	if gs, ok := g.opened.Get(v); ok {
		return gs, true, false
	}
	opened, err := g.sealer.open(v, g.name)
	if err != nil {
		return gatewaySession{}, false, false
	}
	g.opened.Add(v, *opened)
	return *opened, true, false
}

// cookieValue returns the value of the first cookie called name in r's
// Cookie headers and how many of them there are, without allocating.
func cookieValue(r *http.Request, name string) (value string, n int) {
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(part, "=")
			if !ok || strings.TrimSpace(k) != name {
				continue
			}
			if n++; n == 1 {
				value = strings.TrimSpace(v)
			}
		}
	}
	return value, n
}

// hasGatewayCookie reports whether r carries a gateway cookie at all.
func (s *Server) hasGatewayCookie(r *http.Request) bool {
	_, n := cookieValue(r, s.gw.name)
	return n > 0
}

// needsReissue reports whether a verified Clerk identity should refresh the
// request's cookie: none yet (or two), another session or organisation, or
// older than half a refresh period (so a busy visitor does not get a
// Set-Cookie on every hit).
func (g *gatewaySessions) needsReissue(r *http.Request, id *proxy.Identity, now time.Time) bool {
	cur, ok, _ := g.readValue(r)
	if !ok || cur.SessionID != id.SessionID || cur.UserID != id.UserID || cur.OrgID != id.OrgID || cur.OrgRole != id.OrgRole {
		return true
	}
	return now.Sub(time.Unix(cur.Checked, 0)) > g.refresh/2
}

func (g *gatewaySessions) cookie(gs *gatewaySession) (*http.Cookie, error) {
	v, err := g.sealer.seal(gs, g.name)
	if err != nil {
		return nil, err
	}
	return &http.Cookie{Name: g.name, Value: v, Path: "/", MaxAge: int(g.ttl.Seconds()),
		HttpOnly: true, Secure: g.secure, SameSite: http.SameSiteLaxMode}, nil
}

func (g *gatewaySessions) clearCookie() *http.Cookie {
	return &http.Cookie{Name: g.name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: g.secure, SameSite: http.SameSiteLaxMode}
}

func (g *gatewaySessions) issue(id *proxy.Identity, now time.Time) (*http.Cookie, error) {
	return g.issueChecked(id, now, now)
}

// issueChecked issues a cookie whose last Clerk check was at checked: the
// zero time makes its first use ask Clerk.
func (g *gatewaySessions) issueChecked(id *proxy.Identity, now, checked time.Time) (*http.Cookie, error) {
	gs := &gatewaySession{UserID: id.UserID, SessionID: id.SessionID, OrgID: id.OrgID,
		OrgSlug: id.OrgSlug, OrgRole: id.OrgRole, Issued: now.Unix()}
	if !checked.IsZero() {
		gs.Checked = checked.Unix()
	}
	if !id.IssuedAt.IsZero() {
		gs.ClerkIAT = id.IssuedAt.Unix() // the Clerk token's iat
	}
	return g.cookie(gs)
}

// errGatewayRejected carries why a gateway cookie was not accepted; the
// reason goes to logs only.
type errGatewayRejected struct {
	reason string
	clear  bool // the cookie can never be accepted again: tell the browser to drop it
}

func (e errGatewayRejected) Error() string { return "gateway session: " + e.reason }

// fallback decides whether the __tollgate cookie may stand in for a missing
// or expired Clerk token (README "Sessions"). It returns the identity, and a renewed
// cookie when Clerk was asked and said the session is still active.
func (g *gatewaySessions) fallback(ctx context.Context, r *http.Request, ar *proxy.AuthResult, now time.Time) (*proxy.Identity, *http.Cookie, error) {
	if !ar.Refreshable || ar.ClientUAT <= 0 {
		// On the cookie path a __client_uat of 0 means Clerk signed the
		// client out: the gateway session ends with it. A bearer request
		// carries no cookies of its own and is judged alone.
		signedOut := ar.ClientUAT <= 0 && r.Header.Get("Authorization") == ""
		return nil, nil, errGatewayRejected{"not refreshable", signedOut}
	}
	gs, dup := g.read(r)
	switch {
	case dup:
		return nil, nil, errGatewayRejected{"two gateway cookies", true}
	case gs == nil:
		return nil, nil, errGatewayRejected{"no gateway cookie", false}
	}
	issued := time.Unix(gs.Issued, 0)
	switch {
	case now.Sub(issued) > g.ttl:
		return nil, nil, errGatewayRejected{"past ttl", true}
	case ar.ClientUAT > gs.clerkTime():
		// The Clerk client changed (sign-out, another sign-in) after the
		// token that earned the cookie was minted: Clerk's cookies are the
		// source of truth. Both times are Clerk's, so a gateway whose clock
		// lags Clerk's does not drop its cookie right after sign-in.
		return nil, nil, errGatewayRejected{"client changed since issue", true}
	case ar.StaleSessionID != "" && ar.StaleSessionID != gs.SessionID:
		return nil, nil, errGatewayRejected{"another session", true}
	}
	if _, ok := g.revoked.Get(gs.SessionID); ok {
		return nil, nil, errGatewayRejected{"revoked", true}
	}
	if at, ok := g.revokedUsers.Get(gs.UserID); ok && !issued.After(at) {
		return nil, nil, errGatewayRejected{"user revoked", true}
	}
	var renewed *http.Cookie
	if since := now.Sub(time.Unix(gs.Checked, 0)); since > g.refresh && (since > g.refreshNow() || g.dueAnyway(gs.SessionID, now)) {
		st, err := g.checkSession(ctx, gs.SessionID, now)
		switch {
		case err == nil:
		case errors.Is(err, proxy.ErrRateLimited) && since <= proxy.MaxRefreshStretch*g.refresh:
			// Clerk's budget is spent, and Clerk said the session was
			// active not long ago: that answer stands, unrenewed, rather
			// than a wave of 503s (README "The Backend API budget").
			g.observe(checkStale)
			id := g.identity(gs)
			g.orgs.apply(id)
			return id, nil, nil
		default:
			return nil, nil, fmt.Errorf("gateway session: check with clerk: %w", err)
		}
		if !st.Active {
			g.revoke(gs.SessionID, now)
			return nil, nil, errGatewayRejected{"clerk says inactive", true}
		}
		if st.OrgID != gs.OrgID {
			// The organisation is as fresh as the session check: Clerk's
			// answer wins. Its slug and the visitor's role in it are not in
			// that answer, so they are dropped rather than kept stale; the
			// next Clerk token brings them back.
			gs.OrgID, gs.OrgSlug, gs.OrgRole = st.OrgID, "", ""
		}
		gs.Checked = now.Unix()
		c, err := g.cookie(gs)
		if err != nil {
			return nil, nil, err
		}
		renewed = c
	}
	id := g.identity(gs)
	if g.orgs.apply(id) {
		// A membership change since the cookie was made: the cookie follows.
		gs.OrgID, gs.OrgSlug, gs.OrgRole = id.OrgID, id.OrgSlug, id.OrgRole
		c, err := g.cookie(gs)
		if err != nil {
			return nil, nil, err
		}
		renewed = c
	}
	return id, renewed, nil
}

// identity is the visitor a gateway cookie names.
func (g *gatewaySessions) identity(gs *gatewaySession) *proxy.Identity {
	issued := time.Unix(gs.Issued, 0)
	return &proxy.Identity{UserID: gs.UserID, SessionID: gs.SessionID, OrgID: gs.OrgID, OrgSlug: gs.OrgSlug,
		OrgRole: gs.OrgRole, IssuedAt: issued, ExpiresAt: issued.Add(g.ttl), Source: "gateway"}
}

// dueAnyway reports whether a session check costs nothing now: another
// request has just asked Clerk about the session (its answer is cached),
// so a stretched refresh need not wait.
func (g *gatewaySessions) dueAnyway(sid string, now time.Time) bool {
	c, ok := g.checks.Peek(sid)
	return ok && now.Sub(c.at) < g.refresh
}

// checkSession asks Clerk about a session at most once per session.refresh,
// stretched as the Backend API budget runs short (the answer is cached that
// long, so a client that keeps showing an old, unrenewed cookie cannot make
// it ask more often than honest visitors do), and once at a time: concurrent requests for the
// same session share one call, which belongs to none of them (a visitor
// going away does not cancel it for the others).
func (g *gatewaySessions) checkSession(ctx context.Context, sid string, now time.Time) (proxy.SessionStatus, error) {
	if c, ok := g.checks.Get(sid); ok && now.Sub(c.at) < g.refreshNow() {
		return c.status, nil
	}
	if g.checker == nil {
		return proxy.SessionStatus{}, nil
	}
	g.flightMu.Lock()
	if f := g.flights[sid]; f != nil {
		g.flightMu.Unlock()
		select {
		case <-f.done:
			g.observe(checkShared)
			return f.status, f.err
		case <-ctx.Done():
			return proxy.SessionStatus{}, ctx.Err()
		}
	}
	f := &checkFlight{done: make(chan struct{})}
	g.flights[sid] = f
	g.flightMu.Unlock()

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sessionCheckTimeout)
	f.status, f.err = g.checker.CheckSession(cctx, sid)
	cancel()
	switch {
	case f.err == nil:
		g.checks.Add(sid, sessionCheck{status: f.status, at: now})
		g.observe(checkClerk)
	case !errors.Is(f.err, proxy.ErrRateLimited):
		g.observe(checkFailed)
	}
	g.flightMu.Lock()
	delete(g.flights, sid)
	g.flightMu.Unlock()
	close(f.done)
	return f.status, f.err
}

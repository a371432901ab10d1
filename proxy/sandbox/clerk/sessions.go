package clerksandbox

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	josejwt "github.com/go-jose/go-jose/v3/jwt"
)

// Clients, sessions and the handshake: what a sign-in leaves behind, the
// directives a handshake hands the app, and the tokens that carry them.

type clientState struct {
	id        string
	cookie    string
	sessionID string // current session ("" when signed out)
	uat       int64  // unix seconds of the last sign-in or sign-out
}

type sessionState struct {
	id, clientID, userID string
	status               string // active, ended, revoked
	createdAt, updatedAt time.Time
	lastActiveAt         time.Time
}

type nonceEntry struct {
	directives []string
	expires    time.Time
}

// MintSessionToken signs a Clerk v2 session token for userID and sessionID,
// issued at iat: iss, sub, sid, iat, nbf (iat-10s), exp (iat+TokenTTL),
// jti, v=2, fva, and the o claim {id, slg, rol} when the user (if known)
// has an organisation. Entries of extra are added, replacing claims of the
// same name; a nil value removes the claim (e.g. {"azp": "http://…"} adds
// an authorised party, {"o": nil} drops the organisation). Neither the
// user nor the session has to exist. It returns "" only if signing fails.
func (c *Clerk) MintSessionToken(userID, sessionID string, iat time.Time, extra map[string]any) string {
	tok, err := c.mintSessionToken(userID, sessionID, iat, extra)
	if err != nil {
		c.log.Error("sandbox clerk: mint session token", "err", err)
		return ""
	}
	return tok
}

func (c *Clerk) mintSessionToken(userID, sessionID string, iat time.Time, extra map[string]any) (string, error) {
	t := iat.Unix()
	claims := map[string]any{
		"iss": c.issuer,
		"sub": userID,
		"sid": sessionID,
		"iat": t,
		"nbf": t - 10,
		"exp": t + int64(c.ttl/time.Second),
		"jti": randomHex(10),
		"v":   2,
		"fva": []int{0, -1},
	}
	if u, ok := c.user(userID); ok && u.OrgID != "" {
		claims["o"] = map[string]any{"id": u.OrgID, "slg": u.OrgSlug, "rol": u.OrgRole}
	}
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	return josejwt.Signed(c.signer).Claims(claims).CompactSerialize()
}

// signHandshake signs a handshake payload: {"handshake": directives}, with
// no time claims, like Clerk's.
func (c *Clerk) signHandshake(directives []string) (string, error) {
	return josejwt.Signed(c.signer).Claims(map[string]any{"handshake": directives}).CompactSerialize()
}

// SignIn does what the sign-in form does for userID, on a new client: it
// starts a session and returns its ID with the cookies the browser would
// get (see signInCookies: __client_uat and the sandbox client cookie, never
// __session). An unknown user gives "" and nil. A test that wants the
// session's token mints it with MintSessionToken.
func (c *Clerk) SignIn(userID string) (sessionID string, cookies []*http.Cookie) {
	res, err := c.signIn("", userID)
	if err != nil {
		c.log.Error("sandbox clerk: sign in", "user", userID, "err", err)
		return "", nil
	}
	return res.sessionID, c.signInCookies(res, false)
}

// RevokeSession marks an active session "revoked", as the Backend API's
// POST /v1/sessions/{id}/revoke does: GET /v1/sessions/{id} then says so,
// and the next handshake of its client answers with the signed-out
// directives.
func (c *Clerk) RevokeSession(sessionID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.sessions[sessionID]; s != nil && s.status == "active" {
		s.status = "revoked"
		s.updatedAt = c.now()
	}
}

type signInResult struct {
	sessionID, clientCookie string
	uat                     int64
}

// signIn starts a session for userID on the client whose cookie is
// clientCookie (a new client when it is empty or unknown), ending the
// client's previous session, as single-session Clerk instances do.
func (c *Clerk) signIn(clientCookie, userID string) (signInResult, error) {
	if _, ok := c.user(userID); !ok {
		return signInResult{}, fmt.Errorf("unknown user %q", userID)
	}
	now := c.now()
	if c.dev && !c.knownClient(clientCookie) {
		clientCookie = c.newDevBrowser()
	}
	c.mu.Lock()
	cl := c.clients[clientCookie]
	if cl == nil {
		cl = &clientState{id: "client_" + randomID(), cookie: randomHex(24)}
		c.clients[cl.cookie] = cl
	}
	if old := c.sessions[cl.sessionID]; old != nil && old.status == "active" {
		old.status = "ended"
		old.updatedAt = now
	}
	s := &sessionState{
		id: "sess_" + randomID(), clientID: cl.id, userID: userID, status: "active",
		createdAt: now, updatedAt: now, lastActiveAt: now,
	}
	c.sessions[s.id] = s
	cl.sessionID = s.id
	cl.uat = now.Unix()
	c.lastSignInAt[userID] = now
	res := signInResult{sessionID: s.id, clientCookie: cl.cookie, uat: cl.uat}
	c.mu.Unlock()
	c.log.Info("sandbox clerk: signed in", "user", userID, "session", s.id, "client", cl.id)
	return res, nil
}

// knownClient reports whether key names a client (a client cookie, or a
// development instance's dev browser token).
func (c *Clerk) knownClient(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return key != "" && c.clients[key] != nil
}

// newDevBrowser starts a development instance's dev browser: a client,
// signed out, known by its token (what Clerk's Frontend API hands out as
// __clerk_db_jwt: a JWT naming the dev browser).
func (c *Clerk) newDevBrowser() string {
	tok, err := josejwt.Signed(c.signer).Claims(map[string]any{"dev": "dvb_" + randomID()}).CompactSerialize()
	if err != nil { // cannot happen with an RSA key
		tok = "dvb_" + randomHex(24)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clients[tok] = &clientState{id: "client_" + randomID(), cookie: tok}
	return tok
}

// activeSession returns the client's session if it is active, touching its
// last activity, and the client's __client_uat.
func (c *Clerk) activeSession(clientCookie string) (sessionState, int64, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.clients[clientCookie]
	if cl == nil {
		return sessionState{}, 0, false
	}
	s := c.sessions[cl.sessionID]
	if s == nil || s.statusAt(now) != "active" {
		return sessionState{}, cl.uat, false
	}
	s.lastActiveAt = now
	return *s, cl.uat, true
}

// statusAt is the session's status, with expiry applied lazily.
func (s *sessionState) statusAt(now time.Time) string {
	if s.status == "active" && now.After(s.createdAt.Add(sessionLife)) {
		return "expired"
	}
	return s.status
}

// signInCookies are the cookies a sign-in leaves in the browser, as a
// production instance's Account Portal does: the HttpOnly client cookie
// on the Frontend API host (the sandbox client cookie stands in for
// Clerk's __client) and __client_uat, which Clerk sets on the whole
// registrable domain, so the app's host sees it. Never __session: that
// cookie belongs to the app's host, and only a handshake puts it there.
// So the first page load back from sign-in has __client_uat and no
// __session, and must handshake (Clerk's SDKs name this case
// "client-uat-but-no-session-token").
// The sandbox never sets or clears any other cookie of the app's host.
//
// A development instance's Account Portal lives on another site (a
// *.accounts.dev host): nothing it sets reaches the app's host. Its one
// cookie here is its memory of the dev browser, under a name no Clerk SDK
// reads; the dev browser token goes back to the app in the URL.
func (c *Clerk) signInCookies(res signInResult, secure bool) []*http.Cookie {
	if c.dev {
		return []*http.Cookie{{Name: DevBrowserCookie, Value: res.clientCookie, Path: "/", MaxAge: uatMaxAge,
			HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure}}
	}
	return []*http.Cookie{
		{Name: "__client_uat", Value: strconv.FormatInt(res.uat, 10), Path: "/", MaxAge: uatMaxAge,
			SameSite: http.SameSiteLaxMode, Secure: secure},
		{Name: ClientCookie, Value: res.clientCookie, Path: "/", MaxAge: uatMaxAge, HttpOnly: true,
			SameSite: http.SameSiteLaxMode, Secure: secure},
	}
}

// handshakeDirectives builds the Set-Cookie directives of a handshake
// payload for the client behind clientCookie. secure adds the Secure
// attribute (the gateway is served over https).
//
// issuer, when not empty, is the iss of the new session token: the URL of
// the Frontend API proxy the handshake came through.
func (c *Clerk) handshakeDirectives(clientCookie string, secure, nonce bool, issuer string) ([]string, string, error) {
	attrs := "; Path=/; SameSite=Lax"
	if secure {
		attrs += "; Secure"
	}
	var d []string
	userID := ""
	if s, uat, ok := c.activeSession(clientCookie); ok {
		var extra map[string]any
		if issuer != "" {
			extra = map[string]any{"iss": issuer}
		}
		tok, err := c.mintSessionToken(s.userID, s.id, c.now(), extra)
		if err != nil {
			return nil, "", err
		}
		userID = s.userID
		// The old __session is cleared before the new one is set, as
		// Clerk's payloads may do: whoever reads the payload must take the
		// last __session directive, as the browser ends up doing.
		d = []string{
			"__session=; Path=/; Max-Age=0; SameSite=Lax" + secureAttr(secure),
			"__session=" + tok + attrs,
			"__client_uat=" + strconv.FormatInt(uat, 10) + "; Path=/; Max-Age=" + strconv.Itoa(uatMaxAge) + "; SameSite=Lax" + secureAttr(secure),
			"__clerk_handshake=; Path=/; Max-Age=0",
		}
	} else {
		d = []string{
			"__client_uat=0; Path=/; Max-Age=" + strconv.Itoa(uatMaxAge) + "; SameSite=Lax" + secureAttr(secure),
			"__session=; Path=/; Max-Age=0; SameSite=Lax" + secureAttr(secure),
			"__clerk_handshake=; Path=/; Max-Age=0",
		}
	}
	if c.dev {
		// The payload travelled in the URL: no handshake cookie to clear.
		// The app's host keeps the dev browser in a cookie of its own.
		kept := d[:0]
		for _, x := range d {
			if !strings.HasPrefix(x, "__clerk_handshake=") {
				kept = append(kept, x)
			}
		}
		d = append(kept, "__clerk_db_jwt="+clientCookie+"; Path=/; SameSite=Lax"+secureAttr(secure))
		return d, userID, nil
	}
	if nonce {
		d = append(d, "__clerk_handshake_nonce=; Path=/; Max-Age=0")
	}
	return d, userID, nil
}

func secureAttr(secure bool) string {
	if secure {
		return "; Secure"
	}
	return ""
}

// storeNonce keeps directives for the Backend API's handshake_payload for a
// few minutes and returns the nonce.
func (c *Clerk) storeNonce(directives []string) string {
	now := c.now()
	n := randomHex(16)
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.nonces {
		if now.After(v.expires) {
			delete(c.nonces, k)
		}
	}
	c.nonces[n] = nonceEntry{directives: directives, expires: now.Add(nonceTTL)}
	return n
}

func (c *Clerk) nonce(n string) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.nonces[n]
	if !ok || c.now().After(v.expires) {
		return nil, false
	}
	return v.directives, true
}

func errRedirect() error {
	return errors.New("redirect_url must be an absolute http(s) URL on a loopback host or an allowed origin")
}

// checkRedirect validates a redirect_url: an absolute http(s) URL on
// a loopback host (127.0.0.0/8, ::1, localhost), or one of the allowed
// origins. So the sandbox
// is never an open redirect.
func (c *Clerk) checkRedirect(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Opaque != "" {
		return nil, errRedirect()
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return nil, errRedirect()
		}
	}
	if isLoopback(u.Hostname()) {
		return u, nil
	}
	if c.allowed[strings.ToLower(u.Scheme+"://"+u.Host)] {
		return u, nil
	}
	return nil, errRedirect()
}

// isLoopback reports whether host (without port) is a loopback name.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// HandshakeVersions counts the Frontend API handshakes received so far
// by the __clerk_api_version they asked for ("" when absent).
func (c *Clerk) HandshakeVersions() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.apiVersions)
}

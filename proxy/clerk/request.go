package clerk

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	josejwt "github.com/go-jose/go-jose/v3/jwt"

	"github.com/tollgate/tollgate/proxy"
)

// Clerk's cookie and query parameter names (clerk/javascript
// packages/backend/src/constants.ts).
const (
	cookieSession       = "__session"
	cookieClientUAT     = "__client_uat"
	cookieDevBrowser    = "__clerk_db_jwt"
	cookieHandshake     = "__clerk_handshake"
	cookieNonce         = "__clerk_handshake_nonce"
	cookieRedirectCount = "__clerk_redirect_count"

	paramDevBrowser       = "__clerk_db_jwt"
	paramLegacyDevBrowser = "__dev_session"
	paramHandshake        = "__clerk_handshake" // also the prefix of __clerk_handshake_nonce
	paramNonce            = "__clerk_handshake_nonce"
	paramHelp             = "__clerk_help"
	paramSession          = "__session"

	// apiVersion is the __clerk_api_version every handshake sends: the
	// Clerk API version whose session token claims (v2) tollgate reads.
	// It is @clerk/backend's SUPPORTED_BAPI_VERSION, as read in
	// clerk/javascript packages/backend/src/constants.ts at e21ae9a4cf
	// (@clerk/backend 3.16.10; the value since cdb940afdc, June 2026).
	// clerk-sdk-go v2.4.2 still sends Clerk-API-Version 2025-04-10 on its
	// own Backend API calls; both versions mint v2 session tokens.
	apiVersion = "2026-05-12"
	// maxHandshakeRedirects: after this many handshakes in a row (counted in
	// a short-lived cookie) the request is treated as signed out.
	maxHandshakeRedirects = 3
	// devClockSkew is how far a development instance's handshake token may
	// be off this clock: Clerk's SDK retries a development handshake token
	// that fails on its time claims with clockSkewInMs 86_400_000
	// (clerk/javascript packages/backend/src/tokens/handshake.ts,
	// resolveHandshake).
	devClockSkew = 24 * time.Hour
)

// Reasons of the cookie path (Clerk's AuthErrorReason names where Clerk has
// one). Verification failures carry the reasons of verify.go.
const (
	reasonTokenAndUATMissing  = "session-token-and-uat-missing"
	reasonTokenButNoClientUAT = "session-token-but-no-client-uat"
	reasonClientUATButNoToken = "client-uat-but-no-session-token"
	reasonIATBeforeClientUAT  = "session-token-iat-before-client-uat"
	reasonSessionTokenExpired = "session-token-expired-refresh-non-eligible-no-refresh-cookie"
	reasonSessionTokenNBF     = "session-token-nbf"
	reasonSessionIATInFuture  = "session-token-iat-in-the-future"
	reasonDevBrowserSync      = "dev-browser-sync"
	reasonSessionTokenMissing = "session-token-missing"
	reasonSessionPending      = "session-pending"
	reasonHandshakeFailed     = "handshake-failed"
	reasonRedirectLoop        = "handshake-redirect-loop"
	reasonDuplicateCookies    = "duplicate-session-cookies"
)

// Identity.Source values.
const (
	sourceBearer    = "bearer"
	sourceCookie    = "cookie"
	sourceHandshake = "handshake"
)

// Authenticate implements proxy.Authenticator: Clerk's authenticateRequest
// (clerk/javascript packages/backend/src/tokens/request.ts) for a primary
// domain without satellites or organisation sync. It never fails: trouble
// (the Backend API down, a bad token) ends in SignedOut with a reason.
func (c *Client) Authenticate(ctx context.Context, r *http.Request) proxy.AuthResult {
	// A: a bearer session token of this instance decides alone: no cookies,
	// no handshake. Other Authorization values belong to the upstream.
	if tok, ok := bearerToken(r.Header.Get("Authorization")); ok {
		if v := c.view(tok); v.decoded && c.belongs(v.info.iss) {
			return c.authenticateHeader(ctx, &v)
		}
	}
	return c.authenticateCookies(ctx, r)
}

// bearerToken returns the x.y.z of "Bearer x.y.z".
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	if strings.Count(tok, ".") != 2 {
		return "", false
	}
	return tok, true
}

// belongs reports whether iss, with its scheme removed, is this instance's
// Frontend API host or its proxy URL (Clerk's tokenBelongsToInstance, which
// knows only the former; see acceptedIssuer). Verification then requires
// the exact issuer.
func (c *Client) belongs(iss string) bool {
	iss = withoutScheme(iss)
	return iss == c.pk.FrontendAPIHost || c.proxyIssuer != "" && iss == withoutScheme(c.proxyIssuer)
}

func withoutScheme(u string) string {
	switch {
	case len(u) >= 8 && strings.EqualFold(u[:8], "https://"):
		return u[8:]
	case len(u) >= 7 && strings.EqualFold(u[:7], "http://"):
		return u[7:]
	}
	return u
}

func (c *Client) authenticateHeader(ctx context.Context, v *tokenView) proxy.AuthResult {
	ver, err := c.verify(ctx, v, c.now())
	switch {
	case err != nil:
		// Expired or not: an API client refreshes its own token.
		return proxy.AuthResult{State: proxy.SignedOut, Reason: reasonOf(err)}
	case ver.pending:
		return proxy.AuthResult{State: proxy.SignedOut, Reason: reasonSessionPending}
	}
	return proxy.AuthResult{State: proxy.SignedIn, Identity: ver.identity(sourceBearer)}
}

// cookieNames are this instance's suffixed cookie names.
type cookieNames struct {
	session, clientUAT, devBrowser string
}

func newCookieNames(suffix string) cookieNames {
	return cookieNames{
		session:    cookieSession + "_" + suffix,
		clientUAT:  cookieClientUAT + "_" + suffix,
		devBrowser: cookieDevBrowser + "_" + suffix,
	}
}

// The Clerk cookies of one request, indexed by the ck* constants.
const (
	ckSession = iota
	ckSessionSuffixed
	ckUAT
	ckUATSuffixed
	ckDevBrowser
	ckDevBrowserSuffixed
	ckHandshake
	ckNonce
	ckRedirectCount
	ckCount
)

type requestCookies [ckCount]string

// cookieSet marks ck* indexes, one bit each.
type cookieSet uint16

// Cookies of which a second copy is an attack: the session and its client
// state decide who the visitor is; the handshake cookies carry Clerk's
// answer.
const (
	authCookies      cookieSet = 1<<ckSession | 1<<ckSessionSuffixed | 1<<ckUAT | 1<<ckUATSuffixed
	handshakeCookies cookieSet = 1<<ckHandshake | 1<<ckNonce
)

// readCookies picks Clerk's cookies out of the Cookie headers without
// allocating, and reports which of them came more than once (an empty copy
// counts). An empty value counts as absent, as in Clerk's SDK.
//
// Duplicates are where tollgate deliberately differs from Clerk's SDK. It
// parses the header with the cookie package's parse, which keeps the first
// copy of a name ("only assign once"), empty or not, and its getCookie then
// reads an empty value as absent (clerk/javascript
// packages/backend/src/tokens/clerkRequest.ts parseCookies,
// authenticateContext.ts getCookie). So an empty __session placed first
// masks the valid one behind it, and whichever copy comes first wins. A
// browser orders cookies by path length and age, not by who set them, and a
// sibling subdomain can set a domain-wide cookie of any name; so a second
// copy of a session cookie is never resolved here: the caller treats it as
// an attack (docs/SECURITY.md).
func (c *Client) readCookies(r *http.Request) (requestCookies, cookieSet) {
	var rc requestCookies
	var seen, dup cookieSet
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			name, val, ok := strings.Cut(part, "=")
			if !ok {
				continue
			}
			i := -1
			switch strings.TrimSpace(name) {
			case cookieSession:
				i = ckSession
			case cookieClientUAT:
				i = ckUAT
			case cookieDevBrowser:
				i = ckDevBrowser
			case cookieHandshake:
				i = ckHandshake
			case cookieNonce:
				i = ckNonce
			case cookieRedirectCount:
				i = ckRedirectCount
			case c.names.session:
				i = ckSessionSuffixed
			case c.names.clientUAT:
				i = ckUATSuffixed
			case c.names.devBrowser:
				i = ckDevBrowserSuffixed
			}
			if i < 0 {
				continue
			}
			if seen&(1<<i) != 0 {
				dup |= 1 << i
				continue
			}
			seen |= 1 << i
			val = strings.TrimSpace(val)
			if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			rc[i] = val
		}
	}
	return rc, dup
}

// requestParams are Clerk's query parameters of one request.
type requestParams struct {
	devBrowser, handshake, nonce string
	hasDevBrowser                bool
}

// readParams reads Clerk's query parameters, which only a development
// instance uses. Clerk's SDK reads the handshake payload and nonce from the
// query first, then the cookies, whatever the instance
// (clerk/javascript packages/backend/src/tokens/authenticateContext.ts,
// initHandshakeValues). But only a development Frontend API puts them in
// the URL: "In production, the handshake token is being transferred as a
// cookie" (request.ts, authenticateRequestWithTokenInCookie), "In
// development, the handshake token is being transferred in the URL as a
// query parameter" (handshake.ts,
// handleTokenVerificationErrorInDevelopment). A production instance's
// Frontend API lives on the app's own registrable domain and sets the
// __clerk_handshake or __clerk_handshake_nonce cookie there. So for a
// production instance (pk_live_) tollgate deliberately differs from the
// SDK and reads both from cookies only: a link carrying
// ?__clerk_handshake=<someone's payload> would otherwise sign whoever
// follows it in as that someone (login CSRF). Development instances keep
// the query forms they need.
func (c *Client) readParams(r *http.Request) requestParams {
	var p requestParams
	if c.production || !strings.Contains(r.URL.RawQuery, "__clerk_") {
		return p
	}
	q, _ := url.ParseQuery(r.URL.RawQuery)
	p.devBrowser, p.handshake, p.nonce = q.Get(paramDevBrowser), q.Get(paramHandshake), q.Get(paramNonce)
	p.hasDevBrowser = q.Has(paramDevBrowser)
	return p
}

// usesSuffixed ports Clerk's usesSuffixedCookies (authenticateContext.ts): whether this
// request's session lives in the suffixed cookies. It fills the views of the
// two session cookies as it needs them.
func (c *Client) usesSuffixed(rc *requestCookies, plain, suffixed *tokenView, now time.Time) bool {
	session, sSession := rc[ckSession], rc[ckSessionSuffixed]
	uat, sUAT := rc[ckUAT], rc[ckUATSuffixed]
	if session != "" {
		*plain = c.view(session)
		if !plain.decoded || plain.info.iss == "" {
			return false // 1: malformed, so signed out rather than a handshake
		}
		if !c.belongs(plain.info.iss) {
			return true // 2: another app's token
		}
	}
	if sUAT == "" && sSession == "" {
		return false // 3
	}
	if sSession != "" {
		if sSession == session {
			*suffixed = *plain
		} else {
			*suffixed = c.view(sSession)
		}
	}
	if sUAT != "0" && uat != "0" && iatOf(plain) > iatOf(suffixed) {
		return false // 4: both signed in, the un-suffixed token is newer
	}
	if sUAT == "0" && uat != "0" {
		return false // 5
	}
	if !c.production && sUAT != "0" && uat == "0" &&
		suffixed.decoded && suffixed.info.hasExp && suffixed.info.exp <= now.Unix() {
		return false // 6
	}
	if sUAT == "" && sSession != "" {
		return false // 7
	}
	return true // 8
}

func iatOf(v *tokenView) int64 {
	if v.decoded && v.info.hasIAT {
		return v.info.iat
	}
	return 0
}

// handshakeInput is what a handshake redirect needs besides the request.
type handshakeInput struct {
	suffixed      bool
	redirectCount int
	devBrowser    string
	// session is the request's session token, if it has one (one copy):
	// the handshake carries it for Clerk's "origin outage mode", in which
	// Clerk's edge renews it while its origin is down (clerk/javascript
	// packages/backend/src/tokens/handshake.ts, buildRedirectToHandshake).
	session string
}

// authenticateCookies is the cookie path, authenticateRequestWithTokenInCookie
// in request.ts, its steps numbered B1–B14 below (satellite, organisation
// sync, dev-browser-missing and the __refresh flow left out).
func (c *Client) authenticateCookies(ctx context.Context, r *http.Request) proxy.AuthResult {
	now := c.now()
	rc, dup := c.readCookies(r)
	params := c.readParams(r)

	var plain, sfx tokenView
	suffixed := c.usesSuffixed(&rc, &plain, &sfx, now)
	sessionRaw, uatRaw, devRaw, v := rc[ckSession], rc[ckUAT], rc[ckDevBrowser], &plain
	if suffixed {
		sessionRaw, uatRaw, devRaw, v = rc[ckSessionSuffixed], rc[ckUATSuffixed], rc[ckDevBrowserSuffixed], &sfx
	}
	if sessionRaw != "" && v.raw == "" {
		*v = c.view(sessionRaw)
	}

	res := proxy.AuthResult{ClientUAT: parseUAT(uatRaw)}
	if !c.production {
		res.DevBrowserToken = firstNonEmpty(params.devBrowser, devRaw)
	}
	hs := handshakeInput{suffixed: suffixed, devBrowser: res.DevBrowserToken}
	if dup&authCookies == 0 {
		hs.session = sessionRaw
	}
	if n := rc[ckRedirectCount]; n != "" {
		hs.redirectCount, _ = strconv.Atoi(n)
	}

	// B1: back from a handshake. Two copies of a handshake cookie: neither
	// is Clerk's answer for sure, so neither is used.
	tok, nonce := params.handshake, params.nonce
	if dup&handshakeCookies == 0 {
		tok, nonce = firstNonEmpty(tok, rc[ckHandshake]), firstNonEmpty(nonce, rc[ckNonce])
	} else if rc[ckHandshake] != "" || rc[ckNonce] != "" {
		c.log.WarnContext(ctx, "clerk: two handshake cookies of one name; neither is used")
	}
	if tok != "" || nonce != "" {
		out, err := c.resolveHandshake(ctx, r, tok, nonce, res)
		if err == nil {
			return out
		}
		if errors.Is(err, errNonceLimited) || errors.Is(err, errNonceFailed) || errors.Is(err, errNonceInvalid) {
			// What a flood of made-up nonces looks like: not worth a
			// warning each.
			c.log.DebugContext(ctx, "clerk: handshake nonce not exchanged", "err", err)
		} else {
			c.log.WarnContext(ctx, "clerk: cannot resolve the handshake", "err", err, "production", c.production)
		}
		if !c.production {
			res.State, res.Reason = proxy.SignedOut, reasonHandshakeFailed
			if params.handshake != "" || params.nonce != "" {
				res.Location = c.currentURL(r) // drop the bad payload from the address bar
			}
			return res
		}
		// Production: the handshake cookie lives on the registrable domain
		// and may belong to another app; carry on with this request's own
		// cookies.
	}
	// Two copies of a session cookie (an empty one counts): someone may
	// have planted one (a sibling subdomain can). Neither copy is trusted,
	// nor is the gateway cookie: a page load asks Clerk through the
	// handshake, whose answer arrives in a cookie of its own; anything else
	// is signed out.
	if dup&authCookies != 0 {
		return c.handshake(r, res, reasonDuplicateCookies, false, &hs)
	}
	// B2: back from the Account Portal of a development instance.
	if !c.production && params.hasDevBrowser {
		return c.handshake(r, res, reasonDevBrowserSync, false, &hs)
	}
	switch {
	case res.ClientUAT == 0 && sessionRaw == "": // B4
		res.State, res.Reason = proxy.SignedOut, reasonTokenAndUATMissing
		return res
	case res.ClientUAT == 0: // B5
		return c.handshake(r, res, reasonTokenButNoClientUAT, false, &hs)
	case sessionRaw == "": // B6
		return c.handshake(r, res, reasonClientUATButNoToken, true, &hs)
	case !v.decoded: // B7
		res.State, res.Reason = proxy.SignedOut, reasonTokenInvalid
		return res
	}
	if err := typeError(v.info.typ, v.info.cat, v.info.sub); err != nil { // B8
		res.State, res.Reason = proxy.SignedOut, reasonTokenTypeMismatch
		return res
	}
	if v.info.hasIAT && v.info.iat < res.ClientUAT { // B9
		if v.info.hasExp && now.Add(-c.leeway).Unix() > v.info.exp {
			if ver, err := c.verify(ctx, v, now); ver != nil && errors.Is(err, josejwt.ErrExpired) {
				res.StaleSessionID = ver.sessionID
			}
		}
		return c.handshake(r, res, reasonIATBeforeClientUAT, true, &hs)
	}
	ver, err := c.verify(ctx, v, now)
	switch {
	case err == nil && ver.pending:
		res.State, res.Reason = proxy.SignedOut, reasonSessionPending
		return res
	case err == nil: // B10
		res.State, res.Identity = proxy.SignedIn, ver.identity(sourceCookie)
		return res
	case errors.Is(err, josejwt.ErrExpired): // B11
		if ver != nil {
			res.StaleSessionID = ver.sessionID
		}
		return c.handshake(r, res, reasonSessionTokenExpired, true, &hs)
	case errors.Is(err, josejwt.ErrNotValidYet): // B12
		if ver != nil {
			res.StaleSessionID = ver.sessionID
		}
		return c.handshake(r, res, reasonSessionTokenNBF, true, &hs)
	case errors.Is(err, josejwt.ErrIssuedInTheFuture): // B13
		// A token minted ahead of this clock (Clerk's clock runs ahead):
		// the gateway session may stand in for it as for an expired one,
		// but only for the session it names.
		if ver != nil {
			res.StaleSessionID = ver.sessionID
		}
		return c.handshake(r, res, reasonSessionIATInFuture, true, &hs)
	}
	res.State, res.Reason = proxy.SignedOut, reasonOf(err) // B14
	return res
}

// handshake is Clerk's handleMaybeHandshakeStatus: send a page load through
// the Frontend API to refresh its cookies, or, for anything else, report it
// signed out. refreshable says the gateway session may stand in.
func (c *Client) handshake(r *http.Request, res proxy.AuthResult, reason string, refreshable bool, hs *handshakeInput) proxy.AuthResult {
	if !eligibleForHandshake(r) {
		res.State, res.Reason = proxy.SignedOut, reason
		res.Refreshable = refreshable && res.ClientUAT > 0
		return res
	}
	if hs.redirectCount >= maxHandshakeRedirects {
		c.log.WarnContext(r.Context(), "clerk: refreshing the session token resulted in a redirect loop; check that the publishable and secret keys belong to the same instance",
			"reason", reason)
		res.State, res.Reason = proxy.SignedOut, reasonRedirectLoop+" ("+reason+")"
		// A counter the browser sends cannot make the gateway cookie stand
		// in where the request's own cookies said it may not (duplicates).
		res.Refreshable = refreshable && res.ClientUAT > 0
		return res
	}
	res.State, res.Reason = proxy.Handshake, reason
	// Whether the gateway cookie may stand in if the handshake is not made
	// (the gateway's own loop guard).
	res.Refreshable = refreshable && res.ClientUAT > 0
	res.Location = c.handshakeURL(r, reason, hs)
	res.SetCookies = append(res.SetCookies,
		cookieRedirectCount+"="+strconv.Itoa(hs.redirectCount+1)+"; Path=/; SameSite=Lax; HttpOnly; Max-Age=2")
	return res
}

// eligibleForHandshake: a GET page load (Clerk's isRequestEligibleForHandshake,
// with Accept matched anywhere as Next.js's isPageRequest does).
func eligibleForHandshake(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Dest") {
	case "document", "iframe":
		return true
	case "":
		return strings.Contains(r.Header.Get("Accept"), "text/html")
	}
	return false
}

// handshakeURL is the Frontend API handshake endpoint for this request
// (handshake.ts, buildRedirectToHandshake).
func (c *Client) handshakeURL(r *http.Request, reason string, hs *handshakeInput) string {
	var b strings.Builder
	b.WriteString(c.fapiBase)
	b.WriteString("/v1/client/handshake?redirect_url=")
	b.WriteString(url.QueryEscape(c.currentURL(r)))
	b.WriteString("&__clerk_api_version=" + apiVersion)
	b.WriteString("&suffixed_cookies=" + strconv.FormatBool(hs.suffixed))
	b.WriteString("&__clerk_hs_reason=")
	b.WriteString(url.QueryEscape(reason))
	b.WriteString("&format=nonce")
	if hs.session != "" {
		b.WriteString("&" + paramSession + "=")
		b.WriteString(url.QueryEscape(hs.session))
	}
	if !c.production && hs.devBrowser != "" {
		b.WriteString("&" + paramDevBrowser + "=")
		b.WriteString(url.QueryEscape(hs.devBrowser))
	}
	return b.String()
}

// currentURL is the request's URL as the visitor sees it: the configured
// origin its Host names (proxy.OriginFor: as Clerk's SDK builds it from the
// request's host, but only ever a configured origin), the request's path
// and its query without Clerk's one-time parameters (dev browser,
// handshake payload).
func (c *Client) currentURL(r *http.Request) string {
	p := r.URL.EscapedPath()
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	o := c.origin
	if len(c.extra) > 0 {
		o = proxy.OriginFor(c.origin, c.extra, r.Host)
	}
	u := o.Scheme + "://" + o.Host + p
	if q := cleanQuery(r.URL.RawQuery); q != "" {
		u += "?" + q
	}
	return u
}

// cleanQuery drops Clerk's one-time parameters from a raw query, keeping
// the others as they were written.
func cleanQuery(raw string) string {
	if !strings.Contains(raw, "__") && !strings.Contains(raw, "%") { // names may arrive escaped
		return raw
	}
	var b strings.Builder
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, _, _ := strings.Cut(pair, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if k == paramDevBrowser || k == paramLegacyDevBrowser || k == paramHelp || strings.HasPrefix(k, paramHandshake) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
	}
	return b.String()
}

// resolveHandshake turns a handshake payload (handshake.ts,
// resolveHandshake) into a result
// carrying its Set-Cookie directives. An error means the payload could not
// be trusted or fetched; the caller decides what follows.
func (c *Client) resolveHandshake(ctx context.Context, r *http.Request, tok, nonce string, res proxy.AuthResult) (proxy.AuthResult, error) {
	var directives []string
	var err error
	if nonce != "" {
		directives, err = c.handshakePayload(ctx, c.clientAddr(r), nonce)
	} else {
		directives, err = c.verifyHandshake(ctx, tok)
	}
	if err != nil {
		return proxy.AuthResult{}, err
	}
	res.SetCookies = directives
	if !c.production {
		// The payload came in the URL: send the browser back to the clean one.
		res.Location = c.currentURL(r)
	}
	var sessionTok string
	var haveUAT bool
	var uat int64
	for _, d := range directives {
		name, value := directiveCookie(d)
		switch {
		case strings.HasPrefix(name, cookieSession):
			// The last one wins, as in the browser that applies them in
			// order: Clerk may clear the old cookie before it sets the new
			// one (clerk/javascript packages/backend/src/tokens/handshake.ts,
			// resolveHandshake, keeps overwriting sessionToken).
			sessionTok = value
		case strings.HasPrefix(name, cookieClientUAT):
			// What the browser will hold: the largest of the values set
			// (a host-only cookie may be cleared while a domain one is set).
			haveUAT, uat = true, max(uat, parseUAT(value))
		}
	}
	if haveUAT {
		res.ClientUAT = uat
	}
	if sessionTok == "" {
		res.State, res.Reason = proxy.SignedOut, reasonSessionTokenMissing
		return res, nil
	}
	v := c.view(sessionTok)
	now := c.now()
	ver, err := c.verify(ctx, &v, now)
	if err != nil && !c.production && timeError(err) {
		// Clerk's development clock-skew retry, as in its SDK: a laptop,
		// WSL or Docker clock that is off is common in development, so the
		// token Clerk just handed over is accepted with a day of skew.
		c.log.WarnContext(ctx, "clerk: clock skew detected: this computer's clock is off from Clerk's; "+
			"as Clerk's SDKs do for a development instance, the handshake's session token is accepted with up to a day of skew. "+
			"Set the clock right (turn automatic time synchronisation off and on)", "err", err)
		ver, err = c.verifySkewed(ctx, &v, devClockSkew, now)
	}
	if err != nil {
		return proxy.AuthResult{}, err
	}
	if ver.pending {
		res.State, res.Reason = proxy.SignedOut, reasonSessionPending
		return res, nil
	}
	res.State, res.Identity = proxy.SignedIn, ver.identity(sourceHandshake)
	return res, nil
}

// directiveCookie returns the name and value of a Set-Cookie directive.
func directiveCookie(d string) (name, value string) {
	nv, _, _ := strings.Cut(d, ";")
	name, value, _ = strings.Cut(nv, "=")
	return strings.TrimSpace(name), strings.TrimSpace(value)
}

// parseUAT reads __client_uat as JavaScript's parseInt would: leading
// digits, anything else 0.
func parseUAT(s string) int64 {
	var n int64
	for i := 0; i < len(s) && i < 18; i++ {
		if s[i] < '0' || s[i] > '9' {
			break
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

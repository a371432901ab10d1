package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/proxy"
)

// Forward-auth headers. Clients of the endpoint are reverse proxies (nginx
// auth_request, Traefik ForwardAuth, Caddy forward_auth) that ask whether
// the request they hold may pass.
const (
	HeaderLocation   = "X-Tollgate-Location"    // nginx mode, on 401: where to send a page load (sign-in or handshake)
	HeaderUpgradeURL = "X-Tollgate-Upgrade-URL" // nginx mode, on 403: the upgrade page for a paid route

	// On an allowed answer, the request's Cookie and Authorization as proxy
	// mode would forward them (tollgate's and Clerk's cookies removed, an
	// Authorization holding an API key dropped), for the caller to put in
	// place of the client's: nginx and Caddy can, Traefik cannot (README
	// "Forward auth").
	HeaderForwardCookie        = "X-Tollgate-Cookie"
	HeaderForwardAuthorization = "X-Tollgate-Authorization"
)

// handleForwardAuth serves <prefix>/auth. It rebuilds the original request
// from headers only the fronting proxy sets (X-Original-URI and
// X-Original-Method from nginx; X-Forwarded-Uri, -Method and -Host from
// Traefik and Caddy, which overwrite a client's copies), believed only from
// trusted_proxies, and runs the same gate as proxy mode. The answer is about
// the caller's own credentials (cookies, Authorization), so it tells them
// nothing they could not learn by asking for the page.
//
// Default (nginx auth_request): 2xx with the identity headers to copy to the
// upstream, 401 for signed out (HeaderLocation for page loads), 403 for
// unpaid (HeaderUpgradeURL) or denied; nginx passes nothing else through.
// With ?mode=redirect (Traefik, Caddy), the answer goes to the browser as
// is: the same sign-in, handshake and upgrade redirects as proxy mode.
func (s *Server) handleForwardAuth(w http.ResponseWriter, r *http.Request) {
	e := entryFrom(r.Context())
	if !trusted(r.RemoteAddr, s.cfg.TrustedProxies) {
		// Only a proxy in trusted_proxies may say which request it holds: a
		// client that reaches this endpoint itself could name any.
		e.decision = "forward_auth_untrusted_peer"
		noStore(w)
		w.WriteHeader(http.StatusForbidden)
		return
	}
	orig, err := originalRequest(r)
	if err != nil {
		e.decision, e.reason = "bad_forward_auth", err.Error()
		s.writeError(w, r, http.StatusBadRequest)
		return
	}
	redirectMode := r.URL.Query().Get("mode") == "redirect"
	path, escaped, canonical := proxy.CanonicalPath(orig.URL.EscapedPath())
	if !canonical {
		if redirectMode {
			loc := escaped
			if orig.URL.RawQuery != "" {
				loc += "?" + orig.URL.RawQuery
			}
			e.decision = "redirect_canonical"
			redirect(w, loc, http.StatusPermanentRedirect)
			return
		}
		// nginx would forward the raw URI, which is not what the rules would
		// match: refuse rather than guess.
		e.decision = "non_canonical"
		w.WriteHeader(http.StatusForbidden)
		return
	}
	if hasPrefixFold(path, s.prefix) {
		// Tollgate's own pages are served by tollgate, not through the caller.
		e.decision = "deny"
		w.WriteHeader(http.StatusForbidden)
		return
	}
	if !s.cfg.HostAllowed(orig.Host) {
		e.decision = "misdirected"
		if redirectMode {
			s.writeError(w, orig, http.StatusMisdirectedRequest)
		} else {
			// auth_request takes any answer but 2xx, 401 and 403 for an error
			// of its own.
			w.WriteHeader(http.StatusForbidden)
		}
		return
	}
	f := &forward{path: path, rawPath: escaped, trustedPeer: true}
	overrides := sanitizeRequestHeaders(orig.Header, true)
	if redirectMode {
		if s.gate(w, orig, e, f, overrides) {
			if loc := s.sessionBounce(orig, f); loc != "" {
				e.decision = "session_bounce"
				redirect(w, loc, http.StatusTemporaryRedirect)
				return
			}
			s.authAllowed(w, orig, f)
		}
		return
	}
	rec := &recorder{header: http.Header{}}
	if s.gate(rec, orig, e, f, overrides) {
		if loc := s.sessionBounce(orig, f); loc != "" {
			e.decision = "session_bounce"
			noStore(w)
			w.Header().Set(HeaderLocation, loc)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		s.authAllowed(w, orig, f)
		return
	}
	if e.decision == "handshake_resolved" {
		// nginx hands the browser no Set-Cookie of a denial: the handshake
		// the URL carries (a development instance's) is resolved again at
		// <prefix>/session, whose own answer sets the cookies, and the
		// browser comes back to the clean URL (red team, 2026-12-06: the
		// cookies were lost and sign-in looped).
		noStore(w)
		w.Header().Set(HeaderLocation, s.handshakeBounce(orig, f))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	s.authDenied(w, rec)
}

// handshakeBounce is <prefix>/session with orig's Clerk query parameters,
// which its identity lookup resolves there, and the clean URL to return to.
func (s *Server) handshakeBounce(orig *http.Request, f *forward) string {
	ret := f.rawPath
	if q := stripClerkQuery(orig.URL.RawQuery); q != "" {
		ret += "?" + q
	}
	loc := s.prefix + "/session?" + url.Values{"return": {ret}}.Encode()
	if q := onlyClerkQuery(orig.URL.RawQuery); q != "" {
		loc += "&" + q
	}
	return loc
}

// bounceCookie stops a session bounce from repeating when a browser will
// not keep cookies.
const bounceCookie = "__tollgate_bounce"

// sessionBounce decides whether a page load must first pass through
// <prefix>/session: in forward-auth mode the caller (nginx, Traefik, Caddy)
// never hands an allowed answer's Set-Cookie headers to the browser, so
// Clerk's handshake cookies and the first gateway cookie are set there, on
// a response tollgate writes itself, and the browser comes straight back.
func (s *Server) sessionBounce(orig *http.Request, f *forward) string {
	if !isNavigation(orig) || hasCookie(orig, bounceCookie) {
		return ""
	}
	if len(f.setCookies) == 0 && (len(f.cookies) == 0 || s.hasGatewayCookie(orig)) {
		return ""
	}
	ret := f.rawPath
	if q := stripClerkQuery(orig.URL.RawQuery); q != "" {
		ret += "?" + q
	}
	return s.prefix + "/session?" + url.Values{"return": {ret}}.Encode()
}

// handleSession sets the cookies a forward-auth caller could not pass on
// (the identity lookup in withIdentity writes them) and sends the browser
// back where it was going.
func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: bounceCookie, Value: "1", Path: "/", MaxAge: 10, HttpOnly: true,
		Secure: s.cfg.PublicURL.Scheme == "https", SameSite: http.SameSiteLaxMode})
	redirect(w, s.safeReturn(r.URL.Query().Get("return")), http.StatusSeeOther)
}

// originalRequest rebuilds the request the caller is asking about from the
// two header families fronting proxies set. Each fact (URI, method) must be
// given once, by one family or by both alike: a value in one family that the
// proxy did not set is a client's, and disagreeing with the proxy's is a 400,
// never a choice.
func originalRequest(r *http.Request) (*http.Request, error) {
	h := r.Header
	uri, err := agreedHeader(h, "X-Original-URI", "X-Forwarded-Uri")
	if err != nil {
		return nil, err
	}
	method, err := agreedHeader(h, "X-Original-Method", "X-Forwarded-Method")
	if err != nil {
		return nil, err
	}
	if _, err := proxy.CanonicalMethod(method); err != nil {
		return nil, errors.New("the forwarded method is not an HTTP method") // not quoted: it is logged
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		full, ferr := url.Parse(uri)
		if ferr != nil || !full.IsAbs() {
			// Not the parser's error: it quotes the URI, query and all, and
			// the reason is logged (docs/SECURITY.md, "Never logged").
			return nil, errors.New("the forwarded URI is not a request URI")
		}
		u = &url.URL{Path: full.Path, RawPath: full.RawPath, RawQuery: full.RawQuery}
	}
	host := r.Host
	switch hs := h.Values("X-Forwarded-Host"); len(hs) {
	case 0:
	case 1:
		host = strings.TrimSpace(hs[0])
	default:
		return nil, errors.New("X-Forwarded-Host sent more than once")
	}
	orig := r.Clone(r.Context())
	orig.Method = strings.ToUpper(method)
	orig.URL = &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}
	orig.RequestURI = uri
	orig.Host = host
	return orig, nil
}

// agreedHeader returns the one value the nginx header and the
// Traefik/Caddy header give for a fact.
func agreedHeader(h http.Header, nginxName, forwardedName string) (string, error) {
	a, b := h.Values(nginxName), h.Values(forwardedName)
	if len(a) > 1 || len(b) > 1 {
		return "", fmt.Errorf("%s or %s sent more than once", nginxName, forwardedName)
	}
	var av, bv string
	if len(a) == 1 {
		av = strings.TrimSpace(a[0])
	}
	if len(b) == 1 {
		bv = strings.TrimSpace(b[0])
	}
	switch {
	case av == "" && bv == "":
		return "", fmt.Errorf("neither %s nor %s is set; the proxy must send one", nginxName, forwardedName)
	case av != "" && bv != "" && av != bv:
		return "", fmt.Errorf("%s and %s disagree", nginxName, forwardedName)
	case av != "":
		return av, nil
	}
	return bv, nil
}

// authAllowed answers "yes" with the identity headers for the caller to
// copy onto the upstream request, what the upstream may see of orig's
// credentials, and any cookies to hand the browser.
func (s *Server) authAllowed(w http.ResponseWriter, orig *http.Request, f *forward) {
	// Every identity header is set, empty when there is no value, so a proxy
	// that copies them overwrites a client's own copy of each.
	var user, org, key string
	if f.identity != nil {
		user, org, key = f.identity.UserID, f.identity.OrgID, f.identity.KeyID
	}
	h := w.Header()
	if f.limit.Limit() != nil {
		// The caller forwards the request; tollgate never sees the answer:
		// each allowed request costs 1 here (README "Limits").
		f.limit.WriteHeaders(h, s.now())
		f.limit.Settle(http.StatusOK, 1)
	}
	if f.meter != nil {
		// Likewise a metered request is billed 1 at allow time.
		s.limiter.Count(f.meter.subject, f.meter.sub, f.meter.eventName, 1)
	}
	h[HeaderUser] = []string{user}
	h[HeaderOrg] = []string{org}
	h[HeaderPlan] = []string{f.plan}
	h[HeaderStatus] = []string{string(f.status)}
	h[HeaderRoute] = []string{f.routeID}
	h[HeaderKey] = []string{key}
	cookie, authorization := s.forwardedCredentials(orig.Header)
	h[HeaderForwardCookie] = []string{cookie}
	h[HeaderForwardAuthorization] = []string{authorization}
	addSetCookies(w, f.setCookies)
	for _, c := range f.cookies {
		http.SetCookie(w, c)
	}
	noStore(w)
	w.WriteHeader(http.StatusOK)
}

// forwardedCredentials is what the upstream may see of a request's Cookie
// and Authorization, by the rules proxy mode applies in its Rewrite
// (stripCookies, stripAPIKeys), each as one header line: a caller sets one
// value. Authorization sent more than once is dropped rather than one of
// its values chosen.
func (s *Server) forwardedCredentials(in http.Header) (cookie, authorization string) {
	h := http.Header{}
	if v := in["Cookie"]; len(v) > 0 {
		h["Cookie"] = append([]string(nil), v...) // stripCookies edits the slice in place
	}
	if v := in["Authorization"]; len(v) == 1 {
		h["Authorization"] = []string{v[0]}
	}
	stripCookies(h, s.cfg.Clerk.ForwardCookies)
	stripAPIKeys(h, "", s.cfg.Clerk.APIKeys)
	return strings.Join(h["Cookie"], "; "), h.Get("Authorization")
}

// authDenied turns the answer proxy mode would have given into what nginx's
// auth_request understands: 401 or 403, with where to go in a header.
func (s *Server) authDenied(w http.ResponseWriter, rec *recorder) {
	h := w.Header()
	for _, c := range rec.header.Values("Set-Cookie") {
		h.Add("Set-Cookie", c)
	}
	noStore(w)
	loc := rec.header.Get("Location")
	switch {
	case rec.code == http.StatusSeeOther && strings.Contains(loc, s.prefix+"/upgrade"):
		// A page load: nginx may send the browser to the upgrade page.
		h.Set(HeaderUpgradeURL, loc)
		h.Set(HeaderLocation, loc)
		w.WriteHeader(http.StatusForbidden)
	case rec.code == http.StatusTemporaryRedirect || rec.code == http.StatusUnauthorized:
		if loc != "" {
			h.Set(HeaderLocation, loc)
		}
		w.WriteHeader(http.StatusUnauthorized)
	case rec.code == http.StatusPaymentRequired:
		h.Set(HeaderUpgradeURL, rec.upgradeURL())
		w.WriteHeader(http.StatusForbidden)
	case rec.code >= 500:
		w.WriteHeader(rec.code)
	default:
		w.Header().Set("X-Tollgate-Status-Code", strconv.Itoa(rec.code))
		if rec.code == http.StatusTooManyRequests {
			// Over a plan's limit (README "Limits"): the fields for the
			// proxy to copy onto its own 429.
			for _, k := range []string{"Retry-After", "Ratelimit", "Ratelimit-Policy"} {
				if v := rec.header.Values(k); len(v) > 0 {
					h[k] = v
				}
			}
		}
		w.WriteHeader(http.StatusForbidden)
	}
}

// recorder captures the answer the gate would give, for translation.
type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	if r.body.Len() < 64<<10 {
		r.body.Write(b)
	}
	return len(b), nil
}

// upgradeURL reads the upgrade URL out of a 402 JSON body.
func (r *recorder) upgradeURL() string {
	var b errorBody
	if err := json.Unmarshal([]byte(r.body.String()), &b); err != nil {
		return ""
	}
	return b.UpgradeURL
}

package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

type identityKey struct{}

// IdentityFromContext returns the visitor's identity for tollgate's own
// handlers (nil when signed out or not looked up).
func IdentityFromContext(ctx context.Context) *proxy.Identity {
	id, _ := ctx.Value(identityKey{}).(*proxy.Identity)
	return id
}

// serve runs a request through the steps of the README's "How a request is
// decided", in order.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, req *request) {
	e := &req.log
	// 1. Nothing the client says about tollgate, or about the hops before
	// it, is believed (unless a trusted proxy says the latter).
	trustedPeer := trusted(r.RemoteAddr, s.cfg.TrustedProxies)
	overrides := sanitizeRequestHeaders(r.Header, trustedPeer)
	if _, ok := r.Header["Upgrade"]; ok {
		onlyWebSocketUpgrades(r.Header)
	}
	if hasBody(r) {
		boundUnreadBody(w, s.ownBody)
	}
	if !s.cfg.HostAllowed(r.Host) && r.URL.Path != s.prefix+"/healthz" && r.URL.Path != s.prefix+"/auth" {
		// Forward auth judges the host its proxy names, not its own.
		e.decision = "misdirected"
		s.writeError(w, r, http.StatusMisdirectedRequest)
		return
	}

	// 2. One canonical path, before anything looks at it.
	if r.RequestURI == "*" {
		// "OPTIONS *" asks about the server, not a resource: nothing to gate
		// or forward.
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
		e.decision = "options_server"
		return
	}
	path, escaped, canonical := proxy.CanonicalPath(r.URL.EscapedPath())
	if !canonical {
		e.decision = "redirect_canonical"
		loc := escaped
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		redirect(w, loc, http.StatusPermanentRedirect)
		return
	}

	// 3. Tollgate's own endpoints are never gated by route rules, nor
	// forwarded in any letter case.
	if hasPrefixFold(path, s.prefix) {
		e.decision = "internal"
		defer ownDeadlines(w, r, s.ownBody, OwnWriteTimeout)()
		s.internal.ServeHTTP(w, r)
		return
	}
	f := &req.decided
	*f = forward{path: path, rawPath: escaped, trustedPeer: trustedPeer}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		// CORS preflights carry no credentials by design: they pass
		// ungated, stripped of credentials and body, except where the rules
		// deny the path or cannot tell which rule applies.
		m, ok := s.judge(w, r, e, f, nil)
		if !ok {
			return
		}
		if m.Access == proxy.AccessDeny {
			e.decision = "deny"
			s.writeError(w, r, http.StatusForbidden)
			return
		}
		e.decision = "preflight"
		f.preflight, f.gated = true, m.Access != proxy.AccessPublic
		// A preflight never becomes a tunnel: nobody is signed in on it.
		r.Header.Del("Upgrade")
		req.fwd = f
		s.upstream.ServeHTTP(w, r)
		return
	}

	f.overrides = overrides
	if !s.gate(w, r, e, f, overrides) {
		return
	}
	// 9. Forward.
	req.fwd = f
	s.toUpstream(w, r, e, f)
}

// judge chooses the rule for a request (RuleSet.Judge) and records it, or
// answers 400 itself when the request cannot be judged unambiguously.
func (s *Server) judge(w http.ResponseWriter, r *http.Request, e *logEntry, f *forward, overrides []string) (proxy.RouteMatch, bool) {
	m, ok := s.cfg.Routes.Judge(r.Method, r.Host, f.path, overrides)
	switch {
	case !ok:
		// Some upstream would route this path, or act on this method, under
		// another rule than the one the gate would apply.
		e.decision = "ambiguous_request"
		s.writeError(w, r, http.StatusBadRequest)
		return m, false
	case m.RouteID != "" && !proxy.ValidRouteID(m.RouteID):
		// A {route} capture becomes a header and a URL parameter: only
		// plain IDs are meaningful, anything else is a bad request.
		e.decision = "bad_route_id"
		s.writeError(w, r, http.StatusBadRequest)
		return m, false
	}
	e.access, e.routeID, e.rule = m.Access, m.RouteID, -1
	if m.Rule != nil {
		e.rule = m.Rule.Index
	}
	f.routeID = m.RouteID
	return m, true
}

// gate runs steps 4 to 8 for a request whose path is canonical: match the
// rules, establish the identity, decide a paid route. It fills f for the
// upstream and reports true when the request may pass; otherwise it has
// answered the request itself. Proxy mode and forward-auth share it.
func (s *Server) gate(w http.ResponseWriter, r *http.Request, e *logEntry, f *forward, overrides []string) bool {
	// 4. First matching rule wins, under every reading of the request.
	m, ok := s.judge(w, r, e, f, overrides)
	if !ok {
		return false
	}
	switch m.Access {
	case proxy.AccessPublic:
		e.decision = "allow"
		return true
	case proxy.AccessDeny:
		e.decision = "deny"
		s.writeError(w, r, http.StatusForbidden)
		return false
	}

	// 5-6. Who is it?
	a, ok := s.authenticate(w, r, e)
	if !ok {
		return false
	}
	f.identity, f.setCookies, f.cookies, f.gated = a.id, a.setCookies, a.cookies, true
	if !s.keyAllowed(w, e, a.id, m) {
		return false
	}

	// 7-8. Paid routes need an entitling subscription.
	if m.Access == proxy.AccessPaid {
		d, err := s.decidePaid(r.Context(), a.id, m.RouteID, s.reqNow(e))
		if err != nil {
			s.log.ErrorContext(r.Context(), "entitlements unavailable", "user_id", a.id.UserID, "err", err)
			e.decision, e.reason = "error", string(proxy.PaidEntitlementsErr)
			addSetCookies(w, a.setCookies)
			s.writeError(w, r, http.StatusServiceUnavailable)
			return false
		}
		if d.Outcome != proxy.PaidAllow {
			e.decision, e.reason = string(d.Outcome), string(d.Status)
			addSetCookies(w, a.setCookies)
			for _, c := range a.cookies {
				http.SetCookie(w, c)
			}
			s.paymentRequired(w, r, m.RouteID, d, a.id.IsAPIKey())
			return false
		}
		f.plan = d.Plan.Key
		if d.Sub != nil { // nil: free:
			f.status = d.Sub.Status
			if proxy.IsStale(d.Sub, s.reqNow(e)) {
				// Access stands (Stripe is the authority and said active); ask
				// it again off the request path in case a webhook was missed.
				s.stale.Stale(d.Sub.CustomerID)
			}
		}
		if len(d.Plan.Limits) > 0 && !s.limit(w, r, e, f, &d, &a, m.RouteID) {
			return false
		}
		if d.Plan.Meter != nil && d.Sub != nil && s.limiter != nil {
			f.meter = &meterRef{subject: d.Subject, sub: d.Sub, eventName: d.Plan.Meter.EventName}
		}
	}
	e.decision = "allow"
	return true
}

// hasPrefixFold reports whether path is prefix or lies under it, without
// regard to case (rules match without regard to case too).
func hasPrefixFold(path, prefix string) bool {
	if len(path) < len(prefix) || !strings.EqualFold(path[:len(prefix)], prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

type authOutcome struct {
	id         *proxy.Identity
	setCookies []string       // Clerk handshake directives to pass on
	cookies    []*http.Cookie // the gateway cookie to set or clear
}

// identify establishes the visitor's identity without answering: Clerk
// first, then the gateway cookie where README "Sessions" allows it. err is set only
// when Clerk could not be asked about a gateway session.
func (s *Server) identify(r *http.Request, now time.Time) (authOutcome, proxy.AuthResult, error) {
	res := s.auth.Authenticate(r.Context(), r)
	out := authOutcome{setCookies: res.SetCookies}
	if res.State == proxy.Handshake && s.loopCount(r) >= signInLoopLimit {
		// Sent to Clerk too often in a row without coming back signed in:
		// stop, as Clerk's own redirect counter does, but across the
		// Account Portal too. The gateway session may stand in.
		s.log.WarnContext(r.Context(), "sign-in loop: page loads keep being sent to Clerk; "+
			"check that this machine's clock is right and that the Clerk keys belong to one instance", "reason", res.Reason)
		res = proxy.AuthResult{State: proxy.SignedOut, Reason: res.Reason + "; " + reasonSignInLoop, ClientUAT: res.ClientUAT,
			Refreshable: res.Refreshable, StaleSessionID: res.StaleSessionID, DevBrowserToken: res.DevBrowserToken}
		out.setCookies = nil
	}
	switch {
	case res.State == proxy.Handshake:
		return out, res, nil
	case res.Location != "":
		// A development handshake resolved from the URL: the browser goes
		// back to the clean URL with Clerk's cookies, and with the gateway
		// cookie, which carries it should its clock make the new token
		// unusable here (the Clerk token is then accepted, as Clerk's SDK
		// does, with a day of skew: README "Development instances").
		// The payload came in a URL, which can be kept and replayed (with
		// Clerk's day of skew): the cookie it earns asks Clerk on first use
		// whether the session is still active, rather than trusting it for
		// a whole refresh period.
		if id := res.Identity; res.State == proxy.SignedIn && id != nil && !s.gw.isRevoked(id) {
			s.gw.orgs.apply(id)
			if c, err := s.gw.issueChecked(id, now, time.Time{}); err != nil {
				s.log.ErrorContext(r.Context(), "gateway session: seal", "err", err)
			} else {
				out.cookies = append(out.cookies, c)
			}
		}
		return out, res, nil
	case res.State == proxy.SignedIn && res.Identity.IsAPIKey() && s.gw.isRevoked(res.Identity):
		// The key's user was deleted or banned in Clerk: the key goes too.
		res = proxy.AuthResult{State: proxy.SignedOut, Reason: "user revoked", APIKeyErr: proxy.ErrAPIKeyRevoked}
	case res.State == proxy.SignedIn && res.Identity != nil && s.gw.isRevoked(res.Identity):
		// Clerk told us (webhook) the session or user is gone; its tokens
		// stay valid for up to a minute, tollgate does not wait for that.
		// Clerk's handshake directives still reach the browser (they clear
		// the handshake cookie, among others): the browser's cookies follow
		// Clerk's, and the token they carry is refused here all the same.
		res = proxy.AuthResult{State: proxy.SignedOut, Reason: "session revoked", ClientUAT: res.ClientUAT, SetCookies: res.SetCookies}
		if s.hasGatewayCookie(r) {
			out.cookies = append(out.cookies, s.gw.clearCookie())
		}
	case res.State == proxy.SignedIn && res.Identity != nil && res.Identity.IsAPIKey():
		// A key's identity is the key's subject, as the store (or Clerk)
		// says now: no session, no cookie, no organisation to apply.
		out.id = res.Identity
	case res.State == proxy.SignedIn && res.Identity != nil:
		out.id = res.Identity
		s.gw.orgs.apply(out.id) // membership changes Clerk reported after the token
		// Bearer clients carry no cookies; everyone else gets (or keeps) the
		// gateway session that carries them past the token's 60 s life.
		if res.Identity.Source != "bearer" && s.gw.needsReissue(r, out.id, now) {
			c, err := s.gw.issue(out.id, now)
			if err != nil {
				s.log.ErrorContext(r.Context(), "gateway session: seal", "err", err)
			} else {
				out.cookies = append(out.cookies, c)
			}
		}
	case res.APIKeyErr != nil:
		// A refused key never falls back to the gateway cookie: a program
		// that sent a key meant the key.
	default:
		id, renewed, err := s.gw.fallback(r.Context(), r, &res, now)
		var rejected errGatewayRejected
		switch {
		case err == nil:
			out.id = id
			if renewed != nil {
				out.cookies = append(out.cookies, renewed)
			}
		case errors.As(err, &rejected):
			res.Reason = strings.TrimPrefix(res.Reason+"; "+rejected.Error(), "; ")
			if rejected.clear && s.hasGatewayCookie(r) {
				out.cookies = append(out.cookies, s.gw.clearCookie())
			}
		default:
			return out, res, err
		}
	}
	return out, res, nil
}

// authenticate establishes the visitor's identity for a gated request, or
// answers the request itself (handshake, sign-in redirect, 401, 503) and
// reports false.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, e *logEntry) (authOutcome, bool) {
	now := s.reqNow(e)
	out, res, err := s.identify(r, now)
	e.reason = res.Reason
	switch {
	case err != nil:
		// Clerk could not be asked: do not sign the visitor out for our
		// outage, and do not let them through either.
		s.log.WarnContext(r.Context(), "gateway session check failed", "err", err)
		e.decision, e.reason = "error", "session_check_failed"
		addSetCookies(w, out.setCookies)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return out, false
	case res.State == proxy.Handshake:
		e.decision = "handshake"
		addSetCookies(w, res.SetCookies)
		s.toClerk(w, r, res.Location)
		return out, false
	case res.Location != "":
		// A development handshake was resolved from the URL: send the
		// browser to the clean URL with its new cookies.
		e.decision = "handshake_resolved"
		addSetCookies(w, res.SetCookies)
		for _, c := range out.cookies {
			http.SetCookie(w, c)
		}
		redirect(w, res.Location, http.StatusTemporaryRedirect)
		return out, false
	case res.APIKeyErr != nil:
		s.keyRefused(w, r, e, &res)
		return out, false
	case out.id != nil:
		e.identify(out.id)
		s.seen.Seen(out.id.UserID, now)
		if c := s.loopDone(r); c != nil {
			out.cookies = append(out.cookies, c)
		}
		return out, true
	}
	s.signedOut(w, r, e, &res, out)
	return out, false
}

func hasCookie(r *http.Request, name string) bool {
	_, err := r.Cookie(name)
	return err == nil
}

// signedOut answers a request that needs a session and has none: a page
// load goes to Clerk's sign-in, anything else gets a 401.
func (s *Server) signedOut(w http.ResponseWriter, r *http.Request, e *logEntry, res *proxy.AuthResult, out authOutcome) {
	addSetCookies(w, out.setCookies)
	for _, c := range out.cookies {
		http.SetCookie(w, c)
	}
	returnURL := s.absoluteURL(r)
	if signIn := s.portal.SignInURL(returnURL, res.DevBrowserToken); isNavigation(r) && signIn != "" {
		if s.loopCount(r) >= signInLoopLimit {
			e.decision = "sign_in_loop"
			s.signInLoop(w, r, signIn)
			return
		}
		e.decision = "sign_in"
		s.toClerk(w, r, signIn)
		return
	}
	e.decision = "unauthorized"
	noStore(w)
	w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate"`)
	body := errorBody{Error: "unauthorized", Message: "Sign in required."}
	body.SignInURL = s.portal.SignInURL(returnURL, "")
	writeJSON(w, http.StatusUnauthorized, body)
}

// absoluteURL is the request's URL as the visitor sees it, built from the
// configured origin its Host names (proxy.OriginFor: public_url, or one of
// extra_origins; never a Host that names none), without Clerk's handshake
// parameters.
func (s *Server) absoluteURL(r *http.Request) string {
	u := proxy.OriginFor(s.cfg.PublicURL, s.cfg.ExtraOrigins, r.Host)
	_, escaped, _ := proxy.CanonicalPath(r.URL.EscapedPath())
	out := u.Scheme + "://" + u.Host + escaped
	if q := stripClerkQuery(r.URL.RawQuery); q != "" {
		out += "?" + q
	}
	return out
}

// decidePaid reads the subscriptions that matter for this route (LRU, then
// bbolt: never Stripe) and decides.
func (s *Server) decidePaid(ctx context.Context, id *proxy.Identity, routeID string, now time.Time) (proxy.PaidDecision, error) {
	in := proxy.PaidInput{RouteID: routeID, Plans: s.cfg.Plans, Identity: id, Policy: s.cfg.Stripe.Access(), Now: now, Free: s.cfg.Free}
	var needUser, needOrg bool
	for i := range s.cfg.Plans {
		p := &s.cfg.Plans[i]
		if !p.UnlocksRoute(routeID) {
			continue
		}
		if p.Scope == proxy.SubjectOrg {
			needOrg = true
		} else {
			needUser = true
		}
	}
	var err error
	if needUser && id.UserID != "" { // an organisation's key has no user
		if in.User, err = s.ents.Entitlements(ctx, proxy.Subject{Kind: proxy.SubjectUser, ID: id.UserID}); err != nil {
			return proxy.PaidDecision{}, err
		}
	}
	if needOrg && id.OrgID != "" {
		if in.Org, err = s.ents.Entitlements(ctx, proxy.Subject{Kind: proxy.SubjectOrg, ID: id.OrgID}); err != nil {
			return proxy.PaidDecision{}, err
		}
	}
	return proxy.DecidePaid(in), nil
}

// UpgradePath is the relative URL of the upgrade page for a route, carrying
// the visitor's way back.
func (s *Server) UpgradePath(routeID, returnPath string) string {
	q := url.Values{}
	if routeID != "" {
		q.Set("route", routeID)
	}
	if returnPath != "" {
		q.Set("return", returnPath)
	}
	p := s.prefix + "/upgrade"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return p
}

// paymentRequired answers a signed-in visitor without an entitling
// subscription: a page load goes to the upgrade page, anything else gets 402.
// A program calling with an API key always gets the 402 (asJSON).
func (s *Server) paymentRequired(w http.ResponseWriter, r *http.Request, routeID string, d proxy.PaidDecision, asJSON bool) {
	_, escaped, _ := proxy.CanonicalPath(r.URL.EscapedPath())
	ret := escaped
	if q := stripClerkQuery(r.URL.RawQuery); q != "" {
		ret += "?" + q
	}
	upgrade := s.UpgradePath(routeID, ret)
	if isNavigation(r) && !asJSON {
		redirect(w, upgrade, http.StatusSeeOther)
		return
	}
	noStore(w)
	body := errorBody{Error: "payment_required", Message: "A subscription is required.", Route: routeID,
		UpgradeURL: strings.TrimSuffix(s.cfg.PublicURL.String(), "/") + upgrade, Plans: []planJSON{}}
	for _, p := range d.Plans {
		body.Plans = append(body.Plans, planJSON{Key: p.Key, Name: p.Name})
	}
	if d.Outcome == proxy.PaidOrgRequired {
		body.Error, body.Message = "organization_required", "Choose an organisation to use this plan."
	}
	writeJSON(w, http.StatusPaymentRequired, body)
}

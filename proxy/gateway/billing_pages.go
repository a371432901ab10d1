package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Trials says whether a subject's Stripe customer has had a trial
// (Stripe's trial is once per customer), from local storage only: the
// upgrade page asks for every plan it shows. Implemented by
// proxy/bolt.Store.
type Trials interface {
	CustomerOf(ctx context.Context, subject proxy.Subject) (string, error) // "" when it has none yet
	HadTrial(ctx context.Context, customerID string) (bool, error)
}

// hadTrial reports whether subject's customer has had a trial: false while
// it has no customer.
func (s *Server) hadTrial(ctx context.Context, subject proxy.Subject) (bool, error) {
	cus, err := s.trials.CustomerOf(ctx, subject)
	if err != nil || cus == "" {
		return false, err
	}
	return s.trials.HadTrial(ctx, cus)
}

type upgradePage struct {
	RouteID string
	Return  string
	Plans   []planView
	// Intervals are the billing periods on offer when a plan has prices
	// of several (monthly, yearly); Interval is the one shown.
	Intervals []intervalOption
	Interval  string
	SignedIn  bool
	SignInURL string
	SignUpURL string
	OrgNeeded bool
	// ChooseOrgURL is where Clerk lets the visitor choose an organisation.
	ChooseOrgURL string
	Status       proxy.SubscriptionStatus // the visitor's most telling status, if any
	// OnHold: the visitor holds a plan for this page that needs fixing in
	// the billing portal (a payment, a pause), so subscribing again is not
	// the way back and the page offers the portal alone.
	OnHold bool
	// CollectionPaused: a subscription that would grant is held back
	// because its payment collection is paused (stripe.paused_collection
	// revoke), until CollectionResumesAt if known.
	CollectionPaused    bool
	CollectionResumesAt *time.Time
	HasPortal           bool
	CSRFAction          string
}

type finishingPage struct {
	SessionID string
	Return    string
	RetryURL  string
}

// billingRoutes are the billing endpoints under the internal prefix.
func (s *Server) billingRoutes() []InternalRoute {
	csrf := http.NewCrossOriginProtection()
	if o := s.cfg.PublicURL; o != nil {
		_ = csrf.AddTrustedOrigin(o.Scheme + "://" + o.Host)
	}
	for _, o := range s.cfg.ExtraOrigins {
		_ = csrf.AddTrustedOrigin(o.Scheme + "://" + o.Host)
	}
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entryFrom(r.Context()).reason = "cross_origin_refused"
		s.writeError(w, r, http.StatusForbidden)
	}))
	return []InternalRoute{
		{Pattern: "GET /upgrade", Handler: http.HandlerFunc(s.handleUpgrade), Auth: AuthOptional},
		{Pattern: "GET /subscribe/{plan}", Handler: http.HandlerFunc(s.handleUpgrade), Auth: AuthRequired},
		{Pattern: "POST /checkout", Handler: csrf.Handler(http.HandlerFunc(s.handleCheckout)), Auth: AuthRequired},
		{Pattern: "GET /checkout/done", Handler: http.HandlerFunc(s.handleCheckoutDone), Auth: AuthRequired},
		{Pattern: "POST /billing", Handler: csrf.Handler(http.HandlerFunc(s.handlePortal)), Auth: AuthRequired},
		{Pattern: "GET /account", Handler: http.HandlerFunc(s.handleAccount), Auth: AuthRequired},
		{Pattern: "POST /account/keys", Handler: csrf.Handler(http.HandlerFunc(s.handleCreateKey)), Auth: AuthRequired},
		{Pattern: "POST /account/keys/{id}/revoke", Handler: csrf.Handler(http.HandlerFunc(s.handleRevokeKey)), Auth: AuthRequired},
	}
}

// safeReturn keeps a return target only when it is a path on our own
// origin (compared as parsed origins), never under the internal prefix
// (which would loop), and never something a browser could read as another
// host ("//evil", "/\evil").
func (s *Server) safeReturn(raw string) string {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.User != nil || u.Opaque != "" {
		return "/"
	}
	if u.Scheme != "" || u.Host != "" {
		pub := s.cfg.PublicURL
		if !strings.EqualFold(u.Scheme, pub.Scheme) || !strings.EqualFold(u.Host, pub.Host) {
			return "/"
		}
	} else if !strings.HasPrefix(u.Path, "/") {
		return "/" // relative, or "\\host": not a path of ours
	}
	path, escaped, _ := proxy.CanonicalPath(u.EscapedPath())
	if !strings.HasPrefix(escaped, "/") || strings.HasPrefix(escaped, "//") || strings.HasPrefix(escaped, "/\\") || hasPrefixFold(path, s.prefix) {
		return "/"
	}
	if q := stripClerkQuery(u.RawQuery); q != "" {
		escaped += "?" + q
	}
	return escaped
}

func (s *Server) planByKey(key string) *proxy.Plan {
	for i := range s.cfg.Plans {
		if s.cfg.Plans[i].Key == key {
			return &s.cfg.Plans[i]
		}
	}
	return nil
}

func (s *Server) handleUpgrade(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	id := IdentityFromContext(r.Context())
	routeID := r.URL.Query().Get("route")
	ret := s.safeReturn(r.URL.Query().Get("return"))
	var plans []*proxy.Plan
	if key := r.PathValue("plan"); key != "" {
		p := s.planByKey(key)
		if p == nil {
			s.writeError(w, r, http.StatusNotFound)
			return
		}
		plans = []*proxy.Plan{p}
	} else {
		plans = proxy.UnlockingPlans(s.cfg.Plans, routeID)
	}
	page := upgradePage{RouteID: routeID, Return: ret, SignedIn: id != nil}
	here := s.publicBase() + r.URL.RequestURI()
	if id == nil {
		page.SignInURL, page.SignUpURL = s.portal.SignInURL(here, ""), s.portal.SignUpURL(here, "")
	}
	page.Intervals, page.Interval = s.intervals(r, plans)
	onlyOrg := len(plans) > 0
	for _, p := range plans {
		page.Plans = append(page.Plans, s.viewPlan(r.Context(), p, id, page.Interval))
		if p.Scope != proxy.SubjectOrg {
			onlyOrg = false
		}
	}
	page.OrgNeeded = onlyOrg && id != nil && id.OrgID == ""
	if id != nil && id.OrgID == "" && slices.ContainsFunc(plans, func(p *proxy.Plan) bool { return p.Scope == proxy.SubjectOrg }) {
		page.ChooseOrgURL = s.portal.OrganizationURL(here, devBrowserFrom(r.Context()))
	}
	if id != nil {
		if d, err := s.decidePaid(r.Context(), id, routeID, s.now()); err == nil {
			page.Status = d.Status
			if d.Held != nil {
				page.CollectionPaused = true
				if t := d.Held.CollectionResumesAt; !t.IsZero() {
					page.CollectionResumesAt = &t
				}
			}
			if d.Outcome == proxy.PaidAllow && d.Plan != s.cfg.Free && r.PathValue("plan") == "" {
				// Already entitled (e.g. paid in another tab): go back.
				// free: is no plan: its visitors see the plans.
				redirect(w, ret, http.StatusSeeOther)
				return
			}
		}
		page.HasPortal = page.Status != ""
		switch page.Status {
		case proxy.StatusPastDue, proxy.StatusUnpaid, proxy.StatusIncomplete, proxy.StatusPaused:
			// Checkout would send the visitor to the portal anyway.
			page.OnHold = true
		}
		page.OnHold = page.OnHold || page.CollectionPaused
	}
	s.pages.render(w, r, http.StatusOK, "upgrade", page)
}

// subjectFor picks who pays for plan, and whether this visitor may act for
// them: organisation plans need an active organisation and its admin.
func subjectFor(p *proxy.Plan, id *proxy.Identity) (proxy.Subject, string) {
	if p.Scope != proxy.SubjectOrg {
		return proxy.Subject{Kind: proxy.SubjectUser, ID: id.UserID}, ""
	}
	if id.OrgID == "" {
		return proxy.Subject{}, "organization_required"
	}
	if !id.IsOrgAdmin() {
		return proxy.Subject{}, "organization_admin_required"
	}
	return proxy.Subject{Kind: proxy.SubjectOrg, ID: id.OrgID}, ""
}

func (s *Server) handleCheckout(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	id := IdentityFromContext(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		s.writeError(w, r, http.StatusBadRequest)
		return
	}
	p := s.planByKey(r.PostForm.Get("plan"))
	if p == nil || !s.billingOn {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	price, ok := checkoutPrice(p, r.PostForm)
	if !ok {
		entryFrom(r.Context()).reason = "price_not_of_plan"
		s.writeError(w, r, http.StatusBadRequest)
		return
	}
	ret := s.safeReturn(r.PostForm.Get("return"))
	if p.Scope == proxy.SubjectOrg && staleOrg(id) {
		back := url.Values{"return": {ret}}
		if pr, ok := s.prices.Price(price); ok && price != "" {
			back.Set("interval", intervalKey(pr))
		}
		s.freshIdentityRequired(w, r, s.prefix+"/subscribe/"+url.PathEscape(p.Key)+"?"+back.Encode())
		return
	}
	subject, why := subjectFor(p, id)
	if why != "" {
		entryFrom(r.Context()).reason = why
		s.writeError(w, r, http.StatusForbidden)
		return
	}
	done := s.admitBilling(w, r, id)
	if done == nil {
		return
	}
	defer done()
	res, err := s.billing.Checkout(r.Context(), proxy.CheckoutRequest{Identity: id, Subject: subject, Plan: p, Price: price, ReturnPath: ret,
		AllowPromotionCodes: s.cfg.Stripe.AllowPromotionCodes, AutomaticTax: s.cfg.Stripe.AutomaticTax})
	if err != nil {
		s.billingError(w, r, "checkout", err)
		return
	}
	redirect(w, res.URL, http.StatusSeeOther)
}

func (s *Server) handleCheckoutDone(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	id := IdentityFromContext(r.Context())
	sessionID := r.URL.Query().Get("session_id")
	if !proxy.ValidCheckoutSessionID(sessionID) || !s.billingOn {
		// Not a Checkout Session ID: refused before any Stripe call.
		s.writeError(w, r, http.StatusBadRequest)
		return
	}
	done := s.admitBilling(w, r, id)
	if done == nil {
		return
	}
	defer done()
	// Stripe redirects here the moment payment succeeds, often before its
	// webhook: sync now, so the visitor lands with access.
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	res, err := s.billing.CompleteCheckout(ctx, sessionID, id)
	if err != nil {
		s.billingError(w, r, "checkout return", err)
		return
	}
	ret := s.safeReturn(res.ReturnPath)
	if res.Settled {
		redirect(w, ret, http.StatusSeeOther)
		return
	}
	s.pages.render(w, r, http.StatusOK, "finishing", finishingPage{SessionID: sessionID, Return: ret,
		RetryURL: s.prefix + "/checkout/done?" + url.Values{"session_id": {sessionID}}.Encode()})
}

func (s *Server) handlePortal(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	id := IdentityFromContext(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	_ = r.ParseForm()
	subject := proxy.Subject{Kind: proxy.SubjectUser, ID: id.UserID}
	if r.PostForm.Get("scope") == "org" {
		if staleOrg(id) {
			s.freshIdentityRequired(w, r, s.prefix+"/account")
			return
		}
		if !id.IsOrgAdmin() {
			entryFrom(r.Context()).reason = "organization_admin_required"
			s.writeError(w, r, http.StatusForbidden)
			return
		}
		subject = proxy.Subject{Kind: proxy.SubjectOrg, ID: id.OrgID}
	}
	if !s.billingOn {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	done := s.admitBilling(w, r, id)
	if done == nil {
		return
	}
	defer done()
	u, err := s.billing.Portal(r.Context(), subject, s.publicBase()+s.prefix+"/account")
	if err != nil {
		s.billingError(w, r, "portal", err)
		return
	}
	redirect(w, u, http.StatusSeeOther)
}

// publicBase is public_url without a trailing slash, for absolute URLs of
// our own.
func (s *Server) publicBase() string { return strings.TrimSuffix(s.cfg.PublicURL.String(), "/") }

// staleOrg reports whether id's organisation and role may be older than
// Clerk's last word: the gateway cookie carries them from the last Clerk
// token, and the session check does not name the role (README "Sessions").
func staleOrg(id *proxy.Identity) bool { return id.Source == "gateway" }

// freshIdentityRequired answers a billing action for an organisation made
// on the gateway cookie alone: it waits for a fresh Clerk token. A person
// gets a page whose link leads back through a page load, which Clerk's
// handshake refreshes; a program gets 401 and refreshes its token.
func (s *Server) freshIdentityRequired(w http.ResponseWriter, r *http.Request, back string) {
	entryFrom(r.Context()).reason = "fresh_session_required"
	noStore(w)
	const msg = "Billing for an organisation needs a fresh check of your role with the sign-in service."
	if wantsHTML(r) {
		s.pages.render(w, r, http.StatusUnauthorized, "error", errorPage{Code: http.StatusUnauthorized,
			Title: "Confirm your organisation", Message: msg + " Continue, then choose again.",
			ActionURL: back, ActionLabel: "Continue"})
		return
	}
	writeJSON(w, http.StatusUnauthorized, errorBody{Error: "fresh_session_required", Message: msg})
}

// billingError maps Billing's errors to answers; details go to the log.
// A spent Stripe budget is a 503 with Retry-After (at most a minute).
func (s *Server) billingError(w http.ResponseWriter, r *http.Request, what string, err error) {
	code := http.StatusServiceUnavailable
	var busy *proxy.BusyError
	switch {
	case errors.Is(err, proxy.ErrNotYours):
		code = http.StatusForbidden
	case errors.Is(err, proxy.ErrNoCustomer):
		code = http.StatusNotFound
	case errors.As(err, &busy):
		w.Header().Set("Retry-After", retryAfter(min(busy.RetryAfter, time.Minute)))
	}
	s.log.WarnContext(r.Context(), "billing: "+what, "err", err, "status", code)
	entryFrom(r.Context()).reason = what + "_failed"
	s.writeError(w, r, code)
}

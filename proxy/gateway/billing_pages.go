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

// planView is one plan as the upgrade page shows it.
type planView struct {
	Key       string
	Name      string
	Price     string // "$12.00" ("" when unknown)
	Per       string // "month"
	TrialDays int
	TrialFee  string // "$1.00" upfront for a paid trial ("" when none)
	// TrialUsed: the plan has a trial but this subject had one already, so
	// billing starts today. TrialKnown: whether that was looked up at all.
	TrialUsed, TrialKnown bool
	OrgScoped             bool
	CanCheckout           bool
	Why                   string // why not (organisation needed, not an admin)
}

type upgradePage struct {
	RouteID   string
	Return    string
	Plans     []planView
	SignedIn  bool
	SignInURL string
	OrgNeeded bool
	Status    proxy.SubscriptionStatus // the visitor's most telling status, if any
	// CollectionPaused: a subscription that would grant is held back
	// because its payment collection is paused (stripe.paused_collection
	// revoke), until CollectionResumesAt if known.
	CollectionPaused    bool
	CollectionResumesAt *time.Time
	HasPortal           bool
	CSRFAction          string
}

type accountPage struct {
	Identity      *proxy.Identity
	Email         string
	Subscriptions []subscriptionJSON
	// ManageOwn and ManageOrg offer the billing portal of the visitor's
	// own plans and of the organisation's (to its admins); OrgMember says
	// the organisation has plans only its admins manage.
	ManageOwn, ManageOrg, OrgMember bool
	SignOutPath                     string
	Admin                           bool
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

func (s *Server) viewPlan(ctx context.Context, p *proxy.Plan, id *proxy.Identity) planView {
	v := planView{Key: p.Key, Name: p.Name, TrialDays: p.TrialDays, OrgScoped: p.Scope == proxy.SubjectOrg, CanCheckout: id != nil && s.billingOn}
	if len(p.Prices) > 0 {
		if pr, ok := s.prices.Price(p.Prices[0]); ok {
			v.Price, v.Per = pr.Format(), pr.Per()
		}
		if p.TrialFeePrice != "" {
			if pr, ok := s.prices.Price(p.TrialFeePrice); ok {
				v.TrialFee = pr.Format()
			}
		}
	}
	if id != nil && p.TrialDays > 0 {
		if subject, why := subjectFor(p, id); why == "" {
			if had, err := s.hadTrial(ctx, subject); err == nil {
				v.TrialKnown = true
				if had {
					v.TrialUsed, v.TrialDays, v.TrialFee = true, 0, ""
				}
			}
		}
	}
	if v.OrgScoped && id != nil {
		switch {
		case id.OrgID == "":
			v.CanCheckout, v.Why = false, "This plan is billed to an organisation. Choose one of your organisations first, then come back."
		case !id.IsOrgAdmin():
			v.CanCheckout, v.Why = false, "Only an admin of your organisation can subscribe it to this plan. Ask an admin of "+orgName(id)+" to subscribe."
		}
	}
	return v
}

func orgName(id *proxy.Identity) string {
	if id.OrgSlug != "" {
		return id.OrgSlug
	}
	return "your organisation"
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
	if id == nil {
		page.SignInURL = s.portal.SignInURL(strings.TrimSuffix(s.cfg.PublicURL.String(), "/")+r.URL.RequestURI(), "")
	}
	onlyOrg := len(plans) > 0
	for _, p := range plans {
		page.Plans = append(page.Plans, s.viewPlan(r.Context(), p, id))
		if p.Scope != proxy.SubjectOrg {
			onlyOrg = false
		}
	}
	page.OrgNeeded = onlyOrg && id != nil && id.OrgID == ""
	if id != nil {
		if d, err := s.decidePaid(r.Context(), id, routeID); err == nil {
			page.Status = d.Status
			if d.Held != nil {
				page.CollectionPaused = true
				if t := d.Held.CollectionResumesAt; !t.IsZero() {
					page.CollectionResumesAt = &t
				}
			}
			if d.Outcome == proxy.PaidAllow && r.PathValue("plan") == "" {
				// Already entitled (e.g. paid in another tab): go back.
				redirect(w, ret, http.StatusSeeOther)
				return
			}
		}
		page.HasPortal = page.Status != ""
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
	ret := s.safeReturn(r.PostForm.Get("return"))
	if p.Scope == proxy.SubjectOrg && staleOrg(id) {
		s.freshIdentityRequired(w, r, s.prefix+"/subscribe/"+url.PathEscape(p.Key)+"?"+url.Values{"return": {ret}}.Encode())
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
	res, err := s.billing.Checkout(r.Context(), proxy.CheckoutRequest{Identity: id, Subject: subject, Plan: p, ReturnPath: ret})
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
	u, err := s.billing.Portal(r.Context(), subject, strings.TrimSuffix(s.cfg.PublicURL.String(), "/")+s.prefix+"/account")
	if err != nil {
		s.billingError(w, r, "portal", err)
		return
	}
	redirect(w, u, http.StatusSeeOther)
}

func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	id := IdentityFromContext(r.Context())
	subs, err := s.subscriptionsOf(r.Context(), id)
	if err != nil {
		s.log.ErrorContext(r.Context(), "account: entitlements", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	var email string
	email, _ = s.directory.Email(r.Context(), id.UserID)
	page := accountPage{Identity: id, Email: email, Subscriptions: subs, SignOutPath: s.prefix + "/sign-out"}
	for _, sub := range subs {
		switch {
		case !s.billingOn:
		case !strings.HasPrefix(sub.Subject, string(proxy.SubjectOrg)+":"):
			page.ManageOwn = true
		case id.IsOrgAdmin():
			page.ManageOrg = true
		default:
			page.OrgMember = true
		}
	}
	s.pages.render(w, r, http.StatusOK, "account", page)
}

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

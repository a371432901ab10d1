package gateway

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/limits"
)

// limit applies the granting plan's limits (README "Limits") to a request
// the paid decision allowed: it refuses it itself (429) and reports false,
// or records the admission in f for the response to settle. Called only
// when the plan has limits: a plan without them costs nothing here.
func (s *Server) limit(w http.ResponseWriter, r *http.Request, e *logEntry, f *forward, d *proxy.PaidDecision, a *authOutcome, routeID string) bool {
	entry := d.Plan.LimitFor(routeID)
	if entry == nil {
		return true
	}
	if s.limiter == nil {
		// Limits configured and nothing to count them with: fail closed.
		s.log.ErrorContext(r.Context(), "limits: no limiter wired")
		e.decision, e.reason = "error", "limits_unavailable"
		s.writeError(w, r, http.StatusServiceUnavailable)
		return false
	}
	subject := proxy.LimitSubject(d, a.id)
	adm, err := s.limiter.Admit(r.Context(), subject, d.Plan.Key, entry, d.Sub.QuotaAnchor(), s.reqNow(e))
	if err != nil {
		s.log.ErrorContext(r.Context(), "limits: quota counter unavailable", "subject", subject.String(), "err", err)
		e.decision, e.reason = "error", "limits_unavailable"
		addSetCookies(w, a.setCookies)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return false
	}
	if adm.Reason == limits.Allowed {
		f.limit = adm
		return true
	}
	addSetCookies(w, a.setCookies)
	for _, c := range a.cookies {
		http.SetCookie(w, c)
	}
	s.overLimit(w, r, e, &adm, d, routeID, a.id.IsAPIKey())
	return false
}

// overLimit answers a request over a limit: 429 with Retry-After and the
// RateLimit fields; a page load over a quota gets the page that says what
// was used, when it resets and which plan has more.
func (s *Server) overLimit(w http.ResponseWriter, r *http.Request, e *logEntry, adm *limits.Admission, d *proxy.PaidDecision, routeID string, asJSON bool) {
	now := s.now()
	noStore(w)
	adm.WriteHeaders(w.Header(), now)
	lim := adm.Limit()
	e.decision = "rate_limited"
	if adm.Reason == limits.QuotaExceeded {
		e.decision = "quota_exceeded"
	}
	e.reason = d.Plan.Key
	more := s.plansWithMore(d, routeID)
	if adm.Reason == limits.QuotaExceeded && isNavigation(r) && !asJSON {
		page := overQuotaPage{Plan: d.Plan.Name, Used: adm.Used, Quota: lim.Quota, Period: lim.Period.String(),
			Resets: adm.QuotaReset.UTC(), Route: routeID}
		if len(more) > 0 {
			page.Better = more[0].Name
			page.UpgradeURL = s.prefix + "/subscribe/" + url.PathEscape(more[0].Key)
		}
		s.pages.render(w, r, http.StatusTooManyRequests, "overquota", page)
		return
	}
	if adm.Reason == limits.RateLimited && wantsHTML(r) && !asJSON {
		s.writeError(w, r, http.StatusTooManyRequests)
		return
	}
	body := limitBody{Error: "rate_limited", Message: "Too many requests: slow down and retry after the time in Retry-After.",
		Route: routeID, Plan: d.Plan.Key, RetryAfter: max(proxy.CeilSeconds(adm.RetryAfter(now)), 1)}
	if adm.Reason == limits.QuotaExceeded {
		body.Error = "quota_exceeded"
		body.Message = "The plan's quota for this period is used up."
		body.Used, body.Quota, body.Resets = adm.Used, lim.Quota, adm.QuotaReset.UTC().Format(time.RFC3339)
		if len(more) > 0 {
			body.UpgradeURL = strings.TrimSuffix(s.cfg.PublicURL.String(), "/") + s.prefix + "/subscribe/" + url.PathEscape(more[0].Key)
			for _, p := range more {
				body.Plans = append(body.Plans, planJSON{Key: p.Key, Name: p.Name})
			}
		}
	}
	writeJSON(w, http.StatusTooManyRequests, body)
}

// limitBody is the JSON of a 429 over a limit (README "Limits").
type limitBody struct {
	Error      string     `json:"error"`
	Message    string     `json:"message"`
	Route      string     `json:"route,omitempty"`
	Plan       string     `json:"plan"`
	RetryAfter int64      `json:"retry_after"`
	Used       int64      `json:"used,omitempty"`
	Quota      int64      `json:"quota,omitempty"`
	Resets     string     `json:"resets_at,omitempty"`
	UpgradeURL string     `json:"upgrade_url,omitempty"`
	Plans      []planJSON `json:"plans,omitempty"`
}

// overQuotaPage is the page a page load over a quota gets.
type overQuotaPage struct {
	Plan       string
	Used       int64
	Quota      int64
	Period     string
	Resets     time.Time
	Route      string
	Better     string // a plan with more, by name ("" if none)
	UpgradeURL string
}

// plansWithMore lists the plans that unlock the route with a larger quota
// than the current plan's (or none), in config order; monthly figures are
// compared, a day counting 30 and an hour 730.
func (s *Server) plansWithMore(d *proxy.PaidDecision, routeID string) []*proxy.Plan {
	cur := monthly(d.Plan.LimitFor(routeID))
	var out []*proxy.Plan
	for _, p := range proxy.UnlockingPlans(s.cfg.Plans, routeID) {
		if p.Key == d.Plan.Key {
			continue
		}
		if m := monthly(p.LimitFor(routeID)); m < 0 || cur >= 0 && m > cur {
			out = append(out, p)
		}
	}
	return out
}

// monthly is an entry's quota per month, -1 when it has none.
func monthly(e *proxy.LimitEntry) int64 {
	if e == nil || e.Limit.Quota == 0 {
		return -1
	}
	switch e.Limit.Period {
	case proxy.PeriodHour:
		return e.Limit.Quota * 730
	case proxy.PeriodDay:
		return e.Limit.Quota * 30
	}
	return e.Limit.Quota
}

// settleLimit ends a request's quota reservation when the upstream
// answers: the cost header's value (removed before the client sees it) or
// 1, nothing for a 5xx; and writes the RateLimit fields.
func (s *Server) settleLimit(f *forward, resp *http.Response) {
	h := resp.Header
	cost := int64(1)
	if s.cfg.CostHeader != "" {
		if v, ok := h[s.cfg.CostHeader]; ok {
			if len(v) > 0 {
				cost = limits.ParseCost(v[0])
			}
			delete(h, s.cfg.CostHeader)
		}
		// Not announced as a trailer either (costWriter removes its
		// value): a cost in a trailer is ignored.
		delete(resp.Trailer, s.cfg.CostHeader)
	}
	if f.meter != nil && resp.StatusCode < 500 {
		// Billed as the quota is debited: cost units, a 5xx nothing.
		s.limiter.Count(f.meter.subject, f.meter.sub, f.meter.eventName, cost)
	}
	if f.limit.Limit() == nil {
		return
	}
	f.limit.Settle(resp.StatusCode, cost)
	f.limit.WriteHeaders(h, s.now())
}

// usageView is one quota on the account page and the admin console.
type usageView struct {
	Subject  string
	PlanName string
	Route    string // the limits: entry ("*": every route of the plan)
	Used     int64
	Quota    int64
	Period   string
	Resets   time.Time
	Full     bool
}

// usageOf is what the visitor's subjects used of their quotas this period:
// for each plan that grants the user (or the active organisation) and has
// quotas, or free: when none grants the user, every quota entry, used or
// not. nil when no plan has limits.
func (s *Server) usageOf(ctx context.Context, id *proxy.Identity) ([]usageView, error) {
	if s.limiter == nil || !hasLimits(s.cfg) || id == nil {
		return nil, nil
	}
	var out []usageView
	if id.UserID != "" {
		u, err := s.subjectUsage(ctx, proxy.Subject{Kind: proxy.SubjectUser, ID: id.UserID}, true)
		if err != nil {
			return nil, err
		}
		out = append(out, u...)
	}
	if id.OrgID != "" {
		u, err := s.subjectUsage(ctx, proxy.Subject{Kind: proxy.SubjectOrg, ID: id.OrgID}, id.UserID == "")
		if err != nil {
			return nil, err
		}
		out = append(out, u...)
	}
	return out, nil
}

// subjectUsage is one subject's quotas this period (usageOf); free says
// whether free: stands in when no plan grants it.
func (s *Server) subjectUsage(ctx context.Context, subject proxy.Subject, free bool) ([]usageView, error) {
	now := s.now()
	ents, err := s.ents.Entitlements(ctx, subject)
	if err != nil {
		return nil, err
	}
	type granted struct {
		plan   *proxy.Plan
		anchor time.Time
	}
	var plans []granted
	pol := s.cfg.Access()
	for _, sub := range ents.All(now) {
		if !pol.GrantsSubject(subject, &sub, now) {
			continue
		}
		if p := s.planByKey(sub.Plan); p != nil && !slices.ContainsFunc(plans, func(g granted) bool { return g.plan == p }) {
			plans = append(plans, granted{p, sub.QuotaAnchor()})
		}
	}
	if len(plans) == 0 && free && s.cfg.Free != nil {
		plans = append(plans, granted{s.cfg.Free, time.Time{}})
	}
	var used []proxy.QuotaCount
	var out []usageView
	for _, g := range plans {
		for _, e := range g.plan.Limits {
			if e.Limit.Quota == 0 {
				continue
			}
			if used == nil {
				if used, err = s.limiter.Usage(ctx, subject); err != nil {
					return nil, err
				}
				used = append(used, proxy.QuotaCount{}) // read once, even when empty
			}
			start, end := proxy.QuotaWindow(e.Limit.Period, g.anchor, now)
			v := usageView{Subject: subject.String(), PlanName: g.plan.Name, Route: e.Route, Quota: e.Limit.Quota,
				Period: e.Limit.Period.String(), Resets: end}
			for _, c := range used {
				if c.Key.Plan == g.plan.Key && c.Key.Route == e.Route && c.Key.Start.Equal(start) {
					v.Used = c.Used
				}
			}
			v.Full = v.Used >= v.Quota
			out = append(out, v)
		}
	}
	return out, nil
}

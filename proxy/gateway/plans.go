package gateway

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/tollgate/tollgate/proxy"
)

// The upgrade page's plans: their words, price and terms, and the choice of
// billing period when a plan has prices of several intervals.

// planView is one plan as the upgrade page shows it.
type planView struct {
	Key         string
	Name        string
	Description string
	Features    []string
	Highlight   string // a label that marks the plan out ("" none)
	PriceID     string // the price the button subscribes to
	Price       string // "$12.00" ("" when unknown)
	Per         string // "month"
	// Saving tells a yearly price by the month, and what it saves against
	// the plan's monthly price ("" when there is nothing to say).
	Saving    string
	TrialDays int
	TrialFee  string // "$1.00" upfront for a paid trial ("" when none)
	// TrialUsed: the plan has a trial but this subject had one already, so
	// billing starts today. TrialKnown: whether that was looked up at all.
	TrialUsed, TrialKnown bool
	OrgScoped             bool
	CanCheckout           bool
	Why                   string // why not (organisation needed, not an admin)
}

// intervalOption is one billing period the page offers (a link: the choice
// works without JavaScript).
type intervalOption struct {
	Key, Label string
	URL        string // this page with the period chosen
	Note       string // what choosing it saves ("save 17%")
	Current    bool
}

// intervalKey names a price's billing period in a URL: "month", "year",
// "3-months".
func intervalKey(p proxy.Price) string { return strings.ReplaceAll(p.Per(), " ", "-") }

func intervalLabel(p proxy.Price) string {
	if p.IntervalCount <= 1 {
		switch p.Interval {
		case "day":
			return "Daily"
		case "week":
			return "Weekly"
		case "month":
			return "Monthly"
		case "year":
			return "Yearly"
		}
	}
	return "Every " + p.Per()
}

// periodDays orders billing periods, shortest first.
func periodDays(p proxy.Price) int64 {
	days := map[string]int64{"day": 1, "week": 7, "month": 30, "year": 365}[p.Interval]
	return days * max(p.IntervalCount, 1)
}

// planPrices are the plan's recurring prices the catalogue knows, one per
// billing period (the first of each), in the config's order.
func (s *Server) planPrices(p *proxy.Plan) []proxy.Price {
	var out []proxy.Price
	seen := map[string]bool{}
	for _, id := range p.Prices {
		pr, ok := s.prices.Price(id)
		if !ok || pr.Interval == "" || seen[intervalKey(pr)] {
			continue
		}
		seen[intervalKey(pr)] = true
		pr.ID = id
		out = append(out, pr)
	}
	return out
}

// choosePrice is the plan's price for the billing period key, else its
// first; ok is false when the catalogue knows none of its prices.
func choosePrice(prices []proxy.Price, key string) (proxy.Price, bool) {
	for _, pr := range prices {
		if intervalKey(pr) == key {
			return pr, true
		}
	}
	if len(prices) > 0 {
		return prices[0], true
	}
	return proxy.Price{}, false
}

// yearlySaving is what a yearly price saves against the same plan's monthly
// one, in whole percent (0: nothing, or nothing to compare).
func yearlySaving(prices []proxy.Price, yearly proxy.Price) int64 {
	if yearly.Interval != "year" || yearly.IntervalCount > 1 {
		return 0
	}
	for _, m := range prices {
		if m.Interval == "month" && m.IntervalCount <= 1 && m.Currency == yearly.Currency && m.Amount > 0 {
			if pct := 100 - (yearly.Amount*100+6*m.Amount)/(12*m.Amount); pct > 0 {
				return pct
			}
		}
	}
	return 0
}

// intervals are the billing periods the page offers for plans, with the
// one chosen (the request's interval, else the first plan's first price's),
// or none when no plan has more than one.
func (s *Server) intervals(r *http.Request, plans []*proxy.Plan) ([]intervalOption, string) {
	type period struct {
		price proxy.Price
		best  int64 // the best saving among plans, in percent
	}
	var periods []period
	several, first := false, ""
	for _, p := range plans {
		prices := s.planPrices(p)
		several = several || len(prices) > 1
		if first == "" && len(prices) > 0 {
			first = intervalKey(prices[0])
		}
		for _, pr := range prices {
			i := slices.IndexFunc(periods, func(o period) bool { return intervalKey(o.price) == intervalKey(pr) })
			if i < 0 {
				periods = append(periods, period{price: pr})
				i = len(periods) - 1
			}
			periods[i].best = max(periods[i].best, yearlySaving(prices, pr))
		}
	}
	if !several {
		return nil, first
	}
	slices.SortStableFunc(periods, func(a, b period) int { return cmp.Compare(periodDays(a.price), periodDays(b.price)) })
	chosen := first
	if want := r.URL.Query().Get("interval"); slices.ContainsFunc(periods, func(o period) bool { return intervalKey(o.price) == want }) {
		chosen = want
	}
	out := make([]intervalOption, 0, len(periods))
	for _, o := range periods {
		q := r.URL.Query()
		q.Set("interval", intervalKey(o.price))
		opt := intervalOption{Key: intervalKey(o.price), Label: intervalLabel(o.price), URL: r.URL.EscapedPath() + "?" + q.Encode(),
			Current: intervalKey(o.price) == chosen}
		if o.best > 0 {
			opt.Note = fmt.Sprintf("save %d%%", o.best)
		}
		out = append(out, opt)
	}
	return out, chosen
}

func (s *Server) viewPlan(ctx context.Context, p *proxy.Plan, id *proxy.Identity, interval string) planView {
	v := planView{Key: p.Key, Name: p.Name, Description: p.Description, Features: p.Features, Highlight: p.Highlight,
		TrialDays: p.TrialDays, OrgScoped: p.Scope == proxy.SubjectOrg, CanCheckout: id != nil && s.billingOn}
	if len(p.Prices) > 0 {
		v.PriceID = p.Prices[0]
	}
	prices := s.planPrices(p)
	if pr, ok := choosePrice(prices, interval); ok {
		v.PriceID, v.Price, v.Per = pr.ID, pr.Format(), pr.Per()
		if pct := yearlySaving(prices, pr); pct > 0 {
			month := proxy.Price{Amount: (pr.Amount + 6) / 12, Currency: pr.Currency}
			v.Saving = fmt.Sprintf("%s a month, billed yearly: %d%% less than paying monthly", month.Format(), pct)
		}
	}
	if p.TrialFeePrice != "" {
		if pr, ok := s.prices.Price(p.TrialFeePrice); ok {
			v.TrialFee = pr.Format()
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
			v.CanCheckout, v.Why = false, "This plan is billed to an organisation, and you have not chosen one."
		case !id.IsOrgAdmin():
			v.CanCheckout, v.Why = false, "Only an admin of "+s.orgName(ctx, id)+" can subscribe it to this plan. Ask one of its admins."
		}
	}
	return v
}

// Orgs names organisations for the pages, from what Clerk's webhooks
// recorded (never asking Clerk on the request path). Implemented by
// proxy/bolt.Store.
type Orgs interface {
	Org(ctx context.Context, id string) (proxy.Org, error)
}

// orgName is how the pages name the visitor's active organisation: its
// name, else its slug (Clerk's webhooks not configured, or not yet
// arrived), else "your organisation".
func (s *Server) orgName(ctx context.Context, id *proxy.Identity) string {
	if id == nil || id.OrgID == "" {
		return ""
	}
	if o, err := s.orgs.Org(ctx, id.OrgID); err == nil && o.Name != "" {
		return o.Name
	}
	if id.OrgSlug != "" {
		return id.OrgSlug
	}
	return "your organisation"
}

// checkoutPrice is the price a checkout form chose: one of the plan's, ""
// for its first; ok is false for any other.
func checkoutPrice(p *proxy.Plan, form url.Values) (string, bool) {
	price := form.Get("price")
	return price, price == "" || p.HasPrice(price)
}

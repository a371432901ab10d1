package gateway

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// The account page: the visitor's plans and their organisation's, each
// with what it means now and the one thing to do about it.

// accountSub is one plan on the account page.
type accountSub struct {
	subscriptionJSON
	// State is the page's reading of the plan: trialing, active,
	// cancelling, past_due (payment failed, access kept while Stripe
	// retries), on_hold (past due beyond the grace), unpaid, incomplete,
	// never_started, ended, paused, collection_paused (access kept),
	// collection_held (access held) or comp.
	State      string
	Org        bool   // billed to the organisation
	Price, Per string // what a period costs ("" when the catalogue does not know)
	// Portal is the billing portal its action opens: "own", "org" (the
	// visitor is an admin of the organisation), or "" (none from here).
	Portal string
	// AgainURL subscribes again after the plan has ended.
	AgainURL string
	// Ended is when the plan ended (ended, never_started).
	Ended *time.Time
	// Usage is a metered plan's usage this period (metering.go).
	Usage *accountUsage
}

type accountPage struct {
	Identity      *proxy.Identity
	Email         string
	OrgName       string // the active organisation's name ("" without one)
	Subscriptions []accountSub
	// OrgMember: the organisation has plans that only its admins manage.
	OrgMember bool
	// ChooseOrgURL is where Clerk lets the visitor choose an organisation,
	// offered when some plan is billed to one and none is active.
	ChooseOrgURL string
	PlansURL     string // every plan, for a visitor who has none
	SignOutPath  string
	// Keys is the API keys section (nil: keys are off).
	Keys *accountKeys
	// Usage is what the visitor used of their plans' quotas this period
	// (README "Limits").
	Usage []usageView
}

// subState reads a plan for the account page.
func subState(sub *subscriptionJSON) string {
	switch {
	case sub.Comp:
		return "comp"
	case sub.PausedCollection && sub.Active:
		return "collection_paused"
	case sub.PausedCollection:
		return "collection_held"
	case sub.CancelAtPeriodEnd && sub.Active:
		return "cancelling"
	}
	switch proxy.SubscriptionStatus(sub.Status) {
	case proxy.StatusTrialing:
		return "trialing"
	case proxy.StatusPastDue:
		if sub.Active {
			return "past_due"
		}
		return "on_hold"
	case proxy.StatusUnpaid:
		return "unpaid"
	case proxy.StatusIncomplete:
		return "incomplete"
	case proxy.StatusIncompleteExpired:
		return "never_started"
	case proxy.StatusCanceled:
		return "ended"
	case proxy.StatusPaused:
		return "paused"
	}
	return "active"
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
	usage, err := s.usageOf(r.Context(), id)
	if err != nil {
		s.log.ErrorContext(r.Context(), "account: quota usage", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	email, _ := s.directory.Email(r.Context(), id.UserID)
	page := accountPage{Identity: id, Email: email, OrgName: s.orgName(r.Context(), id), PlansURL: s.prefix + "/upgrade",
		SignOutPath: s.prefix + "/sign-out", Usage: usage}
	for _, sj := range subs {
		a := accountSub{subscriptionJSON: sj, State: subState(&sj), Org: strings.HasPrefix(sj.Subject, string(proxy.SubjectOrg)+":")}
		if pr, ok := s.prices.Price(sj.PriceID); ok {
			a.Price, a.Per = pr.Format(), pr.Per()
		}
		switch {
		case !s.billingOn || a.Comp:
		case !a.Org:
			a.Portal = "own"
		case id.IsOrgAdmin():
			a.Portal = "org"
		default:
			page.OrgMember = true
		}
		if a.State == "ended" || a.State == "never_started" {
			a.Ended = cmpTime(sj.EndedAt, sj.CurrentPeriodEnd)
			if a.Portal != "" || !a.Org {
				a.AgainURL = s.prefix + "/upgrade"
				if s.planByKey(sj.Plan) != nil {
					a.AgainURL = s.prefix + "/subscribe/" + url.PathEscape(sj.Plan)
				}
			}
		}
		a.Usage = s.meteredUsage(r.Context(), &sj)
		page.Subscriptions = append(page.Subscriptions, a)
	}
	// What still grants first, then what needs the visitor, then the past.
	slices.SortStableFunc(page.Subscriptions, func(a, b accountSub) int { return stateRank(a.State) - stateRank(b.State) })
	if id.OrgID == "" && slices.ContainsFunc(s.cfg.Plans, func(p proxy.Plan) bool { return p.Scope == proxy.SubjectOrg }) {
		page.ChooseOrgURL = s.portal.OrganizationURL(s.publicBase()+s.prefix+"/account", devBrowserFrom(r.Context()))
	}
	if page.Keys, err = s.accountKeysFor(r.Context(), id, r.URL.Query().Get("done")); err != nil {
		s.log.ErrorContext(r.Context(), "account: api keys", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	s.pages.render(w, r, http.StatusOK, "account", page)
}

// stateRank orders plans on the account page.
func stateRank(state string) int {
	switch state {
	case "ended", "never_started":
		return 2
	case "trialing", "active", "cancelling", "comp", "collection_paused":
		return 0
	}
	return 1
}

// cmpTime is the first of ts that is set.
func cmpTime(ts ...*time.Time) *time.Time {
	for _, t := range ts {
		if t != nil {
			return t
		}
	}
	return nil
}

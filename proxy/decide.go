package proxy

import (
	"time"
)

// PausedCollectionPolicy is stripe.paused_collection: what a subscription
// whose payment collection is paused grants.
type PausedCollectionPolicy string

const (
	// PausedCollectionKeep: access as the status says (Stripe keeps it
	// active). The default: Stripe describes pausing collection as
	// offering the service for free for a while, and the customer keeping
	// access (docs.stripe.com/billing/subscriptions/pause-payment); a site
	// that wants access to stop pauses the subscription itself (status
	// paused) or cancels it.
	PausedCollectionKeep PausedCollectionPolicy = "keep"
	// PausedCollectionRevoke: no access while collection is paused, until
	// resumes_at (or until it is resumed).
	PausedCollectionRevoke PausedCollectionPolicy = "revoke"
)

// AccessPolicy is the part of the stripe: section the paid decision reads.
type AccessPolicy struct {
	PastDueGrace     time.Duration          // stripe.past_due_grace
	PausedCollection PausedCollectionPolicy // stripe.paused_collection ("": keep)
	// PlanScopes is each configured plan's scope (Config.Access fills it):
	// a subscription grants a subject only to a plan of its kind, as
	// DecidePaid judges. nil: scopes are not checked (Grants alone).
	PlanScopes map[string]SubjectKind
}

// GrantsSubject reports whether sub grants access to subject at now, as
// the gate decides it: Grants, and a configured plan whose scope is the
// subject's kind (a user's subscription to an organisation's plan unlocks
// nothing, nor a plan the config no longer has).
func (pol AccessPolicy) GrantsSubject(subject Subject, sub *Subscription, now time.Time) bool {
	if !Grants(sub, pol, now) {
		return false
	}
	if pol.PlanScopes == nil {
		return true
	}
	scope, ok := pol.PlanScopes[sub.Plan]
	if scope == "" {
		scope = SubjectUser
	}
	return ok && scope == subject.Kind
}

// CollectionPaused reports whether Stripe is not collecting payment for sub
// at now: pause_collection is set and its resumes_at, if any, is still
// ahead.
func (sub *Subscription) CollectionPaused(now time.Time) bool {
	return sub.PausedCollection != "" && (sub.CollectionResumesAt.IsZero() || now.Before(sub.CollectionResumesAt))
}

// Grants reports whether a subscription in this state grants access at now:
// the one paid decision (README "Billing"). Stripe's status is the
// authority: active and trialing grant; past_due grants while Stripe
// retries, capped by pol.PastDueGrace (counted from when tollgate first saw
// it past due) when it is > 0; everything else does not. Paused payment
// collection leaves the status active; it withholds access only under
// PausedCollectionRevoke. cancel_at_period_end changes nothing here:
// Stripe keeps the status active until the period ends and then moves it
// to canceled.
func Grants(sub *Subscription, pol AccessPolicy, now time.Time) bool {
	if sub.Comp {
		// An admin's comp lasts exactly as long as they said.
		return sub.Status == StatusActive && (sub.CurrentPeriodEnd.IsZero() || now.Before(sub.CurrentPeriodEnd))
	}
	if pol.PausedCollection == PausedCollectionRevoke && sub.CollectionPaused(now) {
		return false
	}
	switch sub.Status {
	case StatusActive, StatusTrialing:
		return true
	case StatusPastDue:
		grace := pol.PastDueGrace
		if grace <= 0 || sub.PastDueSince.IsZero() {
			return true
		}
		return now.Before(sub.PastDueSince.Add(grace))
	}
	return false
}

// StaleAfter is how long past its period end an active subscription may go
// without news from Stripe before tollgate asks Stripe again (renewal
// invoices settle within hours; a day without a webhook means one was
// missed). It never causes a denial.
const StaleAfter = 24 * time.Hour

// IsStale reports whether sub grants access on a period that ended more
// than StaleAfter ago without Stripe telling us about the next one.
func IsStale(sub *Subscription, now time.Time) bool {
	return sub != nil && !sub.Comp && sub.CustomerID != "" && !sub.CurrentPeriodEnd.IsZero() &&
		(sub.Status == StatusActive || sub.Status == StatusTrialing) && now.Sub(sub.CurrentPeriodEnd) > StaleAfter
}

// StaleNotifier hears of stale subscriptions (IsStale) so that they are
// re-synced in the background. Implemented by main; it must not block.
type StaleNotifier interface {
	Stale(customerID string)
}

// PaidOutcome names the result of the paid-route decision.
type PaidOutcome string

const (
	PaidAllow           PaidOutcome = "allow"
	PaidRequired        PaidOutcome = "payment_required"
	PaidOrgRequired     PaidOutcome = "organization_required"
	PaidNoPlanUnlocks   PaidOutcome = "no_plan_unlocks_route"
	PaidEntitlementsErr PaidOutcome = "entitlements_unavailable"
)

// PaidDecision is the pure outcome of a paid route for one identity.
type PaidDecision struct {
	Outcome PaidOutcome
	Plan    *Plan              // the granting plan (PaidAllow)
	Sub     *Subscription      // the granting subscription (PaidAllow)
	Subject Subject            // whose subscription granted it (PaidAllow)
	Plans   []*Plan            // plans that would unlock the route
	Status  SubscriptionStatus // best status seen among relevant subscriptions, for pages and headers
	// Held is a subscription that would grant but whose payment collection
	// is paused under PausedCollectionRevoke (not PaidAllow).
	Held *Subscription
}

// PaidInput is everything DecidePaid looks at.
type PaidInput struct {
	RouteID  string
	Plans    []Plan
	Identity *Identity
	User     *Entitlements // the user's own subscriptions (nil: none known)
	Org      *Entitlements // the active organisation's (nil: none known or no active org)
	Policy   AccessPolicy  // stripe.past_due_grace, stripe.paused_collection
	Now      time.Time
	// Free is free: (nil: none): a signed-in visitor no plan grants is
	// allowed on the routes it lists, under its limits.
	Free *Plan
}

// UnlockingPlans returns the plans that unlock routeID, in config order.
func UnlockingPlans(plans []Plan, routeID string) []*Plan {
	var out []*Plan
	for i := range plans {
		if plans[i].UnlocksRoute(routeID) {
			out = append(out, &plans[i])
		}
	}
	return out
}

// DecidePaid decides a paid route: allow when any subscription of the user
// (for user-scoped plans) or of the active organisation (for
// organisation-scoped plans) grants a plan that unlocks the route.
func DecidePaid(in PaidInput) PaidDecision {
	d := decidePlans(in)
	if d.Outcome != PaidAllow && in.Free != nil && in.Identity != nil && in.Free.UnlocksRouteFree(in.RouteID) {
		// No granting plan (none, or one that lapsed): free: stands in,
		// for a session and a key alike (README "Limits").
		d.Outcome, d.Plan, d.Sub, d.Held = PaidAllow, in.Free, nil, nil
		d.Subject = LimitSubject(&PaidDecision{}, in.Identity)
	}
	return d
}

// UnlocksRouteFree reports whether free: lists routeID. Unlike a plan's,
// its routes name IDs only: a paid rule without an ID is not free.
func (p *Plan) UnlocksRouteFree(routeID string) bool {
	return routeID != "" && p.UnlocksRoute(routeID)
}

func decidePlans(in PaidInput) PaidDecision {
	unlocking := UnlockingPlans(in.Plans, in.RouteID)
	d := PaidDecision{Outcome: PaidRequired, Plans: unlocking}
	if len(unlocking) == 0 {
		d.Outcome = PaidNoPlanUnlocks
		return d
	}
	needsOrg := true
	for _, p := range unlocking {
		if p.Scope != SubjectOrg {
			needsOrg = false
		}
	}
	check := func(ents *Entitlements, scope SubjectKind) bool {
		subs := ents.All(in.Now)
		for i := range subs {
			sub := &subs[i]
			plan := planByKey(unlocking, sub.Plan)
			if plan == nil || plan.Scope != scope {
				continue
			}
			if Grants(sub, in.Policy, in.Now) {
				d.Outcome, d.Plan, d.Sub, d.Subject, d.Status, d.Held = PaidAllow, plan, sub, ents.Subject, sub.Status, nil
				return true
			}
			if sub.CollectionPaused(in.Now) && Grants(sub, AccessPolicy{PastDueGrace: in.Policy.PastDueGrace}, in.Now) {
				d.Held = sub
			}
			if sub.Status.Rank() > d.Status.Rank() {
				d.Status = sub.Status
			}
		}
		return false
	}
	if check(in.User, SubjectUser) {
		return d
	}
	if in.Identity != nil && in.Identity.OrgID != "" {
		if check(in.Org, SubjectOrg) {
			return d
		}
	} else if needsOrg {
		d.Outcome = PaidOrgRequired
	}
	return d
}

func planByKey(plans []*Plan, key string) *Plan {
	for _, p := range plans {
		if p.Key == key {
			return p
		}
	}
	return nil
}

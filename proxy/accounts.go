package proxy

import (
	"context"
	"slices"
	"time"
)

// User is a Clerk user as tollgate knows it: what Clerk's webhooks said
// (email, organisations) and when the gateway saw the user.
type User struct {
	ID        string // user_…
	Email     string
	FirstSeen time.Time
	LastSeen  time.Time
	OrgIDs    []string // the organisations the user belongs to, sorted
}

// Directory tells a user's email address: "" when it knows none, an error
// when it cannot tell. Implemented by proxy/clerk.Client, which asks Clerk
// (current, for a new Stripe customer), and by proxy/bolt.Store, which
// reads what Clerk's webhooks and Stripe Checkout recorded (local, so
// pages on the request path never wait for Clerk).
type Directory interface {
	Email(ctx context.Context, userID string) (string, error)
}

// Org is a Clerk organisation as Clerk's webhooks describe it.
type Org struct {
	ID, Slug, Name string
}

// AuditEntry is one admin action: a comp granted or revoked, a sync
// requested, a backup downloaded, …
type AuditEntry struct {
	At      time.Time
	Actor   string  // who did it (an admin's name, or "admin-token")
	Action  string  // e.g. "comp.granted"
	Subject Subject // whom it concerned (zero: nobody in particular, e.g. a sync of all)
	Detail  string  // free text: plan, comp ID, customer, reason
}

// HistoryEntry is one change of one subscription, as a sync learned it:
// the subscription's state after the change.
type HistoryEntry struct {
	At                time.Time // when the sync committed it
	SubscriptionID    string
	Plan              string
	Status            SubscriptionStatus
	PeriodEnd         time.Time
	CancelAtPeriodEnd bool
}

// Paging limits of the admin listing.
const (
	MaxUsersPage = 1000 // users per page of a listing
	MaxAuditPage = 1000 // audit or history entries per read
)

// StatusNone is the UserFilter status of subjects that hold no
// subscription and no active comp.
const StatusNone = "none"

// Account is everything tollgate records about one subject: its
// entitlements (the customer's subscriptions and every comp), and, for a
// user, what Clerk said and when the gateway saw them.
type Account struct {
	Entitlements
	User          *User  // nil: not a user tollgate has recorded (always nil for an organisation)
	CustomerEmail string // the email the Stripe customer carries
}

// Email is the account's email: Clerk's, else the one the Stripe customer
// carries (given at Checkout).
func (a *Account) Email() string {
	if a.User != nil && a.User.Email != "" {
		return a.User.Email
	}
	return a.CustomerEmail
}

// UserSummary is what the admin listing shows of one subject: a Clerk user
// or any user or organisation that has a Stripe customer or a comp.
type UserSummary struct {
	ID         string // Clerk user ID (user_…) or organisation ID (org_…)
	Kind       SubjectKind
	Email      string   // Account.Email
	OrgIDs     []string // the user's organisations
	CustomerID string
	// Plans are the plans that grant access now, as the gate decides it
	// (AccessPolicy.GrantsSubject: statuses under the config's policy, and
	// the plan's scope). Held are the plans of the subscriptions with the
	// most telling status when none grants: held, granting nothing.
	Plans []string
	Held  []string
	// Status is the most telling status (Rank) among what grants, else
	// among all the subscriptions and active comps; "" with none.
	Status    SubscriptionStatus
	PeriodEnd time.Time // the latest period end among what Plans come from
	Comp      bool      // an active comp is among what Plans come from
	FirstSeen time.Time
	LastSeen  time.Time
}

// Subject is the summary's billing subject.
func (u *UserSummary) Subject() Subject { return Subject{Kind: u.Kind, ID: u.ID} }

// Summary says what the account holds at now under pol, for the admin
// listing. It asks Grants, the gate's own decision, what grants.
func (a *Account) Summary(pol AccessPolicy, now time.Time) UserSummary {
	u := UserSummary{ID: a.Subject.ID, Kind: a.Subject.Kind, CustomerID: a.CustomerID, Email: a.Email()}
	if a.User != nil {
		u.OrgIDs = slices.Clone(a.User.OrgIDs)
		u.FirstSeen, u.LastSeen = a.User.FirstSeen, a.User.LastSeen
	}
	subs := a.All(now)
	grants := make([]bool, len(subs))
	granting := false
	for i := range subs {
		grants[i] = pol.GrantsSubject(a.Subject, &subs[i], now)
		granting = granting || grants[i]
	}
	// The best of what grants, else of everything: the higher rank, then
	// the later period end.
	var best *Subscription
	for i := range subs {
		s := &subs[i]
		if granting && !grants[i] {
			continue
		}
		if best == nil || s.Status.Rank() > best.Status.Rank() ||
			s.Status.Rank() == best.Status.Rank() && s.CurrentPeriodEnd.After(best.CurrentPeriodEnd) {
			best = s
		}
	}
	if best == nil {
		return u
	}
	u.Status = best.Status
	for i := range subs {
		s := &subs[i]
		if granting && !grants[i] || !granting && s.Status != best.Status {
			continue
		}
		held := &u.Plans
		if !granting {
			held = &u.Held
		}
		if s.Plan != "" && !slices.Contains(*held, s.Plan) {
			*held = append(*held, s.Plan)
		}
		if s.CurrentPeriodEnd.After(u.PeriodEnd) {
			u.PeriodEnd = s.CurrentPeriodEnd
		}
		u.Comp = u.Comp || s.Comp
	}
	slices.Sort(u.Plans)
	slices.Sort(u.Held)
	return u
}

// UserSort orders a listing of users.
type UserSort string

const (
	SortID        UserSort = ""           // by ID: organisations, then users
	SortLastSeen  UserSort = "last_seen"  // when the gateway last saw the user
	SortFirstSeen UserSort = "first_seen" // when it first did (joined)
	SortEmail     UserSort = "email"
	SortStatus    UserSort = "status" // the most telling status first (Rank), then by last seen
)

// UserSorts lists every order a listing offers.
func UserSorts() []UserSort {
	return []UserSort{SortLastSeen, SortFirstSeen, SortEmail, SortStatus, SortID}
}

// Known reports whether s is one of UserSorts.
func (s UserSort) Known() bool {
	for _, k := range UserSorts() {
		if k == s {
			return true
		}
	}
	return false
}

// UserFilter selects and pages a listing of users.
type UserFilter struct {
	Status string // a subscription status (the summary's), StatusNone, or "" for any
	Plan   string // a plan key the summary lists, or "" for any
	// Query searches instead of listing: a customer ID (cus_…), a user or
	// organisation ID (user_…, org_…), or else an email address, each
	// matched by its beginning; e-mail addresses ignore case.
	Query string
	Sort  UserSort
	Desc  bool   // the order reversed
	After string // the cursor of the page to follow (UserPage.Next; "": the first page)
	// Before is the cursor of the page to precede (UserPage.Prev); with
	// Last and no Before, the last page.
	Before string
	Last   bool
	Limit  int // <= 0: 100; capped at MaxUsersPage
	// Policy is stripe.past_due_grace and stripe.paused_collection, which
	// the summaries are made under (Account.Summary).
	Policy AccessPolicy
}

// UserPage is one page of a listing.
type UserPage struct {
	Users []UserSummary
	// Next and Prev are the cursors of the following and the preceding
	// page (UserFilter.After, .Before); "" when there is none.
	Next, Prev string
	// Total is how many subjects the listing's filter selects, -1 when
	// the store cannot tell cheaply (a search, status and plan together).
	Total int64
}

// Match reports whether a summary passes the filter's status and plan.
func (f *UserFilter) Match(u *UserSummary) bool {
	switch {
	case f.Status == StatusNone && u.Status != "":
		return false
	case f.Status != "" && f.Status != StatusNone && string(u.Status) != f.Status:
		return false
	case f.Plan != "" && !slices.Contains(u.Plans, f.Plan):
		return false
	}
	return true
}

// UserDetail is everything tollgate records about one subject, for the
// admin API: the account, its customer's subscription changes and the
// admin actions about it, newest first.
type UserDetail struct {
	Account
	History []HistoryEntry
	Audit   []AuditEntry
}

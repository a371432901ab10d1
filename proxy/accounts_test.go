package proxy

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestAccountEmail(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    Account
		want string
	}{
		{"Clerk's first", Account{User: &User{Email: "clerk@example.com"}, CustomerEmail: "stripe@example.com"}, "clerk@example.com"},
		{"else the customer's", Account{User: &User{}, CustomerEmail: "stripe@example.com"}, "stripe@example.com"},
		{"no user record", Account{CustomerEmail: "stripe@example.com"}, "stripe@example.com"},
		{"none", Account{}, ""},
	} {
		if got := tc.a.Email(); got != tc.want {
			t.Errorf("%s: Email = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestAccountSummary(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	user := Subject{Kind: SubjectUser, ID: "user_1"}
	sub := func(id string, st SubscriptionStatus, plan string, end time.Time) Subscription {
		return Subscription{ID: id, CustomerID: "cus_1", Status: st, Plan: plan, CurrentPeriodEnd: end}
	}
	pastDue := sub("sub_pd", StatusPastDue, "pro", now.Add(day))
	pastDue.PastDueSince = now.Add(-4 * day)
	paused := sub("sub_pa", StatusActive, "pro", now.Add(2*day))
	paused.PausedCollection = "void"
	comp := Comp{ID: "comp_1", Subject: user, Plan: "plus", ExpiresAt: now.Add(10 * day)}
	grace := AccessPolicy{PastDueGrace: 3 * day}
	revoke := AccessPolicy{PausedCollection: PausedCollectionRevoke}

	tests := []struct {
		name   string
		subs   []Subscription
		comps  []Comp
		pol    AccessPolicy
		plans  []string
		held   []string
		status SubscriptionStatus
		end    time.Time
		comp   bool
	}{
		{name: "nothing"},
		{name: "what grants, not what ranks higher",
			subs:  []Subscription{sub("sub_old", StatusCanceled, "team", now.Add(-day)), sub("sub_1", StatusTrialing, "pro", now.Add(7*day))},
			plans: []string{"pro"}, status: StatusTrialing, end: now.Add(7 * day)},
		{name: "every plan that grants, the best status, the latest end",
			subs:  []Subscription{sub("sub_1", StatusTrialing, "pro", now.Add(7*day)), sub("sub_2", StatusActive, "team", now.Add(3*day))},
			plans: []string{"pro", "team"}, status: StatusActive, end: now.Add(7 * day)},
		{name: "nothing grants: the most telling status",
			subs: []Subscription{sub("sub_1", StatusCanceled, "pro", now.Add(-day)), sub("sub_2", StatusUnpaid, "team", now.Add(-2*day))},
			held: []string{"team"}, status: StatusUnpaid, end: now.Add(-2 * day)},
		{name: "past_due grants without a grace", subs: []Subscription{pastDue}, comps: []Comp{comp},
			plans: []string{"plus", "pro"}, status: StatusActive, end: now.Add(10 * day), comp: true},
		{name: "past_due past the grace does not", subs: []Subscription{pastDue}, comps: []Comp{comp}, pol: grace,
			plans: []string{"plus"}, status: StatusActive, end: now.Add(10 * day), comp: true},
		{name: "past_due past the grace, alone", subs: []Subscription{pastDue}, pol: grace,
			held: []string{"pro"}, status: StatusPastDue, end: now.Add(day)},
		{name: "paused collection revoked, alone", subs: []Subscription{paused}, pol: revoke,
			held: []string{"pro"}, status: StatusActive, end: now.Add(2 * day)},
		{name: "a plan of another scope grants this subject nothing", subs: []Subscription{sub("sub_t", StatusActive, "team", now.Add(day))},
			pol:  AccessPolicy{PlanScopes: map[string]SubjectKind{"team": SubjectOrg, "pro": ""}},
			held: []string{"team"}, status: StatusActive, end: now.Add(day)},
		{name: "a plan the config no longer has grants nothing", subs: []Subscription{sub("sub_g", StatusActive, "gone", now.Add(day))},
			pol:  AccessPolicy{PlanScopes: map[string]SubjectKind{"pro": ""}},
			held: []string{"gone"}, status: StatusActive, end: now.Add(day)},
		{name: "a user plan grants with scopes checked", subs: []Subscription{sub("sub_p", StatusActive, "pro", now.Add(day))},
			pol:   AccessPolicy{PlanScopes: map[string]SubjectKind{"team": SubjectOrg, "pro": ""}},
			plans: []string{"pro"}, status: StatusActive, end: now.Add(day)},
		{name: "paused collection kept", subs: []Subscription{paused}, comps: []Comp{comp},
			plans: []string{"plus", "pro"}, status: StatusActive, end: now.Add(10 * day), comp: true},
		{name: "paused collection revoked", subs: []Subscription{paused}, comps: []Comp{comp}, pol: revoke,
			plans: []string{"plus"}, status: StatusActive, end: now.Add(10 * day), comp: true},
		{name: "an expired comp is not summarised", comps: []Comp{{ID: "comp_0", Plan: "plus", ExpiresAt: now}}},
	}
	for _, tc := range tests {
		a := Account{Entitlements: Entitlements{Subject: user, CustomerID: "cus_1", Subscriptions: tc.subs, Comps: tc.comps}}
		want := UserSummary{ID: "user_1", Kind: SubjectUser, CustomerID: "cus_1", Plans: tc.plans, Held: tc.held, Status: tc.status, PeriodEnd: tc.end, Comp: tc.comp}
		if diff := cmp.Diff(want, a.Summary(tc.pol, now), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: Summary (-want +got):\n%s", tc.name, diff)
		}
	}

	// What Clerk said and when the gateway saw the user.
	seen := &User{ID: "user_1", Email: "ada@example.com", OrgIDs: []string{"org_1"}, FirstSeen: now.Add(-day), LastSeen: now}
	a := Account{Entitlements: Entitlements{Subject: user}, User: seen, CustomerEmail: "billing@example.com"}
	want := UserSummary{ID: "user_1", Kind: SubjectUser, Email: "ada@example.com", OrgIDs: []string{"org_1"}, FirstSeen: now.Add(-day), LastSeen: now}
	if diff := cmp.Diff(want, a.Summary(AccessPolicy{}, now)); diff != "" {
		t.Errorf("a user record: Summary (-want +got):\n%s", diff)
	}
}

func TestUserFilterMatch(t *testing.T) {
	active := UserSummary{Status: StatusActive, Plans: []string{"plus", "pro"}}
	none := UserSummary{}
	tests := []struct {
		f    UserFilter
		u    UserSummary
		want bool
	}{
		{UserFilter{}, active, true},
		{UserFilter{}, none, true},
		{UserFilter{Status: "active"}, active, true},
		{UserFilter{Status: "past_due"}, active, false},
		{UserFilter{Status: "active"}, none, false},
		{UserFilter{Status: StatusNone}, none, true},
		{UserFilter{Status: StatusNone}, active, false},
		{UserFilter{Plan: "pro"}, active, true},
		{UserFilter{Plan: "team"}, active, false},
		{UserFilter{Plan: "pro"}, none, false},
		{UserFilter{Status: "active", Plan: "plus"}, active, true},
		{UserFilter{Status: "trialing", Plan: "plus"}, active, false},
	}
	for _, tc := range tests {
		if got := tc.f.Match(&tc.u); got != tc.want {
			t.Errorf("%+v matching %+v = %v, want %v", tc.f, tc.u, got, tc.want)
		}
	}
}

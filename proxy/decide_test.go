package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestGrants_EveryStatusGraceAndCancelAtPeriodEnd(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	const grace = 72 * time.Hour
	// Each row is written out: the answer is not computed the way Grants
	// computes it. pastDueFor is how long tollgate has seen it past_due.
	tests := []struct {
		status     SubscriptionStatus
		grace      time.Duration
		pastDueFor time.Duration
		want       bool
	}{
		{StatusActive, 0, 0, true},
		{StatusActive, grace, 0, true},
		{StatusTrialing, 0, 0, true},
		{StatusTrialing, grace, 0, true},
		{StatusPastDue, 0, time.Hour, true},       // no grace: access while Stripe retries
		{StatusPastDue, 0, 100 * time.Hour, true}, // however long
		{StatusPastDue, grace, time.Hour, true},   // within the grace
		{StatusPastDue, grace, grace - 1, true},   // its last moment
		{StatusPastDue, grace, grace, false},      // the grace is over
		{StatusPastDue, grace, 100 * time.Hour, false},
		{StatusUnpaid, 0, 0, false},
		{StatusUnpaid, grace, 0, false},
		{StatusIncomplete, 0, 0, false},
		{StatusIncomplete, grace, 0, false},
		{StatusPaused, 0, 0, false},
		{StatusPaused, grace, 0, false},
		{StatusIncompleteExpired, 0, 0, false},
		{StatusIncompleteExpired, grace, 0, false},
		{StatusCanceled, 0, 0, false},
		{StatusCanceled, grace, 0, false},
		{"some_future_status", 0, 0, false},
		{"some_future_status", grace, 0, false},
	}
	covered := map[SubscriptionStatus]bool{}
	for _, tt := range tests {
		covered[tt.status] = true
		// cancel_at_period_end changes nothing: Stripe keeps the status
		// until the period ends.
		for _, cape := range []bool{false, true} {
			sub := &Subscription{Status: tt.status, CancelAtPeriodEnd: cape, CurrentPeriodEnd: now.Add(-time.Hour)}
			if tt.status == StatusPastDue {
				sub.PastDueSince = now.Add(-tt.pastDueFor)
			}
			name := fmt.Sprintf("%s/grace=%s/past_due_for=%s/cancel_at_period_end=%v", tt.status, tt.grace, tt.pastDueFor, cape)
			if got := Grants(sub, AccessPolicy{PastDueGrace: tt.grace}, now); got != tt.want {
				t.Errorf("%s: Grants = %v, want %v", name, got, tt.want)
			}
		}
	}
	for _, st := range Statuses() {
		if !covered[st] {
			t.Errorf("no row for status %s", st)
		}
	}
}

func TestGrants_PastDueWithoutFirstSeenTimeKeepsAccess(t *testing.T) {
	// A record that predates tracking has no PastDueSince: Stripe is still
	// retrying, so the visitor keeps access rather than losing it on our gap.
	sub := &Subscription{Status: StatusPastDue}
	if !Grants(sub, AccessPolicy{PastDueGrace: time.Hour}, time.Now()) {
		t.Fatal("past_due with unknown start denied")
	}
}

func TestDecidePaid(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	plans := []Plan{
		{Key: "pro", Name: "Pro", Prices: []string{"price_pro"}, Routes: []string{"415VNA", "258AVO"}, Scope: SubjectUser},
		{Key: "team", Name: "Team", Prices: []string{"price_team"}, Routes: []string{"*"}, Scope: SubjectOrg},
		{Key: "org_only", Name: "Org only", Prices: []string{"price_org"}, Routes: []string{"ORG1"}, Scope: SubjectOrg},
	}
	user := &Identity{UserID: "user_1", SessionID: "sess_1"}
	member := &Identity{UserID: "user_1", SessionID: "sess_1", OrgID: "org_1", OrgRole: "org:member"}
	ents := func(kind SubjectKind, id string, subs ...Subscription) *Entitlements {
		return &Entitlements{Subject: Subject{Kind: kind, ID: id}, Subscriptions: subs}
	}
	sub := func(plan string, st SubscriptionStatus) Subscription {
		return Subscription{ID: "sub_" + plan, Plan: plan, Status: st}
	}
	type want struct {
		Outcome PaidOutcome
		Plan    string
		Status  SubscriptionStatus
		Plans   []string
	}
	tests := []struct {
		name string
		in   PaidInput
		want want
	}{
		{"no subscription", PaidInput{RouteID: "415VNA", Identity: user},
			want{Outcome: PaidRequired, Plans: []string{"pro", "team"}}},
		{"active pro unlocks its route", PaidInput{RouteID: "415VNA", Identity: user, User: ents(SubjectUser, "user_1", sub("pro", StatusActive))},
			want{Outcome: PaidAllow, Plan: "pro", Status: StatusActive, Plans: []string{"pro", "team"}}},
		{"route IDs compare without regard to case", PaidInput{RouteID: "415vna", Identity: user, User: ents(SubjectUser, "user_1", sub("pro", StatusActive))},
			want{Outcome: PaidAllow, Plan: "pro", Status: StatusActive, Plans: []string{"pro", "team"}}},
		{"pro does not unlock another route (only the org plan does)", PaidInput{RouteID: "999ZZZ", Identity: user, User: ents(SubjectUser, "user_1", sub("pro", StatusActive))},
			want{Outcome: PaidOrgRequired, Plans: []string{"team"}}},
		{"canceled pro denies and says why", PaidInput{RouteID: "415VNA", Identity: user, User: ents(SubjectUser, "user_1", sub("pro", StatusCanceled))},
			want{Outcome: PaidRequired, Status: StatusCanceled, Plans: []string{"pro", "team"}}},
		{"one canceled and one active: active wins", PaidInput{RouteID: "415VNA", Identity: user,
			User: ents(SubjectUser, "user_1", sub("pro", StatusCanceled), Subscription{ID: "sub_2", Plan: "pro", Status: StatusTrialing})},
			want{Outcome: PaidAllow, Plan: "pro", Status: StatusTrialing, Plans: []string{"pro", "team"}}},
		{"route without ID is unlocked by any plan", PaidInput{RouteID: "", Identity: user, User: ents(SubjectUser, "user_1", sub("pro", StatusActive))},
			want{Outcome: PaidAllow, Plan: "pro", Status: StatusActive, Plans: []string{"pro", "team", "org_only"}}},
		{"org plan on the active org unlocks", PaidInput{RouteID: "415VNA", Identity: member, Org: ents(SubjectOrg, "org_1", sub("team", StatusActive))},
			want{Outcome: PaidAllow, Plan: "team", Status: StatusActive, Plans: []string{"pro", "team"}}},
		{"org plan held by the user does not count", PaidInput{RouteID: "ORG1", Identity: member, User: ents(SubjectUser, "user_1", sub("org_only", StatusActive))},
			want{Outcome: PaidRequired, Plans: []string{"team", "org_only"}}},
		{"org-only route without an active org asks for one", PaidInput{RouteID: "ORG1", Identity: user},
			want{Outcome: PaidOrgRequired, Plans: []string{"team", "org_only"}}},
		{"user plan held by the org does not count", PaidInput{RouteID: "415VNA", Identity: member, Org: ents(SubjectOrg, "org_1", sub("pro", StatusActive))},
			want{Outcome: PaidRequired, Plans: []string{"pro", "team"}}},
		{"subscription to an unknown plan never grants", PaidInput{RouteID: "415VNA", Identity: user, User: ents(SubjectUser, "user_1", sub("", StatusActive))},
			want{Outcome: PaidRequired, Plans: []string{"pro", "team"}}},
		{"past_due within grace", PaidInput{RouteID: "415VNA", Identity: user, Policy: AccessPolicy{PastDueGrace: 48 * time.Hour},
			User: ents(SubjectUser, "user_1", Subscription{Plan: "pro", Status: StatusPastDue, PastDueSince: now.Add(-time.Hour)})},
			want{Outcome: PaidAllow, Plan: "pro", Status: StatusPastDue, Plans: []string{"pro", "team"}}},
		{"past_due beyond grace", PaidInput{RouteID: "415VNA", Identity: user, Policy: AccessPolicy{PastDueGrace: 48 * time.Hour},
			User: ents(SubjectUser, "user_1", Subscription{Plan: "pro", Status: StatusPastDue, PastDueSince: now.Add(-49 * time.Hour)})},
			want{Outcome: PaidRequired, Status: StatusPastDue, Plans: []string{"pro", "team"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.Plans, in.Now = plans, now
			d := DecidePaid(in)
			got := want{Outcome: d.Outcome, Status: d.Status}
			if d.Plan != nil {
				got.Plan = d.Plan.Key
			}
			for _, p := range d.Plans {
				got.Plans = append(got.Plans, p.Key)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DecidePaid (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGrants_CompsEndAtTheirExpiry(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		sub  Subscription
		want bool
	}{
		{"before expiry", Subscription{Comp: true, Status: StatusActive, CurrentPeriodEnd: now.Add(time.Hour)}, true},
		{"at expiry", Subscription{Comp: true, Status: StatusActive, CurrentPeriodEnd: now}, false},
		{"no expiry", Subscription{Comp: true, Status: StatusActive}, true},
		{"revoked comp", Subscription{Comp: true, Status: StatusCanceled, CurrentPeriodEnd: now.Add(time.Hour)}, false},
	}
	for _, tt := range tests {
		if got := Grants(&tt.sub, AccessPolicy{}, now); got != tt.want {
			t.Errorf("%s: Grants = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// Paused payment collection leaves the status active: it grants under
// keep (the default) and not under revoke, until resumes_at.
func TestGrants_PausedCollection(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	sub := &Subscription{ID: "sub_1", Status: StatusActive, Plan: "pro", PausedCollection: "void"}
	for _, tc := range []struct {
		name    string
		pol     PausedCollectionPolicy
		resumes time.Time
		want    bool
	}{
		{"default", "", time.Time{}, true},
		{"keep", PausedCollectionKeep, time.Time{}, true},
		{"revoke, no end", PausedCollectionRevoke, time.Time{}, false},
		{"revoke, resumes later", PausedCollectionRevoke, now.Add(time.Hour), false},
		{"revoke, resumes_at passed", PausedCollectionRevoke, now.Add(-time.Second), true},
	} {
		s := *sub
		s.CollectionResumesAt = tc.resumes
		if got := Grants(&s, AccessPolicy{PausedCollection: tc.pol}, now); got != tc.want {
			t.Errorf("%s: Grants = %v, want %v", tc.name, got, tc.want)
		}
	}
	collecting := *sub
	collecting.PausedCollection = ""
	if !Grants(&collecting, AccessPolicy{PausedCollection: PausedCollectionRevoke}, now) {
		t.Error("revoke denies a subscription whose collection is not paused")
	}
	canceled := *sub
	canceled.Status = StatusCanceled
	if Grants(&canceled, AccessPolicy{}, now) {
		t.Error("a canceled subscription with paused collection grants")
	}
	// The decision says why it denied.
	plans := []Plan{{Key: "pro", Prices: []string{"price_pro"}, Routes: []string{"*"}, Scope: SubjectUser}}
	d := DecidePaid(PaidInput{RouteID: "x", Plans: plans, Identity: &Identity{UserID: "user_1"},
		User: &Entitlements{Subscriptions: []Subscription{*sub}}, Policy: AccessPolicy{PausedCollection: PausedCollectionRevoke}, Now: now})
	if d.Outcome != PaidRequired || d.Held == nil || d.Held.ID != "sub_1" {
		t.Errorf("revoke: %+v", d)
	}
}

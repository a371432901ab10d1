package proxy

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var recNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func TestAccountRecord_Edits(t *testing.T) {
	t1, t2, t3 := recNow.Add(-3*time.Hour), recNow.Add(-2*time.Hour), recNow.Add(-time.Hour)
	plus2 := time.FixedZone("+02", 2*3600)
	tests := []struct {
		name string
		from AccountRecord
		edit func(*AccountRecord)
		want AccountRecord
	}{
		{"seen records the user and sets both times", AccountRecord{},
			func(a *AccountRecord) { a.Seen(t2.In(plus2)) },
			AccountRecord{User: true, FirstSeen: t2, LastSeen: t2}},
		{"seen earlier moves only the first", AccountRecord{User: true, FirstSeen: t2, LastSeen: t2},
			func(a *AccountRecord) { a.Seen(t1) },
			AccountRecord{User: true, FirstSeen: t1, LastSeen: t2}},
		{"seen later moves only the last", AccountRecord{User: true, FirstSeen: t1, LastSeen: t2},
			func(a *AccountRecord) { a.Seen(t3) },
			AccountRecord{User: true, FirstSeen: t1, LastSeen: t3}},
		{"seen inside changes nothing", AccountRecord{User: true, FirstSeen: t1, LastSeen: t3},
			func(a *AccountRecord) { a.Seen(t2) },
			AccountRecord{User: true, FirstSeen: t1, LastSeen: t3}},
		{"a zero sighting records the user only", AccountRecord{Customer: "cus_1"},
			func(a *AccountRecord) { a.Seen(time.Time{}) },
			AccountRecord{User: true, Customer: "cus_1"}},
		{"put user keeps the organisations when Clerk sends none", AccountRecord{User: true, Email: "old@x", OrgIDs: []string{"org_a"}, FirstSeen: t2, LastSeen: t2},
			func(a *AccountRecord) { a.PutUser(User{Email: "new@x", FirstSeen: t1}) },
			AccountRecord{User: true, Email: "new@x", OrgIDs: []string{"org_a"}, FirstSeen: t1, LastSeen: t2}},
		{"put user replaces the organisations it carries", AccountRecord{User: true, OrgIDs: []string{"org_a"}},
			func(a *AccountRecord) { a.PutUser(User{OrgIDs: []string{}, LastSeen: t3}) },
			AccountRecord{User: true, OrgIDs: []string{}, FirstSeen: t3, LastSeen: t3}},
		{"forget keeps the customer and the listing", AccountRecord{User: true, Email: "a@x", OrgIDs: []string{"org_a"}, FirstSeen: t1, LastSeen: t2, Customer: "cus_1", List: &Listing{Rank: 3}},
			(*AccountRecord).ForgetUser,
			AccountRecord{Customer: "cus_1", List: &Listing{Rank: 3}}},
		{"join sorts and records the user", AccountRecord{OrgIDs: []string{"org_c"}},
			func(a *AccountRecord) { a.JoinOrg("org_b") },
			AccountRecord{User: true, OrgIDs: []string{"org_b", "org_c"}}},
		{"join twice is once", AccountRecord{User: true, OrgIDs: []string{"org_b"}},
			func(a *AccountRecord) { a.JoinOrg("org_b") },
			AccountRecord{User: true, OrgIDs: []string{"org_b"}}},
		{"leave the last leaves nil", AccountRecord{User: true, OrgIDs: []string{"org_b"}},
			func(a *AccountRecord) { a.LeaveOrg("org_b") },
			AccountRecord{User: true}},
		{"leave one of two", AccountRecord{User: true, OrgIDs: []string{"org_a", "org_b"}},
			func(a *AccountRecord) { a.LeaveOrg("org_a") },
			AccountRecord{User: true, OrgIDs: []string{"org_b"}}},
	}
	for _, tt := range tests {
		before := tt.from.Clone()
		got := tt.from.Clone()
		tt.edit(&got)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
		if diff := cmp.Diff(before, tt.from); diff != "" {
			t.Errorf("%s: editing the clone changed the original (-before +after):\n%s", tt.name, diff)
		}
	}
}

func TestAccountRecord_EmptyAndClone(t *testing.T) {
	for _, tt := range []struct {
		rec  AccountRecord
		want bool
	}{
		{AccountRecord{}, true},
		{AccountRecord{Email: "left over"}, true}, // no part flagged: nothing kept
		{AccountRecord{User: true}, false},
		{AccountRecord{Customer: "cus_1"}, false},
		{AccountRecord{List: &Listing{}}, false},
	} {
		if got := tt.rec.Empty(); got != tt.want {
			t.Errorf("%+v.Empty() = %v, want %v", tt.rec, got, tt.want)
		}
	}
	a := AccountRecord{OrgIDs: []string{"org_a"}, List: &Listing{Statuses: []string{"active"}, Plans: []string{"pro"}}}
	c := a.Clone()
	c.OrgIDs[0], c.List.Statuses[0], c.List.Plans[0], c.List.Rank = "x", "x", "x", 9
	if a.OrgIDs[0] != "org_a" || a.List.Statuses[0] != "active" || a.List.Plans[0] != "pro" || a.List.Rank != 0 {
		t.Errorf("Clone shares memory with the original: %+v %+v", a, *a.List)
	}
}

func TestAccountRecord_View(t *testing.T) {
	user := Subject{Kind: SubjectUser, ID: "user_1"}
	org := Subject{Kind: SubjectOrg, ID: "org_1"}
	comp := Comp{ID: "comp_1", Subject: user, Plan: "pro", ExpiresAt: recNow.Add(time.Hour)}
	subs := []Subscription{{ID: "sub_1", Status: StatusActive}}
	mine := &CustomerRecord{Subject: "user_1", Email: "c@x", SyncedAt: recNow, Subscriptions: subs}
	theirs := &CustomerRecord{Subject: "user_2", Email: "c@x", Subscriptions: subs}
	u := User{ID: "user_1", Email: "u@x"}
	tests := []struct {
		name    string
		subject Subject
		rec     AccountRecord
		cust    *CustomerRecord
		comps   []Comp
		want    Account
		listed  bool
	}{
		{"nothing", user, AccountRecord{}, nil, nil, Account{Entitlements: Entitlements{Subject: user}}, false},
		{"a user", user, AccountRecord{User: true, Email: "u@x"}, nil, nil,
			Account{Entitlements: Entitlements{Subject: user}, User: &u}, true},
		{"an organisation's record is never a user", org, AccountRecord{User: true}, nil, nil,
			Account{Entitlements: Entitlements{Subject: org}}, false},
		{"a customer that names it back", user, AccountRecord{Customer: "cus_1"}, mine, nil,
			Account{Entitlements: Entitlements{Subject: user, CustomerID: "cus_1", Subscriptions: subs, SyncedAt: recNow}, CustomerEmail: "c@x"}, true},
		{"linked, never synced", user, AccountRecord{Customer: "cus_1"}, nil, nil,
			Account{Entitlements: Entitlements{Subject: user, CustomerID: "cus_1"}}, true},
		{"a dangling link grants nothing", user, AccountRecord{Customer: "cus_1"}, theirs, nil,
			Account{Entitlements: Entitlements{Subject: user}}, false},
		{"only a comp", user, AccountRecord{}, nil, []Comp{comp},
			Account{Entitlements: Entitlements{Subject: user, Comps: []Comp{comp}}}, true},
	}
	for _, tt := range tests {
		got, listed := tt.rec.View(tt.subject, tt.cust, tt.comps)
		if diff := cmp.Diff(tt.want, got); diff != "" || listed != tt.listed {
			t.Errorf("%s: listed %v, want %v (-want +got):\n%s", tt.name, listed, tt.listed, diff)
		}
	}
}

func TestListingOf(t *testing.T) {
	user := Subject{Kind: SubjectUser, ID: "user_1"}
	live := Comp{ID: "comp_1", Plan: "team", ExpiresAt: recNow.Add(time.Hour)}
	gone := Comp{ID: "comp_2", Plan: "gold", ExpiresAt: recNow.Add(-time.Hour)}
	tests := []struct {
		name string
		acct Account
		want Listing
	}{
		{"nothing held is none", Account{Entitlements: Entitlements{Subject: user}, User: &User{Email: "Ada\x00@X.org"}},
			Listing{Email: "ada@x.org", Statuses: []string{StatusNone}}},
		{"subscriptions, sorted and once each", Account{Entitlements: Entitlements{Subject: user, Subscriptions: []Subscription{
			{ID: "s1", Status: StatusPastDue, Plan: "pro"}, {ID: "s2", Status: StatusActive, Plan: "basic"}, {ID: "s3", Status: StatusActive, Plan: "pro"}, {ID: "s4", Status: StatusCanceled}}}},
			Listing{Statuses: []string{"active", "canceled", "past_due"}, Plans: []string{"basic", "pro"}, Rank: StatusActive.Rank()}},
		{"an active comp is active, and none while it may expire", Account{Entitlements: Entitlements{Subject: user, Comps: []Comp{live, gone}}, CustomerEmail: "C@x"},
			Listing{Email: "c@x", Statuses: []string{"active", StatusNone}, Plans: []string{"team"}, Rank: StatusActive.Rank()}},
	}
	for _, tt := range tests {
		got := ListingOf(&tt.acct, recNow)
		if diff := cmp.Diff(&tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
		if !got.Equal(&tt.want) {
			t.Errorf("%s: Equal is false for equal listings", tt.name)
		}
	}
	a, b := &Listing{Email: "a", Statuses: []string{"active"}}, &Listing{Email: "a", Statuses: []string{"active"}, Plans: []string{"pro"}}
	for _, tt := range []struct {
		l, m *Listing
		want bool
	}{{nil, nil, true}, {a, nil, false}, {nil, a, false}, {a, a, true}, {a, b, false}} {
		if got := tt.l.Equal(tt.m); got != tt.want {
			t.Errorf("%v.Equal(%v) = %v, want %v", tt.l, tt.m, got, tt.want)
		}
	}
}

func TestListingTags(t *testing.T) {
	var none *Listing
	if got := none.Tags(); got != nil {
		t.Errorf("nil listing's tags = %q, want none", got)
	}
	l := &Listing{Statuses: []string{"active", "trialing"}, Plans: []string{"pro"}}
	if diff := cmp.Diff([]string{ListingTagAll, "s:active", "s:trialing", "p:pro"}, l.Tags()); diff != "" {
		t.Errorf("Tags (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		f    UserFilter
		tag  string
		ok   bool
		hint string
	}{
		{UserFilter{}, ListingTagAll, true, "everyone"},
		{UserFilter{Status: "active"}, "s:active", true, "a status"},
		{UserFilter{Status: StatusNone}, "s:none", true, "none is a status"},
		{UserFilter{Plan: "pro"}, "p:pro", true, "a plan"},
		{UserFilter{Status: "active", Plan: "pro"}, "", false, "both: no one counter"},
	} {
		tag, ok := tt.f.TotalTag()
		if tag != tt.tag || ok != tt.ok {
			t.Errorf("%s: TotalTag = %q, %v; want %q, %v", tt.hint, tag, ok, tt.tag, tt.ok)
		}
	}
}

package proxy

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCustomerRecord_Commit(t *testing.T) {
	synced := recNow.Add(-time.Minute)
	plus2 := time.FixedZone("+02", 2*3600)
	pastDueSince := recNow.Add(-48 * time.Hour)
	stored := CustomerRecord{Subject: "user_1", Email: "old@x", SyncedAt: recNow.Add(-time.Hour), Subscriptions: []Subscription{
		{ID: "sub_1", Status: StatusPastDue, Plan: "pro", PastDueSince: pastDueSince},
		{ID: "sub_2", Status: StatusActive, Plan: "pro"},
	}}
	tests := []struct {
		name        string
		rec         CustomerRecord
		known       bool
		state       CustomerState
		want        CustomerRecord
		wantSynced  time.Time
		wantChanged []string // subscription IDs
		wantWrite   bool
	}{
		{"a deletion of a customer never seen writes nothing", CustomerRecord{}, false,
			CustomerState{CustomerID: "cus_1", Deleted: true},
			CustomerRecord{}, recNow, nil, false},
		{"a first sync: every subscription is history, a trial is remembered", CustomerRecord{}, false,
			CustomerState{CustomerID: "cus_1", Email: "a@x", SyncedAt: synced.In(plus2), Subscriptions: []Subscription{{ID: "sub_1", Status: StatusTrialing, Plan: "pro"}}},
			CustomerRecord{Email: "a@x", HadTrial: true, SyncedAt: synced, Subscriptions: []Subscription{{ID: "sub_1", Status: StatusTrialing, Plan: "pro"}}},
			synced, []string{"sub_1"}, true},
		{"a resync keeps past-due-since and the email; only the changed is history", stored, true,
			CustomerState{CustomerID: "cus_1", Subscriptions: []Subscription{
				{ID: "sub_1", Status: StatusPastDue, Plan: "pro"},
				{ID: "sub_2", Status: StatusActive, Plan: "pro", CancelAtPeriodEnd: true}}},
			CustomerRecord{Subject: "user_1", Email: "old@x", SyncedAt: recNow, Subscriptions: []Subscription{
				{ID: "sub_1", Status: StatusPastDue, Plan: "pro", PastDueSince: pastDueSince},
				{ID: "sub_2", Status: StatusActive, Plan: "pro", CancelAtPeriodEnd: true}}},
			recNow, []string{"sub_2"}, true},
		{"a deletion drops the subscriptions and the subject, keeps the trial", CustomerRecord{Subject: "user_1", HadTrial: true, Subscriptions: stored.Subscriptions}, true,
			CustomerState{CustomerID: "cus_1", Deleted: true, SyncedAt: synced},
			CustomerRecord{HadTrial: true, Deleted: true, SyncedAt: synced}, synced, nil, true},
		{"a customer deleted comes back", CustomerRecord{Deleted: true}, true,
			CustomerState{CustomerID: "cus_1", Subscriptions: []Subscription{{ID: "sub_9", Status: StatusActive, TrialEnd: synced}}},
			CustomerRecord{HadTrial: true, SyncedAt: recNow, Subscriptions: []Subscription{{ID: "sub_9", Status: StatusActive, TrialEnd: synced}}},
			recNow, []string{"sub_9"}, true},
	}
	for _, tt := range tests {
		rec := tt.rec
		gotSynced, changed, write := rec.Commit(tt.state, tt.known, recNow)
		if !write {
			rec = CustomerRecord{}
		}
		if diff := cmp.Diff(tt.want, rec); diff != "" {
			t.Errorf("%s: record (-want +got):\n%s", tt.name, diff)
		}
		var ids []string
		for _, s := range changed {
			ids = append(ids, s.ID)
		}
		if diff := cmp.Diff(tt.wantChanged, ids); diff != "" || write != tt.wantWrite || !gotSynced.Equal(tt.wantSynced) {
			t.Errorf("%s: synced %v (want %v), write %v (want %v), changed (-want +got):\n%s", tt.name, gotSynced, tt.wantSynced, write, tt.wantWrite, diff)
		}
		if rec.SyncedAt.Location() != time.UTC && !rec.SyncedAt.IsZero() {
			t.Errorf("%s: SyncedAt in %v, want UTC", tt.name, rec.SyncedAt.Location())
		}
	}
}

func TestCustomerRecord_CommitOwnsItsSubscriptions(t *testing.T) {
	fresh := []Subscription{{ID: "sub_1", Status: StatusActive, PriceIDs: []string{"price_1"}}}
	var rec CustomerRecord
	rec.Commit(CustomerState{CustomerID: "cus_1", Subscriptions: fresh}, false, recNow)
	rec.Subscriptions[0].PriceIDs[0], rec.Subscriptions[0].Status = "changed", StatusCanceled
	if fresh[0].PriceIDs[0] != "price_1" || fresh[0].Status != StatusActive {
		t.Errorf("the record shares the state's memory: %+v", fresh[0])
	}
}

func TestChangedSubscriptions(t *testing.T) {
	end := recNow.Add(30 * 24 * time.Hour)
	base := Subscription{ID: "sub_1", Status: StatusActive, Plan: "pro", CurrentPeriodEnd: end}
	with := func(f func(*Subscription)) Subscription { s := base; f(&s); return s }
	tests := []struct {
		name  string
		fresh Subscription
		want  bool
	}{
		{"the same", base, false},
		{"the same instant in another zone", with(func(s *Subscription) { s.CurrentPeriodEnd = end.In(time.FixedZone("x", 3600)) }), false},
		{"what history ignores (amount, sync time)", with(func(s *Subscription) { s.Amount, s.SyncedAt = 900, recNow }), false},
		{"status", with(func(s *Subscription) { s.Status = StatusPastDue }), true},
		{"plan", with(func(s *Subscription) { s.Plan = "team" }), true},
		{"period end", with(func(s *Subscription) { s.CurrentPeriodEnd = end.Add(time.Second) }), true},
		{"cancel at period end", with(func(s *Subscription) { s.CancelAtPeriodEnd = true }), true},
		{"paused collection", with(func(s *Subscription) { s.PausedCollection = "void" }), true},
		{"a new subscription", with(func(s *Subscription) { s.ID = "sub_2" }), true},
	}
	for _, tt := range tests {
		got := ChangedSubscriptions([]Subscription{base}, []Subscription{tt.fresh})
		if (len(got) == 1) != tt.want {
			t.Errorf("%s: changed = %v, want %v", tt.name, len(got) == 1, tt.want)
		}
	}
}

func TestHadTrial(t *testing.T) {
	for _, tt := range []struct {
		subs []Subscription
		want bool
	}{
		{nil, false},
		{[]Subscription{{Status: StatusActive}}, false},
		{[]Subscription{{Status: StatusActive}, {Status: StatusTrialing}}, true},
		{[]Subscription{{Status: StatusCanceled, TrialEnd: recNow}}, true},
	} {
		if got := HadTrial(tt.subs); got != tt.want {
			t.Errorf("HadTrial(%+v) = %v, want %v", tt.subs, got, tt.want)
		}
	}
}

func TestCloneSubscriptions(t *testing.T) {
	if got := CloneSubscriptions([]Subscription{}); got != nil {
		t.Errorf("CloneSubscriptions(empty) = %#v, want nil", got)
	}
	zone := time.FixedZone("x", -5*3600)
	at := recNow.In(zone)
	in := []Subscription{{ID: "sub_1", PriceIDs: []string{"p"}, CurrentPeriodEnd: at, BillingCycleAnchor: at, TrialEnd: at,
		PastDueSince: at, CollectionResumesAt: at, SyncedAt: at, Created: at, EndedAt: at}}
	out := CloneSubscriptions(in)
	out[0].PriceIDs[0] = "changed"
	if in[0].PriceIDs[0] != "p" {
		t.Error("the clone shares PriceIDs")
	}
	s := out[0]
	for i, tm := range []time.Time{s.CurrentPeriodEnd, s.BillingCycleAnchor, s.TrialEnd, s.PastDueSince, s.CollectionResumesAt, s.SyncedAt, s.Created, s.EndedAt} {
		if tm.Location() != time.UTC || !tm.Equal(recNow) {
			t.Errorf("time %d: %v, want %v in UTC", i, tm, recNow)
		}
	}
	if z := CloneSubscriptions([]Subscription{{ID: "s"}})[0]; z.EndedAt != (time.Time{}) {
		t.Errorf("a zero time became %v", z.EndedAt)
	}
}

func TestWithComps(t *testing.T) {
	user := Subject{Kind: SubjectUser, ID: "user_1"}
	comp := Comp{ID: "comp_1", Subject: user, Plan: "pro"}
	ents := &Entitlements{Subject: user, CustomerID: "cus_1"}
	tests := []struct {
		name  string
		ents  *Entitlements
		comps []Comp
		want  *Entitlements
	}{
		{"neither", nil, nil, nil},
		{"no comps: as it was", ents, nil, ents},
		{"only comps: entitlements of their own", nil, []Comp{comp}, &Entitlements{Subject: user, Comps: []Comp{comp}}},
		{"both", &Entitlements{Subject: user, CustomerID: "cus_1"}, []Comp{comp}, &Entitlements{Subject: user, CustomerID: "cus_1", Comps: []Comp{comp}}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, WithComps(tt.ents, user, tt.comps)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestComp_CheckAndReplaces(t *testing.T) {
	user := Subject{Kind: SubjectUser, ID: "user_1"}
	ok := Comp{ID: "comp_1", Subject: user, Plan: "pro", ExpiresAt: recNow}
	with := func(f func(*Comp)) Comp { c := ok; f(&c); return c }
	tests := []struct {
		name    string
		c       Comp
		wantErr bool
		subject bool // the error wraps ErrInvalidSubject
	}{
		{"valid", ok, false, false},
		{"no id", with(func(c *Comp) { c.ID = "" }), true, false},
		{"a NUL in the id", with(func(c *Comp) { c.ID = "comp\x00x" }), true, false},
		{"no plan", with(func(c *Comp) { c.Plan = "" }), true, false},
		{"no expiry", with(func(c *Comp) { c.ExpiresAt = time.Time{} }), true, false},
		{"no subject", with(func(c *Comp) { c.Subject = Subject{} }), true, true},
		{"a subject of the wrong kind", with(func(c *Comp) { c.Subject = Subject{Kind: SubjectOrg, ID: "user_1"} }), true, true},
	}
	for _, tt := range tests {
		err := tt.c.Check()
		if (err != nil) != tt.wantErr || errors.Is(err, ErrInvalidSubject) != tt.subject {
			t.Errorf("%s: Check() = %v", tt.name, err)
		}
	}
	moved := with(func(c *Comp) { c.Subject = Subject{Kind: SubjectUser, ID: "user_2"} })
	if err := moved.Replaces(&ok); err == nil {
		t.Error("a comp moved to another subject replaces the stored one")
	}
	if replan := with(func(c *Comp) { c.Plan = "team" }); replan.Replaces(&ok) != nil {
		t.Errorf("a change of plan: %v", replan.Replaces(&ok))
	}
}

func TestCustomerState_Check(t *testing.T) {
	for _, tt := range []struct {
		st      CustomerState
		wantErr bool
	}{
		{CustomerState{CustomerID: "cus_1"}, false},
		{CustomerState{CustomerID: "cus_1", Subject: Subject{Kind: SubjectOrg, ID: "org_1"}}, false},
		{CustomerState{}, true},
		{CustomerState{CustomerID: "cus_1", Subject: Subject{Kind: SubjectUser, ID: "org_1"}}, true},
	} {
		if err := tt.st.Check(); (err != nil) != tt.wantErr {
			t.Errorf("%+v.Check() = %v", tt.st, err)
		}
	}
}

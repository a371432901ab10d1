package proxy

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestMonthlyAmount(t *testing.T) {
	for _, tc := range []struct {
		amount   int64
		interval string
		count    int64
		want     float64
		ok       bool
	}{
		{1200, "month", 1, 1200, true},
		{1200, "month", 0, 1200, true}, // a missing count is one
		{3000, "month", 3, 1000, true}, // quarterly
		{12000, "year", 1, 1000, true},
		{24000, "year", 2, 1000, true},
		{300, "week", 1, 1300, true}, // 52 weeks in 12 months
		{600, "week", 2, 1300, true}, // fortnightly
		{120, "day", 1, 3650, true},  // 365 days in 12 months
		{1200, "fortnight", 1, 0, false},
		{1200, "", 1, 0, false},
	} {
		got, ok := MonthlyAmount(tc.amount, tc.interval, tc.count)
		if ok != tc.ok || got != tc.want {
			t.Errorf("MonthlyAmount(%d, %q, %d) = %v, %v; want %v, %v", tc.amount, tc.interval, tc.count, got, ok, tc.want, tc.ok)
		}
	}
}

func TestTrialOutcome(t *testing.T) {
	trialEnd := time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		sub  Subscription
		want TrialOutcome
	}{
		{"no trial", Subscription{Status: StatusActive}, ""},
		{"in its trial", Subscription{Status: StatusTrialing, TrialEnd: trialEnd}, TrialRunning},
		{"paying after it", Subscription{Status: StatusActive, TrialEnd: trialEnd}, TrialConverted},
		{"retrying after it", Subscription{Status: StatusPastDue, TrialEnd: trialEnd}, TrialConverted},
		{"cancelled at the trial's end", Subscription{Status: StatusCanceled, TrialEnd: trialEnd, EndedAt: trialEnd}, TrialLost},
		{"cancelled during it", Subscription{Status: StatusCanceled, TrialEnd: trialEnd, EndedAt: trialEnd.Add(-time.Hour)}, TrialLost},
		{"cancelled months later", Subscription{Status: StatusCanceled, TrialEnd: trialEnd, EndedAt: trialEnd.AddDate(0, 3, 0)}, TrialConverted},
		{"first payment expired", Subscription{Status: StatusIncompleteExpired, TrialEnd: trialEnd}, TrialLost},
	} {
		if got := tc.sub.TrialOutcome(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFactKeyRoundTrip(t *testing.T) {
	for _, f := range []Fact{
		{Kind: FactStatus, Status: StatusActive, Plan: "pro"},
		{Kind: FactRevenue, Status: StatusPastDue, Plan: "", Currency: "eur", Interval: "year", IntervalCount: 2},
		{Kind: FactNew, Day: "2026-03-08", Plan: "team"},
		{Kind: FactTrialEnding, Day: "2026-03-08", Plan: "pro", Outcome: TrialLost},
	} {
		got, err := ParseFactKey(f.Key())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(f, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
	day := time.Date(2026, 3, 8, 15, 0, 0, 0, time.UTC)
	if k := (Fact{Kind: FactNew, Day: "2026-03-08"}).Key(); k < DatedKey(FactNew, day) || k >= DatedKey(FactNew, day.AddDate(0, 0, 1)) {
		t.Errorf("a day's key %q does not sort within its day", k)
	}
	if _, err := ParseFactKey("status\x00x"); err == nil {
		t.Error("a short key parsed")
	}
}

// sum adds the facts of subs, as a store keeps them.
func sum(subs ...Subscription) []Counter {
	byKey := map[string]*Counter{}
	var out []Counter
	for i := range subs {
		for _, c := range SubscriptionFacts(&subs[i]) {
			if p := byKey[c.Key()]; p != nil {
				p.Count += c.Count
				p.Amount += c.Amount
				continue
			}
			out = append(out, c)
			byKey[c.Key()] = &out[len(out)-1]
		}
	}
	// out may have moved while growing: rebuild from byKey's values.
	res := make([]Counter, 0, len(byKey))
	for _, c := range byKey {
		res = append(res, *c)
	}
	return res
}

func TestBuildDashboard(t *testing.T) {
	now := time.Date(2026, 4, 30, 12, 0, 0, 0, time.UTC)
	monthly := func(st SubscriptionStatus, plan string, amount int64, cur string) Subscription {
		return Subscription{Status: st, Plan: plan, Amount: amount, Currency: cur, Interval: "month", IntervalCount: 1,
			Created: now.AddDate(0, 0, -10)}
	}
	yearly := monthly(StatusActive, "pro", 12000, "usd")
	yearly.Interval = "year"
	weekly := monthly(StatusPastDue, "pro", 300, "usd")
	weekly.Interval, weekly.Created = "week", now.AddDate(0, 0, -40)
	trial := monthly(StatusTrialing, "pro", 1200, "usd")
	trial.TrialEnd = now.AddDate(0, 0, 5)
	converted := monthly(StatusActive, "team", 5000, "eur")
	converted.TrialEnd, converted.Created = now.AddDate(0, 0, -3), now.AddDate(0, 0, -10)
	lost := monthly(StatusCanceled, "pro", 1200, "usd")
	lost.TrialEnd, lost.EndedAt, lost.Created = now.AddDate(0, 0, -2), now.AddDate(0, 0, -2), now.AddDate(0, 0, -9)
	oldLoss := lost
	oldLoss.TrialEnd, oldLoss.EndedAt, oldLoss.Created = now.AddDate(-1, 0, 0), now.AddDate(-1, 0, 0), now.AddDate(-1, 0, -7)
	metered := Subscription{Status: StatusActive, Plan: "pro", Created: now}
	unknown := monthly(StatusActive, "", 999, "chf")
	unpaid := monthly(StatusUnpaid, "pro", 1200, "usd")
	comp := Subscription{Status: StatusActive, Plan: "pro", Comp: true}

	d := BuildDashboard(sum(monthly(StatusActive, "pro", 1200, "usd"), yearly, weekly, trial, converted, lost, oldLoss, metered, unknown, unpaid, comp), now)

	want := Dashboard{
		// 1200 + 12000/12 + 300*52/12 (1300), in dollars; 5000 in euros; 999 francs.
		MRR:      []Money{{"chf", 999}, {"eur", 5000}, {"usd", 3500}},
		TrialMRR: []Money{{"usd", 1200}},
		Active:   5, Trialing: 1, PastDue: 1, Canceled: 2, Other: 1, Unpriced: 1,
		Plans: []PlanBreakdown{
			{Plan: "pro", Active: 3, Trialing: 1, PastDue: 1, Canceled: 2, Other: 1, MRR: []Money{{"usd", 3500}}, TrialMRR: []Money{{"usd", 1200}}},
			{Plan: "team", Active: 1, MRR: []Money{{"eur", 5000}}, TrialMRR: []Money{}},
			{Plan: "", Active: 1, MRR: []Money{{"chf", 999}}, TrialMRR: []Money{}},
		},
		Trials: TrialStats{Running: 1, Converted: 1, Lost: 2, Days: DashboardDays, RecentConverted: 1, RecentLost: 1},
	}
	if diff := cmp.Diff(want, d, cmpopts.IgnoreFields(Dashboard{}, "Days"), cmpopts.IgnoreUnexported(PlanBreakdown{}), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("dashboard (-want +got):\n%s", diff)
	}
	if len(d.Days) != DashboardDays || !d.Days[len(d.Days)-1].Day.Equal(time.Date(2026, 4, 30, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("days: %d ending %v, want %d ending today", len(d.Days), d.Days[len(d.Days)-1].Day, DashboardDays)
	}
	// Six began ten days ago (the unpaid one too) and the lost trial nine;
	// the metered one today, the weekly one 40 days ago, the old loss a
	// year ago (outside the window).
	for _, tc := range []struct {
		window             int
		added, cancelledIn int64
	}{{1, 1, 0}, {30, 8, 1}, {90, 9, 1}} {
		added, cancelled := d.Window(tc.window)
		if added != tc.added || cancelled != tc.cancelledIn {
			t.Errorf("last %d days: %d new, %d cancelled; want %d, %d", tc.window, added, cancelled, tc.added, tc.cancelledIn)
		}
	}
	if pct, ok := d.Trials.Rate(); !ok || int(pct) != 33 {
		t.Errorf("trial conversion %v %v, want 33%%", pct, ok)
	}
	if pct, ok := d.Trials.RecentRate(); !ok || pct != 50 {
		t.Errorf("recent trial conversion %v %v, want 50%%", pct, ok)
	}
	if _, ok := BuildDashboard(nil, now).Trials.Rate(); ok {
		t.Error("a conversion rate without trials")
	}
}

// Adding a subscription's facts and taking them away again leaves the
// counters as they were: what a store relies on.
func TestSubscriptionFacts_ComeAndGo(t *testing.T) {
	s := Subscription{Status: StatusCanceled, Plan: "pro", Amount: 1200, Currency: "USD", Interval: "month",
		Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), EndedAt: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
		TrialEnd: time.Date(2026, 1, 8, 0, 0, 0, 0, time.UTC)}
	facts := SubscriptionFacts(&s)
	kinds := map[FactKind]bool{}
	for _, f := range facts {
		kinds[f.Kind] = true
		if f.Kind == FactRevenue && f.Currency != "usd" {
			t.Errorf("currency %q, want lower case", f.Currency)
		}
	}
	for _, k := range []FactKind{FactStatus, FactRevenue, FactNew, FactCanceled, FactTrial, FactTrialEnding} {
		if !kinds[k] {
			t.Errorf("no %s fact for a converted, cancelled, priced subscription", k)
		}
	}
	if got := SubscriptionFacts(&Subscription{Status: StatusIncompleteExpired, Created: s.Created}); len(got) != 1 {
		t.Errorf("a subscription that never began: %d facts, want only its status", len(got))
	}
}

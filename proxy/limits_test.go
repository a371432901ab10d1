package proxy

import (
	"testing"
	"time"
)

func TestQuotaWindow(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name        string
		period      QuotaPeriod
		anchor, now string
		start, end  string
	}{
		{"hour", PeriodHour, "", "2025-03-10T14:59:59Z", "2025-03-10T14:00:00Z", "2025-03-10T15:00:00Z"},
		{"day is UTC", PeriodDay, "", "2025-03-10T23:30:00-02:00", "2025-03-11T00:00:00Z", "2025-03-12T00:00:00Z"},
		{"calendar month", PeriodMonth, "", "2025-02-28T23:59:59Z", "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z"},
		{"anchored month", PeriodMonth, "2024-11-15T09:30:00Z", "2025-03-20T00:00:00Z", "2025-03-15T09:30:00Z", "2025-04-15T09:30:00Z"},
		{"anchored, before the anchor's day", PeriodMonth, "2024-11-15T09:30:00Z", "2025-03-15T09:29:59Z", "2025-02-15T09:30:00Z", "2025-03-15T09:30:00Z"},
		{"anchored, at the anchor", PeriodMonth, "2024-11-15T09:30:00Z", "2025-03-15T09:30:00Z", "2025-03-15T09:30:00Z", "2025-04-15T09:30:00Z"},
		// Stripe bills an anchor on the 31st on the last day of shorter months.
		{"31st in February", PeriodMonth, "2025-01-31T12:00:00Z", "2025-03-01T00:00:00Z", "2025-02-28T12:00:00Z", "2025-03-31T12:00:00Z"},
		{"31st in a leap February", PeriodMonth, "2024-01-31T12:00:00Z", "2024-02-29T13:00:00Z", "2024-02-29T12:00:00Z", "2024-03-31T12:00:00Z"},
		{"31st in April", PeriodMonth, "2025-01-31T12:00:00Z", "2025-04-30T12:00:00Z", "2025-04-30T12:00:00Z", "2025-05-31T12:00:00Z"},
		// A yearly plan's anchor: the monthly quota resets on its day each month.
		{"yearly anchor", PeriodMonth, "2023-06-05T00:00:00Z", "2025-01-04T00:00:00Z", "2024-12-05T00:00:00Z", "2025-01-05T00:00:00Z"},
		{"anchor in the future", PeriodMonth, "2026-06-05T00:00:00Z", "2025-01-04T00:00:00Z", "2024-12-05T00:00:00Z", "2025-01-05T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var anchor time.Time
			if tt.anchor != "" {
				anchor = at(tt.anchor)
			}
			start, end := QuotaWindow(tt.period, anchor, at(tt.now))
			if !start.Equal(at(tt.start)) || !end.Equal(at(tt.end)) {
				t.Errorf("QuotaWindow = %v – %v, want %s – %s", start, end, tt.start, tt.end)
			}
		})
	}
}

// GCRA lets exactly burst through at once, then one per interval.
func TestGCRA(t *testing.T) {
	const burst = 3
	interval := 100 * time.Millisecond
	now := int64(1_000_000_000_000)
	var tat int64
	for i := range burst {
		g := GCRA(tat, now, interval, burst)
		if !g.Allowed || g.Remain != burst-1-i {
			t.Fatalf("request %d at once: %+v, want allowed with %d remaining", i, g, burst-1-i)
		}
		tat = g.TAT
	}
	g := GCRA(tat, now, interval, burst)
	if g.Allowed || g.Retry != interval {
		t.Fatalf("request past the burst: %+v, want refused, retry in %v", g, interval)
	}
	g = GCRA(tat, now+int64(interval), interval, burst)
	if !g.Allowed || g.Remain != 0 {
		t.Fatalf("one interval later: %+v, want allowed with none remaining", g)
	}
	if g := GCRA(g.TAT, now+int64(10*interval), interval, burst); !g.Allowed || g.Remain != burst-1 {
		t.Fatalf("after a long pause: %+v, want the whole burst back", g)
	}
}

// A wall clock that steps back must not lock a subject out for the step's
// length: the kept tat is capped at now + the burst's duration, so the
// wait is at most one interval (red team, issue 18).
func TestGCRAClockStepBack(t *testing.T) {
	const burst = 3
	interval := 100 * time.Millisecond
	now := int64(1_000_000_000_000)
	var tat int64
	for range burst {
		tat = GCRA(tat, now, interval, burst).TAT
	}
	for _, step := range []time.Duration{time.Second, 10 * time.Minute, 24 * time.Hour} {
		back := now - int64(step)
		g := GCRA(tat, back, interval, burst)
		if g.Allowed || g.Retry != interval || g.Reset > time.Duration(burst)*interval {
			t.Errorf("step back %v, at once: %+v, want refused, retry in %v, reset within %v", step, g, interval, time.Duration(burst)*interval)
		}
		// The refusal's TAT is what the limiter keeps.
		if g := GCRA(g.TAT, back+int64(interval), interval, burst); !g.Allowed {
			t.Errorf("step back %v, one interval later: %+v, want allowed", step, g)
		}
	}
}

func TestLimitFor(t *testing.T) {
	p := Plan{Limits: []LimitEntry{{Route: "*", Limit: Limit{Rate: 1}}, {Route: "258AVO", Limit: Limit{Rate: 2}}}}
	for route, want := range map[string]string{"258AVO": "258AVO", "258avo": "258AVO", "415VNA": "*", "": "*"} {
		if e := p.LimitFor(route); e == nil || e.Route != want {
			t.Errorf("LimitFor(%q) = %+v, want %q", route, e, want)
		}
	}
	if e := (&Plan{Limits: []LimitEntry{{Route: "258AVO"}}}).LimitFor("415VNA"); e != nil {
		t.Errorf("no entry and no \"*\": got %+v", e)
	}
	if n := testing.AllocsPerRun(100, func() { p.LimitFor("415VNA") }); n != 0 {
		t.Errorf("LimitFor allocates %v times", n)
	}
}

// free: stands in for a signed-in visitor no plan grants, on its routes.
func TestDecidePaid_Free(t *testing.T) {
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	plans := []Plan{{Key: "pro", Scope: SubjectUser, Prices: []string{"price_pro"}, Routes: []string{"258AVO", "415VNA"}}}
	free := &Plan{Key: FreePlanKey, Name: "Free", Routes: []string{"258AVO"}}
	id := &Identity{UserID: "user_1"}
	lapsed := &Entitlements{Subject: Subject{Kind: SubjectUser, ID: "user_1"}, Subscriptions: []Subscription{{ID: "sub_1", Plan: "pro", Status: StatusCanceled}}}
	active := &Entitlements{Subject: Subject{Kind: SubjectUser, ID: "user_1"}, Subscriptions: []Subscription{{ID: "sub_1", Plan: "pro", Status: StatusActive}}}
	tests := []struct {
		name     string
		route    string
		user     *Entitlements
		want     PaidOutcome
		wantPlan string
	}{
		{"no plan, free route", "258AVO", nil, PaidAllow, "free"},
		{"lapsed plan, free route", "258AVO", lapsed, PaidAllow, "free"},
		{"no plan, route free does not list", "415VNA", nil, PaidRequired, ""},
		{"active plan wins", "258AVO", active, PaidAllow, "pro"},
		{"route without an ID is never free", "", nil, PaidRequired, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecidePaid(PaidInput{RouteID: tt.route, Plans: plans, Identity: id, User: tt.user, Now: now, Free: free})
			got := ""
			if d.Plan != nil {
				got = d.Plan.Key
			}
			if d.Outcome != tt.want || got != tt.wantPlan {
				t.Errorf("DecidePaid = %s on %q, want %s on %q", d.Outcome, got, tt.want, tt.wantPlan)
			}
			if d.Outcome == PaidAllow && LimitSubject(&d, id) != (Subject{Kind: SubjectUser, ID: "user_1"}) {
				t.Errorf("subject %v, want the user", LimitSubject(&d, id))
			}
		})
	}
}

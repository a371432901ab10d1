package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

type fakeOutbox struct {
	stats   proxy.OutboxStats
	flagged []proxy.OutboxEntry
}

func (f *fakeOutbox) OutboxStats(context.Context) (proxy.OutboxStats, error) { return f.stats, nil }
func (f *fakeOutbox) FlaggedUsage(context.Context, int) ([]proxy.OutboxEntry, error) {
	return f.flagged, nil
}

// fakeUsage answers one subject's usage of one meter since a time.
type fakeUsage struct {
	subject proxy.Subject
	event   string
	since   time.Time
	n       int64
}

func (f *fakeUsage) MeteredUsage(_ context.Context, s proxy.Subject, event string, since time.Time) (int64, error) {
	if s != f.subject || event != f.event || !since.Equal(f.since) {
		return 0, nil
	}
	return f.n, nil
}

type monthlyPrices struct{}

func (monthlyPrices) Price(id string) (proxy.Price, bool) {
	return proxy.Price{ID: id, Amount: 500, Currency: "usd", Interval: "month", IntervalCount: 1}, true
}

// The dashboard shows the usage outbox once a plan is metered: its
// backlog, its oldest row's age and the rows flagged for an admin.
func TestAdminConsole_Outbox(t *testing.T) {
	fx, _, _ := adminFixture(t)
	if b := body(t, fx.do("GET", "/.tollgate/admin", asAdmin)); strings.Contains(b, `data-testid="outbox"`) {
		t.Error("an outbox panel without an outbox")
	}
	ob := &fakeOutbox{}
	fx.srv.outbox = ob
	if b := body(t, fx.do("GET", "/.tollgate/admin", asAdmin)); strings.Contains(b, `data-testid="outbox"`) {
		t.Error("an outbox panel with no metered plan and an empty outbox")
	}
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	ob.stats = proxy.OutboxStats{Pending: 7, Flagged: 1, Sent: 40, Oldest: fx.now.Add(-90 * time.Second)}
	ob.flagged = []proxy.OutboxEntry{{Row: proxy.UsageRow{Seq: 12, Subject: ada, EventName: "api_requests", Value: 3, At: fx.now},
		State: proxy.OutboxState{Status: proxy.OutboxFlagged, Note: "400 invalid_request_error: No such customer"}}}
	resp := fx.do("GET", "/.tollgate/admin", asAdmin)
	b := body(t, resp)
	for _, want := range []string{`data-testid="outbox-pending">7<`, "the oldest 1m30s old", `data-testid="outbox-flagged">1<`,
		"<td>12</td><td>user_ada</td><td>api_requests</td><td>3</td>", "No such customer"} {
		if !strings.Contains(b, want) {
			t.Errorf("the dashboard lacks %q", want)
		}
	}
}

// The account page shows a metered plan's usage since its period began.
func TestAccountPage_MeteredUsage(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.srv.cfg.Plans[0].Meter = &proxy.PlanMeter{EventName: "api_requests", Price: "price_usage"}
	fx.srv.prices = monthlyPrices{}
	user := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}
	end := fx.now.Add(10 * 24 * time.Hour).Truncate(time.Second)
	fx.ents[user] = &proxy.Entitlements{Subject: user, Subscriptions: []proxy.Subscription{{ID: "sub_1", Plan: fx.srv.cfg.Plans[0].Key,
		Status: proxy.StatusActive, PriceIDs: []string{"price_pro"}, CurrentPeriodEnd: end}}}
	page := body(t, fx.do("GET", "/.tollgate/account", with(navigation, "X-Test-User", "user_1")))
	if strings.Contains(page, `data-testid="usage"`) {
		t.Errorf("usage shown without a usage source:\n%s", page)
	}
	fx.srv.usage = &fakeUsage{subject: user, event: "api_requests", since: end.AddDate(0, -1, 0), n: 1234}
	page = body(t, fx.do("GET", "/.tollgate/account", with(navigation, "X-Test-User", "user_1")))
	want := "Usage this period: <strong>1234</strong> api_requests since " + end.AddDate(0, -1, 0).Format("2 January 2006")
	if !strings.Contains(page, want) {
		t.Errorf("the account page lacks %q:\n%s", want, page)
	}
}

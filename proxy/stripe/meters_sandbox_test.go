package stripe

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
	stripesandbox "github.com/tollgate/tollgate/proxy/sandbox/stripe"
)

// loseAnswers forwards every request and then, for the first n meter
// events, loses Stripe's answer: the event was accepted, the sender cannot
// know it.
type loseAnswers struct {
	mu sync.Mutex
	n  int
}

func (l *loseAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || r.Method != http.MethodPost || r.URL.Path != "/v1/billing/meter_events" {
		return resp, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == 0 {
		return resp, nil
	}
	l.n--
	resp.Body.Close()
	return nil, errors.New("connection reset by peer")
}

// Against the sandbox, which counts what Stripe would: an answer lost
// after Stripe accepted the event (through stripe-go's own retries, each
// replayed under its Idempotency-Key) leaves the row pending; the next
// pass meets the identifier Stripe holds and settles the row. Every row is
// counted once.
func TestMeterSender_SandboxCountsEachRowOnce(t *testing.T) {
	clock := &testClock{t: time.Now().Truncate(time.Second)}
	sb := stripesandbox.New(stripesandbox.Options{Now: clock.Now,
		Meters: []stripesandbox.Meter{{ID: "mtr_api", EventName: "api_requests"}},
		Prices: []stripesandbox.Price{{ID: "price_usage", Product: "API", UnitAmount: 1, Interval: "month", Meter: "mtr_api"}}})
	t.Cleanup(func() { _ = sb.Close() })
	acct := newAccount(t, sb)
	cus, err := acct.api.Customers.New(&stripe.CustomerParams{Email: stripe.String("ada@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	lose := &loseAnswers{n: 3} // the first attempt and stripe-go's two retries
	b, err := newBilling(Config{SecretKey: sb.SecretKey(), APIURL: srv.URL, PublicURL: mustURL("https://app.example.test"),
		Now: clock.Now, HTTPClient: &http.Client{Transport: lose}})
	if err != nil {
		t.Fatal(err)
	}
	out := &memOutbox{}
	m := b.MeterSender(MeterConfig{Store: out})
	m.sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	subject := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	for i, n := range []int64{3, 4, 5} {
		at := clock.Now().Add(time.Duration(i) * time.Second)
		out.add(proxy.UsageRow{Subject: subject, Customer: cus.ID, EventName: "api_requests", Window: at, At: at, Value: n})
	}
	wait, err := m.Pass(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st := out.state(1); st.Status != proxy.OutboxPending || wait <= 0 {
		t.Fatalf("after a lost answer: %+v, wait %v; want pending, backing off", st, wait)
	}
	clock.Advance(wait)
	for range 3 {
		if _, err := m.Pass(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if st := out.state(seq); st.Status != proxy.OutboxSent {
			t.Errorf("row %d: %+v; want sent", seq, st)
		}
	}
	if st := out.state(1); st.Note != "duplicate" {
		t.Errorf("row 1 settled by %q; want the duplicate identifier", st.Note)
	}
	var total int64
	for _, ev := range sb.MeterEvents() {
		if ev.Dropped != "" {
			t.Errorf("event %s dropped: %s", ev.Identifier, ev.Dropped)
		}
		total += ev.Value
	}
	if n := len(sb.MeterEvents()); n != 3 || total != 12 {
		t.Errorf("the sandbox counted %d events, %d units; want 3 and 12: each row once", n, total)
	}
}

// check -online (CheckKey) holds meter.price to be metered and backed by
// an active meter of the plan's event_name, and no other price to be
// metered.
func TestCheckKey_MeteredPrices(t *testing.T) {
	sb := stripesandbox.New(stripesandbox.Options{
		Meters: []stripesandbox.Meter{{ID: "mtr_api", EventName: "api_requests"}},
		Prices: []stripesandbox.Price{
			{ID: "price_base", Product: "API", UnitAmount: 500, Interval: "month"},
			{ID: "price_usage", Product: "API usage", UnitAmount: 1, Interval: "month", Meter: "mtr_api"},
		}})
	t.Cleanup(func() { _ = sb.Close() })
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	plan := func(prices []string, event, price string) []proxy.Plan {
		return []proxy.Plan{{Key: "api", Name: "API", Prices: prices, Routes: []string{"*"}, Scope: proxy.SubjectUser,
			Meter: &proxy.PlanMeter{EventName: event, Price: price}}}
	}
	tests := []struct {
		name  string
		plans []proxy.Plan
		want  string // "" passes
	}{
		{"base fee plus usage", plan([]string{"price_base"}, "api_requests", "price_usage"), ""},
		{"pay as you go", plan([]string{"price_usage"}, "api_requests", "price_usage"), ""},
		{"another meter's event name", plan([]string{"price_base"}, "tokens", "price_usage"), `whose event_name is "api_requests"`},
		{"meter.price not metered", plan(nil, "api_requests", "price_base"), "is meter.price but not metered"},
		{"a metered base price", []proxy.Plan{{Key: "api", Name: "API", Prices: []string{"price_usage"}, Routes: []string{"*"}}}, "price_usage is metered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckKey(t.Context(), Config{SecretKey: sb.SecretKey(), APIURL: srv.URL, PublicURL: mustURL("https://app.example.test"), Plans: tt.plans})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckKey: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("CheckKey: %v; want %q", err, tt.want)
			}
		})
	}
}

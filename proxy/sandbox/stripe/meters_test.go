package stripesandbox

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stripe/stripe-go/v76"
)

type wallClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *wallClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *wallClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func meterOptions(clk *wallClock) Options {
	return Options{
		Now:    clk.now,
		Meters: []Meter{{ID: "mtr_api", EventName: "api_requests", DisplayName: "API requests"}},
		Prices: []Price{
			{ID: "price_base", Product: "API", UnitAmount: 500, Interval: "month"},
			{ID: "price_usage", Product: "API usage", UnitAmount: 2, Interval: "month", Meter: "mtr_api"},
		},
	}
}

func eventParams(customer, id string, value string, at time.Time) *stripe.BillingMeterEventParams {
	return &stripe.BillingMeterEventParams{
		EventName:  stripe.String("api_requests"),
		Identifier: stripe.String(id),
		Payload:    map[string]string{"stripe_customer_id": customer, "value": value},
		Timestamp:  stripe.Int64(at.Unix()),
	}
}

// The sandbox refuses an identifier it has seen, as Stripe does: 400
// invalid_request_error, "An event already exists with identifier …",
// Stripe-Should-Retry: false; the first event alone is counted. After a
// day the identifier is taken as new, and counted again: what Stripe may
// do, so a caller must not send blindly after a day.
func TestMeterEvents_RefusesASeenIdentifier(t *testing.T) {
	clk := &wallClock{t: time.Now().Truncate(time.Minute)}
	f := newSBFixture(t, meterOptions(clk))
	cus := f.customer(t, "ada@example.com", "user_ada")
	at := clk.now().Add(-time.Minute)
	if _, err := f.sc.BillingMeterEvents.New(eventParams(cus.ID, "id-1", "3", at)); err != nil {
		t.Fatalf("first event: %v", err)
	}
	_, err := f.sc.BillingMeterEvents.New(eventParams(cus.ID, "id-1", "3", at))
	se := asStripeError(t, err)
	if se.HTTPStatusCode != http.StatusBadRequest || se.Type != stripe.ErrorTypeInvalidRequest ||
		se.Msg != "An event already exists with identifier id-1." {
		t.Errorf("second event: %d %s %q", se.HTTPStatusCode, se.Type, se.Msg)
	}
	// stripe-go does not keep the header on its error: ask directly.
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/v1/billing/meter_events",
		strings.NewReader("event_name=api_requests&identifier=id-1&payload[stripe_customer_id]="+cus.ID+"&payload[value]=3"))
	req.Header.Set("Authorization", "Bearer "+f.s.SecretKey())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 400 || res.Header.Get("Stripe-Should-Retry") != "false" {
		t.Errorf("raw duplicate: %d, Stripe-Should-Retry %q", res.StatusCode, res.Header.Get("Stripe-Should-Retry"))
	}
	sum := func() float64 {
		t.Helper()
		p := &stripe.BillingMeterEventSummaryListParams{ID: stripe.String("mtr_api"), Customer: stripe.String(cus.ID),
			StartTime: stripe.Int64(at.Add(-time.Hour).Unix()), EndTime: stripe.Int64(at.Add(time.Hour).Unix())}
		it := f.sc.BillingMeterEventSummaries.List(p)
		var n float64
		for it.Next() {
			n += it.BillingMeterEventSummary().AggregatedValue
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := sum(); got != 3 {
		t.Errorf("summary %v; want 3: a refused duplicate is not counted", got)
	}
	clk.add(24 * time.Hour)
	if _, err := f.sc.BillingMeterEvents.New(eventParams(cus.ID, "id-1", "3", clk.now())); err != nil {
		t.Fatalf("a day later: %v", err)
	}
	p := &stripe.BillingMeterEventSummaryListParams{ID: stripe.String("mtr_api"), Customer: stripe.String(cus.ID),
		StartTime: stripe.Int64(at.Add(-time.Hour).Unix()), EndTime: stripe.Int64(clk.now().Add(time.Minute).Unix())}
	it := f.sc.BillingMeterEventSummaries.List(p)
	var n float64
	for it.Next() {
		n += it.BillingMeterEventSummary().AggregatedValue
	}
	if n != 6 {
		t.Errorf("summary after a day %v; want 6: the identifier was taken as new", n)
	}
}

// What Stripe refuses at once, and what it accepts and drops while
// processing (an unknown customer, an event name no meter has).
func TestMeterEvents_Validation(t *testing.T) {
	clk := &wallClock{t: time.Now().Truncate(time.Minute)}
	f := newSBFixture(t, meterOptions(clk))
	cus := f.customer(t, "ada@example.com", "user_ada")
	now := clk.now()
	refused := []struct {
		name  string
		p     *stripe.BillingMeterEventParams
		param string
	}{
		{"no event name", &stripe.BillingMeterEventParams{Payload: map[string]string{"value": "1"}}, "event_name"},
		{"no payload", &stripe.BillingMeterEventParams{EventName: stripe.String("api_requests")}, "payload"},
		{"identifier too long", eventParams(cus.ID, strings.Repeat("x", 101), "1", now), "identifier"},
		{"36 days old", eventParams(cus.ID, "old", "1", now.Add(-36*24*time.Hour)), "timestamp"},
		{"6 minutes ahead", eventParams(cus.ID, "ahead", "1", now.Add(6*time.Minute)), "timestamp"},
	}
	for _, tt := range refused {
		_, err := f.sc.BillingMeterEvents.New(tt.p)
		if se := asStripeError(t, err); se.HTTPStatusCode != 400 || se.Param != tt.param {
			t.Errorf("%s: %d param %q; want 400 on %s", tt.name, se.HTTPStatusCode, se.Param, tt.param)
		}
	}
	for _, p := range []*stripe.BillingMeterEventParams{
		eventParams("cus_nobody", "a", "1", now),
		eventParams(cus.ID, "b", "1.5", now),
		{EventName: stripe.String("no_meter"), Identifier: stripe.String("c"), Payload: map[string]string{"stripe_customer_id": cus.ID, "value": "1"}},
		eventParams(cus.ID, "d", "4", now),
	} {
		if _, err := f.sc.BillingMeterEvents.New(p); err != nil {
			t.Errorf("event %s: %v; Stripe accepts it and decides while processing", *p.Identifier, err)
		}
	}
	var got []string
	for _, ev := range f.s.MeterEvents() {
		got = append(got, ev.Identifier+": "+ev.Dropped)
	}
	want := []string{"a: no such customer", "b: value missing or not a whole number", "c: no active meter with this event_name", "d: "}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// Meters: made, listed and read; an event name belongs to one active
// meter; the required parameters are required.
func TestMeters(t *testing.T) {
	clk := &wallClock{t: time.Now().Truncate(time.Minute)}
	f := newSBFixture(t, meterOptions(clk))
	p := &stripe.BillingMeterParams{DisplayName: stripe.String("Tokens"), EventName: stripe.String("tokens"),
		DefaultAggregation: &stripe.BillingMeterDefaultAggregationParams{Formula: stripe.String("sum")}}
	m, err := f.sc.BillingMeters.New(p)
	if err != nil || !strings.HasPrefix(m.ID, "mtr_") || m.EventName != "tokens" || m.Status != stripe.BillingMeterStatusActive ||
		m.CustomerMapping.EventPayloadKey != "stripe_customer_id" || m.ValueSettings.EventPayloadKey != "value" {
		t.Fatalf("New: %v %+v", err, m)
	}
	if _, err := f.sc.BillingMeters.New(p); asStripeError(t, err).Param != "event_name" {
		t.Errorf("a second meter of the same event name: %v", err)
	}
	if _, err := f.sc.BillingMeters.New(&stripe.BillingMeterParams{EventName: stripe.String("x"), DisplayName: stripe.String("x")}); asStripeError(t, err).Param != "default_aggregation[formula]" {
		t.Errorf("no formula: %v", err)
	}
	it := f.sc.BillingMeters.List(&stripe.BillingMeterListParams{Status: stripe.String("active")})
	var names []string
	for it.Next() {
		names = append(names, it.BillingMeter().EventName)
	}
	if diff := cmp.Diff([]string{"tokens", "api_requests"}, names); it.Err() != nil || diff != "" {
		t.Errorf("list: %v (-want +got):\n%s", it.Err(), diff)
	}
	got, err := f.sc.BillingMeters.Get("mtr_api", nil)
	if err != nil || got.EventName != "api_requests" {
		t.Errorf("Get: %v %+v", err, got)
	}
	pr, err := f.sc.Prices.Get("price_usage", nil)
	if err != nil || pr.Recurring == nil || pr.Recurring.UsageType != stripe.PriceRecurringUsageTypeMetered || pr.Recurring.Meter != "mtr_api" {
		t.Errorf("metered price: %v %+v", err, pr.Recurring)
	}
}

// Checkout refuses a quantity on a metered line item and takes one
// without; the renewal bills the usage the meter counted, in arrears.
func TestMeteredCheckoutAndInvoice(t *testing.T) {
	clk := &wallClock{t: time.Now().Truncate(time.Minute)}
	f := newSBFixture(t, meterOptions(clk))
	cus := f.customer(t, "ada@example.com", "user_ada")
	p := checkoutParams(cus.ID, "price_base", 0, "")
	p.LineItems = append(p.LineItems, &stripe.CheckoutSessionLineItemParams{Price: stripe.String("price_usage"), Quantity: stripe.Int64(1)})
	if _, err := f.sc.CheckoutSessions.New(p); asStripeError(t, err).Param != "line_items[1][quantity]" {
		t.Fatalf("a quantity on a metered line item: %v", err)
	}
	p.LineItems[1].Quantity = nil
	cs := f.checkout(t, p)
	f.pay(t, cs)
	gp := &stripe.CheckoutSessionParams{}
	gp.AddExpand("subscription")
	got, err := f.sc.CheckoutSessions.Get(cs.ID, gp)
	if err != nil {
		t.Fatal(err)
	}
	sub := got.Subscription
	inv, err := f.sc.Invoices.Get(sub.LatestInvoice.ID, nil)
	if err != nil || inv.AmountPaid != 500 {
		t.Fatalf("first invoice: %v paid %d; want the base fee alone, 500", err, inv.AmountPaid)
	}
	for i, n := range []string{"10", "5"} {
		if _, err := f.sc.BillingMeterEvents.New(eventParams(cus.ID, "u"+n, n, clk.now().Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	f.s.Advance(time.Unix(sub.CurrentPeriodEnd, 0).Sub(f.s.BillingNow()) + time.Minute)
	renewed := f.sub(t, sub.ID)
	inv, err = f.sc.Invoices.Get(renewed.LatestInvoice.ID, nil)
	if err != nil || inv.AmountPaid != 500+15*2 {
		t.Errorf("renewal: %v paid %d; want 500 + 15 units at 2 = 530", err, inv.AmountPaid)
	}
}

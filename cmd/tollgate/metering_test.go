package main

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// outboxMetric reads one series from the demo's admin /metrics (-1: absent).
func outboxMetric(t *testing.T, d *demo, series string) float64 {
	t.Helper()
	resp, err := http.Get(d.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(readBody(t, resp))
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestDemo_MeteringThroughStripeFailures (README "Usage billing"): Ada
// pays as she goes and calls the tide API; the flush that closes the meter
// window writes the usage rows, and Stripe answers the meter events with
// 500s, then 429s (each more than stripe-go's own retries). The sender
// backs off (the retries counted, the row pending, its lag in the metrics
// and growing with the clock), then drains the outbox: Stripe holds
// exactly the calls' cost, once, and the lag is back to 0.
func TestDemo_MeteringThroughStripeFailures(t *testing.T) {
	d, clk := mustRunDemo(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	subscribePlan(t, d, c, "payg", "/")
	ctx := context.Background()

	// 12 calls, one of them costing 5 (the demo app's ?cost=): 16 units.
	for i := range 12 {
		u := d.URL + "/routes/TIDES/"
		if i == 3 {
			u += "?cost=5"
		}
		if resp := get(t, c, u, api); resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d: %d", i, resp.StatusCode)
		}
	}
	// The account page shows the usage before any row is written.
	if acct := readBody(t, get(t, c, d.URL+"/.tollgate/account", page)); !strings.Contains(acct, "16") {
		t.Errorf("account page does not show the 16 units used so far:\n%s", acct)
	}

	const events = "POST /v1/billing/meter_events"
	d.Stripe.InjectAPIStatus(events, 3, http.StatusServiceUnavailable) // one pass: stripe-go tries 3 times
	clk.Advance(6 * time.Second)                                       // the 5 s meter window has ended
	if err := d.gateway.Limiter.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.gateway.Meters.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if n := outboxMetric(t, d, `tollgate_usage_outbox{what="pending"}`); n < 1 {
		t.Fatalf("after a 503 pass: %v rows pending, want ≥ 1", n)
	}
	clk.Advance(30 * time.Second) // Stripe still failing: the lag grows
	d.Stripe.InjectAPIStatus(events, 3, http.StatusTooManyRequests)
	if _, err := d.gateway.Meters.Pass(ctx); err != nil { // still in its backoff, or a 429 pass
		t.Fatal(err)
	}
	if lag := outboxMetric(t, d, `tollgate_usage_outbox{what="oldest_seconds"}`); lag < 30 {
		t.Errorf("the metering lag while Stripe fails: %vs, want ≥ 30", lag)
	}
	// Time passes beyond every backoff; the sender drains the outbox.
	for range 10 {
		if outboxMetric(t, d, `tollgate_usage_outbox{what="pending"}`) == 0 {
			break
		}
		clk.Advance(10 * time.Minute) // past the longest backoff (5 min)
		if _, err := d.gateway.Meters.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := outboxMetric(t, d, `tollgate_usage_outbox{what="pending"}`); n != 0 {
		t.Fatalf("%v rows still pending", n)
	}
	if lag := outboxMetric(t, d, `tollgate_usage_outbox{what="oldest_seconds"}`); lag != 0 {
		t.Errorf("lag after draining: %vs, want 0", lag)
	}
	if r := outboxMetric(t, d, `tollgate_meter_events_total{result="retry"}`); r < 2 {
		t.Errorf("retries counted: %v, want ≥ 2 (the 503 and the 429 passes)", r)
	}
	if calls := d.Stripe.APICalls()[events]; calls < 7 {
		t.Errorf("%d meter event requests, want ≥ 7 (3 failed 503, 3 failed 429, then accepted)", calls)
	}
	var total int64
	ids := map[string]bool{}
	for _, ev := range d.Stripe.MeterEvents() {
		if ev.Dropped != "" || ids[ev.Identifier] {
			t.Errorf("event %s: dropped %q or accepted twice", ev.Identifier, ev.Dropped)
		}
		ids[ev.Identifier] = true
		total += ev.Value
	}
	if total != 16 {
		t.Errorf("Stripe recorded %d units, want exactly 16", total)
	}
}

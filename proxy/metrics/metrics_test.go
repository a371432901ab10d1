package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/stripe"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestSeriesMoveAsEventsHappen(t *testing.T) {
	m := New()
	m.Decision("allow", "routes[2]", "paid", 3*time.Millisecond)
	m.Decision("payment_required", "routes[2]", "paid", time.Millisecond)
	m.CacheLookup(true)
	m.CacheLookup(false)
	m.Upstream(200, 20*time.Millisecond)
	m.StripeCall("GET /v1/customers/{id}", nil)
	m.StripeCall("GET /v1/customers/{id}", errors.New("boom"))
	m.WebhookEvent("stripe", "customer.subscription.updated", "processed", 2*time.Second)
	out := scrape(t, m)
	for _, want := range []string{
		`tollgate_decisions_total{access="paid",decision="allow",rule="routes[2]"} 1`,
		`tollgate_decisions_total{access="paid",decision="payment_required",rule="routes[2]"} 1`,
		`tollgate_entitlement_cache_total{result="hit"} 1`,
		`tollgate_entitlement_cache_total{result="miss"} 1`,
		`tollgate_upstream_response_seconds_count{code="2xx"} 1`,
		`tollgate_stripe_calls_total{endpoint="GET /v1/customers/{id}"} 2`,
		`tollgate_stripe_errors_total{endpoint="GET /v1/customers/{id}"} 1`,
		`tollgate_webhook_events_total{result="processed",source="stripe",type="customer.subscription.updated"} 1`,
		`tollgate_webhook_lag_seconds_count{source="stripe"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

func TestStripeTransportLabelsEndpointsWithoutIDs(t *testing.T) {
	m := New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "missing") {
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	c := &http.Client{Transport: m.StripeTransport(nil, stripe.EndpointLabel)}
	for _, p := range []string{"/v1/customers/cus_Q1w2e3", "/v1/customers/cus_Z9y8x7", "/v1/subscriptions", "/v1/customers/cus_missing1",
		"/v1/invoices/in_123", "/v1/customers/cus_1/sources/card_1"} {
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	out := scrape(t, m)
	for _, want := range []string{
		`tollgate_stripe_calls_total{endpoint="GET /v1/customers/{id}"} 3`,
		`tollgate_stripe_calls_total{endpoint="GET /v1/subscriptions"} 1`,
		`tollgate_stripe_errors_total{endpoint="GET /v1/customers/{id}"} 1`,
		`tollgate_stripe_calls_total{endpoint="other"} 2`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s\n%s", want, out)
		}
	}
	for _, id := range []string{"cus_", "in_", "card_"} {
		if strings.Contains(out, id) {
			t.Errorf("scrape shows an ID (%s)", id)
		}
	}
}

// Clerk's Backend API calls are counted by route template, with their 429s
// and failures (a 404 is an answer, not a failure), never with an ID.
func TestClerkTransportCountsCallsAnd429s(t *testing.T) {
	m := New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "limited"):
			w.WriteHeader(http.StatusTooManyRequests)
		case strings.Contains(r.URL.Path, "gone"):
			w.WriteHeader(http.StatusNotFound)
		case strings.Contains(r.URL.Path, "boom"):
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	c := &http.Client{Transport: m.ClerkTransport(nil, clerk.EndpointLabel)}
	for _, p := range []string{"/v1/sessions/sess_2abc", "/v1/sessions/sess_limited", "/v1/sessions/sess_gone",
		"/v1/users/user_boom", "/v1/jwks", "/v1/organizations/org_1"} {
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	m.SessionCheck("stale")
	m.SetRefreshStretch(func() float64 { return 2.5 })
	out := scrape(t, m)
	for _, want := range []string{
		`tollgate_clerk_api_calls_total{endpoint="GET /v1/sessions/{id}"} 3`,
		`tollgate_clerk_api_rate_limited_total{endpoint="GET /v1/sessions/{id}"} 1`,
		`tollgate_clerk_api_errors_total{endpoint="GET /v1/sessions/{id}"} 1`,
		`tollgate_clerk_api_errors_total{endpoint="GET /v1/users/{id}"} 1`,
		`tollgate_clerk_api_calls_total{endpoint="GET /v1/jwks"} 1`,
		`tollgate_clerk_api_calls_total{endpoint="other"} 1`,
		`tollgate_session_checks_total{result="stale"} 1`,
		`tollgate_session_refresh_stretch 2.5`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s\n%s", want, out)
		}
	}
	for _, id := range []string{"sess_", "user_", "org_"} {
		if strings.Contains(out, id) {
			t.Errorf("scrape shows an ID (%s)", id)
		}
	}
}

// Ensure a label taken from outside tollgate's code cannot grow without
// bound, even from a labeler that returns whatever it is given.
func TestLabelsFromOutsideAreBounded(t *testing.T) {
	m := New()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	leaky := func(method, path string) string { return method + " " + path }
	c := &http.Client{Transport: m.StripeTransport(nil, leaky)}
	for i := range maxEndpoints + 20 {
		resp, err := c.Get(srv.URL + "/v1/customers/cus_" + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for i := range maxWebhookTypes + 20 {
		m.WebhookEvent("stripe", "type."+strconv.Itoa(i), "processed", 0)
	}
	m.WebhookEvent("stripe", strings.Repeat("x", 1000), "processed", 0)
	out := scrape(t, m)
	if n := strings.Count(out, "tollgate_stripe_calls_total{"); n != maxEndpoints+1 {
		t.Errorf("%d endpoint series, want %d and other", n, maxEndpoints)
	}
	if !strings.Contains(out, `tollgate_stripe_calls_total{endpoint="other"} 20`) {
		t.Errorf("the excess is not counted as other")
	}
	if n := strings.Count(out, "tollgate_webhook_events_total{"); n != maxWebhookTypes+1 {
		t.Errorf("%d webhook series, want %d and other", n, maxWebhookTypes)
	}
	if !strings.Contains(out, `tollgate_webhook_events_total{result="processed",source="stripe",type="other"} 21`) {
		t.Errorf("the excess webhook types are not counted as other")
	}
}

// Ensure the backlog gauges read their source at each scrape, and the
// reconcile's progress is exported.
func TestBacklogAndReconcileSeries(t *testing.T) {
	m := New()
	if out := scrape(t, m); !strings.Contains(out, "tollgate_webhook_backlog_customers 0") {
		t.Error("backlog gauge without a source is not 0")
	}
	m.SetWebhookBacklog(func() (int, time.Duration, error) { return 42, 90 * time.Second, nil })
	var obs stripe.ReconcileObserver = m
	obs.ReconcileProgress(12, 1150, 40, 3, true, time.Time{})
	out := scrape(t, m)
	for _, want := range []string{
		"tollgate_webhook_backlog_customers 42",
		"tollgate_webhook_backlog_oldest_seconds 90",
		`tollgate_reconcile_progress{what="subscriptions"} 1150`,
		`tollgate_reconcile_progress{what="marked"} 3`,
		`tollgate_reconcile_progress{what="running"} 1`,
		"tollgate_reconcile_last_completed_timestamp_seconds 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	m.SetWebhookBacklog(func() (int, time.Duration, error) { return 0, 0, errors.New("store closed") })
	obs.ReconcileProgress(12, 1150, 40, 3, false, time.Unix(1_800_000_000, 0))
	out = scrape(t, m)
	for _, want := range []string{"tollgate_webhook_backlog_customers 0", "tollgate_reconcile_last_completed_timestamp_seconds 1.8e+09"} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

// The prune's count is exported, from 0 before any.
func TestEventsPrunedSeries(t *testing.T) {
	m := New()
	if out := scrape(t, m); !strings.Contains(out, "tollgate_events_pruned_total 0") {
		t.Error("tollgate_events_pruned_total is not 0 before a prune")
	}
	var obs stripe.EventsObserver = m
	obs.EventsPruned(500)
	obs.EventsPruned(17)
	if out := scrape(t, m); !strings.Contains(out, "tollgate_events_pruned_total 517") {
		t.Error("tollgate_events_pruned_total does not sum the prunes")
	}
}

package stripe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	stripe "github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
	stripesandbox "github.com/tollgate/tollgate/proxy/sandbox/stripe"
)

// The prices a setup offers are the active recurring ones of the key's
// mode, with their products' names, across pages; one-time prices are
// left out.
func TestListRecurringPrices(t *testing.T) {
	h := newHarness(t)
	got, err := ListRecurringPrices(t.Context(), h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []RecurringPrice{
		{Price: proxy.Price{ID: "price_pro", Amount: 1200, Currency: "usd", Interval: "month", IntervalCount: 1}, Nickname: "Pro monthly", ProductID: "prod_pro", ProductName: "Pro"},
		{Price: proxy.Price{ID: "price_pro_yearly", Amount: 12000, Currency: "usd", Interval: "year", IntervalCount: 1}, Nickname: "Pro yearly", ProductID: "prod_pro", ProductName: "Pro"},
		{Price: proxy.Price{ID: "price_team", Amount: 4900, Currency: "usd", Interval: "month", IntervalCount: 1}, ProductID: "prod_team", ProductName: "Team"},
		{Price: proxy.Price{ID: "price_other", Amount: 500, Currency: "usd", Interval: "month", IntervalCount: 1}, ProductID: "prod_basic", ProductName: "Basic"},
		{Price: proxy.Price{ID: "price_unknown", Amount: 700, Currency: "usd", Interval: "month", IntervalCount: 1}, ProductID: "prod_elsewhere", ProductName: "Elsewhere"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("prices (-want +got):\n%s", diff)
	}
	for _, c := range h.calls.all() {
		if c.Method != "GET" || c.Path != "/v1/prices" || c.Form.Get("active") != "true" || c.Form.Get("type") != "recurring" ||
			!slices.Contains(c.Form["expand[0]"], "data.product") {
			t.Errorf("asked %s %s %v", c.Method, c.Path, c.Form)
		}
	}

	// More than a page: every price, once.
	var many []stripesandbox.Price
	for i := range 130 {
		many = append(many, stripesandbox.Price{ID: "price_" + strconv.Itoa(i), Product: "Plan " + strconv.Itoa(i%3), UnitAmount: 100, Interval: "month"})
	}
	sb := stripesandbox.New(stripesandbox.Options{Prices: many})
	t.Cleanup(func() { _ = sb.Close() })
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	got, err = ListRecurringPrices(t.Context(), Config{SecretKey: sb.SecretKey(), APIURL: srv.URL, PublicURL: mustURL("https://app.example.test")})
	if err != nil || len(got) != len(many) {
		t.Fatalf("%d prices, %v; want %d", len(got), err, len(many))
	}
	seen := map[string]bool{}
	for _, p := range got {
		seen[p.ID] = true
	}
	if len(seen) != len(many) || got[0].ProductName != "Plan 0" {
		t.Errorf("%d distinct prices; first %+v", len(seen), got[0])
	}
}

func (a *account) webhookEndpoints() []*stripe.WebhookEndpoint {
	a.t.Helper()
	var out []*stripe.WebhookEndpoint
	it := a.api.WebhookEndpoints.List(&stripe.WebhookEndpointListParams{})
	for it.Next() {
		out = append(out, it.WebhookEndpoint())
	}
	if err := it.Err(); err != nil {
		a.t.Fatal(err)
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// The first run makes the endpoint and returns its secret; a second run
// finds it by its URL and makes no other, changing it only when its events
// or status differ from tollgate's; endpoints at other URLs are left
// alone, and further ones at the same URL are reported.
func TestEnsureWebhookEndpoint(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	other, err := h.stripe.api.WebhookEndpoints.New(&stripe.WebhookEndpointParams{
		URL: stripe.String("https://elsewhere.example.test/hook"), EnabledEvents: stripe.StringSlice([]string{"charge.succeeded"})})
	if err != nil {
		t.Fatal(err)
	}
	first, err := EnsureWebhookEndpoint(ctx, h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	const url = "https://app.example.test/.tollgate/webhooks/stripe"
	if !first.Created || first.Updated || first.URL != url || len(first.Secret) < 20 || first.Secret[:6] != "whsec_" || len(first.Others) != 0 {
		t.Errorf("first run: %+v", first)
	}
	check := func(when string) {
		t.Helper()
		var mine []*stripe.WebhookEndpoint
		for _, we := range h.stripe.webhookEndpoints() {
			if we.URL == url {
				mine = append(mine, we)
			}
		}
		if len(mine) != 1 || mine[0].ID != first.ID || mine[0].Status != "enabled" {
			t.Fatalf("%s: endpoints at %s: %+v", when, url, mine)
		}
		if diff := cmp.Diff(sorted(HandledEvents()), sorted(mine[0].EnabledEvents)); diff != "" {
			t.Errorf("%s: enabled_events (-want +got):\n%s", when, diff)
		}
	}
	check("first run")

	creates := func() int { return len(h.calls.to("POST", "/v1/webhook_endpoints")) }
	before := creates()
	again, err := EnsureWebhookEndpoint(ctx, h.cfg)
	if err != nil || again.Created || again.Updated || again.Secret != "" || again.ID != first.ID {
		t.Errorf("second run: %+v %v", again, err)
	}
	if n := creates(); n != before {
		t.Errorf("an unchanged endpoint was written to: %d POSTs", n-before)
	}
	check("second run")

	for _, tc := range []struct {
		name   string
		params *stripe.WebhookEndpointParams
	}{
		{"fewer events", &stripe.WebhookEndpointParams{EnabledEvents: stripe.StringSlice([]string{"customer.created"})}},
		{"every event", &stripe.WebhookEndpointParams{EnabledEvents: stripe.StringSlice([]string{"*"})}},
		{"disabled", &stripe.WebhookEndpointParams{Disabled: stripe.Bool(true)}},
	} {
		if _, err := h.stripe.api.WebhookEndpoints.Update(first.ID, tc.params); err != nil {
			t.Fatal(err)
		}
		got, err := EnsureWebhookEndpoint(ctx, h.cfg)
		if err != nil || got.Created || !got.Updated || got.Secret != "" || got.ID != first.ID {
			t.Errorf("%s: %+v %v", tc.name, got, err)
		}
		check(tc.name)
	}
	if we, err := h.stripe.api.WebhookEndpoints.Get(other.ID, nil); err != nil || !slices.Equal(we.EnabledEvents, []string{"charge.succeeded"}) {
		t.Errorf("the endpoint at another URL: %+v %v", we, err)
	}

	dup, err := h.stripe.api.WebhookEndpoints.New(&stripe.WebhookEndpointParams{URL: stripe.String(url), EnabledEvents: stripe.StringSlice([]string{"*"})})
	if err != nil {
		t.Fatal(err)
	}
	got, err := EnsureWebhookEndpoint(ctx, h.cfg)
	if err != nil || got.ID != first.ID || !slices.Equal(got.Others, []string{dup.ID}) {
		t.Errorf("with a second endpoint at the URL: %+v %v", got, err)
	}
}

// The secret EnsureWebhookEndpoint returns is the one Stripe signs the
// endpoint's events with: the gateway's webhook, given it, accepts them.
func TestEnsureWebhookEndpoint_SecretVerifiesDeliveries(t *testing.T) {
	h := newHarness(t)
	var handler atomic.Pointer[http.Handler]
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := handler.Load(); p != nil && r.URL.Path == "/.tollgate"+WebhookPath {
			(*p).ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(gw.Close)
	cfg := h.cfg
	cfg.PublicURL = mustURL(gw.URL)
	we, err := EnsureWebhookEndpoint(t.Context(), cfg)
	if err != nil || !we.Created {
		t.Fatalf("%+v %v", we, err)
	}
	cfg.WebhookSecrets = []string{we.Secret}
	wh := h.billing(t, cfg).WebhookHandler()
	handler.Store(&wh)

	h.stripe.customer("ada@example.com", map[string]string{MetaUserID: "user_ada"})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := h.stripe.sb.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	var got []stripesandbox.Delivery
	for _, d := range h.stripe.sb.Deliveries() {
		d.EventID = ""
		got = append(got, d)
	}
	want := []stripesandbox.Delivery{{Type: "customer.created", Endpoint: we.ID, Status: http.StatusOK, Attempts: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
}

// An endpoint init made and could not keep the secret of is deleted; the
// next run then makes a new one, with a secret of its own. An endpoint that
// is not there is an error.
func TestDeleteWebhookEndpoint(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	first, err := EnsureWebhookEndpoint(ctx, h.cfg)
	if err != nil || !first.Created {
		t.Fatalf("%+v %v", first, err)
	}
	if err := DeleteWebhookEndpoint(ctx, h.cfg, first.ID); err != nil {
		t.Fatal(err)
	}
	if eps := h.stripe.webhookEndpoints(); len(eps) != 0 {
		t.Errorf("after the delete: %+v", eps)
	}
	if got := h.calls.to("DELETE", "/v1/webhook_endpoints/"+first.ID); len(got) != 1 {
		t.Errorf("%d DELETE calls", len(got))
	}
	again, err := EnsureWebhookEndpoint(ctx, h.cfg)
	if err != nil || !again.Created || again.ID == first.ID || again.Secret == first.Secret {
		t.Errorf("the next run: %+v %v", again, err)
	}
	if err := DeleteWebhookEndpoint(ctx, h.cfg, first.ID); err == nil {
		t.Error("deleting an endpoint that is not there: no error")
	}
}

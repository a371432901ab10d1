package stripe

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The setup's requests (what `tollgate init` asks Stripe) sent to
// stripe-mock, which checks each against Stripe's OpenAPI spec: the price
// list with its filters and expansion, the endpoint list, the create with
// every handled event type (an event type Stripe does not know is
// refused), the update and the delete.
func TestContract_SetupRequests(t *testing.T) {
	base := startStripeMock(t)
	rt := &recordingTransport{}
	cfg := Config{SecretKey: "sk_test_contract", APIURL: base, PublicURL: mustURL("https://app.example.test"),
		HTTPClient: &http.Client{Transport: rt, Timeout: 20 * time.Second}}
	ctx := t.Context()

	prices, err := ListRecurringPrices(ctx, cfg)
	if err != nil || len(prices) == 0 || prices[0].ProductName == "" {
		t.Errorf("ListRecurringPrices = %+v, %v; want stripe-mock's canned price, its product expanded", prices, err)
	}
	// No canned endpoint has tollgate's URL, so one is made; stripe-mock's
	// canned answer carries no secret, which real Stripe's always does on
	// a create, so it is reported.
	if _, err := EnsureWebhookEndpoint(ctx, cfg); err == nil || !strings.Contains(err.Error(), "no signing secret") {
		t.Errorf("EnsureWebhookEndpoint = %v; want the missing secret reported", err)
	}
	b, err := newBilling(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.updateWebhookEndpoint(ctx, "we_contract", true); err != nil {
		t.Errorf("update: %v", err)
	}
	if err := DeleteWebhookEndpoint(ctx, cfg, "we_contract"); err != nil {
		t.Errorf("delete: %v", err)
	}

	var got []string
	for _, c := range rt.calls() {
		if c.Status >= 400 {
			t.Errorf("stripe-mock rejected %s %s?%s: %d %s", c.Method, c.Path, c.Query, c.Status, c.Body)
		}
		got = append(got, c.Method+" "+c.Path)
	}
	want := []string{"GET /v1/prices", "GET /v1/webhook_endpoints", "POST /v1/webhook_endpoints", "POST /v1/webhook_endpoints/we_contract",
		"DELETE /v1/webhook_endpoints/we_contract"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

package stripe

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/proxy"
	stripesandbox "github.com/tollgate/tollgate/proxy/sandbox/stripe"
)

// TestCheckKey_NeedsNoStore: `check -online` asks Stripe about the key and
// the prices without a store (a running gateway holds its lock), and
// reports a price of the wrong kind.
func TestCheckKey_NeedsNoStore(t *testing.T) {
	sb := stripesandbox.New(stripesandbox.Options{Prices: []stripesandbox.Price{
		{ID: "price_pro", Product: "Pro", UnitAmount: 1200, Interval: "month"},
		{ID: "price_once", Product: "Setup", UnitAmount: 100},
	}})
	t.Cleanup(func() { _ = sb.Close() })
	api := httptest.NewServer(sb.Handler())
	t.Cleanup(api.Close)
	cfg := Config{SecretKey: sb.SecretKey(), APIURL: api.URL, PublicURL: mustURL("https://app.example.com"),
		Plans: []proxy.Plan{{Key: "pro", Prices: []string{"price_pro"}}}}
	if err := CheckKey(t.Context(), cfg); err != nil {
		t.Fatalf("a working key and a recurring price: %v", err)
	}
	cfg.Plans = []proxy.Plan{{Key: "pro", Prices: []string{"price_once"}}}
	if err := CheckKey(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "price_once is one-time") {
		t.Errorf("a one-time plan price: %v", err)
	}
	cfg.Plans = []proxy.Plan{{Key: "pro", Prices: []string{"price_nope"}}}
	if err := CheckKey(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "price_nope") {
		t.Errorf("a missing price: %v", err)
	}
}

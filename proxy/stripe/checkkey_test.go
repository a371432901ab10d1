package stripe

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/proxy"
)

// TestCheckKey_NeedsNoStore: `check -online` asks Stripe about the key and
// the prices without a store (a running gateway holds its lock), and
// reports a price of the wrong kind.
func TestCheckKey_NeedsNoStore(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/account":
			w.Write([]byte(`{"id":"acct_1","object":"account"}`))
		case "/v1/prices/price_pro":
			w.Write([]byte(`{"id":"price_pro","object":"price","active":true,"type":"recurring","unit_amount":1200,"currency":"usd","recurring":{"interval":"month","interval_count":1}}`))
		case "/v1/prices/price_once":
			w.Write([]byte(`{"id":"price_once","object":"price","active":true,"type":"one_time","unit_amount":100,"currency":"usd"}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such object"}}`))
		}
	}))
	t.Cleanup(api.Close)
	public, _ := url.Parse("https://app.example.com")
	cfg := Config{SecretKey: "sk_test_x", APIURL: api.URL, PublicURL: public,
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

package stripe

import (
	"regexp"
	"slices"
	"testing"
)

func TestEndpointLabel(t *testing.T) {
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/v1/customers/cus_Q1w2e3", "GET /v1/customers/{id}"},
		{"GET", "/v1/customers/cus_missing", "GET /v1/customers/{id}"},
		{"POST", "/v1/customers", "POST /v1/customers"},
		{"GET", "/v1/subscriptions", "GET /v1/subscriptions"},
		{"POST", "/v1/checkout/sessions", "POST /v1/checkout/sessions"},
		{"GET", "/v1/checkout/sessions/cs_test_a1B2c3", "GET /v1/checkout/sessions/{id}"},
		{"POST", "/v1/billing_portal/sessions", "POST /v1/billing_portal/sessions"},
		{"GET", "/v1/events", "GET /v1/events"},
		{"GET", "/v1/prices", EndpointOther},
		{"GET", "/v1/account", "GET /v1/account"},
		{"GET", "/v1/prices/price_pro", "GET /v1/prices/{id}"},
		// Anything else is "other": another method, route, depth or base.
		{"DELETE", "/v1/customers/cus_1", EndpointOther},
		{"POST", "/v1/customers/cus_1", EndpointOther},
		{"GET", "/v1/customers/", EndpointOther},
		{"GET", "/v1/customers//", EndpointOther},
		{"GET", "/v1/customers/cus_1/sources", EndpointOther},
		{"POST", "/v1/checkout/sessions/cs_test_1/expire", "POST /v1/checkout/sessions/{id}/expire"},
		{"GET", "/v1/checkout/sessions", "GET /v1/checkout/sessions"},
		{"GET", "/v1/checkout/sessions/cs_test_1/line_items", EndpointOther},
		{"GET", "/v1/invoices/in_123", EndpointOther},
		{"GET", "/v2/customers/cus_1", EndpointOther},
		{"GET", "/proxy/v1/customers/cus_1", EndpointOther},
		{"GET", "", EndpointOther},
		{"GET", "v1/customers/cus_1", EndpointOther},
		{"get", "/v1/customers/cus_1", EndpointOther},
		{"GET", "/v1/customers/cus_1?expand=x", "GET /v1/customers/{id}"},
	} {
		if got := EndpointLabel(tc.method, tc.path); got != tc.want {
			t.Errorf("EndpointLabel(%q, %q) = %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}

// The allow-list itself: methods and literal segments only, {id} for IDs.
func TestEndpoints_AreTemplatesWithoutIDs(t *testing.T) {
	re := regexp.MustCompile(`^(GET|POST|DELETE) (/(v1|[a-z_]+|\{id\}))+$`)
	seen := map[string]bool{}
	for _, e := range Endpoints() {
		if !re.MatchString(e) || seen[e] {
			t.Errorf("endpoint %q: not a template, or listed twice", e)
		}
		seen[e] = true
	}
}

func FuzzEndpointLabel(f *testing.F) {
	for _, s := range []string{"/v1/customers/cus_1", "/v1/checkout/sessions/cs_test_1", "/v1/prices", "/v1//", "/v1/customers/{id}", "/v1/a/b/c/d"} {
		f.Add("GET", s)
		f.Add("POST", s)
	}
	allowed := append(Endpoints(), EndpointOther)
	f.Fuzz(func(t *testing.T, method, path string) {
		got := EndpointLabel(method, path)
		if !slices.Contains(allowed, got) {
			t.Fatalf("EndpointLabel(%q, %q) = %q: not in the allow-list", method, path, got)
		}
	})
}

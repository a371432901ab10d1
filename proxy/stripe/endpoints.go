package stripe

import "strings"

// endpoints are the Stripe API routes tollgate calls, each as a method and
// a route template whose {id} stands for one path segment. A new call must
// be added here (the contract test fails otherwise).
var endpoints = []string{
	"POST /v1/customers",
	"GET /v1/customers/{id}",
	"GET /v1/subscriptions",
	"POST /v1/checkout/sessions",
	"GET /v1/checkout/sessions",
	"GET /v1/checkout/sessions/{id}",
	"POST /v1/checkout/sessions/{id}/expire",
	"POST /v1/billing_portal/sessions",
	"GET /v1/events",
	"GET /v1/prices/{id}",
	"GET /v1/account",
	"POST /v1/billing/meter_events",
	"GET /v1/billing/meters",
	"GET /v1/billing/meters/{id}",
	"GET /v1/billing/meters/{id}/event_summaries",
}

// EndpointOther labels any call that is not one of Endpoints.
const EndpointOther = "other"

type endpointTemplate struct {
	label, method string
	segs          []string
}

var endpointTemplates = func() []endpointTemplate {
	out := make([]endpointTemplate, 0, len(endpoints))
	for _, e := range endpoints {
		method, path, _ := strings.Cut(e, " ")
		out = append(out, endpointTemplate{label: e, method: method, segs: strings.Split(path, "/")})
	}
	return out
}()

// Endpoints lists the Stripe API routes tollgate calls ("GET
// /v1/customers/{id}"): the only values EndpointLabel returns besides
// EndpointOther.
func Endpoints() []string { return append([]string(nil), endpoints...) }

// EndpointLabel names a Stripe API request for metrics by the route it
// matches in Endpoints, "GET /v1/customers/cus_123" being
// "GET /v1/customers/{id}", and anything that matches none by
// EndpointOther. The label never carries a part of the path that is not in
// the allow-list, so it holds no ID and the set of labels is fixed.
func EndpointLabel(method, path string) string {
	segs := strings.Split(path, "/")
	for _, e := range endpointTemplates {
		if e.method == method && matchTemplate(e.segs, segs) {
			return e.label
		}
	}
	return EndpointOther
}

// matchTemplate reports whether segs matches tmpl segment by segment: a
// literal equals, {id} is any non-empty segment.
func matchTemplate(tmpl, segs []string) bool {
	if len(tmpl) != len(segs) {
		return false
	}
	for i, t := range tmpl {
		if t != segs[i] && (t != "{id}" || segs[i] == "") {
			return false
		}
	}
	return true
}

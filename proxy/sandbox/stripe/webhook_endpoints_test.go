package stripesandbox

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stripe/stripe-go/v76"
)

func endpointParams(u string, events ...string) *stripe.WebhookEndpointParams {
	return &stripe.WebhookEndpointParams{URL: stripe.String(u), EnabledEvents: stripe.StringSlice(events)}
}

// The secret is in the answer to the create and nowhere else; the object
// has Stripe's fields; reading, listing and updating never show the
// secret again.
func TestWebhookEndpoints_CreateShowsTheSecretOnce(t *testing.T) {
	f := newSBFixture(t, Options{})
	p := endpointParams("https://app.example.test/.tollgate/webhooks/stripe", "customer.created", "invoice.paid")
	p.Description = stripe.String("tollgate")
	p.AddMetadata("by", "test")
	we, err := f.sc.WebhookEndpoints.New(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(we.ID, "we_") || !strings.HasPrefix(we.Secret, "whsec_") || len(we.Secret) < 30 ||
		we.Status != "enabled" || we.Livemode || we.Description != "tollgate" || we.Metadata["by"] != "test" ||
		we.URL != "https://app.example.test/.tollgate/webhooks/stripe" || we.Created == 0 {
		t.Errorf("created: %+v", we)
	}
	if diff := cmp.Diff([]string{"customer.created", "invoice.paid"}, we.EnabledEvents); diff != "" {
		t.Errorf("enabled_events (-want +got):\n%s", diff)
	}
	// api_version and application are null, not absent.
	_, _, raw := f.rawCall(t, http.MethodGet, "/v1/webhook_endpoints/"+we.ID, f.s.SecretKey(), "", nil)
	for _, k := range []string{"api_version", "application", "description"} {
		if !hasKey(raw, k) {
			t.Errorf("the object lacks %s: %v", k, raw)
		}
	}
	if hasKey(raw, "secret") {
		t.Error("GET shows the secret")
	}
	got, err := f.sc.WebhookEndpoints.Get(we.ID, nil)
	if err != nil || got.Secret != "" || got.ID != we.ID {
		t.Errorf("get: %+v %v", got, err)
	}
	upd, err := f.sc.WebhookEndpoints.Update(we.ID, &stripe.WebhookEndpointParams{EnabledEvents: stripe.StringSlice([]string{"*"})})
	if err != nil || upd.Secret != "" || !slices.Equal(upd.EnabledEvents, []string{"*"}) {
		t.Errorf("update: %+v %v", upd, err)
	}
	it := f.sc.WebhookEndpoints.List(&stripe.WebhookEndpointListParams{})
	for it.Next() {
		if it.WebhookEndpoint().Secret != "" {
			t.Error("the list shows the secret")
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
}

// What Stripe refuses, it refuses: 400 invalid_request_error naming the
// parameter, and nothing is made or changed.
func TestWebhookEndpoints_Refusals(t *testing.T) {
	f := newSBFixture(t, Options{})
	const u = "https://app.example.test/hook"
	existing, err := f.sc.WebhookEndpoints.New(endpointParams(u, "customer.created"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path string
		form               url.Values
		key                string // default the test-mode key
		code, param        string
	}{
		{"no url", "POST", "/v1/webhook_endpoints", url.Values{"enabled_events[0]": {"customer.created"}}, "", "parameter_missing", "url"},
		{"no events", "POST", "/v1/webhook_endpoints", url.Values{"url": {u}}, "", "parameter_missing", "enabled_events"},
		{"empty events", "POST", "/v1/webhook_endpoints", url.Values{"url": {u}, "enabled_events": {""}}, "", "parameter_missing", "enabled_events"},
		{"unknown event", "POST", "/v1/webhook_endpoints",
			url.Values{"url": {u}, "enabled_events[0]": {"customer.created"}, "enabled_events[1]": {"customer.exploded"}}, "", "parameter_invalid", "enabled_events[1]"},
		{"retired event", "POST", "/v1/webhook_endpoints", url.Values{"url": {u}, "enabled_events[0]": {"sku.created"}}, "", "parameter_invalid", "enabled_events[0]"},
		{"relative url", "POST", "/v1/webhook_endpoints", url.Values{"url": {"/hook"}, "enabled_events[0]": {"*"}}, "", "parameter_invalid", "url"},
		{"ftp url", "POST", "/v1/webhook_endpoints", url.Values{"url": {"ftp://example.test/"}, "enabled_events[0]": {"*"}}, "", "parameter_invalid", "url"},
		{"http in live mode", "POST", "/v1/webhook_endpoints", url.Values{"url": {"http://app.example.test/"}, "enabled_events[0]": {"*"}},
			f.s.LiveSecretKey(), "parameter_invalid", "url"},
		{"bad api_version", "POST", "/v1/webhook_endpoints", url.Values{"url": {u}, "enabled_events[0]": {"*"}, "api_version": {"latest"}}, "", "parameter_invalid", "api_version"},
		{"unknown parameter", "POST", "/v1/webhook_endpoints", url.Values{"url": {u}, "enabled_events[0]": {"*"}, "secret": {"whsec_mine"}}, "", "parameter_unknown", "secret"},
		{"update: unknown event", "POST", "/v1/webhook_endpoints/" + existing.ID, url.Values{"enabled_events[0]": {"nope"}}, "", "parameter_invalid", "enabled_events[0]"},
		{"update: events emptied", "POST", "/v1/webhook_endpoints/" + existing.ID, url.Values{"enabled_events": {""}}, "", "parameter_missing", "enabled_events"},
		{"update: bad url with good events", "POST", "/v1/webhook_endpoints/" + existing.ID,
			url.Values{"url": {"nope"}, "enabled_events[0]": {"*"}}, "", "parameter_invalid", "url"},
		{"update: api_version", "POST", "/v1/webhook_endpoints/" + existing.ID, url.Values{"api_version": {APIVersion}}, "", "parameter_unknown", "api_version"},
		{"update: bad disabled", "POST", "/v1/webhook_endpoints/" + existing.ID, url.Values{"disabled": {"yes"}}, "", "parameter_invalid_boolean", "disabled"},
		{"list: limit", "GET", "/v1/webhook_endpoints?limit=101", nil, "", "parameter_invalid", "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key
			if key == "" {
				key = f.s.SecretKey()
			}
			status, _, body := f.rawCall(t, tc.method, tc.path, key, "", tc.form)
			e, _ := body["error"].(map[string]any)
			if status != http.StatusBadRequest || e["type"] != "invalid_request_error" || e["code"] != tc.code || e["param"] != tc.param {
				t.Errorf("%d %v; want 400 invalid_request_error %s %s", status, body, tc.code, tc.param)
			}
		})
	}
	var n int
	it := f.sc.WebhookEndpoints.List(&stripe.WebhookEndpointListParams{})
	for it.Next() {
		n++
	}
	got, err := f.sc.WebhookEndpoints.Get(existing.ID, nil)
	if n != 1 || err != nil || got.URL != u || !slices.Equal(got.EnabledEvents, []string{"customer.created"}) || got.Status != "enabled" {
		t.Errorf("after the refusals: %d endpoints; %+v %v", n, got, err)
	}
}

// Lists are newest first, paginated with limit and starting_after, and
// show one mode's endpoints; an account has at most 16 per mode; a
// deleted endpoint is gone.
func TestWebhookEndpoints_ListLimitDelete(t *testing.T) {
	f := newSBFixture(t, Options{})
	var ids []string
	for i := range maxWebhookEndpoints {
		we, err := f.sc.WebhookEndpoints.New(endpointParams("https://app.example.test/"+strconv.Itoa(i), "*"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, we.ID)
	}
	if _, err := f.sc.WebhookEndpoints.New(endpointParams("https://app.example.test/17", "*")); err == nil ||
		asStripeError(t, err).HTTPStatusCode != http.StatusBadRequest {
		t.Errorf("a 17th endpoint: %v", err)
	}
	live := f.liveClient()
	liveWE, err := live.WebhookEndpoints.New(endpointParams("https://app.example.test/live", "*"))
	if err != nil || !liveWE.Livemode {
		t.Fatalf("live mode has its own 16: %+v %v", liveWE, err)
	}
	if _, err := f.sc.WebhookEndpoints.Get(liveWE.ID, nil); asStripeError(t, err).HTTPStatusCode != http.StatusNotFound {
		t.Errorf("the test key reads a live endpoint: %v", err)
	}

	var pages [][]string
	after := ""
	for {
		q := "?limit=10"
		if after != "" {
			q += "&starting_after=" + after
		}
		status, _, body := f.rawCall(t, "GET", "/v1/webhook_endpoints"+q, f.s.SecretKey(), "", nil)
		if status != http.StatusOK {
			t.Fatalf("list: %d %v", status, body)
		}
		var page []string
		for _, o := range body["data"].([]any) {
			page = append(page, o.(map[string]any)["id"].(string))
		}
		pages = append(pages, page)
		if body["has_more"] != true {
			break
		}
		after = page[len(page)-1]
	}
	newestFirst := slices.Clone(ids)
	slices.Reverse(newestFirst)
	if diff := cmp.Diff([][]string{newestFirst[:10], newestFirst[10:]}, pages); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}

	del, err := f.sc.WebhookEndpoints.Del(ids[0], nil)
	if err != nil || !del.Deleted || del.ID != ids[0] {
		t.Fatalf("delete: %+v %v", del, err)
	}
	if _, err := f.sc.WebhookEndpoints.Get(ids[0], nil); asStripeError(t, err).Code != "resource_missing" {
		t.Errorf("a deleted endpoint: %v", err)
	}
	if _, err := f.sc.WebhookEndpoints.New(endpointParams("https://app.example.test/again", "*")); err != nil {
		t.Errorf("room again after a delete: %v", err)
	}
}

// An endpoint made through the API gets the events it is subscribed to,
// signed with its own secret, and no others; a disabled one gets nothing;
// one pinned to an API version gets events rendered in it. The endpoint
// SetWebhook sets gets everything, as before.
func TestWebhookEndpoints_Delivery(t *testing.T) {
	f := newSBFixture(t, Options{APIVersion: APIVersionLatest})
	subscribe := func(version string, events ...string) (*receiver, *stripe.WebhookEndpoint) {
		h := &receiver{}
		p := endpointParams(httpServer(t, h), events...)
		if version != "" {
			p.APIVersion = stripe.String(version)
		}
		we, err := f.sc.WebhookEndpoints.New(p)
		if err != nil {
			t.Fatal(err)
		}
		h.mu.Lock()
		h.secret = we.Secret // before any event exists
		h.mu.Unlock()
		return h, we
	}
	created, createdWE := subscribe("", "customer.created")
	all, allWE := subscribe(APIVersion, "*")
	off, offWE := subscribe("", "*")
	if _, err := f.sc.WebhookEndpoints.Update(offWE.ID, &stripe.WebhookEndpointParams{Disabled: stripe.Bool(true)}); err != nil {
		t.Fatal(err)
	}

	cus := f.customer(t, "ada@example.com", "user_ada")
	up := &stripe.CustomerParams{}
	up.AddMetadata("plan", "pro")
	if _, err := f.sc.Customers.Update(cus.ID, up); err != nil {
		t.Fatal(err)
	}
	f.wait(t)

	for _, tc := range []struct {
		name string
		h    *receiver
		want []string
	}{
		{"SetWebhook's", f.hook, []string{"customer.created", "customer.updated"}},
		{"customer.created only", created, []string{"customer.created"}},
		{"all", all, []string{"customer.created", "customer.updated"}},
		{"disabled", off, nil},
	} {
		evs, problems := tc.h.snapshot()
		if diff := cmp.Diff(tc.want, tc.h.types()); diff != "" || len(problems) > 0 {
			t.Errorf("%s endpoint (-want +got):\n%s%v", tc.name, diff, problems)
		}
		for _, ev := range evs {
			if ev.PendingWebhooks != 3 && ev.Type == "customer.created" || ev.PendingWebhooks != 2 && ev.Type == "customer.updated" {
				t.Errorf("%s: %s delivered with pending_webhooks %d", tc.name, ev.Type, ev.PendingWebhooks)
			}
		}
	}
	if evs, _ := all.snapshot(); len(evs) > 0 && evs[0].APIVersion != APIVersion {
		t.Errorf("the pinned endpoint got %s, want %s", evs[0].APIVersion, APIVersion)
	}
	if evs, _ := created.snapshot(); len(evs) > 0 && evs[0].APIVersion != APIVersionLatest {
		t.Errorf("the endpoint on the account's default got %s, want %s", evs[0].APIVersion, APIVersionLatest)
	}
	var got []Delivery
	for _, d := range f.s.Deliveries() {
		d.EventID = ""
		got = append(got, d)
	}
	want := []Delivery{
		{Type: "customer.created", Status: 200, Attempts: 1},
		{Type: "customer.created", Endpoint: createdWE.ID, Status: 200, Attempts: 1},
		{Type: "customer.created", Endpoint: allWE.ID, Status: 200, Attempts: 1},
		{Type: "customer.updated", Status: 200, Attempts: 1},
		{Type: "customer.updated", Endpoint: allWE.ID, Status: 200, Attempts: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Deliveries (-want +got):\n%s", diff)
	}
}

package stripe

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// withActiveAda sets up cus_1, linked to user_ada, holding one active pro
// subscription.
func withActiveAda(h *harness) string {
	h.stripe.addCustomer("cus_1", "ada@example.com", map[string]string{MetaUserID: "user_ada"})
	h.link(userAda(), "cus_1")
	return h.stripe.addSub(fakeSub{ID: "sub_1", Customer: "cus_1", Status: "active", Prices: []string{"price_pro"}})
}

func TestWebhook_ValidEventCommitsStateWithEventAndWritesCache(t *testing.T) {
	h := newHarness(t)
	withActiveAda(h)
	rec := h.deliver(event("evt_1", "customer.subscription.updated", subObject("sub_1", "cus_1", "active")))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200 (%s)", rec.Code, rec.Body)
	}
	if !h.store.processed("evt_1") {
		t.Error("event not marked processed")
	}
	st := h.store.state("cus_1")
	want := []proxy.Subscription{{ID: "sub_1", CustomerID: "cus_1", Status: proxy.StatusActive, PriceIDs: []string{"price_pro"},
		Plan: "pro", CurrentPeriodEnd: time.Unix(1_900_000_000, 0).UTC(), SyncedAt: h.clock.Now()}}
	if diff := cmp.Diff(want, st.Subscriptions); diff != "" {
		t.Errorf("committed subscriptions (-want +got):\n%s", diff)
	}
	if st.Subject != userAda() || st.Email != "ada@example.com" {
		t.Errorf("committed subject/email = %v/%q", st.Subject, st.Email)
	}
	ents, ok := h.cache.last(userAda())
	if !ok || !cmp.Equal(statuses(ents), map[string]proxy.SubscriptionStatus{"sub_1": proxy.StatusActive}) {
		t.Errorf("cache = %v (put %v), want sub_1 active", statuses(ents), ok)
	}
	// The one commit carried the event ID: state and event in one transaction.
	if h.store.commits[0].EventID != "evt_1" {
		t.Errorf("commit event ID = %q", h.store.commits[0].EventID)
	}
}

func TestWebhook_RejectsBadInputAndChangesNothing(t *testing.T) {
	body := event("evt_bad", "customer.subscription.updated", subObject("sub_1", "cus_1", "active"))
	cases := []struct {
		name string
		sig  func(h *harness) string
		body []byte
		want int
	}{
		{"bad signature", func(h *harness) string { return signature(body, h.clock.Now(), "whsec_wrong") }, body, 400},
		{"missing header", func(h *harness) string { return "" }, body, 400},
		{"garbled header", func(h *harness) string { return "nonsense" }, body, 400},
		{"stale timestamp", func(h *harness) string { return signature(body, h.clock.Now().Add(-10*time.Minute), testSecret) }, body, 400},
		{"tampered body", func(h *harness) string { return signature(body, h.clock.Now(), testSecret) },
			bytes.Replace(body, []byte("active"), []byte("paused"), 1), 400},
		{"signed non-JSON", func(h *harness) string { return signature([]byte("hello"), h.clock.Now(), testSecret) }, []byte("hello"), 400},
		{"oversized body", func(h *harness) string { return "t=1,v1=00" }, bytes.Repeat([]byte("x"), 4<<10), 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.MaxWebhookBytes = 2 << 10 })
			withActiveAda(h)
			rec := h.deliverSigned(tc.body, tc.sig(h))
			if rec.Code != tc.want {
				t.Fatalf("status = %d, want %d", rec.Code, tc.want)
			}
			if n := len(h.stripe.callList()); n != 0 {
				t.Errorf("%d Stripe calls, want none", n)
			}
			if h.store.commitCount() != 0 || h.store.processed("evt_bad") || h.cache.count() != 0 {
				t.Error("bad input changed state")
			}
		})
	}
}

func TestWebhook_OnlyPOST(t *testing.T) {
	h := newHarness(t)
	rec := httptest.NewRecorder()
	h.b.WebhookHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.tollgate/webhooks/stripe", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
		t.Errorf("GET: status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestWebhook_DuplicateDeliveryDoesNoWork(t *testing.T) {
	h := newHarness(t)
	withActiveAda(h)
	body := event("evt_dup", "invoice.paid", map[string]any{"id": "in_1", "object": "invoice", "customer": "cus_1"})
	if rec := h.deliver(body); rec.Code != 200 {
		t.Fatalf("first delivery: %d", rec.Code)
	}
	calls, commits := len(h.stripe.callList()), h.store.commitCount()
	if rec := h.deliver(body); rec.Code != 200 {
		t.Fatalf("second delivery: %d", rec.Code)
	}
	if got := len(h.stripe.callList()); got != calls {
		t.Errorf("second delivery made %d Stripe calls", got-calls)
	}
	if got := h.store.commitCount(); got != commits {
		t.Errorf("second delivery committed %d times", got-commits)
	}
}

func TestWebhook_OutOfOrderConvergesOnStripesCurrentState(t *testing.T) {
	h := newHarness(t)
	withActiveAda(h)
	h.stripe.setSubStatus("sub_1", "canceled") // what Stripe says now
	// deleted arrives first, then the (older) created, whose payload says active.
	if rec := h.deliver(event("evt_2", "customer.subscription.deleted", subObject("sub_1", "cus_1", "canceled"))); rec.Code != 200 {
		t.Fatalf("deleted: %d", rec.Code)
	}
	if rec := h.deliver(event("evt_1", "customer.subscription.created", subObject("sub_1", "cus_1", "active"))); rec.Code != 200 {
		t.Fatalf("created: %d", rec.Code)
	}
	ents, _ := h.cache.last(userAda())
	if diff := cmp.Diff(map[string]proxy.SubscriptionStatus{"sub_1": proxy.StatusCanceled}, statuses(ents)); diff != "" {
		t.Errorf("final cache (-want +got):\n%s", diff)
	}
	if got := h.store.state("cus_1").Subscriptions[0].Status; got != proxy.StatusCanceled {
		t.Errorf("final store status = %s", got)
	}
}

func TestWebhook_UnknownTypeIsAcknowledgedAndMarked(t *testing.T) {
	h := newHarness(t)
	rec := h.deliver(event("evt_u", "payment_intent.created", map[string]any{"id": "pi_1", "object": "payment_intent", "customer": "cus_1"}))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}
	if !h.store.processed("evt_u") {
		t.Error("unknown event not marked")
	}
	if n := len(h.stripe.callList()); n != 0 {
		t.Errorf("%d Stripe calls for an unknown type", n)
	}
}

func TestWebhook_NewerAPIVersionPayloadReadsOnlyIDs(t *testing.T) {
	h := newHarness(t)
	h.stripe.addCustomer("cus_fixture1", "ada@example.com", nil)
	h.link(userAda(), "cus_fixture1")
	// Stripe's current state (rendered at 2023-10-16 by the API) says active;
	// the dahlia payload says past_due with periods moved to its items.
	h.stripe.addSub(fakeSub{ID: "sub_fixture1", Customer: "cus_fixture1", Status: "active", Prices: []string{"price_pro"},
		CurrentPeriodEnd: 1_950_000_000})
	body, err := os.ReadFile(filepath.Join("testdata", "events", "customer.subscription.updated.dahlia.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rec := h.deliver(body); rec.Code != http.StatusOK {
		t.Fatalf("status = %d (%s)", rec.Code, rec.Body)
	}
	subs := h.store.state("cus_fixture1").Subscriptions
	if len(subs) != 1 || subs[0].Status != proxy.StatusActive || subs[0].CurrentPeriodEnd.Unix() != 1_950_000_000 {
		t.Errorf("committed %+v, want Stripe's state (active, period end 1950000000), not the payload's", subs)
	}
	if !h.store.processed("evt_1QdahliaSubUpdated") {
		t.Error("event not marked")
	}
}

// A customer Stripe answers resource_missing for is one the key cannot
// see (another account or mode), not a deleted one: nothing is committed,
// access stays, the event is not marked and gets 503 so Stripe retries it
// once the key is right; it is counted.
func TestWebhook_CustomerTheKeyCannotSeeKeepsItsState(t *testing.T) {
	obs := &fakeObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	withActiveAda(h)
	if err := h.b.SyncCustomer(t.Context(), "cus_1", ""); err != nil {
		t.Fatal(err)
	}
	h.stripe.mu.Lock()
	delete(h.stripe.customers, "cus_1") // Stripe answers 404 for it now
	h.stripe.mu.Unlock()
	before := h.store.state("cus_1")
	if len(before.Subscriptions) != 1 {
		t.Fatalf("before: %+v", before)
	}
	rec := h.deliver(event("evt_g", "customer.deleted", map[string]any{"id": "cus_1", "object": "customer", "deleted": true}))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", rec.Code)
	}
	if st := h.store.state("cus_1"); st.Deleted || len(st.Subscriptions) != len(before.Subscriptions) {
		t.Errorf("state = %+v, want it as it was", st)
	}
	if h.store.processed("evt_g") {
		t.Error("event marked: Stripe would not retry it")
	}
	if obs.count(AnomalyCustomerUnseen) != 1 {
		t.Errorf("anomalies %v", obs.anomalies)
	}
}

// An event of the other mode than the key's is acknowledged and ignored:
// no Stripe call, nothing stored.
func TestWebhook_OtherModeEventIsIgnored(t *testing.T) {
	obs := &fakeObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	withActiveAda(h)
	before := len(h.stripe.callList())
	body := event("evt_live", "customer.subscription.deleted", subObject("sub_x", "cus_1", "canceled"))
	body = bytes.Replace(body, []byte(`"livemode":false`), []byte(`"livemode":true`), 1)
	if !bytes.Contains(body, []byte(`"livemode":true`)) {
		t.Fatalf("no livemode in %s", body)
	}
	if rec := h.deliver(body); rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}
	if n := len(h.stripe.callList()) - before; n != 0 {
		t.Errorf("%d Stripe calls for an event of the other mode", n)
	}
	if h.store.processed("evt_live") || obs.count(AnomalyLivemodeMismatch) != 1 {
		t.Errorf("processed %v, anomalies %v", h.store.processed("evt_live"), obs.anomalies)
	}
}

func TestWebhook_DeletedCustomerIsCommittedDeleted(t *testing.T) {
	h := newHarness(t)
	withActiveAda(h)
	h.stripe.deleteCustomer("cus_1")
	if rec := h.deliver(event("evt_d", "customer.deleted", map[string]any{"id": "cus_1", "object": "customer"})); rec.Code != 200 {
		t.Fatalf("status = %d", rec.Code)
	}
	if st := h.store.state("cus_1"); !st.Deleted || st.Subject != userAda() {
		t.Errorf("state = %+v", st)
	}
}

func TestWebhook_StripeFailureIs5xxAndEventStaysUnprocessed(t *testing.T) {
	h := newHarness(t)
	withActiveAda(h)
	body := event("evt_s", "customer.subscription.updated", subObject("sub_1", "cus_1", "active"))
	for _, tc := range []struct {
		path   string
		status int
	}{{"/v1/customers/", 500}, {"/v1/subscriptions", 500}, {"/v1/customers/", 429}} {
		h.stripe.fail("GET", tc.path, tc.status, "", -1)
		rec := h.deliver(body)
		if rec.Code < 500 {
			t.Errorf("%s answers %d: webhook status = %d, want 5xx", tc.path, tc.status, rec.Code)
		}
		if h.store.processed("evt_s") || h.store.commitCount() != 0 || h.cache.count() != 0 {
			t.Fatalf("%s %d: state changed on failure", tc.path, tc.status)
		}
		h.stripe.clearFailures()
	}
	// Stripe retries later, and then it works.
	if rec := h.deliver(body); rec.Code != 200 || !h.store.processed("evt_s") {
		t.Errorf("retry: status %d, processed %v", rec.Code, h.store.processed("evt_s"))
	}
}

func TestWebhook_StoreFailureIs5xx(t *testing.T) {
	h := newHarness(t)
	withActiveAda(h)
	body := event("evt_f", "customer.subscription.updated", subObject("sub_1", "cus_1", "active"))
	h.store.commitErr = errors.New("disk full")
	if rec := h.deliver(body); rec.Code < 500 {
		t.Errorf("commit failure: status = %d, want 5xx", rec.Code)
	}
	h.store.commitErr = nil
	h.store.processedErr = errors.New("disk gone")
	if rec := h.deliver(body); rec.Code < 500 {
		t.Errorf("lookup failure: status = %d, want 5xx", rec.Code)
	}
	h.store.processedErr = nil
	if h.store.processed("evt_f") || h.cache.count() != 0 {
		t.Error("state changed on store failure")
	}
}

func TestWebhook_SecretRotation(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.WebhookSecrets = []string{testSecretOld, " " + testSecret + " "} })
	withActiveAda(h)
	body := event("evt_r1", "customer.subscription.updated", subObject("sub_1", "cus_1", "active"))
	if rec := h.deliver(body); rec.Code != 200 { // signed with the second secret only
		t.Errorf("second secret: %d", rec.Code)
	}
	body = event("evt_r2", "customer.subscription.updated", subObject("sub_1", "cus_1", "active"))
	if rec := h.deliverSigned(body, signature(body, h.clock.Now(), "whsec_unknown", testSecretOld)); rec.Code != 200 {
		t.Errorf("header with two v1 signatures, one valid: %d", rec.Code)
	}
}

func TestWebhook_CheckoutCompletedLinksSubjectFirst(t *testing.T) {
	h := newHarness(t)
	h.stripe.addCustomer("cus_fixture1", "ada@example.com", nil) // no metadata: only the session knows
	h.stripe.addSub(fakeSub{ID: "sub_fixture1", Customer: "cus_fixture1", Status: "trialing", Prices: []string{"price_pro"}, TrialEnd: 1_900_000_000})
	body, err := os.ReadFile(filepath.Join("testdata", "events", "checkout.session.completed.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rec := h.deliver(body); rec.Code != 200 {
		t.Fatalf("status = %d", rec.Code)
	}
	if cus, _ := h.store.CustomerOf(t.Context(), userAda()); cus != "cus_fixture1" {
		t.Errorf("linked customer = %q", cus)
	}
	ents, ok := h.cache.last(userAda())
	if !ok || statuses(ents)["sub_fixture1"] != proxy.StatusTrialing {
		t.Errorf("cache = %v", statuses(ents))
	}
}

func TestWebhook_AdoptsCustomerByMetadataNeverByEmail(t *testing.T) {
	h := newHarness(t)
	h.stripe.addCustomer("cus_app", "ada@example.com", map[string]string{MetaUserID: "user_ada"})
	h.stripe.addSub(fakeSub{Customer: "cus_app", Status: "active", Prices: []string{"price_pro"}})
	h.stripe.addCustomer("cus_email", "grace@example.com", nil) // same email as a user, no metadata
	h.stripe.addSub(fakeSub{Customer: "cus_email", Status: "active", Prices: []string{"price_pro"}})

	h.deliver(event("evt_a", "customer.subscription.created", subObject("sub_x", "cus_app", "active")))
	h.deliver(event("evt_b", "customer.subscription.created", subObject("sub_y", "cus_email", "active")))
	if cus, _ := h.store.CustomerOf(t.Context(), userAda()); cus != "cus_app" {
		t.Errorf("metadata customer not adopted: %q", cus)
	}
	if _, ok, _ := h.store.SubjectOf(t.Context(), "cus_email"); ok {
		t.Error("customer adopted by email")
	}
	if !h.store.processed("evt_b") || len(h.store.state("cus_email").Subscriptions) != 1 {
		t.Error("unlinked customer's state must still be kept by customer ID")
	}
}

func TestWebhook_EventWithoutCustomerIsMarked(t *testing.T) {
	h := newHarness(t)
	rec := h.deliver(event("evt_nc", "checkout.session.completed", map[string]any{"id": "cs_1", "object": "checkout.session", "customer": nil}))
	if rec.Code != 200 || !h.store.processed("evt_nc") {
		t.Errorf("status %d, processed %v", rec.Code, h.store.processed("evt_nc"))
	}
}

func TestWebhook_NoSecretConfiguredIs5xx(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.WebhookSecrets = nil })
	body := event("evt_1", "invoice.paid", map[string]any{"id": "in_1", "object": "invoice", "customer": "cus_1"})
	if rec := h.deliver(body); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status = %d", rec.Code)
	}
}

func TestParseEventObject_IsLenient(t *testing.T) {
	cases := map[string]eventObject{
		`{"id":"sub_1","object":"subscription","customer":"cus_1"}`:                     {ID: "sub_1", Object: "subscription", Customer: "cus_1"},
		`{"id":"sub_1","object":"subscription","customer":{"id":"cus_2","x":1}}`:        {ID: "sub_1", Object: "subscription", Customer: "cus_2"},
		`{"id":"cus_3","object":"customer","metadata":{"a":"b","n":1}}`:                 {ID: "cus_3", Object: "customer", Metadata: map[string]string{"a": "b"}},
		`{"id":5,"object":"invoice","customer":"cus_4","client_reference_id":"user_x"}`: {Object: "invoice", Customer: "cus_4", ClientReferenceID: "user_x"},
		`[]`: {},
	}
	for in, want := range cases {
		if diff := cmp.Diff(want, parseEventObject([]byte(in))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", in, diff)
		}
	}
	if got := (eventObject{ID: "cus_9", Object: "customer", Customer: "cus_other"}).customerID(); got != "cus_9" {
		t.Errorf("customer object's customer = %q", got)
	}
	if s, ok := (eventObject{ClientReferenceID: "someone-else"}).checkoutSubject(); ok {
		t.Errorf("non-Clerk client_reference_id adopted as %v", s)
	}
	if s, _ := (eventObject{Metadata: map[string]string{MetaSubject: "org:org_acme"}, ClientReferenceID: "user_grace"}).checkoutSubject(); s != orgAcme() {
		t.Errorf("metadata subject = %v", s)
	}
	if !strings.HasPrefix(idempotencyKey("x", "a"), "tollgate-x-") {
		t.Error("idempotency key prefix")
	}
}

// checkout.session.completed expires the customer's other open sessions
// of tollgate's (not the app's own) before it commits; a Stripe failure
// while doing so is a 503, so Stripe retries the event.
func TestWebhook_CheckoutCompletedExpiresTheOtherOpenSessions(t *testing.T) {
	h := newHarness(t)
	h.stripe.addCustomer("cus_fixture1", "ada@example.com", nil)
	h.stripe.addSub(fakeSub{ID: "sub_fixture1", Customer: "cus_fixture1", Status: "trialing", Prices: []string{"price_pro"}, TrialEnd: 1_900_000_000})
	h.stripe.addSession(fakeSession{ID: "cs_test_other", Customer: "cus_fixture1", Status: "open", Seq: 1,
		Metadata: map[string]string{MetaSubject: "user:user_ada"}})
	h.stripe.addSession(fakeSession{ID: "cs_test_apps", Customer: "cus_fixture1", Status: "open", Seq: 2})
	body, err := os.ReadFile(filepath.Join("testdata", "events", "checkout.session.completed.json"))
	if err != nil {
		t.Fatal(err)
	}
	h.stripe.fail("POST", "/v1/checkout/sessions/cs_test_other/expire", 500, "", 1)
	if rec := h.deliver(body); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("expire failed: status %d, want 503", rec.Code)
	}
	if h.store.commitCount() != 0 {
		t.Error("committed although the expiry failed")
	}
	if rec := h.deliver(body); rec.Code != 200 {
		t.Fatalf("retry: status %d", rec.Code)
	}
	if st := h.stripe.session("cs_test_other").Status; st != "expired" {
		t.Errorf("tollgate's other session is %q, want expired", st)
	}
	if st := h.stripe.session("cs_test_apps").Status; st != "open" {
		t.Errorf("the app's own session is %q, want open", st)
	}
}

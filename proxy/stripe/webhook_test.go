package stripe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	stripe "github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
)

func TestWebhook_ValidEventCommitsStateWithEventAndWritesCache(t *testing.T) {
	h := newHarness(t)
	cus, sub := withActiveAda(h)
	rec := h.deliver(event("evt_1", "customer.subscription.updated", subObject(sub, cus, "active")))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200 (%s)", rec.Code, rec.Body)
	}
	if !h.store.processed("evt_1") {
		t.Error("event not marked processed")
	}
	want := []proxy.Subscription{{ID: sub, CustomerID: cus, Status: proxy.StatusActive, PriceIDs: []string{"price_pro"},
		Plan: "pro", CurrentPeriodEnd: unixTime(h.stripe.subscription(sub).CurrentPeriodEnd),
		BillingCycleAnchor: unixTime(h.stripe.subscription(sub).BillingCycleAnchor), SyncedAt: h.clock.Now(),
		Amount: 1200, Currency: "usd", Interval: "month", IntervalCount: 1, Created: unixTime(h.stripe.subscription(sub).Created)}}
	if diff := cmp.Diff(want, h.store.subscriptions(userAda())); diff != "" {
		t.Errorf("stored subscriptions (-want +got):\n%s", diff)
	}
	commits := h.store.commitList()
	if len(commits) != 1 {
		t.Fatalf("%d commits, want 1", len(commits))
	}
	if st := commits[0].State; st.Subject != userAda() || st.Email != "ada@example.com" {
		t.Errorf("committed subject/email = %v/%q", st.Subject, st.Email)
	}
	ents, ok := h.cache.last(userAda())
	if !ok || !cmp.Equal(statuses(ents), map[string]proxy.SubscriptionStatus{sub: proxy.StatusActive}) {
		t.Errorf("cache = %v (put %v), want %s active", statuses(ents), ok, sub)
	}
	// The one commit carried the event ID: state and event in one transaction.
	if commits[0].EventID != "evt_1" {
		t.Errorf("commit event ID = %q", commits[0].EventID)
	}
}

func TestWebhook_RejectsBadInputAndChangesNothing(t *testing.T) {
	// cus_1 stands for the customer's ID, filled in once it exists.
	body := event("evt_bad", "customer.subscription.updated", subObject("sub_1", "cus_1", "active"))
	cases := []struct {
		name     string
		sig      func(h *harness, body []byte) string
		body     []byte
		tampered bool // changed after it was signed
		want     int
	}{
		{"bad signature", func(h *harness, b []byte) string { return signature(b, h.clock.Now(), "whsec_wrong") }, body, false, 400},
		{"missing header", func(h *harness, b []byte) string { return "" }, body, false, 400},
		{"garbled header", func(h *harness, b []byte) string { return "nonsense" }, body, false, 400},
		{"stale timestamp", func(h *harness, b []byte) string { return signature(b, h.clock.Now().Add(-10*time.Minute), testSecret) }, body, false, 400},
		{"tampered body", func(h *harness, b []byte) string { return signature(b, h.clock.Now(), testSecret) }, body, true, 400},
		{"signed non-JSON", func(h *harness, b []byte) string { return signature(b, h.clock.Now(), testSecret) }, []byte("hello"), false, 400},
		{"oversized body", func(h *harness, b []byte) string { return "t=1,v1=00" }, bytes.Repeat([]byte("x"), 4<<10), false, 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.MaxWebhookBytes = 2 << 10 })
			cus, _ := withActiveAda(h)
			body := bytes.ReplaceAll(tc.body, []byte("cus_1"), []byte(cus))
			sig := tc.sig(h, body)
			if tc.tampered {
				body = bytes.Replace(body, []byte("active"), []byte("paused"), 1)
			}
			rec := h.deliverSigned(body, sig)
			if rec.Code != tc.want {
				t.Fatalf("status = %d, want %d", rec.Code, tc.want)
			}
			if n := len(h.calls.all()); n != 0 {
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
	cus, _ := withActiveAda(h)
	body := event("evt_dup", "invoice.paid", map[string]any{"id": "in_1", "object": "invoice", "customer": cus})
	if rec := h.deliver(body); rec.Code != 200 {
		t.Fatalf("first delivery: %d", rec.Code)
	}
	calls, commits := len(h.calls.all()), h.store.commitCount()
	if calls == 0 || commits != 1 {
		t.Fatalf("first delivery made %d Stripe calls and %d commits", calls, commits)
	}
	if rec := h.deliver(body); rec.Code != 200 {
		t.Fatalf("second delivery: %d", rec.Code)
	}
	if got := len(h.calls.all()); got != calls {
		t.Errorf("second delivery made %d Stripe calls", got-calls)
	}
	if got := h.store.commitCount(); got != commits {
		t.Errorf("second delivery committed %d times", got-commits)
	}
}

func TestWebhook_OutOfOrderConvergesOnStripesCurrentState(t *testing.T) {
	h := newHarness(t)
	cus, sub := withActiveAda(h)
	h.stripe.setStatus(sub, "canceled") // what Stripe says now
	// deleted arrives first, then the (older) created, whose payload says active.
	if rec := h.deliver(event("evt_2", "customer.subscription.deleted", subObject(sub, cus, "canceled"))); rec.Code != 200 {
		t.Fatalf("deleted: %d", rec.Code)
	}
	if rec := h.deliver(event("evt_1", "customer.subscription.created", subObject(sub, cus, "active"))); rec.Code != 200 {
		t.Fatalf("created: %d", rec.Code)
	}
	ents, _ := h.cache.last(userAda())
	if diff := cmp.Diff(map[string]proxy.SubscriptionStatus{sub: proxy.StatusCanceled}, statuses(ents)); diff != "" {
		t.Errorf("final cache (-want +got):\n%s", diff)
	}
	if subs := h.store.subscriptions(userAda()); len(subs) != 1 || subs[0].Status != proxy.StatusCanceled {
		t.Errorf("final store = %+v, want canceled", subs)
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
	if n := len(h.calls.all()); n != 0 {
		t.Errorf("%d Stripe calls for an unknown type", n)
	}
}

func TestWebhook_NewerAPIVersionPayloadReadsOnlyIDs(t *testing.T) {
	h := newHarness(t)
	cus := h.stripe.customer("ada@example.com", nil)
	h.link(userAda(), cus)
	// Stripe's current state (rendered at 2023-10-16 by the API) says active;
	// the dahlia payload says past_due with periods moved to its items.
	sub := h.stripe.subscribeWith(cus, "active", "price_pro")
	periodEnd := h.stripe.subscription(sub).CurrentPeriodEnd
	body := fixture(t, "customer.subscription.updated.dahlia.json", cus, sub)
	if bytes.Contains(body, []byte(strconv.FormatInt(periodEnd, 10))) {
		t.Fatalf("the payload has Stripe's period end %d: the test cannot tell them apart", periodEnd)
	}
	if rec := h.deliver(body); rec.Code != http.StatusOK {
		t.Fatalf("status = %d (%s)", rec.Code, rec.Body)
	}
	subs := h.store.subscriptions(userAda())
	if len(subs) != 1 || subs[0].Status != proxy.StatusActive || subs[0].CurrentPeriodEnd.Unix() != periodEnd {
		t.Errorf("committed %+v, want Stripe's state (active, period end %d), not the payload's", subs, periodEnd)
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
	obs := &testObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	cus, _ := withActiveAda(h)
	if err := h.b.SyncCustomer(t.Context(), cus, ""); err != nil {
		t.Fatal(err)
	}
	before := h.store.subscriptions(userAda())
	if len(before) != 1 {
		t.Fatalf("before: %+v", before)
	}
	// The gateway now holds the live-mode key, and a live-mode event names
	// the customer made in test mode: Stripe answers resource_missing.
	cfg := h.cfg
	cfg.SecretKey = h.stripe.sb.LiveSecretKey()
	live := h.billing(t, cfg)
	body := event("evt_g", "customer.deleted", map[string]any{"id": cus, "object": "customer", "deleted": true})
	body = bytes.Replace(body, []byte(`"livemode":false`), []byte(`"livemode":true`), 1)
	rec := h.deliverTo(live, body)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", rec.Code)
	}
	if got := h.calls.to("GET", "/v1/customers/"+cus); len(got) != 2 {
		t.Errorf("%d customer fetches, want the sync's and the webhook's", len(got))
	}
	if who, ok := h.store.subjectOf(cus); !ok || who != userAda() {
		t.Errorf("customer linked to %v, %v; want it kept", who, ok)
	}
	if diff := cmp.Diff(before, h.store.subscriptions(userAda())); diff != "" {
		t.Errorf("stored subscriptions changed (-before +after):\n%s", diff)
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
	obs := &testObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	cus, sub := withActiveAda(h)
	before := len(h.calls.all())
	body := event("evt_live", "customer.subscription.deleted", subObject(sub, cus, "canceled"))
	body = bytes.Replace(body, []byte(`"livemode":false`), []byte(`"livemode":true`), 1)
	if !bytes.Contains(body, []byte(`"livemode":true`)) {
		t.Fatalf("no livemode in %s", body)
	}
	if rec := h.deliver(body); rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}
	if n := len(h.calls.all()) - before; n != 0 {
		t.Errorf("%d Stripe calls for an event of the other mode", n)
	}
	if h.store.processed("evt_live") || obs.count(AnomalyLivemodeMismatch) != 1 {
		t.Errorf("processed %v, anomalies %v", h.store.processed("evt_live"), obs.anomalies)
	}
}

func TestWebhook_DeletedCustomerIsCommittedDeleted(t *testing.T) {
	h := newHarness(t)
	cus, _ := withActiveAda(h)
	h.stripe.deleteCustomer(cus)
	if rec := h.deliver(event("evt_d", "customer.deleted", map[string]any{"id": cus, "object": "customer"})); rec.Code != 200 {
		t.Fatalf("status = %d", rec.Code)
	}
	if st, _ := h.store.lastCommit(cus); !st.Deleted || st.Subject != userAda() || len(st.Subscriptions) != 0 {
		t.Errorf("committed %+v, want the customer deleted", st)
	}
	// The store drops the link and what it granted.
	if got, _ := h.store.CustomerOf(t.Context(), userAda()); got != "" {
		t.Errorf("user_ada still has customer %q", got)
	}
	if ents, ok := h.cache.last(userAda()); !ok || ents != nil {
		t.Errorf("cache = %+v (put %v), want nothing granted", ents, ok)
	}
}

// Ensure a webhook whose sync Stripe fails is acknowledged with a durable
// dirty mark (Stripe need not retry it), changes no customer state, and is
// synced by the dirty worker once Stripe answers.
func TestWebhook_StripeFailureIsMarkedDirtyAndSyncedLater(t *testing.T) {
	h := newHarness(t)
	cus, sub := withActiveAda(h)
	for i, tc := range []struct {
		path   string
		status int
	}{{"/v1/customers/", 500}, {"/v1/subscriptions", 500}, {"/v1/customers/", 429}} {
		h.calls.fail("GET", tc.path, tc.status, "", -1)
		id := fmt.Sprintf("evt_s%d", i)
		rec := h.deliver(event(id, "customer.subscription.updated", subObject(sub, cus, "active")))
		if rec.Code != http.StatusOK {
			t.Errorf("%s answers %d: webhook status = %d, want 200 (marked dirty)", tc.path, tc.status, rec.Code)
		}
		if !h.store.processed(id) || h.store.commitCount() != 0 || h.cache.count() != 0 {
			t.Fatalf("%s %d: processed %v, %d commits, %d cache puts; want the event recorded and no state changed",
				tc.path, tc.status, h.store.processed(id), h.store.commitCount(), h.cache.count())
		}
		h.calls.clearFailures()
	}
	if bl := h.backlog(); bl.Customers != 1 {
		t.Fatalf("backlog = %+v, want the one customer", bl)
	}
	// Stripe answers again: the worker syncs the customer once.
	h.drainDirty(t)
	if got, _ := h.store.lastCommit(cus); len(got.Subscriptions) != 1 || got.Subscriptions[0].Status != proxy.StatusActive {
		t.Errorf("after the worker: committed %+v", got)
	}
	if bl := h.backlog(); bl.Customers != 0 {
		t.Errorf("backlog after the worker = %+v", bl)
	}
}

func TestWebhook_StoreFailureIs5xx(t *testing.T) {
	h := newHarness(t)
	cus, sub := withActiveAda(h)
	body := event("evt_f", "customer.subscription.updated", subObject(sub, cus, "active"))
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
	cus, sub := withActiveAda(h)
	body := event("evt_r1", "customer.subscription.updated", subObject(sub, cus, "active"))
	if rec := h.deliver(body); rec.Code != 200 { // signed with the second secret only
		t.Errorf("second secret: %d", rec.Code)
	}
	body = event("evt_r2", "customer.subscription.updated", subObject(sub, cus, "active"))
	if rec := h.deliverSigned(body, signature(body, h.clock.Now(), "whsec_unknown", testSecretOld)); rec.Code != 200 {
		t.Errorf("header with two v1 signatures, one valid: %d", rec.Code)
	}
}

func TestWebhook_CheckoutCompletedLinksSubjectFirst(t *testing.T) {
	h := newHarness(t)
	cus := h.stripe.customer("ada@example.com", nil) // no metadata: only the session knows
	sub := h.stripe.subscribe(trialParams(cus))
	body := fixture(t, "checkout.session.completed.json", cus, sub)
	if rec := h.deliver(body); rec.Code != 200 {
		t.Fatalf("status = %d", rec.Code)
	}
	if got, _ := h.store.CustomerOf(t.Context(), userAda()); got != cus {
		t.Errorf("linked customer = %q, want %q", got, cus)
	}
	ents, ok := h.cache.last(userAda())
	if !ok || statuses(ents)[sub] != proxy.StatusTrialing {
		t.Errorf("cache = %v", statuses(ents))
	}
}

func TestWebhook_AdoptsCustomerByMetadataNeverByEmail(t *testing.T) {
	h := newHarness(t)
	cusApp := h.stripe.customer("ada@example.com", map[string]string{MetaUserID: "user_ada"})
	subApp := h.stripe.subscribeWith(cusApp, "active", "price_pro")
	cusEmail := h.stripe.customer("grace@example.com", nil) // same email as a user, no metadata
	subEmail := h.stripe.subscribeWith(cusEmail, "active", "price_pro")

	h.deliver(event("evt_a", "customer.subscription.created", subObject(subApp, cusApp, "active")))
	h.deliver(event("evt_b", "customer.subscription.created", subObject(subEmail, cusEmail, "active")))
	if cus, _ := h.store.CustomerOf(t.Context(), userAda()); cus != cusApp {
		t.Errorf("metadata customer not adopted: %q", cus)
	}
	if _, ok := h.store.subjectOf(cusEmail); ok {
		t.Error("customer adopted by email")
	}
	// The store keeps an unlinked customer's subscriptions by customer ID:
	// its history shows the one it was told of.
	hist, err := h.store.History(t.Context(), cusEmail, 0)
	if !h.store.processed("evt_b") || err != nil || len(hist) != 1 || hist[0].SubscriptionID != subEmail {
		t.Errorf("unlinked customer's state must still be kept by customer ID: history %+v, %v", hist, err)
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
	for _, ref := range []string{"someone-else", "user_grace"} {
		if s, ok := (eventObject{ClientReferenceID: ref}).checkoutSubject(); ok {
			t.Errorf("client_reference_id %q without tollgate's metadata adopted as %v", ref, s)
		}
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
	cus := h.stripe.customer("ada@example.com", nil)
	sub := h.stripe.subscribe(trialParams(cus))
	p := sessionParams(cus, "user_ada", "price_pro")
	p.Metadata = map[string]string{MetaSubject: "user:user_ada"}
	other := h.stripe.openSession(p)                                          // tollgate's
	apps := h.stripe.openSession(sessionParams(cus, "user_ada", "price_pro")) // the app's own
	body := fixture(t, "checkout.session.completed.json", cus, sub)
	h.calls.fail("POST", "/v1/checkout/sessions/"+other.ID+"/expire", 500, "", 1)
	if rec := h.deliver(body); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("expire failed: status %d, want 503", rec.Code)
	}
	if h.store.commitCount() != 0 {
		t.Error("committed although the expiry failed")
	}
	if rec := h.deliver(body); rec.Code != 200 {
		t.Fatalf("retry: status %d", rec.Code)
	}
	if st := h.stripe.session(other.ID).Status; st != stripe.CheckoutSessionStatusExpired {
		t.Errorf("tollgate's other session is %q, want expired", st)
	}
	if st := h.stripe.session(apps.ID).Status; st != stripe.CheckoutSessionStatusOpen {
		t.Errorf("the app's own session is %q, want open", st)
	}
}

// trialParams is a Checkout Session for user_ada's pro trial, paid with cus.
func trialParams(cus string) *stripe.CheckoutSessionParams {
	p := sessionParams(cus, "user_ada", "price_pro")
	p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(7)}
	return p
}

// fixture reads an event from testdata/events with the customer and
// subscription it names (cus_fixture1, sub_fixture1) replaced by ones the
// sandbox holds.
func fixture(t *testing.T, name, cus, sub string) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", "events", name))
	if err != nil {
		t.Fatal(err)
	}
	body = bytes.ReplaceAll(body, []byte("cus_fixture1"), []byte(cus))
	return bytes.ReplaceAll(body, []byte("sub_fixture1"), []byte(sub))
}

// countingBody counts reads and fails them with err (nil: EOF).
type countingBody struct {
	reads int
	err   error
}

func (b *countingBody) Read([]byte) (int, error) {
	b.reads++
	if b.err != nil {
		return 0, b.err
	}
	return 0, io.EOF
}

// Ensure a delivery without Stripe-Signature is refused before its body is
// read (it cannot verify, and must not hold a reader's slot), and one whose
// body the gateway's byte budget cut gets 503, so Stripe delivers it again.
func TestWebhook_RefusedBeforeTheBodyAndBodyBudget(t *testing.T) {
	h := newHarness(t)
	unsigned := &countingBody{}
	rec := httptest.NewRecorder()
	h.b.WebhookHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/.tollgate/webhooks/stripe", unsigned))
	if rec.Code != http.StatusBadRequest || unsigned.reads != 0 {
		t.Errorf("no Stripe-Signature: %d after %d body reads, want 400 after none", rec.Code, unsigned.reads)
	}
	cut := &countingBody{err: fmt.Errorf("gateway: %w", proxy.ErrBodyBudget)}
	req := httptest.NewRequest(http.MethodPost, "/.tollgate/webhooks/stripe", cut)
	req.Header.Set("Stripe-Signature", signature([]byte("{}"), h.clock.Now(), testSecret))
	rec = httptest.NewRecorder()
	h.b.WebhookHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a body the byte budget cut: %d (Retry-After %q), want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
}

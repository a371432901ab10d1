package stripe

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	stripe "github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
)

func planByKey(key string) *proxy.Plan {
	for _, p := range testPlans() {
		if p.Key == key {
			return &p
		}
	}
	panic("no plan " + key)
}

// sessionForm is the form of the last checkout session tollgate created.
func sessionForm(t *testing.T, h *harness) url.Values {
	t.Helper()
	calls := h.calls.to("POST", "/v1/checkout/sessions")
	if len(calls) == 0 {
		t.Fatal("no checkout session created")
	}
	return calls[len(calls)-1].Form
}

func TestCheckout_NewCustomerPaidTrial(t *testing.T) {
	h := newHarness(t)
	res, err := h.b.Checkout(t.Context(), proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro"), ReturnPath: "/docs?x=1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Portal || !strings.HasPrefix(res.URL, h.stripe.url+"/checkout/pay/cs_test_") {
		t.Errorf("result = %+v", res)
	}
	// The customer: email from the directory, subject in metadata, an idempotency key, linked both ways.
	cc := h.calls.to("POST", "/v1/customers")
	if len(cc) != 1 {
		t.Fatalf("%d customer creations", len(cc))
	}
	if diff := cmp.Diff(url.Values{"email": {"ada@example.com"}, "metadata[clerk_user_id]": {"user_ada"}}, cc[0].Form); diff != "" {
		t.Errorf("customer form (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(cc[0].IdemKey, "tollgate-customer-") {
		t.Errorf("customer idempotency key = %q", cc[0].IdemKey)
	}
	cus, _ := h.store.CustomerOf(t.Context(), userAda())
	if who, ok, _ := h.store.SubjectOf(t.Context(), cus); cus == "" || !ok || who != userAda() {
		t.Errorf("link: %q ↔ %v", cus, who)
	}
	want := url.Values{
		"mode":                                       {"subscription"},
		"customer":                                   {cus},
		"client_reference_id":                        {"user_ada"},
		"line_items[0][price]":                       {"price_pro"},
		"line_items[0][quantity]":                    {"1"},
		"line_items[1][price]":                       {"price_fee"},
		"line_items[1][quantity]":                    {"1"},
		"subscription_data[trial_period_days]":       {"7"},
		"subscription_data[metadata][clerk_user_id]": {"user_ada"},
		"metadata[return_path]":                      {"/docs?x=1"},
		"metadata[clerk_user_id]":                    {"user_ada"},
		"metadata[subject]":                          {"user:user_ada"},
		"metadata[plan]":                             {"pro"},
		"success_url":                                {"https://app.example.test/.tollgate/checkout/done?session_id={CHECKOUT_SESSION_ID}"},
		"cancel_url":                                 {"https://app.example.test/.tollgate/subscribe/pro?return=%2Fdocs%3Fx%3D1"},
	}
	got := sessionForm(t, h)
	if !strings.HasPrefix(got.Get("metadata[terms]"), "tollgate-terms-") {
		t.Errorf("metadata[terms] = %q", got.Get("metadata[terms]"))
	}
	got.Del("metadata[terms]")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("session form (-want +got):\n%s", diff)
	}
	// The pre-sync ran inside: the customer's (empty) state was committed.
	if st, ok := h.store.lastCommit(cus); !ok || st.Subject != userAda() || len(st.Subscriptions) != 0 {
		t.Errorf("pre-sync state = %+v (committed %v)", st, ok)
	}
}

func TestCheckout_TrialOnlyOncePerCustomer(t *testing.T) {
	h := newHarness(t)
	cus := h.stripe.customer("ada@example.com", nil)
	h.link(userAda(), cus)
	p := sessionParams(cus, "user_ada", "price_pro")
	p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(7)}
	sub := h.stripe.subscribe(p)
	h.stripe.setStatus(sub, "canceled")
	if h.stripe.subscription(sub).TrialEnd == 0 {
		t.Fatal("the canceled subscription no longer shows its trial")
	}
	if _, err := h.b.Checkout(t.Context(), proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro")}); err != nil {
		t.Fatal(err)
	}
	f := sessionForm(t, h)
	if f.Has("subscription_data[trial_period_days]") || f.Has("line_items[1][price]") {
		t.Errorf("second trial offered: %v", f)
	}
	if f.Get("line_items[0][price]") != "price_pro" || f.Get("metadata[return_path]") != "/" {
		t.Errorf("form = %v", f)
	}
}

func TestCheckout_TrialRememberedByStoreOnly(t *testing.T) {
	h := newHarness(t)
	cus := h.stripe.customer("ada@example.com", nil)
	h.link(userAda(), cus)
	// Stripe shows nothing; the store remembers a trial it once synced.
	gone := proxy.Subscription{ID: "sub_gone", CustomerID: cus, Status: proxy.StatusCanceled, PriceIDs: []string{"price_pro"},
		Plan: "pro", TrialEnd: h.clock.Now().Add(-30 * 24 * time.Hour), SyncedAt: h.clock.Now()}
	if _, _, err := h.store.CommitCustomer(context.Background(), proxy.CustomerState{CustomerID: cus, Subject: userAda(),
		Subscriptions: []proxy.Subscription{gone}, SyncedAt: h.clock.Now()}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.b.Checkout(t.Context(), proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro")}); err != nil {
		t.Fatal(err)
	}
	if f := sessionForm(t, h); f.Has("subscription_data[trial_period_days]") || f.Has("line_items[1][price]") {
		t.Errorf("second trial offered: %v", f)
	}
}

func TestCheckout_NoTrialDaysNoFee(t *testing.T) {
	h := newHarness(t)
	if _, err := h.b.Checkout(t.Context(), proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("basic")}); err != nil {
		t.Fatal(err)
	}
	f := sessionForm(t, h)
	if f.Has("subscription_data[trial_period_days]") || f.Has("line_items[1][price]") || f.Get("line_items[0][price]") != "price_other" {
		t.Errorf("form = %v", f)
	}
}

func TestCheckout_LiveSubscriptionGoesToPortal(t *testing.T) {
	for _, tc := range []struct {
		status string
		portal bool
	}{
		{"active", true}, {"trialing", true}, {"past_due", true}, {"unpaid", true}, {"incomplete", true}, {"paused", true},
		{"canceled", false}, {"incomplete_expired", false},
	} {
		t.Run(tc.status, func(t *testing.T) {
			h := newHarness(t)
			cus := h.stripe.customer("ada@example.com", nil)
			h.link(userAda(), cus)
			h.stripe.subscribeWith(cus, tc.status, "price_other")
			res, err := h.b.Checkout(t.Context(), proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro"), ReturnPath: "/app"})
			if err != nil {
				t.Fatal(err)
			}
			sessions := h.calls.to("POST", "/v1/checkout/sessions")
			portals := h.calls.to("POST", "/v1/billing_portal/sessions")
			if res.Portal != tc.portal || (len(portals) == 1) != tc.portal || (len(sessions) == 1) == tc.portal {
				t.Fatalf("result %+v, %d portal and %d checkout sessions", res, len(portals), len(sessions))
			}
			if tc.portal {
				if !strings.HasPrefix(res.URL, h.stripe.url+"/portal/bps_") {
					t.Errorf("portal URL = %q", res.URL)
				}
				if diff := cmp.Diff(url.Values{"customer": {cus}, "return_url": {"https://app.example.test/app"}}, portals[0].Form); diff != "" {
					t.Errorf("portal form (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestCheckout_OrganisationPlanBillsTheOrganisation(t *testing.T) {
	h := newHarness(t)
	res, err := h.b.Checkout(t.Context(), proxy.CheckoutRequest{Identity: idGrace(), Subject: orgAcme(), Plan: planByKey("team"), ReturnPath: "/team"})
	if err != nil || res.Portal {
		t.Fatalf("res %+v, err %v", res, err)
	}
	cc := h.calls.to("POST", "/v1/customers")
	if len(cc) != 1 {
		t.Fatalf("%d customers created", len(cc))
	}
	if diff := cmp.Diff(url.Values{"email": {"grace@example.com"}, "metadata[clerk_org_id]": {"org_acme"}}, cc[0].Form); diff != "" {
		t.Errorf("customer form (-want +got):\n%s", diff)
	}
	if cus, _ := h.store.CustomerOf(t.Context(), orgAcme()); cus == "" {
		t.Error("organisation not linked")
	}
	if cus, _ := h.store.CustomerOf(t.Context(), proxy.Subject{Kind: proxy.SubjectUser, ID: "user_grace"}); cus != "" {
		t.Error("the admin got the organisation's customer")
	}
	f := sessionForm(t, h)
	for k, v := range map[string]string{
		"client_reference_id":                       "user_grace",
		"subscription_data[metadata][clerk_org_id]": "org_acme",
		"metadata[subject]":                         "org:org_acme",
		"metadata[clerk_user_id]":                   "user_grace",
		"line_items[0][price]":                      "price_team",
	} {
		if f.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, f.Get(k), v)
		}
	}
	if f.Has("subscription_data[metadata][clerk_user_id]") {
		t.Error("organisation subscription carries a user ID")
	}
}

func TestCheckout_RepeatIsIdempotent(t *testing.T) {
	h := newHarness(t)
	req := proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro"), ReturnPath: "/docs"}
	first, err := h.b.Checkout(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := h.b.Checkout(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if first.URL != second.URL {
		t.Errorf("repeat got another session: %q vs %q", first.URL, second.URL)
	}
	if n := len(h.calls.to("POST", "/v1/customers")); n != 1 {
		t.Errorf("%d customers created", n)
	}
	// The open session was found and handed out again: one creation.
	s := h.calls.to("POST", "/v1/checkout/sessions")
	if len(s) != 1 || s[0].IdemKey == "" {
		t.Errorf("session calls = %+v", s)
	}
	// Another return path is another request: the open session is expired
	// first, so the subject never has two open at once.
	req.ReturnPath = "/other"
	third, err := h.b.Checkout(t.Context(), req)
	if err != nil || third.URL == first.URL {
		t.Errorf("different request reused the session (%v)", err)
	}
	exp := h.calls.to("POST", "/v1/checkout/sessions/")
	if len(exp) != 1 || !strings.HasSuffix(exp[0].Path, "/expire") {
		t.Fatalf("expire calls = %+v", exp)
	}
	firstID := strings.TrimSuffix(strings.TrimPrefix(exp[0].Path, "/v1/checkout/sessions/"), "/expire")
	if st := h.stripe.session(firstID).Status; st != stripe.CheckoutSessionStatusExpired {
		t.Errorf("first session %s is %q, want expired", firstID, st)
	}
}

// A request repeated after its session closed is not sent back to it,
// even when Stripe replays the old answer to the same idempotency key.
func TestCheckout_ReplayedClosedSessionIsNeverHandedOut(t *testing.T) {
	h := newHarness(t)
	req := proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro"), ReturnPath: "/docs"}
	first, err := h.b.Checkout(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	// The session closed without a subscription to show for it (it
	// expired): nothing tollgate reads has changed, so the same request
	// sends the same key, and Stripe replays the session.
	sid := sessionOf(t, h, first.URL)
	h.stripe.expire(sid)
	second, err := h.b.Checkout(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if second.URL == first.URL || second.URL == "" {
		t.Errorf("sent back to the closed session %s: %q", sid, second.URL)
	}
	if st := h.stripe.session(sessionOf(t, h, second.URL)).Status; st != stripe.CheckoutSessionStatusOpen {
		t.Errorf("handed out a session that is %s", st)
	}
	s := h.calls.to("POST", "/v1/checkout/sessions")
	if len(s) != 3 || !s[1].Replayed || s[2].Replayed || s[2].IdemKey == s[1].IdemKey {
		t.Errorf("session calls: %+v", s)
	}
}

func TestCheckout_ConcurrentFirstCheckoutsCreateOneCustomer(t *testing.T) {
	h := newHarness(t)
	req := proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro")}
	errs := make(chan error, 4)
	for range 4 {
		go func() { _, err := h.b.Checkout(t.Context(), req); errs <- err }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := len(h.calls.to("POST", "/v1/customers")); n != 1 {
		t.Errorf("%d customers created", n)
	}
	if n := h.b.locks.size(); n != 0 {
		t.Errorf("%d locks left behind", n)
	}
}

func TestCheckout_DeletedCustomerIsReplaced(t *testing.T) {
	h := newHarness(t)
	old := h.stripe.customer("ada@example.com", nil)
	h.stripe.deleteCustomer(old)
	h.link(userAda(), old)
	if _, err := h.b.Checkout(t.Context(), proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro")}); err != nil {
		t.Fatal(err)
	}
	cus, _ := h.store.CustomerOf(t.Context(), userAda())
	if cus == old || cus == "" || sessionForm(t, h).Get("customer") != cus {
		t.Errorf("customer = %q, session for %q", cus, sessionForm(t, h).Get("customer"))
	}
}

func TestCheckout_RefusesInconsistentRequests(t *testing.T) {
	h := newHarness(t)
	cases := map[string]proxy.CheckoutRequest{
		"no identity":        {Subject: userAda(), Plan: planByKey("pro")},
		"no plan":            {Identity: idAda(), Subject: userAda()},
		"org plan, user":     {Identity: idGrace(), Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_grace"}, Plan: planByKey("team")},
		"user plan, org":     {Identity: idGrace(), Subject: orgAcme(), Plan: planByKey("pro")},
		"someone else":       {Identity: idAda(), Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_grace"}, Plan: planByKey("pro")},
		"not the active org": {Identity: idGrace(), Subject: proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_other"}, Plan: planByKey("team")},
	}
	for name, req := range cases {
		if _, err := h.b.Checkout(t.Context(), req); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if n := len(h.calls.all()); n != 0 {
		t.Errorf("%d Stripe calls", n)
	}
}

func TestCheckout_DirectoryFailureCreatesNothing(t *testing.T) {
	h := newHarness(t)
	h.dir.err = errors.New("clerk down")
	if _, err := h.b.Checkout(t.Context(), proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro")}); err == nil {
		t.Fatal("no error")
	}
	if n := len(h.calls.all()); n != 0 {
		t.Errorf("%d Stripe calls", n)
	}
}

func TestCheckout_StripeDownIsErrStripeUnavail(t *testing.T) {
	h := newHarness(t)
	h.calls.fail("POST", "/v1/customers", 500, "", -1)
	_, err := h.b.Checkout(t.Context(), proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro")})
	if !errors.Is(err, proxy.ErrStripeUnavail) {
		t.Errorf("err = %v, want ErrStripeUnavail", err)
	}
}

func TestCompleteCheckout_ForeignOrUnknownSessionIsNotYours(t *testing.T) {
	h := newHarness(t)
	cusG := h.stripe.customer("grace@example.com", nil)
	grace := h.stripe.openSession(sessionParams(cusG, "user_grace", "price_pro"))
	h.stripe.pay(grace)
	anon := h.stripe.openSession(sessionParams(cusG, "", "price_pro"))
	h.stripe.pay(anon)
	for _, id := range []string{grace.ID, anon.ID, "cs_test_missing"} {
		if _, err := h.b.CompleteCheckout(t.Context(), id, idAda()); !errors.Is(err, proxy.ErrNotYours) {
			t.Errorf("%s: err = %v, want ErrNotYours", id, err)
		}
	}
	if _, err := h.b.CompleteCheckout(t.Context(), grace.ID, nil); !errors.Is(err, proxy.ErrNotYours) {
		t.Errorf("no identity: err = %v", err)
	}
	if h.store.commitCount() != 0 || h.cache.count() != 0 {
		t.Error("a foreign session changed state")
	}
	if _, ok := h.store.subjectOf(cusG); ok {
		t.Error("a foreign session linked its customer")
	}
}

func TestCompleteCheckout_SettledWritesCache(t *testing.T) {
	h := newHarness(t)
	cus := h.stripe.customer("ada@example.com", map[string]string{MetaUserID: "user_ada"})
	p := sessionParams(cus, "user_ada", "price_pro")
	p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(7)}
	p.Metadata = map[string]string{MetaReturnPath: "/docs", MetaSubject: "user:user_ada"}
	cs := h.stripe.openSession(p)
	sub := h.stripe.pay(cs)
	ret, err := h.b.CompleteCheckout(t.Context(), cs.ID, idAda())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(proxy.CheckoutReturn{ReturnPath: "/docs", Settled: true}, ret); diff != "" {
		t.Errorf("return (-want +got):\n%s", diff)
	}
	ents, ok := h.cache.last(userAda())
	if !ok || statuses(ents)[sub] != proxy.StatusTrialing {
		t.Errorf("cache = %v, %v", statuses(ents), ok)
	}
	if got, _ := h.store.CustomerOf(t.Context(), userAda()); got != cus {
		t.Errorf("not linked: %q", got)
	}
	get := h.calls.to("GET", "/v1/checkout/sessions/"+cs.ID)
	if len(get) != 1 || get[0].Form.Get("expand[0]") != "subscription" {
		t.Errorf("session get = %+v", get)
	}
}

func TestCompleteCheckout_NotSettledYet(t *testing.T) {
	h := newHarness(t)
	cus := h.stripe.customer("ada@example.com", nil)
	h.link(userAda(), cus)
	p := sessionParams(cus, "user_ada", "price_pro")
	p.Metadata = map[string]string{MetaReturnPath: "/x"}
	cs := h.stripe.openSession(p)
	h.stripe.setStatus(h.stripe.pay(cs), "incomplete")
	ret, err := h.b.CompleteCheckout(t.Context(), cs.ID, idAda())
	if err != nil || ret.Settled || ret.ReturnPath != "/x" {
		t.Errorf("ret %+v, err %v", ret, err)
	}
	// Still open, no customer yet: nothing to sync, not settled.
	open := h.stripe.openSession(sessionParams("", "user_ada", "price_pro"))
	if ret, err := h.b.CompleteCheckout(t.Context(), open.ID, idAda()); err != nil || ret.Settled {
		t.Errorf("open session: ret %+v, err %v", ret, err)
	}
}

func TestPortal(t *testing.T) {
	h := newHarness(t)
	if _, err := h.b.Portal(t.Context(), userAda(), "https://app.example.test/.tollgate/account"); !errors.Is(err, proxy.ErrNoCustomer) {
		t.Errorf("no customer: err = %v", err)
	}
	cus := h.stripe.customer("ada@example.com", nil)
	h.link(userAda(), cus)
	u, err := h.b.Portal(t.Context(), userAda(), "https://app.example.test/.tollgate/account")
	if err != nil || !strings.HasPrefix(u, h.stripe.url+"/portal/bps_") {
		t.Fatalf("url %q, err %v", u, err)
	}
	c := h.calls.to("POST", "/v1/billing_portal/sessions")
	if diff := cmp.Diff(url.Values{"customer": {cus}, "return_url": {"https://app.example.test/.tollgate/account"}}, c[0].Form); diff != "" {
		t.Errorf("portal form (-want +got):\n%s", diff)
	}
}

// The portal for a customer the key cannot see is that outage, named and
// counted, not a hint about the portal's settings.
func TestPortal_CustomerTheKeyCannotSee(t *testing.T) {
	obs := &testObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	// A customer of live mode, and a test-mode key.
	h.link(userAda(), h.stripe.liveCustomer("ada@example.com", nil))
	_, err := h.b.Portal(t.Context(), userAda(), "https://app.example.test/.tollgate/account")
	if !errors.Is(err, ErrCustomerUnseen) || obs.count(AnomalyCustomerUnseen) != 1 {
		t.Errorf("portal: %v, anomalies %v", err, obs.anomalies)
	}
}

// sessionOf is the ID of the Checkout Session a hosted page URL opens.
func sessionOf(t *testing.T, h *harness, pageURL string) string {
	t.Helper()
	id, ok := strings.CutPrefix(pageURL, h.stripe.url+"/checkout/pay/")
	if !ok {
		t.Fatalf("%q is not a hosted Checkout page", pageURL)
	}
	return id
}

// Stripe saves a request's server error under its idempotency key and
// replays it for a day (docs.stripe.com/api/idempotent_requests): after a
// failed creation the visitor's next try uses another key and gets a
// session, instead of the saved failure.
func TestCheckout_AfterAStripeFailureTheNextTryIsNotItsReplay(t *testing.T) {
	h := newHarness(t)
	req := proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro"), ReturnPath: "/docs"}
	h.stripe.sb.InjectAPIError("POST /v1/checkout/sessions", 1)
	if _, err := h.b.Checkout(t.Context(), req); !errors.Is(err, proxy.ErrStripeUnavail) {
		t.Fatalf("first try: err = %v, want Stripe unavailable", err)
	}
	res, err := h.b.Checkout(t.Context(), req)
	if err != nil || res.URL == "" {
		t.Fatalf("second try: %+v, %v", res, err)
	}
	keys := map[string]bool{}
	for _, c := range h.calls.to("POST", "/v1/checkout/sessions") {
		keys[c.IdemKey] = true
	}
	if len(keys) < 2 {
		t.Errorf("the retry reused the failed key: %v", keys)
	}
}

package stripesandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// rawCall sends a request with key and optional Stripe-Version, and
// returns the status, the Stripe-Version answered, and the body decoded
// as a generic map.
func (f *fixture) rawCall(t *testing.T, method, path, key, version string, form url.Values) (int, string, map[string]any) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, body)
	req.Header.Set("Authorization", "Bearer "+key)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if version != "" {
		req.Header.Set("Stripe-Version", version)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return res.StatusCode, res.Header.Get("Stripe-Version"), m
}

func (f *fixture) liveClient() *client.API {
	return client.New(f.s.LiveSecretKey(), stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String(f.srv.URL), HTTPClient: f.srv.Client(), MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}, EnableTelemetry: stripe.Bool(false),
	}))
}

func hasKey(m map[string]any, k string) bool { _, ok := m[k]; return ok }

// A key sees only its own mode's objects: the other mode's are
// resource_missing, with the hint Stripe gives; lists leave them out; each
// mode's events go to that mode's endpoint, with livemode set.
func TestModesAreSeparate(t *testing.T) {
	f := newSBFixture(t, Options{LivePrices: []Price{
		{ID: "price_live_pro", Product: "Pro", Currency: "usd", UnitAmount: 1200, Interval: "month"},
	}})
	liveHook := &receiver{secret: "whsec_live"}
	liveSrv := httpServer(t, liveHook)
	f.s.SetLiveWebhook(liveSrv, "whsec_live")
	live := f.liveClient()

	testCus := f.customer(t, "ada@example.com", "user_ada")
	liveCus, err := live.Customers.New(&stripe.CustomerParams{Email: stripe.String("ada@example.com")})
	if err != nil || !liveCus.Livemode || testCus.Livemode {
		t.Fatalf("customers: live %+v %v; test livemode %v", liveCus, err, testCus.Livemode)
	}
	_, err = live.Customers.Get(testCus.ID, nil)
	se := asStripeError(t, err)
	want := "No such customer: '" + testCus.ID + "'; a similar object exists in test mode, but a live mode key was used to make this request."
	if se.HTTPStatusCode != 404 || se.Code != stripe.ErrorCodeResourceMissing || se.Param != "id" || se.Msg != want {
		t.Errorf("live key, test customer: %d %s %s %q", se.HTTPStatusCode, se.Code, se.Param, se.Msg)
	}
	_, err = f.sc.Customers.Get(liveCus.ID, nil)
	if se := asStripeError(t, err); se.HTTPStatusCode != 404 || !strings.Contains(se.Msg, "exists in live mode, but a test mode key") {
		t.Errorf("test key, live customer: %d %q", se.HTTPStatusCode, se.Msg)
	}
	if _, err := f.sc.Customers.Get("cus_nobody", nil); asStripeError(t, err).Msg != "No such customer: 'cus_nobody'" {
		t.Errorf("unknown customer: %v", err)
	}
	// Prices are per mode too.
	if _, err := live.Prices.Get("price_demo_pro_monthly", nil); asStripeError(t, err).HTTPStatusCode != 404 {
		t.Errorf("live key, test price: %v", err)
	}
	if p, err := live.Prices.Get("price_live_pro", nil); err != nil || !p.Livemode {
		t.Errorf("live price: %+v %v", p, err)
	}
	_, err = f.sc.CheckoutSessions.New(checkoutParams(testCus.ID, "price_live_pro", 0, ""))
	if se := asStripeError(t, err); se.HTTPStatusCode != 400 || se.Param != "line_items[0][price]" {
		t.Errorf("test checkout with a live price: %d %s", se.HTTPStatusCode, se.Param)
	}
	// A subscription list for another mode's customer is refused.
	it := live.Subscriptions.List(&stripe.SubscriptionListParams{Customer: stripe.String(testCus.ID)})
	it.Next()
	if se := asStripeError(t, it.Err()); se.HTTPStatusCode != 400 || se.Param != "customer" {
		t.Errorf("live list of a test customer's subscriptions: %v", it.Err())
	}

	// A live checkout: cs_live_, live subscription, live events to the
	// live endpoint only.
	cs, err := live.CheckoutSessions.New(checkoutParams(liveCus.ID, "price_live_pro", 0, ""))
	if err != nil || !strings.HasPrefix(cs.ID, "cs_live_") || !cs.Livemode {
		t.Fatalf("live checkout: %+v %v", cs, err)
	}
	f.pay(t, cs)
	f.wait(t)
	liveEvents, problems := liveHook.snapshot()
	if len(problems) > 0 {
		t.Fatalf("live endpoint: %v", problems)
	}
	for _, ev := range liveEvents {
		if !ev.Livemode {
			t.Errorf("live endpoint got a test event %s", ev.Type)
		}
	}
	if got := liveHook.types(); !slices.Contains(got, "checkout.session.completed") || slices.Contains(f.hook.types(), "checkout.session.completed") {
		t.Errorf("live events %v, test events %v", got, f.hook.types())
	}
	for _, ev := range func() []stripe.Event { e, _ := f.hook.snapshot(); return e }() {
		if ev.Livemode {
			t.Errorf("test endpoint got a live event %s", ev.Type)
		}
	}
	// Lists leave the other mode out.
	n := 0
	for it := f.sc.Customers.List(&stripe.CustomerListParams{}); it.Next(); n++ {
		if it.Customer().ID == liveCus.ID {
			t.Errorf("test list shows the live customer")
		}
	}
	if n != 1 {
		t.Errorf("test customers: %d, want 1", n)
	}
	for it := f.sc.Events.List(&stripe.EventListParams{}); it.Next(); {
		if it.Event().Livemode {
			t.Errorf("test key lists live event %s", it.Event().Type)
		}
	}
	// The account is the same for both keys.
	a, err := live.Accounts.Get()
	if err != nil || a.ID != accountID || !a.ChargesEnabled {
		t.Errorf("account: %+v %v", a, err)
	}
	if a, err := f.sc.Accounts.Get(); err != nil || a.ID != accountID {
		t.Errorf("account (test key): %+v %v", a, err)
	}
}

func httpServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := newLoopbackServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// Checkout Sessions can be listed by customer and status, and expiring
// one that is not open is refused with Stripe's words.
func TestCheckoutListAndExpire(t *testing.T) {
	f := newSBFixture(t, Options{})
	cus := f.customer(t, "ada@example.com", "user_ada")
	other := f.customer(t, "grace@example.com", "user_grace")
	a := f.checkout(t, checkoutParams(cus.ID, "price_demo_pro_monthly", 0, ""))
	b := f.checkout(t, checkoutParams(cus.ID, "price_demo_team_monthly", 0, ""))
	f.checkout(t, checkoutParams(other.ID, "price_demo_pro_monthly", 0, ""))
	list := func(p *stripe.CheckoutSessionListParams) []string {
		t.Helper()
		var ids []string
		it := f.sc.CheckoutSessions.List(p)
		for it.Next() {
			ids = append(ids, it.CheckoutSession().ID)
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := list(&stripe.CheckoutSessionListParams{Customer: stripe.String(cus.ID), Status: stripe.String("open")}); !slices.Equal(got, []string{b.ID, a.ID}) {
		t.Errorf("open sessions of the customer: %v, want [%s %s]", got, b.ID, a.ID)
	}
	f.pay(t, a)
	exp, err := f.sc.CheckoutSessions.Expire(b.ID, nil)
	if err != nil || exp.Status != stripe.CheckoutSessionStatusExpired || exp.URL != "" {
		t.Fatalf("expire: %+v %v", exp, err)
	}
	_, err = f.sc.CheckoutSessions.Expire(a.ID, nil)
	se := asStripeError(t, err)
	if se.HTTPStatusCode != 400 || se.Msg != "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of `complete`." {
		t.Errorf("expire a complete session: %d %q", se.HTTPStatusCode, se.Msg)
	}
	if got := list(&stripe.CheckoutSessionListParams{Customer: stripe.String(cus.ID), Status: stripe.String("open")}); len(got) != 0 {
		t.Errorf("open sessions after paying one and expiring the other: %v", got)
	}
	if got := list(&stripe.CheckoutSessionListParams{Customer: stripe.String(cus.ID)}); !slices.Equal(got, []string{b.ID, a.ID}) {
		t.Errorf("all sessions: %v", got)
	}
	if res, body := f.postForm(t, b.URL, url.Values{"card_number": {"4242424242424242"}}); res.StatusCode != http.StatusGone {
		t.Errorf("paying an expired session: %d %.200s", res.StatusCode, body)
	}
	f.wait(t)
	if got := f.hook.types(); !slices.Contains(got, "checkout.session.expired") {
		t.Errorf("no checkout.session.expired among %v", got)
	}
}

// Every answer is rendered in the Stripe-Version the request names, else
// in the account's default; events in the account's default when they
// happen. 2023-10-16 and the basil shapes differ where Stripe says.
func TestAPIVersions(t *testing.T) {
	for _, v := range APIVersions() {
		t.Run(v, func(t *testing.T) {
			f := newSBFixture(t, Options{APIVersion: v})
			basil := v != APIVersion
			cus := f.customer(t, "ada@example.com", "user_ada")
			sub := f.subscribe(t, cus.ID, "price_demo_pro_monthly", 0) // stripe-go asks for 2023-10-16
			if sub.CurrentPeriodEnd == 0 || sub.Items.Data[0].Price.ID != "price_demo_pro_monthly" {
				t.Errorf("stripe-go's pinned version lost the period: %+v", sub)
			}
			// Without a Stripe-Version header: the account's default.
			code, got, m := f.rawCall(t, "GET", "/v1/subscriptions/"+sub.ID, f.s.SecretKey(), "", nil)
			if code != 200 || got != v {
				t.Fatalf("default version: %d %q, want %q", code, got, v)
			}
			item := m["items"].(map[string]any)["data"].([]any)[0].(map[string]any)
			if hasKey(m, "current_period_end") == basil || hasKey(item, "current_period_end") != basil {
				t.Errorf("%s: subscription has current_period_end %v, its item %v", v, hasKey(m, "current_period_end"), hasKey(item, "current_period_end"))
			}
			code, got, m = f.rawCall(t, "GET", "/v1/subscriptions/"+sub.ID, f.s.SecretKey(), APIVersion, nil)
			if code != 200 || got != APIVersion || !hasKey(m, "current_period_end") {
				t.Errorf("asked for %s: %d %q %v", APIVersion, code, got, hasKey(m, "current_period_end"))
			}
			if code, _, _ := f.rawCall(t, "GET", "/v1/subscriptions/"+sub.ID, f.s.SecretKey(), "yesterday", nil); code != 400 {
				t.Errorf("bad Stripe-Version: %d", code)
			}
			// Events carry the account's version.
			f.wait(t)
			evs, _ := f.hook.snapshot()
			for _, ev := range evs {
				if ev.APIVersion != v {
					t.Errorf("event %s in %q, want %q", ev.Type, ev.APIVersion, v)
				}
				var obj map[string]any
				_ = json.Unmarshal(ev.Data.Raw, &obj)
				switch obj["object"] {
				case "subscription":
					if hasKey(obj, "current_period_end") == basil {
						t.Errorf("%s %s: current_period_end present %v", v, ev.Type, !basil)
					}
				case "invoice":
					parent, _ := obj["parent"].(map[string]any)
					if hasKey(obj, "subscription") == basil || hasKey(obj, "paid") == basil || (parent != nil) != basil {
						t.Errorf("%s %s: subscription %v paid %v parent %v", v, ev.Type, hasKey(obj, "subscription"), hasKey(obj, "paid"), parent)
					}
					if basil && parent["subscription_details"].(map[string]any)["subscription"] != sub.ID {
						t.Errorf("invoice parent %v", parent)
					}
					if obj["customer"] != cus.ID {
						t.Errorf("invoice customer %v", obj["customer"])
					}
				case "checkout.session":
					want := "hosted"
					if v == APIVersionLatest {
						want = "hosted_page"
					}
					if obj["ui_mode"] != want || hasKey(obj, "shipping_details") == basil {
						t.Errorf("%s session: ui_mode %v shipping_details %v", v, obj["ui_mode"], hasKey(obj, "shipping_details"))
					}
				}
			}
			// A renewal's previous_attributes name the old period where
			// the version keeps it.
			f.s.Advance(32 * 24 * time.Hour)
			f.wait(t)
			evs, _ = f.hook.snapshot()
			var prev map[string]any
			for _, ev := range evs {
				if ev.Type == "customer.subscription.updated" {
					prev = ev.Data.PreviousAttributes
				}
			}
			if basil {
				items, _ := prev["items"].(map[string]any)
				if hasKey(prev, "current_period_end") || items == nil {
					t.Errorf("basil previous_attributes %v", prev)
				}
			} else if !hasKey(prev, "current_period_end") {
				t.Errorf("2023-10-16 previous_attributes %v", prev)
			}
			// The Events API renders them as they were made, whatever the
			// request's version.
			e, err := f.sc.Events.Get(evs[0].ID, nil)
			if err != nil || e.APIVersion != v {
				t.Errorf("Events.Get: %v %v", e.APIVersion, err)
			}
		})
	}
}

// pause_collection keeps the status active; renewals are invoiced but not
// collected; collection resumes at resumes_at.
func TestPauseCollection(t *testing.T) {
	f := newSBFixture(t, Options{})
	cus := f.customer(t, "ada@example.com", "user_ada")
	sub := f.subscribe(t, cus.ID, "price_demo_pro_monthly", 0)
	resumes := f.s.BillingNow().Add(45 * 24 * time.Hour).Unix()
	form := url.Values{"pause_collection[behavior]": {"void"}, "pause_collection[resumes_at]": {strconvI(resumes)}}
	if code, _, m := f.rawCall(t, "POST", "/v1/subscriptions/"+sub.ID, f.s.SecretKey(), "", form); code != 200 {
		t.Fatalf("pause: %d %v", code, m)
	}
	got := f.sub(t, sub.ID)
	if got.Status != stripe.SubscriptionStatusActive || got.PauseCollection == nil ||
		got.PauseCollection.Behavior != "void" || got.PauseCollection.ResumesAt != resumes {
		t.Fatalf("paused: %s %+v", got.Status, got.PauseCollection)
	}
	f.s.FailNextPayments(cus.ID, true) // nothing is collected, so nothing fails
	f.s.Advance(32 * 24 * time.Hour)
	got = f.sub(t, sub.ID)
	if got.Status != stripe.SubscriptionStatusActive || got.CurrentPeriodStart <= sub.CurrentPeriodStart {
		t.Errorf("renewed while paused: %s period %d", got.Status, got.CurrentPeriodStart)
	}
	inv, err := f.sc.Invoices.Get(got.LatestInvoice.ID, nil)
	if err != nil || inv.Status != stripe.InvoiceStatusVoid || inv.Paid {
		t.Errorf("invoice while paused: %+v %v", inv, err)
	}
	f.s.Advance(14 * 24 * time.Hour) // past resumes_at
	if got = f.sub(t, sub.ID); got.PauseCollection != nil {
		t.Errorf("still paused after resumes_at: %+v", got.PauseCollection)
	}
	f.wait(t)
	if types := f.hook.types(); !slices.Contains(types, "invoice.voided") || slices.Contains(types, "invoice.payment_failed") {
		t.Errorf("events %v", types)
	}
	// Clearing it with an empty string, as the API allows.
	f.rawCall(t, "POST", "/v1/subscriptions/"+sub.ID, f.s.SecretKey(), "", url.Values{"pause_collection[behavior]": {"keep_as_draft"}})
	if code, _, _ := f.rawCall(t, "POST", "/v1/subscriptions/"+sub.ID, f.s.SecretKey(), "", url.Values{"pause_collection": {""}}); code != 200 {
		t.Fatal(code)
	}
	if got = f.sub(t, sub.ID); got.PauseCollection != nil {
		t.Errorf("cleared: %+v", got.PauseCollection)
	}
	if code, _, _ := f.rawCall(t, "POST", "/v1/subscriptions/"+sub.ID, f.s.SecretKey(), "", url.Values{"pause_collection[behavior]": {"nap"}}); code != 400 {
		t.Errorf("bad behavior: %d", code)
	}
}

func strconvI(n int64) string { return strconv.FormatInt(n, 10) }

func newLoopbackServer(h http.Handler) *httptest.Server { return httptest.NewServer(h) }

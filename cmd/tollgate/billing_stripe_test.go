package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
	stripeclient "github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/sandbox/stripe"
	"github.com/tollgate/tollgate/proxy/stripe"
)

// The end-to-end tests of what real Stripe does and a kind stand-in would
// not show (issue 9, items 8 to 12). Each runs the real gateway over real
// HTTP against the sandbox Stripe, once with the account's default API
// version at the one tollgate's stripe-go pins and once at the newest.

// eachAPIVersion runs fn once per API version the sandbox renders, as the
// Stripe account's default (what webhooks arrive in).
func eachAPIVersion(t *testing.T, fn func(t *testing.T, version string)) {
	for _, v := range stripesandbox.APIVersions() {
		t.Run(v, func(t *testing.T) { fn(t, v) })
	}
}

// stripeAPI is a stripe-go client for the demo's sandbox with key: what an
// operator's own scripts, the Dashboard or another replica would do.
func stripeAPI(d *demo, key string) *stripeclient.API {
	return stripeclient.New(key, stripego.NewBackendsWithConfig(&stripego.BackendConfig{
		URL: stripego.String(d.StripeURL), LeveledLogger: &stripego.LeveledLogger{Level: stripego.LevelNull},
	}))
}

// waitStartReconcile waits until the demo gateway's first account-wide
// reconcile has completed (its metric, set by the background loop), then
// for its catch-up: a catch-up of its own, which waits on the store's
// writes the background one makes, leaves nothing for it to process.
func waitStartReconcile(t *testing.T, d *demo) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(d.AdminURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if v := metricValue(readBody(t, resp), "tollgate_reconcile_last_completed_timestamp_seconds"); v != "" && v != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the start reconcile did not complete within 30 s")
		}
		time.Sleep(20 * time.Millisecond) // the demo's background loop has no hook to wait on
	}
	if _, err := d.gateway.Billing.CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// customerOf is the subject's Stripe customer in the gateway's store.
func customerOf(t *testing.T, d *demo, userID string) string {
	t.Helper()
	cus, err := d.gateway.Store.CustomerOf(t.Context(), proxy.Subject{Kind: proxy.SubjectUser, ID: userID})
	if err != nil || cus == "" {
		t.Fatalf("customer of %s: %q %v", userID, cus, err)
	}
	return cus
}

// liveSubscriptions counts the customer's subscriptions that Stripe will
// keep charging (or is trying to).
func liveSubscriptions(t *testing.T, d *demo, cus string) int {
	t.Helper()
	n := 0
	it := stripeAPI(d, d.Stripe.SecretKey()).Subscriptions.List(&stripego.SubscriptionListParams{Customer: stripego.String(cus)})
	for it.Next() {
		switch it.Subscription().Status {
		case "active", "trialing", "past_due", "unpaid", "incomplete":
			n++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkoutURL POSTs the upgrade page's form and returns where it sends the
// visitor (Stripe's Checkout page, or the portal).
func checkoutURL(t *testing.T, d *demo, c *http.Client, plan, ret string) string {
	t.Helper()
	resp := form(t, c, d.URL+"/.tollgate/checkout", url.Values{"plan": {plan}, "return": {ret}})
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || loc == "" {
		t.Fatalf("checkout %s: %d %q %.300s", plan, resp.StatusCode, loc, readBody(t, resp))
	}
	return loc
}

// userPlans makes the demo's team plan a user plan too, so one person can
// try to buy both.
func userPlans(cfg *proxy.Config) {
	for i := range cfg.Plans {
		cfg.Plans[i].Scope = proxy.SubjectUser
	}
}

// Item 8: two tabs, two plans. Each tab opens Checkout; the second
// expires the first tab's session, so the first tab cannot pay, and Ada
// ends up with one subscription. The same request twice gets the same
// session back.
func TestStripe_TwoTabsNeverPayForTwoSubscriptions(t *testing.T) {
	eachAPIVersion(t, func(t *testing.T, version string) {
		d, _ := mustRunDemoWith(t, demoOptions{Tweak: userPlans, Stripe: stripesandbox.Options{APIVersion: version}})
		jar, _ := cookiejar.New(nil)
		c := noRedirects(jar)
		signIn(t, d, jar, "user_ada")

		tab1 := checkoutURL(t, d, c, "pro", "/routes/415VNA/")
		if again := checkoutURL(t, d, c, "pro", "/routes/415VNA/"); again != tab1 {
			t.Errorf("the same checkout twice: %q then %q, want the open session again", tab1, again)
		}
		tab2 := checkoutURL(t, d, c, "team", "/routes/258AVO/")
		if tab2 == tab1 || !strings.HasPrefix(tab2, d.StripeURL+"/checkout/pay/") {
			t.Fatalf("second plan: %q", tab2)
		}
		// Tab 1 was left open; its session is expired now.
		if resp := form(t, c, tab1, testCard); resp.StatusCode != http.StatusGone {
			t.Errorf("paying the first tab's session: %d, want 410 (expired)", resp.StatusCode)
		}
		resp := form(t, c, tab2, testCard)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("paying the second tab: %d", resp.StatusCode)
		}
		if resp := get(t, c, resp.Header.Get("Location"), page); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("checkout return: %d", resp.StatusCode)
		}
		waitWebhooks(t, d)
		if n := liveSubscriptions(t, d, customerOf(t, d, "user_ada")); n != 1 {
			t.Errorf("Ada holds %d live subscriptions, want 1", n)
		}
	})
}

// Item 8: a session tollgate did not hand out this time (another replica
// opened it in the same second) is expired as soon as one checkout
// completes: on the visitor's return, and by the checkout.session.completed
// webhook when the visitor never comes back.
func TestStripe_CompletedCheckoutExpiresTheOtherOpenSessions(t *testing.T) {
	for _, path := range []string{"return", "webhook"} {
		t.Run(path, func(t *testing.T) {
			eachAPIVersion(t, func(t *testing.T, version string) {
				d, _ := mustRunDemoWith(t, demoOptions{Stripe: stripesandbox.Options{APIVersion: version}})
				jar, _ := cookiejar.New(nil)
				c := noRedirects(jar)
				signIn(t, d, jar, "user_ada")
				pay := checkoutURL(t, d, c, "pro", "/routes/415VNA/")
				cus := customerOf(t, d, "user_ada")

				// The racing replica's session, as tollgate writes them.
				sc := stripeAPI(d, d.Stripe.SecretKey())
				p := &stripego.CheckoutSessionParams{Mode: stripego.String("subscription"), Customer: stripego.String(cus),
					ClientReferenceID: stripego.String("user_ada"),
					SuccessURL:        stripego.String(d.URL + "/.tollgate/checkout/done?session_id={CHECKOUT_SESSION_ID}"),
					LineItems:         []*stripego.CheckoutSessionLineItemParams{{Price: stripego.String("price_demo_pro_monthly"), Quantity: stripego.Int64(1)}},
					Metadata:          map[string]string{"subject": "user:user_ada", "plan": "pro", "return_path": "/elsewhere"}}
				other, err := sc.CheckoutSessions.New(p)
				if err != nil {
					t.Fatal(err)
				}

				if path == "return" {
					d.Stripe.SetWebhook("", "") // only the return can do it
				}
				resp := form(t, c, pay, testCard)
				if resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("pay: %d", resp.StatusCode)
				}
				if path == "return" {
					if resp := get(t, c, resp.Header.Get("Location"), page); resp.StatusCode != http.StatusSeeOther {
						t.Fatalf("checkout return: %d", resp.StatusCode)
					}
				} else {
					waitWebhooks(t, d)
				}
				got, err := sc.CheckoutSessions.Get(other.ID, nil)
				if err != nil || got.Status != stripego.CheckoutSessionStatusExpired {
					t.Fatalf("the other open session after a checkout completed (%s): %v %v, want expired", path, got.Status, err)
				}
				if resp := form(t, c, other.URL, testCard); resp.StatusCode != http.StatusGone {
					t.Errorf("paying the other session: %d, want 410", resp.StatusCode)
				}
				if n := liveSubscriptions(t, d, cus); n != 1 {
					t.Errorf("%d live subscriptions, want 1", n)
				}
			})
		})
	}
}

// noTrial takes the trial (and its fee) off the demo's pro plan: a
// checkout then has the same parameters every time.
func noTrial(cfg *proxy.Config) {
	for i := range cfg.Plans {
		cfg.Plans[i].TrialDays, cfg.Plans[i].TrialFeePrice = 0, ""
	}
}

// Item 8: Ada subscribes, cancels at once, and subscribes again within the
// hour. She gets a new Checkout Session she can pay, not the old, paid one
// (the same idempotency key would replay it).
func TestStripe_ResubscribeWithinTheHourGetsANewSession(t *testing.T) {
	eachAPIVersion(t, func(t *testing.T, version string) {
		d, _ := mustRunDemoWith(t, demoOptions{Tweak: noTrial, Stripe: stripesandbox.Options{APIVersion: version}})
		jar, _ := cookiejar.New(nil)
		c := noRedirects(jar)
		signIn(t, d, jar, "user_ada")
		first := checkoutURL(t, d, c, "pro", "/routes/415VNA/")
		resp := form(t, c, first, testCard)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("pay: %d", resp.StatusCode)
		}
		get(t, c, resp.Header.Get("Location"), page)

		// Cancel now in the portal.
		resp = form(t, c, d.URL+"/.tollgate/billing", nil)
		portal := resp.Header.Get("Location")
		subID := between(readBody(t, get(t, c, portal, page)), `name="subscription" value="`, `"`)
		form(t, c, portal, url.Values{"subscription": {subID}, "action": {"cancel_now"}})
		waitWebhooks(t, d)
		if code := get(t, c, d.URL+"/routes/415VNA/", api).StatusCode; code != http.StatusPaymentRequired {
			t.Fatalf("after cancelling: %d, want 402", code)
		}

		again := checkoutURL(t, d, c, "pro", "/routes/415VNA/")
		if again == first {
			t.Fatalf("sent back to the paid session %q", first)
		}
		resp = form(t, c, again, testCard)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("paying the new session: %d", resp.StatusCode)
		}
		if resp := get(t, c, resp.Header.Get("Location"), page); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("checkout return: %d", resp.StatusCode)
		}
		if code := get(t, c, d.URL+"/routes/415VNA/", api).StatusCode; code != http.StatusOK {
			t.Errorf("resubscribed: %d", code)
		}
	})
}

// livePrices are the demo's prices as the operator made them again in
// live mode (new IDs, as Stripe gives).
func livePrices() []stripesandbox.Price {
	var out []stripesandbox.Price
	for _, p := range stripesandbox.DefaultPrices() {
		p.ID = strings.Replace(p.ID, "price_demo_", "price_live_", 1)
		out = append(out, p)
	}
	return out
}

// goLive points plans at the live prices.
func goLive(cfg *proxy.Config) {
	// The sandbox's live mode has no Billing Meter: the operator goes live
	// without the pay-as-you-go plan.
	cfg.Plans = slices.DeleteFunc(cfg.Plans, func(p proxy.Plan) bool { return p.Meter != nil })
	for i := range cfg.Plans {
		p := &cfg.Plans[i]
		prices := make([]string, len(p.Prices))
		for j, id := range p.Prices {
			prices[j] = strings.Replace(id, "price_demo_", "price_live_", 1)
		}
		p.Prices = prices
		p.TrialFeePrice = strings.Replace(p.TrialFeePrice, "price_demo_", "price_live_", 1)
	}
}

// restartGateway stops the demo's gateway and starts another on the same
// store file and listeners, with the config changed by tweak: what an
// operator's restart with a new config does.
func restartGateway(t *testing.T, d *demo, clk *clock, tweak func(*proxy.Config)) {
	t.Helper()
	cfg := *d.Config
	cfg.Plans = slices.Clone(cfg.Plans)
	cfg.Stripe.WebhookSecrets = slices.Clone(cfg.Stripe.WebhookSecrets)
	tweak(&cfg)
	d.stopAdmin()
	if err := d.gateway.Close(); err != nil {
		t.Fatal(err)
	}
	gw, err := newApp(&cfg, appDeps{Logger: d.logger, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ah, err := gw.adminHandler(ctx, &cfg, d.logger, func(fn func()) { go fn() })
	if err != nil {
		stop()
		t.Fatal(err)
	}
	d.stopAdmin, d.gateway, d.Config = stop, gw, &cfg
	d.admin.Store(&ah)
	d.serving.Store(gw)
}

func readyz(t *testing.T, d *demo) (int, string) {
	t.Helper()
	resp, err := http.Get(d.AdminURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Item 9: the operator goes live but keeps the store, whose customers were
// made in test mode. The live key cannot see them: that is an outage, not
// a deletion. Readiness checks the key (the account, the configured
// prices), not a customer; a sync that meets resource_missing keeps access
// and is counted; a test-mode event reaching the live gateway is
// acknowledged and ignored; Checkout does not fork the subject onto a new
// customer. A new visitor's live checkout works end to end.
func TestStripe_KeyOfAnotherModeIsAnOutageNotADeletion(t *testing.T) {
	eachAPIVersion(t, func(t *testing.T, version string) {
		d, clk := mustRunDemoWith(t, demoOptions{Stripe: stripesandbox.Options{APIVersion: version, LivePrices: livePrices()}})
		jar, _ := cookiejar.New(nil)
		c := noRedirects(jar)
		signIn(t, d, jar, "user_ada")
		subID := subscribe(t, d, c)
		waitWebhooks(t, d)
		route := d.URL + "/routes/415VNA/"
		if code := get(t, c, route, api).StatusCode; code != 200 {
			t.Fatalf("subscribed in test mode: %d", code)
		}

		// The live key with the test prices still configured: not ready,
		// and the answer names the prices the key cannot see.
		const liveWebhookSecret = "whsec_live_endpoint"
		restartGateway(t, d, clk, func(cfg *proxy.Config) {
			cfg.Stripe.SecretKey = d.Stripe.LiveSecretKey()
		})
		if code, body := readyz(t, d); code != http.StatusServiceUnavailable || !strings.Contains(body, "price_demo_pro_monthly") {
			t.Errorf("live key, test prices: readyz %d %s, want 503 naming the prices", code, body)
		}

		// Put right: live prices, the live endpoint's secret next to the
		// test one (the test endpoint still points here).
		restartGateway(t, d, clk, func(cfg *proxy.Config) {
			cfg.Stripe.SecretKey = d.Stripe.LiveSecretKey()
			cfg.Stripe.WebhookSecrets = append(cfg.Stripe.WebhookSecrets, liveWebhookSecret)
			goLive(cfg)
		})
		d.Stripe.SetLiveWebhook(d.URL+"/.tollgate/webhooks/stripe", liveWebhookSecret)
		if code, body := readyz(t, d); code != 200 {
			t.Fatalf("live key, live prices: readyz %d %s", code, body)
		}
		if code := get(t, c, route, api).StatusCode; code != 200 {
			t.Fatalf("after going live: %d", code)
		}

		// The operator syncs Ada: Stripe says resource_missing.
		req, _ := http.NewRequest("POST", d.AdminURL+"/api/sync", strings.NewReader("user=user_ada"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+d.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || !strings.Contains(string(body), "another account or mode") {
			t.Errorf("sync of a customer the key cannot see: %d %s", resp.StatusCode, body)
		}
		if code := get(t, c, route, api).StatusCode; code != 200 {
			t.Errorf("after a sync met resource_missing: %d, want access kept", code)
		}
		if code, body := readyz(t, d); code != 200 {
			t.Errorf("one unseen customer took the replica out: readyz %d %s", code, body)
		}

		// A test-mode event (Stripe cancels the test subscription) reaches
		// the live gateway: acknowledged, ignored, no Stripe call.
		before := d.Stripe.APICalls()["GET /v1/customers/{id}"]
		d.Stripe.SetSubscriptionStatus(subID, "canceled")
		waitWebhooks(t, d)
		dl := d.Stripe.Deliveries()
		if last := dl[len(dl)-1]; last.Status != 200 || last.Type != "customer.subscription.deleted" {
			t.Errorf("test-mode event at the live gateway: %+v, want 200", last)
		}
		if after := d.Stripe.APICalls()["GET /v1/customers/{id}"]; after != before {
			t.Errorf("a test-mode event made %d customer fetches", after-before)
		}
		if code := get(t, c, route, api).StatusCode; code != 200 {
			t.Errorf("after a test-mode event: %d, want access kept", code)
		}

		// Checkout for Ada does not make her a second (live) customer.
		customersBefore := d.Stripe.APICalls()["POST /v1/customers"]
		if resp := form(t, c, d.URL+"/.tollgate/checkout", url.Values{"plan": {"pro"}}); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("checkout with an unseen customer: %d %q, want 503", resp.StatusCode, resp.Header.Get("Location"))
		}
		if n := d.Stripe.APICalls()["POST /v1/customers"] - customersBefore; n != 0 {
			t.Errorf("%d customers created for a subject whose customer the key cannot see", n)
		}

		scrape := scrapeMetrics(t, d)
		for _, kind := range []string{"customer_unseen", "livemode_mismatch"} {
			if v := metricValue(scrape, `tollgate_stripe_anomalies_total{kind="`+kind+`"}`); v == "" || v == "0" {
				t.Errorf("anomaly %s counted %q", kind, v)
			}
		}

		// Grace, new, subscribes in live mode: live session, live
		// customer, live events to the live endpoint, access.
		gj, _ := cookiejar.New(nil)
		gc := noRedirects(gj)
		signIn(t, d, gj, "user_grace")
		pay := checkoutURL(t, d, gc, "pro", "/routes/415VNA/")
		if !strings.Contains(pay, "/checkout/pay/cs_live_") {
			t.Fatalf("live checkout: %q", pay)
		}
		resp = form(t, gc, pay, cardOf("grace@example.com"))
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("pay live: %d", resp.StatusCode)
		}
		get(t, gc, resp.Header.Get("Location"), page)
		waitWebhooks(t, d)
		for _, del := range d.Stripe.Deliveries() {
			if del.Status != 200 {
				t.Errorf("delivery %s %s: %d", del.EventID, del.Type, del.Status)
			}
		}
		if code := get(t, gc, route, api).StatusCode; code != 200 {
			t.Errorf("Grace after a live checkout: %d", code)
		}
	})
}

// postStripeEvent signs body as Stripe does with the demo's webhook secret
// and posts it to the gateway.
func postStripeEvent(t *testing.T, d *demo, now time.Time, body []byte) int {
	t.Helper()
	ts := strconv.FormatInt(now.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(d.webhookSecret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	req, _ := http.NewRequest("POST", d.URL+"/.tollgate/webhooks/stripe", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", "t="+ts+",v1="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Item 9: a customer is deleted only when Stripe says so. A
// customer.deleted event is confirmed by a fetch: while Stripe still has
// the customer, nothing changes; once Stripe deletes it (deleted: true),
// access ends.
func TestStripe_CustomerDeletedOnlyWhenStripeSaysSo(t *testing.T) {
	eachAPIVersion(t, func(t *testing.T, version string) {
		d, clk := mustRunDemoWith(t, demoOptions{Stripe: stripesandbox.Options{APIVersion: version}})
		jar, _ := cookiejar.New(nil)
		c := noRedirects(jar)
		signIn(t, d, jar, "user_ada")
		subscribe(t, d, c)
		waitWebhooks(t, d)
		cus := customerOf(t, d, "user_ada")
		route := d.URL + "/routes/415VNA/"

		body := []byte(`{"id":"evt_claims_deleted","object":"event","api_version":"` + version + `","created":` +
			strconv.FormatInt(clk.Now().Unix(), 10) + `,"livemode":false,"pending_webhooks":1,"type":"customer.deleted",` +
			`"request":{"id":null,"idempotency_key":null},"data":{"object":{"id":"` + cus + `","object":"customer","deleted":true}}}`)
		if code := postStripeEvent(t, d, clk.Now(), body); code != 200 {
			t.Fatalf("customer.deleted: %d", code)
		}
		if code := get(t, c, route, api).StatusCode; code != 200 {
			t.Errorf("customer.deleted while Stripe still has the customer: %d, want access kept", code)
		}

		if _, err := stripeAPI(d, d.Stripe.SecretKey()).Customers.Del(cus, nil); err != nil {
			t.Fatal(err)
		}
		waitWebhooks(t, d)
		if code := get(t, c, route, api).StatusCode; code != http.StatusPaymentRequired {
			t.Errorf("after Stripe deleted the customer: %d, want 402", code)
		}
	})
}

// Item 10: the operator pauses payment collection on Ada's subscription
// (Stripe keeps it active). Under stripe.paused_collection keep, the
// default, she keeps access and the account page says payments are
// paused; under revoke, access is held (the upgrade and account pages say
// why) until collection resumes at resumes_at.
func TestStripe_PausedCollectionFollowsThePolicy(t *testing.T) {
	for _, policy := range []proxy.PausedCollectionPolicy{"", proxy.PausedCollectionRevoke} {
		name := string(policy)
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			eachAPIVersion(t, func(t *testing.T, version string) {
				d, _ := mustRunDemoWith(t, demoOptions{Stripe: stripesandbox.Options{APIVersion: version},
					Tweak: func(cfg *proxy.Config) {
						noTrial(cfg)
						if policy != "" {
							cfg.Stripe.PausedCollection = policy
						}
					}})
				jar, _ := cookiejar.New(nil)
				c := noRedirects(jar)
				signIn(t, d, jar, "user_ada")
				subID := subscribe(t, d, c)
				waitWebhooks(t, d)
				route := d.URL + "/routes/415VNA/"

				resumes := d.Stripe.BillingNow().Add(45 * 24 * time.Hour)
				_, err := stripeAPI(d, d.Stripe.SecretKey()).Subscriptions.Update(subID, &stripego.SubscriptionParams{
					PauseCollection: &stripego.SubscriptionPauseCollectionParams{Behavior: stripego.String("void"), ResumesAt: stripego.Int64(resumes.Unix())}})
				if err != nil {
					t.Fatal(err)
				}
				waitWebhooks(t, d)
				acct := readBody(t, get(t, c, d.URL+"/.tollgate/account", page))
				if !strings.Contains(acct, "Payments paused") {
					t.Errorf("account page does not say payments are paused: %.800s", acct)
				}
				code := get(t, c, route, api).StatusCode
				if policy == proxy.PausedCollectionRevoke {
					if code != http.StatusPaymentRequired {
						t.Fatalf("revoke, collection paused: %d, want 402", code)
					}
					if !strings.Contains(acct, "your access is on hold") {
						t.Errorf("account page does not say access is held")
					}
					up := readBody(t, get(t, c, d.URL+"/.tollgate/upgrade?route=415VNA&return=/routes/415VNA/", page))
					if !strings.Contains(up, "Payments for your plan are paused") {
						t.Errorf("upgrade page does not explain the hold")
					}
					var me struct {
						Subscriptions []struct {
							Active              bool       `json:"active"`
							PausedCollection    bool       `json:"paused_collection"`
							CollectionResumesAt *time.Time `json:"collection_resumes_at"`
						}
					}
					json.NewDecoder(get(t, c, d.URL+"/.tollgate/api/me", api).Body).Decode(&me)
					if len(me.Subscriptions) != 1 || me.Subscriptions[0].Active || !me.Subscriptions[0].PausedCollection ||
						me.Subscriptions[0].CollectionResumesAt == nil || !me.Subscriptions[0].CollectionResumesAt.Equal(resumes.Truncate(time.Second)) {
						t.Errorf("api/me: %+v", me)
					}
				} else {
					if code != 200 {
						t.Fatalf("keep, collection paused: %d, want 200", code)
					}
					if !strings.Contains(acct, "you keep your access") {
						t.Errorf("account page does not say access continues")
					}
				}
				// A renewal while paused is not collected; the status stays
				// active. Then collection resumes by itself.
				d.Stripe.Advance(32 * 24 * time.Hour)
				waitWebhooks(t, d)
				if got := get(t, c, route, api).StatusCode; (got == 200) != (policy != proxy.PausedCollectionRevoke) {
					t.Errorf("after a renewal while paused: %d", got)
				}
				d.Stripe.Advance(14 * 24 * time.Hour)
				waitWebhooks(t, d)
				if got := get(t, c, route, api).StatusCode; got != 200 {
					t.Errorf("after collection resumed: %d, want 200", got)
				}
				if acct := readBody(t, get(t, c, d.URL+"/.tollgate/account", page)); strings.Contains(acct, "Payments paused") {
					t.Errorf("account page still says payments are paused")
				}
			})
		})
	}
}

// Item 11: while the gateway is unreachable, 120 handled events and a few
// it does not handle fail to deliver. The catch-up asks the Events API
// only for the handled types, pages lazily (processing a page before
// fetching the next), folds many events of one customer into one fetch,
// and ends with Stripe's state.
func TestStripe_CatchUpAsksForHandledEventsPageByPage(t *testing.T) {
	eachAPIVersion(t, func(t *testing.T, version string) {
		d, _ := mustRunDemoWith(t, demoOptions{Stripe: stripesandbox.Options{APIVersion: version}})
		jar, _ := cookiejar.New(nil)
		c := noRedirects(jar)
		signIn(t, d, jar, "user_ada")
		subID := subscribe(t, d, c)
		waitWebhooks(t, d)
		cus := customerOf(t, d, "user_ada")
		route := d.URL + "/routes/415VNA/"
		// The gateway's start reconcile (at once on an empty store) and
		// the catch-up after it must be over before deliveries fail, or
		// that catch-up, run late on a loaded machine, processes the
		// failed events this test leaves for its own catch-up.
		waitStartReconcile(t, d)

		d.Stripe.SetRetryDelays(time.Millisecond)
		d.Stripe.SetWebhook(httptestServer(t, http.StatusServiceUnavailable), d.webhookSecret)
		for i := range 120 {
			d.Stripe.SetSubscriptionStatus(subID, []string{"past_due", "active"}[i%2])
		}
		d.Stripe.SetSubscriptionStatus(subID, "canceled")
		sc := stripeAPI(d, d.Stripe.SecretKey())
		for range 3 { // checkout.session.expired: not a type tollgate handles
			cs, err := sc.CheckoutSessions.New(&stripego.CheckoutSessionParams{Mode: stripego.String("subscription"),
				Customer: stripego.String(cus), SuccessURL: stripego.String(d.URL + "/"),
				LineItems: []*stripego.CheckoutSessionLineItemParams{{Price: stripego.String("price_demo_pro_monthly"), Quantity: stripego.Int64(1)}}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sc.CheckoutSessions.Expire(cs.ID, nil); err != nil {
				t.Fatal(err)
			}
		}
		waitWebhooks(t, d)
		handled := map[string]bool{}
		for _, typ := range stripe.HandledEvents() {
			handled[typ] = true
		}
		failed, unhandled := 0, 0
		for _, del := range d.Stripe.Deliveries() {
			if del.Status >= 200 && del.Status < 300 {
				continue
			}
			if handled[del.Type] {
				failed++
			} else {
				unhandled++
			}
		}
		if failed != 121 || unhandled != 3 {
			t.Fatalf("failed deliveries: %d handled, %d not; want 121 and 3", failed, unhandled)
		}
		if code := get(t, c, route, api).StatusCode; code != 200 {
			t.Fatalf("before the catch-up: %d", code)
		}

		mark := len(d.Stripe.APIRequests())
		n, err := d.gateway.Billing.CatchUp(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n != failed {
			t.Errorf("caught up on %d events, want the %d handled ones", n, failed)
		}
		if code := get(t, c, route, api).StatusCode; code != http.StatusPaymentRequired {
			t.Errorf("after the catch-up: %d, want 402 (Stripe cancelled)", code)
		}

		var pages, fetches []int
		for i, r := range d.Stripe.APIRequests()[mark:] {
			switch {
			case r.Method == "GET" && r.Path == "/v1/events":
				pages = append(pages, i)
				q, _ := url.ParseQuery(r.Query)
				var types []string
				for k, v := range q {
					if strings.HasPrefix(k, "types[") {
						types = append(types, v...)
					}
				}
				slices.Sort(types)
				want := stripe.HandledEvents()
				slices.Sort(want)
				if !slices.Equal(types, want) || q.Get("delivery_success") != "false" || q.Get("limit") != "100" || q.Has("type") {
					t.Errorf("events asked for with %s", r.Query)
				}
			case r.Method == "GET" && strings.HasPrefix(r.Path, "/v1/customers/"):
				fetches = append(fetches, i)
			}
		}
		if len(pages) < 2 || len(fetches) == 0 || fetches[0] > pages[1] {
			t.Errorf("pages at %v, customer fetches at %v: want the first page processed before the second is fetched", pages, fetches)
		}
		if len(fetches) != 1 {
			t.Errorf("%d fetches of one customer for %d events, want 1", len(fetches), n)
		}

		// Again: everything is a duplicate, so no customer is fetched.
		mark = len(d.Stripe.APIRequests())
		if _, err := d.gateway.Billing.CatchUp(t.Context()); err != nil {
			t.Fatal(err)
		}
		for _, r := range d.Stripe.APIRequests()[mark:] {
			if strings.HasPrefix(r.Path, "/v1/customers/") {
				t.Errorf("second catch-up fetched %s", r.Path)
			}
		}
	})
}

// Item 12: the account's default API version is the newest, so every
// webhook arrives in its shapes (no current_period_end on the
// subscription, the invoice's subscription under parent). tollgate reads
// only IDs from them and re-fetches in the version its stripe-go pins:
// the renewal date it shows comes from the re-fetch, and every request it
// sends names 2023-10-16, which the sandbox answers in.
func TestStripe_EventsInTheNewestVersionAreReadForIDsOnly(t *testing.T) {
	d, _ := mustRunDemoWith(t, demoOptions{Tweak: noTrial, Stripe: stripesandbox.Options{APIVersion: stripesandbox.APIVersionLatest}})
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	// Only the webhook may tell the gateway: the return is not visited.
	pay := checkoutURL(t, d, c, "pro", "/routes/415VNA/")
	if resp := form(t, c, pay, testCard); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay: %d", resp.StatusCode)
	}
	waitWebhooks(t, d)
	for _, del := range d.Stripe.Deliveries() {
		if del.Status != 200 {
			t.Errorf("delivery %s %s: %d", del.EventID, del.Type, del.Status)
		}
	}
	// The events really are in the newest shapes.
	sawSub, sawInvoice := false, false
	it := stripeAPI(d, d.Stripe.SecretKey()).Events.List(&stripego.EventListParams{})
	for it.Next() {
		ev := it.Event()
		if ev.APIVersion != stripesandbox.APIVersionLatest {
			t.Errorf("event %s in %s", ev.Type, ev.APIVersion)
		}
		var obj map[string]any
		_ = json.Unmarshal(ev.Data.Raw, &obj)
		switch obj["object"] {
		case "subscription":
			_, has := obj["current_period_end"]
			sawSub = sawSub || !has
		case "invoice":
			_, has := obj["subscription"]
			sawInvoice = sawInvoice || (!has && obj["parent"] != nil)
		}
	}
	if !sawSub || !sawInvoice {
		t.Errorf("events not in the newest shapes: subscription without current_period_end %v, invoice with parent %v", sawSub, sawInvoice)
	}
	// Access, and the renewal date, from the re-fetch.
	if code := get(t, c, d.URL+"/routes/415VNA/", api).StatusCode; code != 200 {
		t.Fatalf("after the webhooks: %d", code)
	}
	var me struct {
		Subscriptions []struct {
			Status           string     `json:"status"`
			CurrentPeriodEnd *time.Time `json:"current_period_end"`
		}
	}
	json.NewDecoder(get(t, c, d.URL+"/.tollgate/api/me", api).Body).Decode(&me)
	if len(me.Subscriptions) != 1 || me.Subscriptions[0].Status != "active" || me.Subscriptions[0].CurrentPeriodEnd == nil ||
		me.Subscriptions[0].CurrentPeriodEnd.Before(time.Now().Add(27*24*time.Hour)) {
		t.Errorf("api/me: %+v, want active with the period's end", me)
	}
	if acct := readBody(t, get(t, c, d.URL+"/.tollgate/account", page)); !strings.Contains(acct, "Renews") {
		t.Errorf("account page shows no renewal date")
	}
	// Every request (the gateway's, and this test's through stripe-go)
	// named the pinned version.
	for _, r := range d.Stripe.APIRequests() {
		if r.Version != stripesandbox.APIVersion {
			t.Errorf("%s %s named Stripe-Version %q, want %s", r.Method, r.Path, r.Version, stripesandbox.APIVersion)
		}
	}
}

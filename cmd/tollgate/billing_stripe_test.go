package main

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	stripego "github.com/stripe/stripe-go/v76"
	stripeclient "github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/sandbox"
)

// The end-to-end tests of what real Stripe does and a kind stand-in would
// not show (issue 9, items 8 to 12). Each runs the real gateway over real
// HTTP against the sandbox Stripe, once with the account's default API
// version at the one tollgate's stripe-go pins and once at the newest.

// eachAPIVersion runs fn once per API version the sandbox renders, as the
// Stripe account's default (what webhooks arrive in).
func eachAPIVersion(t *testing.T, fn func(t *testing.T, version string)) {
	for _, v := range sandbox.StripeAPIVersions() {
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

var testCard = url.Values{"email": {"ada@example.com"}, "card_number": {"4242 4242 4242 4242"}, "exp": {"12 / 34"}, "cvc": {"123"}}

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
		d, _ := mustRunDemoWith(t, demoOptions{Tweak: userPlans, Stripe: sandbox.StripeOptions{APIVersion: version}})
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
				d, _ := mustRunDemoWith(t, demoOptions{Stripe: sandbox.StripeOptions{APIVersion: version}})
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
		d, _ := mustRunDemoWith(t, demoOptions{Tweak: noTrial, Stripe: sandbox.StripeOptions{APIVersion: version}})
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

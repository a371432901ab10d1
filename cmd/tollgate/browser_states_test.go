package main

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowser_EveryAccountState walks a customer's life in a real browser,
// at a phone's and a desktop's width, with nothing sticking out or cut off
// (shoot checks): the plans (Pro with monthly and yearly prices, features
// and a highlight; Team, an organisation's), then Ada's account page
// trialing, active, past due, unpaid (and the upgrade page then), active
// again and cancelling, and ended; then Grace's organisation plan. The
// sandbox's clock moves the plan from one state to the next, as Stripe's
// billing would, and its webhooks tell the gateway.
func TestBrowser_EveryAccountState(t *testing.T) {
	b := newBrowser(t)
	d, _ := mustRunDemo(t)
	route := d.URL + "/routes/415VNA/"
	account := d.URL + "/.tollgate/account"

	// An app's "Sign in" link: the sandbox sign-in, then back to the page,
	// which is paid: the plans.
	if _, loc := b.open(d.URL + "/.tollgate/sign-in?return=" + url.QueryEscape("/routes/415VNA/")); !strings.HasPrefix(loc, d.ClerkURL+"/sign-in") {
		t.Fatalf("sign-in link: at %s, want the sandbox sign-in", loc)
	}
	// Back from the sandbox: the page, Clerk's handshake and back, then
	// the upgrade page.
	b.maxRedirects = 4
	if _, loc := b.click(`button[name="user_id"][value="user_ada"]`); !strings.Contains(loc, "/.tollgate/upgrade?") {
		t.Fatalf("after sign-in: at %s, want the upgrade page", loc)
	}
	b.maxRedirects = maxRedirects
	b.mustSay("the plans", "Most popular", "Pro", "For one sailor", "Harbour charts", "Monthly", "Yearly", "save 17%",
		"$12.00", "/ month", "Team", "For a crew", "Your account", "Sign out")
	b.shoot("plans")
	b.click(`nav.interval a[href*="interval=year"]`)
	b.mustSay("the yearly plans", "$120.00", "/ year", "$10.00 a month, billed yearly: 17% less than paying monthly",
		"After the trial you pay $120.00 every year")
	b.shoot("plans-yearly")

	// Trialing: the yearly price, paid on the sandbox Checkout with the
	// billing address automatic tax needs.
	if _, loc := b.click(`form[action="/.tollgate/checkout"] input[value="pro"] ~ button`); !strings.HasPrefix(loc, d.StripeURL+"/checkout/pay/") {
		t.Fatalf("start trial: at %s, want the sandbox Checkout", loc)
	}
	b.mustSay("the Checkout page", "$120.00/year", "Billing address", "Tax", "Promotion code")
	b.shoot("checkout-tax")
	if code, loc := b.payWithAddress(); code != 200 || loc != route {
		t.Fatalf("after paying: %d at %s, want %s", code, loc, route)
	}
	waitWebhooks(t, d)
	cus := customerOf(t, d, "user_ada")
	b.open(account)
	b.mustSay("the account page, trialing", "Trial", "Trial ends", "$120.00 / year", "charged automatically", "Manage billing")
	b.shoot("account-trialing")

	states := []struct {
		name   string
		move   func()
		want   []string
		absent []string
	}{
		{"account-active", func() { d.Stripe.Advance(8 * 24 * time.Hour) },
			[]string{"Active", "Renews", "renews automatically", "Manage billing"}, []string{"Trial ends"}},
		{"account-past-due", func() { d.Stripe.FailNextPayments(cus, true); d.Stripe.Advance(366 * 24 * time.Hour) },
			[]string{"Payment failed", "did not go through", "Update payment method", "billing portal, run by Stripe"}, []string{"Renews", "renews", "Manage billing"}},
		{"account-unpaid", func() { d.Stripe.Advance(8 * 24 * time.Hour) },
			[]string{"Unpaid", "access is on hold", "Update payment method"}, []string{"Renews", "Manage billing"}},
	}
	for _, st := range states {
		st.move()
		waitWebhooks(t, d)
		b.open(account)
		b.mustSay(st.name, st.want...)
		b.mustNotSay(st.name, st.absent...)
		b.shoot(st.name)
	}
	// One way forward for the plan; the API keys section is apart from it.
	if n := b.count(`main button[type="submit"]:not(#keys *)`); n != 1 {
		t.Errorf("the unpaid account page has %d buttons for its plan, want one", n)
	}

	// Unpaid, the paid page sends to the upgrade page, whose one way back is
	// the portal, saying so.
	if _, loc := b.open(route); !strings.Contains(loc, "/.tollgate/upgrade?") {
		t.Fatalf("unpaid route: at %s, want the upgrade page", loc)
	}
	b.mustSay("the upgrade page, unpaid", "needs your attention", "did not go through", "Update payment method", "Opens the billing portal, run by Stripe")
	b.mustNotSay("the upgrade page, unpaid", "Start Pro trial", "Subscribe to")
	if n := b.count(`main button[type="submit"], main a.button`); n != 1 {
		t.Errorf("the unpaid upgrade page has %d buttons, want one", n)
	}
	b.shoot("upgrade-unpaid")

	// The portal: pay what is due, then cancel at the period's end.
	if _, loc := b.click(`main form[action="/.tollgate/billing"] button[type="submit"]`); !strings.HasPrefix(loc, d.StripeURL+"/portal/") {
		t.Fatalf("update payment method: at %s, want the sandbox portal", loc)
	}
	b.click(`button[name="action"][value="update_payment"]`)
	b.click(`button[name="action"][value="cancel_at_period_end"]`)
	if _, loc := b.click(`a.button[href$="/.tollgate/account"]`); loc != account {
		t.Fatalf("return to the site: at %s", loc)
	}
	waitWebhooks(t, d)
	b.open(account)
	b.mustSay("account-cancelling", "Ending", "Access ends", "will not renew")
	b.mustNotSay("account-cancelling", "Renews")
	b.shoot("account-cancelling")

	// The period ends: the plan has ended, and says when, and how to come back.
	d.Stripe.Advance(366 * 24 * time.Hour)
	waitWebhooks(t, d)
	b.open(account)
	b.mustSay("account-ended", "Ended", "This plan ended on", "Subscribe again", "See past invoices")
	b.mustNotSay("account-ended", "Renews", "Manage billing")
	b.shoot("account-ended")
	if _, loc := b.click(`main a.button[href="/.tollgate/subscribe/pro"]`); loc != d.URL+"/.tollgate/subscribe/pro" {
		t.Fatalf("subscribe again: at %s", loc)
	}
	b.mustSay("subscribe again", "Subscribe to Pro again", "You have had a trial before")

	// An organisation's plan: Grace, an admin of Acme Inc., subscribes it
	// to Team; the pages name the organisation, not its slug.
	b.click(`header form[action="/.tollgate/sign-out"] button`)
	b.open(d.URL + "/.tollgate/sign-in?return=" + url.QueryEscape("/.tollgate/account"))
	if _, loc := b.click(`button[name="user_id"][value="user_grace"]`); loc != d.URL+"/" {
		t.Fatalf("Grace signed in: at %s, want the home page (the link's return may not be tollgate's own)", loc)
	}
	b.open(d.URL + "/.tollgate/subscribe/team?return=" + url.QueryEscape("/routes/415VNA/"))
	b.mustSay("the Team plan", "Team", "$49.00", "Billed to your organisation")
	if _, loc := b.click(`form[action="/.tollgate/checkout"] button[type="submit"]`); !strings.HasPrefix(loc, d.StripeURL+"/checkout/pay/") {
		t.Fatalf("subscribe Team: at %s", loc)
	}
	if code, loc := b.payWithAddress(); code != 200 || loc != route {
		t.Fatalf("Team paid: %d at %s", code, loc)
	}
	waitWebhooks(t, d)
	b.open(account)
	b.mustSay("account-organisation", "in the organisation Acme Inc. (admin)", "Team", "billed to Acme Inc.", "Manage the organisation's billing")
	b.mustNotSay("account-organisation", "acme")
	b.shoot("account-organisation")
}

// mustNotSay fails if the page says any of absent.
func (b *browser) mustNotSay(page string, absent ...string) {
	b.t.Helper()
	text := b.text()
	for _, a := range absent {
		if strings.Contains(text, a) {
			b.t.Errorf("%s says %q; it says:\n%s", page, a, text)
		}
	}
}

// count is how many elements css matches.
func (b *browser) count(css string) int {
	b.t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+jsString(css)+`).length`))
	if err != nil {
		b.t.Fatal(err)
	}
	return n
}

// jsString quotes s for a script.
func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

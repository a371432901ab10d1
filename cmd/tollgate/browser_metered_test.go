package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/proxy"
)

// TestBrowser_MeteredUsage walks the demo's pay-as-you-go plan in a real
// browser (README "Usage billing"): a visitor subscribes (Checkout shows
// the metered line), calls the tide API from the page and with a key, and
// the account page's usage moves with each call, counted before any usage
// row is written. Screenshot of the account page.
func TestBrowser_MeteredUsage(t *testing.T) {
	b := newBrowser(t)
	d, _ := mustRunDemo(t)
	route := d.URL + "/routes/TIDES/"

	b.open(d.URL + "/settings/")
	if _, loc := b.click(`button[name="user_id"][value="user_ada"]`); loc != d.URL+"/settings/" {
		t.Fatalf("after sign-in: at %s", loc)
	}
	b.open(d.URL + "/.tollgate/subscribe/payg")
	b.mustSay("the pay-as-you-go plan's page", "Pay as you go", "$0.01")
	if _, payURL := b.click(`form[action="/.tollgate/checkout"] button[type="submit"]`); !strings.HasPrefix(payURL, d.StripeURL+"/checkout/pay/") {
		t.Fatalf("subscribe to payg: at %s, want the sandbox Checkout", payURL)
	}
	if code, loc := b.payWithAddress(); code != 200 || !strings.HasPrefix(loc, d.URL+"/") {
		t.Fatalf("after paying: %d at %s", code, loc)
	}
	waitWebhooks(t, d)

	// Checkout's return lands on a page of the plan's: it may count.
	used := func() int {
		t.Helper()
		b.open(d.URL + "/.tollgate/account")
		m := regexp.MustCompile(`Usage this period: (\d+) tide_api_calls`).FindStringSubmatch(b.text())
		if m == nil {
			t.Fatalf("the account page shows no metered usage:\n%s", b.text())
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	before := used()

	// Three calls from the browser, then a program's call costing 40.
	for range 3 {
		if code, _ := b.open(route); code != 200 {
			t.Fatalf("a call from the page: %d", code)
		}
	}
	key, _ := makeKey(t, d, proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}, "*")
	bearer := map[string]string{"Accept": "application/json", "Authorization": "Bearer " + key}
	if got := callWithKey(t, d, "/routes/TIDES/?cost=40", bearer); got.code != 200 || got.plan != "payg" {
		t.Fatalf("the program's call: %+v, want 200 on payg", got)
	}
	if after := used(); after != before+43 {
		t.Errorf("the account page's usage: %d after the calls, %d before; want 43 more", after, before)
	}
	b.mustSay("the account page after the calls", "Pay as you go", "billed at the end of the period")
	b.shoot("metered-usage")
}

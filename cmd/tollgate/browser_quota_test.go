package main

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/proxy"
)

// TestBrowser_QuotaUsage walks the demo's API plan in a real browser: a
// signed-in visitor without a plan is on free: (20 calls a day); pays for
// the API plan (1,000 calls a month); the account page's usage bar fills as
// a program spends the quota with a key; over it, the route shows the page
// that says what was used, when it resets and which plan has more, with
// the upgrade button. Screenshots at 390 and 1280 px.
func TestBrowser_QuotaUsage(t *testing.T) {
	b := newBrowser(t)
	d, _ := mustRunDemo(t)
	route := d.URL + "/routes/TIDES/"

	b.open(d.URL + "/settings/")
	if _, loc := b.click(`button[name="user_id"][value="user_ada"]`); loc != d.URL+"/settings/" {
		t.Fatalf("after sign-in: at %s", loc)
	}
	if code, _ := b.open(route); code != 200 {
		t.Fatalf("free: %d", code)
	}
	b.open(d.URL + "/.tollgate/account")
	b.mustSay("the account page on free:", "Usage this period", "Free", "1 of 20 requests this day")
	b.shoot("usage-free")

	b.open(d.URL + "/.tollgate/subscribe/api")
	if _, payURL := b.click(`form[action="/.tollgate/checkout"] button[type="submit"]`); !strings.HasPrefix(payURL, d.StripeURL+"/checkout/pay/") {
		t.Fatalf("subscribe to API: at %s, want the sandbox Checkout", payURL)
	}
	if code, loc := b.payWithAddress(); code != 200 || !strings.HasPrefix(loc, d.URL+"/") {
		t.Fatalf("after paying: %d at %s", code, loc)
	}
	waitWebhooks(t, d)

	// A program spends 400 of the 1,000 with a key of the same user.
	key, _ := makeKey(t, d, proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}, "*")
	bearer := map[string]string{"Accept": "application/json", "Authorization": "Bearer " + key}
	if got := callWithKey(t, d, "/routes/TIDES/?cost=400", bearer); got.code != 200 || got.plan != "api" {
		t.Fatalf("the program's call: %+v, want 200 on api", got)
	}
	b.open(d.URL + "/.tollgate/account")
	b.mustSay("the account page on API", "Usage this period", "API", "400 of 1000 requests this month", "resets")
	b.shoot("usage-bar")

	if got := callWithKey(t, d, "/routes/TIDES/?cost=600", bearer); got.code != 200 {
		t.Fatalf("the program's second call: %+v", got)
	}
	if got := callWithKey(t, d, "/routes/TIDES/", bearer); got.code != 429 || got.errCode != "quota_exceeded" {
		t.Fatalf("over the quota: %+v, want 429 quota_exceeded", got)
	}
	if code, _ := b.open(route); code != 429 {
		t.Fatalf("the page over the quota: %d, want 429", code)
	}
	b.mustSay("the over-quota page", "You have used this month's quota", "1000 of 1000 used", "Resets", "The Pro plan includes more", "Upgrade to Pro")
	b.shoot("over-quota")
	if code, loc := b.click("#upgrade"); code != 200 || loc != d.URL+"/.tollgate/subscribe/pro" {
		t.Errorf("the upgrade button: %d at %s, want Pro's page", code, loc)
	}
	b.mustSay("Pro's page", "Pro")
}

package main

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowser_APIKeyFromTheAccountPage: a user pays, makes a key on the
// account page in the real browser (the copy button is keys.js's, under
// the strict CSP), reads it from the page, and a program calls the paid
// API with it: 200 with the plan. Revoked on the same page, the key is
// refused at once: 401.
func TestBrowser_APIKeyFromTheAccountPage(t *testing.T) {
	b := newBrowser(t)
	d, _ := mustRunDemo(t)
	route := d.URL + "/routes/415VNA/"

	b.open(d.URL + "/settings/")
	if _, loc := b.click(`button[name="user_id"][value="user_ada"]`); loc != d.URL+"/settings/" {
		t.Fatalf("after sign-in: at %s", loc)
	}
	b.open(route)
	if _, payURL := b.click(`form[action="/.tollgate/checkout"] button[type="submit"]`); !strings.HasPrefix(payURL, d.StripeURL+"/checkout/pay/") {
		t.Fatalf("start trial: at %s, want the sandbox Checkout", payURL)
	}
	if code, loc := b.payWithAddress(); code != 200 || loc != route {
		t.Fatalf("after paying: %d at %s", code, loc)
	}
	waitWebhooks(t, d)

	if code, _ := b.open(d.URL + "/.tollgate/account"); code != 200 {
		t.Fatalf("account: %d", code)
	}
	b.mustSay("the account page", "API keys", "no API keys yet", "Make a key")
	b.shoot("account-keys")
	if err := chromedp.Do(b.ctx, chromedp.SetValue(chromedp.CSS("#key-name"), "Nightly import")); err != nil {
		t.Fatal(err)
	}
	if code, _ := b.click("#key-create"); code != 200 {
		t.Fatalf("make key: %d", code)
	}
	b.mustSay("the new key's page", "shown only once", "all routes")
	key, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.getElementById('new-key').value`))
	if err != nil {
		t.Fatal(err)
	}
	// The copy button is shown by keys.js: it ran despite the CSP.
	if hidden, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.getElementById('copy-key').hidden`)); err != nil || hidden {
		t.Errorf("copy button hidden=%v (%v): keys.js did not run", hidden, err)
	}
	b.shoot("key-created")

	bearer := map[string]string{"Authorization": "Bearer " + key}
	if got := callWithKey(t, d, "/routes/415VNA/", bearer); got.code != 200 || got.user != "user_ada" || got.plan != "pro" || got.org != "" ||
		!strings.HasPrefix(got.key, "key_") {
		t.Fatalf("with the key from the page: %+v, want 200 as user_ada on pro, its key ID in X-Tollgate-Key", got)
	}

	b.open(d.URL + "/.tollgate/account")
	b.mustSay("the account page with a key", "Nightly import", key[:12]+"…", "all routes")
	if _, loc := b.click(`form[action$="/revoke"] button[type="submit"]`); !strings.HasPrefix(loc, d.URL+"/.tollgate/account") {
		t.Fatalf("revoke: at %s", loc)
	}
	b.mustSay("the account page after revoking", "The key is revoked", "Revoked")
	if got := callWithKey(t, d, "/routes/415VNA/", bearer); got.code != 401 || got.errCode != "invalid_api_key" {
		t.Errorf("revoked key: %+v, want 401 invalid_api_key", got)
	}
}

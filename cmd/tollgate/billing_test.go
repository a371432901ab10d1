package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy/sandbox/stripe"
)

// form POSTs fields to u with c (no redirects followed).
func form(t *testing.T, c *http.Client, u string, fields url.Values) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(fields.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testCard pays on the sandbox Checkout page, with the billing address the
// demo's automatic tax asks for.
var testCard = url.Values{"email": {"ada@example.com"}, "card_number": {"4242 4242 4242 4242"}, "exp": {"12 / 34"}, "cvc": {"123"},
	"country": {"GB"}, "postal_code": {"SW1A 1AA"}, "line1": {"1 Horse Guards"}, "city": {"London"}}

// cardOf is testCard paid by email.
func cardOf(email string) url.Values {
	v := url.Values{}
	for k, vs := range testCard {
		v[k] = vs
	}
	v.Set("email", email)
	return v
}

func waitWebhooks(t *testing.T, d *demo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.Stripe.WaitIdle(ctx); err != nil {
		t.Fatalf("webhooks not delivered: %v", err)
	}
}

// TestDemo_PaidJourney is the paid journey end to end through the sandbox,
// with the Stripe account's default API version at the pinned one and at
// the newest (webhooks arrive in its shapes): sign in, hit a paid route,
// upgrade, Checkout, pay, come back with access (before any webhook
// arrives), cancel in the portal, lose access when the period ends.
func TestDemo_PaidJourney(t *testing.T) { eachAPIVersion(t, testDemoPaidJourney) }

func testDemoPaidJourney(t *testing.T, version string) {
	d, _ := mustRunDemoWith(t, demoOptions{Stripe: stripesandbox.Options{APIVersion: version}})
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	route := d.URL + "/routes/415VNA/"

	// Unpaid: a page load goes to the upgrade page, an API call gets 402.
	resp := get(t, c, route, page)
	wantUpgrade := "/.tollgate/upgrade?" + url.Values{"return": {"/routes/415VNA/"}, "route": {"415VNA"}}.Encode()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != wantUpgrade {
		t.Fatalf("unpaid page load: %d %q, want 303 %q", resp.StatusCode, resp.Header.Get("Location"), wantUpgrade)
	}
	resp = get(t, c, route+"data.json", api)
	var pr struct {
		Error      string
		Route      string
		UpgradeURL string `json:"upgrade_url"`
		Plans      []struct{ Key, Name string }
	}
	json.NewDecoder(resp.Body).Decode(&pr)
	if resp.StatusCode != http.StatusPaymentRequired || pr.Error != "payment_required" || pr.Route != "415VNA" ||
		!strings.HasPrefix(pr.UpgradeURL, d.URL+"/.tollgate/upgrade?") || len(pr.Plans) == 0 || pr.Plans[0].Key != "pro" {
		t.Fatalf("unpaid API: %d %+v", resp.StatusCode, pr)
	}

	// The upgrade page lists Pro with its price and trial wording.
	resp = get(t, c, d.URL+wantUpgrade, page)
	body := readBody(t, resp)
	for _, want := range []string{"Pro", "$12.00", "7-day trial", "$1.00", `action="/.tollgate/checkout"`} {
		if !strings.Contains(body, want) {
			t.Errorf("upgrade page lacks %q", want)
		}
	}

	// Webhooks are held back until later: access must come from the return.
	d.Stripe.SetWebhook("", "")

	// A cross-origin POST to checkout is refused.
	req, _ := http.NewRequest("POST", d.URL+"/.tollgate/checkout", strings.NewReader("plan=pro"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin checkout: %v %v", resp, err)
	}

	resp = form(t, c, d.URL+"/.tollgate/checkout", url.Values{"plan": {"pro"}, "route": {"415VNA"}, "return": {"/routes/415VNA/"}})
	payURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(payURL, d.StripeURL+"/checkout/pay/") {
		t.Fatalf("checkout: %d %q", resp.StatusCode, payURL)
	}
	payPage := readBody(t, get(t, c, payURL, page))
	if !strings.Contains(payPage, "7-day") {
		t.Errorf("pay page lacks the trial: %.300s", payPage)
	}
	resp = form(t, c, payURL, testCard)
	done := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(done, d.URL+"/.tollgate/checkout/done?session_id=cs_") {
		t.Fatalf("pay: %d %q", resp.StatusCode, done)
	}
	resp = get(t, c, done, page)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/routes/415VNA/" {
		t.Fatalf("checkout return: %d %q, want 303 back to the route", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code, h := whoami(t, c, d, api); code != 200 || h["user"] != "user_ada" {
		t.Fatalf("whoami %d %v", code, h)
	}
	resp = get(t, c, route, page)
	if resp.StatusCode != 200 {
		t.Fatalf("paid route after checkout, before any webhook: %d", resp.StatusCode)
	}
	routePage := readBody(t, resp)
	if !strings.Contains(routePage, "trialing") || !strings.Contains(routePage, ">pro<") {
		t.Errorf("route page does not show plan pro / trialing: %.500s", routePage)
	}

	// Another customer's session is not ours.
	other, _ := cookiejar.New(nil)
	signIn(t, d, other, "user_grace")
	if resp := get(t, noRedirects(other), done, page); resp.StatusCode != http.StatusForbidden {
		t.Errorf("someone else's checkout return: %d, want 403", resp.StatusCode)
	}

	// Webhooks flow again from here on.
	d.Stripe.SetWebhook(d.URL+"/.tollgate/webhooks/stripe", d.webhookSecret)

	// Checkout again while subscribed: the portal, not a second subscription.
	resp = form(t, c, d.URL+"/.tollgate/checkout", url.Values{"plan": {"pro"}, "return": {"/routes/415VNA/"}})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, d.StripeURL+"/portal/") {
		t.Fatalf("second checkout: %d %q, want the portal", resp.StatusCode, loc)
	}

	// Cancel at period end in the portal: access stays until the trial ends.
	resp = form(t, c, d.URL+"/.tollgate/billing", nil)
	portal := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(portal, d.StripeURL+"/portal/") {
		t.Fatalf("billing: %d %q", resp.StatusCode, portal)
	}
	portalPage := readBody(t, get(t, c, portal, page))
	subID := between(portalPage, `name="subscription" value="`, `"`)
	if subID == "" {
		t.Fatalf("no subscription on the portal page")
	}
	form(t, c, portal, url.Values{"subscription": {subID}, "action": {"cancel_at_period_end"}})
	waitWebhooks(t, d)
	if resp := get(t, c, route, page); resp.StatusCode != 200 {
		t.Fatalf("cancelled at period end, still in the period: %d", resp.StatusCode)
	}
	acct := readBody(t, get(t, c, d.URL+"/.tollgate/account", page))
	if !strings.Contains(acct, "ada@example.com") {
		t.Errorf("account page does not show the email given at checkout")
	}
	if !strings.Contains(acct, "will not renew") {
		t.Errorf("account page does not say the plan ends: %.600s", acct)
	}

	// The period (the trial) ends: Stripe cancels, the webhook ends access.
	d.Stripe.Advance(8 * 24 * time.Hour)
	waitWebhooks(t, d)
	resp = get(t, c, route, page)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/.tollgate/upgrade") {
		t.Fatalf("after the period ended: %d %q, want the upgrade page", resp.StatusCode, resp.Header.Get("Location"))
	}
	upgrade := readBody(t, get(t, c, d.URL+resp.Header.Get("Location"), page))
	if !strings.Contains(upgrade, "has ended") {
		t.Errorf("upgrade page does not explain the ended subscription")
	}
	// The trial was used: no second one is offered.
	if !strings.Contains(upgrade, "You have had a trial before") || !strings.Contains(upgrade, "Subscribe to Pro") || strings.Contains(upgrade, "Start Pro trial") {
		t.Errorf("upgrade page after a used trial still offers one")
	}
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	j := strings.Index(s, end)
	if j < 0 {
		return ""
	}
	return s[:j]
}

// subscribe takes the signed-in visitor in c through Checkout for plan pro
// and returns the subscription ID the sandbox portal shows.
func subscribe(t *testing.T, d *demo, c *http.Client) string {
	t.Helper()
	resp := form(t, c, d.URL+"/.tollgate/checkout", url.Values{"plan": {"pro"}, "return": {"/routes/415VNA/"}})
	payURL := resp.Header.Get("Location")
	resp = form(t, c, payURL, testCard)
	if resp = get(t, c, resp.Header.Get("Location"), page); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("checkout return: %d", resp.StatusCode)
	}
	resp = form(t, c, d.URL+"/.tollgate/billing", nil)
	portal := readBody(t, get(t, c, resp.Header.Get("Location"), page))
	id := between(portal, `name="subscription" value="`, `"`)
	if id == "" {
		t.Fatal("no subscription in the portal")
	}
	return id
}

// TestDemo_StatusChangesByWebhookAndCatchUp drives Stripe statuses through
// real signed webhooks: canceled, unpaid and incomplete_expired end access,
// past_due keeps it (no grace configured); an event whose delivery failed
// while the gateway was unreachable is caught up from Stripe's Events API.
func TestDemo_StatusChangesByWebhookAndCatchUp(t *testing.T) {
	eachAPIVersion(t, testDemoStatusChangesByWebhookAndCatchUp)
}

func testDemoStatusChangesByWebhookAndCatchUp(t *testing.T, version string) {
	d, _ := mustRunDemoWith(t, demoOptions{Stripe: stripesandbox.Options{APIVersion: version}})
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	subID := subscribe(t, d, c)
	waitWebhooks(t, d)
	route := d.URL + "/routes/415VNA/"
	access := func() int { return get(t, c, route, api).StatusCode }
	if got := access(); got != 200 {
		t.Fatalf("subscribed: %d", got)
	}
	for _, tc := range []struct {
		status string
		want   int
	}{
		{"past_due", 200},
		{"active", 200},
		{"unpaid", 402},
		{"active", 200},
		{"incomplete_expired", 402},
		{"active", 200},
	} {
		d.Stripe.SetSubscriptionStatus(subID, tc.status)
		waitWebhooks(t, d)
		if got := access(); got != tc.want {
			t.Errorf("after %s by webhook: %d, want %d", tc.status, got, tc.want)
		}
	}

	// The gateway is unreachable while Stripe cancels: delivery fails.
	d.Stripe.SetRetryDelays(time.Millisecond)
	down := httptestServer(t, http.StatusServiceUnavailable)
	d.Stripe.SetWebhook(down, d.webhookSecret)
	d.Stripe.SetSubscriptionStatus(subID, "canceled")
	waitWebhooks(t, d)
	if got := access(); got != 200 {
		t.Fatalf("the missed event already changed access: %d", got)
	}
	n, err := d.gateway.Billing.CatchUp(t.Context())
	if err != nil || n == 0 {
		t.Fatalf("catch-up: %d events, %v", n, err)
	}
	if got := access(); got != 402 {
		t.Errorf("after catching up on the missed cancellation: %d, want 402", got)
	}
	// A second catch-up finds the events already processed: no work, no change.
	if _, err := d.gateway.Billing.CatchUp(t.Context()); err != nil {
		t.Errorf("second catch-up: %v", err)
	}
}

// httptestServer answers every request with code, on loopback.
func httptestServer(t *testing.T, code int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDemo_StaleActivePeriodIsResyncedNotDenied: the trial ends and Stripe
// renews the subscription, but the webhooks are lost. Days later the
// gateway still grants access (Stripe said trialing), notices the period
// ended long ago, and re-syncs in the background.
func TestDemo_StaleActivePeriodIsResyncedNotDenied(t *testing.T) {
	eachAPIVersion(t, testDemoStaleActivePeriodIsResyncedNotDenied)
}

func testDemoStaleActivePeriodIsResyncedNotDenied(t *testing.T, version string) {
	d, clk := mustRunDemoWith(t, demoOptions{Stripe: stripesandbox.Options{APIVersion: version}})
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	subscribe(t, d, c)
	waitWebhooks(t, d)
	d.Stripe.SetWebhook("", "") // every webhook from here on is lost

	clk.Advance(9 * 24 * time.Hour) // the 7-day trial ended two days ago
	tok := d.Clerk.MintSessionToken("user_ada", "sess_later", clk.Now(), nil)
	bearer := withHeader(api, "Authorization", "Bearer "+tok)
	if resp := get(t, noRedirects(nil), d.URL+"/routes/415VNA/", bearer); resp.StatusCode != 200 {
		t.Fatalf("stale record: %d, want access kept", resp.StatusCode)
	}
	eventually(t, "the background re-sync", func() bool {
		resp := get(t, noRedirects(nil), d.URL+"/.tollgate/api/me", bearer)
		var me struct {
			Subscriptions []struct{ Status string }
		}
		json.NewDecoder(resp.Body).Decode(&me)
		return len(me.Subscriptions) == 1 && me.Subscriptions[0].Status == "active"
	})
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
	stripeclient "github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate/tollgate/proxy"
)

// subscribePlan takes the signed-in visitor in c through Checkout for plan.
func subscribePlan(t *testing.T, d *demo, c *http.Client, plan, ret string) {
	t.Helper()
	resp := form(t, c, d.URL+"/.tollgate/checkout", url.Values{"plan": {plan}, "return": {ret}})
	payURL := resp.Header.Get("Location")
	if payURL == "" {
		t.Fatalf("checkout %s: %d, no Location", plan, resp.StatusCode)
	}
	resp = form(t, c, payURL, testCard)
	if resp = get(t, c, resp.Header.Get("Location"), page); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("checkout return: %d", resp.StatusCode)
	}
	waitWebhooks(t, d)
}

var quotaStateRE = regexp.MustCompile(`"api-quota";r=(\d+);t=(\d+)`)

// quotaCall calls the demo's metered route and reads the quota's state
// from the RateLimit field: what remains and the seconds until it resets.
type quotaAnswer struct {
	code       int
	remain     int64
	reset      int64
	policy     string
	retryAfter string
	body       string
}

func quotaCall(t *testing.T, c *http.Client, u string, hdr map[string]string) quotaAnswer {
	t.Helper()
	resp := get(t, c, u, hdr)
	a := quotaAnswer{code: resp.StatusCode, policy: resp.Header.Get("RateLimit-Policy"), retryAfter: resp.Header.Get("Retry-After")}
	a.body = readBody(t, resp)
	m := quotaStateRE.FindStringSubmatch(resp.Header.Get("RateLimit"))
	if m == nil {
		a.remain, a.reset = -1, -1
		return a
	}
	a.remain, _ = strconv.ParseInt(m[1], 10, 64)
	a.reset, _ = strconv.ParseInt(m[2], 10, 64)
	return a
}

// TestDemo_QuotaSharedAndRolledOver: the demo's API plan (1,000 calls a
// month): a session, a tollgate key and a Clerk key of the same user spend
// one quota; over it,
// 429 with the RateLimit fields and Retry-After at the subscription's
// period end; the account page shows the bar. Then the sandbox clock
// moves past the period end, Stripe renews, and the quota starts again,
// its window the subscription's new period.
func TestDemo_QuotaSharedAndRolledOver(t *testing.T) {
	d, clk := mustRunDemo(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	subscribePlan(t, d, c, "api", "/routes/TIDES/")
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	key, _ := makeKey(t, d, ada, "*")
	withKey := map[string]string{"Accept": "application/json", "Authorization": "Bearer " + key}
	clerkKey, _ := d.Clerk.IssueAPIKey("user_ada", "ci", nil)
	withClerkKey := map[string]string{"Accept": "application/json", "Authorization": "Bearer " + clerkKey}
	periodEnd := func() time.Time {
		t.Helper()
		ents, err := d.gateway.Store.Entitlements(t.Context(), ada)
		if err != nil || len(ents.Subscriptions) != 1 || ents.Subscriptions[0].Plan != "api" {
			t.Fatalf("entitlements: %+v %v", ents, err)
		}
		return ents.Subscriptions[0].CurrentPeriodEnd
	}
	end := periodEnd()
	secondsTo := func(at time.Time) int64 { return int64(math.Ceil(at.Sub(clk.Now()).Seconds())) }

	// The session spends 998 in one call (the demo app's cost header),
	// a tollgate key one, a Clerk key the last.
	if a := quotaCall(t, c, d.URL+"/routes/TIDES/?cost=998", api); a.code != 200 || a.remain != 999 || a.reset != secondsTo(end) {
		t.Fatalf("session: %d r=%d t=%d, want 200 r=999 t=%d", a.code, a.remain, a.reset, secondsTo(end))
	}
	if a := quotaCall(t, c, d.URL+"/routes/TIDES/", withKey); a.code != 200 || a.remain != 1 {
		t.Fatalf("tollgate key, at 998 of 1000: %d r=%d, want 200 r=1", a.code, a.remain)
	}
	if a := quotaCall(t, c, d.URL+"/routes/TIDES/", withClerkKey); a.code != 200 || a.remain != 0 {
		t.Fatalf("Clerk key, at 999 of 1000: %d r=%d, want 200 r=0", a.code, a.remain)
	}
	for _, hdr := range []map[string]string{withKey, withClerkKey, api} {
		a := quotaCall(t, c, d.URL+"/routes/TIDES/", hdr)
		wantPolicy := fmt.Sprintf(`"api-rate";q=40;w=2, "api-quota";q=1000;w=%d`, int64(end.Sub(end.AddDate(0, -1, 0)).Seconds()))
		if a.code != 429 || a.remain != 0 || a.retryAfter != strconv.FormatInt(secondsTo(end), 10) || a.policy != wantPolicy {
			t.Errorf("over the quota: %d r=%d Retry-After %s policy %q; want 429 r=0 Retry-After %d policy %q",
				a.code, a.remain, a.retryAfter, a.policy, secondsTo(end), wantPolicy)
		}
		var body struct {
			Error string `json:"error"`
			Used  int64  `json:"used"`
		}
		if err := json.Unmarshal([]byte(a.body), &body); err != nil || body.Error != "quota_exceeded" || body.Used != 1000 {
			t.Errorf("429 body %s", a.body)
		}
	}
	acct := readBody(t, get(t, c, d.URL+"/.tollgate/account", page))
	if !strings.Contains(acct, `<progress class="usage-bar full" max="1000" value="1000"`) ||
		!strings.Contains(acct, "resets "+end.UTC().Format("2 January 2006, 15:04")) {
		t.Errorf("account page lacks the full usage bar and the reset date %v:\n%s", end, between(acct, `id="usage"`, "</section>"))
	}
	over := readBody(t, get(t, c, d.URL+"/routes/TIDES/", page))
	if !strings.Contains(over, "The <strong>Pro</strong> plan includes more") || !strings.Contains(over, `href="/.tollgate/subscribe/pro"`) {
		t.Errorf("over-quota page does not offer Pro:\n%s", over)
	}

	// Past the period's end: Stripe renews, the quota starts again.
	clk.Advance(end.Sub(clk.Now()) + time.Hour)
	d.Stripe.Advance(0) // bill what is due at the moved clock
	waitWebhooks(t, d)
	next := periodEnd()
	if !next.After(end) {
		t.Fatalf("not renewed: period end %v", next)
	}
	a := quotaCall(t, c, d.URL+"/routes/TIDES/", withKey)
	if a.code != 200 || a.remain != 999 || a.reset != secondsTo(next) {
		t.Errorf("new period: %d r=%d t=%d, want 200 r=999 t=%d (the new period's end, %v)", a.code, a.remain, a.reset, secondsTo(next), next)
	}
}

// TestServe_KillNineRemembersQuota: a real `tollgate serve` counts a
// subject's calls and is killed with SIGKILL; started again on the same
// store, it remembers what was used, up to one flush interval: at least
// what was flushed before the kill, never more than was counted.
func TestServe_KillNineRemembersQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	d, _ := mustRunDemo(t)
	child := newDemoChild(t, d)
	child.writeConfig(t, demoConfig)
	serveDemo := child.serve
	proc := startServe(t, serveDemo)
	base := "http://" + proc.addr
	d.Stripe.SetWebhook(base+"/.tollgate/webhooks/stripe", d.webhookSecret)

	// Ada pays for the API plan through Stripe; the webhooks tell tollgate.
	sc := stripeclient.New(d.Stripe.SecretKey(), stripego.NewBackendsWithConfig(&stripego.BackendConfig{URL: stripego.String(d.StripeURL)}))
	cus, err := sc.Customers.New(&stripego.CustomerParams{Email: stripego.String("ada@example.com"),
		Metadata: map[string]string{"clerk_user_id": "user_ada"}})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := sc.CheckoutSessions.New(&stripego.CheckoutSessionParams{Mode: stripego.String("subscription"), Customer: stripego.String(cus.ID),
		SuccessURL: stripego.String(base + "/"), CancelURL: stripego.String(base + "/"),
		LineItems: []*stripego.CheckoutSessionLineItemParams{{Price: stripego.String("price_demo_api_monthly"), Quantity: stripego.Int64(1)}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := noRedirects(nil).PostForm(cs.URL, testCard); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := d.Stripe.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	call := func(base string, cost int) quotaAnswer {
		t.Helper()
		tok := d.Clerk.MintSessionToken("user_ada", "sess_quota", time.Now(), nil)
		return quotaCall(t, client, fmt.Sprintf("%s/routes/TIDES/?cost=%d", base, cost), map[string]string{"Accept": "application/json", "Authorization": "Bearer " + tok})
	}
	okFlushes := func() int {
		t.Helper()
		resp, err := client.Get("http://" + child.adminAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^tollgate_quota_flush_seconds_count\{result="ok"\} (\d+)`).FindStringSubmatch(readBody(t, resp))
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}

	// 100 units, then two flushes that began after them: they are on disk.
	if a := call(base, 60); a.code != 200 {
		t.Fatalf("first call: %d %s", a.code, a.body)
	}
	if a := call(base, 40); a.code != 200 || a.remain != 939 {
		t.Fatalf("second call: %d r=%d, want 200 r=939", a.code, a.remain)
	}
	seen := okFlushes()
	deadline := time.Now().Add(30 * time.Second)
	for okFlushes() < seen+2 {
		if time.Now().After(deadline) {
			t.Fatal("no flush within 30s")
		}
		time.Sleep(50 * time.Millisecond) // polls a real external process
	}
	// 7 more, perhaps not flushed, and kill -9 at once.
	if a := call(base, 7); a.code != 200 {
		t.Fatalf("third call: %d", a.code)
	}
	if err := proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-proc.exited

	again := startServe(t, serveDemo)
	d.Stripe.SetWebhook("http://"+again.addr+"/.tollgate/webhooks/stripe", d.webhookSecret)
	a := call("http://"+again.addr, 1)
	if a.code != 200 {
		t.Fatalf("after the restart: %d %s", a.code, a.body)
	}
	used := 1000 - a.remain - 1 // before this call
	if used < 100 || used > 107 {
		t.Errorf("after kill -9 and a restart: %d used, want from 100 (flushed) to 107 (counted)", used)
	}
	t.Logf("used after kill -9: %d (100 flushed before the kill, 7 after)", used)
}

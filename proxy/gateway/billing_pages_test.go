package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

func TestSafeReturn_KeepsOnlyOwnPaths(t *testing.T) {
	fx := newGateFixture(t, nil)
	tests := []struct{ in, want string }{
		{"", "/"},
		{"/routes/415VNA/?tab=2", "/routes/415VNA/?tab=2"},
		{"https://app.example.com/routes/x", "/routes/x"},
		{"HTTPS://APP.EXAMPLE.COM/routes/x", "/routes/x"},
		{"https://evil.example/routes/x", "/"},
		{"https://app.example.com.evil.example/x", "/"},
		{"https://user@app.example.com/x", "/"},
		{"http://app.example.com/x", "/"}, // another scheme is another origin
		{"//evil.example/x", "/"},
		{"/\\evil.example", "/%5Cevil.example"},
		{"\\\\evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"/.tollgate/upgrade?route=x", "/"},
		{"/.TOLLGATE/checkout", "/"},
		{"/a/../.tollgate/account", "/"},
		{"/x?__clerk_handshake=abc&keep=1", "/x?keep=1"},
		{"relative/path", "/"},
	}
	for _, tt := range tests {
		got := fx.srv.safeReturn(tt.in)
		if got != tt.want {
			t.Errorf("safeReturn(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.HasPrefix(got, "//") || strings.HasPrefix(got, "/\\") {
			t.Errorf("safeReturn(%q) = %q: a browser reads that as another host", tt.in, got)
		}
	}
}

type fakeBilling struct {
	mu       sync.Mutex
	requests []proxy.CheckoutRequest
	portals  []proxy.Subject
	returns  []string // session IDs CompleteCheckout was asked about
	// entered and hold, when set, make CompleteCheckout say it started and
	// wait until hold is closed.
	entered chan struct{}
	hold    chan struct{}
}

func (f *fakeBilling) Checkout(_ context.Context, req proxy.CheckoutRequest) (proxy.CheckoutResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	return proxy.CheckoutResult{URL: "https://checkout.stripe.test/c/pay/cs_1"}, nil
}

func (f *fakeBilling) CompleteCheckout(_ context.Context, id string, _ *proxy.Identity) (proxy.CheckoutReturn, error) {
	f.mu.Lock()
	f.returns = append(f.returns, id)
	entered, hold := f.entered, f.hold
	f.mu.Unlock()
	if hold != nil {
		entered <- struct{}{}
		<-hold
	}
	return proxy.CheckoutReturn{}, proxy.ErrNotYours
}

func (f *fakeBilling) returnCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.returns)
}

func (f *fakeBilling) Portal(_ context.Context, s proxy.Subject, _ string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.portals = append(f.portals, s)
	return "https://billing.stripe.test/p/session/1", nil
}

func (fx *gateFixture) post(target string, form url.Values, hdr map[string]string) *http.Response {
	fx.t.Helper()
	req, _ := http.NewRequest("POST", fx.front.URL+target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestCheckout_WhoMayPayAndFromWhere(t *testing.T) {
	fx := newGateFixture(t, nil)
	fb := &fakeBilling{}
	fx.srv.billing, fx.srv.billingOn = fb, true
	user := map[string]string{"X-Test-User": "user_1", "Accept": "text/html"}
	member := map[string]string{"X-Test-User": "user_1", "X-Test-Org": "org_1", "Accept": "text/html"}

	// A user plan: the user pays, the return path is kept (and cleaned).
	resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"pro"}, "return": {"https://evil.example/x"}}, user)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "https://checkout.stripe.test/c/pay/cs_1" {
		t.Fatalf("checkout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// An organisation plan without an active organisation, or as a member: refused.
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"team"}}, user); resp.StatusCode != http.StatusForbidden {
		t.Errorf("org plan, no org: %d", resp.StatusCode)
	}
	// The fixture's fake Clerk makes everyone an org admin; a member is not.
	fx.srv.auth = fakeAuth{func(r *http.Request) proxy.AuthResult {
		res := signedInByHeader(r)
		if res.Identity != nil && r.Header.Get("X-Test-Role") != "" {
			res.Identity.OrgRole = r.Header.Get("X-Test-Role")
		}
		return res
	}}
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"team"}}, with(member, "X-Test-Role", "org:member")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("org plan, member: %d", resp.StatusCode)
	}
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"team"}}, member); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("org plan, admin: %d", resp.StatusCode)
	}
	// Cross-origin POSTs are refused before anything happens.
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"pro"}}, with(user, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin: %d", resp.StatusCode)
	}
	// Unknown plan: 404; signed out: 401 (a POST is never redirected).
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"gold"}}, user); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown plan: %d", resp.StatusCode)
	}
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"pro"}}, map[string]string{"Accept": "text/html"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("signed out: %d", resp.StatusCode)
	}
	got := []string{}
	for _, r := range fb.requests {
		got = append(got, r.Subject.String()+" "+r.Plan.Key+" "+r.ReturnPath)
	}
	if diff := cmp.Diff([]string{"user:user_1 pro /", "org:org_1 team /"}, got); diff != "" {
		t.Errorf("checkouts started (-want +got):\n%s", diff)
	}

	// The portal: the user's own, or the organisation's for its admins only.
	fx.post("/.tollgate/billing", nil, user)
	if resp := fx.post("/.tollgate/billing", url.Values{"scope": {"org"}}, with(member, "X-Test-Role", "org:member")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("org portal as a member: %d", resp.StatusCode)
	}
	fx.post("/.tollgate/billing", url.Values{"scope": {"org"}}, member)
	if diff := cmp.Diff([]proxy.Subject{{Kind: proxy.SubjectUser, ID: "user_1"}, {Kind: proxy.SubjectOrg, ID: "org_1"}}, fb.portals); diff != "" {
		t.Errorf("portals opened (-want +got):\n%s", diff)
	}

	// Someone else's checkout session: 403.
	if resp := fx.do("GET", "/.tollgate/checkout/done?session_id=cs_test_other", with(navigation, "X-Test-User", "user_1")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign session: %d", resp.StatusCode)
	}
}

// Ensure the endpoints that cost Stripe calls are bounded per user: a
// flood from one user gets 429 with Retry-After (a page for a browser,
// JSON for a program) without reaching Billing, while another user is
// served; malformed session IDs never reach Billing at all.
func TestBillingEndpoints_BoundedPerUser(t *testing.T) {
	fx := newGateFixture(t, nil)
	fb := &fakeBilling{}
	fx.srv.billing, fx.srv.billingOn = fb, true
	flooder := with(xhr, "X-Test-User", "user_flood")
	for i := range billingBurst {
		if resp := fx.do("GET", "/.tollgate/checkout/done?session_id=cs_test_r"+strconv.Itoa(i), flooder); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("request %d within the burst: %d", i, resp.StatusCode)
		}
	}
	resp := fx.do("GET", "/.tollgate/checkout/done?session_id=cs_test_more", flooder)
	var body errorBody
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "6" || body.Error != "too_many_requests" {
		t.Errorf("beyond the burst: %d Retry-After %q %+v, want 429, 6 and JSON", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// A browser gets the page, for a form POST too; the portal is counted alike.
	browser := with(navigation, "X-Test-User", "user_flood")
	for _, r := range []*http.Response{
		fx.do("GET", "/.tollgate/checkout/done?session_id=cs_test_more", browser),
		fx.post("/.tollgate/checkout", url.Values{"plan": {"pro"}}, with(browser, "Sec-Fetch-Site", "same-origin")),
		fx.post("/.tollgate/billing", nil, with(browser, "Sec-Fetch-Site", "same-origin")),
	} {
		b, _ := io.ReadAll(r.Body)
		if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "Too many requests") {
			t.Errorf("%s %s beyond the burst: %d %q %.80s", r.Request.Method, r.Request.URL.Path, r.StatusCode, r.Header.Get("Retry-After"), b)
		}
	}
	if n := fb.returnCount(); n != billingBurst || len(fb.requests) != 0 || len(fb.portals) != 0 {
		t.Errorf("Billing reached %d+%d+%d times, want the burst (%d) only", n, len(fb.requests), len(fb.portals), billingBurst)
	}
	// Another user is served meanwhile.
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"pro"}}, with(navigation, "X-Test-User", "user_other")); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("another user's checkout during the flood: %d", resp.StatusCode)
	}
	// Malformed session IDs: 400, never Billing, no allowance spent.
	for _, id := range []string{"", "x", "cs_123", "cs_test_", "cs_test_a-b", "cs_test_%00", "sub_1", strings.Repeat("cs_test_a", 40)} {
		if resp := fx.do("GET", "/.tollgate/checkout/done?session_id="+url.QueryEscape(id), with(xhr, "X-Test-User", "user_typo")); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("session_id %q: %d, want 400", id, resp.StatusCode)
		}
	}
	if resp := fx.do("GET", "/.tollgate/checkout/done?session_id=cs_live_ok", with(xhr, "X-Test-User", "user_typo")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a well-formed ID after many malformed ones: %d", resp.StatusCode)
	}
	// The allowance refills: one more every billingEvery.
	fx.now = fx.now.Add(billingEvery)
	if resp := fx.do("GET", "/.tollgate/checkout/done?session_id=cs_test_later", flooder); resp.StatusCode != http.StatusForbidden {
		t.Errorf("after %v: %d", billingEvery, resp.StatusCode)
	}
	if resp := fx.do("GET", "/.tollgate/checkout/done?session_id=cs_test_later", flooder); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the refill gave more than one: %d", resp.StatusCode)
	}
}

// Ensure one user has at most billingInFlight requests in Billing at once:
// the next is refused at once, not queued.
func TestBillingEndpoints_InFlightPerUser(t *testing.T) {
	fx := newGateFixture(t, nil)
	fb := &fakeBilling{entered: make(chan struct{}, 10), hold: make(chan struct{})}
	fx.srv.billing, fx.srv.billingOn = fb, true
	type result struct {
		code int
		err  error
	}
	results := make(chan result, billingInFlight)
	for range billingInFlight {
		go func() {
			req, _ := http.NewRequest("GET", fx.front.URL+"/.tollgate/checkout/done?session_id=cs_test_slow", nil)
			req.Header.Set("Accept", "application/json")
			req.Header.Set("X-Test-User", "user_1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				results <- result{0, err}
				return
			}
			resp.Body.Close()
			results <- result{resp.StatusCode, nil}
		}()
		<-fb.entered
	}
	// billingInFlight requests are inside Billing: the next is refused.
	resp := fx.do("GET", "/.tollgate/checkout/done?session_id=cs_test_slow", with(xhr, "X-Test-User", "user_1"))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("beyond %d in flight: %d Retry-After %q, want 429 and 1", billingInFlight, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(fb.hold)
	for range billingInFlight {
		if r := <-results; r.err != nil || r.code != http.StatusForbidden {
			t.Errorf("held request: %d %v", r.code, r.err)
		}
	}
	if resp := fx.do("GET", "/.tollgate/checkout/done?session_id=cs_test_slow", with(xhr, "X-Test-User", "user_1")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("after the others finished: %d", resp.StatusCode)
	}
}

func FuzzValidCheckoutSessionID(f *testing.F) {
	for _, s := range []string{"cs_test_a1B2", "cs_live_Z9", "cs_test_", "cs_", "cs_test_a/b", "cs_test_é", "CS_TEST_A", "cs_test_a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !proxy.ValidCheckoutSessionID(id) {
			return
		}
		rest, ok := strings.CutPrefix(id, "cs_test_")
		if !ok {
			rest, ok = strings.CutPrefix(id, "cs_live_")
		}
		if !ok || rest == "" || len(id) > 255 || url.PathEscape(id) != id || strings.ContainsAny(rest, "_-./%\\?#") {
			t.Errorf("accepted %q", id)
		}
	})
}

// The account page offers the portal that each plan can be managed in: the
// visitor's own plans without a scope, the organisation's (to its admins)
// with scope=org, and to members a word that admins manage it. A past_due
// plan whose grace is over says access is on hold.
func TestAccountPage_ManageButtonsFollowWhoPays(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.srv.billing, fx.srv.billingOn = &fakeBilling{}, true
	fx.srv.auth = fakeAuth{func(r *http.Request) proxy.AuthResult {
		res := signedInByHeader(r)
		if res.Identity != nil && r.Header.Get("X-Test-Role") != "" {
			res.Identity.OrgRole = r.Header.Get("X-Test-Role")
		}
		return res
	}}
	org := proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_1"}
	fx.ents[org] = &proxy.Entitlements{Subject: org, Subscriptions: []proxy.Subscription{{ID: "sub_team", Plan: "team", Status: proxy.StatusActive}}}
	admin := with(navigation, "X-Test-User", "user_1", "X-Test-Org", "org_1")
	page := body(t, fx.do("GET", "/.tollgate/account", admin))
	if !strings.Contains(page, `name="scope" value="org"`) || !strings.Contains(page, "Manage the organisation") {
		t.Errorf("an org admin's account page offers no org portal:\n%s", page)
	}
	page = body(t, fx.do("GET", "/.tollgate/account", with(admin, "X-Test-Role", "org:member")))
	if strings.Contains(page, "/billing") || !strings.Contains(page, "managed by its admins") {
		t.Errorf("a member's account page:\n%s", page)
	}

	user := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_2"}
	fx.ents[user] = &proxy.Entitlements{Subject: user, Subscriptions: []proxy.Subscription{{ID: "sub_pro", Plan: "pro", Status: proxy.StatusPastDue,
		PastDueSince: fx.now.Add(-30 * 24 * time.Hour)}}}
	fx.srv.cfg.Stripe.PastDueGrace = 24 * time.Hour
	page = body(t, fx.do("GET", "/.tollgate/account", with(navigation, "X-Test-User", "user_2")))
	if !strings.Contains(page, "access is on hold") || strings.Contains(page, "to keep your access") || strings.Contains(page, `value="org"`) {
		t.Errorf("past_due beyond its grace:\n%s", page)
	}
}

// fakeTrials knows customers by subject and which of them had a trial.
type fakeTrials struct {
	customers map[proxy.Subject]string
	had       map[string]bool
}

func (f fakeTrials) CustomerOf(_ context.Context, s proxy.Subject) (string, error) {
	return f.customers[s], nil
}

func (f fakeTrials) HadTrial(_ context.Context, customerID string) (bool, error) {
	return f.had[customerID], nil
}

// The upgrade page promises a trial only when the store says the
// subject's customer has had none; without a store it hedges.
func TestUpgradePage_TrialAsTheStoreKnowsIt(t *testing.T) {
	const (
		hedge   = "One trial per customer"
		offered = "14-day free trial"
		used    = "Subscribe to pro" // not "Start pro trial"
	)
	user1 := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}
	tests := []struct {
		name   string
		trials Trials // nil: none given
		want   []string
		absent []string
	}{
		{"no store", nil, []string{offered, hedge}, []string{used}},
		{"no customer yet", fakeTrials{}, []string{offered}, []string{hedge, used}},
		{"a customer without a trial", fakeTrials{customers: map[proxy.Subject]string{user1: "cus_1"}}, []string{offered}, []string{hedge, used}},
		{"a customer who had one", fakeTrials{customers: map[proxy.Subject]string{user1: "cus_1"}, had: map[string]bool{"cus_1": true}},
			[]string{used}, []string{offered, hedge}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := newGateFixtureConfig(t, nil, func(c string) string {
				return strings.Replace(c, "    prices: [price_pro]\n", "    prices: [price_pro]\n    trial_days: 14\n", 1)
			})
			fx.srv.billing, fx.srv.billingOn = &fakeBilling{}, true
			if tc.trials != nil {
				fx.srv.trials = tc.trials
			}
			page := body(t, fx.do("GET", "/.tollgate/upgrade?route=415VNA", with(navigation, "X-Test-User", "user_1")))
			for _, s := range tc.want {
				if !strings.Contains(page, s) {
					t.Errorf("the page lacks %q:\n%.3000s", s, page)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(page, s) {
					t.Errorf("the page says %q:\n%.3000s", s, page)
				}
			}
		})
	}
}

// fakeDirectory knows one user's email.
type fakeDirectory map[string]string

func (f fakeDirectory) Email(_ context.Context, userID string) (string, error) { return f[userID], nil }

func TestAccountPage_EmailFromTheDirectory(t *testing.T) {
	fx := newGateFixture(t, nil)
	if page := body(t, fx.do("GET", "/.tollgate/account", with(navigation, "X-Test-User", "user_1"))); !strings.Contains(page, "Signed in as <strong>user_1</strong>") {
		t.Errorf("without a directory the page does not name the user by ID:\n%.2000s", page)
	}
	fx.srv.directory = fakeDirectory{"user_1": "ada@example.com"}
	if page := body(t, fx.do("GET", "/.tollgate/account", with(navigation, "X-Test-User", "user_1"))); !strings.Contains(page, "Signed in as <strong>ada@example.com</strong>") {
		t.Errorf("the page does not show the directory's email:\n%.2000s", page)
	}
}

// Without billing the pages offer no Checkout form: a form that could only
// answer 404 is a dead end (red team #3).
func TestBillingPages_NoBillingOffersNoCheckout(t *testing.T) {
	fx := newGateFixture(t, nil) // no Options.Billing
	for _, p := range []string{"/.tollgate/upgrade?route=415VNA", "/.tollgate/subscribe/pro"} {
		resp := fx.do("GET", p, with(navigation, "X-Test-User", "user_1"))
		b, _ := io.ReadAll(resp.Body)
		if strings.Contains(string(b), `action="/.tollgate/checkout"`) {
			t.Errorf("%s offers a Checkout form without billing", p)
		}
	}
}

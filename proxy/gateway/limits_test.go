package gateway

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/limits"
)

// limitedPlans replaces the test config's plans: pro has a quota on 415VNA
// and a rate elsewhere, business unlocks 415VNA with no limit, and free:
// lets anyone signed in use FREE1 a few times a day.
func limitedPlans(quota int) func(string) string {
	return func(cfg string) string {
		cfg = strings.Replace(cfg, `plans:
  pro:
    prices: [price_pro]
    routes: ["415VNA"]`, `cost_header: X-Cost
free:
  routes: [FREE1]
  limits: { FREE1: { quota: 3/day } }
plans:
  pro:
    prices: [price_pro]
    routes: ["415VNA", "OTHER"]
    limits:
      "415VNA": { quota: `+strconv.Itoa(quota)+`/month }
      "*": { rate: 5/s, burst: 2 }
  business:
    prices: [price_business]
    routes: ["415VNA"]`, 1)
		return cfg
	}
}

type limitFixture struct {
	*gateFixture
	lim *limits.Limiter
}

func newLimitFixture(t *testing.T, quota int, upstream http.Handler) *limitFixture {
	t.Helper()
	return newLimitFixtureWith(t, quota, upstream, nil)
}

func newLimitFixtureEdit(t *testing.T, quota int, edit func(string) string) *limitFixture {
	t.Helper()
	return newLimitFixtureWith(t, quota, nil, edit)
}

func newLimitFixtureWith(t *testing.T, quota int, upstream http.Handler, edit func(string) string, opts ...func(*Options)) *limitFixture {
	t.Helper()
	lf := &limitFixture{}
	var fx *gateFixture
	fx = newGateFixtureWith(t, upstream, func(cfg string) string {
		cfg = limitedPlans(quota)(cfg)
		if edit != nil {
			cfg = edit(cfg)
		}
		return cfg
	}, func(o *Options) {
		l, err := limits.New(limits.Options{Store: limits.NewMemoryStore(), Now: o.Now})
		if err != nil {
			t.Fatal(err)
		}
		o.Limiter, lf.lim = l, l
		for _, opt := range opts {
			opt(o)
		}
	})
	lf.gateFixture = fx
	anchor := time.Date(2026, 1, 10, 8, 0, 0, 0, time.UTC)
	for _, u := range []string{"user_a", "user_b"} {
		sub := proxy.Subject{Kind: proxy.SubjectUser, ID: u}
		fx.ents[sub] = &proxy.Entitlements{Subject: sub, Subscriptions: []proxy.Subscription{{ID: "sub_" + u, Plan: "pro", Status: proxy.StatusActive,
			CurrentPeriodEnd: time.Date(2026, 12, 10, 8, 0, 0, 0, time.UTC), BillingCycleAnchor: anchor}}}
	}
	return lf
}

var (
	policyRE = regexp.MustCompile(`^"pro-quota";q=(\d+);w=(\d+)$`)
	stateRE  = regexp.MustCompile(`^"pro-quota";r=(\d+);t=(\d+)$`)
)

// On one replica, N parallel requests from two subjects against a quota Q
// allow exactly Q each; the rest get 429 with Retry-After and the RateLimit
// fields, and the allowed ones carry RateLimit too.
func TestLimits_ExactQuotaTwoSubjects(t *testing.T) {
	const q, n = 15, 40
	fx := newLimitFixture(t, q, nil)
	// The window: 10 November 08:00 to 10 December 08:00 (the anchor's
	// day), and the test's clock is 27 November 12:00.
	const window = 30 * 24 * 3600
	reset := int(time.Date(2026, 12, 10, 8, 0, 0, 0, time.UTC).Sub(fx.now).Seconds())
	type result struct {
		user   string
		status int
		h      http.Header
	}
	results := make(chan result, 2*n)
	var wg sync.WaitGroup
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := []string{"user_a", "user_b"}[i%2]
			req, _ := http.NewRequest("GET", fx.front.URL+"/routes/415VNA/x", nil)
			req.Header.Set("X-Test-User", user)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- result{user, resp.StatusCode, resp.Header}
		}()
	}
	wg.Wait()
	close(results)
	ok := map[string]int{}
	for r := range results {
		pol, st := r.h.Get("RateLimit-Policy"), r.h.Get("RateLimit")
		pm, sm := policyRE.FindStringSubmatch(pol), stateRE.FindStringSubmatch(st)
		if pm == nil || sm == nil || pm[1] != strconv.Itoa(q) || pm[2] != strconv.Itoa(window) || sm[2] != strconv.Itoa(reset) {
			t.Errorf("%s %d: RateLimit-Policy %q, RateLimit %q; want q=%d w=%d, t=%d", r.user, r.status, pol, st, q, window, reset)
			continue
		}
		switch r.status {
		case http.StatusOK:
			ok[r.user]++
		case http.StatusTooManyRequests:
			if sm[1] != "0" || r.h.Get("Retry-After") != strconv.Itoa(reset) {
				t.Errorf("429: RateLimit %q, Retry-After %q; want r=0 and %d", st, r.h.Get("Retry-After"), reset)
			}
		default:
			t.Errorf("%s: status %d", r.user, r.status)
		}
	}
	for _, u := range []string{"user_a", "user_b"} {
		if ok[u] != q {
			t.Errorf("%s: %d allowed, want exactly %d", u, ok[u], q)
		}
	}
	if got := fx.upstreamCount(); got != 2*q {
		t.Errorf("upstream saw %d requests, want %d", got, 2*q)
	}
}

// The cost header's value is the cost; it never reaches the client, and a
// client's own copy never reaches the upstream. A 5xx costs nothing.
func TestLimits_CostHeaderAnd5xx(t *testing.T) {
	var sawCost []string
	var mu sync.Mutex
	fx := newLimitFixture(t, 10, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sawCost = append(sawCost, r.Header.Values("X-Cost")...)
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/fail") {
			w.Header().Set("X-Cost", "4")
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Header().Set("X-Cost", r.URL.Query().Get("cost"))
		io.WriteString(w, "ok")
	}))
	user := map[string]string{"X-Test-User": "user_a", "X-Cost": "0"}
	for _, tc := range []struct {
		path       string
		wantStatus int
		wantR      string
	}{
		{"/routes/415VNA/x?cost=4", 200, "9"}, // r is counted before the cost is known
		{"/routes/415VNA/fail", 502, "5"},
		{"/routes/415VNA/x?cost=5", 200, "5"},
		{"/routes/415VNA/x?cost=1", 200, "0"}, // 9 used < 10: admitted
		{"/routes/415VNA/x", 429, "0"},
	} {
		resp := fx.do("GET", tc.path, user)
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus {
			t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.wantStatus)
		}
		if v := resp.Header.Values("X-Cost"); len(v) != 0 {
			t.Errorf("%s: the client saw X-Cost %q", tc.path, v)
		}
		if m := stateRE.FindStringSubmatch(resp.Header.Get("RateLimit")); tc.wantStatus != 502 && (m == nil || m[1] != tc.wantR) {
			t.Errorf("%s: RateLimit %q, want r=%s", tc.path, resp.Header.Get("RateLimit"), tc.wantR)
		}
	}
	if len(sawCost) != 0 {
		t.Errorf("the upstream saw the client's X-Cost: %q", sawCost)
	}
}

// A page load over a quota gets the page: what was used, when it resets,
// which plan has more, with the upgrade button. An API client gets JSON.
func TestLimits_OverQuotaPage(t *testing.T) {
	fx := newLimitFixture(t, 1, nil)
	user := map[string]string{"X-Test-User": "user_a"}
	fx.do("GET", "/routes/415VNA/x", user).Body.Close()
	page := map[string]string{"X-Test-User": "user_a", "Accept": "text/html", "Sec-Fetch-Dest": "document"}
	resp := fx.do("GET", "/routes/415VNA/x", page)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", resp.StatusCode)
	}
	for _, want := range []string{"<strong>1</strong> have been used", "10 December 2026, 08:00 UTC", "The <strong>business</strong> plan includes more",
		`href="/.tollgate/subscribe/business"`, `<progress class="usage-bar full" max="1" value="1"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	resp = fx.do("GET", "/routes/415VNA/x", user)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"error":"quota_exceeded"`, `"used":1`, `"quota":1`, `"resets_at":"2026-12-10T08:00:00Z"`, `"upgrade_url":"https://app.example.com/.tollgate/subscribe/business"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("JSON lacks %s: %s", want, body)
		}
	}
}

// The rate: the burst at once, then 429 with Retry-After; the subject's
// sessions and keys share it.
func TestLimits_Rate(t *testing.T) {
	fx := newLimitFixture(t, 10, nil)
	var codes []int
	for range 3 {
		resp := fx.do("GET", "/routes/OTHER/x", map[string]string{"X-Test-User": "user_a"})
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests {
			if resp.Header.Get("Retry-After") != "1" || resp.Header.Get("RateLimit-Policy") != `"pro-rate";q=2;w=1` ||
				resp.Header.Get("RateLimit") != `"pro-rate";r=0;t=1` {
				t.Errorf("429 headers: %v", resp.Header)
			}
		}
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Errorf("statuses %v, want 200 200 429", codes)
	}
}

// A visitor with no plan (or a lapsed one) is on free: for its routes.
func TestLimits_Free(t *testing.T) {
	fx := newGateFixtureWith(t, nil, func(cfg string) string {
		return strings.Replace(limitedPlans(5)(cfg), `- { path: "/", access: public }`, `- { path: "/", access: public }
  - { path: "/free/*", id: FREE1, access: paid }`, 1)
	}, func(o *Options) {
		o.Limiter, _ = limits.New(limits.Options{Store: limits.NewMemoryStore(), Now: o.Now})
	})
	var codes []int
	for range 4 {
		resp := fx.do("GET", "/free/x", map[string]string{"X-Test-User": "user_nobody"})
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if got := fx.lastUpstream().Header.Get(HeaderPlan); got != "free" {
		t.Errorf("X-Tollgate-Plan %q, want free", got)
	}
	if codes[2] != 200 || codes[3] != 429 {
		t.Errorf("statuses %v, want three 200 then 429", codes)
	}
}

// The admin console's user page shows the subject's usage this period.
func TestLimits_AdminConsoleUsage(t *testing.T) {
	lf := &limitFixture{}
	fx := newGateFixtureWith(t, nil, limitedPlans(10), func(o *Options) {
		lf.lim, _ = limits.New(limits.Options{Store: limits.NewMemoryStore(), Now: o.Now})
		o.Limiter, o.Admin = lf.lim, newFakeAdmin()
	})
	sub := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_a"}
	fx.ents[sub] = &proxy.Entitlements{Subject: sub, Subscriptions: []proxy.Subscription{{ID: "sub_a", Plan: "pro", Status: proxy.StatusActive,
		BillingCycleAnchor: time.Date(2026, 1, 10, 8, 0, 0, 0, time.UTC)}}}
	for range 3 {
		fx.do("GET", "/routes/415VNA/x", map[string]string{"X-Test-User": "user_a"}).Body.Close()
	}
	resp := fx.do("GET", "/.tollgate/admin/users/user_a", map[string]string{"X-Test-User": "user_boss", "Accept": "text/html"})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("user page: %d", resp.StatusCode)
	}
	row := between(string(body), `data-usage="pro 415VNA">`, "</tr>")
	for _, want := range []string{`data-label="Used">3<`, `10 a month`, `10 Dec 2026 08:00 UTC`} {
		if !strings.Contains(row, want) {
			t.Errorf("usage row lacks %q: %s", want, row)
		}
	}
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	if j := strings.Index(s, end); j >= 0 {
		return s[:j]
	}
	return s
}

// A visitor on free: is shown the plans on the upgrade page, not sent back.
func TestLimits_FreeVisitorSeesTheUpgradePage(t *testing.T) {
	fx := newGateFixtureWith(t, nil, limitedPlans(5), func(o *Options) {
		o.Limiter, _ = limits.New(limits.Options{Store: limits.NewMemoryStore(), Now: o.Now})
	})
	resp := fx.do("GET", "/.tollgate/upgrade?route=FREE1", map[string]string{"X-Test-User": "user_nobody", "Accept": "text/html"})
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("upgrade page on free: %d, want 200", resp.StatusCode)
	}
}

// Forward auth: an allowed request costs 1 when it is allowed and carries
// the RateLimit fields; over the quota, auth_request gets 403 with the
// status and the fields to copy.
func TestLimits_ForwardAuth(t *testing.T) {
	lf := newLimitFixtureEdit(t, 1, trustLoopback)
	hdr := map[string]string{"X-Test-User": "user_a", "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/routes/415VNA/x",
		"X-Forwarded-Host": "app.example.com", "X-Forwarded-Proto": "https"}
	resp := lf.do("GET", "/.tollgate/auth", hdr)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("RateLimit") == "" {
		t.Fatalf("allowed: %d RateLimit %q", resp.StatusCode, resp.Header.Get("RateLimit"))
	}
	resp = lf.do("GET", "/.tollgate/auth", hdr)
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("X-Tollgate-Status-Code") != "429" || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(resp.Header.Get("RateLimit"), `"pro-quota";r=0`) {
		t.Errorf("over the quota: %d %v", resp.StatusCode, resp.Header)
	}
}

package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/config"
)

const gateTestConfig = `
listen: ":0"
public_url: "https://app.example.com"
upstream: "%s"
trusted_proxies: ["10.0.0.0/8"]
default_access: paid
clerk:
  publishable_key: "pk_live_Y2xlcmsuZXhhbXBsZS5jb20k"
  secret_key: "sk_live_x"
session:
  secret: "0123456789abcdef0123456789abcdef"
  ttl: 12h
  refresh: 60s
stripe:
  secret_key: "sk_test_x"
  webhook_secret: "whsec_x"
  past_due_grace: 0s
plans:
  pro:
    prices: [price_pro]
    routes: ["415VNA"]
  team:
    prices: [price_team]
    routes: ["TEAM1"]
    scope: organization
routes:
  - { path: "/", access: public }
  - { path: "/public/*", access: public }
  - { path: "/routes/{route}/*", access: paid }
  - { path: "/team/*", id: TEAM1, access: paid }
  - { path: "/api/*", methods: [GET], access: signed_in }
  - { path: "/api/*", access: deny }
  - { path: "/private/*", access: signed_in }
  - { path: "/ws", access: signed_in }
  - { path: "/events", access: signed_in }
  - { path: "/admin/*", access: deny }
  - { path: "/items/*", methods: [DELETE], access: deny }
  - { path: "/items/*", access: signed_in }
admin:
  users: ["user_boss"]
`

// fakeAuth answers Authenticate from a function of the request.
type fakeAuth struct {
	fn func(r *http.Request) proxy.AuthResult
}

func (f fakeAuth) Authenticate(_ context.Context, r *http.Request) proxy.AuthResult { return f.fn(r) }

type fakePortal struct{}

func (fakePortal) SignInURL(ret, db string) string {
	u := "https://accounts.example.com/sign-in?redirect_url=" + url.QueryEscape(ret)
	if db != "" {
		u += "&__clerk_db_jwt=" + db
	}
	return u
}

// fakeEnder ends Clerk sessions, or fails to while err is set.
type fakeEnder struct {
	mu         sync.Mutex
	err        error
	ended      []string
	usersEnded []string
}

func (f *fakeEnder) EndUserSessions(_ context.Context, userID string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	f.usersEnded = append(f.usersEnded, userID)
	return 1, nil
}

func (f *fakeEnder) EndSession(_ context.Context, sid string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return []string{"__session=; Path=/; Max-Age=0"}, f.err
	}
	f.ended = append(f.ended, sid)
	return []string{"__session=; Path=/; Max-Age=0"}, nil
}

type fakeChecker struct {
	mu     sync.Mutex
	active bool
	org    string // last_active_organization_id
	err    error
	calls  int
}

func (f *fakeChecker) CheckSession(context.Context, string) (proxy.SessionStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return proxy.SessionStatus{Active: f.active, OrgID: f.org}, f.err
}

type fakeEntitlements map[proxy.Subject]*proxy.Entitlements

func (f fakeEntitlements) Entitlements(_ context.Context, s proxy.Subject) (*proxy.Entitlements, error) {
	if e, ok := f[proxy.Subject{Kind: "error"}]; ok && e != nil {
		return nil, errors.New("store down")
	}
	return f[s], nil
}

// signedInByHeader is the fake Clerk of these tests: "X-Test-User: user_1"
// means a valid token; "X-Test-Expired: sess_1" an expired one for sess_1
// with __client_uat from "X-Test-UAT".
func signedInByHeader(r *http.Request) proxy.AuthResult {
	uat := int64(0)
	if v := r.Header.Get("X-Test-UAT"); v != "" {
		fmt.Sscan(v, &uat)
	}
	if u := r.Header.Get("X-Test-User"); u != "" {
		return proxy.AuthResult{State: proxy.SignedIn, ClientUAT: uat, Identity: &proxy.Identity{UserID: u, SessionID: "sess_1", OrgID: r.Header.Get("X-Test-Org"), OrgRole: "org:admin", Source: "cookie"}}
	}
	if sid := r.Header.Get("X-Test-Expired"); sid != "" {
		if isNavigation(r) {
			return proxy.AuthResult{State: proxy.Handshake, Location: "https://clerk.example.com/v1/client/handshake?redirect_url=x",
				SetCookies: []string{"__clerk_redirect_count=1; Path=/; Max-Age=2"}, ClientUAT: uat}
		}
		return proxy.AuthResult{State: proxy.SignedOut, Reason: "session-token-expired", Refreshable: uat > 0, ClientUAT: uat, StaleSessionID: sid}
	}
	return proxy.AuthResult{State: proxy.SignedOut, Reason: "session-token-and-uat-missing", ClientUAT: uat}
}

type gateFixture struct {
	t        *testing.T
	srv      *Server
	front    *httptest.Server
	upstream *httptest.Server
	mu       sync.Mutex
	seen     []*http.Request // requests the upstream received
	now      time.Time
	checker  *fakeChecker
	state    *State // what outlives a reload
	ender    *fakeEnder
	ents     fakeEntitlements
}

func newGateFixture(t *testing.T, upstream http.Handler) *gateFixture {
	t.Helper()
	return newGateFixtureConfig(t, upstream, nil)
}

// trustLoopback makes the test client a trusted proxy, as a forward-auth
// caller must be.
func trustLoopback(cfg string) string {
	return strings.Replace(cfg, `trusted_proxies: ["10.0.0.0/8"]`, `trusted_proxies: ["10.0.0.0/8", "127.0.0.1", "::1"]`, 1)
}

// newGateFixtureConfig is newGateFixture with the config text edited first.
func newGateFixtureConfig(t *testing.T, upstream http.Handler, edit func(string) string) *gateFixture {
	t.Helper()
	return newGateFixtureWith(t, upstream, edit, nil)
}

// newGateFixtureWith is newGateFixtureConfig with the Options edited too.
func newGateFixtureWith(t *testing.T, upstream http.Handler, edit func(string) string, opt func(*Options)) *gateFixture {
	t.Helper()
	fx := &gateFixture{t: t, now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC), checker: &fakeChecker{active: true}, ender: &fakeEnder{}, ents: fakeEntitlements{}}
	if upstream == nil {
		upstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("Set-Cookie", "app=1; Path=/")
			w.Header().Set("Cache-Control", "public, max-age=60, s-maxage=600")
			fmt.Fprintf(w, "upstream %s", r.URL.RequestURI())
		})
	}
	fx.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fx.mu.Lock()
		fx.seen = append(fx.seen, r.Clone(context.Background()))
		fx.mu.Unlock()
		upstream.ServeHTTP(w, r)
	}))
	t.Cleanup(fx.upstream.Close)
	text := fmt.Sprintf(gateTestConfig, fx.upstream.URL)
	if edit != nil {
		text = edit(text)
	}
	fx.state = NewState(StateOptions{Sessions: fx.checker})
	cfg, err := config.Parse("gate_test.yaml", []byte(text), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Config: cfg, Auth: fakeAuth{signedInByHeader}, Portal: fakePortal{}, State: fx.state, Ender: fx.ender,
		Entitlements: fx.ents, Now: func() time.Time { return fx.now }}
	if opt != nil {
		opt(&o)
	}
	fx.srv, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	fx.front = httptest.NewServer(fx.srv)
	t.Cleanup(fx.front.Close)
	return fx
}

func (fx *gateFixture) lastUpstream() *http.Request {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	if len(fx.seen) == 0 {
		return nil
	}
	return fx.seen[len(fx.seen)-1]
}

func (fx *gateFixture) upstreamCount() int {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return len(fx.seen)
}

// do sends one request through the gateway without following redirects.
func (fx *gateFixture) do(method, target string, hdr map[string]string, cookies ...*http.Cookie) *http.Response {
	fx.t.Helper()
	req, err := http.NewRequest(method, fx.front.URL+target, nil)
	if err != nil {
		fx.t.Fatal(err)
	}
	// Keep the path exactly as written: NewRequest would clean nothing, but
	// make sure odd paths are sent verbatim.
	req.URL.Opaque = ""
	if u, err := url.Parse(fx.front.URL); err == nil {
		req.URL.Host = u.Host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// rawRequest writes a request line by hand, for paths net/http would not send as is.
func (fx *gateFixture) rawRequest(requestURI string, hdr map[string]string) *http.Response {
	fx.t.Helper()
	u, _ := url.Parse(fx.front.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.t.Cleanup(func() { conn.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", requestURI, u.Host)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		fx.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		fx.t.Fatal(err)
	}
	return resp
}

var (
	navigation = map[string]string{"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Dest": "document"}
	xhr        = map[string]string{"Accept": "application/json", "Sec-Fetch-Dest": "empty"}
)

func with(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGate_PublicPathPassesWithSpoofedHeadersStripped(t *testing.T) {
	fx := newGateFixture(t, nil)
	resp := fx.do("GET", "/public/a.css?x=1", map[string]string{"X-Tollgate-User": "user_admin", "x-tollgate-plan": "pro"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	up := fx.lastUpstream()
	if up.URL.RequestURI() != "/public/a.css?x=1" {
		t.Errorf("upstream got %q", up.URL.RequestURI())
	}
	for k := range up.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-tollgate-") {
			t.Errorf("spoofed header %s reached the upstream", k)
		}
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=60, s-maxage=600" {
		t.Errorf("public response caching changed: %q", cc)
	}
}

func TestGate_SignedOutNavigationRedirectsToSignIn(t *testing.T) {
	fx := newGateFixture(t, nil)
	resp := fx.do("GET", "/private/page?tab=2", navigation)
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("status %d, want 307", resp.StatusCode)
	}
	want := "https://accounts.example.com/sign-in?redirect_url=" + url.QueryEscape("https://app.example.com/private/page?tab=2")
	if got := resp.Header.Get("Location"); got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	if fx.upstreamCount() != 0 {
		t.Error("signed-out request reached the upstream")
	}
}

func TestGate_SignedOutAPIGets401JSON(t *testing.T) {
	fx := newGateFixture(t, nil)
	for _, tc := range []struct {
		method string
		hdr    map[string]string
	}{
		{"GET", xhr},
		{"POST", navigation}, // a non-GET is never redirected
		{"GET", map[string]string{"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"}},
	} {
		resp := fx.do(tc.method, "/private/x", tc.hdr)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s %v: status %d, want 401", tc.method, tc.hdr, resp.StatusCode)
		}
		if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("401 headers: %v", resp.Header)
		}
		var b errorBody
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			t.Fatal(err)
		}
		if b.Error != "unauthorized" || !strings.HasPrefix(b.SignInURL, "https://accounts.example.com/sign-in") {
			t.Errorf("body %+v", b)
		}
	}
}

func TestGate_SignedInForwardsIdentityAndMakesResponsePrivate(t *testing.T) {
	fx := newGateFixture(t, nil)
	resp := fx.do("GET", "/private/x?__clerk_handshake=abc&keep=1", with(navigation, "X-Test-User", "user_1", "X-Tollgate-User", "user_evil", "Cookie", "__tollgate=forged; theme=dark"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	up := fx.lastUpstream()
	if got := up.Header.Values(HeaderUser); !cmp.Equal(got, []string{"user_1"}) {
		t.Errorf("X-Tollgate-User %q", got)
	}
	if up.URL.RawQuery != "keep=1" {
		t.Errorf("upstream query %q: Clerk parameters must not be forwarded", up.URL.RawQuery)
	}
	if c := up.Header.Get("Cookie"); strings.Contains(c, GatewayCookieSecure) || !strings.Contains(c, "theme=dark") {
		t.Errorf("upstream Cookie %q", c)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "private, max-age=60" {
		t.Errorf("Cache-Control %q, want private, max-age=60", cc)
	}
	if v := strings.Join(resp.Header.Values("Vary"), ","); !strings.Contains(v, "Cookie") || !strings.Contains(v, "Authorization") {
		t.Errorf("Vary %q", v)
	}
	var names []string
	for _, c := range resp.Cookies() {
		names = append(names, c.Name)
	}
	if diff := cmp.Diff([]string{"app", GatewayCookieSecure}, names); diff != "" {
		t.Errorf("Set-Cookie names (-want +got):\n%s", diff)
	}
}

func TestGate_HandshakeRedirectOnPageLoadWithNoStore(t *testing.T) {
	fx := newGateFixture(t, nil)
	resp := fx.do("GET", "/private/x", with(navigation, "X-Test-Expired", "sess_1", "X-Test-UAT", "100"))
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(resp.Header.Get("Location"), "https://clerk.example.com/v1/client/handshake") {
		t.Fatalf("status %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp.Header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "__clerk_redirect_count=1") {
		t.Errorf("headers %v", resp.Header)
	}
}

func TestGate_HandshakeDirectivesAreAppendedToUpstreamCookies(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.srv.auth = fakeAuth{func(r *http.Request) proxy.AuthResult {
		return proxy.AuthResult{State: proxy.SignedIn, ClientUAT: 100, Identity: &proxy.Identity{UserID: "user_1", SessionID: "sess_1", Source: "handshake"},
			SetCookies: []string{"__session=new; Path=/", "__clerk_handshake=; Path=/; Max-Age=0"}}
	}}
	resp := fx.do("GET", "/private/x", navigation)
	got := resp.Header.Values("Set-Cookie")
	if len(got) != 4 || got[0] != "app=1; Path=/" || got[1] != "__session=new; Path=/" || !strings.HasPrefix(got[3], GatewayCookieSecure+"=") {
		t.Errorf("Set-Cookie %q", got)
	}
}

func TestGate_DenyRule(t *testing.T) {
	fx := newGateFixture(t, nil)
	resp := fx.do("GET", "/admin/users", with(navigation, "X-Test-User", "user_1"))
	if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if b := body(t, resp); !strings.Contains(b, "Access denied") {
		t.Errorf("403 page: %s", b)
	}
	resp = fx.do("DELETE", "/api/things", with(xhr, "X-Test-User", "user_1"))
	var eb errorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	if resp.StatusCode != 403 || eb.Error != "forbidden" {
		t.Errorf("method-filtered fallthrough to deny: %d %+v", resp.StatusCode, eb)
	}
	if fx.upstreamCount() != 0 {
		t.Error("denied request reached the upstream")
	}
}

func TestGate_NonCanonicalPathsRedirectBeforeMatching(t *testing.T) {
	fx := newGateFixture(t, nil)
	tests := []struct{ uri, want string }{
		{"/public/../private/x", "/private/x"},
		{"//private/x", "/private/x"},
		{"/public/%2e%2e/private/x?a=1", "/private/x?a=1"},
		{"/public%2F..%2Fprivate/x", "/private/x"},
		{"/./private/x", "/private/x"},
	}
	for _, tt := range tests {
		resp := fx.rawRequest(tt.uri, navigation)
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != tt.want {
			t.Errorf("%s: status %d Location %q, want 308 %q", tt.uri, resp.StatusCode, resp.Header.Get("Location"), tt.want)
		}
	}
	if fx.upstreamCount() != 0 {
		t.Error("a non-canonical path reached the upstream")
	}
	// A backslash stays escaped: the Location can never become //evil.test.
	resp := fx.rawRequest("/%5Cevil.test", xhr)
	if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, "/\\") || strings.HasPrefix(loc, "//") {
		t.Errorf("open redirect: Location %q", loc)
	}
}

func TestGate_PaidRoute(t *testing.T) {
	fx := newGateFixture(t, nil)
	// Not entitled: a page load goes to the upgrade page, an API call gets 402.
	resp := fx.do("GET", "/routes/415VNA/chart?x=1", with(navigation, "X-Test-User", "user_1"))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("status %d", resp.StatusCode)
	}
	wantLoc := "/.tollgate/upgrade?" + url.Values{"route": {"415VNA"}, "return": {"/routes/415VNA/chart?x=1"}}.Encode()
	if loc := resp.Header.Get("Location"); loc != wantLoc {
		t.Errorf("Location %q, want %q", loc, wantLoc)
	}
	resp = fx.do("GET", "/routes/415VNA/data", with(xhr, "X-Test-User", "user_1"))
	var eb errorBody
	if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
		t.Fatal(err)
	}
	want := errorBody{Error: "payment_required", Message: "A subscription is required.", Route: "415VNA",
		UpgradeURL: "https://app.example.com/.tollgate/upgrade?" + url.Values{"route": {"415VNA"}, "return": {"/routes/415VNA/data"}}.Encode(),
		Plans:      []planJSON{{Key: "pro", Name: "pro"}}}
	if resp.StatusCode != 402 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("status %d cache %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	if diff := cmp.Diff(want, eb); diff != "" {
		t.Errorf("402 body (-want +got):\n%s", diff)
	}

	// Entitled: forwarded with the plan, status and route headers.
	fx.ents[proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}] = &proxy.Entitlements{Subscriptions: []proxy.Subscription{{ID: "sub_1", Plan: "pro", Status: proxy.StatusTrialing}}}
	resp = fx.do("GET", "/routes/415VNA/chart", with(navigation, "X-Test-User", "user_1"))
	if resp.StatusCode != 200 {
		t.Fatalf("entitled: status %d", resp.StatusCode)
	}
	up := fx.lastUpstream()
	got := map[string]string{"plan": up.Header.Get(HeaderPlan), "status": up.Header.Get(HeaderStatus), "route": up.Header.Get(HeaderRoute)}
	if diff := cmp.Diff(map[string]string{"plan": "pro", "status": "trialing", "route": "415VNA"}, got); diff != "" {
		t.Errorf("identity headers (-want +got):\n%s", diff)
	}
	// Another route ID is not unlocked by pro.
	if resp := fx.do("GET", "/routes/999XYZ/", with(xhr, "X-Test-User", "user_1")); resp.StatusCode != 402 {
		t.Errorf("other route: status %d", resp.StatusCode)
	}
}

func TestGate_OrganizationPlanNeedsAnActiveOrganization(t *testing.T) {
	fx := newGateFixture(t, nil)
	resp := fx.do("GET", "/team/board", with(xhr, "X-Test-User", "user_1"))
	var eb errorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	if resp.StatusCode != 402 || eb.Error != "organization_required" {
		t.Fatalf("status %d body %+v", resp.StatusCode, eb)
	}
	fx.ents[proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_1"}] = &proxy.Entitlements{Subscriptions: []proxy.Subscription{{Plan: "team", Status: proxy.StatusActive}}}
	resp = fx.do("GET", "/team/board", with(xhr, "X-Test-User", "user_1", "X-Test-Org", "org_1"))
	if resp.StatusCode != 200 || fx.lastUpstream().Header.Get(HeaderOrg) != "org_1" {
		t.Errorf("org member: status %d org %q", resp.StatusCode, fx.lastUpstream().Header.Get(HeaderOrg))
	}
}

func TestGate_EntitlementStoreFailureIs503NotAccess(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.ents[proxy.Subject{Kind: "error"}] = &proxy.Entitlements{}
	resp := fx.do("GET", "/routes/415VNA/", with(xhr, "X-Test-User", "user_1"))
	if resp.StatusCode != 503 || fx.upstreamCount() != 0 {
		t.Errorf("status %d upstream %d", resp.StatusCode, fx.upstreamCount())
	}
}

// gatewayCookieFrom signs in once (with more test headers, if any) and
// returns the __tollgate cookie issued.
func gatewayCookieFrom(t *testing.T, fx *gateFixture, kv ...string) *http.Cookie {
	t.Helper()
	resp := fx.do("GET", "/private/x", with(navigation, append([]string{"X-Test-User", "user_1"}, kv...)...))
	for _, c := range resp.Cookies() {
		if c.Name == GatewayCookieSecure {
			// __Host-: Secure, Path=/ and no Domain, or browsers refuse it.
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || !c.Secure || c.Domain != "" {
				t.Errorf("gateway cookie attributes: %+v", c)
			}
			return c
		}
	}
	t.Fatal("no gateway cookie issued")
	return nil
}

func TestGate_GatewaySessionCarriesXHRPastTokenExpiry(t *testing.T) {
	fx := newGateFixture(t, nil)
	gw := gatewayCookieFrom(t, fx)
	issued := fx.now.Unix()
	expired := with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", fmt.Sprint(issued-10))

	fx.now = fx.now.Add(30 * time.Second)
	if resp := fx.do("GET", "/private/api", expired, gw); resp.StatusCode != 200 {
		t.Fatalf("within refresh: status %d", resp.StatusCode)
	}
	if fx.checker.calls != 0 {
		t.Errorf("Clerk asked %d times within the refresh period", fx.checker.calls)
	}
	if got := fx.lastUpstream().Header.Get(HeaderUser); got != "user_1" {
		t.Errorf("user header %q", got)
	}

	// Past refresh: Clerk is asked once, the cookie renewed.
	fx.now = fx.now.Add(2 * time.Minute)
	resp := fx.do("GET", "/private/api", expired, gw)
	if resp.StatusCode != 200 || fx.checker.calls != 1 {
		t.Fatalf("past refresh: status %d calls %d", resp.StatusCode, fx.checker.calls)
	}
	if len(resp.Cookies()) == 0 || resp.Cookies()[len(resp.Cookies())-1].Name != GatewayCookieSecure {
		t.Errorf("cookie not renewed: %v", resp.Header.Values("Set-Cookie"))
	}
	// The same stale cookie again within the cached answer: no second call.
	fx.do("GET", "/private/api", expired, gw)
	if fx.checker.calls != 1 {
		t.Errorf("Clerk asked again: %d calls", fx.checker.calls)
	}
}

func TestGate_GatewaySessionRefusals(t *testing.T) {
	tests := []struct {
		name    string
		hdr     func(issued int64) map[string]string
		setup   func(fx *gateFixture)
		advance time.Duration
		status  int
		cleared bool
	}{
		{"signed out in Clerk (client_uat 0)", func(int64) map[string]string { return with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", "0") }, nil, 0, 401, true},
		{"no client_uat at all", func(int64) map[string]string { return xhr }, nil, 0, 401, true},
		{"client changed after the cookie", func(i int64) map[string]string {
			return with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", fmt.Sprint(i+5))
		}, nil, 10 * time.Second, 401, true},
		{"expired token of another session", func(i int64) map[string]string {
			return with(xhr, "X-Test-Expired", "sess_2", "X-Test-UAT", fmt.Sprint(i))
		}, nil, 0, 401, true},
		{"past ttl", func(i int64) map[string]string {
			return with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", fmt.Sprint(i))
		}, nil, 13 * time.Hour, 401, true},
		{"Clerk says the session ended", func(i int64) map[string]string {
			return with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", fmt.Sprint(i))
		}, func(fx *gateFixture) { fx.checker.active = false }, 5 * time.Minute, 401, true},
		{"Clerk unreachable is 503, not a sign-out", func(i int64) map[string]string {
			return with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", fmt.Sprint(i))
		}, func(fx *gateFixture) { fx.checker.err = errors.New("boom") }, 5 * time.Minute, 503, false},
		{"user deleted in Clerk", func(i int64) map[string]string {
			return with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", fmt.Sprint(i))
		}, func(fx *gateFixture) { fx.srv.RevokeUser(t.Context(), "user_1") }, 0, 401, true},
		{"revoked by webhook", func(i int64) map[string]string {
			return with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", fmt.Sprint(i))
		}, func(fx *gateFixture) { fx.srv.RevokeSession(t.Context(), "sess_1") }, 0, 401, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newGateFixture(t, nil)
			gw := gatewayCookieFrom(t, fx)
			issued := fx.now.Unix()
			if tt.setup != nil {
				tt.setup(fx)
			}
			fx.now = fx.now.Add(tt.advance)
			resp := fx.do("GET", "/private/api", tt.hdr(issued), gw)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			cleared := false
			for _, c := range resp.Cookies() {
				if c.Name == GatewayCookieSecure && c.MaxAge < 0 {
					cleared = true
				}
			}
			if cleared != tt.cleared {
				t.Errorf("cookie cleared = %v, want %v", cleared, tt.cleared)
			}
			if fx.upstreamCount() != 1 { // only the sign-in request
				t.Errorf("upstream saw %d requests", fx.upstreamCount())
			}
		})
	}
}

func TestGate_ForgedGatewayCookieIsIgnored(t *testing.T) {
	fx := newGateFixture(t, nil)
	other, _ := newSealer("another secret that is long enough!!")
	gs := &gatewaySession{UserID: "user_x", SessionID: "sess_1", Issued: fx.now.Unix(), Checked: fx.now.Unix()}
	forged, _ := other.seal(gs, GatewayCookieSecure)
	resp := fx.do("GET", "/private/api", with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", "1"), &http.Cookie{Name: GatewayCookieSecure, Value: forged})
	if resp.StatusCode != 401 {
		t.Errorf("status %d", resp.StatusCode)
	}
	// Sealed by this gateway, but for the http name: on https neither that
	// name nor its value under the __Host- name is accepted.
	plain, _ := fx.srv.gw.sealer.seal(gs, GatewayCookie)
	for _, c := range []*http.Cookie{{Name: GatewayCookie, Value: plain}, {Name: GatewayCookieSecure, Value: plain}} {
		if resp := fx.do("GET", "/private/api", with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", "1"), c); resp.StatusCode != 401 {
			t.Errorf("%s sealed for %s: status %d", c.Name, GatewayCookie, resp.StatusCode)
		}
	}
}

func TestGate_XForwardedForOnlyFromTrustedProxies(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.do("GET", "/public/x", map[string]string{"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Host": "evil.test"})
	up := fx.lastUpstream()
	if xff := up.Header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("untrusted peer: X-Forwarded-For %q", xff)
	}
	if xfh := up.Header.Get("X-Forwarded-Host"); strings.Contains(xfh, "evil") {
		t.Errorf("untrusted peer: X-Forwarded-Host %q", xfh)
	}
}

func TestGate_TrustedProxyKeepsChain(t *testing.T) {
	fx := newGateFixture(t, nil)
	r := httptest.NewRequest("GET", "/public/x", nil)
	r.RemoteAddr = "10.1.2.3:5555"
	r.Header.Set("X-Forwarded-For", "1.2.3.4")
	r.Header.Set("X-Forwarded-Proto", "https")
	w := httptest.NewRecorder()
	fx.srv.ServeHTTP(w, r)
	up := fx.lastUpstream()
	if xff := up.Header.Get("X-Forwarded-For"); xff != "1.2.3.4, 10.1.2.3" {
		t.Errorf("X-Forwarded-For %q", xff)
	}
	if p := up.Header.Get("X-Forwarded-Proto"); p != "https" {
		t.Errorf("X-Forwarded-Proto %q", p)
	}
}

func TestGate_CORSPreflightPassesUngated(t *testing.T) {
	fx := newGateFixture(t, nil)
	resp := fx.do("OPTIONS", "/private/api", map[string]string{"Origin": "https://other.example", "Access-Control-Request-Method": "POST"})
	if resp.StatusCode != 200 || fx.upstreamCount() != 1 {
		t.Errorf("status %d upstream %d", resp.StatusCode, fx.upstreamCount())
	}
	// A plain OPTIONS is gated like anything else.
	if resp := fx.do("OPTIONS", "/private/api", xhr); resp.StatusCode != 401 {
		t.Errorf("plain OPTIONS: status %d", resp.StatusCode)
	}
}

func TestGate_HEADIsTreatedAsGET(t *testing.T) {
	fx := newGateFixture(t, nil)
	if resp := fx.do("HEAD", "/api/x", with(xhr, "X-Test-User", "user_1")); resp.StatusCode != 200 {
		t.Errorf("HEAD on a GET-only rule: %d", resp.StatusCode)
	}
	if resp := fx.do("POST", "/api/x", with(xhr, "X-Test-User", "user_1")); resp.StatusCode != 403 {
		t.Errorf("POST falls through to deny: %d", resp.StatusCode)
	}
}

func TestGate_UnmatchedPathFailsClosedToPaid(t *testing.T) {
	fx := newGateFixture(t, nil)
	if resp := fx.do("GET", "/somewhere/else", with(xhr, "X-Test-User", "user_1")); resp.StatusCode != 402 {
		t.Errorf("default_access paid: status %d", resp.StatusCode)
	}
}

func TestGate_UpstreamDownGives502(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.upstream.Close()
	resp := fx.do("GET", "/public/x", navigation)
	if resp.StatusCode != 502 || !strings.Contains(body(t, resp), "not answering") {
		t.Errorf("HTML: status %d", resp.StatusCode)
	}
	resp = fx.do("GET", "/public/x", xhr)
	var eb errorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	if resp.StatusCode != 502 || eb.Error != "bad_gateway" {
		t.Errorf("JSON: status %d body %+v", resp.StatusCode, eb)
	}
}

func TestGate_InternalPrefixIsNeverForwarded(t *testing.T) {
	fx := newGateFixture(t, nil)
	for _, p := range []string{"/.tollgate", "/.tollgate/", "/.tollgate/nope", "/.tollgate/routes/415VNA/"} {
		resp := fx.do("GET", p, xhr)
		if resp.StatusCode != 404 {
			t.Errorf("%s: status %d", p, resp.StatusCode)
		}
	}
	if fx.upstreamCount() != 0 {
		t.Error("internal path reached the upstream")
	}
	resp := fx.do("GET", "/.tollgate/assets/style.css", nil)
	if resp.StatusCode != 200 || !strings.Contains(body(t, resp), "--accent") {
		t.Errorf("stylesheet: %d", resp.StatusCode)
	}
}

func TestGate_SignOutEndsTheClerkSession(t *testing.T) {
	fx := newGateFixture(t, nil)
	gw := gatewayCookieFrom(t, fx)
	// A GET (a link, or an image on someone else's page) signs nobody out.
	resp := fx.do("GET", "/.tollgate/sign-out?return=/private/x", with(navigation, "X-Test-User", "user_1"), gw)
	page := body(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(page, `method="post"`) || !strings.Contains(page, `name="return" value="/private/x"`) {
		t.Fatalf("GET sign-out: %d", resp.StatusCode)
	}
	if resp := fx.do("GET", "/private/api", with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", "1"), gw); resp.StatusCode != 200 {
		t.Fatalf("after GET sign-out the session must live on: %d", resp.StatusCode)
	}
	post := func(hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", fx.front.URL+"/.tollgate/sign-out", strings.NewReader("return=%2Fprivate%2Fx"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		req.AddCookie(gw)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	// A cross-site POST is refused.
	if resp := post(map[string]string{"Sec-Fetch-Site": "cross-site", "X-Test-User": "user_1"}); resp.StatusCode != 403 || len(fx.ender.ended) != 0 {
		t.Fatalf("cross-site sign-out: %d", resp.StatusCode)
	}
	// Clerk cannot be reached: nothing changes, and the page says so.
	fx.ender.err = errors.New("clerk down")
	resp = post(map[string]string{"Sec-Fetch-Site": "same-origin", "Accept": "text/html", "X-Test-User": "user_1"})
	if page := body(t, resp); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(page, "still signed in") || !strings.Contains(page, "Try again") {
		t.Fatalf("sign-out with Clerk down: %d", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == GatewayCookieSecure && c.MaxAge < 0 {
			t.Error("sign-out with Clerk down cleared the gateway cookie as if it had worked")
		}
	}
	if resp := fx.do("GET", "/private/api", with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", "1"), gw); resp.StatusCode != 200 {
		t.Fatalf("a failed sign-out ended the session here: %d", resp.StatusCode)
	}
	// The same-origin POST ends the Clerk session, clears the cookies and
	// goes on to the app: no Account Portal page in between.
	fx.ender.err = nil
	resp = post(map[string]string{"Sec-Fetch-Site": "same-origin", "X-Test-User": "user_1"})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "https://app.example.com/private/x" {
		t.Fatalf("status %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if diff := cmp.Diff([]string{"sess_1"}, fx.ender.ended); diff != "" {
		t.Errorf("Clerk sessions ended (-want +got):\n%s", diff)
	}
	names := map[string]int{}
	for _, c := range resp.Cookies() {
		if c.MaxAge >= 0 {
			t.Errorf("cookie %s set, not cleared", c.Name)
		}
		names[c.Name]++
	}
	if names[GatewayCookieSecure] != 1 || names["__session"] != 1 || len(names) != 2 {
		t.Errorf("cookies %v", resp.Header.Values("Set-Cookie"))
	}
	// The old cookie is dead even if the browser kept it.
	if resp := fx.do("GET", "/private/api", with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", "1"), gw); resp.StatusCode != 401 {
		t.Errorf("after sign-out: %d", resp.StatusCode)
	}
	// Signed out already: the POST only clears and goes home.
	req, _ := http.NewRequest("POST", fx.front.URL+"/.tollgate/sign-out", nil)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil || resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "https://app.example.com/" || len(fx.ender.ended) != 1 {
		t.Errorf("signed-out sign-out: %v %v", resp, err)
	}
}

func TestGate_APIMe(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.ents[proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}] = &proxy.Entitlements{Subscriptions: []proxy.Subscription{{Plan: "pro", Status: proxy.StatusActive}}}
	resp := fx.do("GET", "/.tollgate/api/me", with(xhr, "X-Test-User", "user_1"))
	var me meJSON
	json.NewDecoder(resp.Body).Decode(&me)
	if !me.SignedIn || me.UserID != "user_1" || len(me.Subscriptions) != 1 || !me.Subscriptions[0].Active {
		t.Errorf("%+v", me)
	}
	resp = fx.do("GET", "/.tollgate/api/me", xhr)
	me = meJSON{}
	json.NewDecoder(resp.Body).Decode(&me)
	if resp.StatusCode != 200 || me.SignedIn {
		t.Errorf("signed out: %d %+v", resp.StatusCode, me)
	}
}

func TestGate_SSEStreamsThrough(t *testing.T) {
	release := make(chan struct{})
	fx := newGateFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: two\n\n")
	}))
	defer close(release)
	resp := fx.do("GET", "/events", with(map[string]string{"Accept": "text/event-stream"}, "X-Test-User", "user_1"))
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event %q %v: not flushed before the stream ended", line, err)
	}
}

func TestGate_WebSocketUpgradePassesThrough(t *testing.T) {
	fx := newGateFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || r.Header.Get(HeaderUser) != "user_1" {
			http.Error(w, "bad", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + wsAcceptHead(r.Header.Get("Sec-WebSocket-Key")) + "\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	}))
	u, _ := url.Parse(fx.front.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Test-User: user_1\r\n\r\n", u.Host)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(conn, "hello\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || line != "echo hello\n" {
		t.Fatalf("echo %q %v", line, err)
	}
}

func TestGate_UpstreamPathQuirksCannotDodgeRules(t *testing.T) {
	fx := newGateFixture(t, nil)
	for _, uri := range []string{
		"/admin;jsessionid=1/users", // Tomcat drops ;params
		"/admin/users;x=1",
		"/%5Cadmin/users", // IIS reads \ as /
		"/public/x/%5C..%5C..%5Cadmin/users",
	} {
		resp := fx.rawRequest(uri, with(xhr, "X-Test-User", "user_1"))
		if resp.StatusCode == 200 {
			t.Errorf("%s: forwarded (status 200), want the admin deny rule", uri)
		}
	}
	if fx.upstreamCount() != 0 {
		t.Errorf("upstream saw %d requests", fx.upstreamCount())
	}
}

func TestGate_InternalPrefixInAnyCaseIsNeverForwarded(t *testing.T) {
	fx := newGateFixture(t, nil)
	resp := fx.do("GET", "/.TOLLGATE/api/me", with(xhr, "X-Test-User", "user_1"))
	if resp.StatusCode != 404 || fx.upstreamCount() != 0 {
		t.Errorf("status %d upstream %d", resp.StatusCode, fx.upstreamCount())
	}
}

func TestGate_RouteCaptureMustBeAPlainID(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.ents[proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}] = &proxy.Entitlements{Subscriptions: []proxy.Subscription{{Plan: "pro", Status: proxy.StatusActive}}}
	for _, uri := range []string{"/routes/415VNA%0D%0AX-Evil:%201/x", "/routes/%3Cscript%3E/x"} {
		resp := fx.rawRequest(uri, with(xhr, "X-Test-User", "user_1"))
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", uri, resp.StatusCode)
		}
	}
}

func TestGate_OptionsStarIsAnsweredHere(t *testing.T) {
	// net/http answers "OPTIONS *" itself unless the server sets
	// DisableGeneralOptionsHandler; then the gate must, and never forward it.
	fx := newGateFixture(t, nil)
	r := httptest.NewRequest("OPTIONS", "http://app.example.com/", nil)
	r.RequestURI, r.URL.Path = "*", "*"
	w := httptest.NewRecorder()
	fx.srv.ServeHTTP(w, r)
	if w.Code != http.StatusNoContent || w.Header().Get("Allow") == "" || fx.upstreamCount() != 0 {
		t.Errorf("status %d Allow %q upstream %d", w.Code, w.Header().Get("Allow"), fx.upstreamCount())
	}
}

func TestGate_RevocationEndsAccessBeforeTheTokenExpires(t *testing.T) {
	fx := newGateFixture(t, nil)
	if resp := fx.do("GET", "/private/x", with(xhr, "X-Test-User", "user_1")); resp.StatusCode != 200 {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	fx.srv.RevokeSession(t.Context(), "sess_1") // Clerk's session.revoked webhook
	if resp := fx.do("GET", "/private/x", with(xhr, "X-Test-User", "user_1")); resp.StatusCode != 401 {
		t.Errorf("a still-valid token of a revoked session: %d, want 401", resp.StatusCode)
	}
}

// A reload that changes session: builds a new Server over the same State:
// what Clerk said (revocations) is not forgotten.
func TestGate_RevocationsOutliveAReloadThatChangesSessions(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.srv.RevokeSession(t.Context(), "sess_1")
	text := strings.Replace(fmt.Sprintf(gateTestConfig, fx.upstream.URL), "ttl: 12h", "ttl: 6h", 1)
	cfg, err := config.Parse("gate_test.yaml", []byte(text), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	next, err := New(Options{Config: cfg, Auth: fakeAuth{signedInByHeader}, Portal: fakePortal{}, State: fx.state, Now: func() time.Time { return fx.now }})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(next)
	defer front.Close()
	req, _ := http.NewRequest("GET", front.URL+"/private/x", nil)
	for k, v := range with(xhr, "X-Test-User", "user_1") {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("a revoked session after a reload that changed session.ttl: %d, want 401", resp.StatusCode)
	}
}

type staleRecorder struct {
	mu  sync.Mutex
	ids []string
}

func (s *staleRecorder) Stale(id string) { s.mu.Lock(); s.ids = append(s.ids, id); s.mu.Unlock() }

func TestGate_LongEndedActivePeriodTriggersResyncNotDenial(t *testing.T) {
	fx := newGateFixture(t, nil)
	rec := &staleRecorder{}
	fx.srv.stale = rec
	fx.ents[proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}] = &proxy.Entitlements{Subscriptions: []proxy.Subscription{{ID: "sub_1", CustomerID: "cus_1",
		Plan: "pro", Status: proxy.StatusActive, CurrentPeriodEnd: fx.now.Add(-3 * 24 * time.Hour)}}}
	if resp := fx.do("GET", "/routes/415VNA/", with(xhr, "X-Test-User", "user_1")); resp.StatusCode != 200 {
		t.Fatalf("stale but active: %d, want 200", resp.StatusCode)
	}
	if diff := cmp.Diff([]string{"cus_1"}, rec.ids); diff != "" {
		t.Errorf("re-sync requests (-want +got):\n%s", diff)
	}
	// A fresh period asks for nothing.
	fx.ents[proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}].Subscriptions[0].CurrentPeriodEnd = fx.now.Add(time.Hour)
	fx.do("GET", "/routes/415VNA/", with(xhr, "X-Test-User", "user_1"))
	if len(rec.ids) != 1 {
		t.Errorf("a current period triggered a re-sync: %v", rec.ids)
	}
}

// TestGate_FixedRouteIDs: every ID check accepts ([A-Za-z0-9._~-]{1,128}) is
// gated by its fixed id:, never answered 400 for its shape (the gate once
// allowed 64 characters and no "~").
func TestGate_FixedRouteIDs(t *testing.T) {
	long := strings.Repeat("L", 128)
	fx := newGateFixtureConfig(t, nil, func(cfg string) string {
		cfg = strings.Replace(cfg, `routes: ["415VNA"]`, `routes: ["415VNA", "v1~beta", "`+long+`", "258AVO"]`, 1)
		return strings.Replace(cfg, "  - { path: \"/\", access: public }\n",
			"  - { path: \"/\", access: public }\n"+
				"  - { path: \"/beta/*\", id: \"v1~beta\", access: paid }\n"+
				"  - { path: \"/long/*\", id: \""+long+"\", access: paid }\n"+
				"  - { path: \"/api/v1/*\", id: 258AVO, access: paid }\n", 1)
	})
	for _, tc := range []struct{ path, id string }{{"/beta/x", "v1~beta"}, {"/long/x", long}, {"/api/v1/x", "258AVO"}} {
		if resp := fx.do("GET", tc.path, with(xhr, "X-Test-User", "user_2")); resp.StatusCode != http.StatusPaymentRequired {
			t.Errorf("%s without a plan: status %d, want 402", tc.path, resp.StatusCode)
		}
		if resp := fx.do("GET", tc.path, with(xhr)); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s signed out: status %d, want 401", tc.path, resp.StatusCode)
		}
	}
	fx.ents[proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}] = &proxy.Entitlements{Subscriptions: []proxy.Subscription{{Plan: "pro", Status: proxy.StatusActive}}}
	for _, tc := range []struct{ path, id string }{{"/beta/x", "v1~beta"}, {"/long/x", long}, {"/api/v1/x", "258AVO"}} {
		resp := fx.do("GET", tc.path, with(xhr, "X-Test-User", "user_1"))
		if resp.StatusCode != 200 {
			t.Errorf("%s with pro: status %d, want 200", tc.path, resp.StatusCode)
			continue
		}
		if got := fx.lastUpstream().Header.Get(HeaderRoute); got != tc.id {
			t.Errorf("%s: %s %q, want %q", tc.path, HeaderRoute, got, tc.id)
		}
	}
}

// A page load on one of extra_origins is sent to sign in with a way back to
// that origin (its own cookies live there), and a Host that names no
// configured origin is sent back to public_url, never to itself.
func TestGate_SignInReturnsToTheOriginOfTheRequest(t *testing.T) {
	fx := newGateFixtureConfig(t, nil, func(c string) string {
		return strings.Replace(c, `public_url: "https://app.example.com"`, `public_url: "https://app.example.com"
extra_origins: ["https://www.example.com"]`, 1)
	})
	for host, want := range map[string]string{
		"www.example.com": "https://www.example.com/private/x",
		"evil.test":       "https://app.example.com/private/x",
	} {
		req, _ := http.NewRequest("GET", fx.front.URL+"/private/x", nil)
		req.Host = host
		for k, v := range navigation {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if got := loc.Query().Get("redirect_url"); got != want {
			t.Errorf("Host %s: redirect_url %q, want %q", host, got, want)
		}
	}
}

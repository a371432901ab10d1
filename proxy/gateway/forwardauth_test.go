package gateway

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// authAsk asks /.tollgate/auth about a request, as nginx would.
func (fx *gateFixture) authAsk(mode, method, uri string, hdr map[string]string) *http.Response {
	fx.t.Helper()
	h := with(hdr, "X-Original-URI", uri, "X-Original-Method", method, "X-Forwarded-Host", "app.example.com")
	target := "/.tollgate/auth"
	if mode != "" {
		target += "?mode=" + mode
	}
	return fx.do("GET", target, h)
}

func TestForwardAuth_NginxMode(t *testing.T) {
	fx := newGateFixtureConfig(t, nil, trustLoopback)
	fx.ents[proxy.Subject{Kind: proxy.SubjectUser, ID: "user_paid"}] = &proxy.Entitlements{Subscriptions: []proxy.Subscription{{Plan: "pro", Status: proxy.StatusActive}}}
	signInURL := "https://accounts.example.com/sign-in?redirect_url=" + url.QueryEscape("https://app.example.com/private/x")
	upgrade := "/.tollgate/upgrade?" + url.Values{"return": {"/routes/415VNA/"}, "route": {"415VNA"}}.Encode()
	tests := []struct {
		name              string
		method, uri       string
		hdr               map[string]string
		status            int
		user, plan, route string
		location          string
		upgradeURL        string
	}{
		{"public passes", "GET", "/public/x", xhr, 200, "", "", "", "", ""},
		{"signed in passes with identity", "GET", "/private/x", with(xhr, "X-Test-User", "user_1", "X-Tollgate-User", "user_evil"), 200, "user_1", "", "", "", ""},
		{"signed-out page load: 401 and where to sign in", "GET", "/private/x", navigation, 401, "", "", "", signInURL, ""},
		{"signed-out API: 401 only", "GET", "/private/x", xhr, 401, "", "", "", "", ""},
		{"unpaid page load: 403 and the upgrade page", "GET", "/routes/415VNA/", with(navigation, "X-Test-User", "user_1"), 403, "", "", "", upgrade, upgrade},
		{"unpaid API: 403 and the upgrade URL", "GET", "/routes/415VNA/", with(xhr, "X-Test-User", "user_1"), 403, "", "", "", "",
			"https://app.example.com/.tollgate/upgrade?" + url.Values{"return": {"/routes/415VNA/"}, "route": {"415VNA"}}.Encode()},
		{"paid passes with plan and route", "GET", "/routes/415VNA/", with(xhr, "X-Test-User", "user_paid"), 200, "user_paid", "pro", "415VNA", "", ""},
		{"deny", "GET", "/admin/x", with(xhr, "X-Test-User", "user_1"), 403, "", "", "", "", ""},
		{"method filter from the original method", "POST", "/api/x", with(xhr, "X-Test-User", "user_1"), 403, "", "", "", "", ""},
		{"non-canonical URI refused", "GET", "/public/../private/x", xhr, 403, "", "", "", "", ""},
		{"tollgate's own prefix refused", "GET", "/.tollgate/api/me", xhr, 403, "", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := fx.authAsk("", tt.method, tt.uri, tt.hdr)
			got := []string{resp.Status[:3], resp.Header.Get(HeaderUser), resp.Header.Get(HeaderPlan), resp.Header.Get(HeaderRoute),
				resp.Header.Get(HeaderLocation), resp.Header.Get(HeaderUpgradeURL)}
			want := []string{strconv.Itoa(tt.status), tt.user, tt.plan, tt.route, tt.location, tt.upgradeURL}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("field %d: got %q, want %q (all: %q)", i, got[i], want[i], got)
				}
			}
		})
	}
	if fx.upstreamCount() != 0 {
		t.Errorf("forward-auth reached the upstream %d times", fx.upstreamCount())
	}
}

func TestForwardAuth_RedirectModeAnswersTheBrowser(t *testing.T) {
	fx := newGateFixtureConfig(t, nil, trustLoopback)
	resp := fx.authAsk("redirect", "GET", "/private/x?a=1", navigation)
	if resp.StatusCode != 307 || !strings.HasPrefix(resp.Header.Get("Location"), "https://accounts.example.com/sign-in?") {
		t.Errorf("signed out: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = fx.authAsk("redirect", "GET", "/private/x", with(navigation, "X-Test-Expired", "sess_1", "X-Test-UAT", "100"))
	if resp.StatusCode != 307 || !strings.Contains(resp.Header.Get("Location"), "/v1/client/handshake") {
		t.Errorf("handshake: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = fx.authAsk("redirect", "GET", "/routes/415VNA/", with(navigation, "X-Test-User", "user_1", "Cookie", "__tollgate=x"))
	if resp.StatusCode != 303 || !strings.HasPrefix(resp.Header.Get("Location"), "/.tollgate/upgrade?") {
		t.Errorf("unpaid: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = fx.authAsk("redirect", "GET", "/public/../private", navigation)
	if resp.StatusCode != 308 || resp.Header.Get("Location") != "/private" {
		t.Errorf("non-canonical: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestForwardAuth_CookiesThePeerCannotPassGoThroughTheSessionBounce(t *testing.T) {
	fx := newGateFixtureConfig(t, nil, trustLoopback)
	// First page load after sign-in: no gateway cookie yet.
	resp := fx.authAsk("", "GET", "/private/x?q=1", with(navigation, "X-Test-User", "user_1"))
	loc := resp.Header.Get(HeaderLocation)
	if resp.StatusCode != 401 || loc != "/.tollgate/session?return=%2Fprivate%2Fx%3Fq%3D1" {
		t.Fatalf("first load: %d %q", resp.StatusCode, loc)
	}
	resp = fx.do("GET", loc, with(navigation, "X-Test-User", "user_1"))
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/private/x?q=1" {
		t.Fatalf("bounce: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var gw *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == GatewayCookieSecure {
			gw = c
		}
	}
	if gw == nil {
		t.Fatal("the bounce set no gateway cookie")
	}
	// Back with the cookie: allowed, no second bounce.
	resp = fx.authAsk("", "GET", "/private/x?q=1", with(navigation, "X-Test-User", "user_1", "Cookie", GatewayCookieSecure+"="+gw.Value))
	if resp.StatusCode != 200 {
		t.Errorf("with the cookie: %d", resp.StatusCode)
	}
	// A browser that drops cookies is not bounced forever.
	resp = fx.authAsk("", "GET", "/private/x", with(navigation, "X-Test-User", "user_1", "Cookie", bounceCookie+"=1"))
	if resp.StatusCode != 200 {
		t.Errorf("after a bounce: %d", resp.StatusCode)
	}
}

// A forwarded URI that cannot be parsed is refused, and its query (which may
// carry a token) is not written to the log through the parser's error.
func TestForwardAuth_UnparsableURIIsNotLogged(t *testing.T) {
	fx := newGateFixtureConfig(t, nil, trustLoopback)
	var logged bytes.Buffer
	fx.srv.log = slog.New(slog.NewJSONHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	resp := fx.authAsk("", "GET", "%zz?token=sekrit", xhr)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	if !strings.Contains(logged.String(), "bad_forward_auth") {
		t.Fatalf("no access log line: %s", logged.String())
	}
	if strings.Contains(logged.String(), "sekrit") {
		t.Errorf("the log holds the forwarded query: %s", logged.String())
	}
}

// An allowed forward-auth answer carries the request's Cookie and
// Authorization as proxy mode's Rewrite forwards them, one line each, for
// the caller to put in place of the client's (README "Forward auth").
func TestForwardAuth_ForwardedCredentials(t *testing.T) {
	tests := []struct {
		name                   string
		forwardClerk, clerkKey bool
		in                     http.Header
		cookie, authorization  string
	}{
		{"nothing", false, false, http.Header{}, "", ""},
		{"credential cookies removed", false, false,
			http.Header{"Cookie": {"theme=dark; __session=a.b.c; __client_uat=1; __tollgate=x; __Host-tollgate=y; __clerk_db_jwt=z; lang=en"}},
			"theme=dark; lang=en", ""},
		{"only credential cookies", false, false, http.Header{"Cookie": {"__session=a.b.c; __client_uat=1"}}, "", ""},
		{"two Cookie lines joined", false, false, http.Header{"Cookie": {"theme=dark; __session=a.b.c", "lang=en"}}, "theme=dark; lang=en", ""},
		{"Clerk's forwarded when asked, tollgate's never", true, false,
			http.Header{"Cookie": {"__session=a.b.c; __tollgate=x; theme=dark"}}, "__session=a.b.c; theme=dark", ""},
		{"a key in Authorization dropped", false, false, http.Header{"Authorization": {"Bearer tg_live_abc"}}, "", ""},
		{"a key in any scheme dropped", false, false, http.Header{"Authorization": {"Basic tg_test_abc"}}, "", ""},
		{"Clerk's key dropped with clerk.api_keys", false, true, http.Header{"Authorization": {"Bearer ak_abc"}}, "", ""},
		{"Clerk's key is the app's without it", false, false, http.Header{"Authorization": {"Bearer ak_abc"}}, "", "Bearer ak_abc"},
		{"other credentials are the app's", false, false, http.Header{"Authorization": {"Basic dXNlcjpwdw=="}}, "", "Basic dXNlcjpwdw=="},
		{"Authorization twice: dropped", false, false, http.Header{"Authorization": {"Basic dXNlcjpwdw==", "Bearer x"}}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &proxy.Config{}
			cfg.Clerk.ForwardCookies, cfg.Clerk.APIKeys = tt.forwardClerk, tt.clerkKey
			s := &Server{cfg: cfg}
			in := tt.in.Clone()
			cookie, authorization := s.forwardedCredentials(in)
			if cookie != tt.cookie || authorization != tt.authorization {
				t.Errorf("got Cookie %q, Authorization %q; want %q, %q", cookie, authorization, tt.cookie, tt.authorization)
			}
			if diff := cmp.Diff(tt.in, in); diff != "" {
				t.Errorf("the request's headers changed (-before +after):\n%s", diff)
			}
		})
	}
}

// A development instance's handshake comes back in the page's URL, and its
// answer sets the session cookies, which nginx never hands the browser on a
// denial. Through nginx the page load goes by <prefix>/session, which
// resolves the same handshake and sets them on its own answer, then back to
// the clean URL (red team, 2026-12-06: the cookies were dropped and sign-in
// looped).
func TestForwardAuth_DevelopmentHandshakeGoesBySession(t *testing.T) {
	resolving := func(r *http.Request) proxy.AuthResult {
		if r.URL.Query().Get("__clerk_handshake") == "payload" {
			clean := *r.URL
			clean.RawQuery = stripClerkQuery(r.URL.RawQuery)
			return proxy.AuthResult{State: proxy.SignedIn, Location: clean.RequestURI(),
				SetCookies: []string{"__session=tok; Path=/", "__client_uat=1; Path=/"},
				Identity:   &proxy.Identity{UserID: "user_1", SessionID: "sess_1", Source: "handshake"}}
		}
		return signedInByHeader(r)
	}
	fx := newGateFixtureWith(t, nil, trustLoopback, func(o *Options) { o.Auth = fakeAuth{resolving} })

	resp := fx.authAsk("", "GET", "/private/x?a=1&__clerk_handshake=payload&__clerk_db_jwt=dvb", navigation)
	wantLoc := "/.tollgate/session?return=" + url.QueryEscape("/private/x?a=1") + "&__clerk_handshake=payload&__clerk_db_jwt=dvb"
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(HeaderLocation) != wantLoc {
		t.Fatalf("nginx mode: %d to %q, want 401 to %q", resp.StatusCode, resp.Header.Get(HeaderLocation), wantLoc)
	}
	// The browser, sent there by nginx: the handshake is resolved and its
	// cookies set on tollgate's own answer.
	resp = fx.do("GET", wantLoc, navigation)
	clean := "/.tollgate/session?return=" + url.QueryEscape("/private/x?a=1")
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != clean {
		t.Fatalf("at the session endpoint: %d to %q, want 307 to %q", resp.StatusCode, resp.Header.Get("Location"), clean)
	}
	if got := resp.Header.Values("Set-Cookie"); !slices.Contains(got, "__session=tok; Path=/") {
		t.Errorf("the session endpoint set %q, want the handshake's __session", got)
	}
	resp = fx.do("GET", clean, with(navigation, "X-Test-User", "user_1"))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/private/x?a=1" {
		t.Errorf("back from the session endpoint: %d to %q, want 303 to /private/x?a=1", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Proxy mode answers the same page load itself, cookies and all.
	resp = fx.do("GET", "/private/x?a=1&__clerk_handshake=payload", navigation)
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "/private/x?a=1" {
		t.Errorf("proxy mode: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

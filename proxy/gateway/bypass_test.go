package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/proxy"
)

// Each test here performs an attack over real HTTP against the gateway and
// shows it no longer works (docs/SECURITY.md, "Rules in detail").

// Rules and upstream judge the same path: a path that some upstream would
// route under another rule is refused, whoever asks.
func TestBypass_PathReadingsThatChooseAnotherRuleAreRefused(t *testing.T) {
	fx := newGateFixture(t, nil)
	for _, uri := range []string{
		"/routes/415VNA/..;/..;/",                      // Tomcat: "/"; ServeMux: the paid route
		"/routes/415VNA/..;/",                          // Tomcat: "/routes"
		"/private/..;/",                                // signed_in vs public "/"
		"/private/x/.;/..;/..;/public/",                // ".;" too
		"/routes/415VNA/x%5C..%5C..%5C..%5C",           // IIS: "/"
		"/routes/415VNA/x%5C..%5C..%5C..%5Cpublic",     // IIS: "/public"
		"/ROUTES/415vna/..;/..;/public/x",              // mixed case
		"/private;/x",                                  // ";" alone: Tomcat "/private/x" vs default paid
		"/public/%252e%252e/private/x",                 // an upstream decoding again: "/private/x"
		"/public/x/..%253B/..%253B/private/y",          // encoded ";" then decoded again
		"/admin./users",                                // IIS drops a trailing dot: the deny rule
		"/admin%20/users",                              // and a trailing space
		"/admin%09/users",                              // Spring's trimTokens drops a tab
		"/%00admin/users",                              // and a NUL
		"/PUBLIC/x",                                    // public when folded; a case-sensitive app routes it elsewhere
		"/Public/",                                     // the same
		"/publ%C4%B1c/x",                               // dotless i: IIS upper-cases it to I
		"/adm%C4%B0n/x",                                // dotted I: .NET and Java lower-case it to i
		"/ADMIN/x",                                     // deny when folded, the default when not
		"/adm%25c4%25b1n/x",                            // decoded again: dotless i, in lower-case hex
		"/publ%25c4%25b1c/x",                           // the same, under a public rule
		"/public/..%25u002fprivate/x",                  // ASP.NET decoding again reads %u002f as "/"
		"/%25u0061dmin/x",                              // and %u0061 as "a"
		"/admin+/x",                                    // UrlDecode reads "+" as " ", which Windows drops (red team 15b)
		"/public/x%25u005c..%25u002f..%25u002fadmin/x", // decoded again, then mapped as a Windows file: "/admin/x"
		"/public/x%255c..%252f..%252fadmin/x",          // the same with %5c
	} {
		resp := fx.rawRequest(uri, xhr)
		if resp.StatusCode == http.StatusPermanentRedirect {
			loc := resp.Header.Get("Location")
			resp = fx.rawRequest(loc, xhr)
			uri += " → " + loc
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", uri, resp.StatusCode)
		}
	}
	if n := fx.upstreamCount(); n != 0 {
		t.Errorf("the upstream saw %d of these requests", n)
	}
}

// Path parameters that every reading routes alike are forwarded as they
// are, so jsessionid and matrix parameters keep working.
func TestBypass_HarmlessPathParametersAreForwardedAsIs(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.ents[proxy.Subject{Kind: proxy.SubjectUser, ID: "user_paid"}] = &proxy.Entitlements{Subscriptions: []proxy.Subscription{{Plan: "pro", Status: proxy.StatusActive}}}
	for _, uri := range []string{
		"/routes/415VNA/page;jsessionid=ABC123",
		"/routes/415VNA/cars;color=red/x",
		"/public/a.css;v=2",
	} {
		resp := fx.rawRequest(uri, with(xhr, "X-Test-User", "user_paid"))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d, want 200", uri, resp.StatusCode)
			continue
		}
		if got := fx.lastUpstream().URL.RequestURI(); got != uri {
			t.Errorf("%s: upstream got %q", uri, got)
		}
	}
	// Signed out, the same paid path is not a way in.
	if resp := fx.rawRequest("/routes/415VNA/page;jsessionid=ABC123", xhr); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("signed out: status %d", resp.StatusCode)
	}
}

// A method-override header or a POST's _method may make the app act as
// another method: the request is judged by the strictest rule among them.
func TestBypass_MethodOverridesAreJudgedByTheStrictestRule(t *testing.T) {
	fx := newGateFixture(t, nil)
	user := with(xhr, "X-Test-User", "user_1")
	tests := []struct {
		name   string
		method string
		hdr    map[string]string
		want   int
	}{
		{"plain GET", "GET", user, 200},
		{"GET overridden to DELETE", "GET", with(user, "X-HTTP-Method-Override", "DELETE"), 403},
		{"X-HTTP-Method", "GET", with(user, "X-HTTP-Method", "delete"), 403},
		{"X-Method-Override", "PUT", with(user, "X-Method-Override", "DELETE"), 403},
		{"underscore spelling", "GET", with(user, "X_HTTP_Method_Override", "DELETE"), 403},
		{"POST may carry _method=DELETE", "POST", user, 403},
		{"override naming a harmless method", "GET", with(user, "X-HTTP-Method-Override", "PATCH"), 200},
	}
	for _, tt := range tests {
		resp := fx.do(tt.method, "/items/1", tt.hdr)
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
	// Where no rule tells methods apart, a POST is judged as itself.
	if resp := fx.do("POST", "/private/x", user); resp.StatusCode != 200 {
		t.Errorf("POST to a path whose rules ignore the method: %d", resp.StatusCode)
	}
}

// Headers only tollgate or a trusted proxy may set are removed in every
// spelling an app's framework would read as the same header.
func TestBypass_SpoofedHeadersInEverySpellingAreRemoved(t *testing.T) {
	fx := newGateFixture(t, nil)
	spoofed := map[string]string{
		"X_Tollgate_User":    "user_grace",
		"x_tollgate_org":     "org_evil",
		"X-Tollgate_Plan":    "pro",
		"X-Tollgate.Status":  "user_grace", // PHP reads "." as "_"
		"X.Tollgate.Route":   "user_grace",
		"X-Real.IP":          "6.6.6.6",
		"X.Forwarded.For":    "6.6.6.6",
		"X-Forwarded-Host":   "evil.test",
		"X-Forwarded-Prefix": "/evil",
		"X-Forwarded-Port":   "1",
		"X_Forwarded_For":    "6.6.6.6",
		"Forwarded":          "for=6.6.6.6;host=evil.test",
		"X-Real-IP":          "6.6.6.6",
		"X-Original-URL":     "/admin/x",
		"X-Rewrite-URL":      "/admin/x",
		"X-Original-URI":     "/admin/x",
		"True-Client-IP":     "6.6.6.6",
	}
	fx.do("GET", "/private/x", with(with(xhr, "X-Test-User", "user_ada"), flatten(spoofed)...))
	up := fx.lastUpstream()
	if up == nil {
		t.Fatal("not forwarded")
	}
	if got := up.Header.Values(HeaderUser); !slices.Equal(got, []string{"user_ada"}) {
		t.Errorf("X-Tollgate-User at the app: %q", got)
	}
	for k, v := range up.Header {
		if strings.Contains(strings.Join(v, ","), "evil") || strings.Contains(strings.Join(v, ","), "6.6.6.6") ||
			strings.Contains(strings.Join(v, ","), "user_grace") || strings.Contains(strings.Join(v, ","), "/admin") {
			t.Errorf("spoofed %s: %q reached the app", k, v)
		}
		if k != HeaderUser && k != HeaderRoute && foldedHasPrefix(k, "x-tollgate-") {
			t.Errorf("%s reached the app", k)
		}
	}

	// A trusted proxy's forwarding headers pass, in their standard spelling
	// only.
	r := httptest.NewRequest("GET", "/public/x", nil)
	r.RemoteAddr = "10.1.2.3:5555"
	for k, v := range map[string]string{"X-Forwarded-Host": "app.example.com", "X-Real-IP": "1.2.3.4", "X_Real_IP": "6.6.6.6", "X-Real.IP": "6.6.6.6", "X-Tollgate-User": "user_grace"} {
		r.Header[k] = []string{v}
	}
	fx.srv.ServeHTTP(httptest.NewRecorder(), r)
	up = fx.lastUpstream()
	if up.Header.Get("X-Real-IP") != "1.2.3.4" || up.Header.Get("X-Forwarded-Host") != "app.example.com" {
		t.Errorf("trusted proxy's headers: %v", up.Header)
	}
	for _, k := range []string{"X_Real_IP", "X-Real.IP"} {
		if _, ok := up.Header[k]; ok {
			t.Errorf("%s from a trusted proxy reached the app", k)
		}
	}
	if up.Header.Get(HeaderUser) != "" {
		t.Error("a trusted proxy set X-Tollgate-User")
	}
}

func flatten(m map[string]string) []string {
	var kv []string
	for k, v := range m {
		kv = append(kv, k, v)
	}
	return kv
}

// A CORS preflight passes ungated, but without credentials or body, and
// its answer carries no gated body.
func TestBypass_PreflightsCarryNoCredentialsAndLeakNoBody(t *testing.T) {
	fx := newGateFixture(t, nil)
	req, _ := http.NewRequest("OPTIONS", fx.front.URL+"/routes/415VNA/report", strings.NewReader("delete=everything"))
	req.Header.Set("Origin", "https://other.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Authorization", "Bearer secret")
	req.Header.Set("Cookie", "__session=tok; app=1")
	req.Header.Set("X-Api-Key", "secret")
	req.Header.Set("X-HTTP-Method-Override", "DELETE")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 0 {
		t.Errorf("preflight: status %d, body %q", resp.StatusCode, b)
	}
	up := fx.lastUpstream()
	if up == nil || up.Header.Get("Authorization") != "" || up.Header.Get("Cookie") != "" || up.Header.Get("X-Api-Key") != "" ||
		up.Header.Get("X-HTTP-Method-Override") != "" || up.ContentLength > 0 || up.Header.Get("Access-Control-Request-Method") != "POST" {
		t.Fatalf("the preflight reached the app with credentials or a body: %v (length %d)", up.Header, up.ContentLength)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "private") {
		t.Errorf("gated preflight answer Cache-Control %q", cc)
	}
	// A denied path stays denied.
	resp = fx.do("OPTIONS", "/admin/x", map[string]string{"Origin": "https://other.example", "Access-Control-Request-Method": "GET"})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("preflight to a denied path: %d", resp.StatusCode)
	}
}

// A gated response keeps no directive a shared cache would obey.
func TestBypass_GatedResponsesTellNoSharedCacheToStore(t *testing.T) {
	cdn := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "public, max-age=60, s-maxage=600")
		h.Set("CDN-Cache-Control", "max-age=3600")
		h.Set("Cloudflare-CDN-Cache-Control", "max-age=3600")
		h.Set("Vercel-CDN-Cache-Control", "max-age=3600")
		h.Set("Surrogate-Control", "max-age=3600")
		h.Set("Edge-Control", "cache-maxage=3600")
		h.Set("X-Accel-Expires", "3600")
		h.Set("Akamai-Cache-Control", "max-age=3600")
		h.Set("Fastly-Surrogate-Control", "max-age=3600")
		io.WriteString(w, "secret")
	})
	fx := newGateFixture(t, cdn)
	resp := fx.do("GET", "/private/x", with(xhr, "X-Test-User", "user_1"))
	for k := range resp.Header {
		if sharedCacheHeader(k) {
			t.Errorf("gated response kept %s", k)
		}
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "private, max-age=60" {
		t.Errorf("Cache-Control %q", cc)
	}
	// "no-store" counts only as a directive, not inside another's value,
	// even a quoted one holding commas (red team, issue 15); and Vary
	// names whole fields, so a longer name holding "Cookie" does not
	// count as Cookie.
	for _, sneakyCC := range []string{`public, max-age=600, x="no-store"`, `public, max-age=600, x="a, no-store , b"`, `public, max-age=600, x="a\", no-store"`} {
		sneaky := newGateFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", sneakyCC)
			w.Header().Set("Vary", "X-Cookie-Hint, Accept-Authorization-Hint")
		}))
		resp := sneaky.do("GET", "/private/x", with(xhr, "X-Test-User", "user_1"))
		if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "private") || strings.Contains(cc, "public") {
			t.Errorf("Cache-Control %s: %q, want private first and no public", sneakyCC, cc)
		}
		if v := strings.Join(resp.Header.Values("Vary"), ", "); v != "X-Cookie-Hint, Accept-Authorization-Hint, Cookie, Authorization" {
			t.Errorf("Vary %q, want Cookie and Authorization added", v)
		}
	}
	// Public responses are the app's business.
	resp = fx.do("GET", "/public/x", xhr)
	if resp.Header.Get("CDN-Cache-Control") == "" || resp.Header.Get("Surrogate-Control") == "" {
		t.Errorf("public response lost its CDN directives: %v", resp.Header)
	}
}

// Clerk's credentials and tollgate's own cookies never reach the app,
// unless the site owner asks for Clerk's.
func TestBypass_ClerkAndGatewayCookiesStayAtTheGateway(t *testing.T) {
	cookie := "__session=tok1; __session=tok2; __session_Abc123=tok3; __client_uat=1; __client_uat_Abc123=1; " +
		"__clerk_db_jwt=dv; __clerk_redirect_count=1; __refresh_Abc123=r; __tollgate=gw; __Host-tollgate=gw; __tollgate_bounce=1; theme=dark; __session_app_note=x"
	fx := newGateFixture(t, nil)
	fx.do("GET", "/public/x", map[string]string{"Cookie": cookie})
	got := fx.lastUpstream().Header.Get("Cookie")
	if got != "theme=dark" {
		t.Errorf("app got Cookie %q, want only theme=dark", got)
	}

	fx = newGateFixtureConfig(t, nil, func(s string) string {
		return strings.Replace(s, `  secret_key: "sk_live_x"`, "  secret_key: \"sk_live_x\"\n  forward_cookies: true", 1)
	})
	fx.do("GET", "/public/x", map[string]string{"Cookie": cookie})
	got = fx.lastUpstream().Header.Get("Cookie")
	if !strings.Contains(got, "__session=tok1") || !strings.Contains(got, "__client_uat=1") || strings.Contains(got, "tollgate") {
		t.Errorf("with forward_cookies the app got Cookie %q", got)
	}
}

// With hosts: set, a Host not on it gets 421; health checks still answer.
func TestBypass_HostAllowList(t *testing.T) {
	fx := newGateFixtureConfig(t, nil, func(s string) string {
		return trustLoopback(strings.Replace(s, "default_access: paid", "hosts: [api.example.com]\ndefault_access: paid", 1))
	})
	for host, want := range map[string]int{
		"app.example.com":      200, // public_url's host is always allowed
		"API.example.com:443":  200,
		"evil.test":            http.StatusMisdirectedRequest,
		"app.example.com.evil": http.StatusMisdirectedRequest,
	} {
		req, _ := http.NewRequest("GET", fx.front.URL+"/public/x", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
	req, _ := http.NewRequest("GET", fx.front.URL+"/.tollgate/healthz", nil)
	req.Host = "10.0.0.7:8080"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz on another Host: %d", resp.StatusCode)
	}
	// Forward auth judges the host the proxy names.
	resp = fx.do("GET", "/.tollgate/auth", with(xhr, "X-Original-URI", "/public/x", "X-Original-Method", "GET", "X-Forwarded-Host", "evil.test"))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("forward auth for another host: %d", resp.StatusCode)
	}
}

// Forward auth believes only what a trusted proxy says, and a client's
// copy of the other header family cannot change what is judged.
func TestBypass_ForwardAuthBelievesOnlyTheFrontingProxy(t *testing.T) {
	fx := newGateFixtureConfig(t, nil, trustLoopback)
	paidURI := map[string]string{"X-Original-URI": "/routes/415VNA/", "X-Original-Method": "GET", "X-Forwarded-Host": "app.example.com"}
	tests := []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"the attack: a client's X-Forwarded-Uri beside nginx's X-Original-URI", with(paidURI, "X-Forwarded-Uri", "/"), 400},
		{"a client's X-Forwarded-Method beside nginx's", with(paidURI, "X-Forwarded-Method", "OPTIONS"), 400},
		{"both families agreeing", with(paidURI, "X-Forwarded-Uri", "/routes/415VNA/", "X-Forwarded-Method", "GET"), 401},
		{"no URI at all", map[string]string{"X-Original-Method": "GET"}, 400},
		{"no method", map[string]string{"X-Original-URI": "/public/x"}, 400},
		{"nginx alone", paidURI, 401},
	}
	for _, tt := range tests {
		if resp := fx.do("GET", "/.tollgate/auth", with(xhr, flatten(tt.hdr)...)); resp.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
	// The same header twice is a 400, not first-wins.
	req, _ := http.NewRequest("GET", fx.front.URL+"/.tollgate/auth", nil)
	req.Header["X-Original-Uri"] = []string{"/public/x", "/routes/415VNA/"}
	req.Header.Set("X-Original-Method", "GET")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("URI twice: %d", resp.StatusCode)
	}

	// An allowed answer sets every identity header, empty when unknown, so
	// the proxy overwrites a client's own copy of each.
	resp = fx.do("GET", "/.tollgate/auth", with(xhr, "X-Original-URI", "/public/x", "X-Original-Method", "GET"))
	for _, h := range []string{HeaderUser, HeaderOrg, HeaderPlan, HeaderStatus, HeaderRoute} {
		if _, ok := resp.Header[h]; !ok {
			t.Errorf("allowed answer lacks %s", h)
		}
	}

	// A client that is not a trusted proxy cannot ask at all.
	direct := newGateFixture(t, nil)
	if resp := direct.do("GET", "/.tollgate/auth", with(xhr, "X-Original-URI", "/public/x", "X-Original-Method", "GET")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("untrusted caller: %d", resp.StatusCode)
	}
}

// The visitor behind a trusted proxy is the rightmost X-Forwarded-For entry
// the proxies did not write; a client's own entries to the left never count.
func TestClientAddr(t *testing.T) {
	trustedNets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tt := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"203.0.113.5:4000", []string{"1.2.3.4"}, "203.0.113.5"}, // untrusted peer: its own address, XFF ignored
		{"10.0.0.2:4000", nil, "10.0.0.2"},
		{"10.0.0.2:4000", []string{"6.6.6.6, 203.0.113.7"}, "203.0.113.7"},
		{"10.0.0.2:4000", []string{"6.6.6.6", "203.0.113.7, 10.0.0.3"}, "203.0.113.7"},
		{"10.0.0.2:4000", []string{"not-an-ip"}, "10.0.0.2"},
		{"[::ffff:10.0.0.2]:4000", []string{"2001:db8::1"}, "2001:db8::1"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.peer
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := ClientAddr(r, trustedNets); got != tt.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %q, want %q", tt.peer, tt.xff, got, tt.want)
		}
	}
}

// Clerk's query parameters never reach the app, however their names are
// escaped: an app running Clerk's SDK would decode them.
func TestBypass_EscapedClerkQueryParametersAreStripped(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.do("GET", "/public/x?a=1&%5F%5Fclerk_handshake=tok&%5f_clerk_db_jwt=x&__clerk_help=1&b=%41", nil)
	if got := fx.lastUpstream().URL.RawQuery; got != "a=1&b=%41" {
		t.Errorf("app got query %q, want a=1&b=%%41", got)
	}
}

func TestNextListElement(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a", []string{"a"}},
		{" a , b ,c", []string{"a", "b", "c"}},
		{`x="a, b", c`, []string{`x="a, b"`, "c"}},
		{`x="a\", b", c`, []string{`x="a\", b"`, "c"}},
		{`x="unterminated, b`, []string{`x="unterminated, b`}},
		{"a,,b", []string{"a", "", "b"}},
	} {
		var got []string
		for s := tc.in; s != ""; {
			var e string
			e, s = nextListElement(s)
			got = append(got, e)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

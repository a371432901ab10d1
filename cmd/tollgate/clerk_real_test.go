package main

// Clerk as it really behaves, not as a kind stand-in would: each test runs
// over real HTTP against the real gateway wired by newGateway, with the
// sandbox answering the way Clerk's Frontend API, Account Portal and
// Backend API do.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/config"
	"github.com/tollgate/tollgate/proxy/sandbox/clerk"
)

// TestClerk_SignInReturnsWithOnlyClientUAT: a production Account Portal
// leaves the browser only the domain-wide __client_uat (and its own client
// cookie on the Frontend API host), never __session on the app's host. So
// the first page load back from sign-in must go through the handshake
// (client-uat-but-no-session-token), and an XHR sent before any page load
// is signed out.
func TestClerk_SignInReturnsWithOnlyClientUAT(t *testing.T) {
	d, _ := mustRunDemo(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	back := d.URL + "/settings/"
	resp, err := c.PostForm(d.ClerkURL+"/sign-in", url.Values{"user_id": {"user_ada"}, "redirect_url": {back}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != back {
		t.Fatalf("sign-in: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var names []string
	for _, ck := range resp.Cookies() {
		names = append(names, ck.Name)
	}
	if strings.Join(names, ",") != "__client_uat,__sandbox_client" {
		t.Errorf("sign-in set cookies %v, want only __client_uat and the Frontend API's client cookie", names)
	}

	// An XHR before any page load: __client_uat and no token, not a page
	// load, so no handshake and no gateway cookie yet.
	if code, _ := whoami(t, c, d, api); code != http.StatusUnauthorized {
		t.Errorf("XHR straight after sign-in: %d, want 401", code)
	}

	// The page load handshakes, and comes back signed in.
	resp = get(t, c, back, page)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusTemporaryRedirect || loc.Path != "/v1/client/handshake" ||
		loc.Query().Get("__clerk_hs_reason") != "client-uat-but-no-session-token" {
		t.Fatalf("first page load after sign-in: %d %q, want the handshake (client-uat-but-no-session-token)", resp.StatusCode, loc)
	}
	final, _ := browse(t, c, loc.String(), 2)
	if final.StatusCode != 200 || final.Request.URL.String() != back || !hasSetCookie(final, "__session") {
		t.Fatalf("back from the handshake: %d at %s, cookies %v", final.StatusCode, final.Request.URL, final.Header.Values("Set-Cookie"))
	}
	if code, h := whoami(t, c, d, api); code != 200 || h["user"] != "user_ada" {
		t.Errorf("XHR after the handshake: %d %v", code, h)
	}
}

// setCookieNames lists the names of a response's Set-Cookie values, in
// order, with "=" for an empty value ("__session=" clears it).
func setCookieNames(resp *http.Response) []string {
	var out []string
	for _, v := range resp.Header.Values("Set-Cookie") {
		nv, _, _ := strings.Cut(v, ";")
		name, val, _ := strings.Cut(nv, "=")
		if val == "" {
			name += "="
		}
		out = append(out, name)
	}
	return out
}

// secondGateway runs another gateway on d's config and sandbox, changed by
// tweak, with its own store and no admin listener, on a free port.
func secondGateway(t *testing.T, d *demo, clk *clock, tweak func(*proxy.Config)) *demo {
	t.Helper()
	cfg := *d.Config
	cfg.Admin.Listen = ""
	cfg.Store.Path = filepath.Join(t.TempDir(), "second.db")
	srv := httptest.NewUnstartedServer(nil)
	cfg.PublicURL, _ = url.Parse("http://" + srv.Listener.Addr().String())
	if tweak != nil {
		tweak(&cfg)
	}
	gw, err := newApp(&cfg, appDeps{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = gw.Handler
	srv.Start()
	t.Cleanup(func() { srv.Close(); gw.Close() })
	return &demo{URL: srv.URL, ClerkURL: d.ClerkURL, Clerk: d.Clerk, Config: &cfg}
}

// TestClerk_HandshakeDetails: what the handshake hands back reaches the
// browser and decides as the browser's cookies will. The sandbox clears the
// old __session before it sets the new one (the last directive wins); every
// answer carries the directives, a revoked session's sign-in redirect and a
// 502 from the upstream included; the handshake asks for the current Clerk
// API version.
func TestClerk_HandshakeDetails(t *testing.T) {
	d, clk := mustRunDemo(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")

	t.Run("the last __session directive wins", func(t *testing.T) {
		clk.Advance(2 * time.Minute)
		final, hops := browse(t, c, d.URL+"/settings/", 2)
		if len(hops) != 2 || final.StatusCode != 200 || final.Request.URL.String() != d.URL+"/settings/" {
			t.Fatalf("page load with an expired token: %d after %v, want 200 after the handshake", final.StatusCode, hops)
		}
		names := strings.Join(setCookieNames(final), " ")
		if !strings.Contains(names, "__session= __session ") {
			t.Errorf("directives %q: want the old __session cleared before the new one is set", names)
		}
		if code, h := whoami(t, c, d, api); code != 200 || h["user"] != "user_ada" {
			t.Errorf("after the handshake: %d %v, want Ada", code, h)
		}
	})

	t.Run("the current API version", func(t *testing.T) {
		got := d.Clerk.HandshakeVersions()
		if len(got) != 1 || got[clerksandbox.APIVersion] == 0 {
			t.Errorf("handshakes by __clerk_api_version: %v, want only %s", got, clerksandbox.APIVersion)
		}
	})

	t.Run("a 502 from the upstream carries them", func(t *testing.T) {
		// An upstream that hangs up on every connection. The test keeps
		// the port: a port closed and left free could be taken by another
		// socket, which might answer.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		dead := "http://" + ln.Addr().String()
		broken := secondGateway(t, d, clk, func(cfg *proxy.Config) { cfg.Upstream, _ = url.Parse(dead) })
		hs := handshakeAs(t, d, "user_grace")
		resp := get(t, noRedirects(nil), broken.URL+"/settings/", withHeader(page, "Cookie", hs.Name+"="+hs.Value))
		names := strings.Join(setCookieNames(resp), " ")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(names, "__session ") || !strings.Contains(names, "__clerk_handshake=") ||
			!strings.Contains(names, "__tollgate") {
			t.Errorf("502: %d with cookies %q, want the handshake's directives and the gateway cookie", resp.StatusCode, names)
		}
	})

	t.Run("a revoked session's answer carries them", func(t *testing.T) {
		sid := sessionIDOf(t, cookieValue(jar, d.URL, "__session"))
		if resp := postSvix(t, d, clk.Now(), `{"type":"session.revoked","object":"event","data":{"id":"`+sid+`","object":"session"}}`, ""); resp.StatusCode != 200 {
			t.Fatalf("Clerk webhook: %d", resp.StatusCode)
		}
		// Clerk has not caught up: its handshake still hands out a token
		// for the session, which tollgate refuses.
		clk.Advance(2 * time.Minute)
		resp := get(t, c, d.URL+"/settings/", page)
		resp = get(t, c, resp.Header.Get("Location"), page)
		resp = get(t, c, resp.Header.Get("Location"), page)
		names := strings.Join(setCookieNames(resp), " ")
		if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(resp.Header.Get("Location"), d.ClerkURL+"/sign-in") ||
			!strings.Contains(names, "__clerk_handshake=") || !strings.Contains(names, "__session ") {
			t.Errorf("revoked, back from the handshake: %d %q with cookies %q, want the sign-in page and the handshake's directives",
				resp.StatusCode, resp.Header.Get("Location"), names)
		}
		if cookieValue(jar, d.URL, "__clerk_handshake") != "" {
			t.Errorf("the browser still holds the handshake cookie: every request would resolve it again")
		}
	})
}

// TestClerk_GatewayCookieComparesClerksClockWithClerks: __client_uat is
// Clerk's clock, so the gateway cookie is compared by the iat of the Clerk
// token that earned it, not by the gateway's own issue time. A gateway
// whose clock lags Clerk's (by 4 s here, inside the tokens' leeway) keeps
// its cookie after sign-in: an XHR past the token's minute still passes.
func TestClerk_GatewayCookieComparesClerksClockWithClerks(t *testing.T) {
	d, clk := mustRunDemoWith(t, demoOptions{ClerkSkew: 4 * time.Second})
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	if code, h := whoami(t, c, d, api); code != 200 || h["user"] != "user_ada" {
		t.Fatalf("signed in: %d %v", code, h)
	}
	clk.Advance(2 * time.Minute) // the token has expired; the gateway cookie carries XHRs
	if code, h := whoami(t, c, d, api); code != 200 || h["user"] != "user_ada" {
		t.Errorf("XHR after the token's minute, gateway 4 s behind Clerk: %d %v, want Ada on the gateway cookie", code, h)
	}
}

// signInFromPage starts signed out on a signed-in page of the gateway and
// does what a person does: the sign-in page, the demo user's button, and
// the browser's way back, following at most maxHops redirects after the
// button. It returns the last response and the hops after the button.
func signInFromPage(t *testing.T, d *demo, c *http.Client, path, userID string, maxHops int) (*http.Response, []string) {
	t.Helper()
	resp := get(t, c, d.URL+path, page)
	signInURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(signInURL, d.ClerkURL+"/sign-in") {
		t.Fatalf("signed-out %s: %d %q, want the sign-in page", path, resp.StatusCode, signInURL)
	}
	if resp = get(t, c, signInURL, page); resp.StatusCode != 200 {
		t.Fatalf("sign-in page: %d", resp.StatusCode)
	}
	form := url.Values{"user_id": {userID}}
	body := readBody(t, resp)
	for _, field := range []string{"redirect_url", "dev_browser"} {
		if v := between(body, `name="`+field+`" value="`, `"`); v != "" {
			form.Set(field, html.UnescapeString(v))
		}
	}
	resp, err := c.PostForm(d.ClerkURL+"/sign-in", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	final, hops := browse(t, c, resp.Header.Get("Location"), maxHops)
	return final, append([]string{"303 " + resp.Header.Get("Location")}, hops...)
}

// TestClerk_DevelopmentInstance: a development instance (pk_test_) end to
// end, as Clerk runs one: the Account Portal sends the browser back with
// __clerk_db_jwt in the URL (dev-browser-sync), the handshake carries the
// dev browser, its payload (token or nonce) comes back in the URL and
// leaves with a redirect to the clean URL, and nothing Clerk sets on its
// own site is a cookie of the app's host.
func TestClerk_DevelopmentInstance(t *testing.T) {
	for _, nonce := range []bool{false, true} {
		t.Run(fmt.Sprintf("nonce=%v", nonce), func(t *testing.T) {
			d, clk := mustRunDemoWith(t, demoOptions{Development: true, NonceHandshake: nonce})
			if pk := d.Clerk.PublishableKey(); !strings.HasPrefix(pk, "pk_test_") {
				t.Fatalf("publishable key %q", pk)
			}
			jar, _ := cookiejar.New(nil)
			c := noRedirects(jar)
			final, hops := signInFromPage(t, d, c, "/settings/?tab=2", "user_ada", 4)
			if final.StatusCode != 200 || final.Request.URL.String() != d.URL+"/settings/?tab=2" {
				t.Fatalf("back from sign-in: %d at %s after %v", final.StatusCode, final.Request.URL, hops)
			}
			// Portal → app with the dev browser (B2) → handshake with it →
			// app with the payload in the URL → the clean URL.
			if len(hops) != 4 || !strings.Contains(hops[0], "__clerk_db_jwt=") || !strings.Contains(hops[1], "__clerk_hs_reason=dev-browser-sync") ||
				!strings.Contains(hops[1], "__clerk_db_jwt=") || !strings.Contains(hops[2], map[bool]string{false: "__clerk_handshake=", true: "__clerk_handshake_nonce="}[nonce]) ||
				hops[3] != "307 "+d.URL+"/settings/?tab=2" {
				t.Errorf("the way back from sign-in:\n  %s", strings.Join(hops, "\n  "))
			}
			u, _ := url.Parse(d.URL)
			have := map[string]bool{}
			for _, ck := range jar.Cookies(u) {
				have[ck.Name] = true
			}
			for _, name := range []string{"__session", "__client_uat", "__clerk_db_jwt", "__tollgate"} {
				if !have[name] {
					t.Errorf("after sign-in the browser lacks %s: %v", name, have)
				}
			}
			for _, name := range []string{"__sandbox_client", "__clerk_handshake", "__clerk_handshake_nonce"} {
				if have[name] {
					t.Errorf("after sign-in the browser holds %s: nothing of Clerk's site reaches the app's host", name)
				}
			}
			if code, h := whoami(t, c, d, api); code != 200 || h["user"] != "user_ada" {
				t.Errorf("XHR: %d %v", code, h)
			}

			// The token's minute passes: XHRs ride on the gateway cookie, a
			// page load handshakes with the dev browser from its cookie.
			clk.Advance(2 * time.Minute)
			if code, h := whoami(t, c, d, api); code != 200 || h["user"] != "user_ada" {
				t.Errorf("XHR after the token's minute: %d %v", code, h)
			}
			final, hops = browse(t, c, d.URL+"/settings/", 3)
			if final.StatusCode != 200 || len(hops) != 3 || !strings.Contains(hops[0], "__clerk_db_jwt=") ||
				!strings.Contains(hops[0], "__clerk_hs_reason=session-token-expired") {
				t.Errorf("page load after the token's minute: %d after\n  %s", final.StatusCode, strings.Join(hops, "\n  "))
			}

			// Signed out, the way to sign-in carries the dev browser.
			form(t, c, d.URL+"/.tollgate/sign-out", url.Values{"return": {"/"}})
			resp := get(t, c, d.URL+"/settings/", page)
			final, _ = browse(t, c, resp.Header.Get("Location"), 3)
			if loc := final.Header.Get("Location"); !strings.HasPrefix(final.Request.URL.String(), d.ClerkURL+"/sign-in") ||
				!strings.Contains(final.Request.URL.RawQuery, "__clerk_db_jwt=") {
				t.Errorf("signed out: at %s (%q), want the sign-in page with the dev browser", final.Request.URL, loc)
			}
		})
	}
}

// TestClerk_DevelopmentClockSkew: Clerk retries a development handshake
// token that fails on its time claims with a day of skew (handshake.ts),
// and so does tollgate. A laptop whose clock is a minute behind Clerk's,
// two minutes ahead, or two hours behind signs in, keeps its gateway
// cookie (Clerk's clock compared with Clerk's), and a later page load ends
// signed in too: never the endless app → Frontend API → app → Account
// Portal loop.
func TestClerk_DevelopmentClockSkew(t *testing.T) {
	for _, skew := range []time.Duration{time.Minute, -2 * time.Minute, 2 * time.Hour} {
		t.Run("Clerk "+skew.String()+" off", func(t *testing.T) {
			d, clk := mustRunDemoWith(t, demoOptions{Development: true, ClerkSkew: skew})
			jar, _ := cookiejar.New(nil)
			c := noRedirects(jar)
			final, hops := signInFromPage(t, d, c, "/settings/", "user_ada", 12)
			if final.StatusCode != 200 || final.Request.URL.String() != d.URL+"/settings/" {
				t.Fatalf("back from sign-in: %d at %s after\n  %s", final.StatusCode, final.Request.URL, strings.Join(hops, "\n  "))
			}
			if code, h := whoami(t, c, d, api); code != 200 || h["user"] != "user_ada" {
				t.Errorf("XHR after sign-in: %d %v", code, h)
			}
			clk.Advance(2 * time.Minute)
			if code, h := whoami(t, c, d, api); code != 200 || h["user"] != "user_ada" {
				t.Errorf("XHR after the token's minute: %d %v", code, h)
			}
			final, hops = browse(t, c, d.URL+"/settings/", 8)
			if final.StatusCode != 200 || final.Request.URL.String() != d.URL+"/settings/" {
				t.Errorf("a later page load: %d at %s after\n  %s", final.StatusCode, final.Request.URL, strings.Join(hops, "\n  "))
			}
		})
	}
}

// TestClerk_SignInLoopGuardHoldsAcrossTheAccountPortal: when no handshake
// can ever succeed (here the gateway verifies with another instance's key,
// as with keys of two instances), the browser went app → Frontend API →
// app → Account Portal → app for ever: Clerk's own counter lives two
// seconds and counts handshakes only. tollgate's counter spans the hop:
// the loop ends on a page that says what is wrong, with one link to try
// again.
func TestClerk_SignInLoopGuardHoldsAcrossTheAccountPortal(t *testing.T) {
	for _, dev := range []bool{true, false} {
		t.Run(fmt.Sprintf("development=%v", dev), func(t *testing.T) {
			d, clk := mustRunDemoWith(t, demoOptions{Development: dev})
			other, err := clerksandbox.New(clerksandbox.Options{})
			if err != nil {
				t.Fatal(err)
			}
			wrong := secondGateway(t, d, clk, func(cfg *proxy.Config) { cfg.Clerk.JWTKey = other.PublicKeyPEM() })
			jar, _ := cookiejar.New(nil)
			c := noRedirects(jar)
			final, hops := signInFromPage(t, wrong, c, "/settings/", "user_ada", 30)
			if body := readBody(t, final); final.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Signing in did not complete") ||
				!strings.Contains(body, "Try signing in again") {
				t.Fatalf("a sign-in that cannot succeed: %d at %s after %d redirects", final.StatusCode, final.Request.URL, len(hops))
			}
			if len(hops) >= 20 { // where Chromium gives up with ERR_TOO_MANY_REDIRECTS
				t.Errorf("%d redirects before the loop was stopped:\n  %s", len(hops), strings.Join(hops, "\n  "))
			}
			t.Logf("stopped after %d redirects", len(hops))
			// The link starts afresh: one more round, then the page again.
			final, _ = browse(t, c, wrong.URL+"/settings/", 30)
			if final.StatusCode != http.StatusUnauthorized {
				t.Errorf("trying again: %d at %s", final.StatusCode, final.Request.URL)
			}
		})
	}
}

// TestClerk_FrontendAPIProxy: with clerk.proxy_url (Clerk's proxyUrl), the
// handshake goes through the proxy, which Clerk's Frontend API answers
// with tokens whose issuer is the proxy's URL; those are accepted, as are
// tokens of the instance's own Frontend API, and no other issuer is.
func TestClerk_FrontendAPIProxy(t *testing.T) {
	d, clk := mustRunDemo(t)
	front := httptest.NewUnstartedServer(nil)
	proxyURL, _ := url.Parse("http://" + front.Listener.Addr().String() + "/__clerk")
	clerkURL, _ := url.Parse(d.ClerkURL)
	front.Config.Handler = clerksandbox.FrontendProxy(clerkURL, proxyURL, d.Clerk.SecretKey())
	front.Start()
	t.Cleanup(front.Close)

	// The demo's config, with the proxy instead of the sandbox's address.
	yml := strings.Replace(string(demoConfig), `frontend_api_url: "${DEMO_CLERK_URL}"`, `proxy_url: "${DEMO_CLERK_PROXY_URL}"`, 1)
	srv := httptest.NewUnstartedServer(nil)
	env := map[string]string{"DEMO_CLERK_PROXY_URL": proxyURL.String(), "DEMO_PUBLIC_URL": "http://" + srv.Listener.Addr().String(),
		"DEMO_STORE": filepath.Join(t.TempDir(), "proxy.db"), "DEMO_ADMIN_LISTEN": ""}
	cfg, err := config.Parse("demo.yaml with proxy_url", []byte(yml), func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return d.env[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Clerk.ProxyURL != proxyURL.String() || cfg.Clerk.FrontendAPIURL != "" {
		t.Fatalf("config: proxy_url %q, frontend_api_url %q", cfg.Clerk.ProxyURL, cfg.Clerk.FrontendAPIURL)
	}
	gw, err := newApp(cfg, appDeps{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = gw.Handler
	srv.Start()
	t.Cleanup(func() { srv.Close(); gw.Close() })
	g := &demo{URL: srv.URL, ClerkURL: d.ClerkURL}

	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	back := g.URL + "/settings/"
	resp, err := c.PostForm(d.ClerkURL+"/sign-in", url.Values{"user_id": {"user_ada"}, "redirect_url": {back}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	final, hops := browse(t, c, back, 2)
	if final.StatusCode != 200 || len(hops) != 2 || !strings.HasPrefix(hops[0], "307 "+proxyURL.String()+"/v1/client/handshake?") {
		t.Fatalf("back from sign-in: %d after %v, want the handshake through %s", final.StatusCode, hops, proxyURL)
	}
	if iss := claimOf(t, cookieValue(jar, g.URL, "__session"), "iss"); iss != proxyURL.String() {
		t.Errorf("the token from the proxy has iss %q, want %q", iss, proxyURL)
	}
	if code, h := whoami(t, c, g, api); code != 200 || h["user"] != "user_ada" {
		t.Errorf("the proxy's token: %d %v", code, h)
	}

	now := clk.Now()
	for iss, ok := range map[string]bool{
		d.Clerk.Issuer():               true, // the instance's own Frontend API
		proxyURL.String():              true,
		"https://evil.example/__clerk": false,
		proxyURL.String() + "/x":       false,
		"http://" + proxyURL.Host:      false,
	} {
		tok := d.Clerk.MintSessionToken("user_grace", "sess_other", now, map[string]any{"iss": iss})
		code, h := whoami(t, noRedirects(nil), g, withHeader(api, "Authorization", "Bearer "+tok))
		if (code == 200 && h["user"] == "user_grace") != ok {
			t.Errorf("a token issued by %q: %d, want accepted %v", iss, code, ok)
		}
	}
}

// claimOf reads one string claim of a JWT without verifying it.
func claimOf(t *testing.T, token, name string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	s, _ := claims[name].(string)
	return s
}

// gatewayXHR is an XHR to whoami with exactly the given Cookie header, as
// a plain HTTP client sends it; it returns the status and the renewed
// gateway cookie, if any.
func gatewayXHR(t *testing.T, d *demo, cookie string) (int, string) {
	t.Helper()
	resp := get(t, noRedirects(nil), d.URL+"/api/v1/whoami", withHeader(api, "Cookie", cookie))
	for _, ck := range resp.Cookies() {
		if ck.Name == "__tollgate" {
			return resp.StatusCode, ck.Value
		}
	}
	return resp.StatusCode, ""
}

// TestClerk_BackendAPIBudget: Clerk allows a production instance 1,000
// Backend API requests per 10 s (a development one 100) and answers 429
// with Retry-After beyond that; clerk-sdk-go does not retry. tollgate asks
// once per session however many requests need the answer, holds back for
// Retry-After, serves the last known answer within a bound rather than a
// wave of 503s, stretches the session check interval as the budget fills,
// and counts it all in its metrics.
func TestClerk_BackendAPIBudget(t *testing.T) {
	const sessionsRoute = "GET /v1/sessions/{id}"

	t.Run("one check per session, however many requests need it", func(t *testing.T) {
		d, clk := mustRunDemo(t)
		jar, _ := cookiejar.New(nil)
		signIn(t, d, jar, "user_ada")
		cookie := withoutSession(jar, d.URL)
		clk.Advance(2 * time.Minute) // the gateway cookie is due for a check
		before := d.Clerk.BackendCalls(sessionsRoute)
		arrived, release := d.Clerk.HoldBackendAPI(sessionsRoute)
		defer release()

		const n = 30
		var sent sync.WaitGroup
		sent.Add(n)
		codes := make(chan int, n)
		for range n {
			go func() {
				var once sync.Once
				done := func() { once.Do(sent.Done) }
				defer done()
				req, _ := http.NewRequest("GET", d.URL+"/api/v1/whoami", nil)
				for k, v := range withHeader(api, "Cookie", cookie) {
					req.Header.Set(k, v)
				}
				req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
					WroteRequest: func(httptrace.WroteRequestInfo) { done() }}))
				resp, err := noRedirects(nil).Do(req)
				if err != nil {
					codes <- 0
					return
				}
				resp.Body.Close()
				codes <- resp.StatusCode
			}()
		}
		<-arrived   // the first check is at Clerk, held there
		sent.Wait() // and every request is at the gateway
		release()
		for range n {
			if code := <-codes; code != 200 {
				t.Errorf("an XHR got %d", code)
			}
		}
		if got := d.Clerk.BackendCalls(sessionsRoute) - before; got != 1 {
			t.Errorf("%d concurrent XHRs of one session: %d session checks at Clerk, want 1", n, got)
		}
		m := scrapeMetrics(t, d)
		if v := metricValue(m, `tollgate_session_checks_total{result="clerk"}`); v != "1" {
			t.Errorf("session checks answered by Clerk: %q, want 1", v)
		}
		if v := metricValue(m, `tollgate_clerk_api_calls_total{endpoint="GET /v1/sessions/{id}"}`); v != "1" {
			t.Errorf("Backend API calls of the session endpoint: %q, want 1", v)
		}
	})

	t.Run("a 429 serves the last known answer, within a bound", func(t *testing.T) {
		d, clk := mustRunDemo(t)
		ada, _ := cookiejar.New(nil)
		grace, _ := cookiejar.New(nil)
		signIn(t, d, ada, "user_ada")
		signIn(t, d, grace, "user_grace")
		clk.Advance(90 * time.Second) // both due for a check, checked 90 s ago

		// Someone else spends the instance's budget: Clerk says 429.
		d.Clerk.SetAPIRateLimit(1)
		req, _ := http.NewRequest("GET", d.ClerkURL+"/v1/users/user_ada", nil)
		req.Header.Set("Authorization", "Bearer "+d.Clerk.SecretKey())
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
			t.Fatalf("spending the budget: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		if code, h := whoami(t, noRedirects(ada), d, api); code != 200 || h["user"] != "user_ada" {
			t.Errorf("Ada, Clerk answering 429: %d %v, want her last known answer", code, h)
		}
		if d.Clerk.RateLimited() != 1 {
			t.Fatalf("the sandbox answered %d 429s, want 1", d.Clerk.RateLimited())
		}
		// Retry-After runs: the check interval is stretched to its most,
		// and Grace's check is not even sent.
		before := d.Clerk.BackendCalls(sessionsRoute)
		if code, h := whoami(t, noRedirects(grace), d, api); code != 200 || h["user"] != "user_grace" {
			t.Errorf("Grace, while Retry-After runs: %d %v", code, h)
		}
		if got := d.Clerk.BackendCalls(sessionsRoute) - before; got != 0 {
			t.Errorf("%d session checks sent while Retry-After ran, want 0", got)
		}
		m := scrapeMetrics(t, d)
		if v := metricValue(m, `tollgate_clerk_api_rate_limited_total{endpoint="GET /v1/sessions/{id}"}`); v != "1" {
			t.Errorf("429s counted: %q, want 1", v)
		}
		if v := metricValue(m, `tollgate_session_checks_total{result="stale"}`); v != "1" {
			t.Errorf("last known answers served after a 429: %q, want 1", v)
		}
		if v := metricValue(m, "tollgate_session_refresh_stretch"); v != "5" {
			t.Errorf("refresh stretch while Retry-After runs: %q, want 5", v)
		}

		// Retry-After has passed and Clerk has room: Ada is checked again.
		d.Clerk.SetAPIRateLimit(1000)
		clk.Advance(11 * time.Second)
		before = d.Clerk.BackendCalls(sessionsRoute)
		if code, _ := whoami(t, noRedirects(ada), d, api); code != 200 || d.Clerk.BackendCalls(sessionsRoute) != before+1 {
			t.Errorf("after Retry-After: %d, %d checks", code, d.Clerk.BackendCalls(sessionsRoute)-before)
		}

		// The bound: a session Clerk has not confirmed for longer than
		// five refresh periods is not served on an old answer.
		clk.Advance(6 * time.Minute)
		d.Clerk.SetAPIRateLimit(1)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
			t.Fatalf("spending the budget again: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		if code, _ := whoami(t, noRedirects(grace), d, api); code != http.StatusServiceUnavailable {
			t.Errorf("Grace, unconfirmed for 7.5 minutes, Clerk answering 429: %d, want 503", code)
		}
	})

	t.Run("the check interval stretches as the budget fills", func(t *testing.T) {
		// A development instance: 100 requests per 10 s.
		d, clk := mustRunDemoWith(t, demoOptions{Development: true})
		const n = 70
		var cookies []string
		for i := range n {
			user := []string{"user_ada", "user_grace", "user_linus"}[i%3]
			sid, _ := d.Clerk.SignIn(user)
			uat := fmt.Sprintf("__client_uat=%d", clk.Now().Unix())
			code, gw := gatewayXHR(t, d, "__session="+d.Clerk.MintSessionToken(user, sid, clk.Now(), nil)+"; "+uat)
			if code != 200 || gw == "" {
				t.Fatalf("session %d: %d, gateway cookie %q", i, code, gw)
			}
			cookies = append(cookies, uat+"; __tollgate="+gw)
		}
		clk.Advance(61 * time.Second) // every gateway cookie is due for a check
		before := d.Clerk.BackendCalls(sessionsRoute)
		for i, cookie := range cookies {
			if code, _ := gatewayXHR(t, d, cookie); code != 200 {
				t.Errorf("session %d: %d, want 200", i, code)
			}
		}
		// Half the budget in use, the interval starts to stretch: the
		// sessions checked 61 s ago wait for their (stretched) turn.
		if got := d.Clerk.BackendCalls(sessionsRoute) - before; got > 55 || got < 45 {
			t.Errorf("%d sessions due: %d session checks in 10 s of a 100-request budget, want about half of it", n, got)
		}
		if d.Clerk.RateLimited() != 0 {
			t.Errorf("Clerk answered %d 429s", d.Clerk.RateLimited())
		}
		if v, _ := strconv.ParseFloat(metricValue(scrapeMetrics(t, d), "tollgate_session_refresh_stretch"), 64); v <= 1 || v > 5 {
			t.Errorf("refresh stretch %v, want above 1 and at most 5", v)
		}
	})
}

// TestClerk_ReplayedDevelopmentHandshakeURL: a development handshake
// payload rides in the URL, which history and logs keep, and Clerk accepts
// its token with a day of skew. A replay of that URL after Clerk revoked
// the session must not become a gateway session: the cookie it earns asks
// Clerk on first use.
func TestClerk_ReplayedDevelopmentHandshakeURL(t *testing.T) {
	d, clk := mustRunDemoWith(t, demoOptions{Development: true})
	jar, _ := cookiejar.New(nil)
	_, hops := signInFromPage(t, d, noRedirects(jar), "/settings/", "user_ada", 4)
	var replay string
	for _, h := range hops {
		if _, u, ok := strings.Cut(h, " "); ok && strings.Contains(u, "__clerk_handshake=") {
			replay = u
		}
	}
	if replay == "" {
		t.Fatalf("no handshake URL among the hops:\n  %s", strings.Join(hops, "\n  "))
	}
	// The session, from the token Clerk gave the browser.
	parts := strings.Split(cookieValue(jar, d.URL, "__session"), ".")
	if len(parts) != 3 {
		t.Fatal("no session token after sign-in")
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct{ Sid string }
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Sid == "" {
		t.Fatalf("session token claims: %v %q", err, payload)
	}
	d.Clerk.RevokeSession(claims.Sid)
	clk.Advance(75 * time.Second)

	thief, _ := cookiejar.New(nil)
	tc := noRedirects(thief)
	get(t, tc, replay, page) // the kept URL, in another browser
	if code, h := whoami(t, tc, d, api); code == 200 {
		t.Errorf("a replayed handshake URL after the session was revoked: 200 as %q, want signed out", h["user"])
	}
}

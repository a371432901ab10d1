package main

// Attacks on tollgate's use of Clerk, each performed over real HTTP against
// the real gateway wired by newGateway, with the sandbox standing in for
// Clerk: organisation membership as fresh as the session, amplification of
// handshake nonces into the Backend API, login CSRF through the handshake,
// cookie tossing, and sign-out.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// me reads /.tollgate/api/me with c.
func me(t *testing.T, c *http.Client, d *demo, hdr map[string]string) map[string]any {
	t.Helper()
	resp := get(t, c, d.URL+"/.tollgate/api/me", hdr)
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("api/me: %d %v", resp.StatusCode, err)
	}
	return out
}

// subscribeOrg has the signed-in organisation admin in c subscribe the
// organisation to plan team through the sandbox Checkout.
func subscribeOrg(t *testing.T, d *demo, c *http.Client) {
	t.Helper()
	resp := form(t, c, d.URL+"/.tollgate/checkout", url.Values{"plan": {"team"}, "return": {"/routes/TEAMX/"}})
	payURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(payURL, d.StripeURL+"/checkout/pay/") {
		t.Fatalf("team checkout: %d %q", resp.StatusCode, payURL)
	}
	resp = form(t, c, payURL, cardOf("grace@example.com"))
	if resp = get(t, c, resp.Header.Get("Location"), page); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("team checkout return: %d", resp.StatusCode)
	}
	waitWebhooks(t, d)
}

// membershipEvent is a Clerk organizationMembership.* event for userID in
// org_acme with role, as Clerk's webhooks carry it.
func membershipEvent(typ, userID, role string, at time.Time) string {
	return fmt.Sprintf(`{"type":%q,"object":"event","timestamp":%d,"instance_id":"ins_sandbox","data":{"id":"orgmem_1",
		"object":"organization_membership","role":%q,"organization":{"id":"org_acme","slug":"acme","name":"Acme"},
		"public_user_data":{"user_id":%q,"identifier":"x@example.com"}}}`, typ, at.UnixMilli(), role, userID)
}

// withoutSession is jar's cookie header for the gateway with __session
// left out: what a browser sends once the token cookie is gone (or what an
// XHR relies on after it expired).
func withoutSession(jar http.CookieJar, base string) string {
	u, _ := url.Parse(base)
	var parts []string
	for _, c := range jar.Cookies(u) {
		if c.Name != "__session" {
			parts = append(parts, c.Name+"="+c.Value)
		}
	}
	return strings.Join(parts, "; ")
}

// TestAttack_OrgMembershipIsAsFreshAsTheSession: Grace is removed from her
// organisation. Neither a Clerk token still inside its minute nor the saved
// gateway cookie keeps the organisation's route, /api/me's role, or its
// billing portal open: the signed webhook applies at once, and without it
// the next session check (which names the session's organisation) does.
func TestAttack_OrgMembershipIsAsFreshAsTheSession(t *testing.T) {
	d, clk := mustRunDemo(t)
	grace, _ := cookiejar.New(nil)
	gc := noRedirects(grace)
	signIn(t, d, grace, "user_grace")
	subscribeOrg(t, d, gc)
	linus, _ := cookiejar.New(nil)
	lc := noRedirects(linus)
	signIn(t, d, linus, "user_linus")
	orgRoute := d.URL + "/routes/TEAMX/"

	for who, c := range map[string]*http.Client{"grace": gc, "linus": lc} {
		if code, h := whoami(t, c, d, api); code != 200 || h["org"] != "org_acme" {
			t.Fatalf("%s before: whoami %d %v", who, code, h)
		}
		if resp := get(t, c, orgRoute, api); resp.StatusCode != 200 {
			t.Fatalf("%s before: the organisation's route: %d", who, resp.StatusCode)
		}
	}
	if m := me(t, gc, d, api); m["org_role"] != "org:admin" {
		t.Fatalf("grace before: api/me %v", m)
	}

	// Her role is lowered, then she is removed; Clerk's signed webhooks say
	// so. Her token is still inside its minute.
	d.Clerk.SetMembershipRole("org_acme", "user_grace", "basic_member")
	if resp := postSvix(t, d, clk.Now(), membershipEvent("organizationMembership.updated", "user_grace", "org:basic_member", clk.Now()), ""); resp.StatusCode != 200 {
		t.Fatalf("updated webhook: %d", resp.StatusCode)
	}
	if m := me(t, gc, d, api); m["org_id"] != "org_acme" || m["org_role"] != "org:basic_member" {
		t.Errorf("after the role changed: api/me %v, want org:basic_member", m)
	}
	if resp := form(t, gc, d.URL+"/.tollgate/billing", url.Values{"scope": {"org"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("org portal as a former admin: %d %q, want 403", resp.StatusCode, resp.Header.Get("Location"))
	}
	d.Clerk.RemoveMembership("org_acme", "user_grace")
	if resp := postSvix(t, d, clk.Now(), membershipEvent("organizationMembership.deleted", "user_grace", "org:basic_member", clk.Now()), ""); resp.StatusCode != 200 {
		t.Fatalf("deleted webhook: %d", resp.StatusCode)
	}
	if code, h := whoami(t, gc, d, api); code != 200 || h["org"] != "" {
		t.Errorf("removed, fresh token: whoami %d %v, want no organisation", code, h)
	}
	if m := me(t, gc, d, api); m["org_id"] != nil || m["org_role"] != nil {
		t.Errorf("removed: api/me %v", m)
	}
	if resp := get(t, gc, orgRoute, api); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("removed, fresh token: the organisation's route: %d, want 402", resp.StatusCode)
	}
	if resp := form(t, gc, d.URL+"/.tollgate/billing", url.Values{"scope": {"org"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("removed: org portal: %d %q, want 403", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The saved gateway cookie alone (the token gone) says the same.
	gwOnly := withHeader(api, "Cookie", withoutSession(grace, d.URL))
	if resp := get(t, noRedirects(nil), orgRoute, gwOnly); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("removed, gateway cookie: the organisation's route: %d, want 402", resp.StatusCode)
	}

	// Linus is removed too, but no webhook comes. His token's minute is
	// Clerk's own limit; after it, the session check (one call, which
	// names the session's organisation) takes the organisation away.
	d.Clerk.RemoveMembership("org_acme", "user_linus")
	clk.Advance(2 * time.Minute)
	if code, h := whoami(t, lc, d, api); code != 200 || h["user"] != "user_linus" || h["org"] != "" {
		t.Errorf("removed, after the session check: whoami %d %v, want signed in without an organisation", code, h)
	}
	if resp := get(t, lc, orgRoute, api); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("removed, after the session check: the organisation's route: %d, want 402", resp.StatusCode)
	}
	if m := me(t, lc, d, api); m["org_id"] != nil {
		t.Errorf("removed, after the session check: api/me %v", m)
	}
}

// TestAttack_OrgBillingNeedsAFreshToken: with only the gateway cookie (the
// Clerk token expired), an organisation admin's billing actions wait for a
// fresh Clerk token: a clear page, whose link goes through the handshake.
func TestAttack_OrgBillingNeedsAFreshToken(t *testing.T) {
	d, clk := mustRunDemo(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_grace")
	subscribeOrg(t, d, c)
	if resp := form(t, c, d.URL+"/.tollgate/billing", url.Values{"scope": {"org"}}); resp.StatusCode != http.StatusSeeOther ||
		!strings.HasPrefix(resp.Header.Get("Location"), d.StripeURL+"/portal/") {
		t.Fatalf("org portal with a fresh token: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The token expires; the gateway cookie carries XHRs on.
	clk.Advance(90 * time.Second)
	if code, h := whoami(t, c, d, api); code != 200 || h["org"] != "org_acme" {
		t.Fatalf("gateway cookie: whoami %d %v", code, h)
	}
	resp := form(t, c, d.URL+"/.tollgate/billing", url.Values{"scope": {"org"}})
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `href="/.tollgate/account"`) {
		t.Fatalf("org portal on the gateway cookie: %d %q, want 401 with a way back", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = form(t, c, d.URL+"/.tollgate/checkout", url.Values{"plan": {"team"}, "return": {"/routes/TEAMX/"}})
	body = readBody(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "/.tollgate/subscribe/team?return=%2Froutes%2FTEAMX%2F") {
		t.Fatalf("org checkout on the gateway cookie: %d, want 401 with a way back", resp.StatusCode)
	}
	// A program is told why, in JSON.
	req, _ := http.NewRequest("POST", d.URL+"/.tollgate/billing", strings.NewReader("scope=org"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("org portal, JSON: %v %v", resp, err)
	} else {
		var b struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&b)
		resp.Body.Close()
		if b.Error != "fresh_session_required" {
			t.Errorf("org portal, JSON error %q", b.Error)
		}
	}
	// The way back is a page load: Clerk's handshake, then a fresh token.
	resp = get(t, c, d.URL+"/.tollgate/account", page)
	if loc, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode != http.StatusTemporaryRedirect || loc.Path != "/v1/client/handshake" {
		t.Fatalf("the way back: %d %q, want the handshake", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = get(t, c, resp.Header.Get("Location"), page)
	if resp = get(t, c, resp.Header.Get("Location"), page); resp.StatusCode != 200 {
		t.Fatalf("back from the handshake: %d", resp.StatusCode)
	}
	if resp := form(t, c, d.URL+"/.tollgate/billing", url.Values{"scope": {"org"}}); resp.StatusCode != http.StatusSeeOther ||
		!strings.HasPrefix(resp.Header.Get("Location"), d.StripeURL+"/portal/") {
		t.Fatalf("org portal after the handshake: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (127.0.0.0/8 is all loopback on Linux): another client, as far
// as the gateway can tell.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second,
		Transport:     &http.Transport{DialContext: func(ctx context.Context, n, a string) (net.Conn, error) { return d.DialContext(ctx, n, a) }},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestAttack_HandshakeNonceFloodCostsAHandful: made-up
// __clerk_handshake_nonce values once cost one Backend API call each, with
// the secret key. Counted on the sandbox: 100 from one client cost a
// handful, one refused nonce repeated costs one, many clients together
// stop at the nonces' share of the budget, and the session checks still
// get through.
func TestAttack_HandshakeNonceFloodCostsAHandful(t *testing.T) {
	d, clk := mustRunDemo(t)
	const payload = "GET /v1/clients/handshake_payload"
	jar, _ := cookiejar.New(nil)
	ada := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	if code, _ := whoami(t, ada, d, api); code != 200 {
		t.Fatalf("signed in: %d", code)
	}

	flood := func(c *http.Client, nonce func(i int) string, n int) {
		t.Helper()
		for i := range n {
			hdr := withHeader(page, "Cookie", fmt.Sprintf("__client_uat=%d; __clerk_handshake_nonce=%s", clk.Now().Unix(), nonce(i)))
			if resp := get(t, c, d.URL+"/settings/", hdr); resp.StatusCode == 200 {
				t.Fatalf("a made-up nonce signed someone in")
			}
		}
	}
	random := func(int) string { return rand.Text() }

	flood(noRedirects(nil), random, 100)
	if got := d.Clerk.BackendCalls(payload); got > 6 {
		t.Errorf("100 made-up nonces from one client: %d Backend API calls, want a handful (at most 6)", got)
	}

	// Clerk refused those: the client is refused any exchange for a while.
	clk.Advance(time.Minute)
	before := d.Clerk.BackendCalls(payload)
	flood(noRedirects(nil), random, 5)
	if got := d.Clerk.BackendCalls(payload) - before; got != 0 {
		t.Errorf("a client whose nonces Clerk kept refusing: %d calls, want 0", got)
	}

	before = d.Clerk.BackendCalls(payload)
	flood(clientFrom("127.0.0.200"), func(int) string { return "the-same-stale-nonce" }, 50)
	if got := d.Clerk.BackendCalls(payload) - before; got != 1 {
		t.Errorf("one refused nonce 50 times: %d calls, want 1", got)
	}

	// Forty clients at once stop at the nonces' share of the budget.
	clk.Advance(time.Minute)
	before = d.Clerk.BackendCalls(payload)
	for i := range 40 {
		flood(clientFrom(fmt.Sprintf("127.0.0.%d", i+2)), random, 5)
	}
	if got := d.Clerk.BackendCalls(payload) - before; got > 20 {
		t.Errorf("200 made-up nonces from 40 clients: %d calls, want at most 20", got)
	}

	// They keep flooding. Each address costs at most three refused
	// exchanges before it is refused outright, so the flood dies out and a
	// client that has brought no bad nonce gets its exchange: many
	// addresses cannot keep draining the share others' sign-ins need.
	total := d.Clerk.BackendCalls(payload) - before
	for wave := 0; wave < 10; wave++ {
		clk.Advance(2 * time.Second)
		before = d.Clerk.BackendCalls(payload)
		for i := range 40 {
			flood(clientFrom(fmt.Sprintf("127.0.0.%d", i+2)), random, 5)
		}
		got := d.Clerk.BackendCalls(payload) - before
		total += got
		if got == 0 {
			break
		}
	}
	if total > 3*40 {
		t.Errorf("40 flooding addresses cost %d calls in all, want at most 3 each", total)
	}
	before = d.Clerk.BackendCalls(payload)
	flood(clientFrom("127.0.0.201"), random, 1)
	if got := d.Clerk.BackendCalls(payload) - before; got != 1 {
		t.Errorf("a new client after the flood: %d calls, want its 1", got)
	}

	// The session checks were never in the nonces' budget.
	checks := d.Clerk.BackendCalls("GET /v1/sessions/{id}")
	clk.Advance(2 * time.Minute)
	if code, h := whoami(t, ada, d, api); code != 200 || h["user"] != "user_ada" {
		t.Errorf("after the flood, the gateway session: %d %v", code, h)
	}
	if d.Clerk.BackendCalls("GET /v1/sessions/{id}") != checks+1 {
		t.Errorf("the session check did not reach Clerk")
	}
}

// handshakeAs signs userID in on the sandbox and runs one handshake for
// them against the gateway, returning the payload cookie (the
// __clerk_handshake token, or the __clerk_handshake_nonce) Clerk sent back:
// what an attacker holds for their own account.
func handshakeAs(t *testing.T, d *demo, userID string) *http.Cookie {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	signIn(t, d, jar, userID)
	resp := get(t, noRedirects(nil), d.URL+"/settings/", withHeader(page, "Cookie", withoutSession(jar, d.URL)))
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.Contains(loc, "/v1/client/handshake") {
		t.Fatalf("no handshake: %d %q", resp.StatusCode, loc)
	}
	resp = get(t, noRedirects(nil), loc, withHeader(page, "Cookie", withoutSession(jar, d.ClerkURL)))
	for _, ck := range resp.Cookies() {
		if (ck.Name == "__clerk_handshake" || ck.Name == "__clerk_handshake_nonce") && ck.Value != "" {
			return ck
		}
	}
	t.Fatalf("the sandbox sent no handshake cookie: %v", resp.Header.Values("Set-Cookie"))
	return nil
}

// TestAttack_LoginCSRFThroughTheHandshakeQuery: a production instance's
// Frontend API hands the handshake back as a cookie, never in the URL. So a
// link carrying Grace's own, valid handshake payload (or nonce) in the
// query signs nobody in as Grace, while the cookie form still works.
func TestAttack_LoginCSRFThroughTheHandshakeQuery(t *testing.T) {
	for _, nonce := range []bool{false, true} {
		t.Run(fmt.Sprintf("nonce=%v", nonce), func(t *testing.T) {
			d, _ := mustRunDemoWith(t, demoOptions{NonceHandshake: nonce})
			payload := handshakeAs(t, d, "user_grace")
			exchanges := d.Clerk.BackendCalls("GET /v1/clients/handshake_payload")
			link := d.URL + "/api/v1/whoami?" + url.Values{payload.Name: {payload.Value}}.Encode()

			// A visitor with no session follows the link.
			resp := get(t, noRedirects(nil), link, page)
			if resp.StatusCode == 200 || hasSetCookie(resp, "__session") || hasSetCookie(resp, "__tollgate") {
				t.Fatalf("signed out visitor: %d %v, signed in by a link", resp.StatusCode, resp.Header.Values("Set-Cookie"))
			}
			// Ada, signed in, follows it: she stays Ada.
			jar, _ := cookiejar.New(nil)
			signIn(t, d, jar, "user_ada")
			// Her own sign-in exchanged her own nonce; the link's is not.
			exchanges = d.Clerk.BackendCalls("GET /v1/clients/handshake_payload")
			resp = get(t, noRedirects(jar), link, page)
			var who map[string]any
			json.NewDecoder(resp.Body).Decode(&who)
			if resp.StatusCode != 200 || who["user"] != "user_ada" || hasSetCookie(resp, "__session") {
				t.Errorf("Ada followed the link: %d %v %v", resp.StatusCode, who, resp.Header.Values("Set-Cookie"))
			}
			if got := d.Clerk.BackendCalls("GET /v1/clients/handshake_payload"); got != exchanges {
				t.Errorf("a nonce in the query was exchanged (%d calls)", got-exchanges)
			}

			// The same payload as the cookie Clerk sets does sign in: the
			// handshake itself still works.
			resp = get(t, noRedirects(nil), d.URL+"/api/v1/whoami", withHeader(page, "Cookie", payload.Name+"="+payload.Value))
			who = nil
			json.NewDecoder(resp.Body).Decode(&who)
			if resp.StatusCode != 200 || who["user"] != "user_grace" {
				t.Errorf("the handshake cookie: %d %v", resp.StatusCode, who)
			}
		})
	}
}

// signedInCookies signs userID in on the sandbox and makes one request
// through the gateway, returning the cookies the browser would then hold
// for it, by name.
func signedInCookies(t *testing.T, d *demo, userID string) map[string]string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	signIn(t, d, jar, userID)
	if code, h := whoami(t, noRedirects(jar), d, api); code != 200 || h["user"] != userID {
		t.Fatalf("%s signed in: %d %v", userID, code, h)
	}
	u, _ := url.Parse(d.URL)
	out := map[string]string{}
	for _, c := range jar.Cookies(u) {
		out[c.Name] = c.Value
	}
	if out["__tollgate"] == "" || out["__session"] == "" {
		t.Fatalf("%s: cookies %v", userID, out)
	}
	return out
}

// TestAttack_CookieTossing: a sibling subdomain can plant cookies of any
// name for the whole domain. A request carrying an empty __session, then
// Grace's sealed __tollgate, then Ada's valid __session once ran as Grace.
// No copy of a session cookie masks another now: two of one name is an
// attack, signed out (a page load asks Clerk), and never resolved by order.
func TestAttack_CookieTossing(t *testing.T) {
	d, _ := mustRunDemo(t)
	ada := signedInCookies(t, d, "user_ada")
	grace := signedInCookies(t, d, "user_grace")
	uat := "__client_uat=" + ada["__client_uat"]
	c := noRedirects(nil)

	if code, h := whoami(t, c, d, withHeader(api, "Cookie", "__session="+ada["__session"]+"; "+uat)); code != 200 || h["user"] != "user_ada" {
		t.Fatalf("Ada's own cookies: %d %v", code, h)
	}
	for name, cookie := range map[string]string{
		"empty __session, Grace's __tollgate, Ada's __session": "__session=; __tollgate=" + grace["__tollgate"] + "; __session=" + ada["__session"] + "; " + uat,
		"Grace's __session before Ada's":                       "__session=" + grace["__session"] + "; __session=" + ada["__session"] + "; " + uat,
		"Ada's __session before Grace's":                       "__session=" + ada["__session"] + "; __session=" + grace["__session"] + "; " + uat,
		"two __client_uat":                                     "__session=" + ada["__session"] + "; __client_uat=0; " + uat,
		"Grace's __tollgate before Ada's":                      uat + "; __tollgate=" + grace["__tollgate"] + "; __tollgate=" + ada["__tollgate"],
		"Ada's __tollgate before Grace's":                      uat + "; __tollgate=" + ada["__tollgate"] + "; __tollgate=" + grace["__tollgate"],
		"empty __tollgate before Grace's":                      uat + "; __tollgate=; __tollgate=" + grace["__tollgate"],
	} {
		code, h := whoami(t, c, d, withHeader(api, "Cookie", cookie))
		if code != http.StatusUnauthorized {
			t.Errorf("%s: %d as %q, want 401", name, code, h["user"])
		}
		// A page load goes to Clerk for the truth, signed in as nobody.
		resp := get(t, c, d.URL+"/api/v1/whoami", withHeader(page, "Cookie", cookie))
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusTemporaryRedirect || !strings.Contains(loc, "/v1/client/handshake") && !strings.Contains(loc, "/sign-in") {
			t.Errorf("%s, page load: %d %q", name, resp.StatusCode, loc)
		}
	}
	// A planted loop counter (Clerk's or tollgate's) cannot turn the
	// duplicate into a gateway-cookie pass either: a page load at the loop
	// limit is signed out, not Grace.
	tossed := "__session=; __tollgate=" + grace["__tollgate"] + "; __session=" + ada["__session"] + "; " + uat
	for _, counter := range []string{"__clerk_redirect_count=3", "__tollgate_loop=5"} {
		resp := get(t, c, d.URL+"/api/v1/whoami", withHeader(page, "Cookie", tossed+"; "+counter))
		if b := readBody(t, resp); resp.StatusCode == 200 || strings.Contains(b, "user_grace") {
			t.Errorf("tossed cookies with %s: %d, ran as %q", counter, resp.StatusCode, between(b, `"user":"`, `"`))
		}
	}
	// The gateway cookie stands in only for a missing or expired token of
	// its own session: Grace's cookie next to Ada's valid token is ignored.
	if code, h := whoami(t, c, d, withHeader(api, "Cookie", "__tollgate="+grace["__tollgate"]+"; __session="+ada["__session"]+"; "+uat)); code != 200 || h["user"] != "user_ada" {
		t.Errorf("Grace's __tollgate beside Ada's token: %d %v, want Ada", code, h)
	}
}

// TestAttack_CookieTossingHTTPS: on https the gateway cookie is
// __Host-tollgate (Secure, Path=/, no Domain), which no sibling subdomain
// can set, and the plain __tollgate is not read at all.
func TestAttack_CookieTossingHTTPS(t *testing.T) {
	d, clk := mustRunDemo(t)
	grace := signedInCookies(t, d, "user_grace") // a __tollgate sealed with the same secret, on http

	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := *d.Config
	cfg.PublicURL, _ = url.Parse(srv.URL)
	cfg.Admin.Listen = ""
	cfg.Store.Path = filepath.Join(t.TempDir(), "https.db")
	gw, err := newApp(&cfg, appDeps{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	srv.Config.Handler = gw.Handler
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	tls := &demo{URL: srv.URL}

	sid, cookies := d.Clerk.SignIn("user_ada")
	if sid == "" {
		t.Fatal("sandbox sign-in")
	}
	// The token a handshake would hand this session.
	session := d.Clerk.MintSessionToken("user_ada", sid, clk.Now(), nil)
	var uat string
	for _, ck := range cookies {
		if ck.Name == "__client_uat" {
			uat = "__client_uat=" + ck.Value
		}
	}
	resp := get(t, c, srv.URL+"/api/v1/whoami", withHeader(api, "Cookie", "__session="+session+"; "+uat))
	var host *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "__tollgate" {
			t.Errorf("https gateway set the plain __tollgate")
		}
		if ck.Name == "__Host-tollgate" {
			host = ck
		}
	}
	if resp.StatusCode != 200 || host == nil || !host.Secure || host.Path != "/" || host.Domain != "" || !host.HttpOnly {
		t.Fatalf("https sign-in: %d %+v", resp.StatusCode, host)
	}
	if code, h := whoami(t, c, tls, withHeader(api, "Cookie", uat+"; __Host-tollgate="+host.Value)); code != 200 || h["user"] != "user_ada" {
		t.Errorf("Ada's __Host-tollgate: %d %v", code, h)
	}
	for _, tc := range []struct{ name, cookie, want string }{
		{"a planted __tollgate alone", uat + "; __tollgate=" + grace["__tollgate"], ""},
		{"a planted value under the __Host- name", uat + "; __Host-tollgate=" + grace["__tollgate"], ""},
		{"a planted __tollgate before Ada's __Host-tollgate", uat + "; __tollgate=" + grace["__tollgate"] + "; __Host-tollgate=" + host.Value, "user_ada"},
	} {
		code, h := whoami(t, c, tls, withHeader(api, "Cookie", tc.cookie))
		if tc.want == "" && code != http.StatusUnauthorized || tc.want != "" && (code != 200 || h["user"] != tc.want) {
			t.Errorf("%s: %d %v, want %q", tc.name, code, h, tc.want)
		}
	}
}

// TestAttack_SignOutEndsTheClerkSession: signing out once only cleared
// tollgate's cookie and leaned on a sandbox sign-out page that Clerk's
// Account Portal does not have. Now the POST revokes the Clerk session
// through the Backend API: the token kept from before, the saved gateway
// cookie and the next handshake all find it ended.
func TestAttack_SignOutEndsTheClerkSession(t *testing.T) {
	d, _ := mustRunDemo(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	if code, _ := whoami(t, c, d, api); code != 200 {
		t.Fatalf("signed in: %d", code)
	}
	kept := signedInCookies(t, d, "user_ada") // a second browser of Ada's stays signed in
	before := map[string]string{}
	u, _ := url.Parse(d.URL)
	for _, ck := range jar.Cookies(u) {
		before[ck.Name] = ck.Value
	}
	sid := sessionIDOf(t, before["__session"])

	resp := get(t, c, d.URL+"/.tollgate/sign-out?return=%2Fsettings%2F", page)
	if body := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(body, `action="/.tollgate/sign-out"`) {
		t.Fatalf("sign-out page: %d", resp.StatusCode)
	}
	resp = form(t, c, d.URL+"/.tollgate/sign-out", url.Values{"return": {"/settings/"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != d.URL+"/settings/" {
		t.Fatalf("sign-out: %d %q, want 303 to the app", resp.StatusCode, resp.Header.Get("Location"))
	}
	if d.Clerk.BackendCalls("POST /v1/sessions/{id}/revoke") != 1 {
		t.Errorf("sign-out did not revoke the Clerk session")
	}
	if got := cookieValue(jar, d.URL, "__session") + cookieValue(jar, d.URL, "__tollgate"); got != "" {
		t.Errorf("cookies left after sign-out: %q", got)
	}

	// The token kept from before sign-out, inside its minute: signed out.
	if code, _ := whoami(t, noRedirects(nil), d, withHeader(api, "Cookie", "__session="+before["__session"]+"; __client_uat="+before["__client_uat"])); code != 401 {
		t.Errorf("the kept token: %d, want 401", code)
	}
	// The saved gateway cookie: signed out.
	if code, _ := whoami(t, noRedirects(nil), d, withHeader(api, "Cookie", "__client_uat="+before["__client_uat"]+"; __tollgate="+before["__tollgate"])); code != 401 {
		t.Errorf("the kept gateway cookie: %d, want 401", code)
	}
	// A page load asks Clerk, which says the session has ended: sign-in.
	resp = get(t, c, d.URL+"/settings/", page)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusTemporaryRedirect || !strings.Contains(loc, "/v1/client/handshake") {
		t.Fatalf("page load after sign-out: %d %q", resp.StatusCode, loc)
	}
	resp = get(t, c, get(t, c, resp.Header.Get("Location"), page).Header.Get("Location"), page)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, d.ClerkURL+"/sign-in") {
		t.Errorf("back from the handshake: %d %q, want the sign-in page", resp.StatusCode, loc)
	}
	if s := sessionStatus(t, d, sid); s != "revoked" {
		t.Errorf("Clerk says the session is %q", s)
	}
	// Ada's other browser, another session, is untouched.
	if code, h := whoami(t, noRedirects(nil), d, withHeader(api, "Cookie", "__session="+kept["__session"]+"; __client_uat="+kept["__client_uat"])); code != 200 || h["user"] != "user_ada" {
		t.Errorf("Ada's other session: %d %v", code, h)
	}
	// There is no Account Portal sign-out page to lean on.
	if resp := get(t, noRedirects(nil), d.ClerkURL+"/sign-out?redirect_url="+url.QueryEscape(d.URL+"/"), page); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the sandbox's /sign-out: %d, want 404", resp.StatusCode)
	}
}

// sessionStatus asks the sandbox's Backend API for a session's status.
func sessionStatus(t *testing.T, d *demo, sid string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", d.ClerkURL+"/v1/sessions/"+sid, nil)
	req.Header.Set("Authorization", "Bearer "+d.Clerk.SecretKey())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s struct{ Status string }
	json.NewDecoder(resp.Body).Decode(&s)
	return s.Status
}

// TestAttack_SignOutWithClerkDownSaysSo: when the Backend API cannot end
// the session, the page says the visitor is still signed in, and nothing
// pretends otherwise.
func TestAttack_SignOutWithClerkDownSaysSo(t *testing.T) {
	d, clk := mustRunDemo(t)
	cfg := *d.Config
	cfg.Clerk.APIURL = httptestServer(t, http.StatusServiceUnavailable) + "/v1" // the Backend API is down
	cfg.Clerk.JWTKey = d.Clerk.PublicKeyPEM()                                   // tokens still verify
	cfg.Admin.Listen = ""
	cfg.Store.Path = filepath.Join(t.TempDir(), "down.db")
	cfg.Stripe.SecretKey = ""
	gw, err := newApp(&cfg, appDeps{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler)
	t.Cleanup(func() { srv.Close(); gw.Close() })
	down := &demo{URL: srv.URL}

	ada := signedInCookies(t, d, "user_ada")
	cookie := "__session=" + ada["__session"] + "; __client_uat=" + ada["__client_uat"]
	req, _ := http.NewRequest("POST", srv.URL+"/.tollgate/sign-out", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Cookie", cookie)
	resp, err := noRedirects(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "still signed in") {
		t.Fatalf("sign-out with Clerk down: %d", resp.StatusCode)
	}
	if code, h := whoami(t, noRedirects(nil), down, withHeader(api, "Cookie", cookie)); code != 200 || h["user"] != "user_ada" {
		t.Errorf("after the failed sign-out: %d %v (nothing should have changed)", code, h)
	}
}

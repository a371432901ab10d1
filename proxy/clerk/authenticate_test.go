package clerk

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate/proxy"
)

// ignoreRedirect leaves Location and SetCookies to the tests about them.
var ignoreRedirect = cmpopts.IgnoreFields(proxy.AuthResult{}, "Location", "SetCookies")

func signedIn(source string, uat int64, iat time.Time) proxy.AuthResult {
	return proxy.AuthResult{
		State: proxy.SignedIn, ClientUAT: uat,
		Identity: &proxy.Identity{
			UserID: "user_123", SessionID: "sess_123",
			IssuedAt: iat.UTC(), ExpiresAt: iat.Add(time.Minute).UTC(), Source: source,
		},
	}
}

func signedOut(reason string, uat int64) proxy.AuthResult {
	return proxy.AuthResult{State: proxy.SignedOut, Reason: reason, ClientUAT: uat}
}

func TestAuthenticate_CookieDecisionTable(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	uat := testUAT

	valid := e.token()
	expired := e.expiredToken()
	early := mint(t, e.key, sessionHeader(), sessionClaims(now.Add(10*time.Minute)))                     // nbf ahead
	iatAhead := mint(t, e.key, sessionHeader(), sessionClaims(now.Add(10*time.Minute)).with("nbf", nil)) // only iat ahead
	olderThanUAT := mint(t, e.key, sessionHeader(), sessionClaims(time.Unix(uat-30, 0)))                 // B9, expired too
	freshButOld := mint(t, e.key, sessionHeader(), sessionClaims(now).with("iat", uat-1, "nbf", uat-11)) // B9, not expired
	wrongKey := mint(t, otherKey(), sessionHeader(), sessionClaims(now))                                 // B14
	template := mint(t, e.key, sessionHeader().with("cat", "cl_B7d4PD222AAA"), sessionClaims(now))       // B8
	machine := mint(t, e.key, sessionHeader(), sessionClaims(now).with("sub", "mch_123"))                // B8
	accessToken := mint(t, e.key, sessionHeader().with("typ", "at+jwt"), sessionClaims(now))             // B8
	foreignIss := mint(t, e.key, sessionHeader(), sessionClaims(now).with("iss", "https://clerk.example.com.evil.example"))
	httpIssuer := mint(t, e.key, sessionHeader(), sessionClaims(now).with("iss", "http://"+testHost))     // B14
	foreignAZP := mint(t, e.key, sessionHeader(), sessionClaims(now).with("azp", "https://evil.example")) // B14
	noAZP := mint(t, e.key, sessionHeader(), sessionClaims(now).with("azp", nil))                         // accepted
	noSID := mint(t, e.key, sessionHeader(), sessionClaims(now).with("sid", nil))                         // B14
	noExp := mint(t, e.key, sessionHeader(), sessionClaims(now).with("exp", nil))                         // B14
	orgSubject := mint(t, e.key, sessionHeader(), sessionClaims(now).with("sub", "org_123"))              // B14
	unknownKID := mint(t, e.key, sessionHeader().with("kid", "ins_other"), sessionClaims(now))            // B14
	ignoreCat := mint(t, e.key, sessionHeader().with("cat", catIgnore), sessionClaims(now))               // accepted
	bare := mint(t, e.key, claims{"kid": testKID}, sessionClaims(now))                                    // no typ, no cat: accepted
	pending := mint(t, e.key, sessionHeader(), sessionClaims(now).with("sts", "pending"))                 // signed out
	// HS256 "signed" with the public key as the HMAC secret: the classic
	// algorithm confusion attack.
	hs256 := rawJWT(t, claims{"alg": "HS256", "typ": "JWT", "kid": testKID}, sessionClaims(now), nil)
	mac := hmac.New(sha256.New, []byte(publicPEM(t, e.key)))
	mac.Write([]byte(strings.TrimSuffix(hs256, ".")))
	hs256 += base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	algNone := rawJWT(t, claims{"alg": "none", "typ": "JWT", "kid": testKID}, sessionClaims(now), nil)
	parts := strings.Split(valid, ".")
	forged, _ := json.Marshal(sessionClaims(now).with("sub", "user_admin"))
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]

	sess := func(tok string) string { return cookie("__session", tok) }
	refreshable := func(r proxy.AuthResult) proxy.AuthResult { r.Refreshable = true; return r }
	stale := func(r proxy.AuthResult) proxy.AuthResult { r.StaleSessionID = "sess_123"; return r }
	// refreshable: whether the gateway cookie may stand in should the
	// handshake not be made (the gateway's loop guard).
	handshake := func(reason string) proxy.AuthResult {
		return proxy.AuthResult{State: proxy.Handshake, Reason: reason, ClientUAT: uat, Refreshable: true}
	}

	notRefreshable := func(r proxy.AuthResult) proxy.AuthResult { r.Refreshable = false; return r }
	tests := []struct {
		name string
		req  *http.Request
		want proxy.AuthResult
	}{
		{"valid cookie", xhr("/", sess(valid), uatCookie()), signedIn("cookie", uat, now)},
		{"valid cookie, page", page("/", sess(valid), uatCookie()), signedIn("cookie", uat, now)},
		{"B4 nothing", page("/"), signedOut("session-token-and-uat-missing", 0)},
		{"B4 client_uat 0", page("/", "__client_uat=0"), signedOut("session-token-and-uat-missing", 0)},
		{"B5 session, no client_uat, page", page("/", sess(valid)), proxy.AuthResult{State: proxy.Handshake, Reason: "session-token-but-no-client-uat"}},
		{"B5 session, client_uat 0, xhr", xhr("/", sess(valid), "__client_uat=0"), signedOut("session-token-but-no-client-uat", 0)},
		{"B6 client_uat, no session, page", page("/", uatCookie()), handshake("client-uat-but-no-session-token")},
		{"B6 client_uat, no session, xhr", xhr("/", uatCookie()), refreshable(signedOut("client-uat-but-no-session-token", uat))},
		{"B7 garbage", page("/", sess("garbage"), uatCookie()), signedOut("token-invalid", uat)},
		{"B7 bad base64", page("/", sess("a.b.c"), uatCookie()), signedOut("token-invalid", uat)},
		{"B8 jwt template", page("/", sess(template), uatCookie()), signedOut("token-type-mismatch", uat)},
		{"B8 machine token", page("/", sess(machine), uatCookie()), signedOut("token-type-mismatch", uat)},
		{"B8 oauth access token", page("/", sess(accessToken), uatCookie()), signedOut("token-type-mismatch", uat)},
		{"B9 iat before client_uat, page", page("/", sess(olderThanUAT), uatCookie()), stale(handshake("session-token-iat-before-client-uat"))},
		{"B9 iat before client_uat, xhr", xhr("/", sess(olderThanUAT), uatCookie()), stale(refreshable(signedOut("session-token-iat-before-client-uat", uat)))},
		{"B9 not expired: no stale sid", xhr("/", sess(freshButOld), uatCookie()), refreshable(signedOut("session-token-iat-before-client-uat", uat))},
		{"B11 expired, page", page("/", sess(expired), uatCookie()), stale(handshake("session-token-expired-refresh-non-eligible-no-refresh-cookie"))},
		{"B11 expired, xhr", xhr("/", sess(expired), uatCookie()), stale(refreshable(signedOut("session-token-expired-refresh-non-eligible-no-refresh-cookie", uat)))},
		{"B11 expired, post", request(http.MethodPost, "/", "page", sess(expired), uatCookie()), stale(refreshable(signedOut("session-token-expired-refresh-non-eligible-no-refresh-cookie", uat)))},
		{"B12 not yet valid, page", page("/", sess(early), uatCookie()), stale(handshake("session-token-nbf"))},
		{"B12 not yet valid, xhr", xhr("/", sess(early), uatCookie()), stale(refreshable(signedOut("session-token-nbf", uat)))},
		// Minted ahead of this clock: the gateway cookie of the session it
		// names may stand in, as for an expired token.
		{"B13 issued in the future, xhr", xhr("/", sess(iatAhead), uatCookie()), stale(refreshable(signedOut("session-token-iat-in-the-future", uat)))},
		{"B13 issued in the future, page", page("/", sess(iatAhead), uatCookie()), stale(handshake("session-token-iat-in-the-future"))},
		{"B14 wrong key", page("/", sess(wrongKey), uatCookie()), signedOut("token-invalid-signature", uat)},
		{"B14 tampered payload", page("/", sess(tampered), uatCookie()), signedOut("token-invalid-signature", uat)},
		{"B14 alg none", page("/", sess(algNone), uatCookie()), signedOut("token-invalid-algorithm", uat)},
		{"B14 HS256 keyed with the public key", page("/", sess(hs256), uatCookie()), signedOut("token-invalid-algorithm", uat)},
		{"foreign issuer: another app's cookie, ours absent", page("/", sess(foreignIss), uatCookie()), signedOut("session-token-and-uat-missing", 0)},
		{"B14 issuer not exact", page("/", sess(httpIssuer), uatCookie()), signedOut("token-invalid-issuer", uat)},
		{"B14 foreign azp", page("/", sess(foreignAZP), uatCookie()), signedOut("token-invalid-authorized-parties", uat)},
		{"B14 missing sid", page("/", sess(noSID), uatCookie()), signedOut("token-invalid-sid", uat)},
		{"B14 missing exp", page("/", sess(noExp), uatCookie()), signedOut("token-missing-exp", uat)},
		{"B14 subject not a user", page("/", sess(orgSubject), uatCookie()), signedOut("token-invalid-subject", uat)},
		{"B14 unknown kid", page("/", sess(unknownKID), uatCookie()), signedOut("jwk-kid-mismatch", uat)},
		{"missing azp accepted", xhr("/", sess(noAZP), uatCookie()), signedIn("cookie", uat, now)},
		{"ignore category accepted", xhr("/", sess(ignoreCat), uatCookie()), signedIn("cookie", uat, now)},
		{"no typ, no cat accepted", xhr("/", sess(bare), uatCookie()), signedIn("cookie", uat, now)},
		{"pending session", page("/", sess(pending), uatCookie()), signedOut("session-pending", uat)},
		// Two copies of a session cookie: neither is trusted, nor may the
		// gateway cookie stand in (not refreshable); a page load asks Clerk.
		{"two __session", xhr("/", sess(valid), sess("garbage"), uatCookie()), signedOut("duplicate-session-cookies", uat)},
		{"empty __session before a valid one", xhr("/", "__session=", sess(valid), uatCookie()), signedOut("duplicate-session-cookies", uat)},
		{"valid __session before an empty one", xhr("/", sess(valid), "__session=", uatCookie()), signedOut("duplicate-session-cookies", uat)},
		{"two __client_uat", xhr("/", sess(valid), uatCookie(), cookie("__client_uat", "0")), signedOut("duplicate-session-cookies", uat)},
		{"two suffixed __session", xhr("/", cookie(e.c.names.session, valid), cookie(e.c.names.session, valid), cookie(e.c.names.clientUAT, uat)),
			signedOut("duplicate-session-cookies", uat)},
		{"two __session, page", page("/", sess(valid), sess(valid), uatCookie()), notRefreshable(handshake("duplicate-session-cookies"))},
		{"names and values trimmed", xhr("/", " __session = "+valid+" ", uatCookie()), signedIn("cookie", uat, now)},
		{"quoted cookie value", xhr("/", `__session="`+valid+`"`, uatCookie()), signedIn("cookie", uat, now)},
		{"client_uat read like parseInt", xhr("/", sess(valid), cookie("__client_uat", "12abc")), signedIn("cookie", 12, now)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.c.Authenticate(t.Context(), tt.req)
			if diff := cmp.Diff(got, tt.want, ignoreRedirect); diff != "" {
				t.Errorf("Authenticate (-got +want):\n%s", diff)
			}
			if (got.State == proxy.Handshake) != (got.Location != "") {
				t.Errorf("State %v with Location %q", got.State, got.Location)
			}
		})
	}
}

func TestAuthenticate_Bearer(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	valid := e.token()
	bearer := func(r *http.Request, v string) *http.Request { r.Header.Set("Authorization", v); return r }
	otherUser := e.token("sub", "user_other", "sid", "sess_other")
	foreign := mint(t, e.key, sessionHeader(), sessionClaims(now).with("iss", "https://clerk.other.example"))
	algNone := rawJWT(t, claims{"alg": "none", "kid": testKID}, sessionClaims(now), nil)

	tests := []struct {
		name string
		req  *http.Request
		want proxy.AuthResult
	}{
		{"valid", bearer(request(http.MethodPost, "/api", "api"), "Bearer "+valid), signedIn("bearer", 0, now)},
		{"scheme is case-insensitive", bearer(request(http.MethodGet, "/api", "api"), "bearer "+valid), signedIn("bearer", 0, now)},
		{"header wins over cookies", bearer(xhr("/api", cookie("__session", otherUser), uatCookie()), "Bearer "+valid), signedIn("bearer", 0, now)},
		{"expired on a page load: no handshake", bearer(page("/", uatCookie()), "Bearer "+e.expiredToken()), signedOut("token-expired", 0)},
		{"wrong key", bearer(request(http.MethodGet, "/api", "api"), "Bearer "+mint(t, otherKey(), sessionHeader(), sessionClaims(now))), signedOut("token-invalid-signature", 0)},
		{"alg none", bearer(request(http.MethodGet, "/api", "api"), "Bearer "+algNone), signedOut("token-invalid-algorithm", 0)},
		{"machine token", bearer(request(http.MethodGet, "/api", "api"), "Bearer "+e.token("sub", "mch_1")), signedOut("token-type-mismatch", 0)},
		{"pending", bearer(request(http.MethodGet, "/api", "api"), "Bearer "+e.token("sts", "pending")), signedOut("session-pending", 0)},
		{"basic auth: cookie path", bearer(xhr("/", cookie("__session", valid), uatCookie()), "Basic dXNlcjpwYXNz"), signedIn("cookie", testUAT, now)},
		{"opaque bearer: cookie path", bearer(xhr("/", cookie("__session", valid), uatCookie()), "Bearer sk_app_key"), signedIn("cookie", testUAT, now)},
		{"another issuer's JWT: cookie path", bearer(xhr("/", cookie("__session", valid), uatCookie()), "Bearer "+foreign), signedIn("cookie", testUAT, now)},
		{"another issuer's JWT, no cookies", bearer(request(http.MethodGet, "/api", "api"), "Bearer "+foreign), signedOut("session-token-and-uat-missing", 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.c.Authenticate(t.Context(), tt.req)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Authenticate (-got +want):\n%s", diff)
			}
		})
	}
}

func TestAuthenticate_OrganizationClaims(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name               string
		kv                 []any
		wantID, slug, role string
	}{
		{"v2 o claim", []any{"o", map[string]any{"id": "org_1", "slg": "acme", "rol": "admin", "per": "read,manage", "fpm": "3"}}, "org_1", "acme", "org:admin"},
		{"v1 org claims", []any{"v", nil, "org_id", "org_2", "org_slug", "beta", "org_role", "org:basic_member"}, "org_2", "beta", "org:basic_member"},
		{"v1 role without prefix", []any{"v", nil, "org_id", "org_3", "org_role", "member"}, "org_3", "", "org:member"},
		{"v2 o without v claim", []any{"v", nil, "o", map[string]any{"id": "org_4", "slg": "d", "rol": "admin"}}, "org_4", "d", "org:admin"},
		{"v2 without an active org", nil, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := xhr("/", cookie("__session", e.token(tt.kv...)), uatCookie())
			got := e.c.Authenticate(t.Context(), r)
			if got.State != proxy.SignedIn {
				t.Fatalf("State = %v (%s), want signed in", got.State, got.Reason)
			}
			id := got.Identity
			if id.OrgID != tt.wantID || id.OrgSlug != tt.slug || id.OrgRole != tt.role {
				t.Errorf("org = %q %q %q, want %q %q %q", id.OrgID, id.OrgSlug, id.OrgRole, tt.wantID, tt.slug, tt.role)
			}
			if tt.role == "org:admin" && !id.IsOrgAdmin() {
				t.Error("IsOrgAdmin() = false")
			}
		})
	}
}

func TestAuthenticate_HandshakeRedirect(t *testing.T) {
	e := newEnv(t)
	expired := e.expiredToken()
	r := page("/hello/w%C3%B6rld?foo=bar&__clerk_db_jwt=dvb_x&__dev_session=old&__clerk_handshake=stale&baz=1",
		cookie("__session", expired), uatCookie())
	r.Host = "evil.example" // never used for redirect URLs
	r.Header.Set("X-Forwarded-Host", "evil.example")
	got := e.c.Authenticate(t.Context(), r)
	if got.State != proxy.Handshake {
		t.Fatalf("State = %v (%s), want handshake", got.State, got.Reason)
	}
	u, err := url.Parse(got.Location)
	if err != nil {
		t.Fatal(err)
	}
	if base := u.Scheme + "://" + u.Host + u.Path; base != "https://clerk.example.com/v1/client/handshake" {
		t.Errorf("handshake endpoint = %s", base)
	}
	want := url.Values{
		"redirect_url":        {"https://app.example.com/hello/w%C3%B6rld?foo=bar&baz=1"},
		"__clerk_api_version": {"2026-05-12"}, // SUPPORTED_BAPI_VERSION, clerk/javascript packages/backend/src/constants.ts at e21ae9a4cf
		"suffixed_cookies":    {"false"},
		"__clerk_hs_reason":   {"session-token-expired-refresh-non-eligible-no-refresh-cookie"},
		"format":              {"nonce"},
		"__session":           {expired}, // for Clerk's origin outage mode
	}
	if diff := cmp.Diff(u.Query(), want); diff != "" {
		t.Errorf("handshake query (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(got.SetCookies, []string{"__clerk_redirect_count=1; Path=/; SameSite=Lax; HttpOnly; Max-Age=2"}); diff != "" {
		t.Errorf("SetCookies (-got +want):\n%s", diff)
	}
}

func TestAuthenticate_FrontendAPIOverride(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.FrontendAPIURL = "http://127.0.0.1:4010/" })
	got := e.c.Authenticate(t.Context(), page("/x", uatCookie()))
	if !strings.HasPrefix(got.Location, "http://127.0.0.1:4010/v1/client/handshake?redirect_url=https%3A%2F%2Fapp.example.com%2Fx&") {
		t.Errorf("Location = %s", got.Location)
	}
	// The issuer stays the one in the publishable key.
	if got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", e.token()), uatCookie())); got.State != proxy.SignedIn {
		t.Errorf("State = %v (%s), want signed in", got.State, got.Reason)
	}
}

func TestAuthenticate_RedirectLoopGuard(t *testing.T) {
	e := newEnv(t)
	expired := cookie("__session", e.expiredToken())

	got := e.c.Authenticate(t.Context(), page("/", expired, uatCookie(), "__clerk_redirect_count=2"))
	if got.State != proxy.Handshake {
		t.Fatalf("after 2 redirects: State = %v, want handshake", got.State)
	}
	if diff := cmp.Diff(got.SetCookies, []string{"__clerk_redirect_count=3; Path=/; SameSite=Lax; HttpOnly; Max-Age=2"}); diff != "" {
		t.Errorf("SetCookies (-got +want):\n%s", diff)
	}

	got = e.c.Authenticate(t.Context(), page("/", expired, uatCookie(), "__clerk_redirect_count=3"))
	want := proxy.AuthResult{
		State: proxy.SignedOut, ClientUAT: testUAT, Refreshable: true, StaleSessionID: "sess_123",
		Reason: "handshake-redirect-loop (session-token-expired-refresh-non-eligible-no-refresh-cookie)",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("after 3 redirects (-got +want):\n%s", diff)
	}
	if !strings.Contains(e.logs.String(), "redirect loop") {
		t.Error("the loop was not logged")
	}
}

func TestEligibleForHandshake(t *testing.T) {
	tests := []struct {
		method, dest, accept string
		want                 bool
	}{
		{"GET", "document", "", true},
		{"GET", "iframe", "*/*", true},
		{"GET", "", "text/html,application/xhtml+xml", true},
		{"GET", "", "application/xhtml+xml,text/html;q=0.9", true},
		{"GET", "", "application/json", false},
		{"GET", "", "", false},
		{"GET", "empty", "text/html", false},
		{"GET", "image", "*/*", false},
		{"POST", "document", "text/html", false},
		{"HEAD", "document", "text/html", false},
	}
	for _, tt := range tests {
		r := request(tt.method, "/", "api")
		if tt.dest != "" {
			r.Header.Set("Sec-Fetch-Dest", tt.dest)
		}
		if tt.accept != "" {
			r.Header.Set("Accept", tt.accept)
		}
		if got := eligibleForHandshake(r); got != tt.want {
			t.Errorf("%s dest=%q accept=%q: eligible = %v, want %v", tt.method, tt.dest, tt.accept, got, tt.want)
		}
	}
}

func TestAuthenticate_DevelopmentInstance(t *testing.T) {
	e := newEnv(t, development)
	t.Run("B2 dev browser sync", func(t *testing.T) {
		got := e.c.Authenticate(t.Context(), page("/p?__clerk_db_jwt=dvb_123&a=1"))
		if got.State != proxy.Handshake || got.Reason != "dev-browser-sync" || got.DevBrowserToken != "dvb_123" {
			t.Fatalf("got %v %q db=%q, want handshake dev-browser-sync dvb_123", got.State, got.Reason, got.DevBrowserToken)
		}
		u, _ := url.Parse(got.Location)
		q := u.Query()
		if q.Get("__clerk_db_jwt") != "dvb_123" || q.Get("redirect_url") != "https://app.example.com/p?a=1" {
			t.Errorf("Location = %s", got.Location)
		}
	})
	t.Run("B2 on fetch: signed out", func(t *testing.T) {
		got := e.c.Authenticate(t.Context(), xhr("/p?__clerk_db_jwt=dvb_123"))
		if got.State != proxy.SignedOut || got.Reason != "dev-browser-sync" {
			t.Errorf("got %v %q", got.State, got.Reason)
		}
	})
	t.Run("dev browser cookie goes to the handshake", func(t *testing.T) {
		got := e.c.Authenticate(t.Context(), page("/", uatCookie(), "__clerk_db_jwt=dvb_cookie"))
		if got.DevBrowserToken != "dvb_cookie" {
			t.Errorf("DevBrowserToken = %q", got.DevBrowserToken)
		}
		u, _ := url.Parse(got.Location)
		if u.Query().Get("__clerk_db_jwt") != "dvb_cookie" {
			t.Errorf("Location = %s", got.Location)
		}
	})
	t.Run("signed in", func(t *testing.T) {
		got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", e.token()), uatCookie(), "__clerk_db_jwt=dvb_cookie"))
		if got.State != proxy.SignedIn || got.DevBrowserToken != "dvb_cookie" {
			t.Errorf("got %v (%s) db=%q", got.State, got.Reason, got.DevBrowserToken)
		}
	})
	t.Run("production ignores dev browser", func(t *testing.T) {
		p := newEnv(t)
		got := p.c.Authenticate(t.Context(), page("/?__clerk_db_jwt=dvb_123", "__clerk_db_jwt=dvb_cookie"))
		if got.State != proxy.SignedOut || got.DevBrowserToken != "" {
			t.Errorf("got %v (%s) db=%q", got.State, got.Reason, got.DevBrowserToken)
		}
	})
}

func TestAuthenticate_SuffixedCookies(t *testing.T) {
	e := newEnv(t)
	sfx := e.c.pk.CookieSuffix
	valid := e.token()
	otherApp := mint(t, otherKey(), sessionHeader(), sessionClaims(e.clock.Now()).with("iss", "https://clerk.other.example"))

	t.Run("suffixed session", func(t *testing.T) {
		got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session_"+sfx, valid), cookie("__client_uat_"+sfx, testUAT)))
		if diff := cmp.Diff(got, signedIn("cookie", testUAT, e.clock.Now())); diff != "" {
			t.Errorf("(-got +want):\n%s", diff)
		}
	})
	t.Run("another app's un-suffixed session", func(t *testing.T) {
		got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", otherApp), "__client_uat=99",
			cookie("__session_"+sfx, valid), cookie("__client_uat_"+sfx, testUAT)))
		if diff := cmp.Diff(got, signedIn("cookie", testUAT, e.clock.Now())); diff != "" {
			t.Errorf("(-got +want):\n%s", diff)
		}
	})
	t.Run("handshake says suffixed", func(t *testing.T) {
		got := e.c.Authenticate(t.Context(), page("/", cookie("__client_uat_"+sfx, testUAT)))
		u, _ := url.Parse(got.Location)
		if got.State != proxy.Handshake || u.Query().Get("suffixed_cookies") != "true" {
			t.Errorf("got %v, Location %s", got.State, got.Location)
		}
	})
}

func TestUsesSuffixedCookies(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	newer := e.token()
	older := mint(t, e.key, sessionHeader(), sessionClaims(now.Add(-30*time.Second)))
	expired := e.expiredToken()
	noIss := mint(t, e.key, sessionHeader(), sessionClaims(now).with("iss", nil))
	foreign := mint(t, e.key, sessionHeader(), sessionClaims(now).with("iss", "https://clerk.other.example"))

	tests := []struct {
		name                         string
		session, sSession, uat, sUAT string
		dev                          bool
		want                         bool
	}{
		{"1 un-suffixed session undecodable", "garbage", newer, "1", "1", false, false},
		{"1 un-suffixed session without iss", noIss, newer, "1", "1", false, false},
		{"2 un-suffixed session of another instance", foreign, "", "1", "", false, true},
		{"3 no suffixed cookies", newer, "", "1", "", false, false},
		{"4 both signed in, un-suffixed newer", newer, older, "1", "1", false, false},
		{"4' both signed in, suffixed newer", older, newer, "1", "1", false, true},
		{"5 suffixed signed out, un-suffixed in", newer, newer, "1", "0", false, false},
		{"6 dev, suffixed expired, un-suffixed out", "", expired, "0", "1", true, false},
		{"6' production keeps suffixed", "", expired, "0", "1", false, true},
		{"6'' dev, suffixed fresh", "", newer, "0", "1", true, true},
		{"7 suffixed session without suffixed uat", "", newer, "1", "", false, false},
		{"8 suffixed uat only", "", "", "", "1", false, true},
		{"8 both suffixed", "", newer, "", "1", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.c
			if tt.dev {
				c = newEnv(t, development).c
			}
			rc := requestCookies{ckSession: tt.session, ckSessionSuffixed: tt.sSession, ckUAT: tt.uat, ckUATSuffixed: tt.sUAT}
			var plain, sfx tokenView
			if got := c.usesSuffixed(&rc, &plain, &sfx, now); got != tt.want {
				t.Errorf("usesSuffixed = %v, want %v", got, tt.want)
			}
		})
	}
}

// Copies of a cookie split over two Cookie header lines (as HTTP/2 sends
// them) are copies all the same; two handshake cookies of one name are
// neither of them Clerk's answer.
func TestAuthenticate_DuplicatesAcrossLinesAndHandshakeCookies(t *testing.T) {
	e := newEnv(t)
	valid := e.token()
	r := xhr("/", cookie("__session", valid), uatCookie())
	r.Header.Add("Cookie", "__session=")
	if got := e.c.Authenticate(t.Context(), r); got.State != proxy.SignedOut || got.Reason != "duplicate-session-cookies" || got.Refreshable {
		t.Errorf("two lines: %v %q refreshable=%v", got.State, got.Reason, got.Refreshable)
	}

	now := e.clock.Now()
	mine := handshakeToken(t, e.key, signedInDirectives(valid, now.Unix())...)
	theirs := handshakeToken(t, e.key, signedInDirectives(e.token("sub", "user_evil"), now.Unix())...)
	got := e.c.Authenticate(t.Context(), page("/", cookie("__clerk_handshake", theirs), cookie("__clerk_handshake", mine), uatCookie()))
	if got.State != proxy.Handshake || got.Identity != nil {
		t.Errorf("two handshake cookies on a page load: %v %+v, want a new handshake", got.State, got.Identity)
	}
}

// With a Frontend API proxy (Clerk's proxyUrl), handshakes go through it
// and tokens it issued are accepted, as are the instance's own; any other
// issuer, a look-alike of the proxy's included, is refused.
func TestAuthenticate_FrontendAPIProxy(t *testing.T) {
	const proxyURL = "https://app.example.com/__clerk"
	e := newEnv(t, func(cfg *Config) { cfg.ProxyURL = proxyURL + "/" })
	for iss, ok := range map[string]bool{
		proxyURL:                           true,
		testIssuer:                         true,
		proxyURL + "/x":                    false,
		"https://evil.example/__clerk":     false,
		"https://app.example.com":          false,
		"http://app.example.com/__clerk":   false,
		"https://app.example.com/__clerk/": false,
	} {
		tok := e.token("iss", iss)
		for kind, r := range map[string]*http.Request{
			"cookie": xhr("/", cookie("__session", tok), uatCookie()),
			"bearer": func() *http.Request { r := xhr("/"); r.Header.Set("Authorization", "Bearer "+tok); return r }(),
		} {
			got := e.c.Authenticate(t.Context(), r)
			if (got.State == proxy.SignedIn) != ok {
				t.Errorf("iss %q as %s: %v (%s), want signed in %v", iss, kind, got.State, got.Reason, ok)
			}
		}
	}
	got := e.c.Authenticate(t.Context(), page("/dash", uatCookie()))
	if got.State != proxy.Handshake || !strings.HasPrefix(got.Location, proxyURL+"/v1/client/handshake?") {
		t.Errorf("handshake through the proxy: %v %q", got.State, got.Location)
	}
}

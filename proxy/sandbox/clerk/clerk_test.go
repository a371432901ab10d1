package clerksandbox

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	"github.com/clerk/clerk-sdk-go/v2/jwt"
	"github.com/clerk/clerk-sdk-go/v2/organization"
	"github.com/clerk/clerk-sdk-go/v2/session"
	"github.com/clerk/clerk-sdk-go/v2/user"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
	"github.com/google/go-cmp/cmp"
)

// testClock is a settable clock; it serves as Options.Now and as
// clerk-sdk-go's clerk.Clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	c   *Clerk
	clk *testClock
	srv *httptest.Server
	cfg *clerk.ClientConfig
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	clk := newTestClock()
	opts.Now = clk.Now
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	c.SetBaseURL(srv.URL)
	return &fixture{c: c, clk: clk, srv: srv, cfg: sdkConfig(srv, c.SecretKey())}
}

func sdkConfig(srv *httptest.Server, key string) *clerk.ClientConfig {
	return &clerk.ClientConfig{BackendConfig: clerk.BackendConfig{
		URL: clerk.String(srv.URL + "/v1"), Key: clerk.String(key), HTTPClient: srv.Client(),
	}}
}

// noRedirect is a client that returns redirects instead of following them.
func noRedirect(srv *httptest.Server) *http.Client {
	cl := *srv.Client()
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cl
}

func (f *fixture) get(t *testing.T, path string, cookies ...*http.Cookie) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	return f.do(t, req)
}

func (f *fixture) do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	res, err := noRedirect(f.srv).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

// jwk fetches the signing key through clerk-sdk-go's JWKS client.
func (f *fixture) jwk(t *testing.T) *clerk.JSONWebKey {
	t.Helper()
	set, err := jwks.NewClient(f.cfg).Get(t.Context(), &jwks.GetParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("jwks has %d keys, want 1", len(set.Keys))
	}
	return set.Keys[0]
}

func (f *fixture) verify(t *testing.T, token string) *clerk.SessionClaims {
	t.Helper()
	claims, err := jwt.Verify(t.Context(), &jwt.VerifyParams{Token: token, JWK: f.jwk(t), Clock: f.clk})
	if err != nil {
		t.Fatalf("jwt.Verify: %v", err)
	}
	return claims
}

func cookieNamed(cookies []*http.Cookie, name string) *http.Cookie {
	for _, ck := range cookies {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}

func mustCookie(t *testing.T, cookies []*http.Cookie, name string) *http.Cookie {
	t.Helper()
	ck := cookieNamed(cookies, name)
	if ck == nil {
		t.Fatalf("no %s cookie among %v", name, cookies)
	}
	return ck
}

func apiError(t *testing.T, err error) *clerk.APIErrorResponse {
	t.Helper()
	var apiErr *clerk.APIErrorResponse
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v (%T), want *clerk.APIErrorResponse", err, err)
	}
	if len(apiErr.Errors) == 0 {
		t.Fatalf("API error without errors: %v", apiErr)
	}
	return apiErr
}

// Ensure the Backend API's users, sessions, organisations and JWKS decode
// with clerk-sdk-go's own clients.
func TestBackendAPIWithSDK(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := t.Context()

	t.Run("User", func(t *testing.T) {
		u, err := user.NewClient(f.cfg).Get(ctx, "user_grace")
		if err != nil {
			t.Fatal(err)
		}
		if u.Object != "user" || u.ID != "user_grace" || *u.FirstName != "Grace" || *u.LastName != "Hopper" {
			t.Errorf("user = %s %s %s %s", u.Object, u.ID, *u.FirstName, *u.LastName)
		}
		if u.PrimaryEmailAddressID == nil || len(u.EmailAddresses) != 1 {
			t.Fatalf("primary email %v, addresses %d", u.PrimaryEmailAddressID, len(u.EmailAddresses))
		}
		e := u.EmailAddresses[0]
		if e.ID != *u.PrimaryEmailAddressID || e.EmailAddress != "grace@example.com" || e.Object != "email_address" ||
			e.Verification == nil || e.Verification.Status != "verified" {
			t.Errorf("email = %+v", e)
		}
		if string(u.PublicMetadata) != "{}" || u.CreatedAt != f.clk.Now().UnixMilli() || u.LastSignInAt != nil {
			t.Errorf("metadata %s, created_at %d, last_sign_in_at %v", u.PublicMetadata, u.CreatedAt, u.LastSignInAt)
		}

		f.c.SignIn("user_grace")
		u, err = user.NewClient(f.cfg).Get(ctx, "user_grace")
		if err != nil {
			t.Fatal(err)
		}
		if u.LastSignInAt == nil || *u.LastSignInAt != f.clk.Now().UnixMilli() {
			t.Errorf("after sign-in last_sign_in_at = %v", u.LastSignInAt)
		}
	})

	t.Run("UserNotFound", func(t *testing.T) {
		_, err := user.NewClient(f.cfg).Get(ctx, "user_nobody")
		apiErr := apiError(t, err)
		if apiErr.HTTPStatusCode != http.StatusNotFound || apiErr.Errors[0].Code != "resource_not_found" {
			t.Errorf("got %d %s", apiErr.HTTPStatusCode, apiErr.Errors[0].Code)
		}
	})

	t.Run("Session", func(t *testing.T) {
		created := f.clk.Now()
		sid, _ := f.c.SignIn("user_grace")
		f.clk.Advance(time.Minute)
		s, err := session.NewClient(f.cfg).Get(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		want := clerk.Session{
			Object: "session", ID: sid, ClientID: s.ClientID, UserID: "user_grace", Status: "active",
			LastActiveOrganizationID: "org_acme",
			LastActiveAt:             created.UnixMilli(),
			ExpireAt:                 created.Add(7 * 24 * time.Hour).UnixMilli(),
			AbandonAt:                created.Add(30 * 24 * time.Hour).UnixMilli(),
			CreatedAt:                created.UnixMilli(),
			UpdatedAt:                created.UnixMilli(),
		}
		if diff := cmp.Diff(want, *s, cmp.FilterPath(func(p cmp.Path) bool {
			return p.String() == "APIResource" || p.String() == "Actor"
		}, cmp.Ignore())); diff != "" {
			t.Errorf("session (-want +got):\n%s", diff)
		}
		if !strings.HasPrefix(s.ClientID, "client_") || !strings.HasPrefix(sid, "sess_") {
			t.Errorf("ids %q %q", s.ClientID, sid)
		}

		f.c.RevokeSession(sid)
		s, err = session.NewClient(f.cfg).Get(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		if s.Status != "revoked" {
			t.Errorf("after RevokeSession status = %q, want revoked", s.Status)
		}
		if _, err := session.NewClient(f.cfg).Get(ctx, "sess_nope"); apiError(t, err).HTTPStatusCode != 404 {
			t.Errorf("unknown session: %v", err)
		}
	})

	t.Run("Organization", func(t *testing.T) {
		for _, id := range []string{"org_acme", "acme"} {
			o, err := organization.NewClient(f.cfg).Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if o.Object != "organization" || o.ID != "org_acme" || o.Slug != "acme" || o.Name != "Acme Inc." ||
				o.MembersCount == nil || *o.MembersCount != 2 || o.CreatedBy != "user_grace" {
				t.Errorf("Get(%q) = %+v", id, o)
			}
		}
	})

	t.Run("JWKS", func(t *testing.T) {
		k := f.jwk(t)
		pub, ok := k.Key.(*rsa.PublicKey)
		if !ok {
			t.Fatalf("key is %T, want *rsa.PublicKey", k.Key)
		}
		if k.KeyID != "ins_sandbox" || k.Algorithm != "RS256" || k.Use != "sig" || pub.N.BitLen() != 2048 {
			t.Errorf("jwk = %s %s %s %d bits", k.KeyID, k.Algorithm, k.Use, pub.N.BitLen())
		}
		fromPEM, err := clerk.JSONWebKeyFromPEM(f.c.PublicKeyPEM())
		if err != nil {
			t.Fatal(err)
		}
		if !pub.Equal(fromPEM.Key) {
			t.Error("PublicKeyPEM is not the JWKS key")
		}
		// The Frontend API's public JWKS needs no secret.
		res := f.get(t, "/.well-known/jwks.json")
		var set struct{ Keys []map[string]any }
		if err := json.NewDecoder(res.Body).Decode(&set); err != nil || res.StatusCode != 200 || len(set.Keys) != 1 {
			t.Errorf("public jwks: %d %v %v", res.StatusCode, set, err)
		}
	})

	t.Run("WrongSecret", func(t *testing.T) {
		_, err := user.NewClient(sdkConfig(f.srv, "sk_live_wrong")).Get(ctx, "user_ada")
		apiErr := apiError(t, err)
		if apiErr.HTTPStatusCode != http.StatusUnauthorized || apiErr.Errors[0].Code != "authentication_invalid" {
			t.Errorf("got %d %+v", apiErr.HTTPStatusCode, apiErr.Errors)
		}
		for _, path := range []string{"/v1/jwks", "/v1/users/user_ada", "/v1/clients/handshake_payload?nonce=x", "/v1/nothing"} {
			res := f.get(t, path)
			var body struct {
				Errors []struct{ Message, LongMessage, Code string } `json:"errors"`
			}
			_ = json.NewDecoder(res.Body).Decode(&body)
			if res.StatusCode != 401 || len(body.Errors) != 1 || body.Errors[0].Code != "authentication_invalid" {
				t.Errorf("GET %s without a key: %d %+v", path, res.StatusCode, body)
			}
		}
	})
}

// Ensure minted session tokens are real-shaped Clerk v2 tokens that
// clerk-sdk-go verifies, with the right issuer, subject, session and
// organisation claims.
func TestSessionToken(t *testing.T) {
	f := newFixture(t, Options{})
	iat := f.clk.Now()

	tok := f.c.MintSessionToken("user_grace", "sess_1", iat, map[string]any{"azp": "http://127.0.0.1:8080"})
	claims := f.verify(t, tok)
	if claims.Issuer != "https://clerk.tollgate.test" || claims.Issuer != f.c.Issuer() || claims.Subject != "user_grace" ||
		claims.SessionID != "sess_1" || claims.AuthorizedParty != "http://127.0.0.1:8080" || claims.Version != 2 {
		t.Errorf("claims = %+v", claims)
	}
	if *claims.IssuedAt != iat.Unix() || *claims.NotBefore != iat.Unix()-10 || *claims.Expiry != iat.Unix()+60 || claims.ID == "" {
		t.Errorf("iat %d nbf %d exp %d jti %q", *claims.IssuedAt, *claims.NotBefore, *claims.Expiry, claims.ID)
	}
	if claims.ActiveOrganizationID != "org_acme" || claims.ActiveOrganizationSlug != "acme" || claims.ActiveOrganizationRole != "org:admin" {
		t.Errorf("org claims = %q %q %q", claims.ActiveOrganizationID, claims.ActiveOrganizationSlug, claims.ActiveOrganizationRole)
	}

	parsed, err := josejwt.ParseSigned(tok)
	if err != nil {
		t.Fatal(err)
	}
	h := parsed.Headers[0]
	if h.KeyID != "ins_sandbox" || h.Algorithm != "RS256" || h.ExtraHeaders["typ"] != "JWT" {
		t.Errorf("header = kid %q alg %q typ %v", h.KeyID, h.Algorithm, h.ExtraHeaders["typ"])
	}

	// No organisation: no o claim; a nil extra removes a claim.
	for _, tc := range []struct {
		user  string
		extra map[string]any
	}{{"user_ada", nil}, {"user_linus", map[string]any{"o": nil}}} {
		c := f.verify(t, f.c.MintSessionToken(tc.user, "sess_2", iat, tc.extra))
		if c.ActiveOrganizationID != "" || c.AuthorizedParty != "" {
			t.Errorf("%s: org %q azp %q", tc.user, c.ActiveOrganizationID, c.AuthorizedParty)
		}
	}
	c := f.verify(t, f.c.MintSessionToken("user_linus", "sess_3", iat, nil))
	if c.ActiveOrganizationRole != "org:basic_member" {
		t.Errorf("linus role = %q", c.ActiveOrganizationRole)
	}

	// Networkless verification with the PEM key, and expiry after TokenTTL.
	jwk, err := clerk.JSONWebKeyFromPEM(f.c.PublicKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(61 * time.Second)
	if _, err := jwt.Verify(t.Context(), &jwt.VerifyParams{Token: tok, JWK: jwk, Clock: f.clk}); err == nil {
		t.Error("token still valid 61s after issue")
	}
	f.clk.Advance(-2 * time.Second)
	if _, err := jwt.Verify(t.Context(), &jwt.VerifyParams{Token: tok, JWK: jwk, Clock: f.clk}); err != nil {
		t.Errorf("PEM verification at 59s: %v", err)
	}
}

func TestKeys(t *testing.T) {
	f := newFixture(t, Options{FAPIHost: "clerk.example.test"})
	pk := f.c.PublishableKey()
	enc, ok := strings.CutPrefix(pk, "pk_live_")
	if !ok || strings.Contains(enc, "=") {
		t.Fatalf("publishable key %q", pk)
	}
	dec, err := base64.RawStdEncoding.DecodeString(enc)
	if err != nil || string(dec) != "clerk.example.test$" {
		t.Errorf("publishable key decodes to %q, %v", dec, err)
	}
	if !strings.HasPrefix(f.c.SecretKey(), "sk_live_sandbox_") {
		t.Errorf("secret key %q", f.c.SecretKey())
	}
	if f.c.Issuer() != "https://clerk.example.test" {
		t.Errorf("issuer %q", f.c.Issuer())
	}
	if !strings.HasPrefix(f.c.PublicKeyPEM(), "-----BEGIN PUBLIC KEY-----\n") {
		t.Errorf("PEM %q", f.c.PublicKeyPEM())
	}
	users := f.c.Users()
	users[0].FirstName = "changed"
	if f.c.Users()[0].FirstName == "changed" {
		t.Error("Users returns the sandbox's own slice")
	}

	for _, bad := range []Options{
		{FAPIHost: "https://clerk.example.test"},
		{Users: []User{{ID: "ada"}}},
		{Users: []User{{ID: "user_a"}, {ID: "user_a"}}},
		{Users: []User{{ID: "user_a", OrgID: "org_a", OrgRole: "owner"}}},
		{AllowedRedirectOrigins: []string{"https://app.example.test/path"}},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) succeeded", bad)
		}
	}
}

// handshake runs GET /v1/client/handshake and returns the response and
// the directives carried by its __clerk_handshake token, verified.
func (f *fixture) handshake(t *testing.T, redirectURL string, cookies ...*http.Cookie) (*http.Response, []string) {
	t.Helper()
	q := url.Values{
		"redirect_url": {redirectURL}, "__clerk_hs_reason": {"session-token-expired"},
		"suffixed_cookies": {"false"}, "__clerk_api_version": {APIVersion}, "format": {"nonce"},
	}
	res := f.get(t, "/v1/client/handshake?"+q.Encode(), cookies...)
	if res.StatusCode != http.StatusTemporaryRedirect {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("handshake: %d %s", res.StatusCode, body)
	}
	if got := res.Header.Get("Location"); got != redirectURL {
		t.Errorf("Location = %q, want %q", got, redirectURL)
	}
	if got := res.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q", got)
	}
	ck := cookieNamed(res.Cookies(), "__clerk_handshake")
	if ck == nil {
		return res, nil
	}
	if ck.Path != "/" || ck.SameSite != http.SameSiteLaxMode || ck.Secure || ck.Domain != "" {
		t.Errorf("handshake cookie attributes: %+v", ck)
	}
	parsed, err := josejwt.ParseSigned(ck.Value)
	if err != nil {
		t.Fatal(err)
	}
	if h := parsed.Headers[0]; h.KeyID != "ins_sandbox" || h.Algorithm != "RS256" || h.ExtraHeaders["typ"] != "JWT" {
		t.Errorf("handshake header %+v", h)
	}
	var payload struct {
		Handshake []string `json:"handshake"`
	}
	var all map[string]any
	if err := parsed.Claims(f.jwk(t).Key, &payload, &all); err != nil {
		t.Fatalf("handshake token does not verify: %v", err)
	}
	if len(all) != 1 {
		t.Errorf("handshake claims = %v, want only handshake", all)
	}
	return res, payload.Handshake
}

// sessionDirective is the value of the last __session directive, the
// cookie a browser ends up with.
func sessionDirective(directives []string) string {
	tok := ""
	for _, d := range directives {
		name, rest, _ := strings.Cut(strings.SplitN(d, ";", 2)[0], "=")
		if name == "__session" {
			tok = rest
		}
	}
	return tok
}

func signedOutDirectives() []string {
	return []string{
		"__client_uat=0; Path=/; Max-Age=315360000; SameSite=Lax",
		"__session=; Path=/; Max-Age=0; SameSite=Lax",
		"__clerk_handshake=; Path=/; Max-Age=0",
	}
}

// Ensure the Frontend API handshake hands a signed-in client a fresh
// __session and a signed-out one the clearing directives.
func TestHandshake(t *testing.T) {
	f := newFixture(t, Options{})
	back := "http://127.0.0.1:8080/routes/415VNA/?tab=1"

	sid, cookies := f.c.SignIn("user_ada")
	uat := mustCookie(t, cookies, "__client_uat").Value
	client := mustCookie(t, cookies, ClientCookie)

	f.clk.Advance(90 * time.Second) // the sign-in token has expired
	_, d := f.handshake(t, back, client)
	tok := sessionDirective(d)
	if tok == "" {
		t.Fatalf("no __session directive in %q", d)
	}
	claims := f.verify(t, tok)
	if claims.Subject != "user_ada" || claims.SessionID != sid || *claims.IssuedAt != f.clk.Now().Unix() {
		t.Errorf("handshake token: sub %q sid %q iat %d", claims.Subject, claims.SessionID, *claims.IssuedAt)
	}
	want := []string{
		"__session=; Path=/; Max-Age=0; SameSite=Lax",
		"__session=" + tok + "; Path=/; SameSite=Lax",
		"__client_uat=" + uat + "; Path=/; Max-Age=315360000; SameSite=Lax",
		"__clerk_handshake=; Path=/; Max-Age=0",
	}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("directives (-want +got):\n%s", diff)
	}
	if n, _ := strconv.ParseInt(uat, 10, 64); n != f.clk.Now().Add(-90*time.Second).Unix() {
		t.Errorf("__client_uat = %s, want the sign-in time", uat)
	}

	// __client_uat stays the sign-in time across handshakes.
	f.clk.Advance(time.Hour)
	_, d = f.handshake(t, back, client)
	if !slices.Contains(d, "__client_uat="+uat+"; Path=/; Max-Age=315360000; SameSite=Lax") {
		t.Errorf("second handshake directives %q lack __client_uat=%s", d, uat)
	}
	s, err := session.NewClient(f.cfg).Get(t.Context(), sid)
	if err != nil || s.LastActiveAt != f.clk.Now().UnixMilli() {
		t.Errorf("last_active_at after handshake: %v %v", s, err)
	}

	// An https gateway gets Secure directives.
	_, d = f.handshake(t, "https://localhost:8443/", client)
	if !strings.HasSuffix(d[0], "; Secure") || !strings.HasSuffix(d[1], "; Secure") || !strings.HasSuffix(d[2], "; Secure") {
		t.Errorf("https directives %q", d)
	}

	t.Run("SignedOut", func(t *testing.T) {
		for _, cks := range [][]*http.Cookie{nil, {{Name: ClientCookie, Value: "forged"}}} {
			_, d := f.handshake(t, back, cks...)
			if diff := cmp.Diff(signedOutDirectives(), d); diff != "" {
				t.Errorf("cookies %v: directives (-want +got):\n%s", cks, diff)
			}
		}
	})

	t.Run("Revoked", func(t *testing.T) {
		f.c.RevokeSession(sid)
		_, d := f.handshake(t, back, client)
		if diff := cmp.Diff(signedOutDirectives(), d); diff != "" {
			t.Errorf("directives (-want +got):\n%s", diff)
		}
	})

	t.Run("BadRedirect", func(t *testing.T) {
		for _, u := range []string{"", "https://evil.test/", "/relative", "javascript:alert(1)",
			"http://127.0.0.1.evil.test/", "http://user@evil.test@127.0.0.1/x", "//evil.test/"} {
			res := f.get(t, "/v1/client/handshake?redirect_url="+url.QueryEscape(u), client)
			var body struct{ Errors []struct{ Code string } }
			_ = json.NewDecoder(res.Body).Decode(&body)
			if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" || len(body.Errors) != 1 {
				t.Errorf("redirect_url %q: %d %v", u, res.StatusCode, body)
			}
		}
	})
}

func TestCheckRedirect(t *testing.T) {
	c, err := New(Options{AllowedRedirectOrigins: []string{"https://App.Example.test:8443"}})
	if err != nil {
		t.Fatal(err)
	}
	for u, ok := range map[string]bool{
		"http://127.0.0.1:8080/x?y=z":          true,
		"https://localhost/":                   true,
		"http://[::1]:9000/":                   true,
		"http://127.0.0.2/":                    true,
		"https://app.example.test:8443/a":      true,
		"https://app.example.test/a":           false,
		"http://app.example.test:8443/a":       false,
		"https://evil.test/":                   false,
		"ftp://127.0.0.1/":                     false,
		"http://127.0.0.1:99999/":              false,
		"http:127.0.0.1":                       false,
		"http://localhost.evil.test/":          false,
		"https://app.example.test:8443@evil/":  false,
		"":                                     false,
		"http://127.0.0.1:8080/\"><script>x":   true, // absolute and local: pages escape it
		"https://app.example.test.evil.test/a": false,
	} {
		if _, err := c.checkRedirect(u); (err == nil) != ok {
			t.Errorf("checkRedirect(%q) = %v, want ok=%v", u, err, ok)
		}
	}
}

// nonceParams is the query of BAPI GET /v1/clients/handshake_payload, which
// clerk-sdk-go v2 has no method for.
type nonceParams struct {
	clerk.APIParams
	Nonce string
}

func (p *nonceParams) ToQuery() url.Values { return url.Values{"nonce": {p.Nonce}} }

type handshakePayload struct {
	clerk.APIResource
	Directives []string `json:"directives"`
}

func fetchPayload(ctx context.Context, cfg *clerk.ClientConfig, nonce string) (*handshakePayload, error) {
	req := clerk.NewAPIRequest(http.MethodGet, "/clients/handshake_payload")
	req.SetParams(&nonceParams{Nonce: nonce})
	out := &handshakePayload{}
	err := clerk.NewBackend(&cfg.BackendConfig).Call(ctx, req, out)
	return out, err
}

// Ensure nonce handshakes deliver the directives through the Backend API.
func TestHandshakeNonce(t *testing.T) {
	f := newFixture(t, Options{NonceHandshake: true})
	sid, cookies := f.c.SignIn("user_linus")
	res, d := f.handshake(t, "http://127.0.0.1:8080/", mustCookie(t, cookies, ClientCookie))
	if d != nil {
		t.Fatalf("nonce mode sent a handshake token")
	}
	nonce := mustCookie(t, res.Cookies(), "__clerk_handshake_nonce")
	if nonce.Value == "" || nonce.Path != "/" || nonce.SameSite != http.SameSiteLaxMode {
		t.Errorf("nonce cookie %+v", nonce)
	}
	p, err := fetchPayload(t.Context(), f.cfg, nonce.Value)
	if err != nil {
		t.Fatal(err)
	}
	claims := f.verify(t, sessionDirective(p.Directives))
	if claims.Subject != "user_linus" || claims.SessionID != sid {
		t.Errorf("payload token sub %q sid %q", claims.Subject, claims.SessionID)
	}
	if !slices.Contains(p.Directives, "__clerk_handshake_nonce=; Path=/; Max-Age=0") {
		t.Errorf("directives %q do not clear the nonce cookie", p.Directives)
	}

	// Without format=nonce, Clerk sends the token cookie.
	res = f.get(t, "/v1/client/handshake?redirect_url="+url.QueryEscape("http://127.0.0.1:8080/"))
	if cookieNamed(res.Cookies(), "__clerk_handshake") == nil {
		t.Errorf("handshake without format=nonce: cookies %v", res.Cookies())
	}

	for name, n := range map[string]string{"unknown": "nope", "empty": ""} {
		_, err := fetchPayload(t.Context(), f.cfg, n)
		if e := apiError(t, err); e.HTTPStatusCode != 400 || e.Errors[0].Code != "invalid_nonce" {
			t.Errorf("%s nonce: %d %s", name, e.HTTPStatusCode, e.Errors[0].Code)
		}
	}
	f.clk.Advance(6 * time.Minute)
	if _, err := fetchPayload(t.Context(), f.cfg, nonce.Value); apiError(t, err).Errors[0].Code != "invalid_nonce" {
		t.Errorf("expired nonce: %v", err)
	}
}

func postForm(t *testing.T, f *fixture, form url.Values, cookies ...*http.Cookie) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/sign-in", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	return f.do(t, req)
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Ensure the sign-in page lists the demo users and its form signs in with
// the three cookies and a 303 back.
func TestSignIn(t *testing.T) {
	f := newFixture(t, Options{})
	back := "http://127.0.0.1:8080/settings/"

	res := f.get(t, "/sign-in?redirect_url="+url.QueryEscape(back))
	page := body(t, res)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("sign-in page: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{"tollgate sandbox", "standing in for Clerk", `name="redirect_url" value="` + back + `"`,
		`name="user_id" value="user_ada"`, "Sign in as Ada Lovelace", "Sign in as Grace Hopper", "admin of Acme"} {
		if !strings.Contains(page, want) {
			t.Errorf("sign-in page lacks %q", want)
		}
	}

	res = postForm(t, f, url.Values{"user_id": {"user_linus"}, "redirect_url": {back}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != back {
		t.Fatalf("POST /sign-in: %d Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	// As a production Account Portal: __client_uat for the whole domain
	// and the client cookie of the Frontend API, never __session (only the
	// handshake sets it on the app's host) and nothing else.
	cks := res.Cookies()
	if len(cks) != 2 {
		t.Errorf("sign-in set %d cookies, want __client_uat and the client cookie: %v", len(cks), cks)
	}
	uat, client := mustCookie(t, cks, "__client_uat"), mustCookie(t, cks, ClientCookie)
	for _, ck := range []*http.Cookie{uat, client} {
		if ck.Path != "/" || ck.SameSite != http.SameSiteLaxMode || ck.Secure || ck.Domain != "" {
			t.Errorf("cookie %s attributes: %+v", ck.Name, ck)
		}
	}
	if !client.HttpOnly || uat.Value != strconv.FormatInt(f.clk.Now().Unix(), 10) || uat.MaxAge != 315360000 {
		t.Errorf("client HttpOnly %v, uat %s max-age %d", client.HttpOnly, uat.Value, uat.MaxAge)
	}

	// The client cookie carries the session into the handshake.
	_, d := f.handshake(t, back, client)
	claims := f.verify(t, sessionDirective(d))
	if claims.Subject != "user_linus" || claims.ActiveOrganizationRole != "org:basic_member" {
		t.Errorf("token claims %+v", claims)
	}
	firstSID := claims.SessionID

	// Signing in again on the same client ends the previous session.
	res = postForm(t, f, url.Values{"user_id": {"user_ada"}}, client)
	if res.StatusCode != 200 || !strings.Contains(body(t, res), "Signed in") {
		t.Errorf("sign-in without redirect_url: %d", res.StatusCode)
	}
	if s, err := session.NewClient(f.cfg).Get(t.Context(), firstSID); err != nil || s.Status != "ended" {
		t.Errorf("previous session after switching user: %v %v", s, err)
	}
	if c := mustCookie(t, res.Cookies(), ClientCookie); c.Value != client.Value {
		t.Errorf("switching user changed the client cookie")
	}

	t.Run("Refused", func(t *testing.T) {
		res := postForm(t, f, url.Values{"user_id": {"user_nobody"}, "redirect_url": {back}})
		if res.StatusCode != 400 || cookieNamed(res.Cookies(), "__session") != nil {
			t.Errorf("unknown user: %d %v", res.StatusCode, res.Cookies())
		}
		res = postForm(t, f, url.Values{"user_id": {"user_ada"}, "redirect_url": {"https://evil.test/"}})
		if res.StatusCode != 400 || res.Header.Get("Location") != "" || len(res.Cookies()) != 0 {
			t.Errorf("foreign redirect: %d %q", res.StatusCode, res.Header.Get("Location"))
		}
		res = f.get(t, "/sign-in?redirect_url="+url.QueryEscape("https://evil.test/"))
		if res.StatusCode != 400 {
			t.Errorf("sign-in page with a foreign redirect: %d", res.StatusCode)
		}
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/sign-in", strings.NewReader("user_id=user_ada"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		if res := f.do(t, req); res.StatusCode != http.StatusForbidden {
			t.Errorf("cross-site POST: %d", res.StatusCode)
		}
	})

	t.Run("Escaping", func(t *testing.T) {
		evil := `http://127.0.0.1:8080/"><script>alert(1)</script>`
		page := body(t, f.get(t, "/sign-in?redirect_url="+url.QueryEscape(evil)))
		if strings.Contains(page, "<script>alert") {
			t.Error("redirect_url reflected unescaped")
		}
	})
}

// A session ends through the Backend API's revoke, as with Clerk: the
// session reads "revoked", the client's next handshake signs it out, and
// there is no sign-out page to lean on.
func TestRevokeSession(t *testing.T) {
	f := newFixture(t, Options{})
	sid, cookies := f.c.SignIn("user_grace")
	client := mustCookie(t, cookies, ClientCookie)
	sessions := session.NewClient(f.cfg)

	s, err := sessions.Revoke(t.Context(), &session.RevokeParams{ID: sid})
	if err != nil || s.ID != sid || s.Status != "revoked" {
		t.Fatalf("revoke: %+v %v", s, err)
	}
	if s, err := sessions.Get(t.Context(), sid); err != nil || s.Status != "revoked" {
		t.Errorf("after revoking: %+v %v", s, err)
	}
	_, d := f.handshake(t, "http://127.0.0.1:8080/", client)
	if diff := cmp.Diff(signedOutDirectives(), d); diff != "" {
		t.Errorf("handshake after revoking (-want +got):\n%s", diff)
	}
	// Revoking again changes nothing; an unknown session is a 404.
	if s, err := sessions.Revoke(t.Context(), &session.RevokeParams{ID: sid}); err != nil || s.Status != "revoked" {
		t.Errorf("second revoke: %+v %v", s, err)
	}
	if _, err := sessions.Revoke(t.Context(), &session.RevokeParams{ID: "sess_nope"}); apiError(t, err).HTTPStatusCode != http.StatusNotFound {
		t.Errorf("unknown session: %v", err)
	}
	if got := f.c.BackendCalls("POST /v1/sessions/{id}/revoke"); got != 3 {
		t.Errorf("BackendCalls = %d, want 3", got)
	}
	if res := f.get(t, "/sign-out", client); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /sign-out: %d, want 404 (the Account Portal has no such page)", res.StatusCode)
	}
}

// A removed member's session loses its organisation, as Clerk's does:
// last_active_organization_id is null and new tokens have no "o" claim; a
// changed role reaches new tokens.
func TestMembershipChanges(t *testing.T) {
	f := newFixture(t, Options{})
	sid, _ := f.c.SignIn("user_linus")
	if s, err := session.NewClient(f.cfg).Get(t.Context(), sid); err != nil || s.LastActiveOrganizationID != "org_acme" {
		t.Fatalf("member: %+v %v", s, err)
	}
	if f.c.SetMembershipRole("org_acme", "user_ada", "admin") || f.c.SetMembershipRole("org_acme", "user_linus", "owner") {
		t.Error("a role change for a non-member, or to an unknown role, was accepted")
	}
	if !f.c.SetMembershipRole("org_acme", "user_linus", "admin") {
		t.Fatal("role change refused")
	}
	if c := f.verify(t, f.c.MintSessionToken("user_linus", sid, f.clk.Now(), nil)); c.ActiveOrganizationRole != "org:admin" {
		t.Errorf("after the role change the token says %q", c.ActiveOrganizationRole)
	}
	if !f.c.RemoveMembership("org_acme", "user_linus") || f.c.RemoveMembership("org_acme", "user_linus") {
		t.Fatal("removal: want true once, then false")
	}
	if s, err := session.NewClient(f.cfg).Get(t.Context(), sid); err != nil || s.LastActiveOrganizationID != "" {
		t.Errorf("removed: %+v %v", s, err)
	}
	if c := f.verify(t, f.c.MintSessionToken("user_linus", sid, f.clk.Now(), nil)); c.ActiveOrganizationID != "" {
		t.Errorf("removed, the token still names %q", c.ActiveOrganizationID)
	}
	if o, err := organization.NewClient(f.cfg).Get(t.Context(), "org_acme"); err != nil || o.MembersCount == nil || *o.MembersCount != 1 {
		t.Errorf("organisation after the removal: %+v %v", o, err)
	}
}

// Over its Backend API rate limit the sandbox says 429 with Retry-After, the
// seconds until its 10 s window ends, as Clerk does; the JWKS is not
// limited, and a new window starts afresh.
func TestRateLimit(t *testing.T) {
	f := newFixture(t, Options{APIRateLimit: 2})
	users := user.NewClient(f.cfg)
	for range 2 {
		if _, err := users.Get(t.Context(), "user_ada"); err != nil {
			t.Fatal(err)
		}
	}
	f.clk.Advance(3 * time.Second)
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/v1/users/user_ada", nil)
	req.Header.Set("Authorization", "Bearer "+f.c.SecretKey())
	res := f.do(t, req)
	var body struct{ Errors []struct{ Code string } }
	_ = json.NewDecoder(res.Body).Decode(&body)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "7" || len(body.Errors) != 1 || body.Errors[0].Code != "too_many_requests" {
		t.Fatalf("over the limit: %d Retry-After %q %+v", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	if _, err := users.Get(t.Context(), "user_ada"); apiError(t, err).HTTPStatusCode != http.StatusTooManyRequests {
		t.Errorf("clerk-sdk-go sees: %v", err)
	}
	f.jwk(t) // not limited
	if f.c.RateLimited() != 2 {
		t.Errorf("RateLimited = %d, want 2", f.c.RateLimited())
	}
	f.clk.Advance(7 * time.Second)
	if _, err := users.Get(t.Context(), "user_ada"); err != nil {
		t.Errorf("a new window: %v", err)
	}
}

// HoldBackendAPI keeps one route's requests waiting until released.
func TestHoldBackendAPI(t *testing.T) {
	f := newFixture(t, Options{})
	arrived, release := f.c.HoldBackendAPI("GET /v1/users/{id}")
	done := make(chan error, 1)
	go func() {
		_, err := user.NewClient(f.cfg).Get(context.Background(), "user_ada")
		done <- err
	}()
	<-arrived
	select {
	case err := <-done:
		t.Fatalf("answered while held: %v", err)
	default:
	}
	f.jwk(t) // other routes are not held
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	release() // twice is harmless
}

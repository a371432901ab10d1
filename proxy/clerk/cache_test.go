package clerk

import (
	"crypto/sha256"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

func TestTokenCache_VerifiesOnce(t *testing.T) {
	e := newEnv(t)
	tok := e.token()
	for range 50 {
		authenticateOK(t, e, tok)
	}
	r := request(http.MethodGet, "/api", "api")
	r.Header.Set("Authorization", "Bearer "+tok)
	if got := e.c.Authenticate(t.Context(), r); got.State != proxy.SignedIn || got.Identity.Source != "bearer" {
		t.Errorf("bearer: %v (%s)", got.State, got.Reason)
	}
	if n := e.c.verifications.Load(); n != 1 {
		t.Errorf("%d verifications, want 1", n)
	}
	if !e.c.tokens.Contains(sha256.Sum256([]byte(tok[strings.LastIndexByte(tok, '.')+1:]))) {
		t.Error("the cache is not keyed by the token's signature's SHA-256")
	}

	// The cache honours the token's own expiry, with the leeway.
	e.clock.Advance(64 * time.Second)
	authenticateOK(t, e, tok)
	e.clock.Advance(2 * time.Second)
	got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", tok), uatCookie()))
	want := proxy.AuthResult{
		State: proxy.SignedOut, Reason: "session-token-expired-refresh-non-eligible-no-refresh-cookie",
		ClientUAT: testUAT, Refreshable: true, StaleSessionID: "sess_123",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("expired, from the cache (-got +want):\n%s", diff)
	}
	if got := e.c.Authenticate(t.Context(), page("/", cookie("__session", tok), uatCookie())); got.State != proxy.Handshake {
		t.Errorf("page load: %v (%s), want handshake", got.State, got.Reason)
	}
	if n := e.c.verifications.Load(); n != 1 {
		t.Errorf("%d verifications, want 1", n)
	}
}

// A cached token's signature under another header.payload, or its
// header.payload under another signature, is not the cached token: each is
// verified, and refused.
func TestTokenCache_HitIsTheWholeToken(t *testing.T) {
	e := newEnv(t)
	tok := e.token()
	authenticateOK(t, e, tok)
	i := strings.LastIndexByte(tok, '.')
	other := e.token("sub", "user_mallory")
	j := strings.LastIndexByte(other, '.')
	for name, forged := range map[string]string{
		"another payload, the cached signature": other[:j] + tok[i:],
		"the cached payload, another signature": tok[:i] + other[j:],
		"the cached signature alone":            tok[i+1:],
		"the cached payload alone":              tok[:i],
	} {
		before := e.c.verifications.Load()
		got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", forged), uatCookie()))
		if got.State == proxy.SignedIn {
			t.Errorf("%s: signed in as %s", name, got.Identity.UserID)
		}
		if e.c.verifications.Load() == before && got.Reason != "token-invalid" {
			t.Errorf("%s: answered from the cache (%s)", name, got.Reason)
		}
	}
	authenticateOK(t, e, tok) // still cached, still itself
}

func TestTokenCache_ExpiredTokenVerifiedOnce(t *testing.T) {
	e := newEnv(t)
	tok := e.expiredToken()
	for range 5 {
		got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", tok), uatCookie()))
		if got.StaleSessionID != "sess_123" || !got.Refreshable {
			t.Fatalf("got %+v", got)
		}
	}
	// Once as of now (expired), once as of its expiry (genuine); then cached.
	if n := e.c.verifications.Load(); n != 2 {
		t.Errorf("%d verifications, want 2", n)
	}
	// A forged expired token names no session.
	forged := mint(t, otherKey(), sessionHeader(), sessionClaims(e.clock.Now().Add(-10*time.Minute)))
	got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", forged), uatCookie()))
	if got.StaleSessionID != "" || got.Refreshable || got.Reason != "token-invalid-signature" {
		t.Errorf("forged: %+v", got)
	}
}

func TestCachedCookieAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	e := newEnv(t)
	r := xhr("/app/page?q=1", cookie("theme", "dark"), cookie("__session", e.token()), uatCookie(), cookie("_ga", "GA1.2.3"))
	ctx := t.Context()
	authenticateOK(t, e, e.token())
	allocs := testing.AllocsPerRun(200, func() {
		if e.c.Authenticate(ctx, r).State != proxy.SignedIn {
			t.Fatal("not signed in")
		}
	})
	if allocs > 1 { // the returned *proxy.Identity
		t.Errorf("%.1f allocations per cached request, want at most 1", allocs)
	}
}

// Tokens, nonces and the secret key never reach the logs, whatever fails.
func TestNoSecretsInLogs(t *testing.T) {
	e := newEnv(t)
	dev := newEnv(t, development)
	valid := e.token()
	expired := e.expiredToken()
	badHS := handshakeToken(t, otherKey(), signedInDirectives(valid, testUAT)...)
	secrets := []string{valid, expired, badHS, "nonce_secret_1", testSecret, "dvb_secret"}

	e.c.Authenticate(t.Context(), page("/", cookie("__clerk_handshake", badHS), cookie("__session", expired), uatCookie()))
	e.c.Authenticate(t.Context(), page("/", cookie("__clerk_handshake_nonce", "nonce_secret_1"), uatCookie()))
	e.c.Authenticate(t.Context(), page("/", cookie("__session", expired), uatCookie(), "__clerk_redirect_count=3"))
	e.clerk.setJWKSStatus(http.StatusInternalServerError)
	e.clock.Advance(10 * time.Minute)
	e.c.Authenticate(t.Context(), page("/", cookie("__session", e.token()), uatCookie()))
	dev.c.Authenticate(t.Context(), page("/?__clerk_handshake="+badHS+"&__clerk_db_jwt=dvb_secret"))

	logs := e.logs.String() + dev.logs.String()
	if !strings.Contains(logs, "cannot resolve the handshake") {
		t.Fatalf("expected some logs, got %q", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the logs contain a secret (%.12s…):\n%s", s, logs)
		}
	}
}

func BenchmarkAuthenticate_CachedCookie(b *testing.B) {
	e := newEnv(b)
	tok := e.token()
	r := xhr("/app/page?q=1", cookie("theme", "dark"), cookie("__session", tok), uatCookie(), cookie("_ga", "GA1.2.3"))
	ctx := b.Context()
	if got := e.c.Authenticate(ctx, r); got.State != proxy.SignedIn {
		b.Fatalf("not signed in: %s", got.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.c.Authenticate(ctx, r)
	}
}

// advancingTransport moves the test clock on by step at every Backend API
// or JWKS call: the time a slow call takes.
type advancingTransport struct {
	base  http.RoundTripper
	clock *testClock
	step  time.Duration
	on    atomic.Bool
}

func (a *advancingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if a.on.Load() {
		a.clock.Advance(a.step)
	}
	return a.base.RoundTrip(r)
}

// A token is judged at the request's one clock reading on a miss as on a
// hit (README "Performance"): the time its verification waited (here a
// JWKS fetch of 20 s) does not expire it, so a miss and then a hit of the
// same token agree.
func TestTokenCache_MissJudgedAtTheRequestsReading(t *testing.T) {
	var at *advancingTransport
	e := newEnv(t, func(cfg *Config) {
		at = &advancingTransport{base: cfg.HTTPClient.Transport, step: 20 * time.Second}
		cfg.HTTPClient = &http.Client{Transport: at}
	})
	at.clock = e.clock
	at.on.Store(true)
	tok := e.token("exp", e.clock.Now().Add(10*time.Second).Unix())
	start := e.clock.Now()
	got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", tok), uatCookie()))
	if e.clock.Now().Equal(start) {
		t.Fatal("no JWKS fetch during the verification: the test proves nothing")
	}
	if got.State != proxy.SignedIn {
		t.Errorf("miss: %v (%s), want signed in: the token was valid when the request came", got.State, got.Reason)
	}
}

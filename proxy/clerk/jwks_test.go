package clerk

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"

	"github.com/tollgate/tollgate/proxy"
)

func authenticateOK(t *testing.T, e *env, tok string) {
	t.Helper()
	got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", tok), uatCookie()))
	if got.State != proxy.SignedIn {
		t.Fatalf("State = %v (%s), want signed in", got.State, got.Reason)
	}
}

func TestJWKS_FetchedOnceForManyTokens(t *testing.T) {
	e := newEnv(t)
	for i := range 25 {
		authenticateOK(t, e, e.token("sid", fmt.Sprintf("sess_%d", i)))
	}
	if n := e.clerk.jwksHits.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

func TestJWKS_ConcurrentMissesFetchOnce(t *testing.T) {
	e := newEnv(t)
	e.clerk.jwksBlock = make(chan struct{})
	toks := make([]string, 16)
	for i := range toks {
		toks[i] = e.token("sid", fmt.Sprintf("sess_%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan string, len(toks))
	for _, tok := range toks {
		wg.Go(func() {
			got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", tok), uatCookie()))
			if got.State != proxy.SignedIn {
				errs <- got.Reason
			}
		})
	}
	// All of them wait for the one fetch before it may finish: a lookup
	// that came after it would pass without sharing it.
	deadline := time.Now().Add(10 * time.Second)
	for e.c.keys.fetchWaiters() < len(toks) {
		if time.Now().After(deadline) {
			close(e.clerk.jwksBlock)
			t.Fatalf("%d of %d lookups wait for the fetch", e.c.keys.fetchWaiters(), len(toks))
		}
		runtime.Gosched()
	}
	close(e.clerk.jwksBlock)
	wg.Wait()
	close(errs)
	for r := range errs {
		t.Errorf("not signed in: %s", r)
	}
	if n := e.clerk.jwksHits.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

func TestJWKS_UnknownKIDSprayIsBounded(t *testing.T) {
	e := newEnv(t)
	authenticateOK(t, e, e.token())
	spray := func() {
		for i := range 40 {
			tok := mint(t, e.key, sessionHeader().with("kid", fmt.Sprintf("ins_fake_%d", i)), sessionClaims(e.clock.Now()))
			got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", tok), uatCookie()))
			if got.State != proxy.SignedOut || got.Reason != "jwk-kid-mismatch" {
				t.Fatalf("kid %d: %v (%s)", i, got.State, got.Reason)
			}
		}
	}
	spray()
	if n := e.clerk.jwksHits.Load(); n != 1 {
		t.Errorf("right after a fetch: %d fetches, want 1", n)
	}
	e.clock.Advance(31 * time.Second)
	spray()
	if n := e.clerk.jwksHits.Load(); n != 2 {
		t.Errorf("31 s later: %d fetches, want 2", n)
	}
	// Known keys keep working without fetches.
	authenticateOK(t, e, e.token())
	if n := e.clerk.jwksHits.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
}

func TestJWKS_TTLAndRotation(t *testing.T) {
	e := newEnv(t)
	authenticateOK(t, e, e.token())

	// The set is refetched once it is older than five minutes.
	e.clock.Advance(5*time.Minute + time.Second)
	authenticateOK(t, e, e.token())
	if n := e.clerk.jwksHits.Load(); n != 2 {
		t.Errorf("after the TTL: %d fetches, want 2", n)
	}

	// Clerk rotates to a new key: a token with the new kid triggers a refetch
	// (at most once per 30 s).
	e.clerk.setKeys(jwk(e.key, testKID), jwk(otherKey(), "ins_next"))
	e.clock.Advance(31 * time.Second)
	tok := mint(t, otherKey(), sessionHeader().with("kid", "ins_next"), sessionClaims(e.clock.Now()))
	authenticateOK(t, e, tok)
	if n := e.clerk.jwksHits.Load(); n != 3 {
		t.Errorf("after rotation: %d fetches, want 3", n)
	}
}

func TestJWKS_BackendDown(t *testing.T) {
	e := newEnv(t)
	e.clerk.setJWKSStatus(http.StatusInternalServerError)
	got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", e.token()), uatCookie()))
	if got.State != proxy.SignedOut || got.Reason != "jwk-failed-to-load" {
		t.Errorf("got %v (%s)", got.State, got.Reason)
	}
	if err := e.c.Ready(t.Context()); err == nil {
		t.Error("Ready() = nil with the JWKS failing")
	}
	// Failed fetches are retried, but not on every request.
	e.c.Authenticate(t.Context(), xhr("/", cookie("__session", e.token("sid", "sess_2")), uatCookie()))
	if n := e.clerk.jwksHits.Load(); n != 1 {
		t.Errorf("%d fetches within the retry delay, want 1", n)
	}
	e.clerk.setJWKSStatus(http.StatusOK)
	e.clock.Advance(6 * time.Second)
	if err := e.c.Ready(t.Context()); err != nil {
		t.Errorf("Ready() = %v after recovery", err)
	}
	authenticateOK(t, e, e.token("sid", "sess_3"))

	// A set that goes stale while the Backend API is down is still used,
	// for an hour at most: by then Clerk may have retired a key.
	e.clerk.setJWKSStatus(http.StatusInternalServerError)
	e.clock.Advance(6 * time.Minute)
	authenticateOK(t, e, e.token("sid", "sess_4"))
	e.clock.Advance(time.Hour)
	if got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", e.token("sid", "sess_5")), uatCookie())); got.State != proxy.SignedOut {
		t.Errorf("a key set over an hour stale still verifies: %v", got.State)
	}
}

func TestJWKS_WrongSecretKey(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SecretKey = "sk_test_wrong" })
	if err := e.c.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "authentication_invalid") {
		t.Errorf("Ready() = %v", err)
	}
}

func TestPEMMode_NoNetwork(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.JWTKey = fixturePublicKey; c.SecretKey = "" })
	if err := e.c.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Any kid: the one key verifies everything.
	authenticateOK(t, e, mint(t, e.key, sessionHeader().with("kid", "ins_whatever"), sessionClaims(e.clock.Now())))
	authenticateOK(t, e, e.token())
	got := e.c.Authenticate(t.Context(), page("/", cookie("__clerk_handshake", handshakeToken(t, e.key, signedInDirectives(e.token("sid", "sess_hs"), testUAT)...))))
	if got.State != proxy.SignedIn || got.Identity.Source != "handshake" {
		t.Errorf("handshake: %v (%s)", got.State, got.Reason)
	}
	if got := e.c.Authenticate(t.Context(), xhr("/", cookie("__session", mint(t, otherKey(), sessionHeader(), sessionClaims(e.clock.Now()))), uatCookie())); got.Reason != "token-invalid-signature" {
		t.Errorf("other key: %v (%s)", got.State, got.Reason)
	}
	if n := e.clerk.hits.Load(); n != 0 {
		t.Errorf("%d requests to the Backend API, want 0", n)
	}
	if _, err := e.c.CheckSession(t.Context(), "sess_1"); err == nil {
		t.Error("CheckSession without a secret key: no error")
	}
}

func TestPEMShapes(t *testing.T) {
	lines := strings.Split(strings.TrimSpace(fixturePublicKey), "\n")
	body := strings.Join(lines[1:len(lines)-1], "")
	tests := map[string]string{
		"multi-line":       fixturePublicKey,
		"CRLF":             strings.ReplaceAll(fixturePublicKey, "\n", "\r\n"),
		"literal \\n":      strings.ReplaceAll(fixturePublicKey, "\n", `\n`),
		"one line":         "-----BEGIN PUBLIC KEY----- " + body + " -----END PUBLIC KEY-----",
		"bare base64 body": body,
	}
	for name, pem := range tests {
		if _, err := parsePEMKey(pem); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, pem := range map[string]string{
		"empty":       " ",
		"private key": fixtureSignKey,
		"garbage":     "not a key",
	} {
		if _, err := parsePEMKey(pem); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// Clerk's own fixture tokens (fixtures_test.go) verify, at the time they
// were valid, with the key Clerk's tests use for them.
func TestClerkFixtureTokens(t *testing.T) {
	at := func(sec int64) func(*Config) {
		return func(c *Config) {
			c.PublishableKey = fixturePK
			c.AuthorizedParties = nil
			c.Now = func() time.Time { return time.Unix(sec, 0) }
		}
	}
	bearer := func(tok string) *http.Request {
		r := request(http.MethodGet, "/api", "api")
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}
	want := func(t *testing.T, got proxy.AuthResult) {
		t.Helper()
		if got.State != proxy.SignedIn || got.Identity.UserID != fixtureUserID || got.Identity.SessionID != fixtureSID {
			t.Errorf("got %v (%s) %+v", got.State, got.Reason, got.Identity)
		}
	}

	t.Run("signedJwt, PEM", func(t *testing.T) {
		e := newEnv(t, at(fixtureNow), func(c *Config) { c.JWTKey = fixturePublicKey })
		want(t, e.c.Authenticate(t.Context(), bearer(fixtureSignedJWT)))
	})
	t.Run("mockJwt, JWKS", func(t *testing.T) {
		e := newEnv(t, at(fixtureNow))
		var k jose.JSONWebKey
		if err := json.Unmarshal([]byte(fixtureMockJWK), &k); err != nil {
			t.Fatal(err)
		}
		e.clerk.setKeys(k)
		want(t, e.c.Authenticate(t.Context(), bearer(fixtureMockJWT)))
	})
	t.Run("expired with the real clock", func(t *testing.T) {
		e := newEnv(t, at(fixtureExp+6), func(c *Config) { c.JWTKey = fixturePublicKey })
		if got := e.c.Authenticate(t.Context(), bearer(fixtureSignedJWT)); got.Reason != "token-expired" {
			t.Errorf("got %v (%s)", got.State, got.Reason)
		}
	})
	t.Run("within the leeway", func(t *testing.T) {
		e := newEnv(t, at(fixtureExp+4), func(c *Config) { c.JWTKey = fixturePublicKey })
		want(t, e.c.Authenticate(t.Context(), bearer(fixtureSignedJWT)))
	})
	t.Run("signed by another key", func(t *testing.T) {
		e := newEnv(t, at(fixtureNow), func(c *Config) { c.JWTKey = fixturePublicKey })
		if got := e.c.Authenticate(t.Context(), bearer(fixtureMockJWT)); got.Reason != "token-invalid-signature" {
			t.Errorf("got %v (%s)", got.State, got.Reason)
		}
	})
}

func TestNew_Errors(t *testing.T) {
	public, _ := url.Parse(testOrigin)
	ok := Config{PublishableKey: pkFor(testHost, true), SecretKey: testSecret, PublicURL: public}
	if _, err := New(ok); err != nil {
		t.Fatalf("New(valid) = %v", err)
	}
	tests := map[string]func(*Config){
		"bad publishable key": func(c *Config) { c.PublishableKey = "sk_live_abc" },
		"no public URL":       func(c *Config) { c.PublicURL = nil },
		"relative public URL": func(c *Config) { c.PublicURL = &url.URL{Path: "/x"} },
		"no keys at all":      func(c *Config) { c.SecretKey = "" },
		"bad PEM":             func(c *Config) { c.JWTKey = "nope" },
		"bad FAPI URL":        func(c *Config) { c.FrontendAPIURL = "clerk.example.com" },
		"bad sign-in URL":     func(c *Config) { c.SignInURL = "/sign-in" },
		"bad API URL":         func(c *Config) { c.APIURL = "api.clerk.com" },
	}
	for name, mutate := range tests {
		cfg := ok
		mutate(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New() = nil error", name)
		} else if strings.Contains(err.Error(), testSecret) {
			t.Errorf("%s: the error shows the secret key", name)
		}
	}
}

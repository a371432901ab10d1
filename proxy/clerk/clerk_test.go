package clerk

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
)

const (
	testHost   = "clerk.example.com"
	testIssuer = "https://" + testHost
	testKID    = "ins_test"
	testSecret = "sk_test_tollgate"
	testOrigin = "https://app.example.com"
)

// testStart is the fake clock's start; testUAT is when the client last
// signed in, a while before.
var (
	testStart = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	testUAT   = testStart.Add(-time.Hour).Unix()
)

// pkFor builds a publishable key for host.
func pkFor(host string, live bool) string {
	prefix := "pk_test_"
	if live {
		prefix = "pk_live_"
	}
	return prefix + base64.RawStdEncoding.EncodeToString([]byte(host+"$"))
}

func mustParseKey(t testing.TB, p string) *rsa.PrivateKey {
	t.Helper()
	block, _ := pem.Decode([]byte(p))
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey)
}

// otherKey is a second RSA key, for "signed by someone else" cases.
var otherKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func publicPEM(t testing.TB, k *rsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
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

// claims is a JWT payload or header under construction.
type claims map[string]any

// with returns a copy of c with the pairs set; a nil value deletes.
func (c claims) with(kv ...any) claims {
	out := make(claims, len(c)+len(kv)/2)
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// sessionClaims are the claims of a v2 session token issued at iat.
func sessionClaims(iat time.Time) claims {
	return claims{
		"iss": testIssuer, "sub": "user_123", "sid": "sess_123", "azp": testOrigin,
		"iat": iat.Unix(), "nbf": iat.Unix() - 10, "exp": iat.Unix() + 60,
		"v": 2, "fva": []int{0, -1}, "jti": fmt.Sprint(iat.UnixNano()),
	}
}

func sessionHeader() claims { return claims{"kid": testKID, "typ": "JWT", "cat": catSession} }

// mint signs payload with key (RS256); header's entries become JOSE header
// fields ("typ" included: without it, the token has none).
func mint(t testing.TB, key *rsa.PrivateKey, header, payload claims) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	for k, v := range header {
		opts.WithHeader(jose.HeaderKey(k), v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(signer).Claims(map[string]any(payload)).CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawJWT assembles a token from parts, for the unsigned and forged cases.
func rawJWT(t testing.TB, header, payload claims, sig []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(p) + "." + enc.EncodeToString(sig)
}

// fakeClerk serves the Backend API routes the package uses.
type fakeClerk struct {
	t   testing.TB
	srv *httptest.Server

	hits      atomic.Int64 // every request
	jwksHits  atomic.Int64
	jwksBlock chan struct{} // if set, /jwks waits for it to close

	mu          sync.Mutex
	jwks        []byte
	jwksCode    int
	sessions    map[string]string   // id → status
	sessionOrgs map[string]string   // id → last_active_organization_id
	nonces      map[string][]string // nonce → directives
	lastNonce   string
}

func newFakeClerk(t testing.TB, keys ...jose.JSONWebKey) *fakeClerk {
	t.Helper()
	f := &fakeClerk{t: t, sessions: map[string]string{}, sessionOrgs: map[string]string{}, nonces: map[string][]string{}, jwksCode: http.StatusOK}
	f.setKeys(keys...)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/jwks", func(w http.ResponseWriter, r *http.Request) {
		f.jwksHits.Add(1)
		if f.jwksBlock != nil {
			<-f.jwksBlock
		}
		f.mu.Lock()
		body, code := f.jwks, f.jwksCode
		f.mu.Unlock()
		if code != http.StatusOK {
			writeAPIError(w, code, "internal_error")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /v1/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		status, ok := f.sessions[r.PathValue("id")]
		org := f.sessionOrgs[r.PathValue("id")]
		f.mu.Unlock()
		switch {
		case status == "boom":
			http.Error(w, "upstream trouble", http.StatusBadGateway)
		case status == "limited":
			w.Header().Set("Retry-After", "4")
			writeAPIError(w, http.StatusTooManyRequests, "too_many_requests")
		case !ok:
			writeAPIError(w, http.StatusNotFound, "resource_not_found")
		default:
			s := map[string]any{"object": "session", "id": r.PathValue("id"), "user_id": "user_123", "status": status, "last_active_organization_id": nil}
			if org != "" {
				s["last_active_organization_id"] = org
			}
			writeJSON(w, s)
		}
	})
	mux.HandleFunc("POST /v1/sessions/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		f.mu.Lock()
		status, ok := f.sessions[id]
		if status == "active" {
			f.sessions[id] = "revoked"
		}
		f.mu.Unlock()
		switch {
		case status == "boom":
			http.Error(w, "upstream trouble", http.StatusBadGateway)
		case !ok:
			writeAPIError(w, http.StatusNotFound, "resource_not_found")
		case status != "active":
			writeAPIError(w, http.StatusBadRequest, "session_not_active")
		default:
			writeJSON(w, map[string]any{"object": "session", "id": id, "user_id": "user_123", "status": "revoked"})
		}
	})
	mux.HandleFunc("GET /v1/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("id") {
		case "user_123":
			writeJSON(w, map[string]any{
				"object": "user", "id": "user_123", "primary_email_address_id": "idn_2",
				"email_addresses": []any{
					map[string]any{"id": "idn_1", "object": "email_address", "email_address": "old@example.com"},
					map[string]any{"id": "idn_2", "object": "email_address", "email_address": "ada@example.com"},
				},
			})
		case "user_noemail":
			writeJSON(w, map[string]any{"object": "user", "id": "user_noemail", "primary_email_address_id": nil, "email_addresses": []any{}})
		default:
			writeAPIError(w, http.StatusNotFound, "resource_not_found")
		}
	})
	mux.HandleFunc("GET /v1/clients/handshake_payload", func(w http.ResponseWriter, r *http.Request) {
		n := r.URL.Query().Get("nonce")
		f.mu.Lock()
		f.lastNonce = n
		d, ok := f.nonces[n]
		f.mu.Unlock()
		if !ok {
			writeAPIError(w, http.StatusBadRequest, "invalid_nonce")
			return
		}
		writeJSON(w, map[string]any{"directives": d})
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+testSecret {
			writeAPIError(w, http.StatusUnauthorized, "authentication_invalid")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeClerk) setKeys(keys ...jose.JSONWebKey) {
	body, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.jwks = body
	f.mu.Unlock()
}

func (f *fakeClerk) setJWKSStatus(code int) {
	f.mu.Lock()
	f.jwksCode = code
	f.mu.Unlock()
}

func jwk(k *rsa.PrivateKey, kid string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeAPIError(w http.ResponseWriter, code int, errCode string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{"code": errCode, "message": errCode}}})
}

// logBuffer collects a client's log output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// env is a client wired to a fake Backend API, a fake clock and a log.
type env struct {
	t     testing.TB
	key   *rsa.PrivateKey
	clerk *fakeClerk
	clock *testClock
	logs  *logBuffer
	c     *Client
	cfg   Config
}

// newEnv builds a production client (pk_live_) unless mutate says
// otherwise. The fake JWKS publishes the fixture key as testKID.
func newEnv(t testing.TB, mutate ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, key: mustParseKey(t, fixtureSignKey), clock: &testClock{t: testStart}, logs: &logBuffer{}}
	e.clerk = newFakeClerk(t, jwk(e.key, testKID))
	public, _ := url.Parse(testOrigin)
	e.cfg = Config{
		PublishableKey:    pkFor(testHost, true),
		SecretKey:         testSecret,
		AuthorizedParties: []string{testOrigin},
		APIURL:            e.clerk.srv.URL + "/v1",
		PublicURL:         public,
		HTTPClient:        e.clerk.srv.Client(),
		Logger:            slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:               e.clock.Now,
	}
	for _, m := range mutate {
		m(&e.cfg)
	}
	c, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	return e
}

func development(cfg *Config) { cfg.PublishableKey = pkFor(testHost, false) }

// token mints a session token issued now, with changes.
func (e *env) token(kv ...any) string {
	e.t.Helper()
	return mint(e.t, e.key, sessionHeader(), sessionClaims(e.clock.Now()).with(kv...))
}

// expiredToken was issued ten minutes ago (the JS suite's "expired").
func (e *env) expiredToken(kv ...any) string {
	e.t.Helper()
	return mint(e.t, e.key, sessionHeader(), sessionClaims(e.clock.Now().Add(-10*time.Minute)).with(kv...))
}

// request builds a request; kind is "page" (a navigation), "xhr" (fetch)
// or "api" (no browser headers).
func request(method, target, kind string, cookies ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	switch kind {
	case "page":
		r.Header.Set("Sec-Fetch-Dest", "document")
		r.Header.Set("Accept", "text/html,application/xhtml+xml")
	case "xhr":
		r.Header.Set("Sec-Fetch-Dest", "empty")
		r.Header.Set("Accept", "application/json")
	}
	if len(cookies) > 0 {
		r.Header.Set("Cookie", strings.Join(cookies, "; "))
	}
	return r
}

func page(target string, cookies ...string) *http.Request {
	return request(http.MethodGet, target, "page", cookies...)
}

func xhr(target string, cookies ...string) *http.Request {
	return request(http.MethodGet, target, "xhr", cookies...)
}

func cookie(name string, v any) string { return fmt.Sprintf("%s=%v", name, v) }

func uatCookie() string { return cookie("__client_uat", testUAT) }

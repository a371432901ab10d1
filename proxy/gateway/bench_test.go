package gateway_test

// Benchmarks of the gate's overhead, each against a bare
// httputil.ReverseProxy in the same run. The upstream is an in-memory
// RoundTripper, so what is measured is the proxying work itself; compare
// ns/op of BenchmarkBareReverseProxy with the Gate ones:
//
//	go test -run='^$' -bench=. -benchmem -count=6 ./proxy/gateway/ | tee new.txt
//	benchstat new.txt

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/apikey"
	"github.com/tollgate/tollgate/proxy/bolt"
	"github.com/tollgate/tollgate/proxy/cache"
	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/config"
	"github.com/tollgate/tollgate/proxy/gateway"
	"github.com/tollgate/tollgate/proxy/sandbox/clerk"
)

// staticUpstream answers every request with the same small page, in memory.
type staticUpstream struct{}

func (staticUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/html"}, "Cache-Control": {"no-cache"}},
		Body:          io.NopCloser(strings.NewReader("<h1>hello</h1>")),
		ContentLength: 14, Request: r}, nil
}

const benchConfig = `
api_keys:
  enabled: true
public_url: "https://app.example.com"
upstream: "http://app.internal:3000"
default_access: paid
clerk:
  publishable_key: "%s"
  secret_key: "%s"
  jwt_key: "%s"
session:
  secret: "0123456789abcdef0123456789abcdef"
stripe:
  secret_key: "sk_test_x"
  webhook_secret: "whsec_x"
plans:
  pro: { prices: [price_pro], routes: ["415VNA"] }
routes:
  - { path: "/", access: public }
  - { path: "/public/*", access: public }
  - { path: "/routes/{route}/*", access: paid }
  - { path: "/app/*", access: signed_in }
`

type benchFixture struct {
	gate       http.Handler
	gateSlog   http.Handler // gate with the access log written by slog's JSON handler
	gateLines  http.Handler // gate with the access log's lines appended to a LineBuffer
	keyGate    http.Handler // the gate with tollgate's API keys on, over a bbolt store, cached as the command wires it
	keyUncache http.Handler // keyGate reading the store on every request
	key        string       // user_ada's key, scoped "*"
	bare       http.Handler
	barePooled http.Handler // bare, with the same copy-buffer pool as the gate
	cookies    string

	cfg *proxy.Config
	cc  *clerk.Client
	// connCtx is the context of a client connection as `tollgate serve`
	// serves it (State.ConnContext), under every request's.
	connCtx context.Context
	sb      *clerksandbox.Clerk
	now     time.Time
}

// discardLines is a gateway.LineBuffer that keeps only the last line.
type discardLines struct {
	mu  sync.Mutex
	buf []byte
}

func (d *discardLines) AppendLine(l gateway.Line) {
	d.mu.Lock()
	d.buf = l.AppendTo(d.buf[:0])
	d.mu.Unlock()
}

type pool struct{ p sync.Pool }

func (p *pool) Get() []byte {
	if b, ok := p.p.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}
func (p *pool) Put(b []byte) { p.p.Put(&b) }

func newBenchFixture(b testing.TB) *benchFixture {
	b.Helper()
	now := time.Now()
	sb, err := clerksandbox.New(clerksandbox.Options{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	pem := strings.ReplaceAll(sb.PublicKeyPEM(), "\n", `\n`)
	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(benchConfig, sb.PublishableKey(), sb.SecretKey(), pem)), func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	cc, err := clerk.New(clerk.Config{PublishableKey: cfg.Clerk.PublishableKey, SecretKey: cfg.Clerk.SecretKey, JWTKey: cfg.Clerk.JWTKey,
		AuthorizedParties: cfg.Clerk.AuthorizedParties, PublicURL: cfg.PublicURL, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	cache, err := cache.NewEntitlementCache(entitlementsFunc(func(s proxy.Subject) *proxy.Entitlements { return nil }), 100)
	if err != nil {
		b.Fatal(err)
	}
	cache.Put(proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}, &proxy.Entitlements{
		Subscriptions: []proxy.Subscription{{ID: "sub_1", Plan: "pro", Status: proxy.StatusActive}}})
	opts := gateway.Options{Config: cfg, Auth: cc, Portal: cc, Entitlements: cache,
		State: gateway.NewState(gateway.StateOptions{Sessions: cc, Transport: staticUpstream{}}), Now: func() time.Time { return now }}
	srv, err := gateway.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	f0 := &benchFixture{connCtx: servedContext(opts.State)}
	// The access log as `tollgate serve` writes it: slog's JSON handler,
	// and its lines appended straight into the batch.
	opts.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	if f0.gateSlog, err = gateway.New(opts); err != nil {
		b.Fatal(err)
	}
	opts.AccessLog = &discardLines{}
	if f0.gateLines, err = gateway.New(opts); err != nil {
		b.Fatal(err)
	}
	f0.keyGate, f0.keyUncache, f0.key = newKeyGates(b, cfg, cc, cache, now)
	target, _ := url.Parse("http://app.internal:3000")
	bare := &httputil.ReverseProxy{Transport: staticUpstream{}, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.SetXForwarded()
	}}
	barePooled := &httputil.ReverseProxy{Transport: staticUpstream{}, Rewrite: bare.Rewrite, BufferPool: &pool{}}
	tok := sb.MintSessionToken("user_ada", "sess_bench", now, nil)
	f := &benchFixture{gate: srv, gateSlog: f0.gateSlog, gateLines: f0.gateLines, keyGate: f0.keyGate, keyUncache: f0.keyUncache, key: f0.key, bare: bare, barePooled: barePooled, cookies: fmt.Sprintf("__session=%s; __client_uat=%d", tok, now.Unix()-5),
		cfg: cfg, cc: cc, sb: sb, now: now, connCtx: f0.connCtx}
	// Sign in once and keep the gateway cookie, as a browser would, so the
	// steady state measured is "cached token, nothing to set".
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, f.request("/app/x"))
	for _, c := range w.Result().Cookies() {
		if c.Name == gateway.GatewayCookieSecure {
			f.cookies += "; " + c.Name + "=" + c.Value
		}
	}
	return f
}

type entitlementsFunc func(proxy.Subject) *proxy.Entitlements

func (f entitlementsFunc) Entitlements(_ context.Context, s proxy.Subject) (*proxy.Entitlements, error) {
	return f(s), nil
}

func (f *benchFixture) request(path string) *http.Request {
	r := httptest.NewRequestWithContext(f.connCtx, "GET", "http://app.example.com"+path, nil)
	r.Header.Set("Accept", "text/html")
	r.Header.Set("Cookie", f.cookies)
	return r
}

func run(b *testing.B, h http.Handler, path string, f *benchFixture) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, f.request(path))
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

func BenchmarkBareReverseProxy(b *testing.B) {
	f := newBenchFixture(b)
	run(b, f.bare, "/app/x", f)
}

// BenchmarkBareReverseProxyPooled is the fair baseline for the gate's own
// work: the stock proxy with the buffer pool the gate also uses.
func BenchmarkBareReverseProxyPooled(b *testing.B) {
	f := newBenchFixture(b)
	run(b, f.barePooled, "/app/x", f)
}

func BenchmarkGate_Public(b *testing.B) {
	f := newBenchFixture(b)
	run(b, f.gate, "/public/x", f)
}

func BenchmarkGate_SignedInCachedToken(b *testing.B) {
	f := newBenchFixture(b)
	run(b, f.gate, "/app/x", f)
}

func BenchmarkGate_PaidCacheHit(b *testing.B) {
	f := newBenchFixture(b)
	run(b, f.gate, "/routes/415VNA/x", f)
}

// BenchmarkGate_PaidCacheHitLogged is PaidCacheHit with the access log
// written, as `tollgate serve` writes it (README "Performance"): /slog by
// slog's JSON handler, /lines appended straight into the log's batch.
func BenchmarkGate_PaidCacheHitLogged(b *testing.B) {
	f := newBenchFixture(b)
	b.Run("slog", func(b *testing.B) { run(b, f.gateSlog, "/routes/415VNA/x", f) })
	b.Run("lines", func(b *testing.B) { run(b, f.gateLines, "/routes/415VNA/x", f) })
}

// newKeyGates are the benchmark's gateway with API keys in front of
// Clerk, as the command wires it (a bbolt store holding a key of user_ada
// for every route, its uses batched, found keys cached briefly), and the
// same without the cache.
func newKeyGates(b testing.TB, cfg *proxy.Config, cc *clerk.Client, ents proxy.EntitlementSource, now time.Time) (cached, uncached http.Handler, key string) {
	b.Helper()
	store, err := bolt.Open(filepath.Join(b.TempDir(), "tollgate.db"), bolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	key, rec, err := proxy.NewAPIKey(cfg.LiveMode(), now)
	if err != nil {
		b.Fatal(err)
	}
	rec.Subject, rec.Name, rec.Scopes = proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}, "bench", []string{proxy.ScopeAll}
	if err := store.CreateAPIKey(b.Context(), rec, 0); err != nil {
		b.Fatal(err)
	}
	clock := func() time.Time { return now }
	cs, err := apikey.NewCachedStore(store, apikey.DefaultCacheSize, apikey.DefaultCacheTTL, clock)
	if err != nil {
		b.Fatal(err)
	}
	gate := func(keys proxy.APIKeyStore) http.Handler {
		auth := apikey.New(apikey.Options{Store: keys, Live: cfg.LiveMode(), Used: proxy.NewTimeBatcher(store.RecordAPIKeysUsed, time.Hour, "api key last used", nil), Next: cc, Now: clock})
		srv, err := gateway.New(gateway.Options{Config: cfg, Auth: auth, Portal: cc, Entitlements: ents, APIKeys: keys,
			State: gateway.NewState(gateway.StateOptions{Sessions: cc, Transport: staticUpstream{}}), Now: clock})
		if err != nil {
			b.Fatal(err)
		}
		return srv
	}
	return gate(cs), gate(store), key
}

func runKey(b *testing.B, f *benchFixture, h http.Handler, key string) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		r := httptest.NewRequestWithContext(f.connCtx, "GET", "http://app.example.com/routes/415VNA/x", nil)
		r.Header.Set("Accept", "application/json")
		r.Header.Set("Authorization", "Bearer "+key)
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkGate_PaidCacheHitAPIKey is BenchmarkGate_PaidCacheHit with
// tollgate's API key instead of a Clerk session, wired as the command
// wires it; the two are meant to be within 5% of each other in one run.
func BenchmarkGate_PaidCacheHitAPIKey(b *testing.B) {
	f := newBenchFixture(b)
	runKey(b, f, f.keyGate, f.key)
}

// BenchmarkGate_PaidCacheHitAPIKeyUncached reads the key's record from
// bbolt on every request: what the cache saves.
func BenchmarkGate_PaidCacheHitAPIKeyUncached(b *testing.B) {
	f := newBenchFixture(b)
	runKey(b, f, f.keyUncache, f.key)
}

// storeGate is the benchmark's gateway over a bbolt store of two paying
// users, user_ada and user_bob, behind an entitlement LRU of lru entries,
// and their Clerk session tokens.
func storeGate(b *testing.B, f *benchFixture, lru int) (http.Handler, [2]string) {
	b.Helper()
	store, err := bolt.Open(filepath.Join(b.TempDir(), "tollgate.db"), bolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	var toks [2]string
	var states []proxy.CustomerState
	for i, u := range []string{"user_ada", "user_bob"} {
		states = append(states, proxy.CustomerState{CustomerID: "cus_" + u, Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: u}, SyncedAt: f.now,
			Subscriptions: []proxy.Subscription{{ID: "sub_" + u, CustomerID: "cus_" + u, Plan: "pro", Status: proxy.StatusActive,
				PriceIDs: []string{"price_pro"}, CurrentPeriodEnd: f.now.Add(720 * time.Hour)}}})
		toks[i] = f.sb.MintSessionToken(u, "sess_"+u, f.now, nil)
	}
	if err := store.CommitCustomers(b.Context(), states); err != nil {
		b.Fatal(err)
	}
	ents, err := cache.NewEntitlementCache(store, lru)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := gateway.New(gateway.Options{Config: f.cfg, Auth: f.cc, Portal: f.cc, Entitlements: ents,
		State: gateway.NewState(gateway.StateOptions{Sessions: f.cc, Transport: staticUpstream{}}), Now: func() time.Time { return f.now }})
	if err != nil {
		b.Fatal(err)
	}
	return srv, toks
}

func runAlternating(b *testing.B, f *benchFixture, h http.Handler, toks [2]string) {
	b.Helper()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w := httptest.NewRecorder()
		r := httptest.NewRequestWithContext(f.connCtx, "GET", "http://app.example.com/routes/415VNA/x", nil)
		r.Header.Set("Accept", "application/json")
		r.Header.Set("Authorization", "Bearer "+toks[i%2])
		i++
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkGate_PaidStoreHit and BenchmarkGate_PaidStoreMiss are two
// users' paid requests in turn over a bbolt store: through an LRU that
// holds both, and through one that holds one (every request a miss, read
// from the store). The difference is what a cold user costs (README
// "Performance"; its target: at most 50 µs).
func BenchmarkGate_PaidStoreHit(b *testing.B) {
	f := newBenchFixture(b)
	h, toks := storeGate(b, f, 100)
	runAlternating(b, f, h, toks)
}

func BenchmarkGate_PaidStoreMiss(b *testing.B) {
	f := newBenchFixture(b)
	h, toks := storeGate(b, f, 1)
	runAlternating(b, f, h, toks)
}

// servedContext is a client connection's context as `tollgate serve` gives
// it (State.ConnContext), whose wait on the upstream its requests share,
// so that a benchmark measures the request path as served.
func servedContext(st *gateway.State) context.Context {
	return st.ConnContext(context.Background(), nil)
}

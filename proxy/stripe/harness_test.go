package stripe

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
	stripesandbox "github.com/tollgate/tollgate/proxy/sandbox/stripe"
)

// testStore is the real store, in the test's directory, with what the
// tests need beside it: the commits tollgate made, and failures on demand
// (a full disk is hard to arrange).
type testStore struct {
	*bolt.Store

	mu           sync.Mutex
	commits      []commit
	commitErr    error
	processedErr error
	failCommitAt int // > 0: the n-th commit from now fails
}

// commit is one CommitCustomer that succeeded: what tollgate committed.
type commit struct {
	State   proxy.CustomerState
	EventID string
}

func newTestStore(t testing.TB, now func() time.Time) *testStore {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "tollgate.db"), bolt.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &testStore{Store: s}
}

func (s *testStore) CommitCustomer(ctx context.Context, state proxy.CustomerState, eventID string) (proxy.Subject, *proxy.Entitlements, error) {
	s.mu.Lock()
	err := s.commitErr
	if s.failCommitAt > 0 {
		s.failCommitAt--
		if s.failCommitAt == 0 {
			err = errors.New("test store: commit failed")
		}
	}
	s.mu.Unlock()
	if err != nil {
		return proxy.Subject{}, nil, err
	}
	who, ents, err := s.Store.CommitCustomer(ctx, state, eventID)
	if err == nil {
		s.mu.Lock()
		s.commits = append(s.commits, commit{state, eventID})
		s.mu.Unlock()
	}
	return who, ents, err
}

func (s *testStore) EventProcessed(ctx context.Context, eventID string) (bool, error) {
	s.mu.Lock()
	err := s.processedErr
	s.mu.Unlock()
	if err != nil {
		return false, err
	}
	return s.Store.EventProcessed(ctx, eventID)
}

// processed reports whether the store marked the event processed.
func (s *testStore) processed(eventID string) bool {
	ok, err := s.Store.EventProcessed(context.Background(), eventID)
	if err != nil {
		panic(err)
	}
	return ok
}

func (s *testStore) commitCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.commits)
}

func (s *testStore) commitList() []commit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]commit(nil), s.commits...)
}

// lastCommit is what tollgate last committed for a customer.
func (s *testStore) lastCommit(customerID string) (proxy.CustomerState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.commits) - 1; i >= 0; i-- {
		if s.commits[i].State.CustomerID == customerID {
			return s.commits[i].State, true
		}
	}
	return proxy.CustomerState{}, false
}

// subscriptions are the subscriptions the store holds for subject (nil
// when it has no customer).
func (s *testStore) subscriptions(subject proxy.Subject) []proxy.Subscription {
	ents, err := s.Entitlements(context.Background(), subject)
	if err != nil {
		panic(err)
	}
	if ents == nil {
		return nil
	}
	return ents.Subscriptions
}

// subjectOf is who the store says pays with the customer.
func (s *testStore) subjectOf(customerID string) (proxy.Subject, bool) {
	who, ok, err := s.SubjectOf(context.Background(), customerID)
	if err != nil {
		panic(err)
	}
	return who, ok
}

// testCache records what Billing writes through to the hot-path cache.
type testCache struct {
	mu   sync.Mutex
	puts []cachePut
}

type cachePut struct {
	Subject proxy.Subject
	Ents    *proxy.Entitlements
}

func (c *testCache) Put(s proxy.Subject, e *proxy.Entitlements) {
	c.mu.Lock()
	c.puts = append(c.puts, cachePut{s, e})
	c.mu.Unlock()
}

// last is the latest Put for s (ok false: none).
func (c *testCache) last(s proxy.Subject) (*proxy.Entitlements, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.puts) - 1; i >= 0; i-- {
		if c.puts[i].Subject == s {
			return c.puts[i].Ents, true
		}
	}
	return nil, false
}

func (c *testCache) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.puts)
}

// testDirectory answers primary emails, as Clerk's Backend API would.
type testDirectory struct {
	mu     sync.Mutex
	emails map[string]string
	err    error
}

func (d *testDirectory) Email(_ context.Context, userID string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return "", d.err
	}
	return d.emails[userID], nil
}

// testObserver records what Billing tells its Observer.
type testObserver struct {
	mu        sync.Mutex
	anomalies []string
	reconcile reconcileSeen
}

// reconcileSeen is the reconcile's last progress report.
type reconcileSeen struct {
	pages, subs, committed, marked int
	running                        bool
	completed                      time.Time
}

func (o *testObserver) ReconcileProgress(pages, subs, committed, marked int, running bool, completed time.Time) {
	o.mu.Lock()
	o.reconcile = reconcileSeen{pages, subs, committed, marked, running, completed}
	o.mu.Unlock()
}

func (o *testObserver) lastReconcile() reconcileSeen {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reconcile
}

func (o *testObserver) WebhookEvent(string, string, string, time.Duration) {}

func (o *testObserver) StripeAnomaly(kind string) {
	o.mu.Lock()
	o.anomalies = append(o.anomalies, kind)
	o.mu.Unlock()
}

func (o *testObserver) count(kind string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, k := range o.anomalies {
		if k == kind {
			n++
		}
	}
	return n
}

// testClock is an adjustable clock: the gateway's, the store's and the
// sandbox's.
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

const (
	testSecret    = "whsec_test_primary"
	testSecretOld = "whsec_test_old"
)

// Fixed test subjects and plans (functions, so no test can change them for another).
func userAda() proxy.Subject { return proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"} }
func orgAcme() proxy.Subject { return proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"} }
func idAda() *proxy.Identity { return &proxy.Identity{UserID: "user_ada", SessionID: "sess_1"} }
func idGrace() *proxy.Identity {
	return &proxy.Identity{UserID: "user_grace", SessionID: "sess_2", OrgID: "org_acme", OrgRole: "org:admin"}
}

func testPlans() []proxy.Plan {
	return []proxy.Plan{
		{Key: "pro", Name: "Pro", Prices: []string{"price_pro", "price_pro_yearly"}, Routes: []string{"*"},
			TrialDays: 7, TrialFeePrice: "price_fee", Scope: proxy.SubjectUser},
		{Key: "basic", Name: "Basic", Prices: []string{"price_other"}, Routes: []string{"*"}, Scope: proxy.SubjectUser},
		{Key: "team", Name: "Team", Prices: []string{"price_team"}, Routes: []string{"*"}, Scope: proxy.SubjectOrg},
	}
}

// harness is a Billing wired to the sandbox Stripe (through apiTap) and to
// a real store.
type harness struct {
	b      *Billing
	cfg    Config   // what b was built from
	stripe *account // the sandbox account, as the test drives it
	calls  *apiTap  // what tollgate asked Stripe
	store  *testStore
	cache  *testCache
	dir    *testDirectory
	clock  *testClock

	sleepMu sync.Mutex
	sleeps  []time.Duration
}

func newHarness(t testing.TB, mod ...func(*Config)) *harness {
	t.Helper()
	h := &harness{
		cache: &testCache{},
		dir:   &testDirectory{emails: map[string]string{"user_ada": "ada@example.com", "user_grace": "grace@example.com"}},
		clock: &testClock{t: time.Now().Truncate(time.Second)},
	}
	h.store = newTestStore(t, h.clock.Now)
	sb := stripesandbox.New(stripesandbox.Options{Prices: testPrices(), Now: h.clock.Now, StripeTax: true})
	t.Cleanup(func() { _ = sb.Close() })
	h.stripe = newAccount(t, sb)
	h.calls = &apiTap{next: sb.Handler()}
	srv := httptest.NewServer(h.calls)
	t.Cleanup(srv.Close)
	h.cfg = Config{
		SecretKey:      sb.SecretKey(),
		WebhookSecrets: []string{testSecret},
		APIURL:         srv.URL,
		PublicURL:      mustURL("https://app.example.test"),
		InternalPrefix: "/.tollgate",
		Plans:          testPlans(),
		Store:          h.store,
		Cache:          h.cache,
		Directory:      h.dir,
		Now:            h.clock.Now,
	}
	for _, m := range mod {
		m(&h.cfg)
	}
	h.b = h.billing(t, h.cfg)
	return h
}

// billing builds a Billing from cfg whose waits are recorded, not slept.
func (h *harness) billing(t testing.TB, cfg Config) *Billing {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b.backoffBase = time.Millisecond
	b.sleep = func(ctx context.Context, d time.Duration) error {
		h.sleepMu.Lock()
		h.sleeps = append(h.sleeps, d)
		h.sleepMu.Unlock()
		return ctx.Err()
	}
	return b
}

// link records subject ↔ customer in the store, as an earlier checkout would have.
func (h *harness) link(s proxy.Subject, cus string) {
	if err := h.store.LinkCustomer(context.Background(), s, cus); err != nil {
		panic(err)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// event builds an event envelope around obj.
func event(id, typ string, obj map[string]any) []byte {
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": "2023-10-16", "created": 1_700_000_000,
		"type": typ, "livemode": false, "pending_webhooks": 1,
		"data": map[string]any{"object": obj},
	})
	if err != nil {
		panic(err)
	}
	return b
}

func signature(body []byte, ts time.Time, secrets ...string) string {
	h := fmt.Sprintf("t=%d", ts.Unix())
	for _, s := range secrets {
		h += ",v1=" + hex.EncodeToString(webhook.ComputeSignature(ts, body, s))
	}
	return h
}

// deliver posts body to the webhook handler, signed now with testSecret.
func (h *harness) deliver(body []byte) *httptest.ResponseRecorder {
	return h.deliverTo(h.b, body)
}

func (h *harness) deliverTo(b *Billing, body []byte) *httptest.ResponseRecorder {
	return deliverSigned(b, body, signature(body, h.clock.Now(), testSecret))
}

func (h *harness) deliverSigned(body []byte, sig string) *httptest.ResponseRecorder {
	return deliverSigned(h.b, body, sig)
}

func deliverSigned(b *Billing, body []byte, sig string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/.tollgate/webhooks/stripe", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("Stripe-Signature", sig)
	}
	rec := httptest.NewRecorder()
	b.WebhookHandler().ServeHTTP(rec, req)
	return rec
}

func subObject(id, customer, status string) map[string]any {
	return map[string]any{"id": id, "object": "subscription", "customer": customer, "status": status}
}

// statuses lists the subscription statuses in ents, by ID.
func statuses(e *proxy.Entitlements) map[string]proxy.SubscriptionStatus {
	out := map[string]proxy.SubscriptionStatus{}
	if e != nil {
		for _, s := range e.Subscriptions {
			out[s.ID] = s.Status
		}
	}
	return out
}

// withActiveAda sets up a customer of user_ada's, linked to her, holding
// one active pro subscription, and returns both IDs.
func withActiveAda(h *harness) (cus, sub string) {
	cus = h.stripe.customer("ada@example.com", map[string]string{MetaUserID: "user_ada"})
	h.link(userAda(), cus)
	return cus, h.stripe.subscribeWith(cus, "active", "price_pro")
}

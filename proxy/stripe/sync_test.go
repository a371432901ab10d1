package stripe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

func TestSyncCustomer_CancelledSubscriptionReachesCacheAsCanceled(t *testing.T) {
	h := newHarness(t)
	sub := withActiveAda(h)
	if err := h.b.SyncCustomer(t.Context(), "cus_1", ""); err != nil {
		t.Fatal(err)
	}
	if ents, _ := h.cache.last(userAda()); statuses(ents)[sub] != proxy.StatusActive {
		t.Fatalf("first sync: %v", statuses(ents))
	}
	h.stripe.setSubStatus(sub, "canceled")
	if err := h.b.SyncCustomer(t.Context(), "cus_1", ""); err != nil {
		t.Fatal(err)
	}
	ents, _ := h.cache.last(userAda())
	if statuses(ents)[sub] != proxy.StatusCanceled {
		t.Errorf("cache = %v, want canceled", statuses(ents))
	}
	if proxy.Grants(&ents.Subscriptions[0], proxy.AccessPolicy{}, h.clock.Now()) {
		t.Error("a canceled subscription still grants")
	}
}

func TestSyncCustomer_PastDueKeepsFirstSeenTime(t *testing.T) {
	h := newHarness(t)
	sub := withActiveAda(h)
	h.stripe.setSubStatus(sub, "past_due")
	first := h.clock.Now()
	if err := h.b.SyncCustomer(t.Context(), "cus_1", ""); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(3 * time.Hour)
	if err := h.b.SyncCustomer(t.Context(), "cus_1", ""); err != nil {
		t.Fatal(err)
	}
	ents, _ := h.cache.last(userAda())
	got := ents.Subscriptions[0]
	if !got.PastDueSince.Equal(first) || !got.SyncedAt.Equal(first.Add(3*time.Hour)) {
		t.Errorf("PastDueSince %v SyncedAt %v, want %v and 3h later", got.PastDueSince, got.SyncedAt, first)
	}
	if proxy.Grants(&got, proxy.AccessPolicy{PastDueGrace: time.Hour}, h.clock.Now()) {
		t.Error("past_due beyond a 1h grace counted from first sight still grants")
	}
}

func TestSyncCustomer_MapsPricesToPlans(t *testing.T) {
	h := newHarness(t)
	h.stripe.addCustomer("cus_1", "", nil)
	h.link(userAda(), "cus_1")
	h.stripe.addSub(fakeSub{ID: "sub_y", Customer: "cus_1", Status: "active", Prices: []string{"price_pro_yearly", "price_fee"},
		CancelAtPeriodEnd: true, TrialEnd: 1_800_000_000})
	h.stripe.addSub(fakeSub{ID: "sub_z", Customer: "cus_1", Status: "active", Prices: []string{"price_unknown"}})
	if err := h.b.SyncCustomer(t.Context(), "cus_1", "evt_9"); err != nil {
		t.Fatal(err)
	}
	now := h.clock.Now()
	want := []proxy.Subscription{
		{ID: "sub_z", CustomerID: "cus_1", Status: "active", PriceIDs: []string{"price_unknown"}, Plan: "",
			CurrentPeriodEnd: time.Unix(1_900_000_000, 0).UTC(), SyncedAt: now},
		{ID: "sub_y", CustomerID: "cus_1", Status: "active", PriceIDs: []string{"price_pro_yearly"}, Plan: "pro",
			CurrentPeriodEnd: time.Unix(1_900_000_000, 0).UTC(), TrialEnd: time.Unix(1_800_000_000, 0).UTC(),
			CancelAtPeriodEnd: true, SyncedAt: now},
	}
	if diff := cmp.Diff(want, h.store.state("cus_1").Subscriptions); diff != "" {
		t.Errorf("subscriptions (-want +got):\n%s", diff)
	}
	if !h.store.processed("evt_9") {
		t.Error("event ID not committed with the state")
	}
}

func TestSyncCustomer_ListsEveryPage(t *testing.T) {
	h := newHarness(t)
	h.stripe.addCustomer("cus_1", "", nil)
	h.link(userAda(), "cus_1")
	for range 205 {
		h.stripe.addSub(fakeSub{Customer: "cus_1", Status: "canceled", Prices: []string{"price_pro"}})
	}
	if err := h.b.SyncCustomer(t.Context(), "cus_1", ""); err != nil {
		t.Fatal(err)
	}
	if n := len(h.store.state("cus_1").Subscriptions); n != 205 {
		t.Errorf("%d subscriptions committed, want 205", n)
	}
	calls := h.stripe.callsTo("GET", "/v1/subscriptions")
	if len(calls) != 3 {
		t.Fatalf("%d list calls, want 3", len(calls))
	}
	for i, c := range calls {
		if c.Form.Get("customer") != "cus_1" || c.Form.Get("status") != "all" || c.Form.Get("limit") != "100" {
			t.Errorf("call %d: %v", i, c.Form)
		}
		if (i > 0) != c.Form.Has("starting_after") {
			t.Errorf("call %d starting_after = %q", i, c.Form.Get("starting_after"))
		}
	}
}

func TestSyncCustomer_ConcurrentSyncsAndWebhooksSerialise(t *testing.T) {
	h := newHarness(t)
	sub := withActiveAda(h)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if i%2 == 0 {
				_ = h.b.SyncCustomer(t.Context(), "cus_1", "")
				return
			}
			h.deliver(event(fmt.Sprintf("evt_%d", i), "invoice.paid", map[string]any{"id": "in_1", "object": "invoice", "customer": "cus_1"}))
		})
		if i == 3 {
			h.stripe.setSubStatus(sub, "canceled")
		}
	}
	wg.Wait()
	if err := h.b.SyncCustomer(t.Context(), "cus_1", ""); err != nil {
		t.Fatal(err)
	}
	if ents, _ := h.cache.last(userAda()); statuses(ents)[sub] != proxy.StatusCanceled {
		t.Errorf("cache = %v", statuses(ents))
	}
	if n := h.b.locks.size(); n != 0 {
		t.Errorf("%d locks left behind", n)
	}
}

func TestLocks_WaitRespectsContext(t *testing.T) {
	var l keyedLocks
	unlock, err := l.lock(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, err := l.lock(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second lock: %v", err)
	}
	unlock()
	unlock() // idempotent
	if l.size() != 0 {
		t.Errorf("size = %d", l.size())
	}
}

// seedAccount creates n customers cus_a000… each linked to user_… with one
// or two subscriptions, created interleaved so a customer spans pages.
func seedAccount(h *harness, n int) {
	for i := range n {
		id := fmt.Sprintf("cus_a%03d", i)
		h.stripe.addCustomer(id, "", nil)
		h.link(proxy.Subject{Kind: proxy.SubjectUser, ID: fmt.Sprintf("user_%03d", i)}, id)
		h.stripe.addSub(fakeSub{ID: fmt.Sprintf("sub_%03d_old", i), Customer: id, Status: "canceled", Prices: []string{"price_pro"}})
	}
	for i := range n {
		if i%2 == 0 {
			h.stripe.addSub(fakeSub{ID: fmt.Sprintf("sub_%03d_new", i), Customer: fmt.Sprintf("cus_a%03d", i), Status: "active", Prices: []string{"price_pro"}})
		}
	}
}

func TestSyncAll_PaginatesAndCommitsWholeCustomers(t *testing.T) {
	h := newHarness(t)
	seedAccount(h, 150) // 225 subscriptions: 3 pages; every even customer on two pages
	n, err := h.b.SyncAll(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != 150 {
		t.Errorf("n = %d, want 150", n)
	}
	calls := h.stripe.callsTo("GET", "/v1/subscriptions")
	if len(calls) != 3 {
		t.Fatalf("%d list calls, want 3 (not one per customer)", len(calls))
	}
	for i, c := range calls {
		if c.Form.Get("status") != "all" || c.Form.Get("limit") != "100" || c.Form.Get("expand[0]") != "data.customer" || c.Form.Has("customer") {
			t.Errorf("call %d: %v", i, c.Form)
		}
	}
	if n := len(h.stripe.callsTo("GET", "/v1/customers/")); n != 0 {
		t.Errorf("%d customer fetches; the listing expands customers", n)
	}
	for _, i := range []int{0, 1, 74, 148} {
		ents, ok := h.cache.last(proxy.Subject{Kind: proxy.SubjectUser, ID: fmt.Sprintf("user_%03d", i)})
		want := map[string]proxy.SubscriptionStatus{fmt.Sprintf("sub_%03d_old", i): proxy.StatusCanceled}
		if i%2 == 0 {
			want[fmt.Sprintf("sub_%03d_new", i)] = proxy.StatusActive
		}
		if diff := cmp.Diff(want, statuses(ents)); !ok || diff != "" {
			t.Errorf("user_%03d (-want +got):\n%s", i, diff)
		}
	}
	if c, _ := h.store.Cursor(t.Context(), CursorSyncAll); c != "" {
		t.Errorf("cursor left at %q after a full run", c)
	}
}

func TestSyncAll_ResumesFromCursor(t *testing.T) {
	h := newHarness(t)
	seedAccount(h, 60)
	_ = h.store.SetCursor(t.Context(), CursorSyncAll, "cus_a039")
	n, err := h.b.SyncAll(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != 20 {
		t.Errorf("n = %d, want 20 (cus_a040…cus_a059)", n)
	}
	if _, ok := h.cache.last(proxy.Subject{Kind: proxy.SubjectUser, ID: "user_039"}); ok {
		t.Error("resumed run redid a customer before the cursor")
	}
	if _, ok := h.cache.last(proxy.Subject{Kind: proxy.SubjectUser, ID: "user_040"}); !ok {
		t.Error("resumed run skipped the customer after the cursor")
	}
}

func TestSyncAll_FailureSavesCursorAndNextRunResumes(t *testing.T) {
	h := newHarness(t)
	seedAccount(h, 60)
	h.store.failCommitAt = 31 // the 31st customer's commit fails
	n, err := h.b.SyncAll(t.Context())
	if err == nil || n != 30 {
		t.Fatalf("n = %d, err = %v; want 30 and an error", n, err)
	}
	if c, _ := h.store.Cursor(t.Context(), CursorSyncAll); c != "cus_a029" {
		t.Errorf("cursor = %q, want cus_a029", c)
	}
	n, err = h.b.SyncAll(t.Context())
	if err != nil || n != 30 {
		t.Errorf("second run: n = %d, err = %v; want the other 30", n, err)
	}
	if c, _ := h.store.Cursor(t.Context(), CursorSyncAll); c != "" {
		t.Errorf("cursor = %q after finishing", c)
	}
}

func TestSyncAll_BacksOffOnRateLimit(t *testing.T) {
	h := newHarness(t)
	seedAccount(h, 10)
	h.stripe.fail("GET", "/v1/subscriptions", http.StatusTooManyRequests, "rate_limit", 3)
	n, err := h.b.SyncAll(t.Context())
	if err != nil || n != 10 {
		t.Fatalf("n = %d, err = %v", n, err)
	}
	h.sleepMu.Lock()
	defer h.sleepMu.Unlock()
	if len(h.sleeps) < 3 {
		t.Errorf("slept %d times, want a backoff per 429", len(h.sleeps))
	}
	if n := len(h.stripe.callsTo("GET", "/v1/subscriptions")); n != 4 {
		t.Errorf("%d list calls, want 3 refused + 1", n)
	}
}

func TestSyncAll_DoesNotOverwriteNewerWebhookState(t *testing.T) {
	h := newHarness(t)
	seedAccount(h, 150)
	// While the listing runs (page 2), cus_a000 is cancelled and a webhook
	// syncs it: the sweep's page 1 still says active, and must not win.
	var fired atomic.Bool
	h.stripe.setHook(func(method, path string) {
		if method != "GET" || path != "/v1/subscriptions" || len(h.stripe.callsTo("GET", "/v1/subscriptions")) != 1 {
			return
		}
		if fired.CompareAndSwap(false, true) { // the webhook's own list call comes through here too
			h.stripe.setSubStatus("sub_000_new", "canceled")
			if rec := h.deliver(event("evt_w", "customer.subscription.deleted", subObject("sub_000_new", "cus_a000", "canceled"))); rec.Code != 200 {
				t.Errorf("webhook: %d", rec.Code)
			}
		}
	})
	if _, err := h.b.SyncAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	ents, _ := h.cache.last(proxy.Subject{Kind: proxy.SubjectUser, ID: "user_000"})
	if got := statuses(ents)["sub_000_new"]; got != proxy.StatusCanceled {
		t.Errorf("sub_000_new = %s after the sweep, want canceled", got)
	}
}

func TestSyncAll_AdoptsByMetadataAndHandlesDeletedCustomers(t *testing.T) {
	h := newHarness(t)
	h.stripe.addCustomer("cus_app", "", map[string]string{MetaOrgID: "org_acme"})
	h.stripe.addSub(fakeSub{Customer: "cus_app", Status: "active", Prices: []string{"price_team"}})
	h.stripe.addCustomer("cus_del", "", nil)
	h.link(userAda(), "cus_del")
	h.stripe.addSub(fakeSub{Customer: "cus_del", Status: "canceled", Prices: []string{"price_pro"}})
	h.stripe.deleteCustomer("cus_del")
	if _, err := h.b.SyncAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ents, ok := h.cache.last(orgAcme()); !ok || ents.Subscriptions[0].Plan != "team" {
		t.Errorf("org not adopted: %v", ents)
	}
	if st := h.store.state("cus_del"); !st.Deleted || len(st.Subscriptions) != 0 {
		t.Errorf("deleted customer state = %+v", st)
	}
}

func TestReadyAndPrices(t *testing.T) {
	h := newHarness(t)
	if err := h.b.Ready(t.Context()); err != nil {
		t.Errorf("Ready: %v", err)
	}
	if err := h.b.RefreshPrices(t.Context()); err != nil {
		t.Errorf("RefreshPrices: %v", err)
	}
	if p, ok := h.b.Price("price_pro"); !ok || p.Amount != 1200 || p.Interval != "month" || p.Currency != "usd" {
		t.Errorf("price_pro = %+v, %v", p, ok)
	}
	if p, ok := h.b.Price("price_fee"); !ok || p.Interval != "" {
		t.Errorf("price_fee = %+v, %v", p, ok)
	}

	bad := newHarness(t, func(c *Config) {
		c.Plans = []proxy.Plan{{Key: "x", Prices: []string{"price_fee", "price_nope"}, TrialFeePrice: "price_pro"}}
	})
	// Readiness checks the key against the configured prices: one it
	// cannot see says the key is another account's or mode's.
	if err := bad.b.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "price_nope") || strings.Contains(err.Error(), "price_fee") {
		t.Errorf("Ready with a missing price: %v", err)
	}
	err := bad.b.RefreshPrices(t.Context())
	for _, want := range []string{"price_fee is one-time", "price_nope", "price_pro is a trial fee but recurring"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("RefreshPrices error %v, want it to mention %q", err, want)
		}
	}

	bad.stripe.fail("GET", "/v1/prices", 500, "", -1)
	if err := bad.b.Ready(t.Context()); !errors.Is(err, proxy.ErrStripeUnavail) {
		t.Errorf("Ready with Stripe down: %v", err)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestNew_Validates(t *testing.T) {
	h := newHarness(t)
	for name, mod := range map[string]func(*Config){
		"no key":      func(c *Config) { c.SecretKey = "" },
		"no store":    func(c *Config) { c.Store = nil },
		"no public":   func(c *Config) { c.PublicURL = nil },
		"bad api url": func(c *Config) { c.APIURL = "::" },
	} {
		cfg := Config{SecretKey: "sk_test_1", Store: h.store, PublicURL: mustURL("https://x.test"), APIURL: h.stripe.URL()}
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestSyncAll_OneAtATime(t *testing.T) {
	h := newHarness(t)
	seedAccount(h, 3)
	var fired atomic.Bool
	var second error
	h.stripe.setHook(func(method, path string) {
		if path == "/v1/subscriptions" && fired.CompareAndSwap(false, true) {
			_, second = h.b.SyncAll(t.Context())
		}
	})
	if _, err := h.b.SyncAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(second, ErrSyncRunning) {
		t.Errorf("concurrent SyncAll: %v, want ErrSyncRunning", second)
	}
}

func TestBucket_PacesAfterBurst(t *testing.T) {
	b := newBucket(Lane{Rate: 20, Burst: 2})
	now := time.Now()
	b.now = func() time.Time { return now }
	if first, second := b.reserve(1), b.reserve(1); first != 0 || second != 0 {
		t.Fatal("burst not available")
	}
	if d := b.reserve(1); d != 50*time.Millisecond {
		t.Errorf("third token waits %v, want 50ms", d)
	}
	b.cancel(1)
	b.drain()
	if d := b.reserve(2); d != 100*time.Millisecond {
		t.Errorf("after drain, two tokens wait %v, want 100ms", d)
	}
	now = now.Add(time.Second) // refills to the burst, no more
	if d := b.reserve(2); d != 0 {
		t.Errorf("after a second: wait %v, want 0", d)
	}
}

// Only Stripe's resource_missing says the key cannot see a customer; any
// other 404 (a proxy, a wrong api_url) is a plain failure, and neither
// changes what is stored.
func TestSync_Only404ResourceMissingIsAnUnseenCustomer(t *testing.T) {
	obs := &fakeObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	withActiveAda(h)
	if err := h.b.SyncCustomer(t.Context(), "cus_1", ""); err != nil {
		t.Fatal(err)
	}
	h.stripe.fail("GET", "/v1/customers/", http.StatusNotFound, "", 1)
	err := h.b.SyncCustomer(t.Context(), "cus_1", "")
	if err == nil || errors.Is(err, ErrCustomerUnseen) || obs.count(AnomalyCustomerUnseen) != 0 {
		t.Errorf("plain 404: %v, anomalies %v", err, obs.anomalies)
	}
	h.stripe.fail("GET", "/v1/customers/", http.StatusNotFound, "resource_missing", 1)
	if err := h.b.SyncCustomer(t.Context(), "cus_1", ""); !errors.Is(err, ErrCustomerUnseen) || obs.count(AnomalyCustomerUnseen) != 1 {
		t.Errorf("resource_missing: %v, anomalies %v", err, obs.anomalies)
	}
	if st := h.store.state("cus_1"); st.Deleted || len(st.Subscriptions) != 1 {
		t.Errorf("state %+v, want as it was", st)
	}
}

// Two live subscriptions to the plans on one customer (two checkouts that
// completed in the same instant, or one made elsewhere) are logged and
// counted; both still count for access.
func TestSync_SeveralLiveSubscriptionsAreCounted(t *testing.T) {
	obs := &fakeObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	withActiveAda(h)
	h.stripe.addSub(fakeSub{Customer: "cus_1", Status: "trialing", Prices: []string{"price_other"}})
	h.stripe.addSub(fakeSub{Customer: "cus_1", Status: "canceled", Prices: []string{"price_pro"}})
	if err := h.b.SyncCustomer(t.Context(), "cus_1", ""); err != nil {
		t.Fatal(err)
	}
	if obs.count(AnomalySeveralLiveSubscriptions) != 1 || len(h.store.state("cus_1").Subscriptions) != 3 {
		t.Errorf("anomalies %v, state %+v", obs.anomalies, h.store.state("cus_1"))
	}
}

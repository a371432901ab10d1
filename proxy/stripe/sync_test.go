package stripe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	stripe "github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
)

func TestSyncCustomer_CancelledSubscriptionReachesCacheAsCanceled(t *testing.T) {
	h := newHarness(t)
	cus, sub := withActiveAda(h)
	if err := h.b.SyncCustomer(t.Context(), cus, ""); err != nil {
		t.Fatal(err)
	}
	if ents, _ := h.cache.last(userAda()); statuses(ents)[sub] != proxy.StatusActive {
		t.Fatalf("first sync: %v", statuses(ents))
	}
	h.stripe.setStatus(sub, "canceled")
	if err := h.b.SyncCustomer(t.Context(), cus, ""); err != nil {
		t.Fatal(err)
	}
	ents, _ := h.cache.last(userAda())
	if statuses(ents)[sub] != proxy.StatusCanceled {
		t.Errorf("cache = %v, want canceled", statuses(ents))
	}
	if proxy.Grants(&ents.Subscriptions[0], proxy.AccessPolicy{}, h.clock.Now()) {
		t.Error("a canceled subscription still grants")
	}
	// When it ended, for the account page to say.
	if got, want := ents.Subscriptions[0].EndedAt, time.Unix(h.stripe.subscription(sub).EndedAt, 0); got.IsZero() || !got.Equal(want) {
		t.Errorf("ended at %v, want %v", got, want)
	}
}

func TestSyncCustomer_PastDueKeepsFirstSeenTime(t *testing.T) {
	h := newHarness(t)
	cus, sub := withActiveAda(h)
	h.stripe.setStatus(sub, "past_due")
	first := h.clock.Now()
	if err := h.b.SyncCustomer(t.Context(), cus, ""); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(3 * time.Hour)
	if err := h.b.SyncCustomer(t.Context(), cus, ""); err != nil {
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
	cus := h.stripe.customer("", nil)
	h.link(userAda(), cus)
	// A yearly pro trial whose fee was paid up front, set to end with the
	// trial; then a price no plan names.
	p := sessionParams(cus, "user_ada", "price_pro_yearly", "price_fee")
	p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(7)}
	y := h.stripe.subscribe(p)
	h.stripe.cancelAtPeriodEnd(y)
	z := h.stripe.subscribeWith(cus, "active", "price_unknown")
	if err := h.b.SyncCustomer(t.Context(), cus, "evt_9"); err != nil {
		t.Fatal(err)
	}
	now := h.clock.Now()
	sy, sz := h.stripe.subscription(y), h.stripe.subscription(z)
	want := []proxy.Subscription{ // newest first, as Stripe lists them
		{ID: z, CustomerID: cus, Status: "active", PriceIDs: []string{"price_unknown"}, Plan: "",
			CurrentPeriodEnd: unixTime(sz.CurrentPeriodEnd), BillingCycleAnchor: unixTime(sz.BillingCycleAnchor), SyncedAt: now,
			Amount: 700, Currency: "usd", Interval: "month", IntervalCount: 1, Created: unixTime(sz.Created)},
		// The one-time trial fee is no part of what it costs.
		{ID: y, CustomerID: cus, Status: "trialing", PriceIDs: []string{"price_pro_yearly"}, Plan: "pro",
			CurrentPeriodEnd: unixTime(sy.CurrentPeriodEnd), BillingCycleAnchor: unixTime(sy.BillingCycleAnchor), TrialEnd: unixTime(sy.TrialEnd),
			CancelAtPeriodEnd: true, SyncedAt: now,
			Amount: 12000, Currency: "usd", Interval: "year", IntervalCount: 1, Created: unixTime(sy.Created)},
	}
	if diff := cmp.Diff(want, h.store.subscriptions(userAda())); diff != "" {
		t.Errorf("subscriptions (-want +got):\n%s", diff)
	}
	if !h.store.processed("evt_9") {
		t.Error("event ID not committed with the state")
	}
}

func TestSyncCustomer_ListsEveryPage(t *testing.T) {
	h := newHarness(t)
	cus := h.stripe.customer("", nil)
	h.link(userAda(), cus)
	for range 205 {
		h.stripe.subscribeWith(cus, "canceled", "price_pro")
	}
	if err := h.b.SyncCustomer(t.Context(), cus, ""); err != nil {
		t.Fatal(err)
	}
	if n := len(h.store.subscriptions(userAda())); n != 205 {
		t.Errorf("%d subscriptions committed, want 205", n)
	}
	calls := h.calls.to("GET", "/v1/subscriptions")
	if len(calls) != 3 {
		t.Fatalf("%d list calls, want 3", len(calls))
	}
	for i, c := range calls {
		if c.Form.Get("customer") != cus || c.Form.Get("status") != "all" || c.Form.Get("limit") != "100" {
			t.Errorf("call %d: %v", i, c.Form)
		}
		if (i > 0) != c.Form.Has("starting_after") {
			t.Errorf("call %d starting_after = %q", i, c.Form.Get("starting_after"))
		}
	}
}

func TestSyncCustomer_ConcurrentSyncsAndWebhooksSerialise(t *testing.T) {
	h := newHarness(t)
	cus, sub := withActiveAda(h)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if i%2 == 0 {
				_ = h.b.SyncCustomer(t.Context(), cus, "")
				return
			}
			h.deliver(event(fmt.Sprintf("evt_%d", i), "invoice.paid", map[string]any{"id": "in_1", "object": "invoice", "customer": cus}))
		})
		if i == 3 {
			h.stripe.setStatus(sub, "canceled")
		}
	}
	wg.Wait()
	if err := h.b.SyncCustomer(t.Context(), cus, ""); err != nil {
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

// seeded is an account seedAccount made: customer i is linked to
// user_<i>, holds the canceled subscription old[i] and, for an even i, the
// active subscription newer[i].
type seeded struct {
	customers  []string
	old, newer []string
}

// user is the subject of customer i.
func (s *seeded) user(i int) proxy.Subject {
	return proxy.Subject{Kind: proxy.SubjectUser, ID: fmt.Sprintf("user_%03d", i)}
}

// byID is the customers' indexes in customer-ID order, the order SyncAll
// commits them in.
func (s *seeded) byID() []int {
	idx := make([]int, len(s.customers))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(s.customers[a], s.customers[b]) })
	return idx
}

// seedAccount creates n customers, each with one or two subscriptions,
// created interleaved so a customer spans pages of the account-wide list.
func seedAccount(h *harness, n int) *seeded {
	s := &seeded{customers: make([]string, n), old: make([]string, n), newer: make([]string, n)}
	for i := range n {
		s.customers[i] = h.stripe.customer("", nil)
		h.link(s.user(i), s.customers[i])
		s.old[i] = h.stripe.subscribeWith(s.customers[i], "canceled", "price_pro")
	}
	for i := range n {
		if i%2 == 0 {
			s.newer[i] = h.stripe.subscribeWith(s.customers[i], "active", "price_pro")
		}
	}
	return s
}

func TestSyncAll_PaginatesAndCommitsWholeCustomers(t *testing.T) {
	h := newHarness(t)
	acct := seedAccount(h, 150) // 225 subscriptions: 3 pages; every even customer on two pages
	n, err := h.b.SyncAll(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != 150 {
		t.Errorf("n = %d, want 150", n)
	}
	calls := h.calls.to("GET", "/v1/subscriptions")
	if len(calls) != 3 {
		t.Fatalf("%d list calls, want 3 (not one per customer)", len(calls))
	}
	for i, c := range calls {
		if c.Form.Get("status") != "all" || c.Form.Get("limit") != "100" || c.Form.Get("expand[0]") != "data.customer" || c.Form.Has("customer") {
			t.Errorf("call %d: %v", i, c.Form)
		}
	}
	if n := len(h.calls.to("GET", "/v1/customers/")); n != 0 {
		t.Errorf("%d customer fetches; the listing expands customers", n)
	}
	for _, i := range []int{0, 1, 74, 148} {
		ents, ok := h.cache.last(acct.user(i))
		want := map[string]proxy.SubscriptionStatus{acct.old[i]: proxy.StatusCanceled}
		if i%2 == 0 {
			want[acct.newer[i]] = proxy.StatusActive
		}
		if diff := cmp.Diff(want, statuses(ents)); !ok || diff != "" {
			t.Errorf("user_%03d (-want +got):\n%s", i, diff)
		}
	}
	if c, _ := h.store.Cursor(t.Context(), CursorSyncAll); c != "" {
		t.Errorf("cursor left at %q after a full run", c)
	}
}

// Ensure a reconcile cut short (its second page fails) saved the last page
// it finished, and the next run, by a Billing started again on the same
// store, lists only what comes after it; a customer the first run
// committed from one page and the second finds another subscription of is
// marked dirty, and once the worker has read it every customer is as
// Stripe has it.
func TestSyncAll_ResumesAfterARestartFromTheLastPageItFinished(t *testing.T) {
	obs := &testObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	acct := seedAccount(h, 150) // 225 subscriptions: 3 pages
	var lists atomic.Int32
	h.calls.setHook(func(method, path string) {
		if method == "GET" && path == "/v1/subscriptions" && lists.Add(1) == 2 {
			h.calls.fail("GET", "/v1/subscriptions", 500, "", 1)
		}
	})
	n1, err := h.b.SyncAll(t.Context())
	if err == nil {
		t.Fatal("first run: no error, want the second page's failure")
	}
	first := h.calls.to("GET", "/v1/subscriptions")
	cursor, _ := h.store.Cursor(t.Context(), CursorSyncAll)
	if !strings.HasPrefix(cursor, "sub_") {
		t.Fatalf("cursor after a failed run = %q, want page 1's last subscription", cursor)
	}
	if p := obs.lastReconcile(); p.pages != 1 || p.subs != 100 || p.running {
		t.Errorf("progress after the failure: %+v, want 1 page, 100 subscriptions, not running", p)
	}

	h.clock.Advance(time.Hour)
	restarted := h.billing(t, h.cfg) // a new process on the same store
	n2, err := restarted.SyncAll(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	resumed := h.calls.to("GET", "/v1/subscriptions")[len(first):]
	if len(resumed) != 2 || resumed[0].Form.Get("starting_after") != cursor {
		t.Fatalf("resumed with %d list calls, the first after %q; want 2, after %q", len(resumed), resumed[0].Form.Get("starting_after"), cursor)
	}
	if c, _ := h.store.Cursor(t.Context(), CursorSyncAll); c != "" {
		t.Errorf("cursor left at %q after a full run", c)
	}
	p := obs.lastReconcile()
	if p.pages != 2 || p.subs != 125 || p.running || !p.completed.Equal(h.clock.Now()) {
		t.Errorf("progress after the resumed run: %+v, want 2 pages, 125 subscriptions, completed at %v", p, h.clock.Now())
	}
	if n1+n2 < 150 {
		t.Errorf("the runs reconciled %d + %d customers, want all 150 at least once", n1, n2)
	}
	h.b = restarted
	h.drainDirty(t)
	for i := range acct.customers {
		want := map[string]proxy.SubscriptionStatus{acct.old[i]: proxy.StatusCanceled}
		if i%2 == 0 {
			want[acct.newer[i]] = proxy.StatusActive
		}
		if diff := cmp.Diff(want, statuses(&proxy.Entitlements{Subscriptions: h.store.subscriptions(acct.user(i))})); diff != "" {
			t.Errorf("user_%03d (-Stripe +store):\n%s", i, diff)
		}
	}
}

// Ensure a reconcile leaves customers the store has right alone and marks
// the one Stripe changed without a webhook, without a call per customer.
func TestSyncAll_MarksDriftedCustomersOnly(t *testing.T) {
	h := newHarness(t)
	acct := seedAccount(h, 10)
	if _, err := h.b.SyncAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.stripe.setStatus(acct.newer[4], "past_due") // no webhook
	before := len(h.calls.all())
	n, err := h.b.SyncAll(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("second run: n = %d, %v; want the one drifted customer", n, err)
	}
	if calls := h.calls.all()[before:]; len(calls) != 1 {
		t.Errorf("second run made %d calls, want the one list page", len(calls))
	}
	if bl := h.backlog(); bl.Customers != 1 {
		t.Fatalf("backlog = %+v, want the drifted customer", bl)
	}
	h.drainDirty(t)
	if got := statuses(&proxy.Entitlements{Subscriptions: h.store.subscriptions(acct.user(4))})[acct.newer[4]]; got != proxy.StatusPastDue {
		t.Errorf("after the worker: %s, want past_due", got)
	}
}

func TestSyncAll_BacksOffOnRateLimit(t *testing.T) {
	h := newHarness(t)
	seedAccount(h, 10)
	h.calls.fail("GET", "/v1/subscriptions", http.StatusTooManyRequests, "rate_limit", 3)
	n, err := h.b.SyncAll(t.Context())
	if err != nil || n != 10 {
		t.Fatalf("n = %d, err = %v", n, err)
	}
	h.sleepMu.Lock()
	defer h.sleepMu.Unlock()
	if len(h.sleeps) < 3 {
		t.Errorf("slept %d times, want a backoff per 429", len(h.sleeps))
	}
	if n := len(h.calls.to("GET", "/v1/subscriptions")); n != 4 {
		t.Errorf("%d list calls, want 3 refused + 1", n)
	}
}

func TestSyncAll_DoesNotOverwriteNewerWebhookState(t *testing.T) {
	h := newHarness(t)
	acct := seedAccount(h, 150)
	// While the listing runs (page 2), customer 0's newer subscription
	// (on page 1) is cancelled and a webhook syncs it: the sweep's page 1
	// still says active, and must not win.
	cus, sub := acct.customers[0], acct.newer[0]
	var fired atomic.Bool
	h.calls.setHook(func(method, path string) {
		if method != "GET" || path != "/v1/subscriptions" || len(h.calls.to("GET", "/v1/subscriptions")) != 1 {
			return
		}
		if fired.CompareAndSwap(false, true) { // the webhook's own list call comes through here too
			h.stripe.setStatus(sub, "canceled")
			if rec := h.deliver(event("evt_w", "customer.subscription.deleted", subObject(sub, cus, "canceled"))); rec.Code != 200 {
				t.Errorf("webhook: %d", rec.Code)
			}
		}
	})
	if _, err := h.b.SyncAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !fired.Load() {
		t.Fatal("the listing had no second page")
	}
	ents, _ := h.cache.last(acct.user(0))
	if got := statuses(ents)[sub]; got != proxy.StatusCanceled {
		t.Errorf("%s = %s after the sweep, want canceled", sub, got)
	}
}

func TestSyncAll_AdoptsByMetadataAndHandlesDeletedCustomers(t *testing.T) {
	h := newHarness(t)
	cusApp := h.stripe.customer("", map[string]string{MetaOrgID: "org_acme"})
	h.stripe.subscribeWith(cusApp, "active", "price_team")
	cusDel := h.stripe.customer("", nil)
	h.link(userAda(), cusDel)
	h.stripe.subscribeWith(cusDel, "canceled", "price_pro")
	h.stripe.deleteCustomer(cusDel)
	if _, err := h.b.SyncAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ents, ok := h.cache.last(orgAcme()); !ok || ents == nil || len(ents.Subscriptions) != 1 || ents.Subscriptions[0].Plan != "team" {
		t.Errorf("org not adopted: %v", ents)
	}
	if got, _ := h.store.CustomerOf(t.Context(), orgAcme()); got != cusApp {
		t.Errorf("org_acme's customer = %q, want %q", got, cusApp)
	}
	if st, ok := h.store.lastCommit(cusDel); !ok || !st.Deleted || len(st.Subscriptions) != 0 {
		t.Errorf("deleted customer committed as %+v (%v)", st, ok)
	}
	if got, _ := h.store.CustomerOf(t.Context(), userAda()); got != "" {
		t.Errorf("user_ada still has the deleted customer %q", got)
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

	bad.calls.fail("GET", "/v1/prices", 500, "", -1)
	if err := bad.b.Ready(t.Context()); !errors.Is(err, proxy.ErrStripeUnavail) {
		t.Errorf("Ready with Stripe down: %v", err)
	}
}

func TestNew_Validates(t *testing.T) {
	h := newHarness(t)
	for name, mod := range map[string]func(*Config){
		"no key":      func(c *Config) { c.SecretKey = "" },
		"no store":    func(c *Config) { c.Store = nil },
		"no public":   func(c *Config) { c.PublicURL = nil },
		"bad api url": func(c *Config) { c.APIURL = "::" },
	} {
		cfg := Config{SecretKey: "sk_test_1", Store: h.store, PublicURL: mustURL("https://x.test"), APIURL: h.cfg.APIURL}
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
	h.calls.setHook(func(method, path string) {
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
	obs := &testObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	cus, _ := withActiveAda(h)
	if err := h.b.SyncCustomer(t.Context(), cus, ""); err != nil {
		t.Fatal(err)
	}
	before := h.store.subscriptions(userAda())
	// A proxy or a wrong api_url answers 404 without Stripe's code.
	h.calls.fail("GET", "/v1/customers/", http.StatusNotFound, "", 1)
	err := h.b.SyncCustomer(t.Context(), cus, "")
	if err == nil || errors.Is(err, ErrCustomerUnseen) || obs.count(AnomalyCustomerUnseen) != 0 {
		t.Errorf("plain 404: %v, anomalies %v", err, obs.anomalies)
	}
	h.calls.fail("GET", "/v1/customers/", http.StatusNotFound, "resource_missing", 1)
	if err := h.b.SyncCustomer(t.Context(), cus, ""); !errors.Is(err, ErrCustomerUnseen) || obs.count(AnomalyCustomerUnseen) != 1 {
		t.Errorf("resource_missing: %v, anomalies %v", err, obs.anomalies)
	}
	if who, ok := h.store.subjectOf(cus); !ok || who != userAda() {
		t.Errorf("customer linked to %v, %v; want it kept", who, ok)
	}
	if diff := cmp.Diff(before, h.store.subscriptions(userAda())); len(before) != 1 || diff != "" {
		t.Errorf("stored subscriptions changed (-before +after):\n%s", diff)
	}
}

// Two live subscriptions to the plans on one customer (two checkouts that
// completed in the same instant, or one made elsewhere) are logged and
// counted; both still count for access.
func TestSync_SeveralLiveSubscriptionsAreCounted(t *testing.T) {
	obs := &testObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	cus, _ := withActiveAda(h)
	h.stripe.subscribeWith(cus, "trialing", "price_other")
	h.stripe.subscribeWith(cus, "canceled", "price_pro")
	if err := h.b.SyncCustomer(t.Context(), cus, ""); err != nil {
		t.Fatal(err)
	}
	if subs := h.store.subscriptions(userAda()); obs.count(AnomalySeveralLiveSubscriptions) != 1 || len(subs) != 3 {
		t.Errorf("anomalies %v, stored %+v", obs.anomalies, subs)
	}
}

// A subscription's prices are its recurring items' (a legacy plan counts
// as one): a one-time price among its items names no plan. Neither Stripe
// nor the sandbox puts one there, so the mapping is asked directly.
func TestSubscription_OnlyRecurringItemsArePrices(t *testing.T) {
	h := newHarness(t)
	now := h.clock.Now()
	s := &stripe.Subscription{ID: "sub_1", Status: stripe.SubscriptionStatusActive, Items: &stripe.SubscriptionItemList{
		Data: []*stripe.SubscriptionItem{
			{Price: &stripe.Price{ID: "price_fee", Type: stripe.PriceTypeOneTime}},
			nil,
			{Plan: &stripe.Plan{ID: "price_other"}},
			{Price: &stripe.Price{ID: "price_pro_yearly", Type: stripe.PriceTypeRecurring}},
			{Price: &stripe.Price{ID: "price_pro_yearly", Type: stripe.PriceTypeRecurring}},
		},
	}}
	got := h.b.subscription(s, "cus_1", now)
	want := proxy.Subscription{ID: "sub_1", CustomerID: "cus_1", Status: proxy.StatusActive,
		PriceIDs: []string{"price_other", "price_pro_yearly"}, Plan: "pro", SyncedAt: now}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mapped (-want +got):\n%s", diff)
	}
}

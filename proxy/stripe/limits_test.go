package stripe

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// spentVisitors leaves the visitors' lane empty for the test's duration
// (it refills at one call in a thousand seconds), with waits allowed up to
// maxWait.
func spentVisitors(h *harness, maxWait time.Duration) {
	h.b.SetPacing(Pacing{Visitors: Lane{Rate: 1e-3, Burst: 1}, MaxWait: maxWait})
	h.b.visitors.drain()
}

// Ensure a webhook's sync is paid from a lane visitors cannot drain: with
// the visitors' lane spent, Checkout is refused at once, without a Stripe
// call, and the webhook still syncs and commits.
func TestPacing_WebhookSyncsWhileVisitorsLaneIsSpent(t *testing.T) {
	h := newHarness(t)
	cus, sub := withActiveAda(h)
	spentVisitors(h, time.Second)

	_, err := h.b.Checkout(t.Context(), proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro")})
	var busy *proxy.BusyError
	if !errors.As(err, &busy) || busy.RetryAfter < time.Hour {
		t.Fatalf("Checkout with the visitors' lane spent: %v, want a BusyError with a Retry-After", err)
	}
	if _, err := h.b.CompleteCheckout(t.Context(), "cs_test_abc", idAda()); !errors.As(err, &busy) {
		t.Errorf("CompleteCheckout with the visitors' lane spent: %v, want a BusyError", err)
	}
	if _, err := h.b.Portal(t.Context(), userAda(), ""); !errors.As(err, &busy) {
		t.Errorf("Portal with the visitors' lane spent: %v, want a BusyError", err)
	}
	if n := len(h.calls.all()); n != 0 {
		t.Fatalf("refused visitors made %d Stripe calls", n)
	}
	if len(h.sleeps) != 0 {
		t.Errorf("refused visitors waited: %v", h.sleeps)
	}

	rec := h.deliver(event("evt_1", "customer.subscription.updated", subObject(sub, cus, "active")))
	if rec.Code != http.StatusOK || !h.store.processed("evt_1") {
		t.Fatalf("webhook while visitors' lane spent: %d, processed %v", rec.Code, h.store.processed("evt_1"))
	}
	if err := h.b.SyncCustomer(t.Context(), cus, ""); err != nil {
		t.Errorf("admin/stale sync while visitors' lane spent: %v", err)
	}
	if _, err := h.b.SyncAll(t.Context()); err != nil {
		t.Errorf("reconcile while visitors' lane spent: %v", err)
	}
}

// Ensure no lock is held while a call waits for the pacer: a Checkout
// waiting for the visitors' lane holds neither the subject's nor the
// customer's lock, so a webhook for the same customer completes meanwhile.
func TestPacing_NoLockHeldWhileWaitingForTheLane(t *testing.T) {
	h := newHarness(t)
	cus, sub := withActiveAda(h)
	h.stripe.setStatus(sub, "canceled") // so Checkout goes on to create a session
	spentVisitors(h, 24*time.Hour)
	waiting, release := make(chan struct{}), make(chan struct{})
	h.b.sleep = func(ctx context.Context, d time.Duration) error {
		close(waiting)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	type result struct {
		res proxy.CheckoutResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := h.b.Checkout(t.Context(), proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro")})
		done <- result{res, err}
	}()
	<-waiting
	if n := h.b.locks.size(); n != 0 {
		t.Errorf("%d locks held while waiting for the pacer", n)
	}
	rec := h.deliver(event("evt_2", "customer.subscription.deleted", subObject(sub, cus, "canceled")))
	if rec.Code != http.StatusOK || !h.store.processed("evt_2") {
		t.Errorf("webhook for the customer of a waiting Checkout: %d", rec.Code)
	}
	close(release)
	r := <-done
	if r.err != nil || r.res.URL == "" || r.res.Portal {
		t.Errorf("Checkout after waiting: %+v, %v", r.res, r.err)
	}
}

// Ensure a 429 met under a lock is not waited out under it: the locks are
// released, the backoff happens, and the locked work runs again.
func TestPacing_RateLimitUnderLockBacksOffWithoutTheLock(t *testing.T) {
	h := newHarness(t)
	cus, sub := withActiveAda(h)
	h.calls.fail("GET", "/v1/subscriptions", http.StatusTooManyRequests, "rate_limit", 1)
	var heldWhileSleeping []int
	h.b.sleep = func(ctx context.Context, d time.Duration) error {
		heldWhileSleeping = append(heldWhileSleeping, h.b.locks.size())
		return nil
	}
	rec := h.deliver(event("evt_3", "customer.subscription.updated", subObject(sub, cus, "active")))
	if rec.Code != http.StatusOK {
		t.Fatalf("webhook after one 429: %d", rec.Code)
	}
	if len(heldWhileSleeping) == 0 {
		t.Fatal("no backoff after the 429")
	}
	for _, n := range heldWhileSleeping {
		if n != 0 {
			t.Errorf("%d locks held while backing off", n)
		}
	}
	if n := len(h.calls.to("GET", "/v1/subscriptions")); n != 2 {
		t.Errorf("%d subscription lists, want the refused one and its retry", n)
	}
}

// Ensure the Checkout return asks Stripe only about IDs of the right form,
// and only once about an ID that is unknown or someone else's.
func TestCompleteCheckout_ChecksTheFormAndRemembersAnswers(t *testing.T) {
	h := newHarness(t)
	grace := h.stripe.openSession(sessionParams(h.stripe.customer("grace@example.com", nil), "user_grace", "price_pro"))
	h.stripe.pay(grace)
	for _, id := range []string{"", "cs_", "cs_test_", "cs_1", "cs_test_a/b", "cs_test_a..b", "cs_test_a%2F", "cs_live_é",
		"sub_123", "CS_TEST_abc", "cs_test_" + string(make([]byte, 300))} {
		if _, err := h.b.CompleteCheckout(t.Context(), id, idAda()); !errors.Is(err, proxy.ErrNotYours) {
			t.Errorf("%q: err = %v, want ErrNotYours", id, err)
		}
	}
	if n := len(h.calls.all()); n != 0 {
		t.Fatalf("malformed session IDs made %d Stripe calls", n)
	}
	for range 5 {
		for _, id := range []string{"cs_test_unknown", grace.ID} {
			if _, err := h.b.CompleteCheckout(t.Context(), id, idAda()); !errors.Is(err, proxy.ErrNotYours) {
				t.Errorf("%q: err = %v, want ErrNotYours", id, err)
			}
		}
	}
	if n := len(h.calls.to("GET", "/v1/checkout/sessions/")); n != 2 {
		t.Errorf("%d session lookups for two IDs asked five times each, want 2", n)
	}
	// The owner is still answered (and looked up each time: the state moves).
	for range 2 {
		if _, err := h.b.CompleteCheckout(t.Context(), grace.ID, idGrace()); err != nil {
			t.Errorf("owner: %v", err)
		}
	}
	if n := len(h.calls.to("GET", "/v1/checkout/sessions/"+grace.ID)); n != 3 {
		t.Errorf("%d lookups of the owner's session, want one for others and one per return of the owner", n)
	}
	// Remembered for an hour, then asked again.
	h.clock.Advance(sessionMemoTTL + time.Second)
	h.b.CompleteCheckout(t.Context(), "cs_test_unknown", idAda())
	if n := len(h.calls.to("GET", "/v1/checkout/sessions/cs_test_unknown")); n != 2 {
		t.Errorf("unknown ID looked up %d times after the memo expired, want 2", n)
	}
}

func TestSessionMemo_IsBounded(t *testing.T) {
	m := newSessionMemo(3, time.Hour)
	now := time.Now()
	for _, id := range []string{"cs_test_a", "cs_test_b", "cs_test_c", "cs_test_d"} {
		m.put(id, "", now)
	}
	if m.cache.Len() != 3 {
		t.Errorf("memo holds %d, want 3", m.cache.Len())
	}
	if _, ok := m.get("cs_test_a", now); ok {
		t.Error("the oldest entry was kept")
	}
}

package postgres

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/postgres/pgtest"
)

// Two replicas sync one customer: A began reading Stripe before B, B's
// fresher read (the cancellation) committed first, then A's older read
// commits. The stored state stays B's, and A's event is still marked
// processed (red team, issue 16: A's "active" undid the cancellation on
// every replica until the next event or reconcile).
func TestCommitCustomer_AnOlderReadDoesNotUndoAFresherOne(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := open(t, func() time.Time { return t0.Add(time.Minute) })
	ctx := t.Context()
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	sub := func(status proxy.SubscriptionStatus) []proxy.Subscription {
		return []proxy.Subscription{{ID: "sub_1", CustomerID: "cus_1", Status: status, PriceIDs: []string{"price_pro"},
			CurrentPeriodEnd: t0.Add(30 * 24 * time.Hour), Created: t0.Add(-time.Hour)}}
	}
	if _, _, err := s.CommitCustomer(ctx, proxy.CustomerState{CustomerID: "cus_1", Subject: ada, Subscriptions: sub(proxy.StatusActive), SyncedAt: t0}, "evt_0"); err != nil {
		t.Fatal(err)
	}
	readA, readB := t0.Add(time.Second), t0.Add(2*time.Second)
	if _, _, err := s.CommitCustomer(ctx, proxy.CustomerState{CustomerID: "cus_1", Subscriptions: sub(proxy.StatusCanceled), SyncedAt: readB}, "evt_b"); err != nil {
		t.Fatal(err)
	}
	who, ents, err := s.CommitCustomer(ctx, proxy.CustomerState{CustomerID: "cus_1", Subscriptions: sub(proxy.StatusActive), SyncedAt: readA}, "evt_a")
	if err != nil {
		t.Fatal(err)
	}
	if who != ada || ents == nil || len(ents.Subscriptions) != 1 || ents.Subscriptions[0].Status != proxy.StatusCanceled {
		t.Errorf("the older read's commit returned %v %+v, want ada's stored, canceled state", who, ents)
	}
	stored, err := s.Entitlements(ctx, ada)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]proxy.SubscriptionStatus{proxy.StatusCanceled}, statuses(stored)); diff != "" {
		t.Errorf("stored after the older read (-want +got):\n%s", diff)
	}
	for _, id := range []string{"evt_a", "evt_b"} {
		if done, err := s.EventProcessed(ctx, id); err != nil || !done {
			t.Errorf("%s processed: %v %v, want true", id, done, err)
		}
	}
	// A read that began later still wins.
	if _, _, err := s.CommitCustomer(ctx, proxy.CustomerState{CustomerID: "cus_1", Subscriptions: sub(proxy.StatusActive), SyncedAt: t0.Add(3 * time.Second)}, "evt_c"); err != nil {
		t.Fatal(err)
	}
	if stored, _ := s.Entitlements(ctx, ada); !cmp.Equal([]proxy.SubscriptionStatus{proxy.StatusActive}, statuses(stored)) {
		t.Errorf("a later read did not commit: %v", statuses(stored))
	}
}

func statuses(e *proxy.Entitlements) []proxy.SubscriptionStatus {
	if e == nil {
		return nil
	}
	var out []proxy.SubscriptionStatus
	for _, s := range e.Subscriptions {
		out = append(out, s.Status)
	}
	return out
}

// A copy goes only into an empty database: one holding nothing but a
// revocation (or keys, organisations, comps, cursors) is not empty (red
// team, issue 16: such a copy failed halfway on a duplicate).
func TestImport_RefusesADatabaseHoldingAnyRecord(t *testing.T) {
	s := open(t, time.Now)
	ctx := t.Context()
	if _, err := s.Import(ctx); err != nil {
		t.Fatalf("an empty store: %v", err)
	}
	if err := s.AddRevocation(ctx, proxy.Revocation{Kind: proxy.RevocationSession, ID: "sess_1", At: time.Now(), Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("a store holding a revocation: %v, want ErrNotEmpty", err)
	}
}

// Two replicas share the database, and A's clock runs an hour ahead. A
// syncs the customer (active), then B begins a later read (canceled) and
// commits it. B's read is the later one by the database's clock, which
// stamps every sync's start (SyncTime), so it is stored: the replicas'
// own clocks never meet (red team: A's clock ahead made B's fresher read
// be dropped as stale while its event was marked processed, so the
// cancellation waited for the next reconcile).
func TestCommitCustomer_ReplicaClocksNeverMeet(t *testing.T) {
	dsn := pgtest.DB(t)
	openAt := func(skew time.Duration) *Store {
		s, err := Open(t.Context(), dsn, Options{Now: func() time.Time { return time.Now().Add(skew) }, Migrate: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := openAt(time.Hour), openAt(0)
	ctx := t.Context()
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	t0 := time.Now()
	sub := func(status proxy.SubscriptionStatus) []proxy.Subscription {
		return []proxy.Subscription{{ID: "sub_1", CustomerID: "cus_1", Status: status, PriceIDs: []string{"price_pro"},
			CurrentPeriodEnd: t0.Add(30 * 24 * time.Hour), Created: t0.Add(-time.Hour)}}
	}
	readA, err := a.SyncTime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.CommitCustomer(ctx, proxy.CustomerState{CustomerID: "cus_1", Subject: ada, Subscriptions: sub(proxy.StatusActive), SyncedAt: readA}, "evt_a"); err != nil {
		t.Fatal(err)
	}
	readB, err := b.SyncTime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !readB.After(readA) {
		t.Fatalf("B's later sync time %v is not after A's %v", readB, readA)
	}
	if _, _, err := b.CommitCustomer(ctx, proxy.CustomerState{CustomerID: "cus_1", Subscriptions: sub(proxy.StatusCanceled), SyncedAt: readB}, "evt_b"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{a, b} {
		stored, err := s.Entitlements(ctx, ada)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]proxy.SubscriptionStatus{proxy.StatusCanceled}, statuses(stored)); diff != "" {
			t.Errorf("stored after B's later read (-want +got):\n%s", diff)
		}
	}
	// A commit without a sync time is stamped by the database too: A's
	// clock an hour ahead does not make it newer than B's read.
	if _, _, err := a.CommitCustomer(ctx, proxy.CustomerState{CustomerID: "cus_1", Subscriptions: sub(proxy.StatusActive)}, ""); err != nil {
		t.Fatal(err)
	}
	readC, err := b.SyncTime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.CommitCustomer(ctx, proxy.CustomerState{CustomerID: "cus_1", Subscriptions: sub(proxy.StatusPastDue), SyncedAt: readC}, ""); err != nil {
		t.Fatal(err)
	}
	if stored, _ := b.Entitlements(ctx, ada); !cmp.Equal([]proxy.SubscriptionStatus{proxy.StatusPastDue}, statuses(stored)) {
		t.Errorf("after an unstamped commit on A and a later read on B: %v, want past_due", statuses(stored))
	}
}

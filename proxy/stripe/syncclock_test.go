package stripe

import (
	"context"
	"errors"
	"testing"
	"time"
)

// clockStore is a store with a clock of its own (proxy/postgres: the
// database's), an hour behind the Billing's.
type clockStore struct {
	*testStore
	at  time.Time
	err error
}

func (s *clockStore) SyncTime(context.Context) (time.Time, error) { return s.at, s.err }

// A store with its own clock stamps every sync's start (SyncClock), so
// replicas sharing it are ordered on that clock, never on their own (red
// team: a replica whose clock ran ahead made a fresher read from another
// be dropped as stale). Its failure fails the sync, which is retried.
func TestSyncCustomer_StampedByTheStoresClock(t *testing.T) {
	h := newHarness(t)
	cus, _ := withActiveAda(h)
	dbNow := h.clock.Now().Add(-time.Hour).UTC()
	cs := &clockStore{testStore: h.store, at: dbNow}
	cfg := h.cfg
	cfg.Store = cs
	b := h.billing(t, cfg)
	if err := b.SyncCustomer(t.Context(), cus, ""); err != nil {
		t.Fatal(err)
	}
	if n := len(h.store.commits); n != 1 {
		t.Fatalf("%d commits, want 1", n)
	}
	st := h.store.commits[0].State
	if !st.SyncedAt.Equal(dbNow) {
		t.Errorf("SyncedAt %v, want the store's clock %v (the Billing's: %v)", st.SyncedAt, dbNow, h.clock.Now())
	}
	for _, s := range st.Subscriptions {
		if !s.SyncedAt.Equal(dbNow) {
			t.Errorf("subscription %s SyncedAt %v, want %v", s.ID, s.SyncedAt, dbNow)
		}
	}
	cs.err = errors.New("database unreachable")
	if err := b.SyncCustomer(t.Context(), cus, ""); err == nil {
		t.Error("a sync whose start the store could not stamp succeeded")
	}
	if n := len(h.store.commits); n != 1 {
		t.Errorf("%d commits after the failed stamp, want 1", n)
	}
}

package postgres

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestLead_OneLeaderAtATimeAndATakeover: of two replicas one leads; when
// the leader's connection dies (its backend ended by the server, as a
// crashed process's would be), the other takes over within the lease.
func TestLead_OneLeaderAtATimeAndATakeover(t *testing.T) {
	a := open(t, time.Now)
	b, err := Open(context.Background(), a.dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var running atomic.Int32
	var overlap atomic.Bool
	work := func(ctx context.Context) {
		if running.Add(1) > 1 {
			overlap.Store(true)
		}
		<-ctx.Done()
		running.Add(-1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	la, waitA := a.Lead(ctx, LeadConfig{Run: work, Retry: 50 * time.Millisecond})
	lb, waitB := b.Lead(ctx, LeadConfig{Run: work, Retry: 50 * time.Millisecond})
	defer func() { cancel(); waitA(); waitB() }()

	waitUntil(t, "a leader", func() bool { return la.Leading() || lb.Leading() })
	second := lb
	if lb.Leading() {
		second = la
	}
	// End the leader's backend from the server's side.
	var n int
	if err := a.pool.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND granted`, lockSpace, lockLeader).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminating the leader's backend: %d, %v", n, err)
	}
	waitUntil(t, "the other replica leading", func() bool { return second.Leading() })
	if overlap.Load() {
		t.Error("two replicas ran the leader's work at once")
	}
}

// waitUntil polls a condition of a real server, with a deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(LeaseTime + 5*time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

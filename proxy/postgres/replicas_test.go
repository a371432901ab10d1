package postgres

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// manualClock is a store's clock a test moves.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func beat(t *testing.T, rs ...*Replicas) {
	t.Helper()
	for _, r := range rs {
		if err := r.Beat(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func counts(rs ...*Replicas) []int {
	var out []int
	for _, r := range rs {
		out = append(out, r.LiveReplicas())
	}
	return out
}

// TestReplicas_CountedOnTheDatabasesClock: three replicas whose own clocks
// are an hour apart count each other (only the database's now() is
// compared); one that leaves, one whose row went stale and rows forged
// in the future or the past stop counting.
func TestReplicas_CountedOnTheDatabasesClock(t *testing.T) {
	ctx := context.Background()
	a := open(t, func() time.Time { return time.Now().Add(-time.Hour) })
	b, err := Open(ctx, a.dsn, Options{Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ra, err := a.Replicas(ctx, ReplicasConfig{ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Replicas(ctx, ReplicasConfig{ID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := a.Replicas(ctx, ReplicasConfig{ID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	// Each counted those that beat before it; the next beat counts all.
	if diff := cmp.Diff([]int{1, 2, 3}, counts(ra, rb, rc)); diff != "" {
		t.Errorf("first beats (-want +got):\n%s", diff)
	}
	beat(t, ra, rb)
	if diff := cmp.Diff([]int{3, 3, 3}, counts(ra, rb, rc)); diff != "" {
		t.Errorf("second beats (-want +got):\n%s", diff)
	}

	// b stops cleanly; c's row goes stale (a crash, a frozen process).
	if err := rb.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.pool.Exec(ctx, `UPDATE replicas SET heartbeat_at = now() - make_interval(secs => $1) - interval '1 second' WHERE id = 'c'`, ReplicaTTL.Seconds()); err != nil {
		t.Fatal(err)
	}
	// Forged rows: one in the future, one just outside the TTL.
	if _, err := a.pool.Exec(ctx, `INSERT INTO replicas (id, heartbeat_at) VALUES ('future', now() + interval '1 day'), ('old', now() - interval '7 seconds')`); err != nil {
		t.Fatal(err)
	}
	beat(t, ra)
	if got := ra.LiveReplicas(); got != 1 {
		t.Errorf("after one left and one went stale: a counts %d, want 1", got)
	}
	rows, err := ra.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, r := range rows {
		if r.Live {
			live = append(live, r.ID)
		}
		if r.Self != (r.ID == "a") {
			t.Errorf("row %s: self %v", r.ID, r.Self)
		}
		if r.ID == "a" && r.Host != hostName() {
			t.Errorf("row a: host %q, want %q", r.Host, hostName())
		}
	}
	if diff := cmp.Diff([]string{"a"}, live); diff != "" || len(rows) != 4 {
		t.Errorf("List: %d rows, live (-want +got):\n%s", len(rows), diff)
	}
	// c comes back (it thawed): it is counted at its next beat.
	beat(t, rc, ra)
	if diff := cmp.Diff([]int{2, 2}, counts(ra, rc)); diff != "" {
		t.Errorf("c back (-want +got):\n%s", diff)
	}
	// Pruning drops rows stale or ahead by over an hour, not the live ones.
	if err := ra.prune(ctx); err != nil {
		t.Fatal(err)
	}
	var left []string
	if err := a.pool.QueryRow(ctx, `SELECT array_agg(id ORDER BY id) FROM replicas`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a", "c", "old"}, left); diff != "" {
		t.Errorf("after pruning (-want +got):\n%s", diff)
	}
}

// TestReplicas_AFailedBeatKeepsTheCount: the database gone, a beat fails
// and the count stays what it was (never 1: a larger share of the rate);
// readiness says so once the TTL has passed without a beat.
func TestReplicas_AFailedBeatKeepsTheCount(t *testing.T) {
	ctx := context.Background()
	clk := &manualClock{t: time.Now()}
	a := open(t, clk.now)
	b, err := Open(ctx, a.dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ra, err := a.Replicas(ctx, ReplicasConfig{ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Replicas(ctx, ReplicasConfig{ID: "b"}); err != nil {
		t.Fatal(err)
	}
	beat(t, ra)
	a.pool.Close() // every query of a's now fails
	clk.add(HeartbeatInterval)
	if err := ra.Beat(ctx); err == nil {
		t.Fatal("a beat on a closed pool succeeded")
	}
	if got := ra.LiveReplicas(); got != 2 {
		t.Errorf("after a failed beat: %d live, want the last count, 2", got)
	}
	if err := ra.Check(ctx); err != nil {
		t.Errorf("readiness one interval after the last beat: %v", err)
	}
	clk.add(ReplicaTTL)
	if err := ra.Check(ctx); err == nil || !strings.Contains(err.Error(), "no replica heartbeat for 8s") {
		t.Errorf("readiness past the TTL: %v", err)
	}
	if got := ra.Age(); got != HeartbeatInterval+ReplicaTTL {
		t.Errorf("Age %s, want %s", got, HeartbeatInterval+ReplicaTTL)
	}
}

// TestReplicas_RunLeavesOnAStop: Run's context ends (a clean stop) and the
// replica's row is gone, so the others count one fewer at their next beat.
func TestReplicas_RunLeavesOnAStop(t *testing.T) {
	ctx := context.Background()
	a := open(t, time.Now)
	ra, err := a.Replicas(ctx, ReplicasConfig{ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := a.Replicas(ctx, ReplicasConfig{ID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { rb.Run(rctx); close(done) }()
	stop()
	<-done
	beat(t, ra)
	if got := ra.LiveReplicas(); got != 1 {
		t.Errorf("after b stopped: a counts %d, want 1", got)
	}
}

func TestNewReplicaID(t *testing.T) {
	a, b := NewReplicaID(), NewReplicaID()
	if a == b || len(a) != 12 {
		t.Errorf("NewReplicaID: %q, %q", a, b)
	}
}

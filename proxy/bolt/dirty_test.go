package bolt

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// clockAt is a settable clock for the store's processed-at and marked-at
// times.
type clockAt struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clockAt) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clockAt) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func openClocked(t *testing.T, path string, c *clockAt) *Store {
	t.Helper()
	s, err := Open(path, Options{Timeout: 100 * time.Millisecond, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Ensure a mark and its event land together, fold many events of one
// customer into one mark that keeps its age, and survive a reopen.
func TestDirty_MarkFoldsAndSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tollgate.db")
	clock := &clockAt{t: t0()}
	s := openClocked(t, path, clock)
	if b, err := s.DirtyBacklog(ctx); err != nil || b != (proxy.Backlog{}) {
		t.Fatalf("empty store's backlog: %+v, %v", b, err)
	}
	if err := s.MarkDirty(ctx, "cus_a", "evt_1"); err != nil {
		t.Fatal(err)
	}
	clock.set(t0().Add(time.Second))
	for _, ev := range []string{"evt_2", "evt_3"} {
		if err := s.MarkDirty(ctx, "cus_a", ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkDirty(ctx, "cus_b", "evt_4"); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []string{"evt_1", "evt_2", "evt_3", "evt_4"} {
		if ok, err := s.EventProcessed(ctx, ev); err != nil || !ok {
			t.Errorf("%s processed = %v, %v; want the mark's transaction to record it", ev, ok, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openClocked(t, path, clock)
	b, err := s.DirtyBacklog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(proxy.Backlog{Customers: 2, Oldest: t0()}, b); diff != "" {
		t.Errorf("backlog after reopen (-want +got):\n%s", diff)
	}
	marks, next, err := s.DirtyDue(ctx, t0().Add(time.Second), 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]time.Time{}
	for _, m := range marks {
		got[m.CustomerID] = m.MarkedAt
	}
	want := map[string]time.Time{"cus_a": t0(), "cus_b": t0().Add(time.Second)}
	if diff := cmp.Diff(want, got); diff != "" || !next.IsZero() {
		t.Errorf("due marks (-want +got):\n%s next %v", diff, next)
	}
	if marks[0].CustomerID != "cus_a" {
		t.Errorf("first due = %s, want the earliest (cus_a)", marks[0].CustomerID)
	}
}

// Ensure a sync clears only the mark it read: an event folded in while
// Stripe was being asked keeps the customer marked, aged from the sync's
// start.
func TestDirty_ClearIsCompareAndDelete(t *testing.T) {
	ctx := context.Background()
	clock := &clockAt{t: t0()}
	s := openClocked(t, filepath.Join(t.TempDir(), "tollgate.db"), clock)
	if err := s.MarkDirty(ctx, "cus_a", "evt_1"); err != nil {
		t.Fatal(err)
	}
	marks, _, err := s.DirtyDue(ctx, t0(), 10)
	if err != nil || len(marks) != 1 {
		t.Fatalf("due: %v, %v", marks, err)
	}
	read := marks[0]
	clock.set(t0().Add(3 * time.Second))
	if err := s.MarkDirty(ctx, "cus_a", "evt_2"); err != nil { // during the fetch
		t.Fatal(err)
	}
	start := t0().Add(2 * time.Second)
	if ok, err := s.ClearDirty(ctx, read, start); err != nil || ok {
		t.Fatalf("clear with a stale mark: %v, %v; want it kept", ok, err)
	}
	b, _ := s.DirtyBacklog(ctx)
	if diff := cmp.Diff(proxy.Backlog{Customers: 1, Oldest: start}, b); diff != "" {
		t.Errorf("backlog after a stale clear (-want +got):\n%s", diff)
	}
	marks, _, _ = s.DirtyDue(ctx, start, 10)
	if len(marks) != 1 {
		t.Fatalf("the kept mark is not due: %v", marks)
	}
	if ok, err := s.ClearDirty(ctx, marks[0], start); err != nil || !ok {
		t.Fatalf("clear with the current mark: %v, %v", ok, err)
	}
	if b, _ := s.DirtyBacklog(ctx); b != (proxy.Backlog{}) {
		t.Errorf("backlog after clearing: %+v", b)
	}
	if ok, err := s.ClearDirty(ctx, marks[0], start); err != nil || ok {
		t.Errorf("clearing twice: %v, %v", ok, err)
	}
}

// Ensure a failed sync puts the mark off (later due, one more attempt)
// without changing its age, and a new event does not bring it forward.
func TestDirty_RetryPutsOffWithoutAgeing(t *testing.T) {
	ctx := context.Background()
	clock := &clockAt{t: t0()}
	s := openClocked(t, filepath.Join(t.TempDir(), "tollgate.db"), clock)
	for _, c := range []string{"cus_a", "cus_b"} {
		if err := s.MarkDirty(ctx, c, ""); err != nil {
			t.Fatal(err)
		}
	}
	later := t0().Add(time.Minute)
	if err := s.RetryDirty(ctx, "cus_a", later); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDirty(ctx, "cus_a", "evt_9"); err != nil {
		t.Fatal(err)
	}
	marks, next, err := s.DirtyDue(ctx, t0(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 1 || marks[0].CustomerID != "cus_b" || !next.Equal(later) {
		t.Errorf("due now: %+v, next %v; want cus_b only, cus_a at %v", marks, next, later)
	}
	marks, _, _ = s.DirtyDue(ctx, later, 10)
	if len(marks) != 2 || marks[1].CustomerID != "cus_a" || marks[1].Attempts != 1 || !marks[1].MarkedAt.Equal(t0()) {
		t.Errorf("due later: %+v", marks)
	}
	if b, _ := s.DirtyBacklog(ctx); b.Customers != 2 || !b.Oldest.Equal(t0()) {
		t.Errorf("backlog: %+v", b)
	}
	if err := s.RetryDirty(ctx, "cus_none", later); err != nil {
		t.Errorf("retry of an unmarked customer: %v", err)
	}
}

// Ensure concurrent marks (one group commit) are all kept and counted.
func TestDirty_ConcurrentMarksAreAllKept(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			if err := s.MarkDirty(ctx, "cus_"+string(rune('a'+i%20)), "evt_"+time.Duration(i).String()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	b, err := s.DirtyBacklog(ctx)
	if err != nil || b.Customers != 20 {
		t.Errorf("backlog = %+v, %v; want 20 customers", b, err)
	}
	marks, _, err := s.DirtyDue(ctx, time.Now().Add(time.Hour), 100)
	if err != nil || len(marks) != 20 {
		t.Errorf("%d due, %v; want 20", len(marks), err)
	}
}

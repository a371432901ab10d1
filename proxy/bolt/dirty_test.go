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

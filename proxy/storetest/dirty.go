package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// Dirty runs the deferred syncs' part of the stripe.Store suite
// (proxy.DirtyMark): marks fold, keep their age, and are cleared only by
// the sync that read them (their Seq).
func Dirty(t *testing.T, open Open) {
	t.Run("marks fold and keep their age", func(t *testing.T) {
		s, clk := fresh(t, open)
		ctx := t.Context()
		if b, err := s.DirtyBacklog(ctx); err != nil || b != (proxy.Backlog{}) {
			t.Fatalf("empty store's backlog: %+v, %v", b, err)
		}
		if marks, next, err := s.DirtyDue(ctx, T0().Add(time.Hour), 10); err != nil || len(marks) != 0 || !next.IsZero() {
			t.Fatalf("empty store's due marks: %v, %v, %v", marks, next, err)
		}
		must(t, s.MarkDirty(ctx, "cus_a", "evt_1"))
		clk.Set(T0().Add(time.Second))
		must(t, s.MarkDirty(ctx, "cus_a", "evt_2"))
		must(t, s.MarkDirty(ctx, "cus_a", "evt_3"))
		must(t, s.MarkDirty(ctx, "cus_b", "evt_4"))
		must(t, s.MarkDirty(ctx, "cus_b", "")) // a mark without an event (the reconcile's)
		for _, ev := range []string{"evt_1", "evt_2", "evt_3", "evt_4"} {
			if !mustProcessed(t, s, ev) {
				t.Errorf("%s not processed; the mark's transaction records it", ev)
			}
		}
		if err := s.MarkDirty(ctx, "", "evt_5"); err == nil {
			t.Error("MarkDirty without a customer succeeded")
		}
		if mustProcessed(t, s, "evt_5") {
			t.Error("a refused mark recorded its event")
		}
		b, err := s.DirtyBacklog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(proxy.Backlog{Customers: 2, Oldest: T0()}, b); diff != "" {
			t.Errorf("backlog (-want +got):\n%s", diff)
		}
		marks, next, err := s.DirtyDue(ctx, T0().Add(time.Second), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(marks) != 2 || !next.IsZero() {
			t.Fatalf("due marks %+v, next %v; want both, no next", marks, next)
		}
		// The earliest due first; each as it was marked.
		if m := marks[0]; m.CustomerID != "cus_a" || !m.MarkedAt.Equal(T0()) || !m.Due.Equal(T0()) || m.Attempts != 0 {
			t.Errorf("first due = %+v; want cus_a, marked and due at T0", m)
		}
		if m := marks[1]; m.CustomerID != "cus_b" || !m.MarkedAt.Equal(T0().Add(time.Second)) {
			t.Errorf("second due = %+v; want cus_b, marked at T0+1s", m)
		}
		// Paging by limit: the next one's due time.
		marks, next, err = s.DirtyDue(ctx, T0().Add(time.Hour), 1)
		if err != nil || len(marks) != 1 || marks[0].CustomerID != "cus_a" || !next.Equal(T0().Add(time.Second)) {
			t.Errorf("due with limit 1: %+v, next %v, %v; want cus_a, next at T0+1s", marks, next, err)
		}
		// Not due yet: none, and when.
		marks, next, err = s.DirtyDue(ctx, T0().Add(-time.Second), 10)
		if err != nil || len(marks) != 0 || !next.Equal(T0()) {
			t.Errorf("due before any: %+v, next %v, %v; want none, next at T0", marks, next, err)
		}
	})

	t.Run("a clear is compare-and-delete", func(t *testing.T) {
		s, clk := fresh(t, open)
		ctx := t.Context()
		must(t, s.MarkDirty(ctx, "cus_a", "evt_1"))
		marks, _, err := s.DirtyDue(ctx, T0(), 10)
		if err != nil || len(marks) != 1 {
			t.Fatalf("due: %v, %v", marks, err)
		}
		read := marks[0]
		clk.Set(T0().Add(3 * time.Second))
		must(t, s.MarkDirty(ctx, "cus_a", "evt_2")) // during the fetch
		start := T0().Add(2 * time.Second)
		if ok, err := s.ClearDirty(ctx, read, start); err != nil || ok {
			t.Fatalf("clear with a stale mark: %v, %v; want it kept", ok, err)
		}
		b, _ := s.DirtyBacklog(ctx)
		if diff := cmp.Diff(proxy.Backlog{Customers: 1, Oldest: start}, b); diff != "" {
			t.Errorf("backlog after a stale clear (-want +got):\n%s", diff)
		}
		marks, _, _ = s.DirtyDue(ctx, start, 10)
		if len(marks) != 1 || marks[0].Seq == read.Seq || !marks[0].MarkedAt.Equal(start) {
			t.Fatalf("the kept mark: %+v; want it due at the sync's start, aged from it, with a new Seq", marks)
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
		if ok, err := s.ClearDirty(ctx, proxy.DirtyMark{CustomerID: "cus_never"}, start); err != nil || ok {
			t.Errorf("clearing a customer never marked: %v, %v", ok, err)
		}
	})

	t.Run("a retry puts off without ageing", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		must(t, s.MarkDirty(ctx, "cus_a", ""))
		must(t, s.MarkDirty(ctx, "cus_b", ""))
		later := T0().Add(time.Minute)
		must(t, s.RetryDirty(ctx, "cus_a", later))
		must(t, s.MarkDirty(ctx, "cus_a", "evt_9")) // a new event does not bring it forward
		marks, next, err := s.DirtyDue(ctx, T0(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(marks) != 1 || marks[0].CustomerID != "cus_b" || !next.Equal(later) {
			t.Errorf("due now: %+v, next %v; want cus_b only, cus_a at %v", marks, next, later)
		}
		marks, _, _ = s.DirtyDue(ctx, later, 10)
		if len(marks) != 2 || marks[1].CustomerID != "cus_a" || marks[1].Attempts != 1 || !marks[1].MarkedAt.Equal(T0()) || !marks[1].Due.Equal(later) {
			t.Errorf("due later: %+v; want cus_a second, one attempt, marked at T0", marks)
		}
		if b, _ := s.DirtyBacklog(ctx); b.Customers != 2 || !b.Oldest.Equal(T0()) {
			t.Errorf("backlog: %+v", b)
		}
		must(t, s.RetryDirty(ctx, "cus_a", later.Add(time.Minute)))
		if marks, _, _ := s.DirtyDue(ctx, later.Add(time.Minute), 10); len(marks) != 2 || marks[1].Attempts != 2 {
			t.Errorf("after a second retry: %+v; want two attempts", marks)
		}
		if err := s.RetryDirty(ctx, "cus_none", later); err != nil {
			t.Errorf("retry of an unmarked customer: %v", err)
		}
		if b, _ := s.DirtyBacklog(ctx); b.Customers != 2 {
			t.Errorf("a retry of an unmarked customer marked it: %+v", b)
		}
	})

	t.Run("concurrent marks are all kept", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Go(func() {
				if err := s.MarkDirty(ctx, fmt.Sprintf("cus_%02d", i%20), fmt.Sprintf("evt_%d", i)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		b, err := s.DirtyBacklog(ctx)
		if err != nil || b.Customers != 20 || !b.Oldest.Equal(T0()) {
			t.Errorf("backlog = %+v, %v; want 20 customers since T0", b, err)
		}
		marks, _, err := s.DirtyDue(ctx, T0().Add(time.Hour), 100)
		if err != nil || len(marks) != 20 {
			t.Errorf("%d due, %v; want 20", len(marks), err)
		}
		for i := range 200 {
			if id := fmt.Sprintf("evt_%d", i); !mustProcessed(t, s, id) {
				t.Errorf("%s not processed", id)
			}
		}
	})

	// A mark made while its customer is being synced is never lost: the
	// sync clears only what it read, however the two interleave.
	t.Run("marks racing clears are never lost", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		const rounds = 50
		for i := range rounds {
			must(t, s.MarkDirty(ctx, "cus_a", ""))
			marks, _, err := s.DirtyDue(ctx, T0(), 1)
			if err != nil || len(marks) != 1 {
				t.Fatalf("round %d: due %v, %v", i, marks, err)
			}
			var wg sync.WaitGroup
			var cleared bool
			wg.Go(func() {
				ok, err := s.ClearDirty(ctx, marks[0], T0())
				if err != nil {
					t.Error(err)
				}
				cleared = ok
			})
			wg.Go(func() {
				if err := s.MarkDirty(ctx, "cus_a", fmt.Sprintf("evt_%d", i)); err != nil {
					t.Error(err)
				}
			})
			wg.Wait()
			// The new mark landed after the read: whichever committed
			// first, cus_a stays marked.
			if b, _ := s.DirtyBacklog(ctx); b.Customers != 1 {
				t.Fatalf("round %d: cleared %v, backlog %+v; the mark made during the sync was lost", i, cleared, b)
			}
			if ok, err := s.ClearDirty(ctx, latest(t, s), T0()); err != nil || !ok {
				t.Fatalf("round %d: clearing the latest mark: %v, %v", i, ok, err)
			}
		}
	})
}

// latest is the one due mark.
func latest(t *testing.T, s Store) proxy.DirtyMark {
	t.Helper()
	marks, _, err := s.DirtyDue(t.Context(), T0().Add(time.Hour), 10)
	if err != nil || len(marks) != 1 {
		t.Fatalf("due: %+v, %v; want one", marks, err)
	}
	return marks[0]
}

package storetest

import (
	"testing"
	"time"
)

// eventPruning: PruneEvents forgets the events processed before a time,
// the oldest first, at most a batch at a time, whichever write marked them
// (MarkEvent, CommitCustomer, MarkDirty, Clerk's "svix:" IDs); a marked
// event keeps its first time, and one forgotten is new again.
func eventPruning(t *testing.T, open Open) {
	s, clk := fresh(t, open)
	ctx := t.Context()
	at := func(d time.Duration) time.Time { return T0().Add(d) }
	prune := func(before time.Time, limit, want int) {
		t.Helper()
		n, err := s.PruneEvents(ctx, before, limit)
		if err != nil || n != want {
			t.Fatalf("PruneEvents(%v, %d) = %d, %v; want %d", before.Sub(T0()), limit, n, err, want)
		}
	}
	processed := func(want map[string]bool) {
		t.Helper()
		for id, w := range want {
			if got := mustProcessed(t, s, id); got != w {
				t.Errorf("EventProcessed(%q) = %v, want %v", id, got, w)
			}
		}
	}
	must(t, s.MarkEvent(ctx, "evt_1"))
	clk.Set(at(time.Hour))
	must(t, s.MarkDirty(ctx, "cus_2", "evt_2"))
	clk.Set(at(2 * time.Hour))
	mustCommit(t, s, twoSubs("cus_1", user1(), at(2*time.Hour)), "evt_3")
	clk.Set(at(3 * time.Hour))
	must(t, s.MarkEvent(ctx, "svix:msg_1"))
	clk.Set(at(48 * time.Hour))
	must(t, s.MarkEvent(ctx, "evt_4"))
	must(t, s.MarkEvent(ctx, "evt_1")) // a retry: evt_1 keeps T0

	prune(at(150*time.Minute), 0, 0)
	prune(at(150*time.Minute), 1, 1) // the oldest
	processed(map[string]bool{"evt_1": false, "evt_2": true, "evt_3": true})
	prune(at(150*time.Minute), 10, 2)
	prune(at(150*time.Minute), 10, 0)
	processed(map[string]bool{"evt_2": false, "evt_3": false, "svix:msg_1": true, "evt_4": true})
	prune(at(48*time.Hour), 10, 1) // processed at the cut: kept
	processed(map[string]bool{"svix:msg_1": false, "evt_4": true})

	// Forgotten, an event is new: marked again, it is processed from now.
	must(t, s.MarkEvent(ctx, "evt_1"))
	prune(at(48*time.Hour), 10, 0)
	prune(at(49*time.Hour), 10, 2)
	processed(map[string]bool{"evt_1": false, "evt_4": false})
	// What the pruned events' writes stored stays.
	if ents := mustEntitlements(t, s, user1()); ents == nil || len(ents.Subscriptions) != 2 {
		t.Errorf("pruning the events took their state: %+v", ents)
	}
	if b, err := s.DirtyBacklog(ctx); err != nil || b.Customers != 1 {
		t.Errorf("pruning the events took the dirty mark: %+v, %v", b, err)
	}
}

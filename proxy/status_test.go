package proxy

import "testing"

func TestStatuses_RankFollowsTheList(t *testing.T) {
	want := []SubscriptionStatus{"active", "trialing", "past_due", "unpaid", "incomplete", "paused", "incomplete_expired", "canceled"}
	all := Statuses()
	if len(all) != len(want) {
		t.Fatalf("Statuses() = %v, want %v", all, want)
	}
	for i, st := range want {
		if all[i] != st {
			t.Errorf("Statuses()[%d] = %s, want %s", i, all[i], st)
		}
		if got := st.Rank(); got != len(want)-i {
			t.Errorf("%s.Rank() = %d, want %d", st, got, len(want)-i)
		}
		if !st.Known() {
			t.Errorf("%s is not Known", st)
		}
	}
	for _, st := range []SubscriptionStatus{"", "some_future_status", "Active"} {
		if st.Rank() != 0 || st.Known() {
			t.Errorf("%q: Rank %d, Known %v; want 0, false", st, st.Rank(), st.Known())
		}
	}
	all[0] = "changed" // a caller's copy: the list itself never changes
	if Statuses()[0] != StatusActive {
		t.Error("Statuses() shares its slice")
	}
}

func TestStatus_RankAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = StatusCanceled.Rank() }); n != 0 {
		t.Errorf("Rank allocates %v times", n)
	}
}

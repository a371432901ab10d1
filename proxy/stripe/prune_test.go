package stripe

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The retention covers Stripe's retries (three days) and the catch-up's
// look back (the Events API's 30 days): an ID forgotten sooner could be
// delivered or listed again.
func TestEventRetention_CoversRetriesAndTheCatchUp(t *testing.T) {
	if EventRetention < 3*24*time.Hour || EventRetention <= catchUpWindow+catchUpOverlap {
		t.Errorf("EventRetention %v; the catch-up looks back %v (+%v), Stripe retries for 3 days", EventRetention, catchUpWindow, catchUpOverlap)
	}
}

// pruneStore is a store of n old events that forgets them as asked.
type pruneStore struct {
	Store // the rest: unused
	mu    sync.Mutex
	left  int
	calls []string
	fail  error // after the first call
}

func (s *pruneStore) PruneEvents(_ context.Context, before time.Time, limit int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) > 0 && s.fail != nil {
		return 0, s.fail
	}
	n := min(limit, s.left)
	s.left -= n
	s.calls = append(s.calls, before.Format(time.RFC3339)+" "+strconv.Itoa(limit))
	return n, nil
}

func TestBilling_PruneEventsInBatchesUntilNoneIsLeft(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cut := now.Add(-EventRetention).Format(time.RFC3339) + " " + strconv.Itoa(eventPruneBatch)
	for _, tt := range []struct {
		name      string
		old       int
		fail      error
		want      int
		wantCalls int
		wantErr   bool
	}{
		{"nothing to forget: one small read", 0, nil, 0, 1, false},
		{"fewer than a batch", 7, nil, 7, 1, false},
		{"exactly a batch asks once more", eventPruneBatch, nil, eventPruneBatch, 2, false},
		{"batches until the last short one", 2*eventPruneBatch + 1, nil, 2*eventPruneBatch + 1, 3, false},
		{"a failure stops it, with what it forgot", 3 * eventPruneBatch, errors.New("disk full"), eventPruneBatch, 1, true},
	} {
		st := &pruneStore{left: tt.old, fail: tt.fail}
		b := &Billing{store: st, now: func() time.Time { return now }}
		n, err := b.PruneEvents(t.Context())
		if n != tt.want || (err != nil) != tt.wantErr || (tt.fail != nil && !errors.Is(err, tt.fail)) {
			t.Errorf("%s: PruneEvents = %d, %v; want %d (error %v)", tt.name, n, err, tt.want, tt.wantErr)
		}
		want := make([]string, tt.wantCalls)
		for i := range want {
			want[i] = cut
		}
		if diff := cmp.Diff(want, st.calls); diff != "" {
			t.Errorf("%s: the store was asked (-want +got):\n%s", tt.name, diff)
		}
	}
}

type prunedSeen struct {
	mu sync.Mutex
	n  []int
}

func (o *prunedSeen) EventsPruned(n int) { o.mu.Lock(); o.n = append(o.n, n); o.mu.Unlock() }

func TestBackground_PrunesAtStartThenEveryHour(t *testing.T) {
	f, w := newBGBilling(), newBGWaits()
	f.pruned = 3
	bg := newTestBackground(f, BackgroundConfig{}, time.Now, w)
	obs := &prunedSeen{}
	bg.obs = obs
	runLoop(t, bg.pruneEvents)
	for range 2 {
		if got := f.next(t); got != "prune" {
			t.Fatalf("call %q, want prune", got)
		}
		if d := w.wait(t); d != eventPruneEvery {
			t.Fatalf("pruned again after %v, want %v", d, eventPruneEvery)
		}
		w.pass <- struct{}{}
	}
	if got := f.next(t); got != "prune" {
		t.Fatalf("call %q, want prune", got)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.n) < 2 || obs.n[0] != 3 {
		t.Errorf("the observer heard %v, want 3 a pass", obs.n)
	}
}

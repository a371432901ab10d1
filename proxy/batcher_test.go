package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// timeSink is a store's batch writer in memory: it keeps the latest time
// per ID, can be held (a busy store) and can fail.
type timeSink struct {
	mu     sync.Mutex
	got    map[string]time.Time
	writes int
	fail   error
	hold   chan struct{} // non-nil: writes wait for it to close
	wrote  chan struct{} // non-nil: signalled after each write
}

func (s *timeSink) write(ctx context.Context, batch map[string]time.Time) error {
	if s.hold != nil {
		select {
		case <-s.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.writes++
	if s.got == nil {
		s.got = map[string]time.Time{}
	}
	for id, at := range batch {
		if at.After(s.got[id]) {
			s.got[id] = at
		}
	}
	if s.wrote != nil {
		select {
		case s.wrote <- struct{}{}:
		default:
		}
	}
	return nil
}

func (s *timeSink) snapshot() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.got)
}

var batchT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Ensure noting never waits for the store, only the latest time per ID is
// written, Close flushes what is pending, and later notes are dropped.
func TestTimeBatcher_NonBlockingLatestAndClose(t *testing.T) {
	sink := &timeSink{hold: make(chan struct{})}
	b := NewTimeBatcher(sink.write, time.Hour, "last seen", nil)
	flushed := make(chan error, 1)
	b.Note("user_0", batchT0)
	go func() { flushed <- b.Flush(t.Context()) }() // held by the store
	for i := range 1000 {
		b.Seen(fmt.Sprintf("user_%d", i%10), batchT0.Add(time.Duration(i)*time.Second))
	}
	if got := b.Pending(); got != 10 {
		t.Errorf("Pending while the store is busy = %d, want 10", got)
	}
	close(sink.hold)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{}
	for i := range 10 {
		want[fmt.Sprintf("user_%d", i)] = batchT0.Add(time.Duration(990+i) * time.Second)
	}
	if diff := cmp.Diff(want, sink.snapshot()); diff != "" {
		t.Errorf("written (-want +got):\n%s", diff)
	}
	b.KeyUsed("key_late", batchT0)
	if b.Dropped() != 1 || b.Pending() != 0 {
		t.Errorf("after Close: Dropped = %d, Pending = %d; want 1, 0", b.Dropped(), b.Pending())
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// Ensure a full batcher still updates the IDs it holds and drops new ones.
func TestTimeBatcher_Bound(t *testing.T) {
	sink := &timeSink{}
	b := NewTimeBatcher(sink.write, time.Hour, "last seen", nil)
	b.max = 2
	b.Note("user_1", batchT0)
	b.Note("user_2", batchT0)
	b.Note("user_3", batchT0)                  // full: dropped
	b.Note("user_1", batchT0.Add(time.Minute)) // known: still updated
	if b.Dropped() != 1 || b.Pending() != 2 {
		t.Errorf("Dropped = %d, Pending = %d; want 1, 2", b.Dropped(), b.Pending())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{"user_1": batchT0.Add(time.Minute), "user_2": batchT0}
	if diff := cmp.Diff(want, sink.snapshot()); diff != "" {
		t.Errorf("written (-want +got):\n%s", diff)
	}
}

// Ensure a failed flush keeps its batch, merged with what came in since,
// for the next flush.
func TestTimeBatcher_FailedFlushKeepsTheBatch(t *testing.T) {
	sink := &timeSink{fail: errors.New("store down")}
	b := NewTimeBatcher(sink.write, time.Hour, "last seen", nil)
	b.Note("user_x", batchT0.Add(time.Minute))
	if err := b.Flush(t.Context()); err == nil {
		t.Fatal("Flush succeeded against a failing store")
	}
	b.Note("user_x", batchT0) // older: the kept time stands
	b.Note("user_y", batchT0)
	if b.Pending() != 2 {
		t.Errorf("Pending after a failed flush = %d, want 2", b.Pending())
	}
	sink.mu.Lock()
	sink.fail = nil
	sink.mu.Unlock()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{"user_x": batchT0.Add(time.Minute), "user_y": batchT0}
	if diff := cmp.Diff(want, sink.snapshot()); diff != "" {
		t.Errorf("written (-want +got):\n%s", diff)
	}
}

// Ensure Run flushes on its own while notes come in concurrently, and
// stops with its context.
func TestTimeBatcher_Run(t *testing.T) {
	sink := &timeSink{wrote: make(chan struct{}, 1)}
	b := NewTimeBatcher(sink.write, time.Millisecond, "last seen", nil)
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan struct{})
	go func() { defer close(ran); b.Run(ctx) }()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				b.Note(fmt.Sprintf("user_%d", w), batchT0.Add(time.Duration(i)*time.Second))
			}
		})
	}
	wg.Wait()
	want := map[string]time.Time{}
	for w := range 4 {
		want[fmt.Sprintf("user_%d", w)] = batchT0.Add(199 * time.Second)
	}
	// Run's ticker writes what the writers left, without a Flush here.
	timeout := time.After(10 * time.Second)
	for !cmp.Equal(want, sink.snapshot()) {
		select {
		case <-sink.wrote:
		case <-timeout:
			t.Fatalf("Run did not flush everything (-want +got):\n%s", cmp.Diff(want, sink.snapshot()))
		}
	}
	cancel()
	<-ran
}

// With a resolution, an ID whose new time is within it of the last one
// written is not written again; a first time, a later one beyond the
// resolution and an earlier one are; a failed write remembers nothing.
func TestTimeBatcher_Resolution(t *testing.T) {
	sink := &timeSink{}
	b := NewTimeBatcher(sink.write, time.Hour, "last seen", nil).WithResolution(time.Minute)
	flush := func(notes map[string]time.Duration) map[string]time.Time {
		t.Helper()
		before := sink.snapshot()
		for id, d := range notes {
			b.Note(id, batchT0.Add(d))
		}
		if err := b.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		wrote := map[string]time.Time{}
		for id, at := range sink.snapshot() {
			if !at.Equal(before[id]) {
				wrote[id] = at
			}
		}
		return wrote
	}
	steps := []struct {
		name  string
		notes map[string]time.Duration
		want  map[string]time.Duration
	}{
		{"first times", map[string]time.Duration{"user_a": 0, "user_b": 0}, map[string]time.Duration{"user_a": 0, "user_b": 0}},
		{"within the resolution", map[string]time.Duration{"user_a": 30 * time.Second, "user_b": 59 * time.Second, "user_c": 59 * time.Second}, map[string]time.Duration{"user_c": 59 * time.Second}},
		{"a minute on", map[string]time.Duration{"user_a": time.Minute, "user_b": 50 * time.Second}, map[string]time.Duration{"user_a": time.Minute}},
		{"earlier than written", map[string]time.Duration{"user_b": -time.Hour}, map[string]time.Duration{}}, // the sink keeps the latest; the store widens first_seen
	}
	for _, st := range steps {
		want := map[string]time.Time{}
		for id, d := range st.want {
			want[id] = batchT0.Add(d)
		}
		if diff := cmp.Diff(want, flush(st.notes)); diff != "" {
			t.Errorf("%s: written (-want +got):\n%s", st.name, diff)
		}
	}
	sink.mu.Lock()
	writes := sink.writes
	sink.mu.Unlock()
	if writes != 4 { // the earlier time was handed to the store too
		t.Errorf("%d writes, want 4", writes)
	}

	// A failed write is retried, and remembered only once written.
	sink.mu.Lock()
	sink.fail = errors.New("store down")
	sink.mu.Unlock()
	b.Note("user_d", batchT0)
	if err := b.Flush(t.Context()); err == nil {
		t.Fatal("Flush succeeded against a failing store")
	}
	sink.mu.Lock()
	sink.fail = nil
	sink.mu.Unlock()
	// Never written, so a second later is written, not skipped.
	if diff := cmp.Diff(map[string]time.Time{"user_d": batchT0.Add(time.Second)}, flush(map[string]time.Duration{"user_d": time.Second})); diff != "" {
		t.Errorf("after a failed write (-want +got):\n%s", diff)
	}
}

// What the resolution remembers is bounded: IDs written longer than a
// resolution before the newest write are forgotten, and past max
// everything is (an ID then written again, never skipped wrongly).
func TestTimeBatcher_ResolutionMemoryIsBounded(t *testing.T) {
	sink := &timeSink{}
	b := NewTimeBatcher(sink.write, time.Hour, "last seen", nil).WithResolution(time.Minute)
	b.max = 10
	for i := range 5 {
		b.Note(fmt.Sprintf("user_%d", i), batchT0)
	}
	if err := b.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.Note("user_late", batchT0.Add(2*time.Minute))
	if err := b.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := len(b.written); got != 1 {
		t.Errorf("remembered %d IDs after the others aged out, want 1", got)
	}
	for i := range 11 {
		b.Note(fmt.Sprintf("user_n%d", i), batchT0.Add(2*time.Minute))
	}
	if err := b.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := len(b.written); got > b.max {
		t.Errorf("remembered %d IDs, more than max %d", got, b.max)
	}
	b.Note("user_n0", batchT0.Add(2*time.Minute+time.Second))
	if err := b.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := sink.snapshot()["user_n0"]; !got.Equal(batchT0.Add(2*time.Minute + time.Second)) {
		t.Errorf("a forgotten ID was skipped: stored %v", got)
	}
}

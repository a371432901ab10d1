package bolt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

func mustUser(tb testing.TB, s *Store, id string) proxy.User {
	tb.Helper()
	u, err := s.User(tb.Context(), id)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

func TestUsers(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if _, err := s.User(ctx, "user_1"); !errors.Is(err, proxy.ErrNotFound) {
		t.Errorf("User(unknown) err = %v; want ErrNotFound", err)
	}
	seen := func(m map[string]time.Time) {
		t.Helper()
		if err := s.RecordSeen(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	seen(map[string]time.Time{"user_1": t0(), "user_2": t0(), "": t0()})
	seen(map[string]time.Time{"user_1": t0().Add(time.Hour)})
	seen(map[string]time.Time{"user_1": t0().Add(time.Minute)}) // late and out of order: changes nothing
	if err := s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@example.com", OrgIDs: []string{"org_1"}}); err != nil {
		t.Fatal(err)
	}
	want := proxy.User{ID: "user_1", Email: "ada@example.com", FirstSeen: t0(), LastSeen: t0().Add(time.Hour), OrgIDs: []string{"org_1"}}
	if diff := cmp.Diff(mustUser(t, s, "user_1"), want); diff != "" {
		t.Errorf("user_1 (-got +want):\n%s", diff)
	}
	// Clerk's user events say nothing of organisations: the recorded ones
	// stay. An explicit empty list clears them.
	if err := s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@new.example.com"}); err != nil {
		t.Fatal(err)
	}
	want.Email = "ada@new.example.com"
	if diff := cmp.Diff(mustUser(t, s, "user_1"), want); diff != "" {
		t.Errorf("user_1 after an update without organisations (-got +want):\n%s", diff)
	}
	if err := s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@new.example.com", OrgIDs: []string{}}); err != nil {
		t.Fatal(err)
	}
	if u := mustUser(t, s, "user_1"); len(u.OrgIDs) != 0 {
		t.Errorf("user_1 after an update with no organisations = %+v; want none", u)
	}
	// Clerk's record arrives before the first sighting.
	if err := s.PutUser(ctx, proxy.User{ID: "user_0", Email: "zed@example.com"}); err != nil {
		t.Fatal(err)
	}
	if u := mustUser(t, s, "user_0"); !u.FirstSeen.IsZero() || u.Email != "zed@example.com" {
		t.Errorf("user_0 = %+v", u)
	}
	if err := s.PutUser(ctx, proxy.User{}); err == nil {
		t.Error("PutUser without an ID succeeded")
	}

	page, err := s.Users(ctx, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(page); !cmp.Equal(got, []string{"user_0", "user_1"}) {
		t.Errorf("first page = %v", got)
	}
	page, err = s.Users(ctx, "user_1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(page); !cmp.Equal(got, []string{"user_2"}) {
		t.Errorf("second page = %v", got)
	}
	if page, _ = s.Users(ctx, "user_2", 2); len(page) != 0 {
		t.Errorf("past the end = %v", ids(page))
	}

	if err := s.DeleteUser(ctx, "user_1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "user_unknown"); err != nil {
		t.Errorf("DeleteUser(unknown) = %v", err)
	}
	if _, err := s.User(ctx, "user_1"); !errors.Is(err, proxy.ErrNotFound) {
		t.Errorf("User after delete err = %v; want ErrNotFound", err)
	}
}

func ids(users []proxy.User) []string {
	var out []string
	for _, u := range users {
		out = append(out, u.ID)
	}
	return out
}

// TestSeenBatcher_NonBlockingAndClose: Seen returns while the store's
// writer is held, and Close flushes what was pending.
func TestSeenBatcher_NonBlockingAndClose(t *testing.T) {
	s, _ := newStore(t)
	if err := s.RecordSeen(t.Context(), map[string]time.Time{"user_1": t0()}); err != nil {
		t.Fatal(err)
	}
	b := s.NewSeenBatcher(time.Hour, nil)

	// Hold bbolt's single writer until Seen has been called many times.
	release, held := make(chan struct{}), make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		_ = s.db.Update(func(*bbolt.Tx) error {
			close(held)
			<-release
			return nil
		})
	})
	<-held
	seenDone := make(chan struct{})
	go func() {
		defer close(seenDone)
		for i := range 1000 {
			b.Seen(fmt.Sprintf("user_%d", i%10), t0().Add(time.Duration(i)*time.Second))
		}
	}()
	select {
	case <-seenDone:
	case <-time.After(5 * time.Second):
		t.Fatal("Seen blocked while the store was busy")
	}
	close(release)
	writer.Wait()

	if got := b.Pending(); got != 10 {
		t.Errorf("Pending = %d, want 10", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := b.Pending(); got != 0 {
		t.Errorf("Pending after Close = %d", got)
	}
	u := mustUser(t, s, "user_1")
	if want := (proxy.User{ID: "user_1", FirstSeen: t0(), LastSeen: t0().Add(991 * time.Second)}); !cmp.Equal(u, want) {
		t.Errorf("user_1 (-got +want):\n%s", cmp.Diff(u, want))
	}
	if u := mustUser(t, s, "user_9"); !u.FirstSeen.Equal(t0().Add(999*time.Second)) || !u.LastSeen.Equal(u.FirstSeen) {
		t.Errorf("user_9 = %+v", u)
	}

	b.Seen("user_late", t0())
	if b.Dropped() != 1 || b.Pending() != 0 {
		t.Errorf("after Close: Dropped = %d, Pending = %d; want 1, 0", b.Dropped(), b.Pending())
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestSeenBatcher_Bound(t *testing.T) {
	s, _ := newStore(t)
	b := s.NewSeenBatcher(time.Hour, nil)
	b.max = 2
	b.Seen("user_1", t0())
	b.Seen("user_2", t0())
	b.Seen("user_3", t0())                  // full: dropped
	b.Seen("user_1", t0().Add(time.Minute)) // known: still updated
	if b.Dropped() != 1 || b.Pending() != 2 {
		t.Errorf("Dropped = %d, Pending = %d; want 1, 2", b.Dropped(), b.Pending())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if u := mustUser(t, s, "user_1"); !u.LastSeen.Equal(t0().Add(time.Minute)) {
		t.Errorf("user_1 = %+v", u)
	}
	if _, err := s.User(t.Context(), "user_3"); !errors.Is(err, proxy.ErrNotFound) {
		t.Errorf("dropped user_3 was stored: %v", err)
	}
}

// TestSeenBatcher_Run: Run flushes on its own while Seen is called
// concurrently; a failed flush keeps its sightings.
func TestSeenBatcher_Run(t *testing.T) {
	s, _ := newStore(t)
	b := s.NewSeenBatcher(5*time.Millisecond, nil)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(ctx) })
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				b.Seen(fmt.Sprintf("user_%d", w), t0().Add(time.Duration(i)*time.Second))
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		u, err := s.User(t.Context(), "user_3")
		if err == nil && u.LastSeen.Equal(t0().Add(199*time.Second)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run did not flush: %+v, %v", u, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	// Writers may have added after Run's last flush: flush by hand.
	if err := b.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for w := range 4 {
		if u := mustUser(t, s, fmt.Sprintf("user_%d", w)); u.FirstSeen.After(u.LastSeen) || !u.LastSeen.Equal(t0().Add(199*time.Second)) {
			t.Errorf("user_%d = %+v; want last seen at +199s, first seen no later", w, u)
		}
	}

	// A flush that fails puts the batch back for the next one.
	b.Seen("user_x", t0())
	canceled, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if err := b.Flush(canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush(canceled) = %v", err)
	}
	if b.Pending() != 1 {
		t.Errorf("Pending after a failed flush = %d, want 1", b.Pending())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	mustUser(t, s, "user_x")
}

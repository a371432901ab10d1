package bolt

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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

package bolt

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

func TestOrgsAndMemberships(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.PutUser(ctx, proxy.User{ID: "user_a", Email: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutOrg(ctx, proxy.Org{ID: "org_1", Slug: "acme", Name: "Acme"}))
	must(s.PutOrg(ctx, proxy.Org{ID: "org_2", Slug: "beta"}))
	must(s.PutMembership(ctx, "org_2", "user_a", "org:admin"))
	must(s.PutMembership(ctx, "org_1", "user_a", "org:member"))
	must(s.PutMembership(ctx, "org_1", "user_a", "org:admin"))  // updated: no duplicate
	must(s.PutMembership(ctx, "org_1", "user_b", "org:member")) // a user Clerk has not described yet
	u, err := s.User(ctx, "user_a")
	must(err)
	if diff := cmp.Diff([]string{"org_1", "org_2"}, u.OrgIDs); diff != "" || u.Email != "a@example.com" {
		t.Errorf("memberships (-want +got):\n%s email %q", diff, u.Email)
	}
	must(s.DeleteMembership(ctx, "org_2", "user_a"))
	must(s.Close())

	// Across a restart, then the organisation goes.
	s, err = Open(path, Options{})
	must(err)
	defer s.Close()
	if o, err := s.Org(ctx, "org_1"); err != nil || o.Slug != "acme" || o.Name != "Acme" {
		t.Errorf("org after reopen: %+v %v", o, err)
	}
	u, _ = s.User(ctx, "user_a")
	if diff := cmp.Diff([]string{"org_1"}, u.OrgIDs); diff != "" {
		t.Errorf("after leaving org_2 (-want +got):\n%s", diff)
	}
	must(s.DeleteOrg(ctx, "org_1"))
	if _, err := s.Org(ctx, "org_1"); !errors.Is(err, proxy.ErrNotFound) {
		t.Errorf("deleted org: %v", err)
	}
	for _, id := range []string{"user_a", "user_b"} {
		if u, _ := s.User(ctx, id); len(u.OrgIDs) != 0 {
			t.Errorf("%s still in %v", id, u.OrgIDs)
		}
	}
}

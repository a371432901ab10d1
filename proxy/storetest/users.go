package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// userOf is what the store records of a user (nil: nothing).
func userOf(t *testing.T, s Store, id string) *proxy.User {
	t.Helper()
	d, err := s.UserDetail(t.Context(), userSubject(id), 1)
	if errors.Is(err, proxy.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return d.User
}

func email(t *testing.T, s Store, id string) string {
	t.Helper()
	e, err := s.Email(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Users runs the clerk.UserStore suite, with proxy.Directory and the
// last-seen writes (proxy.SeenRecorder's store half).
func Users(t *testing.T, open Open) {
	t.Run("seen, then described", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		if u := userOf(t, s, "user_1"); u != nil {
			t.Errorf("unknown user = %+v", u)
		}
		seen := func(m map[string]time.Time) {
			t.Helper()
			must(t, s.RecordSeen(ctx, m))
		}
		seen(nil)
		seen(map[string]time.Time{"user_1": T0(), "user_2": T0(), "": T0(), "org_1": T0(), "nobody": T0()})
		seen(map[string]time.Time{"user_1": T0().Add(time.Hour)})
		seen(map[string]time.Time{"user_1": T0().Add(time.Minute)})  // late and out of order: changes nothing
		seen(map[string]time.Time{"user_1": T0().Add(-time.Minute)}) // an earlier sighting widens first seen
		must(t, s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@example.com", OrgIDs: []string{"org_1"}}))
		want := &proxy.User{ID: "user_1", Email: "ada@example.com", FirstSeen: T0().Add(-time.Minute), LastSeen: T0().Add(time.Hour), OrgIDs: []string{"org_1"}}
		if diff := cmp.Diff(want, userOf(t, s, "user_1"), equateEmpty()); diff != "" {
			t.Errorf("user_1 (-want +got):\n%s", diff)
		}
		if u := userOf(t, s, "user_2"); u == nil || !u.FirstSeen.Equal(T0()) || !u.LastSeen.Equal(T0()) || u.Email != "" {
			t.Errorf("user_2 = %+v; want seen once at T0", u)
		}
		for _, id := range []string{"nobody", "org_1"} {
			if u := userOf(t, s, id); u != nil {
				t.Errorf("a sighting of %q, no user ID, recorded %+v", id, u)
			}
		}
		// Clerk's user events say nothing of organisations: the recorded
		// ones stay. An explicit empty list clears them.
		must(t, s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@new.example.com"}))
		want.Email = "ada@new.example.com"
		if diff := cmp.Diff(want, userOf(t, s, "user_1"), equateEmpty()); diff != "" {
			t.Errorf("user_1 after an update without organisations (-want +got):\n%s", diff)
		}
		must(t, s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@new.example.com", OrgIDs: []string{}}))
		if u := userOf(t, s, "user_1"); u == nil || len(u.OrgIDs) != 0 {
			t.Errorf("user_1 after an update with no organisations = %+v; want none", u)
		}
		// Clerk's record arrives before the first sighting.
		must(t, s.PutUser(ctx, proxy.User{ID: "user_0", Email: "zed@example.com"}))
		if u := userOf(t, s, "user_0"); u == nil || !u.FirstSeen.IsZero() || u.Email != "zed@example.com" {
			t.Errorf("user_0 = %+v", u)
		}
		for _, bad := range []proxy.User{{}, {ID: "org_1"}} {
			if err := s.PutUser(ctx, bad); err == nil {
				t.Errorf("PutUser(%+v) succeeded", bad)
			}
		}
	})

	t.Run("concurrent sightings keep the extremes", func(t *testing.T) {
		s, _ := fresh(t, open)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := range 20 {
					at := T0().Add(time.Duration(w*20+i) * time.Second)
					if err := s.RecordSeen(t.Context(), map[string]time.Time{"user_1": at, fmt.Sprintf("user_w%d", w): at}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if u := userOf(t, s, "user_1"); u == nil || !u.FirstSeen.Equal(T0()) || !u.LastSeen.Equal(T0().Add(159*time.Second)) {
			t.Errorf("user_1 = %+v; want first seen T0, last seen T0+159s", u)
		}
		p, err := s.ListPage(t.Context(), proxy.UserFilter{})
		if err != nil || p.Total != 9 || len(p.Users) != 9 {
			t.Errorf("listing after concurrent sightings: %v, total %d, %v; want 9 users", summaryIDs(p.Users), p.Total, err)
		}
	})

	t.Run("directory: Clerk's email, else the customer's", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		must(t, s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@example.com"}))
		must(t, s.RecordSeen(ctx, map[string]time.Time{"user_3": T0()}))
		c := twoSubs("cus_1", user1(), T0())
		c.Email = "billing@example.com"
		mustCommit(t, s, c, "")
		mustCommit(t, s, twoSubs("cus_2", user2(), T0()), "") // ada@example.com, Stripe's
		for id, want := range map[string]string{
			"user_1":  "ada@example.com", // Clerk's, over the customer's
			"user_2":  "ada@example.com", // no user record: the customer's
			"user_3":  "",                // seen, but nobody said
			"user_zz": "",                // unknown
		} {
			if got := email(t, s, id); got != want {
				t.Errorf("Email(%s) = %q; want %q", id, got, want)
			}
		}
		if d := mustDetail(t, s, user1()); d.CustomerEmail != "billing@example.com" {
			t.Errorf("user_1's customer email %q; want Stripe's", d.CustomerEmail)
		}
		// Clerk's email changes: the customer keeps Stripe's.
		must(t, s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@new.example"}))
		if d := mustDetail(t, s, user1()); d.CustomerEmail != "billing@example.com" || d.Email() != "ada@new.example" {
			t.Errorf("after Clerk's email changed: customer's %q, account's %q", d.CustomerEmail, d.Email())
		}
	})

	// A user Clerk deleted: the record, memberships and keys go (the
	// revocation records of their sessions expire after session.ttl, the
	// keys' own revocation does not: red team #5); the Stripe customer
	// outlives them, with its email.
	t.Run("deletion cascades", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		must(t, s.RecordSeen(ctx, map[string]time.Time{"user_1": T0()}))
		must(t, s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@example.com"}))
		must(t, s.PutOrg(ctx, proxy.Org{ID: "org_1", Slug: "acme"}))
		must(t, s.PutMembership(ctx, "org_1", "user_1", "org:admin"))
		must(t, s.PutUser(ctx, proxy.User{ID: "user_2", Email: "bob@example.com"}))
		mine, theirs := newKey(t, s, user1()), newKey(t, s, user2())
		mustCommit(t, s, twoSubs("cus_1", user1(), T0()), "")

		must(t, s.DeleteUser(ctx, "user_1"))
		must(t, s.DeleteUser(ctx, "user_1"))       // again: Clerk retries
		must(t, s.DeleteUser(ctx, "user_unknown")) // never known
		d := mustDetail(t, s, user1())             // the customer keeps the subject listed
		if d.User != nil {
			t.Errorf("the deleted user's record is kept: %+v", d.User)
		}
		if d.CustomerID != "cus_1" || len(d.Subscriptions) != 2 || d.CustomerEmail != "ada@example.com" {
			t.Errorf("the deleted user's customer = %q, %d subscriptions, email %q; want cus_1 with both, Stripe's email", d.CustomerID, len(d.Subscriptions), d.CustomerEmail)
		}
		if got := email(t, s, "user_1"); got != "ada@example.com" {
			t.Errorf("Email of the deleted user = %q; want the customer's", got)
		}
		for id, revoked := range map[string]bool{mine: true, theirs: false} {
			k, err := s.APIKeyByID(ctx, id)
			if err != nil || k.RevokedAt.IsZero() == revoked {
				t.Errorf("key %s of %s: revoked at %v (%v); want revoked %v", id, k.Subject, k.RevokedAt, err, revoked)
			}
			if revoked && !k.RevokedAt.Equal(T0()) {
				t.Errorf("key revoked at %v; want the store's now, %v", k.RevokedAt, T0())
			}
		}
		if u := userOf(t, s, "user_2"); u == nil || u.Email != "bob@example.com" {
			t.Errorf("another user after a deletion: %+v", u)
		}
		p, err := s.ListPage(ctx, proxy.UserFilter{Query: "user_1"})
		if err != nil || len(p.Users) != 1 || len(p.Users[0].OrgIDs) != 0 || !p.Users[0].LastSeen.IsZero() {
			t.Errorf("the deleted user's row: %+v, %v; want the customer's, no organisations, never seen", p.Users, err)
		}
		// Without a customer, nothing is left of them, and the membership
		// deletions Clerk sends after a user's deletion bring nobody back.
		must(t, s.PutMembership(ctx, "org_1", "user_2", "org:member"))
		must(t, s.DeleteUser(ctx, "user_2"))
		must(t, s.DeleteMembership(ctx, "org_1", "user_2"))
		must(t, s.DeleteMembership(ctx, "org_1", "user_never"))
		if _, err := s.UserDetail(ctx, userSubject("user_never"), 1); !errors.Is(err, proxy.ErrNotFound) {
			t.Errorf("UserDetail of a user known only by a membership's deletion: %v; want ErrNotFound", err)
		}
		if _, err := s.UserDetail(ctx, user2(), 1); !errors.Is(err, proxy.ErrNotFound) {
			t.Errorf("UserDetail of a deleted user without a customer: %v; want ErrNotFound", err)
		}
		if p, _ := s.ListPage(ctx, proxy.UserFilter{Query: "user_2"}); len(p.Users) != 0 {
			t.Errorf("the deleted user is still listed: %v", summaryIDs(p.Users))
		}
	})
}

// newKey stores an API key of subject and returns its ID.
func newKey(t *testing.T, s Store, subject proxy.Subject) string {
	t.Helper()
	_, rec, err := proxy.NewAPIKey(false, T0())
	if err != nil {
		t.Fatal(err)
	}
	rec.Subject, rec.Name, rec.Scopes, rec.CreatedBy = subject, "k", []string{"*"}, "test"
	must(t, s.CreateAPIKey(t.Context(), rec, 0))
	return rec.ID
}

// Orgs runs the clerk.OrgStore and gateway.Orgs suite: organisations and
// memberships.
func Orgs(t *testing.T, open Open) {
	orgIDs := func(t *testing.T, s Store, userID string) []string {
		t.Helper()
		u := userOf(t, s, userID)
		if u == nil {
			return nil
		}
		return u.OrgIDs
	}

	t.Run("organisations and memberships", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		if _, err := s.Org(ctx, "org_1"); !errors.Is(err, proxy.ErrNotFound) {
			t.Errorf("unknown org: %v; want ErrNotFound", err)
		}
		must(t, s.PutUser(ctx, proxy.User{ID: "user_a", Email: "a@example.com"}))
		must(t, s.PutOrg(ctx, proxy.Org{ID: "org_1", Slug: "acme", Name: "Acme"}))
		must(t, s.PutOrg(ctx, proxy.Org{ID: "org_2", Slug: "beta"}))
		must(t, s.PutMembership(ctx, "org_2", "user_a", "org:admin"))
		must(t, s.PutMembership(ctx, "org_1", "user_a", "org:member"))
		must(t, s.PutMembership(ctx, "org_1", "user_a", "org:admin"))  // updated: no duplicate
		must(t, s.PutMembership(ctx, "org_1", "user_b", "org:member")) // a user Clerk has not described yet
		if diff := cmp.Diff([]string{"org_1", "org_2"}, orgIDs(t, s, "user_a")); diff != "" {
			t.Errorf("memberships, sorted (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"org_1"}, orgIDs(t, s, "user_b")); diff != "" {
			t.Errorf("a membership before the user (-want +got):\n%s", diff)
		}
		if u := userOf(t, s, "user_a"); u.Email != "a@example.com" {
			t.Errorf("a membership changed the user's email: %+v", u)
		}
		must(t, s.PutOrg(ctx, proxy.Org{ID: "org_2", Slug: "beta", Name: "Beta"})) // renamed
		if o, err := s.Org(ctx, "org_2"); err != nil || o != (proxy.Org{ID: "org_2", Slug: "beta", Name: "Beta"}) {
			t.Errorf("Org(org_2) = %+v, %v", o, err)
		}
		if err := s.PutOrg(ctx, proxy.Org{Slug: "x"}); err == nil {
			t.Error("PutOrg without an ID succeeded")
		}

		must(t, s.DeleteMembership(ctx, "org_2", "user_a"))
		must(t, s.DeleteMembership(ctx, "org_2", "user_a")) // again
		if diff := cmp.Diff([]string{"org_1"}, orgIDs(t, s, "user_a")); diff != "" {
			t.Errorf("after leaving org_2 (-want +got):\n%s", diff)
		}
		// The listing shows what the record says.
		p, err := s.ListPage(ctx, proxy.UserFilter{Query: "user_a"})
		if err != nil || len(p.Users) != 1 || !cmp.Equal(p.Users[0].OrgIDs, []string{"org_1"}) {
			t.Errorf("listing of user_a: %+v, %v; want org_1 only", p.Users, err)
		}
	})

	// An organisation Clerk deleted: its record, every membership in it
	// and its keys go; its Stripe customer stays.
	t.Run("deletion cascades", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		must(t, s.PutOrg(ctx, proxy.Org{ID: "org_1", Slug: "acme", Name: "Acme"}))
		must(t, s.PutOrg(ctx, proxy.Org{ID: "org_2", Slug: "beta"}))
		for _, u := range []string{"user_a", "user_b"} {
			must(t, s.PutMembership(ctx, "org_1", u, "org:member"))
		}
		must(t, s.PutMembership(ctx, "org_2", "user_a", "org:member"))
		key, other := newKey(t, s, org1()), newKey(t, s, orgSubject("org_2"))
		mustCommit(t, s, twoSubs("cus_o", org1(), T0()), "")

		must(t, s.DeleteOrg(ctx, "org_1"))
		must(t, s.DeleteOrg(ctx, "org_1"))
		must(t, s.DeleteOrg(ctx, "org_unknown"))
		if _, err := s.Org(ctx, "org_1"); !errors.Is(err, proxy.ErrNotFound) {
			t.Errorf("deleted org: %v", err)
		}
		if diff := cmp.Diff([]string{"org_2"}, orgIDs(t, s, "user_a")); diff != "" {
			t.Errorf("user_a after org_1 went (-want +got):\n%s", diff)
		}
		if ids := orgIDs(t, s, "user_b"); len(ids) != 0 {
			t.Errorf("user_b still in %v", ids)
		}
		p, err := s.ListPage(ctx, proxy.UserFilter{Query: "user_"})
		if err != nil || len(p.Users) != 2 || !cmp.Equal(p.Users[0].OrgIDs, []string{"org_2"}) || len(p.Users[1].OrgIDs) != 0 {
			t.Errorf("listing after org_1 went: %+v, %v; want user_a in org_2, user_b in none", p.Users, err)
		}
		for id, revoked := range map[string]bool{key: true, other: false} {
			if k, err := s.APIKeyByID(ctx, id); err != nil || k.RevokedAt.IsZero() == revoked {
				t.Errorf("key %s of %s: revoked at %v (%v); want revoked %v", id, k.Subject, k.RevokedAt, err, revoked)
			}
		}
		if c, err := s.CustomerOf(ctx, org1()); err != nil || c != "cus_o" {
			t.Errorf("the deleted org's customer = %q, %v; want it kept", c, err)
		}
	})

	// Memberships of one user arriving at once are all kept: none is lost
	// to another's write of the user's record.
	t.Run("concurrent memberships are all kept", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		must(t, s.PutUser(ctx, proxy.User{ID: "user_a", Email: "a@example.com"}))
		var wg sync.WaitGroup
		var want []string
		for i := range 20 {
			org := fmt.Sprintf("org_%02d", i)
			want = append(want, org)
			for _, user := range []string{"user_a", "user_new"} { // user_new: no record yet
				wg.Go(func() {
					if err := s.PutMembership(ctx, org, user, "org:member"); err != nil {
						t.Error(err)
					}
				})
			}
		}
		wg.Go(func() {
			if err := s.RecordSeen(ctx, map[string]time.Time{"user_a": T0()}); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		u := userOf(t, s, "user_a")
		if u == nil || !cmp.Equal(want, u.OrgIDs) || u.Email != "a@example.com" || !u.LastSeen.Equal(T0()) {
			t.Errorf("user_a after concurrent writes = %+v; want 20 organisations, the email and the sighting", u)
		}
		if u := userOf(t, s, "user_new"); u == nil || !cmp.Equal(want, u.OrgIDs) {
			t.Errorf("user_new after 20 concurrent memberships = %+v; want all 20", u)
		}
		if p, err := s.ListPage(ctx, proxy.UserFilter{}); err != nil || p.Total != 2 {
			t.Errorf("listing total %d, %v; want 2", p.Total, err)
		}
	})
}

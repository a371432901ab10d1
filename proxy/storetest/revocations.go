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

// Revocations runs the proxy.RevocationStore suite.
func Revocations(t *testing.T, open Open) {
	list := func(t *testing.T, s Store, now time.Time) []proxy.Revocation {
		t.Helper()
		rs, err := s.Revocations(t.Context(), now)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}

	t.Run("unexpired at each instant, by expiry then addition", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		if got := list(t, s, T0()); len(got) != 0 {
			t.Fatalf("Revocations of a new store = %+v; want none", got)
		}
		at := T0().Add(-time.Minute)
		session := proxy.Revocation{Kind: proxy.RevocationSession, ID: "sess_1", UserID: "user_1", At: at, Expires: T0().Add(time.Hour)}
		user := proxy.Revocation{Kind: proxy.RevocationUser, UserID: "user_2", At: at, Expires: T0().Add(3 * time.Hour)}
		removed := proxy.Revocation{Kind: proxy.RevocationMembership, OrgID: "org_1", UserID: "user_3", At: at, Expires: T0().Add(2 * time.Hour)}
		// Happened, Clerk's time of a membership change, kept as is; zero
		// (removed's) read back as zero.
		demoted := proxy.Revocation{Kind: proxy.RevocationMembership, OrgID: "org_1", UserID: "user_3", Role: "org:member", At: at.Add(time.Second), Expires: T0().Add(2 * time.Hour),
			Happened: at.Add(-time.Minute)}
		org := proxy.Revocation{Kind: proxy.RevocationOrg, OrgID: "org_2", At: at, Expires: T0().Add(30 * time.Minute)}
		for _, r := range []proxy.Revocation{session, user, removed, demoted, org} {
			if err := s.AddRevocation(ctx, r); err != nil {
				t.Fatalf("AddRevocation(%+v): %v", r, err)
			}
		}
		// In another zone: returned in UTC, the same instants.
		local := session
		zone := time.FixedZone("X", 3600)
		local.ID, local.At, local.Expires = "sess_2", at.In(zone), T0().Add(time.Hour).In(zone)
		must(t, s.AddRevocation(ctx, local))
		localUTC := local
		localUTC.At, localUTC.Expires = local.At.UTC(), local.Expires.UTC()

		all := []proxy.Revocation{org, session, localUTC, removed, demoted, user}
		for _, tc := range []struct {
			now  time.Time
			want []proxy.Revocation
		}{
			{T0().Add(-24 * time.Hour), all},
			{T0(), all},
			{T0().Add(30*time.Minute - time.Microsecond), all}, // microseconds: what PostgreSQL keeps
			{T0().Add(30 * time.Minute), all[1:]},              // the org's expiry: gone
			{T0().Add(time.Hour), []proxy.Revocation{removed, demoted, user}},
			{T0().Add(2*time.Hour + time.Second), []proxy.Revocation{user}},
			{T0().Add(3 * time.Hour), nil},
			{time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), nil},
		} {
			got := list(t, s, tc.now)
			if diff := cmp.Diff(tc.want, got, equateEmpty()); diff != "" {
				t.Errorf("Revocations(%s) (-want +got):\n%s", tc.now, diff)
			}
			for _, r := range got {
				if r.At.Location() != time.UTC || r.Expires.Location() != time.UTC {
					t.Errorf("%s revocation in %v; want UTC", r.Kind, r.At.Location())
				}
			}
		}
	})

	// The store's clock moves on; what expired stops counting whatever
	// is pruned, and what has not stays.
	t.Run("expiry on the store's clock", func(t *testing.T) {
		s, clk := fresh(t, open)
		ctx := t.Context()
		add := func(id string, expires time.Time) {
			t.Helper()
			must(t, s.AddRevocation(ctx, proxy.Revocation{Kind: proxy.RevocationSession, ID: id, At: T0().Add(-time.Hour), Expires: expires}))
		}
		add("sess_1", T0().Add(time.Minute))
		add("sess_2", T0().Add(2*time.Minute))
		add("sess_3", T0().Add(time.Hour))
		clk.Set(T0().Add(2 * time.Minute)) // sess_1 and sess_2 have expired
		add("sess_4", T0().Add(2*time.Hour))
		add("sess_old", T0().Add(time.Minute)) // expired before it arrives
		var ids []string
		for _, r := range list(t, s, clk.Now()) {
			ids = append(ids, r.ID)
		}
		if !cmp.Equal(ids, []string{"sess_3", "sess_4"}) {
			t.Errorf("Revocations at the store's now = %v; want [sess_3 sess_4]", ids)
		}
	})

	t.Run("refuses the invalid", func(t *testing.T) {
		s, _ := fresh(t, open)
		for name, r := range map[string]proxy.Revocation{
			"unknown kind":      {Kind: "team", ID: "x", At: T0(), Expires: T0().Add(time.Hour)},
			"no session ID":     {Kind: proxy.RevocationSession, At: T0(), Expires: T0().Add(time.Hour)},
			"no expiry":         {Kind: proxy.RevocationUser, UserID: "user_1", At: T0()},
			"no time":           {Kind: proxy.RevocationUser, UserID: "user_1", Expires: T0().Add(time.Hour)},
			"membership no org": {Kind: proxy.RevocationMembership, UserID: "user_1", At: T0(), Expires: T0().Add(time.Hour)},
			"org without org":   {Kind: proxy.RevocationOrg, At: T0(), Expires: T0().Add(time.Hour)},
		} {
			if err := s.AddRevocation(t.Context(), r); !errors.Is(err, proxy.ErrInvalidRevocation) {
				t.Errorf("%s: AddRevocation err = %v; want ErrInvalidRevocation", name, err)
			}
		}
		if got := list(t, s, T0().Add(-time.Hour)); len(got) != 0 {
			t.Errorf("invalid revocations stored: %+v", got)
		}
	})

	t.Run("concurrent additions are all kept", func(t *testing.T) {
		s, _ := fresh(t, open)
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				r := proxy.Revocation{Kind: proxy.RevocationSession, ID: fmt.Sprintf("sess_%02d", i), At: T0(), Expires: T0().Add(time.Hour)}
				if err := s.AddRevocation(t.Context(), r); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if got := list(t, s, T0()); len(got) != 50 {
			t.Errorf("%d revocations after 50 concurrent additions", len(got))
		}
	})
}

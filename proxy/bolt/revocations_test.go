package bolt

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

func mustRevocations(tb testing.TB, s *Store, now time.Time) []proxy.Revocation {
	tb.Helper()
	rs, err := s.Revocations(tb.Context(), now)
	if err != nil {
		tb.Fatal(err)
	}
	return rs
}

// revocationKeys counts what the bucket holds, expired or not.
func revocationKeys(tb testing.TB, s *Store) int {
	tb.Helper()
	n := 0
	err := s.db.View(func(tx *bbolt.Tx) error {
		if b := optionalBucket(tx, bucketRevocations); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestRevocations_UnexpiredAcrossRestarts(t *testing.T) {
	s, path, clk := newClockStore(t)
	ctx := t.Context()
	if got := mustRevocations(t, s, t0()); len(got) != 0 {
		t.Fatalf("Revocations of a new store = %+v; want none", got)
	}
	at := t0().Add(-time.Minute)
	session := proxy.Revocation{Kind: proxy.RevocationSession, ID: "sess_1", UserID: "user_1", At: at, Expires: t0().Add(time.Hour)}
	user := proxy.Revocation{Kind: proxy.RevocationUser, UserID: "user_2", At: at, Expires: t0().Add(3 * time.Hour)}
	removed := proxy.Revocation{Kind: proxy.RevocationMembership, OrgID: "org_1", UserID: "user_3", At: at, Expires: t0().Add(2 * time.Hour)}
	demoted := proxy.Revocation{Kind: proxy.RevocationMembership, OrgID: "org_1", UserID: "user_4", Role: "org:member", At: at, Expires: t0().Add(2 * time.Hour)}
	org := proxy.Revocation{Kind: proxy.RevocationOrg, OrgID: "org_2", At: at, Expires: t0().Add(30 * time.Minute)}
	for _, r := range []proxy.Revocation{session, user, removed, demoted, org} {
		if err := s.AddRevocation(ctx, r); err != nil {
			t.Fatalf("AddRevocation(%+v): %v", r, err)
		}
	}
	// In another zone: stored and returned in UTC, the same instants.
	local := session
	local.ID, local.At, local.Expires = "sess_2", at.In(time.FixedZone("X", 3600)), t0().Add(time.Hour).In(time.FixedZone("X", 3600))
	if err := s.AddRevocation(ctx, local); err != nil {
		t.Fatal(err)
	}
	localUTC := local
	localUTC.At, localUTC.Expires = local.At.UTC(), local.Expires.UTC()

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openClock(t, path, clk)
	// Each instant returns what has not expired by then, by expiry and
	// then in the order added.
	for _, tc := range []struct {
		now  time.Time
		want []proxy.Revocation
	}{
		{t0().Add(-24 * time.Hour), []proxy.Revocation{org, session, localUTC, removed, demoted, user}},
		{t0(), []proxy.Revocation{org, session, localUTC, removed, demoted, user}},
		{t0().Add(30*time.Minute - time.Nanosecond), []proxy.Revocation{org, session, localUTC, removed, demoted, user}},
		{t0().Add(30 * time.Minute), []proxy.Revocation{session, localUTC, removed, demoted, user}}, // the org's expiry: gone
		{t0().Add(time.Hour), []proxy.Revocation{removed, demoted, user}},
		{t0().Add(2*time.Hour + time.Second), []proxy.Revocation{user}},
		{t0().Add(3 * time.Hour), nil},
		{time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), nil},
		{time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), []proxy.Revocation{org, session, localUTC, removed, demoted, user}},
	} {
		if diff := cmp.Diff(tc.want, mustRevocations(t, s, tc.now), equateEmpty()); diff != "" {
			t.Errorf("Revocations(%s) (-want +got):\n%s", tc.now, diff)
		}
	}
}

// A write prunes what has expired by the store's clock, so the bucket does
// not grow with every session Clerk ever ended.
func TestAddRevocation_PrunesExpired(t *testing.T) {
	s, _, clk := newClockStore(t)
	ctx := t.Context()
	add := func(id string, expires time.Time) {
		t.Helper()
		if err := s.AddRevocation(ctx, proxy.Revocation{Kind: proxy.RevocationSession, ID: id, At: t0().Add(-time.Hour), Expires: expires}); err != nil {
			t.Fatal(err)
		}
	}
	add("sess_1", t0().Add(time.Minute))
	add("sess_2", t0().Add(2*time.Minute))
	add("sess_3", t0().Add(time.Hour))
	clk.Set(t0().Add(2 * time.Minute)) // sess_1 and sess_2 have expired
	add("sess_4", t0().Add(2*time.Hour))
	add("sess_old", t0().Add(time.Minute)) // expired before it arrives: not kept
	if n := revocationKeys(t, s); n != 2 {
		t.Errorf("%d revocations stored after the prune; want sess_3 and sess_4", n)
	}
	var ids []string
	for _, r := range mustRevocations(t, s, t0()) {
		ids = append(ids, r.ID)
	}
	if !cmp.Equal(ids, []string{"sess_3", "sess_4"}) {
		t.Errorf("Revocations after the prune = %v; want [sess_3 sess_4]", ids)
	}
}

func TestAddRevocation_RefusesInvalid(t *testing.T) {
	s, _ := newStore(t)
	for name, r := range map[string]proxy.Revocation{
		"unknown kind":      {Kind: "team", ID: "x", At: t0(), Expires: t0().Add(time.Hour)},
		"no session ID":     {Kind: proxy.RevocationSession, At: t0(), Expires: t0().Add(time.Hour)},
		"no expiry":         {Kind: proxy.RevocationUser, UserID: "user_1", At: t0()},
		"beyond the keys":   {Kind: proxy.RevocationUser, UserID: "user_1", At: t0(), Expires: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)},
		"before the epoch":  {Kind: proxy.RevocationUser, UserID: "user_1", At: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), Expires: time.Date(1961, 1, 1, 0, 0, 0, 0, time.UTC)},
		"membership no org": {Kind: proxy.RevocationMembership, UserID: "user_1", At: t0(), Expires: t0().Add(time.Hour)},
	} {
		if err := s.AddRevocation(t.Context(), r); !errors.Is(err, proxy.ErrInvalidRevocation) {
			t.Errorf("%s: AddRevocation err = %v; want ErrInvalidRevocation", name, err)
		}
	}
	if n := revocationKeys(t, s); n != 0 {
		t.Errorf("%d invalid revocations stored", n)
	}
}

func TestRevocations_RejectNewerVersion(t *testing.T) {
	s, _ := newStore(t)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b, err := createdBucket(tx, bucketRevocations)
		if err != nil {
			return err
		}
		return b.Put(timeKey("", t0().Add(time.Hour), 1), []byte(`{"v":2,"kind":"user","user_id":"user_1"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revocations(t.Context(), t0()); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("Revocations err = %v; want ErrUnsupportedVersion", err)
	}
}

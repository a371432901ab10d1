package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// memRevocations is a RevocationStore in memory that honours Expires, as
// the real stores do; fail makes every write fail.
type memRevocations struct {
	mu   sync.Mutex
	rs   []proxy.Revocation
	fail error
}

func (m *memRevocations) AddRevocation(_ context.Context, r proxy.Revocation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if err := r.Valid(); err != nil {
		return err
	}
	m.rs = append(m.rs, r)
	return nil
}

func (m *memRevocations) Revocations(_ context.Context, now time.Time) ([]proxy.Revocation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []proxy.Revocation
	for _, r := range m.rs {
		if !r.Expired(now) {
			out = append(out, r)
		}
	}
	return out, nil
}

// restart builds what a new process would: a fresh State over store (nil:
// memory only) with the stored revocations loaded, and a Server on it.
func (fx *gateFixture) restart(store proxy.RevocationStore) int {
	fx.t.Helper()
	fx.state = NewState(StateOptions{Sessions: fx.checker, Revocations: store})
	n, err := fx.state.LoadRevocations(fx.t.Context(), fx.now)
	if err != nil {
		fx.t.Fatal(err)
	}
	srv, err := New(Options{Config: fx.srv.cfg, Auth: fakeAuth{signedInByHeader}, Portal: fakePortal{}, State: fx.state, Ender: fx.ender,
		Entitlements: fx.ents, Now: func() time.Time { return fx.now }})
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.srv = srv
	fx.front = httptest.NewServer(srv)
	fx.t.Cleanup(fx.front.Close)
	return n
}

// TestRevocations_SurviveARestart: what Clerk ended is kept in the store
// until session.ttl has passed, and a gateway started later still refuses
// the gateway cookies it ended; without the store a restart forgets.
func TestRevocations_SurviveARestart(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name   string
		revoke func(fx *gateFixture) error
		want   proxy.Revocation
	}{
		{"session ended", func(fx *gateFixture) error { return fx.srv.RevokeSession(ctx, "sess_1") },
			proxy.Revocation{Kind: proxy.RevocationSession, ID: "sess_1"}},
		{"user deleted", func(fx *gateFixture) error { return fx.srv.RevokeUser(ctx, "user_1") },
			proxy.Revocation{Kind: proxy.RevocationUser, UserID: "user_1"}},
		{"membership deleted", func(fx *gateFixture) error { return fx.srv.RevokeMembership(ctx, "org_1", "user_1", fx.now) },
			proxy.Revocation{Kind: proxy.RevocationMembership, OrgID: "org_1", UserID: "user_1"}},
		{"organisation deleted", func(fx *gateFixture) error { return fx.srv.RevokeOrganization(ctx, "org_1", fx.now) },
			proxy.Revocation{Kind: proxy.RevocationOrg, OrgID: "org_1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newGateFixture(t, nil)
			fx.ents[proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_1"}] = &proxy.Entitlements{Subscriptions: []proxy.Subscription{{Plan: "team", Status: proxy.StatusActive}}}
			store := &memRevocations{}
			fx.restart(store)
			gw := gatewayCookieFrom(t, fx, "X-Test-Org", "org_1")
			stale := with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", fmt.Sprint(fx.now.Unix()))
			if resp := fx.do("GET", "/team/x", stale, gw); resp.StatusCode != 200 {
				t.Fatalf("before: %d", resp.StatusCode)
			}
			revokedAt := fx.now
			if err := tc.revoke(fx); err != nil {
				t.Fatal(err)
			}
			want := tc.want
			want.At, want.Expires = revokedAt, revokedAt.Add(12*time.Hour) // session.ttl
			if want.Kind == proxy.RevocationMembership {
				want.Happened = revokedAt // Clerk's time of it
			}
			if diff := cmp.Diff([]proxy.Revocation{want}, store.rs); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}

			fx.now = fx.now.Add(time.Second)
			if n := fx.restart(store); n != 1 {
				t.Errorf("restart loaded %d revocations, want 1", n)
			}
			if resp := fx.do("GET", "/team/x", stale, gw); resp.StatusCode == 200 {
				t.Errorf("after a restart: the revoked cookie is let through")
			}
			fx.restart(nil)
			if resp := fx.do("GET", "/team/x", stale, gw); resp.StatusCode != 200 {
				t.Errorf("control, a restart without the store: %d, want 200 (the store is what remembers)", resp.StatusCode)
			}
			fx.now = revokedAt.Add(12 * time.Hour)
			if n := fx.restart(store); n != 0 {
				t.Errorf("after session.ttl: %d revocations still loaded", n)
			}
		})
	}
}

// TestRevocations_StoreFailure: the revocation applies at once all the
// same; the error says it was not kept (Clerk's webhook then answers 500,
// and Svix delivers the event again).
func TestRevocations_StoreFailure(t *testing.T) {
	fx := newGateFixture(t, nil)
	diskFull := errors.New("disk full")
	fx.restart(&memRevocations{fail: diskFull})
	if err := fx.srv.RevokeSession(t.Context(), "sess_1"); !errors.Is(err, diskFull) {
		t.Errorf("err = %v, want the store's", err)
	}
	if resp := fx.do("GET", "/private/x", with(xhr, "X-Test-User", "user_1")); resp.StatusCode != 401 {
		t.Errorf("a token of the revoked session: %d, want 401", resp.StatusCode)
	}
}

// TestRevocations_LateOlderMembershipEventLoses: Svix delivers a failed
// event again for hours, so an older role change can arrive after a newer
// one. It changes nothing and is not kept: a demoted member stays demoted,
// before and after a restart.
func TestRevocations_LateOlderMembershipEventLoses(t *testing.T) {
	fx := newGateFixture(t, nil)
	store := &memRevocations{}
	fx.restart(store)
	t0 := fx.now
	if err := fx.srv.UpdateMembership(t.Context(), "org_1", "user_1", "org:member", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	fx.now = t0.Add(2 * time.Hour)
	if err := fx.srv.UpdateMembership(t.Context(), "org_1", "user_1", "org:admin", t0); err != nil {
		t.Fatal(err)
	}
	if len(store.rs) != 1 || store.rs[0].Role != "org:member" {
		t.Errorf("kept %+v, want only the demotion", store.rs)
	}
	issuedBefore := &proxy.Identity{UserID: "user_1", OrgID: "org_1", OrgRole: "org:admin", IssuedAt: t0}
	fx.srv.gw.orgs.apply(issuedBefore)
	fresh := &proxy.Identity{UserID: "user_1", OrgID: "org_1", OrgRole: "org:member", IssuedAt: fx.now.Add(-time.Second)}
	fx.srv.gw.orgs.apply(fresh)
	if issuedBefore.OrgRole != "org:member" || fresh.OrgRole != "org:member" {
		t.Errorf("roles %q (issued before the demotion), %q (issued after it), want org:member twice", issuedBefore.OrgRole, fresh.OrgRole)
	}
}

// TestRevocations_AStoredChangeDoesNotOutrankALaterOne: Clerk promoted a
// member at t0-60s and demoted her at t0-30s. Whatever replica applied
// each, in whatever order they reach a replica (its webhook, the change
// log, the store at a start), and however late each was applied (a
// change's cutoff), she ends a member, in tokens issued before the
// demotion and after it. Before, a stored change's cutoff stood in for
// its Clerk time: a promotion delivered late (applied at t0) outranked
// the demotion, which was dropped and not kept, and every replica made
// even a token Clerk issued after the demotion, as a member, an admin
// (red team: two replicas on one PostgreSQL); and a replica frozen past
// the Clerk order lock's timeout wrote its older promotion after the
// demotion, which then lost to it everywhere.
func TestRevocations_AStoredChangeDoesNotOutrankALaterOne(t *testing.T) {
	const org, user = "org_1", "user_1"
	stored := func(role string, at, happened time.Time) proxy.Revocation {
		return proxy.Revocation{Kind: proxy.RevocationMembership, OrgID: org, UserID: user, Role: role,
			At: at, Expires: at.Add(12 * time.Hour), Happened: happened}
	}
	type step func(t *testing.T, fx *gateFixture, store *memRevocations, t0 time.Time)
	webhook := func(role string, clerk time.Duration) step {
		return func(t *testing.T, fx *gateFixture, _ *memRevocations, t0 time.Time) {
			if err := fx.srv.UpdateMembership(t.Context(), org, user, role, t0.Add(clerk)); err != nil {
				t.Fatal(err)
			}
		}
	}
	other := func(r func(t0 time.Time) proxy.Revocation) step { // another replica's, through the change log
		return func(_ *testing.T, fx *gateFixture, store *memRevocations, t0 time.Time) {
			store.rs = append(store.rs, r(t0))
			fx.state.ApplyRevocation(r(t0))
		}
	}
	restart := func(_ *testing.T, fx *gateFixture, store *memRevocations, _ time.Time) { fx.restart(store) }
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"the late promotion another replica's, the demotion this one's", []step{
			other(func(t0 time.Time) proxy.Revocation { return stored("org:admin", t0, t0.Add(-60*time.Second)) }),
			webhook("org:member", -30*time.Second)}},
		{"both this replica's, across a restart", []step{
			webhook("org:admin", -60*time.Second), restart, webhook("org:member", -30*time.Second)}},
		{"the promotion another replica's, written after the demotion (a frozen lock holder)", []step{
			webhook("org:member", -30*time.Second),
			other(func(t0 time.Time) proxy.Revocation {
				return stored("org:admin", t0.Add(40*time.Second), t0.Add(-60*time.Second))
			})}},
		{"a promotion stored without Clerk's time, then the demotion", []step{
			other(func(t0 time.Time) proxy.Revocation { return stored("org:admin", t0, time.Time{}) }),
			webhook("org:member", -30*time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newGateFixture(t, nil)
			store := &memRevocations{}
			fx.restart(store)
			t0 := fx.now
			for _, s := range tc.steps {
				s(t, fx, store, t0)
				fx.now = fx.now.Add(time.Second)
			}
			for _, when := range []string{"now", "after a restart"} {
				if when != "now" {
					fx.restart(store)
				}
				before := &proxy.Identity{UserID: user, OrgID: org, OrgRole: "org:admin", IssuedAt: t0.Add(-40 * time.Second)}
				fx.srv.gw.orgs.apply(before)
				after := &proxy.Identity{UserID: user, OrgID: org, OrgRole: "org:member", IssuedAt: t0.Add(-10 * time.Second)}
				fx.srv.gw.orgs.apply(after)
				if before.OrgRole != "org:member" || after.OrgRole != "org:member" {
					t.Errorf("%s: roles %q (issued before the demotion), %q (issued after it), want org:member twice", when, before.OrgRole, after.OrgRole)
				}
			}
		})
	}
}

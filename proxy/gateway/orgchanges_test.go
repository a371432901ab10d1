package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

func TestOrgChanges(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	id := func(user, org, role string, issued time.Time) *proxy.Identity {
		slug := ""
		if org != "" {
			slug = "slug"
		}
		return &proxy.Identity{UserID: user, OrgID: org, OrgSlug: slug, OrgRole: role, IssuedAt: issued}
	}
	o := newOrgChanges()
	if o.apply(id("user_1", "org_1", "org:admin", t0)) {
		t.Fatal("nothing recorded, yet something applied")
	}
	o.member("org_1", "user_1", memberChange{role: "org:member", at: t0, happened: t0})
	o.member("org_2", "user_1", memberChange{removed: true, at: t0, happened: t0})
	o.member("org_1", "user_2", memberChange{removed: true, at: t0, happened: t0})
	o.deleteOrg("org_gone", t0)
	// An older change arriving late does not undo a newer one, even though
	// it is applied later (its cutoff is when it arrived).
	if o.member("org_1", "user_1", memberChange{removed: true, at: t0.Add(time.Hour), happened: t0.Add(-time.Minute)}) {
		t.Error("a change Clerk made before the one recorded was recorded over it")
	}

	tests := []struct {
		name    string
		in      *proxy.Identity
		want    *proxy.Identity
		changed bool
	}{
		{"role replaced", id("user_1", "org_1", "org:admin", t0.Add(-time.Second)), id("user_1", "org_1", "org:member", t0.Add(-time.Second)), true},
		{"same second counts as before", id("user_1", "org_1", "org:admin", t0), id("user_1", "org_1", "org:member", t0), true},
		{"issued after: Clerk's answer stands", id("user_1", "org_1", "org:admin", t0.Add(time.Second)), id("user_1", "org_1", "org:admin", t0.Add(time.Second)), false},
		{"membership removed", id("user_1", "org_2", "org:admin", t0), id("user_1", "", "", t0), true},
		{"another user's change", id("user_3", "org_1", "org:admin", t0), id("user_3", "org_1", "org:admin", t0), false},
		{"organisation deleted", id("user_9", "org_gone", "org:admin", t0.Add(-time.Hour)), id("user_9", "", "", t0.Add(-time.Hour)), true},
		{"no organisation", id("user_2", "", "", t0), id("user_2", "", "", t0), false},
	}
	for _, tt := range tests {
		got := *tt.in
		if changed := o.apply(&got); changed != tt.changed || !cmp.Equal(&got, tt.want) {
			t.Errorf("%s: apply = %v, %+v; want %v, %+v", tt.name, changed, got, tt.changed, *tt.want)
		}
	}
}

// An organisation deleted in Clerk is gone from a still-valid token's
// identity and from the gateway cookie at once.
func TestGate_OrganizationDeletedAppliesAtOnce(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.ents[proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_1"}] = &proxy.Entitlements{Subscriptions: []proxy.Subscription{{Plan: "team", Status: proxy.StatusActive}}}
	signedIn := with(xhr, "X-Test-User", "user_1", "X-Test-Org", "org_1")
	if resp := fx.do("GET", "/team/x", signedIn); resp.StatusCode != 200 {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	gw := gatewayCookieFrom(t, fx, "X-Test-Org", "org_1")
	fx.srv.RevokeOrganization(t.Context(), "org_1", fx.now)
	if resp := fx.do("GET", "/team/x", signedIn); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("token issued before the deletion: %d, want 402", resp.StatusCode)
	}
	if resp := fx.do("GET", "/team/x", with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", "1"), gw); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("gateway cookie issued before the deletion: %d, want 402", resp.StatusCode)
	}
}

// The gateway cookie's organisation follows the session check: Clerk's
// last active organisation replaces it, and the role, which that answer
// does not name, is dropped rather than kept.
func TestGate_GatewayCookieOrgFollowsTheSessionCheck(t *testing.T) {
	fx := newGateFixture(t, nil)
	gw := gatewayCookieFrom(t, fx, "X-Test-Org", "org_1")
	fx.checker.org = "org_2"
	fx.now = fx.now.Add(2 * time.Minute)
	resp := fx.do("GET", "/.tollgate/api/me", with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", "1"), gw)
	var me meJSON
	if err := json.NewDecoder(resp.Body).Decode(&me); err != nil || me.UserID != "user_1" || me.OrgID != "org_2" || me.OrgRole != "" {
		t.Fatalf("after the check: %+v %v, want org_2 without a role", me, err)
	}
	var renewed *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == gw.Name {
			renewed = c
		}
	}
	if renewed == nil {
		t.Fatal("the cookie was not renewed with the new organisation")
	}
	// Within the next refresh period the renewed cookie says the same,
	// without asking Clerk.
	calls := fx.checker.calls
	fx.checker.org = ""
	resp = fx.do("GET", "/private/x", with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", "1"), renewed)
	if got := fx.lastUpstream().Header.Get(HeaderOrg); resp.StatusCode != 200 || got != "org_2" || fx.checker.calls != calls {
		t.Errorf("renewed cookie: %d org %q, %d more checks", resp.StatusCode, got, fx.checker.calls-calls)
	}
	// No active organisation at the next check: none on the identity.
	fx.now = fx.now.Add(2 * time.Minute)
	resp = fx.do("GET", "/private/x", with(xhr, "X-Test-Expired", "sess_1", "X-Test-UAT", "1"), renewed)
	if got := fx.lastUpstream().Header.Get(HeaderOrg); resp.StatusCode != 200 || got != "" {
		t.Errorf("no organisation any more: %d org %q", resp.StatusCode, got)
	}
}

func TestChangeTime(t *testing.T) {
	fx := newGateFixture(t, nil)
	for _, tt := range []struct{ at, want time.Time }{
		{fx.now.Add(-time.Minute), fx.now},                      // Clerk's clock behind, or a delivery within the reach
		{fx.now.Add(-time.Hour), fx.now.Add(-55 * time.Minute)}, // a late delivery or resend: identities issued since carry Clerk's later answer
		{fx.now.Add(time.Minute), fx.now.Add(time.Minute)},      // Clerk's clock ahead
		{fx.now.Add(time.Hour), fx.now.Add(5 * time.Minute)},    // far ahead: bounded
		{time.Time{}, fx.now},                                   // no timestamp in the payload
	} {
		if got := fx.srv.changeTime(tt.at); !got.Equal(tt.want) {
			t.Errorf("changeTime(%v) = %v, want %v", tt.at, got, tt.want)
		}
	}
}

type pacedChecker struct {
	fakeChecker
	stretch float64
}

func (p *pacedChecker) RefreshStretch() float64 { return p.stretch }

// While the Backend API budget runs short, a session's answer is kept for
// the stretched interval: a client showing an old, unrenewed gateway cookie
// again and again cannot make tollgate ask Clerk more often than that.
func TestGatewaySessions_StretchedRefreshIsTheCacheLifeToo(t *testing.T) {
	checker := &pacedChecker{fakeChecker: fakeChecker{active: true}, stretch: 4}
	gw, err := newGatewaySessions(proxy.SessionConfig{Secret: "0123456789abcdef0123456789abcdef", TTL: time.Hour, Refresh: time.Minute},
		false, newSessionState(checker, nil))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for i := range 4 { // 0, 1, 2, 3 minutes: inside 4 × refresh
		if _, err := gw.checkSession(context.Background(), "sess_1", start.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if checker.calls != 1 {
		t.Errorf("Clerk asked %d times in 3 minutes at a 4× stretch, want 1", checker.calls)
	}
}

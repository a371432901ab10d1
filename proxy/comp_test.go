package proxy

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestComp_ActiveUntilExpiryUnlessRevoked(t *testing.T) {
	expires := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		revoked bool
		at      time.Time
		want    bool
	}{
		{"long before", false, expires.Add(-30 * 24 * time.Hour), true},
		{"its last moment", false, expires.Add(-time.Nanosecond), true},
		{"at the expiry", false, expires, false},
		{"after", false, expires.Add(time.Hour), false},
		{"revoked before the expiry", true, expires.Add(-time.Hour), false},
	}
	for _, tt := range tests {
		c := Comp{ID: "comp_1", Plan: "pro", ExpiresAt: expires, Revoked: tt.revoked}
		if got := c.Active(tt.at); got != tt.want {
			t.Errorf("%s: Active = %v, want %v", tt.name, got, tt.want)
		}
		// The decision agrees with Active for a comp that is not revoked
		// (a revoked one never reaches it: All leaves it out).
		if sub := c.Subscription(); !tt.revoked && Grants(&sub, AccessPolicy{PastDueGrace: time.Hour, PausedCollection: PausedCollectionRevoke}, tt.at) != tt.want {
			t.Errorf("%s: Grants(comp subscription) = %v, want %v", tt.name, !tt.want, tt.want)
		}
	}
}

func TestEntitlementsAll(t *testing.T) {
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	stripe := []Subscription{{ID: "sub_1", Plan: "pro", Status: StatusActive}}
	active := Comp{ID: "comp_a", Plan: "team", ExpiresAt: now.Add(time.Hour)}
	expired := Comp{ID: "comp_e", Plan: "plus", ExpiresAt: now}
	revoked := Comp{ID: "comp_r", Plan: "plus", ExpiresAt: now.Add(time.Hour), Revoked: true}
	tests := []struct {
		name string
		ents *Entitlements
		want []Subscription
	}{
		{"nil", nil, nil},
		{"subscriptions only", &Entitlements{Subscriptions: stripe}, stripe},
		{"comps that grant nothing", &Entitlements{Subscriptions: stripe, Comps: []Comp{expired, revoked}}, stripe},
		{"an active comp after the subscriptions", &Entitlements{Subscriptions: stripe, Comps: []Comp{expired, active, revoked}},
			[]Subscription{stripe[0], {ID: "comp_a", Plan: "team", Status: StatusActive, CurrentPeriodEnd: now.Add(time.Hour), Comp: true}}},
		{"a comp alone", &Entitlements{Comps: []Comp{active}},
			[]Subscription{{ID: "comp_a", Plan: "team", Status: StatusActive, CurrentPeriodEnd: now.Add(time.Hour), Comp: true}}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, tt.ents.All(now)); diff != "" {
			t.Errorf("%s: All (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestNewCompID(t *testing.T) {
	a, b := NewCompID(), NewCompID()
	if a == b || len(a) != len("comp_")+26 || a[:5] != "comp_" {
		t.Errorf("NewCompID gave %q and %q; want two different comp_ and 26 letters", a, b)
	}
}

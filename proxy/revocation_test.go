package proxy

import (
	"errors"
	"testing"
	"time"
)

func TestRevocationValid(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	exp := at.Add(time.Hour)
	tests := []struct {
		name string
		r    Revocation
		ok   bool
	}{
		{"session", Revocation{Kind: RevocationSession, ID: "sess_1", At: at, Expires: exp}, true},
		{"user", Revocation{Kind: RevocationUser, UserID: "user_1", At: at, Expires: exp}, true},
		{"membership deleted", Revocation{Kind: RevocationMembership, OrgID: "org_1", UserID: "user_1", At: at, Expires: exp}, true},
		{"membership's new role", Revocation{Kind: RevocationMembership, OrgID: "org_1", UserID: "user_1", Role: "org:member", At: at, Expires: exp}, true},
		{"org", Revocation{Kind: RevocationOrg, OrgID: "org_1", At: at, Expires: exp}, true},
		{"no kind", Revocation{ID: "sess_1", At: at, Expires: exp}, false},
		{"unknown kind", Revocation{Kind: "team", ID: "x", At: at, Expires: exp}, false},
		{"session without its ID", Revocation{Kind: RevocationSession, UserID: "user_1", At: at, Expires: exp}, false},
		{"user without a user", Revocation{Kind: RevocationUser, ID: "user_1", At: at, Expires: exp}, false},
		{"membership without the org", Revocation{Kind: RevocationMembership, UserID: "user_1", At: at, Expires: exp}, false},
		{"membership without the user", Revocation{Kind: RevocationMembership, OrgID: "org_1", At: at, Expires: exp}, false},
		{"org without the org", Revocation{Kind: RevocationOrg, UserID: "user_1", At: at, Expires: exp}, false},
		{"no time", Revocation{Kind: RevocationSession, ID: "sess_1", Expires: exp}, false},
		{"no expiry", Revocation{Kind: RevocationSession, ID: "sess_1", At: at}, false},
		{"expires as it happens", Revocation{Kind: RevocationSession, ID: "sess_1", At: at, Expires: at}, false},
	}
	for _, tc := range tests {
		err := tc.r.Valid()
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrInvalidRevocation) {
			t.Errorf("%s: Valid() = %v; want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestRevocationExpired(t *testing.T) {
	exp := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	r := Revocation{Kind: RevocationUser, UserID: "user_1", At: exp.Add(-time.Hour), Expires: exp}
	for _, tc := range []struct {
		now  time.Time
		want bool
	}{
		{exp.Add(-time.Nanosecond), false},
		{exp, true},
		{exp.Add(time.Hour), true},
	} {
		if got := r.Expired(tc.now); got != tc.want {
			t.Errorf("Expired(%s) = %v, want %v", tc.now, got, tc.want)
		}
	}
}

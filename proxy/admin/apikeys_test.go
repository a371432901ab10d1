package admin

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

func TestAPI_KeysRoundTrip(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Keys = nil })
	if code, _, _ := e.do(t, "GET", "/api/users/user_a/keys", ""); code != 503 {
		t.Errorf("keys off: %d, want 503", code)
	}
	e = newEnv(t, func(c *Config) { c.Keys = c.Store.(proxy.APIKeyStore) })

	for _, tc := range []struct{ path, body, want string }{
		{"/api/users/user_a/keys", `{"scopes":["*"]}`, "a name of 1 to 100 characters is needed"},
		{"/api/users/user_a/keys", `{"name":"k"}`, "choose all routes or at least one route"},
		{"/api/users/user_a/keys", `{"name":"k","scopes":["*"],"days":4000}`, "expiry must be 1 to 3650 days, or none"},
		{"/api/users/nobody/keys", `{"name":"k","scopes":["*"]}`, "want a Clerk user ID (user_…) or organisation ID (org_…)"},
	} {
		code, _, b := e.do(t, "POST", tc.path, tc.body)
		if code != 400 || errorOf(t, b) != tc.want {
			t.Errorf("%s %s: %d %q, want 400 %q", tc.path, tc.body, code, errorOf(t, b), tc.want)
		}
	}

	code, _, b := e.do(t, "POST", "/api/users/org_x/keys", `{"name":"CI","scopes":["415VNA"],"days":7}`, ActorHeader, "ops-alice")
	if code != 201 {
		t.Fatalf("create: %d %s", code, b)
	}
	nk := mustJSON[NewKey](t, b)
	if err := proxy.CheckAPIKey(nk.Key, false); err != nil {
		t.Fatalf("made key: %v", err)
	}
	want := APIKey{ID: nk.Record.ID, Prefix: nk.Key[:proxy.APIKeyShownPrefix], Subject: "org_x", Name: "CI", Scopes: []string{"415VNA"},
		CreatedBy: "admin:ops-alice", CreatedAt: t0(), ExpiresAt: t0().AddDate(0, 0, 7), Usable: true}
	if diff := cmp.Diff(want, nk.Record); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}

	code, _, b = e.do(t, "GET", "/api/users/org_x/keys", "")
	if got := mustJSON[[]APIKey](t, b); code != 200 || len(got) != 1 || got[0].ID != nk.Record.ID {
		t.Fatalf("list: %d %s", code, b)
	}
	if code, _, _ := e.do(t, "DELETE", "/api/keys/key_0000000000000000", ""); code != 404 {
		t.Errorf("revoke unknown: %d, want 404", code)
	}
	code, _, b = e.do(t, "DELETE", "/api/keys/"+nk.Record.ID, "", ActorHeader, "ops-bob")
	if got := mustJSON[APIKey](t, b); code != 200 || got.Usable || !got.RevokedAt.Equal(t0()) {
		t.Fatalf("revoke: %d %s", code, b)
	}

	audit, err := e.store.AuditLog(t.Context(), proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_x"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range audit {
		got = append(got, a.Actor+" "+a.Action)
		if strings.Contains(a.Detail, nk.Key) {
			t.Error("the audit trail holds the key")
		}
	}
	if diff := cmp.Diff([]string{"ops-bob api_key.revoked", "ops-alice api_key.created"}, got); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

package gateway

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// memKeys is a proxy.APIKeyStore in memory.
type memKeys struct {
	mu   sync.Mutex
	keys []proxy.APIKey
}

func (m *memKeys) CreateAPIKey(_ context.Context, k proxy.APIKey, maxUsable int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if maxUsable > 0 {
		n := 0
		for _, o := range m.keys {
			if o.Subject == k.Subject && o.Usable(k.CreatedAt) == nil {
				n++
			}
		}
		if n >= maxUsable {
			return proxy.ErrTooManyAPIKeys
		}
	}
	m.keys = append(m.keys, k)
	return nil
}

func (m *memKeys) find(f func(proxy.APIKey) bool) (proxy.APIKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.keys {
		if f(k) {
			return k, nil
		}
	}
	return proxy.APIKey{}, proxy.ErrAPIKeyNotFound
}

func (m *memKeys) APIKeyByHash(_ context.Context, h [32]byte) (proxy.APIKey, error) {
	return m.find(func(k proxy.APIKey) bool { return k.Hash == h })
}

func (m *memKeys) APIKeyByID(_ context.Context, id string) (proxy.APIKey, error) {
	return m.find(func(k proxy.APIKey) bool { return k.ID == id })
}

func (m *memKeys) APIKeysOf(_ context.Context, s proxy.Subject) ([]proxy.APIKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []proxy.APIKey
	for _, k := range m.keys {
		if k.Subject == s {
			out = append(out, k)
		}
	}
	return out, nil
}

func (m *memKeys) RevokeAPIKey(_ context.Context, id string, at time.Time) (proxy.APIKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys {
		if m.keys[i].ID == id {
			if m.keys[i].RevokedAt.IsZero() {
				m.keys[i].RevokedAt = at
			}
			return m.keys[i], nil
		}
	}
	return proxy.APIKey{}, proxy.ErrAPIKeyNotFound
}

func (m *memKeys) RecordAPIKeysUsed(context.Context, map[string]time.Time) error { return nil }

// keysAuth is signedInByHeader with the organisation role from
// X-Test-Role (default org:admin) and "X-Test-Key: key_…" making the
// identity an API key's.
func keysAuth(r *http.Request) proxy.AuthResult {
	res := signedInByHeader(r)
	if res.Identity != nil {
		if role := r.Header.Get("X-Test-Role"); role != "" {
			res.Identity.OrgRole = role
		}
		if k := r.Header.Get("X-Test-Key"); k != "" {
			res.Identity.KeyID, res.Identity.KeyScopes, res.Identity.Source = k, []string{"*"}, "api_key"
		}
	}
	return res
}

type keysFixture struct {
	*gateFixture
	keys  *memKeys
	admin *fakeAdmin
}

func newKeysFixture(t *testing.T, on bool) *keysFixture {
	kf := &keysFixture{keys: &memKeys{}, admin: newFakeAdmin()}
	kf.gateFixture = newGateFixtureWith(t, nil, func(c string) string {
		if on {
			c += "api_keys:\n  enabled: true\n"
		}
		return c
	}, func(o *Options) {
		o.Auth, o.APIKeys, o.Admin = fakeAuth{keysAuth}, kf.keys, kf.admin
	})
	return kf
}

// post sends a same-origin form POST as a browser would.
func (kf *keysFixture) post(path string, form url.Values, hdr map[string]string) *http.Response {
	kf.t.Helper()
	req, err := http.NewRequest(http.MethodPost, kf.front.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		kf.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		kf.t.Fatal(err)
	}
	kf.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

var shownKey = regexp.MustCompile(`>(tg_(?:test|live)_[0-9A-Za-z]+)</textarea>`)

// create makes a key through the form and returns the key shown.
func (kf *keysFixture) create(form url.Values, hdr map[string]string) string {
	kf.t.Helper()
	resp := kf.post("/.tollgate/account/keys", form, hdr)
	b := body(kf.t, resp)
	if resp.StatusCode != http.StatusOK {
		kf.t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	m := shownKey.FindStringSubmatch(b)
	if m == nil {
		kf.t.Fatalf("create: no key on the page:\n%s", b)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		kf.t.Errorf("the page showing a key has Cache-Control %q, want no-store", got)
	}
	return m[1]
}

func TestAccountKeys_SectionOnlyWhenKeysAreOn(t *testing.T) {
	for _, on := range []bool{false, true} {
		kf := newKeysFixture(t, on)
		b := body(t, kf.do("GET", "/.tollgate/account", with(navigation, "X-Test-User", "user_1")))
		if got := strings.Contains(b, `id="keys"`); got != on {
			t.Errorf("keys on=%v: section shown=%v", on, got)
		}
		if resp := kf.post("/.tollgate/account/keys", url.Values{"name": {"x"}, "all": {"1"}}, with(nil, "X-Test-User", "user_1")); !on && resp.StatusCode != http.StatusNotFound {
			t.Errorf("keys off: create = %d, want 404", resp.StatusCode)
		}
	}
}

func TestAccountKeys_CreateShowsTheKeyOnceAndStoresItsHash(t *testing.T) {
	kf := newKeysFixture(t, true)
	user := with(nil, "X-Test-User", "user_1")
	key := kf.create(url.Values{"name": {" Nightly import "}, "days": {"30"}, "scope": {"TEAM1", "415VNA"}}, user)
	if err := proxy.CheckAPIKey(key, false); err != nil {
		t.Fatalf("shown key %q: %v", key[:12], err)
	}
	rec, err := kf.keys.APIKeyByHash(context.Background(), proxy.HashAPIKey(key))
	if err != nil {
		t.Fatal(err)
	}
	want := proxy.APIKey{ID: rec.ID, Hash: proxy.HashAPIKey(key), Prefix: key[:proxy.APIKeyShownPrefix],
		Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}, Name: "Nightly import", Scopes: []string{"415VNA", "TEAM1"},
		CreatedBy: "user_1", CreatedAt: kf.now, ExpiresAt: kf.now.AddDate(0, 0, 30)}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if len(kf.admin.audit) != 1 || kf.admin.audit[0].Action != proxy.ActionAPIKeyCreated || kf.admin.audit[0].Actor != "clerk:user_1" ||
		strings.Contains(kf.admin.audit[0].Detail, key) {
		t.Errorf("audit = %+v, want one api_key.created by clerk:user_1, without the key", kf.admin.audit)
	}
	page := body(t, kf.do("GET", "/.tollgate/account", with(navigation, "X-Test-User", "user_1")))
	if strings.Contains(page, key) {
		t.Error("the account page shows the whole key again")
	}
	for _, s := range []string{rec.Prefix + "…", "Nightly import", "415VNA, TEAM1", "never", `/account/keys/` + rec.ID + `/revoke`} {
		if !strings.Contains(page, s) {
			t.Errorf("account page lacks %q", s)
		}
	}
	// Another user sees none of it.
	if other := body(t, kf.do("GET", "/.tollgate/account", with(navigation, "X-Test-User", "user_2"))); strings.Contains(other, rec.ID) {
		t.Error("user_2's account page lists user_1's key")
	}
}

func TestAccountKeys_CreateRefusals(t *testing.T) {
	kf := newKeysFixture(t, true)
	tests := []struct {
		name string
		form url.Values
		hdr  map[string]string
		want int
	}{
		{"no name", url.Values{"all": {"1"}}, with(nil, "X-Test-User", "user_1"), http.StatusBadRequest},
		{"no scope", url.Values{"name": {"k"}}, with(nil, "X-Test-User", "user_1"), http.StatusBadRequest},
		{"unknown route", url.Values{"name": {"k"}, "scope": {"NOPE"}}, with(nil, "X-Test-User", "user_1"), http.StatusBadRequest},
		{"bad days", url.Values{"name": {"k"}, "all": {"1"}, "days": {"0"}}, with(nil, "X-Test-User", "user_1"), http.StatusBadRequest},
		{"too many days", url.Values{"name": {"k"}, "all": {"1"}, "days": {"3651"}}, with(nil, "X-Test-User", "user_1"), http.StatusBadRequest},
		{"org key by a member", url.Values{"name": {"k"}, "all": {"1"}, "owner": {"org"}},
			with(nil, "X-Test-User", "user_1", "X-Test-Org", "org_1", "X-Test-Role", "org:member"), http.StatusForbidden},
		{"org key without an org", url.Values{"name": {"k"}, "all": {"1"}, "owner": {"org"}}, with(nil, "X-Test-User", "user_1"), http.StatusForbidden},
		{"made with an API key", url.Values{"name": {"k"}, "all": {"1"}}, with(nil, "X-Test-User", "user_1", "X-Test-Key", "key_x"), http.StatusForbidden},
		{"signed out", url.Values{"name": {"k"}, "all": {"1"}}, xhr, http.StatusUnauthorized},
		{"cross-origin", url.Values{"name": {"k"}, "all": {"1"}}, with(nil, "X-Test-User", "user_1", "Sec-Fetch-Site", "cross-site"), http.StatusForbidden},
	}
	for _, tt := range tests {
		if resp := kf.post("/.tollgate/account/keys", tt.form, tt.hdr); resp.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
	if len(kf.keys.keys) != 0 || len(kf.admin.audit) != 0 {
		t.Errorf("refused requests stored %d keys and %d audit entries", len(kf.keys.keys), len(kf.admin.audit))
	}
}

// Ensure the fiftieth usable key is the last: the form answers 400 and
// stores nothing more, and revoking one makes room again.
func TestAccountKeys_CapOnUsableKeys(t *testing.T) {
	kf := newKeysFixture(t, true)
	form, hdr := url.Values{"name": {"k"}, "all": {"1"}}, with(nil, "X-Test-User", "user_1")
	for i := range 50 {
		if resp := kf.post("/.tollgate/account/keys", form, hdr); resp.StatusCode != http.StatusOK {
			t.Fatalf("key %d: %d", i+1, resp.StatusCode)
		}
	}
	if resp := kf.post("/.tollgate/account/keys", form, hdr); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("key 51: %d, want 400", resp.StatusCode)
	}
	if len(kf.keys.keys) != 50 {
		t.Fatalf("%d keys stored, want 50", len(kf.keys.keys))
	}
	kf.keys.mu.Lock()
	kf.keys.keys[0].RevokedAt = kf.keys.keys[0].CreatedAt
	kf.keys.mu.Unlock()
	if resp := kf.post("/.tollgate/account/keys", form, hdr); resp.StatusCode != http.StatusOK {
		t.Errorf("after a revocation: %d, want 200", resp.StatusCode)
	}
}

func TestAccountKeys_OrganisationKeysOnlyForItsAdmins(t *testing.T) {
	kf := newKeysFixture(t, true)
	admin := with(nil, "X-Test-User", "user_1", "X-Test-Org", "org_1")
	key := kf.create(url.Values{"name": {"Team"}, "all": {"1"}, "owner": {"org"}}, admin)
	rec, _ := kf.keys.APIKeyByHash(context.Background(), proxy.HashAPIKey(key))
	if want := (proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_1"}); rec.Subject != want || !slices.Equal(rec.Scopes, []string{"*"}) {
		t.Errorf("org key: subject %v scopes %v, want %v [*]", rec.Subject, rec.Scopes, want)
	}
	member := with(navigation, "X-Test-User", "user_2", "X-Test-Org", "org_1", "X-Test-Role", "org:member")
	if b := body(t, kf.do("GET", "/.tollgate/account", member)); strings.Contains(b, rec.ID) || strings.Contains(b, `name="owner"`) {
		t.Error("a member of the organisation sees its keys or may make one")
	}
	if resp := kf.post("/.tollgate/account/keys/"+rec.ID+"/revoke", nil, member); resp.StatusCode != http.StatusNotFound {
		t.Errorf("member revokes the org's key: %d, want 404", resp.StatusCode)
	}
	other := with(navigation, "X-Test-User", "user_3", "X-Test-Org", "org_1")
	if b := body(t, kf.do("GET", "/.tollgate/account", other)); !strings.Contains(b, rec.ID) {
		t.Error("another admin of the organisation does not see its key")
	}
}

func TestAccountKeys_Revoke(t *testing.T) {
	kf := newKeysFixture(t, true)
	user := with(nil, "X-Test-User", "user_1")
	key := kf.create(url.Values{"name": {"k"}, "all": {"1"}}, user)
	rec, _ := kf.keys.APIKeyByHash(context.Background(), proxy.HashAPIKey(key))
	path := "/.tollgate/account/keys/" + rec.ID + "/revoke"
	for _, tt := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"someone else's", with(nil, "X-Test-User", "user_2"), http.StatusNotFound},
		{"with an API key", with(user, "X-Test-Key", rec.ID), http.StatusForbidden},
		{"cross-origin", with(user, "Sec-Fetch-Site", "cross-site"), http.StatusForbidden},
	} {
		if resp := kf.post(path, nil, tt.hdr); resp.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
	if resp := kf.post("/.tollgate/account/keys/key_nope/revoke", nil, user); resp.StatusCode != http.StatusNotFound {
		t.Errorf("malformed ID: %d, want 404", resp.StatusCode)
	}
	kf.now = kf.now.Add(time.Hour)
	resp := kf.post(path, nil, user)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/.tollgate/account?done=revoked#keys" {
		t.Fatalf("revoke: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	got, _ := kf.keys.APIKeyByID(context.Background(), rec.ID)
	if !got.RevokedAt.Equal(kf.now) {
		t.Errorf("RevokedAt = %v, want %v", got.RevokedAt, kf.now)
	}
	if n := len(kf.admin.audit); n != 2 || kf.admin.audit[1].Action != proxy.ActionAPIKeyRevoked {
		t.Errorf("audit = %+v, want created then revoked", kf.admin.audit)
	}
	page := body(t, kf.do("GET", "/.tollgate/account?done=revoked", with(navigation, "X-Test-User", "user_1")))
	if !strings.Contains(page, "The key is revoked") || strings.Contains(page, path) {
		t.Error("after revoking, the page should say so and offer no revoke button for the key")
	}
}

func TestAccountKeys_StrictCSPAndScriptFile(t *testing.T) {
	kf := newKeysFixture(t, true)
	resp := kf.post("/.tollgate/account/keys", url.Values{"name": {"k"}, "all": {"1"}}, with(nil, "X-Test-User", "user_1"))
	b := body(t, resp)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP = %q", csp)
	}
	if regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]`).MatchString(b) || strings.Contains(b, " onclick=") {
		t.Error("the key page has inline script")
	}
	js := kf.do("GET", "/.tollgate/assets/keys.js", nil)
	if js.StatusCode != http.StatusOK || !strings.HasPrefix(js.Header.Get("Content-Type"), "text/javascript") ||
		!strings.Contains(body(t, js), "copy-key") {
		t.Errorf("keys.js: %d %q", js.StatusCode, js.Header.Get("Content-Type"))
	}
}

func TestAdminConsole_RefusesAnAdminsAPIKey(t *testing.T) {
	kf := newKeysFixture(t, true)
	if resp := kf.do("GET", "/.tollgate/admin", with(navigation, "X-Test-User", "user_boss", "X-Test-Key", "key_x")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("admin console with an admin's API key: %d, want 403", resp.StatusCode)
	}
}

package config

import (
	"strings"
	"testing"
)

const reloadBase = `listen: "127.0.0.1:8080"
public_url: "https://app.example.com"
upstream: "http://127.0.0.1:3000"
default_access: public
internal_prefix: "/.tollgate"
clerk:
  publishable_key: "${CLERK_PUBLISHABLE_KEY}"
  secret_key: "${CLERK_SECRET_KEY}"
session:
  secret: "${TOLLGATE_SESSION_SECRET}"
stripe:
  secret_key: "${STRIPE_SECRET_KEY}"
  webhook_secret: "${STRIPE_WEBHOOK_SECRET}"
  past_due_grace: 72h
store: { path: "a.db" }
admin: { listen: "127.0.0.1:9090" }
routes:
  - { path: "/a", access: public }
`

// reloadEnv is the environment reloadBase is parsed with.
func reloadEnv(name string) string {
	return map[string]string{
		"CLERK_PUBLISHABLE_KEY":   "pk_test_ZXhhbXBsZS5hY2NvdW50cy5kZXYk", // example.accounts.dev$
		"CLERK_SECRET_KEY":        "sk_test_clerk",
		"TOLLGATE_SESSION_SECRET": "0123456789abcdef0123456789abcdef-session",
		"STRIPE_SECRET_KEY":       "sk_test_stripe",
		"STRIPE_WEBHOOK_SECRET":   "whsec_stripe",
	}[name]
}

// TestCheckReload: a reload may change the routes, the plans and the
// policies; it is refused, naming the key, for what is read only at start.
func TestCheckReload(t *testing.T) {
	old, err := Parse("old.yaml", []byte(reloadBase), reloadEnv)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ from, to, refused string }{
		{`{ path: "/a", access: public }`, `{ path: "/b", access: signed_in }`, ""},
		{"past_due_grace: 72h", "past_due_grace: 24h", ""},
		{`listen: "127.0.0.1:8080"`, `listen: "127.0.0.1:8081"`, "listen"},
		{"https://app.example.com", "https://www.example.com", "public_url"}, // and clerk: authorized_parties follow it
		{`internal_prefix: "/.tollgate"`, `internal_prefix: "/.gate"`, "internal_prefix"},
		{`secret_key: "${CLERK_SECRET_KEY}"`, `secret_key: "sk_test_other"`, "clerk"},
		{`secret_key: "${STRIPE_SECRET_KEY}"`, `secret_key: "sk_test_other"`, "stripe"},
		{`webhook_secret: "${STRIPE_WEBHOOK_SECRET}"`, `webhook_secret: "whsec_other"`, "stripe"},
		{`path: "a.db"`, `path: "b.db"`, "store"},
		{`admin: { listen: "127.0.0.1:9090" }`, `admin: { listen: "127.0.0.1:9091" }`, "admin"},
	} {
		if !strings.Contains(reloadBase, tc.from) {
			t.Fatalf("%q is not in the base config", tc.from)
		}
		cfg, err := Parse("new.yaml", []byte(strings.Replace(reloadBase, tc.from, tc.to, 1)), reloadEnv)
		if err != nil {
			t.Fatalf("%s → %s: %v", tc.from, tc.to, err)
		}
		err = CheckReload(old, cfg)
		switch {
		case tc.refused == "" && err != nil:
			t.Errorf("%s → %s: refused: %v", tc.from, tc.to, err)
		case tc.refused != "" && !refusedNaming(err, tc.refused):
			t.Errorf("%s → %s: %v, want refused naming %s", tc.from, tc.to, err, tc.refused)
		}
	}
}

// refusedNaming reports whether err refuses a reload and names key among
// the changed ones.
func refusedNaming(err error, key string) bool {
	if err == nil {
		return false
	}
	list, ok := strings.CutPrefix(err.Error(), "reload refused: ")
	list, _, found := strings.Cut(list, " changed;")
	if !ok || !found {
		return false
	}
	for _, k := range strings.Split(list, ", ") {
		if k == key {
			return true
		}
	}
	return false
}

package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/proxy"
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
		{"https://app.example.com", "https://www.example.com", "clerk.authorized_parties"},
		{`secret_key: "${CLERK_SECRET_KEY}"`, `secret_key: "sk_test_other"`, "clerk.secret_key"},
		{`secret_key: "${CLERK_SECRET_KEY}"`, `secret_key: "${CLERK_SECRET_KEY}"` + "\n  frontend_api_url: http://127.0.0.1:9999", "clerk.frontend_api_url"},
		{`secret_key: "${CLERK_SECRET_KEY}"`, `secret_key: "${CLERK_SECRET_KEY}"` + "\n  sign_in_url: http://127.0.0.1:9999/sign-in", "clerk.sign_in_url"},
		{`secret_key: "${STRIPE_SECRET_KEY}"`, `secret_key: "sk_test_other"`, "stripe.secret_key"},
		{`webhook_secret: "${STRIPE_WEBHOOK_SECRET}"`, `webhook_secret: "whsec_other"`, "stripe.webhook_secret"},
		{"past_due_grace: 72h", "past_due_grace: 72h\n  api_url: http://127.0.0.1:9999", "stripe.api_url"},
		{`path: "a.db"`, `path: "b.db"`, "store.path"},
		{`admin: { listen: "127.0.0.1:9090" }`, `admin: { listen: "127.0.0.1:9091" }`, "admin.listen"},
		{`admin: { listen: "127.0.0.1:9090" }`, `admin: { listen: "127.0.0.1:9090", token: "0123456789abcdef0123" }`, "admin.token"},
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

// The refusal names the key that changed, and only it: a stand-in's
// Frontend API moved is clerk.frontend_api_url, not the whole section.
func TestCheckReload_NamesOnlyTheChangedKey(t *testing.T) {
	old, err := Parse("old.yaml", []byte(reloadBase), reloadEnv)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("new.yaml", []byte(strings.Replace(reloadBase, `secret_key: "${CLERK_SECRET_KEY}"`,
		`secret_key: "${CLERK_SECRET_KEY}"`+"\n  frontend_api_url: http://127.0.0.1:9999", 1)), reloadEnv)
	if err != nil {
		t.Fatal(err)
	}
	const want = "reload refused: clerk.frontend_api_url changed; restart tollgate to apply"
	if err := CheckReload(old, cfg); err == nil || err.Error() != want {
		t.Errorf("CheckReload = %v, want %q", err, want)
	}
}

// Every field of a restart-only section has its key's name, or is one a
// reload may change: a field added later is named, not called "clerk".
func TestCheckReload_EveryFieldNamed(t *testing.T) {
	for section, v := range map[string]any{"clerk": proxy.ClerkConfig{}, "stripe": proxy.StripeConfig{},
		"store": proxy.StoreConfig{}, "admin": proxy.AdminConfig{}, "api_keys": proxy.APIKeysConfig{}} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			name := typ.Field(i).Name
			if _, ok := restartKeys[section][name]; !ok && !(section == "stripe" && stripeReloadable[name]) {
				t.Errorf("%s.%s: add its config key to restartKeys", section, name)
			}
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

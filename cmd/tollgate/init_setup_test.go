package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy/config"
)

// Where the files cannot go, init says so before it asks Clerk or Stripe
// anything: no endpoint is made whose one-time secret would then be lost.
// The first case is the README's quickstart followed in the checkout: the
// binary built there as ./tollgate, and init run with -dir tollgate.
func TestInit_FilesThatCannotBeWrittenStopItFirst(t *testing.T) {
	e := newInitEnv(t)
	root := filepath.Dir(e.dir)
	binary := filepath.Join(root, "tollgate-binary")
	if err := os.WriteFile(binary, []byte("\x7fELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	asDir := filepath.Join(root, "dir-with-a-directory-for-config")
	if err := os.MkdirAll(filepath.Join(asDir, "config.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	pro := []string{"-plan", "pro=price_demo_pro_monthly", "-yes"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"-dir is a file", append(e.flags("-dir", binary, "-env-file", filepath.Join(root, "tollgate.env")), pro...),
			[]string{"-dir", binary + " is a file, not a directory"}},
		{"-dir is under a file", append(e.flags("-dir", filepath.Join(binary, "sub")), pro...),
			[]string{"-dir", binary + " is a file, not a directory"}},
		{"-env-file is under a file", append(e.flags("-env-file", filepath.Join(binary, "tollgate.env")), pro...),
			[]string{"-env-file", binary + " is a file, not a directory"}},
		{"config.yaml is a directory", append(e.flags("-dir", asDir, "-force"), pro...),
			[]string{"-dir", filepath.Join(asDir, "config.yaml") + " is a directory"}},
		{"-env-file is the config", append(e.flags("-env-file", filepath.Join(e.dir, "config.yaml"), "-force"), pro...),
			[]string{"-env-file names the config file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := e.init(t, "", tc.args...)
			if !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want a usage error\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q: %v", w, err)
				}
			}
			if n := e.calls.Load(); n != 0 {
				t.Errorf("%d calls to Clerk or Stripe", n)
			}
			if _, err := os.Stat(e.dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s was made: %v", e.dir, err)
			}
		})
	}
	if b, err := os.ReadFile(binary); err != nil || string(b) != "\x7fELF" {
		t.Errorf("the file in the way changed: %q %v", b, err)
	}
	entries, _ := os.ReadDir(root)
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".tollgate-init-") {
			t.Errorf("the write probe %s was left behind", en.Name())
		}
	}

	if os.Geteuid() == 0 {
		t.Log("running as root, which may write anywhere: the read-only directory case is not tried")
		return
	}
	ro := filepath.Join(root, "read-only")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	_, err := e.init(t, "", append(e.flags("-dir", filepath.Join(ro, "tollgate")), pro...)...)
	if err == nil || !strings.Contains(err.Error(), "cannot be written") || e.calls.Load() != 0 {
		t.Errorf("a read-only directory: %v, %d calls", err, e.calls.Load())
	}
}

// A write that fails after the endpoint was made: while tollgate.env,
// the one place its secret can be kept, is not written, the endpoint is
// deleted again and the run says so; once tollgate.env holds the secret,
// the endpoint stays and the next run finds it and keeps the secret.
func TestInit_AFailedWriteTakesTheNewEndpointBack(t *testing.T) {
	e := newInitEnv(t)
	args := append(e.flags("-yes", "-force"), "-plan", "pro=price_demo_pro_monthly")
	failOn := func(name string) func(*initRun) {
		return func(r *initRun) {
			r.writeFile = func(path string, data []byte, perm fs.FileMode) error {
				if filepath.Base(path) == name {
					return errors.New("no space left on device")
				}
				return writeFileAtomic(path, data, perm)
			}
		}
	}
	out, err := e.initWith(t, "", failOn("tollgate.env"), args...)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), "was deleted again") {
		t.Errorf("tollgate.env not written: %v", err)
	}
	if !strings.Contains(out, "Stripe: deleted the webhook endpoint we_") {
		t.Errorf("the output does not say the endpoint was deleted:\n%s", out)
	}
	if eps := e.endpoints(t); len(eps) != 0 {
		t.Errorf("endpoints left: %+v", eps)
	}
	if calls := e.stripe.APICalls(); calls["DELETE /v1/webhook_endpoints/{id}"] != 1 {
		t.Errorf("Stripe calls: %v", calls)
	}
	for _, name := range []string{"tollgate.env", "config.yaml"} {
		if _, err := os.Stat(e.path(name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v", name, err)
		}
	}

	out, err = e.initWith(t, "", failOn("config.yaml"), args...)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), "finds the endpoint and keeps the secret") {
		t.Errorf("config.yaml not written: %v\n%s", err, out)
	}
	ep := e.checkOneEndpoint(t)
	secret := e.envVars(t)[envStripeWebhook]
	out, err = e.init(t, "", args...)
	if err != nil {
		t.Fatalf("again: %v\n%s", err, out)
	}
	if got := e.checkOneEndpoint(t); got.ID != ep.ID || e.envVars(t)[envStripeWebhook] != secret || !strings.Contains(out, "STRIPE_WEBHOOK_SECRET (kept)") {
		t.Errorf("the next run: endpoint %s (was %s), secret kept %t\n%s", got.ID, ep.ID, e.envVars(t)[envStripeWebhook] == secret, out)
	}
	e.checkWritten(t, out)
}

// -listen, -store-path and -admin-listen set what the binary needs;
// -clerk-frontend-api-url and -clerk-sign-in-url point handshakes and
// sign-in at a stand-in. A run from the files keeps them all.
func TestInit_ListenStoreAndClerkStandInFlags(t *testing.T) {
	e := newInitEnv(t)
	store := filepath.Join(filepath.Dir(e.dir), "tollgate.db")
	args := append(e.flags("-yes", "-listen", "127.0.0.1:8090", "-store-path", store, "-admin-listen", "127.0.0.1:8091",
		"-clerk-frontend-api-url", e.clerkURL, "-clerk-sign-in-url", e.clerkURL+"/sign-in/"), "-plan", "pro=price_demo_pro_monthly")
	out, err := e.init(t, "", args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "Next, with the binary (listen 127.0.0.1:8090, store.path "+store+")") ||
		!strings.Contains(out, "tollgate serve -config ") {
		t.Errorf("the next steps are not the binary's:\n%s", out)
	}
	e.checkWritten(t, out)
	want := []string{"127.0.0.1:8090", store, "127.0.0.1:8091", e.clerkURL, e.clerkURL + "/sign-in"}
	got := func() []string {
		t.Helper()
		cfg, err := config.Load(e.path("config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return []string{cfg.Listen, cfg.Store.Path, cfg.Admin.Listen, cfg.Clerk.FrontendAPIURL, cfg.Clerk.SignInURL}
	}
	if diff := cmp.Diff(want, got()); diff != "" {
		t.Errorf("listen, store.path, admin.listen, clerk.frontend_api_url, clerk.sign_in_url (-want +got):\n%s", diff)
	}
	out, err = e.init(t, "", "-yes", "-force", "-dir", e.dir)
	if err != nil {
		t.Fatalf("a run from the files: %v\n%s", err, out)
	}
	if diff := cmp.Diff(want, got()); diff != "" {
		t.Errorf("after a run from the files (-want +got):\n%s", diff)
	}

	for flag, bad := range map[string]string{"-listen": "8090", "-admin-listen": "localhost", "-clerk-frontend-api-url": "clerk.example.test"} {
		calls := e.calls.Load()
		if _, err := e.init(t, "", append(e.flags("-yes", "-force", flag, bad), "-plan", "pro=price_demo_pro_monthly")...); !errors.Is(err, errUsage) ||
			!strings.Contains(err.Error(), flag) {
			t.Errorf("%s %s: %v", flag, bad, err)
		}
		if n := e.calls.Load() - calls; n != 0 {
			t.Errorf("%s %s: %d calls to Clerk or Stripe", flag, bad, n)
		}
	}
}

// Asked, the Stripe endpoint's secret is required: an empty answer is
// asked again, saying tollgate does not start without it; when none comes,
// the run fails and writes nothing, rather than a config check and serve
// refuse.
func TestInit_InteractiveStripeSecretIsRequired(t *testing.T) {
	e := newInitEnv(t)
	if out, err := e.init(t, "", append(e.flags("-yes"), "-plan", "pro=price_demo_pro_monthly")...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The endpoint is there and its secret is lost with tollgate.env.
	if err := os.Remove(e.path("tollgate.env")); err != nil {
		t.Fatal(err)
	}
	cfgBefore := e.read(t, "config.yaml")
	hooks := []string{"-dir", e.dir, "-clerk-api-url", e.clerkURL + "/v1", "-stripe-api-url", e.stripeURL}
	dialogue := []string{
		"y",    // overwrite config.yaml
		"", "", // public URL, upstream: config.yaml's
		e.clerk.PublishableKey(), e.clerk.SecretKey(), e.stripe.SecretKey(),
		"", // keep the plans
		"", // the Clerk webhook's secret: later
		"", // the Stripe endpoint's: none
	}
	out, err := e.init(t, answers(dialogue...), hooks...)
	if err == nil || !strings.Contains(err.Error(), "does not start without the Stripe webhook signing secret, so nothing was written") {
		t.Errorf("no secret: %v\n%s", err, out)
	}
	if !strings.Contains(out, "paste the new one here: tollgate does not start without it") ||
		!strings.Contains(out, "It is required: tollgate check and serve refuse a config without it") {
		t.Errorf("the dialogue does not say the secret is required:\n%s", out)
	}
	if _, err := os.Stat(e.path("tollgate.env")); !errors.Is(err, fs.ErrNotExist) || e.read(t, "config.yaml") != cfgBefore {
		t.Errorf("files were written: %v", err)
	}

	const rolled = "whsec_rolledInTheDashboard0123456789"
	out, err = e.init(t, answers(append(dialogue, rolled)...), hooks...)
	if err != nil || e.envVars(t)[envStripeWebhook] != rolled {
		t.Fatalf("with the secret on the second asking: %v\n%s", err, out)
	}
	e.checkWritten(t, out)
}

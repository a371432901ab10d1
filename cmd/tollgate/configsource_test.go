package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// envFileConfig takes a key from the environment: a value that is not a
// Stripe key, or that holds a comment, is an error naming its variable.
const envFileConfig = `public_url: "https://app.example.com"
upstream: "http://app:3000"
routes:
  - { path: "/*", access: public }
stripe: { secret_key: "${STRIPE_SECRET_KEY}" }
`

// check -env-file reads the file as docker's --env-file does (the value
// is everything after the =, quotes and comments included) and its
// variables win over the environment's; those it does not name come from
// the environment.
func TestCheck_EnvFile(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(envFileConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(env string, processEnv string) (string, error) {
		t.Helper()
		t.Setenv("STRIPE_SECRET_KEY", processEnv)
		envPath := filepath.Join(dir, "tollgate.env")
		if err := os.WriteFile(envPath, []byte(env), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		err := run(t.Context(), []string{"check", "-config", cfgPath, "-env-file", envPath}, &out, &errb)
		return out.String(), err
	}
	if out, err := check("# a comment line\n\nSTRIPE_SECRET_KEY=sk_test_fromTheFile\n", "not-a-key"); err != nil {
		t.Errorf("the file's value over the environment's: %v\n%s", err, out)
	}
	if _, err := check("OTHER=x\n", "not-a-key"); err == nil || !strings.Contains(err.Error(), "stripe.secret_key: is not a Stripe secret key") {
		t.Errorf("a variable the file does not name comes from the environment: %v", err)
	}
	if _, err := check("OTHER=x\n", "sk_test_fromTheEnvironment"); err != nil {
		t.Errorf("a variable the file does not name, from the environment: %v", err)
	}
	_, err := check("STRIPE_SECRET_KEY=sk_test_abc # test mode\n", "")
	if err == nil || !strings.Contains(err.Error(), "the value of ${STRIPE_SECRET_KEY} holds an inline comment") {
		t.Errorf("an inline comment: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "sk_test_abc") {
		t.Errorf("the error shows the value: %v", err)
	}
	if _, err := check("STRIPE_SECRET_KEY=\"sk_test_abc\"\n", ""); err == nil || !strings.Contains(err.Error(), "is not a Stripe secret key") {
		t.Errorf("quotes are part of the value, as docker keeps them: %v", err)
	}

	var out, errb bytes.Buffer
	err = run(t.Context(), []string{"check", "-config", cfgPath, "-env-file", filepath.Join(dir, "nope.env")}, &out, &errb)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "-env-file") {
		t.Errorf("a missing env file: %v", err)
	}
}

// The admin commands take admin.token from -env-file, as the gateway
// started with it does.
func TestAdminClient_EnvFile(t *testing.T) {
	dir := t.TempDir()
	cfgPath, envPath := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "tollgate.env")
	cfg := envFileConfig + "admin: { listen: \"127.0.0.1:8081\", token: \"${TOLLGATE_ADMIN_TOKEN}\" }\n"
	const token = "0123456789abcdef0123456789abcdef"
	t.Setenv("TOLLGATE_ADMIN_TOKEN", "")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(envPath, []byte("STRIPE_SECRET_KEY=sk_test_x\nTOLLGATE_ADMIN_TOKEN="+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newAdminClient(configSource{path: cfgPath}); err == nil || !strings.Contains(err.Error(), "-env-file") {
		t.Errorf("without -env-file: %v", err)
	}
	c, err := newAdminClient(configSource{path: cfgPath, envFile: envPath})
	if err != nil || c.token != token || c.base != "http://127.0.0.1:8081" {
		t.Errorf("with -env-file: %v", err)
	}
}

// serve -env-file reads the file again on each reload, as it reads the
// config again: a changed secret there is a restart-only change, named.
func TestServe_ReloadRereadsTheEnvFile(t *testing.T) {
	dir := t.TempDir()
	ln := loopback(t)
	cfgPath, envPath := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "tollgate.env")
	cfg := "listen: \"" + ln.Addr().String() + "\"\npublic_url: \"http://" + ln.Addr().String() + "\"\nupstream: \"http://127.0.0.1:1\"\n" +
		"default_access: deny\nstore: { path: \"" + filepath.Join(dir, "t.db") + "\" }\nadmin: { token: \"${TOLLGATE_ADMIN_TOKEN}\" }\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	writeEnv := func(token string) {
		if err := os.WriteFile(envPath, []byte("TOLLGATE_ADMIN_TOKEN="+token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TOLLGATE_ADMIN_TOKEN", "")
	writeEnv("first-token-0123456789abcdef")
	s := startServingFrom(t, configSource{path: cfgPath, envFile: envPath}, ln)
	reload := func() {
		// The reload channel is unbuffered and read by one loop: the
		// second send is taken only once the first reload is done.
		s.reload <- struct{}{}
		s.reload <- struct{}{}
	}
	reload()
	if logs := s.logs.String(); strings.Contains(logs, "refused") || !strings.Contains(logs, "config reloaded") {
		t.Errorf("a reload with the env file unchanged:\n%s", logs)
	}
	writeEnv("second-token-0123456789abcdef")
	reload()
	if logs := s.logs.String(); !strings.Contains(logs, "admin.token changed") {
		t.Errorf("a reload after the env file changed:\n%s", logs)
	}
	if strings.Contains(s.logs.String(), "second-token") {
		t.Error("the log shows the token")
	}
}

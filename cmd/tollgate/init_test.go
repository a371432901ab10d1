package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy/config"
	clerksandbox "github.com/tollgate/tollgate/proxy/sandbox/clerk"
	stripesandbox "github.com/tollgate/tollgate/proxy/sandbox/stripe"
	"github.com/tollgate/tollgate/proxy/stripe"
)

// initEnv is what `tollgate init` runs against in the tests: the sandbox
// Clerk (a development instance, as the Stripe key is a test-mode one) and
// the sandbox Stripe, each on a server of its own, and an empty directory.
type initEnv struct {
	stripe    *stripesandbox.Stripe
	stripeURL string
	clerk     *clerksandbox.Clerk
	clerkURL  string
	dir       string
	calls     atomic.Int64 // requests to either sandbox
}

const initPublicURL = "https://app.example.test"

func newInitEnv(t *testing.T) *initEnv {
	t.Helper()
	e := &initEnv{dir: filepath.Join(t.TempDir(), "tollgate")}
	// The demo's prices but the yearly one and the API plan's: the
	// dialogues choose a plan for every recurring price, and a third would
	// be a third plan.
	var prices []stripesandbox.Price
	for _, p := range stripesandbox.DefaultPrices() {
		if p.Interval != "year" && p.Product != "API" {
			prices = append(prices, p)
		}
	}
	e.stripe = stripesandbox.New(stripesandbox.Options{Prices: prices})
	t.Cleanup(func() { _ = e.stripe.Close() })
	ssrv := httptest.NewServer(e.counted(e.stripe.Handler()))
	t.Cleanup(ssrv.Close)
	e.stripe.SetBaseURL(ssrv.URL)
	e.stripeURL = ssrv.URL
	var err error
	if e.clerk, err = clerksandbox.New(clerksandbox.Options{Development: true}); err != nil {
		t.Fatal(err)
	}
	csrv := httptest.NewServer(e.counted(e.clerk.Handler()))
	t.Cleanup(csrv.Close)
	e.clerk.SetBaseURL(csrv.URL)
	e.clerkURL = csrv.URL
	return e
}

// counted counts the requests h serves in e.calls.
func (e *initEnv) counted(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		h.ServeHTTP(w, r)
	})
}

// flags answers every question but the plans.
func (e *initEnv) flags(extra ...string) []string {
	return append([]string{"-dir", e.dir, "-public-url", initPublicURL, "-upstream", "http://app:3000",
		"-clerk-publishable-key", e.clerk.PublishableKey(), "-clerk-secret-key", e.clerk.SecretKey(),
		"-stripe-secret-key", e.stripe.SecretKey(), "-clerk-api-url", e.clerkURL + "/v1", "-stripe-api-url", e.stripeURL}, extra...)
}

var scriptedPlans = []string{"-plan", "pro=price_demo_pro_monthly", "-plan", "team=price_demo_team_monthly"}

// init runs `tollgate init` with args: through the command dispatcher
// with -yes (which reads nothing), else answering its questions from stdin.
func (e *initEnv) init(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	var err error
	if slices.Contains(args, "-yes") {
		err = run(t.Context(), append([]string{"init"}, args...), &out, &errb)
	} else {
		err = runInit(t.Context(), args, strings.NewReader(stdin), &out, &errb)
	}
	return out.String() + errb.String(), err
}

// initWith runs `tollgate init` with args, answering from stdin, after
// tweak has changed the run (its hooks).
func (e *initEnv) initWith(t *testing.T, stdin string, tweak func(*initRun), args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	r, err := newInitRun(t.Context(), args, strings.NewReader(stdin), &out, &errb)
	if err != nil {
		return errb.String(), err
	}
	defer r.p.close()
	tweak(r)
	err = r.run(t.Context())
	return out.String() + errb.String(), err
}

func (e *initEnv) path(name string) string { return filepath.Join(e.dir, name) }

func (e *initEnv) read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(e.path(name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// envVars parses tollgate.env, and holds it to docker's --env-file rules:
// VAR=value lines, no space, no comment after a value.
func (e *initEnv) envVars(t *testing.T) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for i, line := range strings.Split(strings.TrimSpace(e.read(t, "tollgate.env")), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsAny(line, " \t#\"'") {
			t.Errorf("tollgate.env line %d %q: want VAR=value with no space, quote or comment", i+1, line)
		}
		vars[name] = value
	}
	return vars
}

// setEnv sets tollgate.env's variables, as docker's --env-file would.
func (e *initEnv) setEnv(t *testing.T) {
	for k, v := range e.envVars(t) {
		t.Setenv(k, v)
	}
}

type endpointView struct {
	ID            string   `json:"id"`
	URL           string   `json:"url"`
	Status        string   `json:"status"`
	EnabledEvents []string `json:"enabled_events"`
}

// endpoints lists the sandbox account's webhook endpoints (test mode).
func (e *initEnv) endpoints(t *testing.T) []endpointView {
	t.Helper()
	var list struct {
		Data    []endpointView `json:"data"`
		HasMore bool           `json:"has_more"`
	}
	e.stripeCall(t, http.MethodGet, "/v1/webhook_endpoints?limit=100", nil, &list)
	if list.HasMore {
		t.Fatal("more than 100 endpoints")
	}
	return list.Data
}

func (e *initEnv) stripeCall(t *testing.T, method, path string, form url.Values, into any) {
	t.Helper()
	req, _ := http.NewRequest(method, e.stripeURL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Authorization", "Bearer "+e.stripe.SecretKey())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
	}
	if into != nil {
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatal(err)
		}
	}
}

// checkOneEndpoint: exactly one endpoint, at the public URL's webhook
// path, enabled and subscribed to exactly what tollgate handles.
func (e *initEnv) checkOneEndpoint(t *testing.T) endpointView {
	t.Helper()
	eps := e.endpoints(t)
	if len(eps) != 1 {
		t.Fatalf("%d webhook endpoints, want 1: %+v", len(eps), eps)
	}
	ep := eps[0]
	if ep.URL != initPublicURL+"/.tollgate/webhooks/stripe" || ep.Status != "enabled" {
		t.Errorf("endpoint %+v", ep)
	}
	got, want := slices.Clone(ep.EnabledEvents), stripe.HandledEvents()
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("enabled_events (-want +got):\n%s", diff)
	}
	return ep
}

// checkWritten: the config passes config.Load and `check -online` with
// tollgate.env's variables, and no secret was printed.
func (e *initEnv) checkWritten(t *testing.T, out string) {
	t.Helper()
	vars := e.envVars(t)
	for _, name := range []string{envClerkSecret, envStripeSecret, envStripeWebhook, envSessionSecret, envClerkWebhook, envAdminToken} {
		if v := vars[name]; len(v) > 6 && strings.Contains(out, v) {
			t.Errorf("the output shows %s's value", name)
		}
	}
	if fi, err := os.Stat(e.path("tollgate.env")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tollgate.env: %v %v, want mode 0600", fi.Mode(), err)
	}
	e.setEnv(t)
	if _, err := config.Load(e.path("config.yaml")); err != nil {
		t.Fatalf("config.Load: %v\n%s", err, e.read(t, "config.yaml"))
	}
	var cout, cerr bytes.Buffer
	if err := run(t.Context(), []string{"check", "-online", "-config", e.path("config.yaml"), "-env-file", e.path("tollgate.env")}, &cout, &cerr); err != nil {
		t.Fatalf("check -online: %v\n%s%s", err, cout.String(), cerr.String())
	}
	if strings.Contains(cout.String(), "warning:") {
		t.Errorf("check -online warns:\n%s", cout.String())
	}
}

func TestInit_ScriptedThenAgain(t *testing.T) {
	e := newInitEnv(t)
	out, err := e.init(t, "", e.flags(append([]string{"-yes"}, scriptedPlans...)...)...)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	e.checkWritten(t, out)
	ep := e.checkOneEndpoint(t)
	vars := e.envVars(t)
	if !strings.HasPrefix(vars[envStripeWebhook], "whsec_") || len(vars[envSessionSecret]) < 32 || vars[envClerkWebhook] != "" {
		t.Errorf("tollgate.env variables: webhook %t, session %d bytes, clerk webhook set %t",
			strings.HasPrefix(vars[envStripeWebhook], "whsec_"), len(vars[envSessionSecret]), vars[envClerkWebhook] != "")
	}
	cfg, err := config.Load(e.path("config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var plans []string
	for _, p := range cfg.Plans {
		plans = append(plans, p.Key+"="+p.Name+":"+strings.Join(p.Prices, ","))
	}
	if diff := cmp.Diff([]string{"pro=Pro:price_demo_pro_monthly", "team=Team:price_demo_team_monthly"}, plans); diff != "" {
		t.Errorf("plans (-want +got):\n%s", diff)
	}
	// The container's listen and store, the admin listener on loopback with
	// a token made for it, and no Clerk stand-in URL that was not asked for.
	got := []string{cfg.Listen, cfg.Store.Path, cfg.Admin.Listen, strconv.FormatBool(cfg.Admin.Token == vars[envAdminToken] && len(cfg.Admin.Token) >= 32)}
	if diff := cmp.Diff([]string{":8080", "/data/tollgate.db", "127.0.0.1:8081", "true"}, got); diff != "" {
		t.Errorf("listen, store.path, admin.listen, admin.token from tollgate.env (-want +got):\n%s", diff)
	}
	if text := e.read(t, "config.yaml"); strings.Contains(text, "frontend_api_url") || strings.Contains(text, "sign_in_url") {
		t.Errorf("config.yaml names a Clerk stand-in no flag asked for:\n%s", text)
	}
	for _, want := range []string{initPublicURL + "/.tollgate/webhooks/clerk", "user.created", "organizationMembership.deleted",
		"check -online", "docker run", `"/" is public`, "STRIPE_WEBHOOK_SECRET", "Left empty: CLERK_WEBHOOK_SECRET"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q:\n%s", want, out)
		}
	}

	// Again without -force: refused before anything is asked of anyone.
	before := map[string]string{"config.yaml": e.read(t, "config.yaml"), "tollgate.env": e.read(t, "tollgate.env")}
	calls := e.stripe.APICalls()
	out, err = e.init(t, "", e.flags(append([]string{"-yes"}, scriptedPlans...)...)...)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "-force") {
		t.Errorf("a second run without -force: %v", err)
	}
	for name, b := range before {
		if e.read(t, name) != b {
			t.Errorf("%s changed", name)
		}
	}
	if diff := cmp.Diff(calls, e.stripe.APICalls()); diff != "" {
		t.Errorf("Stripe was called (-before +after):\n%s", diff)
	}

	// With -force: the endpoint is found, not made again, and its secret,
	// which Stripe does not show again, is kept; so is the session secret.
	out, err = e.init(t, "", e.flags(append([]string{"-yes", "-force"}, scriptedPlans...)...)...)
	if err != nil {
		t.Fatalf("again with -force: %v\n%s", err, out)
	}
	if got := e.checkOneEndpoint(t); got.ID != ep.ID {
		t.Errorf("the endpoint is %s, was %s", got.ID, ep.ID)
	}
	again := e.envVars(t)
	for _, name := range []string{envStripeWebhook, envSessionSecret, envAdminToken} {
		if again[name] != vars[name] {
			t.Errorf("a second run changed %s", name)
		}
	}
	if !strings.Contains(out, "is there already; its events are already") {
		t.Errorf("second run:\n%s", out)
	}
	// Every value reused from tollgate.env is marked so, not only the one
	// Stripe does not show again.
	if !strings.Contains(out, "tollgate.env holds CLERK_PUBLISHABLE_KEY (kept), CLERK_SECRET_KEY (kept), TOLLGATE_SESSION_SECRET (kept), "+
		"STRIPE_SECRET_KEY (kept), STRIPE_WEBHOOK_SECRET (kept), TOLLGATE_ADMIN_TOKEN (kept).") {
		t.Errorf("second run's summary:\n%s", out)
	}
	e.checkWritten(t, out)

	// Someone narrowed the endpoint's events: a run puts them back.
	e.stripeCall(t, http.MethodPost, "/v1/webhook_endpoints/"+ep.ID, url.Values{"enabled_events[0]": {"customer.created"}}, nil)
	// Every answer now comes from the files already there.
	out, err = e.init(t, "", "-yes", "-force", "-dir", e.dir)
	if err != nil || !strings.Contains(out, "its events are now the") {
		t.Fatalf("a run from the files: %v\n%s", err, out)
	}
	e.checkOneEndpoint(t)
	e.checkWritten(t, out)

	// Without the secret in tollgate.env, a run cannot get it from Stripe:
	// scripted, it says how to roll it, and writes nothing.
	if err := os.Remove(e.path("tollgate.env")); err != nil {
		t.Fatal(err)
	}
	out, err = e.init(t, "", e.flags(append([]string{"-yes", "-force"}, scriptedPlans...)...)...)
	if err == nil || !strings.Contains(err.Error(), "roll the secret") || !strings.Contains(err.Error(), "-stripe-webhook-secret") {
		t.Errorf("no secret anywhere: %v\n%s", err, out)
	}
	if _, err := os.Stat(e.path("tollgate.env")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tollgate.env was written: %v", err)
	}
	const rolled = "whsec_rolledInTheDashboard0123456789"
	out, err = e.init(t, "", e.flags(append([]string{"-yes", "-force", "-stripe-webhook-secret", rolled}, scriptedPlans...)...)...)
	if err != nil || e.envVars(t)[envStripeWebhook] != rolled {
		t.Errorf("with the rolled secret: %v\n%s", err, out)
	}
	e.checkOneEndpoint(t)
}

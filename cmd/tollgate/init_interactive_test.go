package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// answers is what a person types, one line per question.
func answers(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

const clerkWebhookSecret = "whsec_dGVzdF9zaWduaW5nX3NlY3JldF8zMl9jaGFyc19sb25n"

// Interactive: every question asked in turn, a wrong answer asked again,
// the plans chosen by number from the account's recurring prices; a second
// run asks before overwriting, offers what the files hold, and makes no
// second endpoint; a kept config.yaml is left as it is.
func TestInit_Interactive(t *testing.T) {
	e := newInitEnv(t)
	hooks := []string{"-dir", e.dir, "-clerk-api-url", e.clerkURL + "/v1", "-stripe-api-url", e.stripeURL}
	out, err := e.init(t, answers(
		"app.example.test",        // not absolute: asked again
		initPublicURL+"/",         // the trailing slash is dropped
		"http://app:3000",         // upstream
		e.clerk.PublishableKey(),  // Clerk's keys
		e.clerk.SecretKey(),       //   (a development instance)
		e.stripe.SecretKey(),      // Stripe's, test mode
		"1",                       // plan 1: Pro monthly
		"",                        // its name: pro, from the product
		"y",                       // another plan
		"1",                       // already pro's: asked again
		"price_demo_team_monthly", // by ID
		"",                        // team; every price is in a plan now, so no more questions about plans
		"",                        // the Clerk webhook's secret: later
	), hooks...)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	for _, want := range []string{
		`"app.example.test" is not an absolute http(s) URL`,
		" 1. Pro (Pro monthly) — $12.00/month   price_demo_pro_monthly",
		" 2. Team (Team monthly) — $49.00/month   price_demo_team_monthly",
		"Plan 1: its name in URLs and the config [pro]: ",
		"price_demo_pro_monthly is already a price of plan \"pro\"",
		"Plan 2: its name in URLs and the config [team]: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the dialogue lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "trial_fee") {
		t.Error("a one-time price was offered")
	}
	e.checkWritten(t, out)
	ep := e.checkOneEndpoint(t)
	first := e.envVars(t)

	// Again: both files are there. Enter keeps what they hold; the secrets
	// are offered without being shown.
	out, err = e.init(t, answers(
		"y", "y", // overwrite config.yaml, tollgate.env
		"", "", "", "", "", // public URL, upstream, the three keys
		"",                 // keep the plans
		clerkWebhookSecret, // the Clerk webhook's secret, now
		"",                 // the Stripe endpoint's: the one in tollgate.env
	), hooks...)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	for _, want := range []string{"Overwrite it with a new one", "Clerk secret key [the one in tollgate.env]: ",
		"Keep the plans of " + e.path("config.yaml") + " (pro: price_demo_pro_monthly; team: price_demo_team_monthly)? [Y/n]",
		"is there already", "Stripe webhook signing secret [the one in tollgate.env]: "} {
		if !strings.Contains(out, want) {
			t.Errorf("the second run lacks %q:\n%s", want, out)
		}
	}
	if got := e.checkOneEndpoint(t); got.ID != ep.ID {
		t.Errorf("endpoint %s, was %s", got.ID, ep.ID)
	}
	second := e.envVars(t)
	if second[envStripeWebhook] != first[envStripeWebhook] || second[envSessionSecret] != first[envSessionSecret] ||
		second[envClerkWebhook] != clerkWebhookSecret {
		t.Error("the second run did not keep the Stripe and session secrets, or did not set the Clerk webhook's")
	}
	e.checkWritten(t, out)

	// config.yaml kept: no question about plans, and the file unchanged.
	cfgBefore := e.read(t, "config.yaml")
	out, err = e.init(t, answers("n", "y", "", "", "", "", "", "", ""), hooks...)
	if err != nil || e.read(t, "config.yaml") != cfgBefore || strings.Contains(out, "Keep the plans") {
		t.Errorf("config.yaml kept: %v\n%s", err, out)
	}

	// tollgate.env must be writable: no to it ends the run, nothing changed.
	envBefore := e.read(t, "tollgate.env")
	out, err = e.init(t, answers("y", "n"), hooks...)
	if err == nil || e.read(t, "tollgate.env") != envBefore || e.read(t, "config.yaml") != cfgBefore {
		t.Errorf("tollgate.env declined: %v\n%s", err, out)
	}

	// The input ends before an answer: the error names the flag.
	_, err = e.init(t, answers("y", "y", ""), hooks...)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "-upstream") {
		t.Errorf("input ended: %v", err)
	}
}

// Scripted runs that cannot succeed say why and write nothing, and make no
// webhook endpoint.
func TestInit_ScriptedRefusals(t *testing.T) {
	e := newInitEnv(t)
	without := func(flag string) []string {
		args := e.flags()
		for i := range args {
			if args[i] == "-"+flag {
				return append(append([]string{}, args[:i]...), args[i+2:]...)
			}
		}
		t.Fatalf("no -%s", flag)
		return nil
	}
	with := func(flag, value string) []string { return append(without(flag), "-"+flag, value) }
	pro := []string{"-plan", "pro=price_demo_pro_monthly"}
	for _, tc := range []struct {
		name string
		args []string
		want []string // in the error
	}{
		{"no public URL", append(without("public-url"), pro...), []string{"-public-url"}},
		{"a public URL with a path", append(with("public-url", initPublicURL+"/app"), pro...), []string{"-public-url", "origin"}},
		{"no upstream", append(without("upstream"), pro...), []string{"-upstream"}},
		{"no Clerk secret key", append(without("clerk-secret-key"), pro...), []string{"-clerk-secret-key"}},
		{"a Clerk production key with a development one", append(with("clerk-secret-key", "sk_live_x"), pro...), []string{"same Clerk instance"}},
		{"a Clerk secret key that does not work", append(with("clerk-secret-key", "sk_test_wrong"), pro...), []string{"Clerk keys do not work"}},
		{"no Stripe key", append(without("stripe-secret-key"), pro...), []string{"-stripe-secret-key"}},
		{"a Stripe key that does not work", append(with("stripe-secret-key", "sk_test_wrong"), pro...), []string{"Stripe key does not work"}},
		{"no plan", e.flags(), []string{"-plan", "price_demo_pro_monthly", "price_demo_team_monthly"}},
		{"a one-time price", append(e.flags(), "-plan", "fee=price_demo_trial_fee"), []string{"price_demo_trial_fee", "not an active recurring price"}},
		{"a price that is not there", append(e.flags(), "-plan", "pro=price_nope"), []string{"price_nope"}},
		{"a price in two plans", append(e.flags(), "-plan", "a=price_demo_pro_monthly", "-plan", "b=price_demo_pro_monthly"), []string{"one plan only"}},
		{"a bad plan name", append(e.flags(), "-plan", "pro plan=price_demo_pro_monthly"), []string{"not a plan name"}},
		{"a plan without =", append(e.flags(), "-plan", "price_demo_pro_monthly"), []string{"NAME=price_"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := e.init(t, "", append(tc.args, "-yes")...)
			if err == nil {
				t.Fatalf("no error\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q: %v", w, err)
				}
			}
			if _, err := os.Stat(e.dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s was made: %v", e.dir, err)
			}
			if eps := e.endpoints(t); len(eps) != 0 {
				t.Errorf("a webhook endpoint was made: %+v", eps)
			}
		})
	}
}

// A public URL on this machine: Stripe cannot deliver there, so no
// endpoint is made and stripe listen's secret is used (the sandbox plays
// Stripe's own here; as a stand-in it delivers anywhere). -env-file puts
// tollgate.env where compose.yaml wants it, and the variables someone
// added to it by hand are kept, as is an admin token set by hand.
func TestInit_OnThisMachineWithEnvFileElsewhere(t *testing.T) {
	e := newInitEnv(t)
	asStripe := func(r *initRun) { r.deliversHere = func() bool { return false } }
	envPath := filepath.Join(filepath.Dir(e.dir), "tollgate.env")
	if err := os.WriteFile(envPath, []byte("BY_HAND=kept\nTOLLGATE_ADMIN_TOKEN=kept-by-hand-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := append(e.flags("-public-url", "http://127.0.0.1:8080", "-env-file", envPath, "-force", "-yes"), "-plan", "pro=price_demo_pro_monthly")
	out, err := e.initWith(t, "", asStripe, base...)
	if err == nil || !strings.Contains(err.Error(), "stripe listen") || !strings.Contains(err.Error(), "-stripe-webhook-secret") {
		t.Errorf("without stripe listen's secret: %v\n%s", err, out)
	}
	const listen = "whsec_fromStripeListen0123456789abcdef"
	out, err = e.initWith(t, "", asStripe, append(base, "-stripe-webhook-secret", listen)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "stripe listen --forward-to http://127.0.0.1:8080/.tollgate/webhooks/stripe") {
		t.Errorf("no stripe listen hint:\n%s", out)
	}
	if eps := e.endpoints(t); len(eps) != 0 {
		t.Errorf("an endpoint for a loopback URL: %+v", eps)
	}
	if _, err := os.Stat(e.path("tollgate.env")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tollgate.env in -dir too: %v", err)
	}
	b, err := os.ReadFile(envPath)
	if err != nil {
		t.Fatal(err)
	}
	env := string(b)
	if !strings.Contains(env, "\nSTRIPE_WEBHOOK_SECRET="+listen+"\n") || !strings.Contains(env, "\nTOLLGATE_ADMIN_TOKEN=kept-by-hand-0123456789\n") ||
		!strings.HasSuffix(env, "\nBY_HAND=kept\n") {
		t.Errorf("tollgate.env:\n%s", env)
	}
}

// A public URL on this machine with a stand-in for Stripe, which delivers
// anywhere: the endpoint is made, at the loopback URL, with its secret.
func TestInit_OnThisMachineWithAStandIn(t *testing.T) {
	e := newInitEnv(t)
	out, err := e.init(t, "", append(e.flags("-public-url", "http://127.0.0.1:8080", "-yes"), "-plan", "pro=price_demo_pro_monthly")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	eps := e.endpoints(t)
	if len(eps) != 1 || eps[0].URL != "http://127.0.0.1:8080/.tollgate/webhooks/stripe" || strings.Contains(out, "stripe listen") {
		t.Errorf("endpoints %+v\n%s", eps, out)
	}
	if !strings.HasPrefix(e.envVars(t)[envStripeWebhook], "whsec_") {
		t.Error("no STRIPE_WEBHOOK_SECRET")
	}
}

// Ctrl+C while a question waits for its answer ends the run at once: the
// read happens on a goroutine of its own, which a terminal would block.
func TestPrompter_EndsWithTheContext(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close() // ends the read
	ctx, cancel := context.WithCancel(t.Context())
	p := newPrompter(ctx, pr, io.Discard, true)
	defer p.close()
	cancel()
	if _, err := p.ask(question{label: "Public URL", flag: "public-url"}); !errors.Is(err, context.Canceled) {
		t.Errorf("ask after Ctrl+C: %v", err)
	}
}

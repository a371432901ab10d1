package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// `tollgate demo` shows the sandbox's stand-in keys and the init command
// that rehearses the quickstart against it; run as shown, with the keys
// it shows, init writes files that check -online passes, and the gateway
// served from them gets the sandbox Stripe's webhooks at the endpoint
// init made, on this machine.
func TestDemo_BannerRehearsesInit(t *testing.T) {
	d, _ := mustRunDemoWith(t, demoOptions{Development: true})
	banner := d.banner(true)
	for _, want := range []string{"stand-ins it made up for this run, not keys of any\nreal Clerk or Stripe account",
		d.Stripe.SecretKey(), d.StripeURL, d.Clerk.PublishableKey(), d.Clerk.SecretKey(), d.ClerkURL + "/v1",
		"tollgate serve -config rehearsal/config.yaml -env-file rehearsal/tollgate.env"} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner does not show %q:\n%s", want, banner)
		}
	}
	if prod := d.banner(false); !strings.Contains(prod, "with tollgate demo -dev") {
		t.Errorf("the production instance's banner does not point at -dev:\n%s", prod)
	}
	start := strings.Index(banner, "  tollgate init ")
	end := strings.Index(banner, "\n  tollgate serve ")
	if start < 0 || end < start {
		t.Fatalf("no init command in the banner:\n%s", banner)
	}
	args := strings.Fields(strings.ReplaceAll(banner[start:end], "\\\n", " "))[2:] // after "tollgate init"

	t.Chdir(t.TempDir())
	// The banner's 127.0.0.1:8090 may be taken here: the gateway listens
	// where the test can, which the flags after the banner's say.
	ln := loopback(t)
	args = append(args, "-public-url", "http://"+ln.Addr().String(), "-listen", ln.Addr().String(), "-yes",
		"-clerk-publishable-key", d.Clerk.PublishableKey(), "-clerk-secret-key", d.Clerk.SecretKey(),
		"-stripe-secret-key", d.Stripe.SecretKey(), "-plan", "pro=price_demo_pro_monthly")
	var out, errb bytes.Buffer
	if err := run(t.Context(), append([]string{"init"}, args...), &out, &errb); err != nil {
		t.Fatalf("init as the banner shows it: %v\n%s%s", err, out.String(), errb.String())
	}
	m := regexp.MustCompile(`made the webhook endpoint (we_\w+) at http://127\.0\.0\.1:`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no endpoint made for the gateway on this machine:\n%s", out.String())
	}
	out.Reset()
	if err := run(t.Context(), []string{"check", "-online", "-config", "rehearsal/config.yaml", "-env-file", "rehearsal/tollgate.env"}, &out, &errb); err != nil ||
		strings.Contains(out.String(), "warning:") {
		t.Fatalf("check -online: %v\n%s%s", err, out.String(), errb.String())
	}

	startServingFrom(t, configSource{path: "rehearsal/config.yaml", envFile: "rehearsal/tollgate.env"}, ln)
	form := url.Values{"email": {"rehearsal@example.test"}}
	req, _ := http.NewRequest(http.MethodPost, d.StripeURL+"/v1/customers", strings.NewReader(form.Encode()))
	req.Header.Set("Authorization", "Bearer "+d.Stripe.SecretKey())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := d.Stripe.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, dl := range d.Stripe.Deliveries() {
		if dl.Endpoint == m[1] {
			got = append(got, dl.Type+" "+http.StatusText(dl.Status))
		}
	}
	if len(got) != 1 || got[0] != "customer.created OK" {
		t.Errorf("deliveries to the rehearsed gateway: %v", got)
	}
}

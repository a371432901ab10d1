package main

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
	stripeclient "github.com/stripe/stripe-go/v76/client"
)

// buildTollgate compiles this command once per test into dir.
func buildTollgate(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "tollgate")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startServe runs `tollgate serve` as a separate process with env, and waits
// until it answers.
func startServe(t *testing.T, bin, config string, env map[string]string, base string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-config", config)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"level":"ERROR"`) || !strings.HasPrefix(sc.Text(), "{") {
				t.Logf("tollgate: %s", sc.Text())
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	eventually(t, "tollgate serve to answer", func() bool { return statusOf(t, base+"/.tollgate/healthz") == 200 })
	return cmd
}

// TestServe_KillNineRightAfterAWebhookLosesNothing: a webhook acknowledged
// with 2xx has been committed; killing the process with SIGKILL right after
// and starting it again (with Stripe unreachable) still grants access.
func TestServe_KillNineRightAfterAWebhookLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	d, _ := mustRunDemo(t)
	dir := t.TempDir()
	bin := buildTollgate(t, dir)
	addr := freeAddr(t)
	base := "http://" + addr
	env := map[string]string{}
	for k, v := range d.env {
		env[k] = v
	}
	env["DEMO_LISTEN"], env["DEMO_PUBLIC_URL"], env["DEMO_STORE"] = addr, base, filepath.Join(dir, "tollgate.db")
	env["DEMO_ADMIN_LISTEN"] = freeAddr(t)
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, demoConfig, 0o400); err != nil {
		t.Fatal(err)
	}
	proc := startServe(t, bin, config, env, base)
	d.Stripe.SetWebhook(base+"/.tollgate/webhooks/stripe", d.webhookSecret)

	// A customer made outside tollgate (the app's own checkout, say), tagged
	// with the Clerk user: tollgate learns of it only through webhooks.
	sc := stripeclient.New(d.Stripe.SecretKey(), stripego.NewBackendsWithConfig(&stripego.BackendConfig{URL: stripego.String(d.StripeURL)}))
	cus, err := sc.Customers.New(&stripego.CustomerParams{Email: stripego.String("ada@example.com"),
		Metadata: map[string]string{"clerk_user_id": "user_ada"}})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := sc.CheckoutSessions.New(&stripego.CheckoutSessionParams{Mode: stripego.String("subscription"), Customer: stripego.String(cus.ID),
		SuccessURL: stripego.String(base + "/"), CancelURL: stripego.String(base + "/"),
		LineItems: []*stripego.CheckoutSessionLineItemParams{{Price: stripego.String("price_demo_pro_monthly"), Quantity: stripego.Int64(1)}}})
	if err != nil {
		t.Fatal(err)
	}
	c := noRedirects(nil)
	resp, err := c.PostForm(cs.URL, url.Values{"email": {"ada@example.com"}, "card_number": {"4242424242424242"}, "exp": {"12 / 34"}, "cvc": {"123"}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay: %v %v", resp, err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.Stripe.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	for _, del := range d.Stripe.Deliveries() {
		if del.Status < 200 || del.Status >= 300 {
			t.Fatalf("delivery %s (%s) answered %d", del.EventID, del.Type, del.Status)
		}
	}
	// Acknowledged: kill -9 now.
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()

	// Restart with Stripe unreachable: the state must come from the store.
	env["DEMO_STRIPE_URL"] = "http://127.0.0.1:9"
	startServe(t, bin, config, env, base)
	tok := d.Clerk.MintSessionToken("user_ada", "sess_crash", time.Now(), nil)
	req, _ := http.NewRequest("GET", base+"/routes/415VNA/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after kill -9 and restart: %d, want 200", resp.StatusCode)
	}
}

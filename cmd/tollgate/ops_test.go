package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/proxy/admin"
)

func scrapeMetrics(t *testing.T, d *demo) string {
	t.Helper()
	resp, err := http.Get(d.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue is the value of the first series line that starts with prefix.
func metricValue(scrape, prefix string) string {
	for _, line := range strings.Split(scrape, "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			return f[len(f)-1]
		}
	}
	return ""
}

// TestDemo_OperatorSeesUsersMetricsAndAdmin is issue 5 as a site owner would
// try it: several users in various states, `tollgate users` listing each
// with the right customer, plan and status, /metrics moving with traffic and
// webhooks, and an admin API that wants its token and is not on the public
// listener.
func TestDemo_OperatorSeesUsersMetricsAndAdmin(t *testing.T) {
	d, clk := mustRunDemo(t)
	before := scrapeMetrics(t, d)
	// Clerk tells tollgate about Linus, who never pays.
	if resp := postSvix(t, d, clk.Now(), `{"type":"user.created","object":"event","data":{"id":"user_linus","object":"user",`+
		`"primary_email_address_id":"idn_1","email_addresses":[{"id":"idn_1","email_address":"linus@example.com"}]}}`, ""); resp.StatusCode != 200 {
		t.Fatalf("Clerk user.created: %d", resp.StatusCode)
	}
	if resp := postSvix(t, d, clk.Now(), `{"type":"organizationMembership.created","object":"event","data":{"object":"organization_membership",`+
		`"id":"orgmem_1","role":"org:member","organization":{"id":"org_acme","slug":"acme"},"public_user_data":{"user_id":"user_linus"}}}`, ""); resp.StatusCode != 200 {
		t.Fatalf("Clerk organizationMembership.created: %d", resp.StatusCode)
	}
	// A later user.updated keeps the membership.
	if resp := postSvix(t, d, clk.Now(), `{"type":"user.updated","object":"event","data":{"id":"user_linus","object":"user",`+
		`"primary_email_address_id":"idn_1","email_addresses":[{"id":"idn_1","email_address":"linus@example.com"}]}}`, ""); resp.StatusCode != 200 {
		t.Fatalf("Clerk user.updated: %d", resp.StatusCode)
	}

	// Ada subscribes; Linus only signs in; Grace subscribes and cancels now.
	ada, _ := cookiejar.New(nil)
	signIn(t, d, ada, "user_ada")
	subscribe(t, d, noRedirects(ada))
	linus, _ := cookiejar.New(nil)
	signIn(t, d, linus, "user_linus")
	get(t, noRedirects(linus), d.URL+"/settings/", page)
	grace, _ := cookiejar.New(nil)
	signIn(t, d, grace, "user_grace")
	graceSub := subscribe(t, d, noRedirects(grace))
	d.Stripe.SetSubscriptionStatus(graceSub, "canceled")
	waitWebhooks(t, d)
	for range 2 {
		if resp := get(t, noRedirects(ada), d.URL+"/routes/415VNA/", page); resp.StatusCode != 200 {
			t.Fatalf("ada on the paid route: %d", resp.StatusCode)
		}
	}

	// tollgate users --json, through the admin listener, as the CLI does.
	for k, v := range d.env {
		t.Setenv(k, v)
	}
	config := filepath.Join(t.TempDir(), "demo.yaml")
	os.WriteFile(config, demoConfig, 0o600)
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"users", "-config", config, "--json"}, &out, &errb); err != nil {
		t.Fatalf("tollgate users: %v %s", err, errb.String())
	}
	var users []admin.User
	if err := json.Unmarshal(out.Bytes(), &users); err != nil {
		t.Fatalf("users --json: %v\n%s", err, out.String())
	}
	byID := map[string]admin.User{}
	for _, u := range users {
		byID[u.ID] = u
	}
	if u := byID["user_ada"]; !strings.HasPrefix(u.CustomerID, "cus_") || strings.Join(u.Plans, ",") != "pro" || u.Status != "trialing" || u.Email == "" {
		t.Errorf("ada: %+v", u)
	}
	if u := byID["user_grace"]; !strings.HasPrefix(u.CustomerID, "cus_") || u.Status != "canceled" {
		t.Errorf("grace: %+v", u)
	}
	if u, ok := byID["user_linus"]; !ok || u.Email != "linus@example.com" || u.CustomerID != "" || u.Status != "" || strings.Join(u.OrgIDs, ",") != "org_acme" {
		t.Errorf("linus: %+v (listed: %v)", u, ok)
	}
	if byID["user_ada"].CustomerID == byID["user_grace"].CustomerID {
		t.Errorf("two users share a customer")
	}
	out.Reset()
	if err := run(t.Context(), []string{"users", "-config", config, "-status", "trialing"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "user_ada") || strings.Contains(out.String(), "user_grace") {
		t.Errorf("users -status trialing:\n%s", out.String())
	}

	// Metrics moved with the traffic and the webhooks.
	after := scrapeMetrics(t, d)
	for _, series := range []string{
		`tollgate_decisions_total{access="signed_in",decision="allow"`,
		`tollgate_webhook_events_total{result="processed",source="stripe",type="customer.subscription.deleted"}`,
		`tollgate_stripe_calls_total{endpoint="POST /v1/checkout/sessions"}`,
		`tollgate_entitlement_cache_total{result="hit"}`,
		`tollgate_upstream_response_seconds_count{code="2xx"}`,
	} {
		if metricValue(after, series) == "" || metricValue(after, series) == metricValue(before, series) {
			t.Errorf("series did not move: %s (before %q, after %q)", series, metricValue(before, series), metricValue(after, series))
		}
	}

	// The admin API wants its token, and lives only on the admin listener.
	for _, tc := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer wrong", 401}, {"Bearer " + d.AdminToken, 200}} {
		req, _ := http.NewRequest("GET", d.AdminURL+"/api/users", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("admin API with %q: %d, want %d", tc.auth, resp.StatusCode, tc.want)
		}
	}
	for _, p := range []string{"/api/users", "/.tollgate/api/users", "/metrics", "/.tollgate/metrics"} {
		req, _ := http.NewRequest("GET", d.URL+p, nil)
		req.Header.Set("Authorization", "Bearer "+d.AdminToken)
		req.Header.Set("Accept", "application/json")
		resp, err := noRedirects(nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || bytes.Contains(b, []byte("user_ada")) || bytes.Contains(b, []byte("tollgate_decisions_total")) {
			t.Errorf("public listener %s: %d %.100s", p, resp.StatusCode, b)
		}
	}
}

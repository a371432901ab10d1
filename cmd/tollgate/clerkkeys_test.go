package main

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// verifyRoute is the sandbox's pattern for Clerk's key verification.
const verifyRoute = "POST /v1/api_keys/verify"

// TestDemo_ClerkAPIKeys: Clerk's ak_ keys through the demo and the sandbox
// Clerk. A paying user's key gets her plan and 20 requests cost Clerk one
// verification; an organisation's key gets the organisation's plan; a
// revoked key is refused once the 60 s positive window has passed; an
// unknown key costs one verification, and retrying it within 10 s none.
func TestDemo_ClerkAPIKeys(t *testing.T) {
	d, clk := mustRunDemo(t)
	if !d.Config.Clerk.APIKeys {
		t.Fatal("the demo config does not turn clerk.api_keys on")
	}
	ada, _ := cookiejar.New(nil)
	signIn(t, d, ada, "user_ada")
	subscribe(t, d, noRedirects(ada))
	grace, _ := cookiejar.New(nil)
	signIn(t, d, grace, "user_grace")
	subscribeOrg(t, d, noRedirects(grace))
	waitWebhooks(t, d)

	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	verifications := func() (ours, clerks int) {
		return d.gateway.Clerk.APIKeyVerifications(), d.Clerk.BackendCalls(verifyRoute)
	}
	type counts struct{ Ours, Clerks int }
	since := func(o0, c0 int) counts {
		o, c := verifications()
		return counts{o - o0, c - c0}
	}

	adaKey, adaKeyID := d.Clerk.IssueAPIKey("user_ada", "ci", nil)
	o0, c0 := verifications()
	for i := range 20 {
		if got, want := callWithKey(t, d, "/routes/415VNA/", bearer(adaKey)), (keyAnswer{code: 200, user: "user_ada", plan: "pro", key: adaKeyID}); got != want {
			t.Fatalf("request %d with ada's Clerk key: %+v, want %+v", i, got, want)
		}
	}
	if d := cmp.Diff(counts{1, 1}, since(o0, c0)); d != "" {
		t.Errorf("20 requests, verifications (-want +got):\n%s", d)
	}

	orgKey, orgKeyID := d.Clerk.IssueAPIKey("org_acme", "acme ci", []string{"TEAMX"})
	if got, want := callWithKey(t, d, "/routes/TEAMX/", bearer(orgKey)), (keyAnswer{code: 200, org: "org_acme", plan: "team", key: orgKeyID}); got != want {
		t.Errorf("organisation key: %+v, want %+v", got, want)
	}
	if got := callWithKey(t, d, "/routes/415VNA/", bearer(orgKey)); got.code != 403 || got.errCode != "insufficient_scope" {
		t.Errorf("organisation key outside its scopes: %+v, want 403 insufficient_scope", got)
	}

	// Unknown: one verification, then none for the 10 s Clerk's refusal is
	// remembered.
	unknown := "ak_" + "0123456789abcdef0123456789abcdef0123456789abcdef"
	o0, c0 = verifications()
	for range 2 {
		if got := callWithKey(t, d, "/routes/415VNA/", bearer(unknown)); got.code != 401 || got.errCode != "invalid_api_key" {
			t.Fatalf("unknown Clerk key: %+v, want 401 invalid_api_key", got)
		}
	}
	if d := cmp.Diff(counts{1, 1}, since(o0, c0)); d != "" {
		t.Errorf("an unknown key twice within 10 s, verifications (-want +got):\n%s", d)
	}

	// Revoked at Clerk: the answer cached within the minute stands; past it,
	// Clerk's 404 refuses the key.
	if !d.Clerk.RevokeAPIKey(adaKeyID, "leaked") {
		t.Fatal("revoke: no such key")
	}
	if got := callWithKey(t, d, "/routes/415VNA/", bearer(adaKey)); got.code != 200 {
		t.Errorf("revoked key within the cache window: %+v, want 200 (cached)", got)
	}
	clk.Advance(61 * time.Second)
	o0, c0 = verifications()
	if got := callWithKey(t, d, "/routes/415VNA/", bearer(adaKey)); got.code != 401 || got.errCode != "invalid_api_key" {
		t.Errorf("revoked key after the cache window: %+v, want 401 invalid_api_key", got)
	}
	if d := cmp.Diff(counts{1, 1}, since(o0, c0)); d != "" {
		t.Errorf("revoked key, verifications (-want +got):\n%s", d)
	}
}

// TestDemo_ClerkAPIKeysFloodStopsAtItsShare: made-up ak_ keys, each new
// and so each a verification, stop reaching Clerk once key verifications
// hold their share of the Backend API budget; the next get 503 with
// Retry-After (not the client's fault, so not counted against its
// address), and a key verified before is still let in from its cached
// verdict.
func TestDemo_ClerkAPIKeysFloodStopsAtItsShare(t *testing.T) {
	d, _ := mustRunDemo(t)
	ada, _ := cookiejar.New(nil)
	signIn(t, d, ada, "user_ada")
	subscribe(t, d, noRedirects(ada))
	waitWebhooks(t, d)
	adaKey, _ := d.Clerk.IssueAPIKey("user_ada", "ci", nil)
	bearer := func(k string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + k, "Accept": "application/json"}
	}
	if got := callWithKey(t, d, "/routes/415VNA/", bearer(adaKey)); got.code != 200 {
		t.Fatalf("ada's key before the flood: %+v", got)
	}

	c := &http.Client{Timeout: 10 * time.Second}
	c0 := d.Clerk.BackendCalls(verifyRoute)
	codes := map[int]int{}
	first503 := -1
	for i := range 1000 {
		resp := get(t, c, d.URL+"/routes/415VNA/", bearer(fmt.Sprintf("ak_madeup%044d", i)))
		body := readBody(t, resp)
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusServiceUnavailable {
			if ra := resp.Header.Get("Retry-After"); ra != "10" || !strings.Contains(body, `"error":"unavailable"`) {
				t.Fatalf("key %d: 503 with Retry-After %q and %s, want Retry-After 10, unavailable", i, ra, body)
			}
			if first503 < 0 {
				first503 = i
			}
		}
		if first503 >= 0 && i == first503+20 {
			break
		}
	}
	calls := d.Clerk.BackendCalls(verifyRoute) - c0
	t.Logf("flood of made-up Clerk keys: %v; %d verifications reached Clerk, the first 503 at key %d", codes, calls, first503)
	if first503 < 0 {
		t.Fatalf("1,000 made-up keys: %v, never a 503: key verifications are not held to a share", codes)
	}
	if calls != first503 {
		t.Errorf("%d verifications reached Clerk, want %d (one per key before the first 503, none after)", calls, first503)
	}
	if codes[http.StatusUnauthorized]+codes[http.StatusTooManyRequests] != first503 || codes[http.StatusServiceUnavailable] != 21 {
		t.Errorf("answers %v: want %d refused (401, then 429 past max_failures) and 21 × 503", codes, first503)
	}
	if got := callWithKey(t, d, "/routes/415VNA/", bearer(adaKey)); got.code != 200 {
		t.Errorf("ada's key during the flood: %+v, want 200 from its cached verdict", got)
	}
}

package clerk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
	clerksandbox "github.com/tollgate/tollgate/proxy/sandbox/clerk"
)

const verifyRoute = "POST /v1/api_keys/verify"

// sandboxEnv is newEnv with the Backend API served by the sandbox Clerk on
// the same clock, so that keys are made, revoked and verified as Clerk's
// API does it.
func sandboxEnv(t *testing.T, secretKey func(sb *clerksandbox.Clerk) string) (*env, *clerksandbox.Clerk, *httptest.Server) {
	t.Helper()
	clock := &testClock{t: testStart}
	sb, err := clerksandbox.New(clerksandbox.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	sb.SetBaseURL(srv.URL)
	e := newEnv(t, func(c *Config) {
		c.APIURL, c.HTTPClient, c.Now = srv.URL+"/v1", srv.Client(), clock.Now
		c.SecretKey = secretKey(sb)
	})
	e.clock = clock
	return e, sb, srv
}

func TestVerifyAPIKey_AgainstTheSandbox(t *testing.T) {
	e, sb, srv := sandboxEnv(t, (*clerksandbox.Clerk).SecretKey)
	ctx := t.Context()

	// A key made through the Backend API as Clerk's SDK sends it: claims
	// and an expiry in 90 s.
	body, _ := json.Marshal(map[string]any{"name": "ci", "subject": "user_ada", "scopes": []string{"reports"},
		"claims": map[string]any{"team": "blue"}, "seconds_until_expiration": 90})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/api_keys", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+sb.SecretKey())
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var made struct{ ID, Secret string }
	if err := json.NewDecoder(resp.Body).Decode(&made); err != nil || resp.StatusCode != 200 || made.Secret == "" {
		t.Fatalf("create: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()

	want := proxy.VerifiedAPIKey{ID: made.ID, Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"},
		Scopes: []string{"reports"}, Claims: map[string]any{"team": "blue"}}
	for range 20 {
		got, err := e.c.VerifyAPIKey(ctx, made.Secret)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("verified key (-want +got):\n%s", d)
		}
	}
	if n, m := e.c.APIKeyVerifications(), sb.BackendCalls(verifyRoute); n != 1 || m != 1 {
		t.Fatalf("20 uses: %d verifications, %d calls to Clerk; want 1, 1", n, m)
	}

	// The positive cache never outlives the key: at 90 s it is expired.
	e.clock.Advance(61 * time.Second)
	if _, err := e.c.VerifyAPIKey(ctx, made.Secret); err != nil {
		t.Fatalf("at 61 s: %v", err)
	}
	e.clock.Advance(30 * time.Second)
	if _, err := e.c.VerifyAPIKey(ctx, made.Secret); !errors.Is(err, proxy.ErrAPIKeyUnknown) && !errors.Is(err, proxy.ErrAPIKeyExpired) {
		t.Fatalf("at 91 s: %v, want refused", err)
	}

	// Revoked: refused once the positive window has passed.
	secret, id := sb.IssueAPIKey("org_acme", "org", nil)
	if got, err := e.c.VerifyAPIKey(ctx, secret); err != nil || got.Subject != (proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"}) {
		t.Fatalf("org key: %+v, %v", got, err)
	}
	if !sb.RevokeAPIKey(id, "leaked") {
		t.Fatal("revoke: no such key")
	}
	e.clock.Advance(apiKeyPositiveTTL)
	if _, err := e.c.VerifyAPIKey(ctx, secret); !errors.Is(err, proxy.ErrAPIKeyUnknown) {
		t.Fatalf("revoked: %v, want ErrAPIKeyUnknown (Clerk's 404)", err)
	}

	// Unknown: one call, then none for apiKeyNegativeTTL.
	before := sb.BackendCalls(verifyRoute)
	for range 3 {
		if _, err := e.c.VerifyAPIKey(ctx, "ak_nosuchkey"); !errors.Is(err, proxy.ErrAPIKeyUnknown) {
			t.Fatalf("unknown: %v", err)
		}
	}
	if got := sb.BackendCalls(verifyRoute) - before; got != 1 {
		t.Fatalf("3 tries of an unknown key: %d calls, want 1", got)
	}
	e.clock.Advance(apiKeyNegativeTTL)
	_, _ = e.c.VerifyAPIKey(ctx, "ak_nosuchkey")
	if got := sb.BackendCalls(verifyRoute) - before; got != 2 {
		t.Fatalf("after the negative window: %d calls, want 2", got)
	}
}

// Clerk's 401 is about tollgate's secret key, not the caller's key: an
// outage, never cached, and never "your key is wrong".
func TestVerifyAPIKey_OurSecretKeyRefused(t *testing.T) {
	e, sb, _ := sandboxEnv(t, func(*clerksandbox.Clerk) string { return "sk_live_wrong" })
	secret, _ := sb.IssueAPIKey("user_ada", "ci", nil)
	for range 2 {
		if _, err := e.c.VerifyAPIKey(t.Context(), secret); !errors.Is(err, proxy.ErrAPIKeyUnavailable) {
			t.Fatalf("with a wrong secret key: %v, want ErrAPIKeyUnavailable", err)
		}
	}
	if got := sb.BackendCalls(verifyRoute); got != 2 {
		t.Errorf("%d calls, want 2: an outage is not cached", got)
	}
}

// A flood of made-up ak_ keys, each new to the verdict cache and so each
// a verification, is held to the keys' share of Clerk's budget: past it
// they get ErrAPIKeyUnavailable (the gate's 503) without a call, a known
// key's cached verdict still answers, and session checks still reach
// Clerk.
func TestVerifyAPIKey_AFloodOfMadeUpKeysLeavesSessionsTheirBudget(t *testing.T) {
	e, sb, _ := sandboxEnv(t, (*clerksandbox.Clerk).SecretKey)
	ctx := t.Context()
	secret, _ := sb.IssueAPIKey("user_ada", "ci", nil)
	if _, err := e.c.VerifyAPIKey(ctx, secret); err != nil {
		t.Fatal(err)
	}
	limit := int(e.c.budget.limit) // calls per 10 s: 1,000 for this production instance
	keyCalls := int(apiKeyShare * float64(limit))
	flood := limit
	unknown, unavailable := 0, 0
	for i := range flood {
		_, err := e.c.VerifyAPIKey(ctx, fmt.Sprintf("ak_madeup%05d", i))
		switch {
		case errors.Is(err, proxy.ErrAPIKeyUnknown):
			unknown++
		case errors.Is(err, proxy.ErrAPIKeyUnavailable) && errors.Is(err, proxy.ErrRateLimited):
			unavailable++
		default:
			t.Fatalf("made-up key %d: %v", i, err)
		}
	}
	// The keys' share of the window's calls, the known key's among them.
	if got := sb.BackendCalls(verifyRoute); got != keyCalls || unknown != keyCalls-1 || unavailable != flood-keyCalls+1 {
		t.Errorf("%d made-up keys: %d verify calls to Clerk, %d refused as unknown, %d unavailable; want %d, %d, %d",
			flood, got, unknown, unavailable, keyCalls, keyCalls-1, flood-keyCalls+1)
	}
	if _, err := e.c.VerifyAPIKey(ctx, secret); err != nil {
		t.Errorf("the known key during the flood: %v, want its cached verdict", err)
	}
	if s := e.c.RefreshStretch(); s != 1 {
		t.Errorf("session check interval stretched %v by the flood, want 1", s)
	}
	before := sb.BackendCalls("GET /v1/sessions/{id}")
	// What the session checks keep: their share less the keys'.
	sessions := int(sessionCheckShare*float64(limit)) - keyCalls
	for i := range sessions {
		if _, err := e.c.CheckSession(ctx, fmt.Sprintf("sess_%d", i)); err != nil {
			t.Fatalf("session check %d of %d during the flood: %v", i, sessions, err)
		}
	}
	if got := sb.BackendCalls("GET /v1/sessions/{id}") - before; got != sessions {
		t.Errorf("%d session checks reached Clerk, want %d", got, sessions)
	}
}

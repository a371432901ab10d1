package clerksandbox

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestAPIKeys_BackendAPI: the sandbox's API keys routes answer as Clerk's
// do, never kinder: bad input is refused, a revoked or expired key is a
// 404 on verify at once, and an unknown key to revoke is a 404.
func TestAPIKeys_BackendAPI(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var offset atomic.Int64 // the sandbox's clock runs on the server's goroutines
	c, err := New(Options{Now: func() time.Time { return now.Add(time.Duration(offset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	call := func(path string, body any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+c.SecretKey())
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	errCode := func(out map[string]any) string {
		errs, _ := out["errors"].([]any)
		if len(errs) == 0 {
			return ""
		}
		e, _ := errs[0].(map[string]any)
		s, _ := e["code"].(string)
		return s
	}

	for _, tc := range []struct {
		name string
		body map[string]any
		want int
	}{
		{"no name", map[string]any{"subject": "user_ada"}, 422},
		{"no subject", map[string]any{"name": "x"}, 422},
		{"not a user or organisation", map[string]any{"name": "x", "subject": "sess_1"}, 422},
		{"unknown user", map[string]any{"name": "x", "subject": "user_nobody"}, 404},
		{"unknown organisation", map[string]any{"name": "x", "subject": "org_nobody"}, 404},
		{"expiry not positive", map[string]any{"name": "x", "subject": "user_ada", "seconds_until_expiration": 0}, 422},
	} {
		if got, _ := call("/v1/api_keys", tc.body); got != tc.want {
			t.Errorf("create, %s: %d, want %d", tc.name, got, tc.want)
		}
	}

	code, made := call("/v1/api_keys", map[string]any{"name": "ci", "subject": "user_ada", "scopes": []string{"r1"},
		"claims": map[string]any{"k": "v"}, "seconds_until_expiration": 60})
	secret, _ := made["secret"].(string)
	id, _ := made["id"].(string)
	if code != 200 || secret == "" || id == "" {
		t.Fatalf("create: %d %v", code, made)
	}
	code, got := call("/v1/api_keys/verify", map[string]any{"secret": secret})
	want := map[string]any{"object": "api_key", "id": id, "type": "api_key", "name": "ci", "subject": "user_ada",
		"scopes": []any{"r1"}, "claims": map[string]any{"k": "v"}, "revoked": false, "revocation_reason": nil,
		"expired": false, "expiration": float64(now.Add(time.Minute).UnixMilli()), "created_by": nil,
		"description": nil, "last_used_at": float64(now.UnixMilli()), "created_at": float64(now.UnixMilli()),
		"updated_at": float64(now.UnixMilli())}
	if d := cmp.Diff(want, got); code != 200 || d != "" {
		t.Fatalf("verify: %d (-want +got):\n%s", code, d)
	}

	if code, out := call("/v1/api_keys/verify", map[string]any{"secret": "ak_nosuchkey"}); code != 404 || errCode(out) != "resource_not_found" {
		t.Errorf("verify an unknown key: %d %v", code, out)
	}
	if code, _ := call("/v1/api_keys/verify", map[string]any{}); code != 422 {
		t.Errorf("verify without a secret: %d, want 422", code)
	}
	offset.Store(int64(time.Minute))
	if code, _ := call("/v1/api_keys/verify", map[string]any{"secret": secret}); code != 404 {
		t.Errorf("verify an expired key: %d, want 404", code)
	}

	other, otherID := c.IssueAPIKey("org_acme", "acme", nil)
	if code, out := call("/v1/api_keys/"+otherID+"/revoke", map[string]any{"revocation_reason": "leaked"}); code != 200 ||
		out["revoked"] != true || out["revocation_reason"] != "leaked" {
		t.Errorf("revoke: %d %v", code, out)
	}
	if code, _ := call("/v1/api_keys/verify", map[string]any{"secret": other}); code != 404 {
		t.Errorf("verify a revoked key: %d, want 404", code)
	}
	if code, _ := call("/v1/api_keys/ak_nosuchkey/revoke", nil); code != 404 {
		t.Errorf("revoke an unknown key: %d, want 404", code)
	}
}

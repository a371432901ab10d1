package clerk

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		" 2.5 ":                         2500 * time.Millisecond,
		"0":                             0,
		"-3":                            0,
		"NaN":                           0,
		"9999":                          backoffMax,
		"Fri, 01 May 2026 12:00:30 GMT": 30 * time.Second,
		"Fri, 01 May 2026 11:00:00 GMT": 0,
		"soon":                          0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

// A 429 blocks every call for Retry-After, at least the backoff, which
// doubles with each 429 in a row and resets on any other answer.
func TestAPIBudget_RetryAfterAndBackoff(t *testing.T) {
	clk := &testClock{t: testStart}
	b := newAPIBudget(true, 0, clk.Now)
	if err := b.admit(); err != nil {
		t.Fatal(err)
	}
	b.answered(http.StatusTooManyRequests, "3")
	if err := b.admit(); !errors.Is(err, proxy.ErrRateLimited) {
		t.Fatalf("during Retry-After: %v", err)
	}
	if b.stretch() != proxy.MaxRefreshStretch {
		t.Errorf("stretch while blocked: %v", b.stretch())
	}
	clk.Advance(3 * time.Second)
	if err := b.admit(); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
	// 429s in a row, without Retry-After: 2 s (the backoff has doubled), then 4 s.
	for _, wait := range []time.Duration{2 * time.Second, 4 * time.Second} {
		b.answered(http.StatusTooManyRequests, "")
		clk.Advance(wait - time.Millisecond)
		if err := b.room(1); err == nil {
			t.Fatalf("backoff %v: admitted early", wait)
		}
		clk.Advance(time.Millisecond)
		if err := b.room(1); err != nil {
			t.Fatalf("backoff %v: %v", wait, err)
		}
	}
	b.answered(http.StatusOK, "")
	b.answered(http.StatusTooManyRequests, "")
	clk.Advance(time.Second)
	if err := b.room(1); err != nil {
		t.Errorf("after a success the backoff starts again at 1 s: %v", err)
	}
}

// The session checks' share and the stretch follow the calls counted over
// the last 10 s, the previous window weighing less as it slides away.
func TestAPIBudget_ShareAndStretch(t *testing.T) {
	clk := &testClock{t: testStart}
	b := newAPIBudget(false, 0, clk.Now) // 100 per 10 s
	for range 50 {
		if err := b.admit(); err != nil {
			t.Fatal(err)
		}
	}
	if s := b.stretch(); s != 1 {
		t.Errorf("at half the budget: stretch %v, want 1", s)
	}
	for range 35 {
		_ = b.admit()
	}
	if err := b.room(sessionCheckShare); !errors.Is(err, proxy.ErrRateLimited) {
		t.Errorf("85 of 100 in use: session checks admitted: %v", err)
	}
	if s := b.stretch(); s != proxy.MaxRefreshStretch {
		t.Errorf("85 of 100 in use: stretch %v", s)
	}
	clk.Advance(15 * time.Second) // half of the window with the 85 calls is still covered
	if u := b.used(); u < 0.42 || u > 0.43 {
		t.Errorf("used %v, want 0.425", u)
	}
	clk.Advance(10 * time.Second)
	if u, s := b.used(), b.stretch(); u != 0 || s != 1 {
		t.Errorf("20 s on: used %v, stretch %v", u, s)
	}
}

func TestEndpointLabel(t *testing.T) {
	for _, tt := range []struct{ method, path, want string }{
		{"GET", "/v1/jwks", "GET /v1/jwks"},
		{"GET", "/v1/sessions/sess_2abc", "GET /v1/sessions/{id}"},
		{"POST", "/v1/sessions/sess_2abc/revoke", "POST /v1/sessions/{id}/revoke"},
		{"GET", "/v1/users/user_2abc", "GET /v1/users/{id}"},
		{"GET", "/base/v1/clients/handshake_payload", "GET /v1/clients/handshake_payload"},
		{"DELETE", "/v1/users/user_2abc", "other"},
		{"GET", "/v1/organizations/org_1", "other"},
		{"GET", "/", "other"},
	} {
		if got := EndpointLabel(tt.method, tt.path); got != tt.want {
			t.Errorf("EndpointLabel(%s %s) = %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}

// API key verifications stop at their own share of the calls, so that a
// flood of them leaves the session checks theirs, unstretched; and they
// stop, as session checks do, once sessionCheckShare is in use.
func TestAPIBudget_KeyVerificationsHaveTheirOwnShare(t *testing.T) {
	clk := &testClock{t: testStart}
	b := newAPIBudget(false, 0, clk.Now) // 100 per 10 s
	keys := 0
	for range 100 {
		if b.keyRoom() != nil {
			break
		}
		if err := b.admit(); err != nil {
			t.Fatal(err)
		}
		keys++
	}
	if keys != 40 {
		t.Errorf("%d key verifications admitted of 100 a window, want 40 (apiKeyShare)", keys)
	}
	if err := b.keyRoom(); !errors.Is(err, proxy.ErrRateLimited) {
		t.Errorf("past the keys' share: %v, want ErrRateLimited", err)
	}
	if s := b.stretch(); s != 1 {
		t.Errorf("key verifications alone stretch session checks: %v, want 1", s)
	}
	sessions := 0
	for b.room(sessionCheckShare) == nil {
		if err := b.admit(); err != nil {
			t.Fatal(err)
		}
		sessions++
	}
	if sessions != 45 {
		t.Errorf("session checks after a flood of key verifications: %d admitted, want 45 (85 - 40)", sessions)
	}
	// A window later the keys' share is back, and sessions alone can
	// close it: a key verification also waits while 85% is in use.
	clk.Advance(20 * time.Second)
	if err := b.keyRoom(); err != nil {
		t.Errorf("20 s on: %v", err)
	}
	for b.room(sessionCheckShare) == nil {
		_ = b.admit()
	}
	if err := b.keyRoom(); !errors.Is(err, proxy.ErrRateLimited) {
		t.Errorf("85%% in use by session checks: key verification %v, want ErrRateLimited", err)
	}
}

package gateway

import (
	"testing"
	"time"
)

// A wall clock that steps back after a subject spent its burst must not
// lock it out for the step's length: at most one interval (1/5 s here),
// shown as Retry-After 1 (red team, issue 18).
func TestLimitClockStepBack(t *testing.T) {
	for _, step := range []time.Duration{10 * time.Minute, 24 * time.Hour} {
		fx := newLimitFixture(t, 1000, nil)
		u := map[string]string{"X-Test-User": "user_a"}
		for range 2 { // the burst
			fx.do("GET", "/routes/OTHER/x", u).Body.Close()
		}
		fx.now = fx.now.Add(-step)
		resp := fx.do("GET", "/routes/OTHER/x", u)
		resp.Body.Close()
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "1" {
			t.Errorf("step back %v: 429 with Retry-After %q, want at most 1", step, resp.Header.Get("Retry-After"))
		}
		fx.now = fx.now.Add(200 * time.Millisecond)
		resp = fx.do("GET", "/routes/OTHER/x", u)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("step back %v, one interval later: %d (Retry-After %q), want 200", step, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
}

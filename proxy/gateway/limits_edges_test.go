package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
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

// The cost header is the upstream's to set: a client's in any spelling the
// app's framework reads as it (X_Cost, x.cost) never reaches the upstream,
// as the X-Tollgate-* family (red team, issue 18). Raw requests, since Go's
// client would canonicalise the names.
func TestLimitCostHeaderRequestSpellings(t *testing.T) {
	var mu sync.Mutex
	var saw []string
	fx := newLimitFixture(t, 100, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		for k, v := range r.Header {
			if foldedEqual(k, "x-cost") {
				saw = append(saw, k+": "+strings.Join(v, ","))
			}
		}
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	host := strings.TrimPrefix(fx.front.URL, "http://")
	for _, name := range []string{"X-Cost", "x-cost", "X_Cost", "x_cost", "X-COST", "X.Cost", "x_COST"} {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /routes/415VNA/x HTTP/1.1\r\nHost: %s\r\nX-Test-User: user_a\r\n%s: 0\r\nConnection: close\r\n\r\n", host, name)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d, want 200", name, resp.StatusCode)
		}
	}
	if len(saw) > 0 {
		t.Errorf("the upstream received the client's cost header: %q", saw)
	}
}

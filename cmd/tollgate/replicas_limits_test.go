package main

import (
	"bufio"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/postgres"
)

// liveReplicas reads tollgate_replicas_live from a replica's metrics (0:
// no answer).
func liveReplicas(t *testing.T, p *serveChild) int {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "tollgate_replicas_live "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("tollgate_replicas_live %q: %v", v, err)
			}
			return int(n)
		}
	}
	t.Fatalf("replica %s: no tollgate_replicas_live in its metrics", p.addr)
	return 0
}

// waitLive polls replica p's count (a real process) until it is want, and
// returns how long that took, failing after limit.
func waitLive(t *testing.T, p *serveChild, want int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := liveReplicas(t, p)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("replica %s counts %d live replicas after %s, want %d", p.addr, got, limit, want)
		}
		time.Sleep(20 * time.Millisecond) // polling a real process, with a deadline
	}
}

// hammer sends userID's requests to the rate-limited TIDES route of the
// given replicas as fast as 4 connections a replica go, for d, and counts
// what was admitted (200) and refused (429). elapsed runs from the first
// request sent to the last answer read, the span every admission fell in.
func (rs *replicaSet) hammer(t *testing.T, userID string, d time.Duration, replicas ...int) (admitted, limited int64, elapsed time.Duration) {
	t.Helper()
	tok := rs.d.Clerk.MintSessionToken(userID, "sess_"+userID, time.Now(), nil)
	var ok, over, other atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for _, i := range replicas {
		for range 4 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					req, _ := http.NewRequest("GET", rs.url(i)+"/routes/TIDES/", nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					switch resp.StatusCode {
					case http.StatusOK:
						ok.Add(1)
					case http.StatusTooManyRequests:
						over.Add(1)
					default:
						if other.Add(1) == 1 {
							t.Errorf("replica %d: %s got %d", i, userID, resp.StatusCode)
						}
					}
				}
			})
		}
	}
	wg.Wait()
	return ok.Load(), over.Load(), time.Since(start)
}

// TestReplicas_HeartbeatsAndTheRateShare: two `tollgate serve` replicas on
// one PostgreSQL count each other by their heartbeats and each enforces
// half of the API plan's rate (20/s, burst 40): a subject spread over both
// is held to the rate, one on a single replica gets half of it (the
// documented worst case), and once one replica stops cleanly the other
// counts 1 within a heartbeat and enforces the whole rate; a replica
// killed with SIGKILL stops counting after the TTL (README "Limits").
func TestReplicas_HeartbeatsAndTheRateShare(t *testing.T) {
	rs := startReplicas(t, 2)
	a := rs.procs[0]
	for _, p := range rs.procs {
		waitLive(t, p, 2, postgres.HeartbeatInterval+10*time.Second)
	}
	// The admin API lists both rows, live, and says which answers.
	req, _ := http.NewRequest("GET", "http://"+a.admin+"/api/replicas", nil)
	req.Header.Set("Authorization", "Bearer "+rs.d.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var listed struct {
		Live     int                      `json:"live"`
		Replicas []proxy.ReplicaHeartbeat `json:"replicas"`
	}
	err = json.NewDecoder(resp.Body).Decode(&listed)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || listed.Live != 2 || len(listed.Replicas) != 2 ||
		!listed.Replicas[0].Live || !listed.Replicas[1].Live || listed.Replicas[0].Self == listed.Replicas[1].Self {
		t.Errorf("GET /api/replicas: %d %+v %v", resp.StatusCode, listed, err)
	}
	users := []string{"user_spread", "user_pinned", "user_alone"}
	for _, u := range users {
		rs.payPrice(t, u, "price_demo_api_monthly")
	}
	rs.idle(t)
	tides := func(i int, u string) func() int {
		tok := rs.d.Clerk.MintSessionToken(u, "sess_"+u, time.Now(), nil)
		return func() int {
			req, _ := http.NewRequest("GET", rs.url(i)+"/routes/TIDES/", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
	}
	for i := range rs.procs {
		for _, u := range users {
			rs.until(t, i, 10*time.Second, tides(i, u), allowed)
		}
	}
	const rate, burst = 20.0, 40.0 // the demo's API plan
	const run = 3 * time.Second
	check := func(what string, admitted, limited int64, elapsed time.Duration, r, b float64) {
		t.Helper()
		most := r*elapsed.Seconds() + b
		t.Logf("%s: %d admitted, %d refused in %s; the bound %.0f (%.0f/s, burst %.0f)", what, admitted, limited, elapsed.Round(time.Millisecond), most, r, b)
		if float64(admitted) > most {
			t.Errorf("%s: %d admitted in %s, over the bound %.0f", what, admitted, elapsed.Round(time.Millisecond), most)
		}
		// Far more is asked than admitted, so the GCRA admits at its rate;
		// 0.7 leaves room for a loaded machine's stalls.
		if least := 0.7 * r * elapsed.Seconds(); float64(admitted) < least {
			t.Errorf("%s: only %d admitted in %s; at %.0f/s at least %.0f", what, admitted, elapsed.Round(time.Millisecond), r, least)
		}
		if limited == 0 {
			t.Errorf("%s: nothing refused: the run did not reach the rate", what)
		}
	}

	// Spread over both: the rate, and each replica's half of the burst.
	ad, li, el := rs.hammer(t, "user_spread", run, 0, 1)
	check("spread over 2 replicas", ad, li, el, rate, 2*math.Ceil(burst/2))
	// All on one replica: half the rate (the worst case: under-admits).
	ad, li, el = rs.hammer(t, "user_pinned", run, 0)
	check("on 1 of 2 replicas", ad, li, el, rate/2, math.Ceil(burst/2))

	// B stops cleanly: its row is deleted, A counts 1 at its next beat.
	b := rs.procs[1]
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-b.exited
	took := waitLive(t, a, 1, postgres.HeartbeatInterval+10*time.Second)
	t.Logf("B stopped cleanly; A counted 1 replica %s after B exited (heartbeat every %s)", took.Round(time.Millisecond), postgres.HeartbeatInterval)
	// Without the row deleted, B would count until its last beat was a TTL
	// old: at least TTL - interval after it exited.
	if took >= postgres.ReplicaTTL-postgres.HeartbeatInterval {
		t.Errorf("A took %s to count B's clean stop, as long as a stale row takes; want about a heartbeat interval (%s)", took.Round(time.Millisecond), postgres.HeartbeatInterval)
	}
	// Alone, A enforces the whole rate: exact on one replica.
	ad, li, el = rs.hammer(t, "user_alone", run, 0)
	check("alone on 1 replica", ad, li, el, rate, burst)

	// C starts, then is killed with SIGKILL: its row goes stale, and A
	// stops counting it after the TTL (and at most one beat more).
	c := startServe(t, rs.serve)
	waitLive(t, c, 2, 10*time.Second)
	waitLive(t, a, 2, postgres.HeartbeatInterval+10*time.Second)
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.exited
	took = waitLive(t, a, 1, postgres.ReplicaTTL+postgres.HeartbeatInterval+10*time.Second)
	t.Logf("C killed with SIGKILL; A counted 1 replica %s later (TTL %s)", took.Round(time.Millisecond), postgres.ReplicaTTL)
	if took < postgres.ReplicaTTL-postgres.HeartbeatInterval {
		t.Errorf("A dropped the killed replica after %s, before its row could be stale (TTL %s)", took, postgres.ReplicaTTL)
	}
}

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
	"github.com/tollgate/tollgate/proxy/admin"
	"github.com/tollgate/tollgate/proxy/config"
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
	// C beat at most an interval before it was killed (later still on a
	// loaded machine): its row cannot have been stale within an interval.
	if took < postgres.HeartbeatInterval {
		t.Errorf("A dropped the killed replica after %s, before its row could be stale (TTL %s)", took, postgres.ReplicaTTL)
	}
}

// TestReplicas_QuotaWithinTheBound: a subject with a quota of 100 (the
// API plan's, made smaller: 20/s, burst 10) calls two real replicas on one
// PostgreSQL as fast as it can until both refuse. It is admitted at least
// the quota and at most the documented bound over it, Q + (n−1)(2 ×
// quota_flush × rate + burst + n) (README "Limits", "Enforcement and its
// bounds"), and once both have flushed the counters hold exactly what was
// served, on both replicas.
func TestReplicas_QuotaWithinTheBound(t *testing.T) {
	const quota, rate, burst, n = 100, 20.0, 10.0, 2
	cfg := string(replicaConfig())
	limited := strings.Replace(cfg, `"TIDES": { rate: 20/s, burst: 40, quota: 1000/month }`, `"TIDES": { rate: 20/s, burst: 10, quota: 100/month }`, 1)
	if limited == cfg {
		t.Fatal("the demo's API plan changed: update this test's limits")
	}
	rs := startReplicasWith(t, n, []byte(limited))
	for _, p := range rs.procs {
		waitLive(t, p, n, postgres.HeartbeatInterval+10*time.Second)
	}
	const user = "user_quota"
	rs.payPrice(t, user, "price_demo_api_monthly")
	rs.idle(t)
	tok := rs.d.Clerk.MintSessionToken(user, "sess_"+user, time.Now(), nil)
	call := func(i int) int {
		req, _ := http.NewRequest("GET", rs.url(i)+"/routes/TIDES/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Each replica has the subscription (one call each, counted).
	served := int64(0)
	for i := range rs.procs {
		rs.until(t, i, 10*time.Second, func() int { return call(i) }, allowed)
		served++
	}
	// 100 at 20/s after a burst of 10 take about 4.5 s: 8 s of asking
	// reaches the quota with room for a loaded machine.
	ad, li, el := rs.hammer(t, user, 8*time.Second, 0, 1)
	served += ad
	flush := time.Duration(config.DefaultQuotaFlush)
	bound := quota + (n-1)*(2*flush.Seconds()*rate+burst+n)
	t.Logf("quota %d over %d replicas: %d served (%d refused) in %s; the bound %.0f (quota_flush %s, %.0f/s, burst %.0f)",
		quota, n, served, li, el.Round(time.Millisecond), bound, flush, rate, burst)
	if served < quota {
		t.Errorf("%d served, under the quota of %d", served, quota)
	}
	if float64(served) > bound {
		t.Errorf("%d served, over the bound %.0f", served, bound)
	}
	// The counters converge to exactly what was served, read through each
	// replica's admin API.
	for i, p := range rs.procs {
		start := time.Now()
		for {
			used := apiUsage(t, rs, p, user)
			if used == served {
				t.Logf("replica %c's counter: %d, %s after the last answer", 'A'+i, used, time.Since(start).Round(time.Millisecond))
				break
			}
			if used > served || time.Since(start) > 10*time.Second {
				t.Fatalf("replica %c's counter: %d, %d served", 'A'+i, used, served)
			}
			time.Sleep(50 * time.Millisecond) // real processes flushing, with a deadline
		}
		if code := call(i); code != http.StatusTooManyRequests {
			t.Errorf("replica %c after the quota: %d, want 429", 'A'+i, code)
		}
	}
}

// apiUsage reads the used units of the API plan's TIDES quota from
// replica p's admin API (GET /api/users/{id}/usage).
func apiUsage(t *testing.T, rs *replicaSet, p *serveChild, user string) int64 {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+p.admin+"/api/users/"+user+"/usage", nil)
	req.Header.Set("Authorization", "Bearer "+rs.d.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var uses []admin.QuotaUse
	if err := json.NewDecoder(resp.Body).Decode(&uses); err != nil || resp.StatusCode != 200 {
		t.Fatalf("usage of %s: %d %v", user, resp.StatusCode, err)
	}
	for _, u := range uses {
		if u.Plan == "api" && u.Route == "TIDES" {
			return u.Used
		}
	}
	return 0
}

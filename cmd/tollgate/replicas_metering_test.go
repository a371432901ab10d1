package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy/postgres"
)

// TestReplicas_MeteringAcrossALeaderKill (README "Usage billing",
// "Several replicas"): three replicas on PostgreSQL bill the demo's
// pay-as-you-go plan while a client calls the metered route on each in
// turn. Only the leader sends meter events. The leader is killed with
// SIGKILL during that traffic (by its PID), and another replica takes the
// lead and drains the outbox, the dead replica's rows and windows
// included. The usage Stripe records lies between the calls served less
// the dead replica's last flush interval and the calls served (plus one in
// flight); every identifier is distinct, the sandbox counted each, and
// what it holds was counted by more than one replica.
func TestReplicas_MeteringAcrossALeaderKill(t *testing.T) {
	rs := startReplicas(t, 3)
	cus, err := rs.api.Customers.New(&stripego.CustomerParams{Email: stripego.String("ada@example.com"),
		Metadata: map[string]string{"clerk_user_id": "user_ada"}})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := rs.api.CheckoutSessions.New(&stripego.CheckoutSessionParams{Mode: stripego.String("subscription"), Customer: stripego.String(cus.ID),
		SuccessURL: stripego.String("http://127.0.0.1/"), CancelURL: stripego.String("http://127.0.0.1/"),
		LineItems: []*stripego.CheckoutSessionLineItemParams{{Price: stripego.String("price_demo_tides_usage")}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := noRedirects(nil).PostForm(cs.URL, testCard); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay: %v %v", resp, err)
	}
	rs.idle(t)

	client := &http.Client{Timeout: 5 * time.Second}
	call := func(i int) int {
		tok := rs.d.Clerk.MintSessionToken("user_ada", "sess_meter", time.Now(), nil)
		req, _ := http.NewRequest("GET", rs.url(i)+"/routes/TIDES/", nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			return 0 // the replica is gone: not served
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range rs.procs {
		rs.until(t, i, 30*time.Second, func() int { return call(i) }, allowed)
	}
	// The calls above were served too: counted from the start.
	var (
		mu       sync.Mutex
		served   = map[int]*servedLog{}
		warmedUp = len(rs.procs)
	)
	for i := range rs.procs {
		served[i] = &servedLog{}
	}
	dead := map[int]bool{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			i := n % len(rs.procs)
			mu.Lock()
			skip := dead[i]
			mu.Unlock()
			if skip {
				continue
			}
			if code := call(i); code == http.StatusOK {
				served[i].add(time.Now())
			} else if code != 0 && code != http.StatusBadGateway {
				t.Errorf("a metered call to replica %c: %d", 'A'+i, code)
			}
		}
	}()

	leader := -1
	deadline := time.Now().Add(30 * time.Second)
	for leader < 0 || len(rs.d.Stripe.MeterEvents()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: leader %d, %d meter events", leader, len(rs.d.Stripe.MeterEvents()))
		}
		leader = rs.leaderOf(nil)
		time.Sleep(50 * time.Millisecond) // reading real processes' logs and the sandbox they call
	}
	// The leader has sent rows: kill it during the traffic.
	p := rs.procs[leader]
	mu.Lock()
	dead[leader] = true
	mu.Unlock()
	killed := time.Now()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	next := -1
	for next < 0 {
		if time.Since(killed) > postgres.LeaseTime+10*time.Second {
			t.Fatal("no replica took the lead after the leader's kill -9")
		}
		next = rs.leaderOf(map[int]bool{leader: true})
		time.Sleep(20 * time.Millisecond) // reading real processes' logs
	}
	close(stop)
	<-done

	// The dead replica may lose what it counted since its last flush: one
	// quota_flush (1 s), plus the commit's own time.
	lost := served[leader].before(killed) - served[leader].before(killed.Add(-time.Second-100*time.Millisecond))
	total := warmedUp
	for _, s := range served {
		total += s.before(time.Now().Add(time.Hour))
	}
	if total < 30 {
		t.Fatalf("only %d calls served", total)
	}
	// Every live replica's account page shows the usage Stripe holds: the
	// rows the outbox holds, every replica's (README "Usage billing",
	// "Seeing it"), once the last window has closed.
	usageRE := regexp.MustCompile(`Usage this period: <strong>(\d+)</strong> tide_api_calls`)
	pages := func() (shown []string) {
		for i := range rs.procs {
			if i == leader {
				continue
			}
			tok := rs.d.Clerk.MintSessionToken("user_ada", "sess_meter", time.Now(), nil)
			acct := readBody(t, get(t, client, rs.url(i)+"/.tollgate/account", map[string]string{"Authorization": "Bearer " + tok, "Accept": "text/html"}))
			if m := usageRE.FindStringSubmatch(acct); m != nil {
				shown = append(shown, m[1])
			} else {
				shown = append(shown, "none")
			}
		}
		return shown
	}
	var billed int64
	var pending int
	var shown []string
	deadline = time.Now().Add(60 * time.Second)
	for {
		billed = 0
		for _, ev := range rs.d.Stripe.MeterEvents() {
			if ev.Dropped == "" {
				billed += ev.Value
			}
		}
		st, err := rs.store.OutboxStats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		pending = st.Pending
		if billed >= int64(total-lost) && pending == 0 {
			// Drained; but a window still open holds counts no row has
			// yet: the pages show more than Stripe until it closes.
			shown = pages()
			if !slices.ContainsFunc(shown, func(v string) bool { return v != strconv.FormatInt(billed, 10) }) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s: Stripe recorded %d of %d served (%d may be lost), %d rows pending; the live replicas' account pages show %v", billed, total, lost, pending, shown)
		}
		time.Sleep(200 * time.Millisecond) // polls real processes through the database and the sandbox
	}
	if billed > int64(total+1) {
		t.Errorf("Stripe recorded %d; %d were served (+1 in flight at the kill): billed twice", billed, total)
	}
	ids := map[string]bool{}
	writers := map[string]bool{}
	idRE := regexp.MustCompile(`^user_ada\.tide_api_calls\.\d+\.w([0-9a-f]{8})\.\d+$`)
	for _, ev := range rs.d.Stripe.MeterEvents() {
		if ev.Dropped != "" {
			t.Errorf("Stripe dropped event %s: %s", ev.Identifier, ev.Dropped)
		}
		if ids[ev.Identifier] {
			t.Errorf("identifier %s accepted twice", ev.Identifier)
		}
		ids[ev.Identifier] = true
		if m := idRE.FindStringSubmatch(ev.Identifier); m == nil {
			t.Errorf("identifier %q: want subject.meter.window.writer.sequence", ev.Identifier)
		} else {
			writers[m[1]] = true
		}
	}
	// What Stripe holds was counted by more than one replica: each served
	// its share of the calls and saved its own counts. (Which replica
	// bills a window, and so whose writer its identifier carries, is the
	// one whose flush comes first after the window ends: one replica may
	// bill them all.)
	conn, err := pgx.Connect(context.Background(), rs.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var counters int
	if err := conn.QueryRow(context.Background(), `SELECT count(DISTINCT writer) FROM meter_counts WHERE event_name = 'tide_api_calls'`).Scan(&counters); err != nil {
		t.Fatal(err)
	}
	if counters < 2 {
		t.Errorf("%d replicas' meter counts in the store; want the replicas' (at least 2)", counters)
	}
	// Only the leaders sent: the replica that never led sent nothing.
	sentRE := regexp.MustCompile(`(?m)^tollgate_meter_events_total\{result="(accepted|duplicate|confirmed)"\} (\d+)`)
	for i, p := range rs.procs {
		if i == leader || i == next {
			continue
		}
		resp, err := client.Get("http://" + p.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range sentRE.FindAllStringSubmatch(readBody(t, resp), -1) {
			if n, _ := strconv.Atoi(m[2]); n > 0 {
				t.Errorf("replica %c never led but sent meter events: %s", 'A'+i, m[0])
			}
		}
	}
	t.Logf("replica %c led and was killed; %c took over %s later; served %d calls counted by %d replicas, Stripe recorded %d in %d meter events billed by %d (%d may be lost)",
		'A'+leader, 'A'+next, time.Since(killed).Round(time.Millisecond), total, counters, billed, len(ids), len(writers), lost)
}

package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
	stripeclient "github.com/stripe/stripe-go/v76/client"
)

// servedLog records when each metered call got its 200, as the client saw it.
type servedLog struct {
	mu sync.Mutex
	at []time.Time
}

func (s *servedLog) add(t time.Time) { s.mu.Lock(); s.at = append(s.at, t); s.mu.Unlock() }

// before counts the calls served before t.
func (s *servedLog) before(t time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.at {
		if a.Before(t) {
			n++
		}
	}
	return n
}

// TestServe_KillNineMetering (README "Usage billing", "Crashes and
// duplicates"): a real `tollgate serve` bills the demo's pay-as-you-go plan
// while a client calls the metered route; it is killed with SIGKILL (by its
// PID) during that traffic, three times: once with the default 1 s flush,
// twice with quota_flush at 5 ms, so that the kill most likely lands inside
// a flush's transaction. Each time it starts again on the same store.
// When the traffic is over and the windows have closed, the usage the
// sandbox Stripe recorded lies between the calls served before each kill
// less those of the last flush bound before it, and the calls served (plus
// one in flight at each kill); every meter event's identifier is distinct,
// the sandbox refused none as a duplicate it had counted, and the
// identifiers carry one writer per process that billed.
func TestServe_KillNineMetering(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs for about 30 s")
	}
	d, _ := mustRunDemo(t)
	child := newDemoChild(t, d)
	writeConfig := func(flush string) {
		child.writeConfig(t, []byte(strings.Replace(string(demoConfig), "meter_window: 5s\n", "meter_window: 5s\nquota_flush: "+flush+"\n", 1)))
	}
	serveDemo := child.serve
	writeConfig("1s")
	proc := startServe(t, serveDemo)
	base := "http://" + proc.addr
	d.Stripe.SetWebhook(base+"/.tollgate/webhooks/stripe", d.webhookSecret)

	// Ada subscribes to the pay-as-you-go plan: its only price is metered.
	sc := stripeclient.New(d.Stripe.SecretKey(), stripego.NewBackendsWithConfig(&stripego.BackendConfig{URL: stripego.String(d.StripeURL)}))
	cus, err := sc.Customers.New(&stripego.CustomerParams{Email: stripego.String("ada@example.com"),
		Metadata: map[string]string{"clerk_user_id": "user_ada"}})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := sc.CheckoutSessions.New(&stripego.CheckoutSessionParams{Mode: stripego.String("subscription"), Customer: stripego.String(cus.ID),
		SuccessURL: stripego.String(base + "/"), CancelURL: stripego.String(base + "/"),
		LineItems: []*stripego.CheckoutSessionLineItemParams{{Price: stripego.String("price_demo_tides_usage")}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := noRedirects(nil).PostForm(cs.URL, testCard); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := d.Stripe.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 5 * time.Second}
	served := &servedLog{}
	// traffic calls the metered route one call at a time until stop, each
	// costing 1, and records every 200.
	traffic := func(base string, stop <-chan struct{}) (done chan struct{}) {
		done = make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok := d.Clerk.MintSessionToken("user_ada", "sess_meter", time.Now(), nil)
				req, _ := http.NewRequest("GET", base+"/routes/TIDES/", nil)
				req.Header.Set("Accept", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				if err != nil {
					continue // the gateway is gone: not served
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					served.add(time.Now())
				} else if resp.StatusCode != http.StatusBadGateway {
					t.Errorf("a metered call: %d", resp.StatusCode)
				}
			}
		}()
		return done
	}
	// Each kill: traffic for a while, SIGKILL to the child's PID while the
	// client is still calling, then a restart on the same store. lower
	// counts the calls every kill may lose at most (those served within
	// its flush bound before it) and upper the calls in flight.
	type kill struct {
		flush time.Duration
		after time.Duration
	}
	lost, inflight := 0, 0
	processes := 1
	for i, k := range []kill{{time.Second, 2300 * time.Millisecond}, {5 * time.Millisecond, 1700 * time.Millisecond}, {5 * time.Millisecond, 1900 * time.Millisecond}} {
		if i > 0 {
			writeConfig(k.flush.String())
			proc = startServe(t, serveDemo)
			processes++
			base = "http://" + proc.addr
			d.Stripe.SetWebhook(base+"/.tollgate/webhooks/stripe", d.webhookSecret)
		}
		stop := make(chan struct{})
		done := traffic(base, stop)
		time.Sleep(k.after) // lets real traffic reach a real process
		if err := proc.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		<-proc.exited
		close(stop)
		<-done
		// The documented bound: one flush interval of calls, plus the
		// commit's own time (50 ms here, on a shared machine).
		lost += served.before(killed) - served.before(killed.Add(-k.flush-50*time.Millisecond))
		inflight++
	}

	// A last process, no kill: the windows close, the sender drains.
	writeConfig("1s")
	proc = startServe(t, serveDemo)
	processes++
	base = "http://" + proc.addr
	d.Stripe.SetWebhook(base+"/.tollgate/webhooks/stripe", d.webhookSecret)
	total := served.before(time.Now().Add(time.Hour))
	if total < 50 {
		t.Fatalf("only %d calls served", total)
	}
	pendingRE := regexp.MustCompile(`(?m)^tollgate_usage_outbox\{what="pending"\} (\d+)`)
	deadline := time.Now().Add(45 * time.Second)
	var billed int64
	for {
		billed = 0
		for _, ev := range d.Stripe.MeterEvents() {
			if ev.Dropped == "" {
				billed += ev.Value
			}
		}
		resp, err := client.Get("http://" + child.adminAddr + "/metrics")
		pending := -1
		if err == nil {
			if m := pendingRE.FindStringSubmatch(readBody(t, resp)); m != nil {
				pending, _ = strconv.Atoi(m[1])
			}
		}
		if billed >= int64(total-lost) && pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 45 s: Stripe recorded %d of %d served (%d may be lost), %d rows pending", billed, total, lost, pending)
		}
		time.Sleep(200 * time.Millisecond) // polls a real external process and the sandbox it calls
	}
	if billed > int64(total+inflight) {
		t.Errorf("Stripe recorded %d; %d were served (+%d in flight at the kills): billed twice", billed, total, inflight)
	}
	ids := map[string]bool{}
	writers := map[string]bool{}
	idRE := regexp.MustCompile(`^user_ada\.tide_api_calls\.\d+\.w([0-9a-f]{8})\.\d+$`)
	for _, ev := range d.Stripe.MeterEvents() {
		if ev.Dropped != "" {
			t.Errorf("Stripe dropped event %s: %s", ev.Identifier, ev.Dropped)
		}
		if ids[ev.Identifier] {
			t.Errorf("identifier %s sent twice and accepted twice", ev.Identifier)
		}
		ids[ev.Identifier] = true
		m := idRE.FindStringSubmatch(ev.Identifier)
		if m == nil {
			t.Errorf("identifier %q: want subject.meter.window.writer.sequence", ev.Identifier)
			continue
		}
		writers[m[1]] = true
		if ev.Customer != cus.ID {
			t.Errorf("event %s billed to %s; want %s", ev.Identifier, ev.Customer, cus.ID)
		}
	}
	if len(writers) < 2 || len(writers) > processes {
		t.Errorf("%d writers in the identifiers; want from 2 to %d (one a process)", len(writers), processes)
	}
	t.Logf("served %d calls, Stripe recorded %d in %d meter events from %d writers; the kills' flush bounds allowed %d lost, %d in flight",
		total, billed, len(ids), len(writers), lost, inflight)
}

package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hungFixture is a gateway whose upstream answers /public/fast at once and
// holds /public/hang until the gateway gives up on it, served the way
// `tollgate serve` serves it (State.ConnContext and ConnState) unless
// bare, with the upstream's wait swept by hand.
type hungFixture struct {
	*gateFixture
	front   *httptest.Server
	arrived chan string // each request the upstream got, by path
	ended   chan struct{}
	hangs   atomic.Int64
}

func newHungFixture(t *testing.T, bare bool, config string) *hungFixture {
	hf := &hungFixture{arrived: make(chan string, 16), ended: make(chan struct{})}
	hf.gateFixture = newGateFixtureWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/noread") {
			// Takes none of the body: the gateway's writes stall.
			hf.arrived <- r.URL.Path
			// The server would notice the gateway's connection closed
			// only once it read the body: hold until the test ends.
			<-hf.ended
			return
		}
		if r.Method == "POST" {
			// The body's first bytes have come: the gateway is sending it.
			first := make([]byte, 1)
			if _, err := io.ReadFull(r.Body, first); err == nil {
				hf.arrived <- "body begun"
			}
		}
		io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.URL.Path, "/hang") {
			hf.hangs.Add(1)
		}
		hf.arrived <- r.URL.Path
		if strings.HasSuffix(r.URL.Path, "/hang") {
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "fast")
	}), func(cfg string) string { return cfg + config }, nil)
	hf.state.waits.sweepEvery = func() {}
	hf.front = httptest.NewUnstartedServer(hf.srv)
	if !bare {
		hf.front.Config.ConnContext, hf.front.Config.ConnState = hf.state.ConnContext, hf.state.ConnState
	}
	hf.front.Start()
	t.Cleanup(hf.front.Close)
	t.Cleanup(func() { close(hf.ended) }) // first: the servers close once their handlers have returned
	return hf
}

// waiting is how many waits are begun and not yet over, and how many are
// still sending their request's body.
func (hf *hungFixture) waiting() (begun, sending int) {
	u := hf.state.waits
	u.mu.Lock()
	defer u.mu.Unlock()
	for w := range u.all {
		switch s := w.state.Load(); {
		case s > 0:
			begun++
		case s == waitSending:
			sending++
		}
	}
	return begun, sending
}

// A hung upstream gets the visitor a 504 once the wait is past
// UpstreamWait, never before; the request is not sent again (a GET on a
// reused upstream connection is what the Transport retries after a failed
// read), and the visitor's connection closes after the 504, since its
// context is spent.
func TestUpstreamWait_HungUpstreamGets504(t *testing.T) {
	for _, bare := range []bool{false, true} {
		name := map[bool]string{false: "served with the hooks", true: "a server without them"}[bare]
		t.Run(name, func(t *testing.T) {
			hf := newHungFixture(t, bare, "")
			client := hf.front.Client()
			// A first request leaves an upstream connection to reuse.
			resp, err := client.Get(hf.front.URL + "/public/fast")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			<-hf.arrived

			type result struct {
				resp *http.Response
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := client.Get(hf.front.URL + "/public/hang")
				done <- result{resp, err}
			}()
			<-hf.arrived
			start := time.Now()
			hf.state.waits.sweep(start.Add(UpstreamWait - time.Second))
			if n, _ := hf.waiting(); n != 1 {
				t.Fatalf("%d waits after a sweep within the limit, want the one still waiting", n)
			}
			hf.state.waits.sweep(start.Add(UpstreamWait + 3*time.Second))
			res := <-done
			if res.err != nil {
				t.Fatal(res.err)
			}
			io.Copy(io.Discard, res.resp.Body)
			res.resp.Body.Close()
			if res.resp.StatusCode != http.StatusGatewayTimeout {
				t.Errorf("status %d, want 504", res.resp.StatusCode)
			}
			if !bare && !res.resp.Close {
				t.Error("the connection whose context was spent stays open")
			}
			if n := hf.hangs.Load(); n != 1 {
				t.Errorf("the upstream got the hung request %d times, want once", n)
			}
			// The next request, on a new connection, is served.
			resp, err = client.Get(hf.front.URL + "/public/fast")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("the request after: status %d", resp.StatusCode)
			}
		})
	}
}

// A request body is sent before the wait begins, as with the Transport's
// ResponseHeaderTimeout: a slow upload is not a hung upstream, with
// timeouts.body_idle or without it (red team: without it, an upload longer
// than the limit was cut).
func TestUpstreamWait_BeginsOnceTheBodyIsSent(t *testing.T) {
	for name, config := range map[string]string{"body_idle 60s": "", "body_idle 0": "timeouts: { body_idle: 0 }\n"} {
		t.Run(name, func(t *testing.T) {
			hf := newHungFixture(t, false, config)
			pr, pw := io.Pipe()
			req, err := http.NewRequest("POST", hf.front.URL+"/public/hang", pr)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan *http.Response, 1)
			go func() {
				resp, err := hf.front.Client().Do(req)
				if err != nil {
					t.Error(err)
					close(done)
					return
				}
				done <- resp
			}()
			if _, err := pw.Write([]byte("part of it")); err != nil {
				t.Fatal(err)
			}
			if got := <-hf.arrived; got != "body begun" {
				t.Fatalf("the upstream got %q", got)
			}
			// The gateway is sending the body, waiting on the client for
			// the rest: well past the limit, nothing is cut.
			hf.untilReadingTheClient()
			late := time.Now().Add(10 * UpstreamWait)
			hf.state.waits.sweep(late)
			if begun, sending := hf.waiting(); begun != 0 || sending != 1 {
				t.Errorf("%d waits begun and %d sending before the body was sent whole, want 0 and 1", begun, sending)
			}
			pw.Close()
			<-hf.arrived // the upstream read the body to its end: the wait has begun
			if begun, _ := hf.waiting(); begun != 1 {
				t.Fatalf("%d waits once the body was sent, want 1", begun)
			}
			hf.state.waits.sweep(late.Add(UpstreamWait + 3*time.Second))
			resp := <-done
			if resp == nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusGatewayTimeout {
				t.Errorf("status %d, want 504", resp.StatusCode)
			}
		})
	}
}

// untilReadingTheClient returns once the one body being sent is being read
// from the client (the Transport asked for more and waits for it).
func (hf *hungFixture) untilReadingTheClient() {
	for {
		u := hf.state.waits
		u.mu.Lock()
		reading := false
		for w := range u.all {
			if b := w.body.Load(); b != nil && b.lastRead.Load() == 0 {
				reading = true
			}
		}
		u.mu.Unlock()
		if reading {
			return
		}
		runtime.Gosched()
	}
}

// An app that takes none of the request body stalls the gateway's writes
// to it, while no read of the client's connection is under way: that is
// cut as an app that does not answer (red team: neither this nor the
// Transport's ResponseHeaderTimeout ever ended it).
func TestUpstreamWait_AppTakingNoBodyIsCut(t *testing.T) {
	hf := newHungFixture(t, false, "")
	// More than the sockets between hold, and not replayable: the client
	// does not send it again when its connection closes mid-body.
	body := io.NopCloser(strings.NewReader(strings.Repeat("x", 16<<20)))
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := hf.front.Client().Post(hf.front.URL+"/public/noread", "text/plain", body)
		done <- result{resp, err}
	}()
	<-hf.arrived
	// Sweep, a limit apart, until the gateway gives up on the app (a sweep
	// that finds the Transport reading from the client cuts nothing).
	at := time.Now().Add(UpstreamBodyStall - time.Second)
	hf.state.waits.sweep(at)
	if _, sending := hf.waiting(); sending != 1 {
		t.Fatalf("%d bodies being sent after a sweep within UpstreamBodyStall, want the one, not cut", sending)
	}
	giveUp := time.After(30 * time.Second) // a bound on failing, not a wait
	for {
		at = at.Add(UpstreamBodyStall + 3*time.Second)
		hf.state.waits.sweep(at)
		select {
		case <-giveUp:
			t.Fatal("the app that takes no body was not cut")
		case res := <-done:
			// The client, still sending, sees the 504 or its connection
			// closed.
			if res.err == nil {
				res.resp.Body.Close()
				if res.resp.StatusCode != http.StatusGatewayTimeout {
					t.Errorf("status %d, want 504", res.resp.StatusCode)
				}
			}
			if begun, sending := hf.waiting(); begun+sending != 0 {
				t.Errorf("%d waits begun and %d sending after the cut", begun, sending)
			}
			return
		default:
			runtime.Gosched()
		}
	}
}

// An answer that began is never cut, and a connection's wait is watched
// only while the connection is open; the sweeper stops when nothing is
// left to watch and starts again with the next connection.
func TestUpstreamWait_Bookkeeping(t *testing.T) {
	var mu sync.Mutex
	started := 0
	u := newUpstreamWaits(UpstreamWait, UpstreamBodyStall, time.Now)
	u.sweepEvery = func() { mu.Lock(); started++; mu.Unlock() }
	st := &State{waits: u}
	conn, peer := net.Pipe()
	defer conn.Close()
	defer peer.Close()

	ctx := st.ConnContext(context.Background(), conn)
	w := waitFrom(ctx)
	w.begin(waitIdle, u)
	if w.end() {
		t.Error("a wait ended before any sweep reports it was cut")
	}
	if u.sweep(time.Now().Add(10 * UpstreamWait)); ctx.Err() != nil {
		t.Errorf("a wait that ended was cut: %v", context.Cause(ctx))
	}
	// A body read whole after the answer came (the upstream answered
	// early) does not begin a wait.
	w.begin(waitSending, u)
	if s := w.state.Load(); s != waitIdle {
		t.Errorf("state %d after a late body, want idle", s)
	}

	st.ConnState(conn, http.StateActive)
	if !u.sweep(time.Now()) {
		t.Error("the sweeper stops while a connection is open")
	}
	st.ConnState(conn, http.StateClosed)
	if u.sweep(time.Now()) {
		t.Error("the sweeper goes on with nothing to watch")
	}
	st.ConnContext(context.Background(), peer)
	mu.Lock()
	defer mu.Unlock()
	if started != 2 {
		t.Errorf("the sweeper started %d times, want twice (the first connection, then the next after it stopped)", started)
	}
}

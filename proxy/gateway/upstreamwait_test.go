package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
	hangs   atomic.Int64
}

func newHungFixture(t *testing.T, bare bool) *hungFixture {
	hf := &hungFixture{arrived: make(chan string, 16)}
	hf.gateFixture = newGateFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			// The body's first bytes have come: the gateway is sending it.
			first := make([]byte, 1)
			if _, err := io.ReadFull(r.Body, first); err == nil {
				hf.arrived <- "body begun"
			}
		}
		io.Copy(io.Discard, r.Body)
		hf.arrived <- r.URL.Path
		if strings.HasSuffix(r.URL.Path, "/hang") {
			hf.hangs.Add(1)
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "fast")
	}))
	hf.state.waits.sweepEvery = func() {}
	hf.front = httptest.NewUnstartedServer(hf.srv)
	if !bare {
		hf.front.Config.ConnContext, hf.front.Config.ConnState = hf.state.ConnContext, hf.state.ConnState
	}
	hf.front.Start()
	t.Cleanup(hf.front.Close)
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
			hf := newHungFixture(t, bare)
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
// ResponseHeaderTimeout: a slow upload is not a hung upstream.
func TestUpstreamWait_BeginsOnceTheBodyIsSent(t *testing.T) {
	hf := newHungFixture(t, false)
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
	// The gateway is sending the body: well past the limit, nothing is
	// cut while the body is still coming.
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
}

// An answer that began is never cut, and a connection's wait is watched
// only while the connection is open; the sweeper stops when nothing is
// left to watch and starts again with the next connection.
func TestUpstreamWait_Bookkeeping(t *testing.T) {
	var mu sync.Mutex
	started := 0
	u := newUpstreamWaits(UpstreamWait, time.Now)
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

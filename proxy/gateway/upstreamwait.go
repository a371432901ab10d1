package gateway

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// UpstreamWait is how long the upstream may take to begin its answer once
// the request has been sent to it, body and all (docs/SECURITY.md, "Server
// limits"): then the visitor gets a 504 and the connection closes.
const UpstreamWait = 60 * time.Second

// UpstreamBodyStall is how long tollgate may be unable to hand the upstream
// any more of a request body it is sending (its writes blocked: the app
// takes none of it) before the request is cut as one the app does not
// answer (docs/SECURITY.md, "Server limits"). It is long because a blocked
// write wakes only once much of the sockets' buffers (megabytes on
// loopback) has drained: an app that reads a large body slowly but
// steadily, at a few KB/s, makes no progress visible here for a minute or
// more (red team), and must not be cut. What this bounds is the goroutines,
// sockets and app worker an app that never reads holds.
const UpstreamBodyStall = 10 * time.Minute

// errUpstreamWait is the error of a request whose upstream began no answer
// within UpstreamWait. It is a net.Error that is a timeout, as the
// Transport's own ResponseHeaderTimeout error was: the ReverseProxy's
// ErrorHandler answers 504, and a limited request that reached the upstream
// costs 1 (forward.settleLost).
var errUpstreamWait error = upstreamWaitError{}

type upstreamWaitError struct{}

func (upstreamWaitError) Error() string {
	return "upstream: no answer begun within " + UpstreamWait.String()
}
func (upstreamWaitError) Timeout() bool   { return true }
func (upstreamWaitError) Temporary() bool { return true }

// Why not the Transport's ResponseHeaderTimeout: it makes, arms and stops a
// timer for every request (three allocations and a select case more in the
// Transport's round trip: ~2 µs of a request's CPU under load;
// docs/PERFORMANCE.md, "The upstream's wait without a timer per request"). Here
// a request stores a number when its wait begins and another when it ends;
// one goroutine, once a second, cuts the waits that are too old by
// cancelling their context, which the Transport honours at once without
// sending the request again (a read deadline on the upstream connection
// would not: a read that fails on a reused connection is retried, for a
// GET, on another).
//
// An HTTP/1 connection carries one request at a time, so each client
// connection gets one wait and one cancellable context for its life
// (State.ConnContext): nothing is made per request. Cutting a wait cancels
// that connection's context, so its answer (the 504) closes it.

// wait is one client connection's wait on the upstream.
type wait struct {
	// state is waitIdle, waitSending, waitCut, or the coarse second the
	// wait began, plus one (upstreamWaits.clock).
	state atomic.Int64
	// body is the body being sent (waitSending): an app that takes none
	// of it for UpstreamBodyStall is cut as one that does not answer.
	body   atomic.Pointer[idleBody]
	cancel context.CancelCauseFunc
}

const (
	waitIdle    = 0
	waitSending = -1 // in the Transport, the request's body not yet read whole
	waitCut     = -2 // cut by the sweeper: the context is cancelled
)

// begin starts the wait from the request in the Transport (from
// waitSending, when its body has been read whole; from waitIdle without a
// body).
func (w *wait) begin(from int64, u *upstreamWaits) {
	w.state.CompareAndSwap(from, u.clock.Load()+1)
}

// end stops the wait when the Transport returns, and reports whether the
// sweeper had cut it first.
func (w *wait) end() (cut bool) {
	w.body.Store(nil)
	return w.state.Swap(waitIdle) == waitCut
}

// expired reports whether the wait, in state s at the coarse second c, has
// gone on too long: the answer not begun for limit seconds since the
// request was sent, or, while the body is being sent, no read of it asked
// for in stall seconds since the last one returned.
func (w *wait) expired(s, c, limit, stall int64) bool {
	since := s
	if s == waitSending {
		b := w.body.Load()
		if b == nil {
			return false
		}
		since, limit = b.lastRead.Load(), stall
	}
	return since > 0 && c-(since-1) > limit
}

type waitKey struct{}

func waitFrom(ctx context.Context) *wait {
	w, _ := ctx.Value(waitKey{}).(*wait)
	return w
}

// upstreamWaits watches the waits of every client connection.
type upstreamWaits struct {
	limit time.Duration // UpstreamWait
	stall time.Duration // UpstreamBodyStall
	now   func() time.Time
	epoch time.Time
	// clock is whole seconds since epoch at the last sweep: a wait begins
	// at it, up to a second late, without reading the clock.
	clock atomic.Int64

	mu       sync.Mutex
	byConn   map[net.Conn]*wait
	all      map[*wait]struct{}
	sweeping bool // a sweeper goroutine runs
	// sweepEvery starts the sweeper; tests replace it to sweep by hand.
	sweepEvery func()
}

func newUpstreamWaits(limit, stall time.Duration, now func() time.Time) *upstreamWaits {
	u := &upstreamWaits{limit: limit, stall: stall, now: now, epoch: now(), byConn: map[net.Conn]*wait{}, all: map[*wait]struct{}{}}
	u.sweepEvery = func() { go u.sweepEverySecond() }
	return u
}

func (u *upstreamWaits) seconds(t time.Time) int64 { return int64(t.Sub(u.epoch) / time.Second) }

// add watches w (the wait of client connection c, or of one request when
// c is nil), starting the sweeper if none runs.
func (u *upstreamWaits) add(c net.Conn, w *wait) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if c != nil {
		u.byConn[c] = w
	}
	u.all[w] = struct{}{}
	if !u.sweeping {
		u.sweeping = true
		u.clock.Store(u.seconds(u.now()))
		u.sweepEvery()
	}
}

func (u *upstreamWaits) remove(w *wait) {
	u.mu.Lock()
	delete(u.all, w)
	u.mu.Unlock()
}

func (u *upstreamWaits) removeConn(c net.Conn) {
	u.mu.Lock()
	if w, ok := u.byConn[c]; ok {
		delete(u.byConn, c)
		delete(u.all, w)
	}
	u.mu.Unlock()
}

func (u *upstreamWaits) sweepEverySecond() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for range t.C {
		if !u.sweep(u.now()) {
			return
		}
	}
}

// sweep cuts every wait that has gone on too long at now (wait.expired),
// and reports whether any wait is left to watch (when none is, the sweeper
// stops, and the next add starts one). A wait's beginning is read from a
// clock up to a second behind, and sweeps come a second apart: a wait is
// cut between its limit and three seconds after it.
func (u *upstreamWaits) sweep(now time.Time) bool {
	c := u.seconds(now)
	u.clock.Store(c)
	limit, stall := int64(u.limit/time.Second)+1, int64(u.stall/time.Second)+1
	var cut []*wait
	u.mu.Lock()
	for w := range u.all {
		if s := w.state.Load(); w.expired(s, c, limit, stall) && w.state.CompareAndSwap(s, waitCut) {
			cut = append(cut, w)
		}
	}
	left := len(u.all) > 0
	if !left {
		u.sweeping = false
	}
	u.mu.Unlock()
	for _, w := range cut {
		w.cancel(errUpstreamWait)
	}
	return left
}

// ConnContext is the gateway's http.Server ConnContext hook: it gives each
// client connection the wait that bounds its requests' upstream waits
// (UpstreamWait). Without it each request gets a wait of its own, at the
// cost of a context per request.
func (st *State) ConnContext(ctx context.Context, c net.Conn) context.Context {
	w := &wait{}
	ctx, w.cancel = context.WithCancelCause(ctx)
	st.waits.add(c, w)
	return context.WithValue(ctx, waitKey{}, w)
}

// ConnState is the gateway's http.Server ConnState hook, with ConnContext:
// a closed connection's wait is no longer watched, nor a hijacked one's
// (a WebSocket tunnel: its wait ended with the 101).
func (st *State) ConnState(c net.Conn, s http.ConnState) {
	if s == http.StateClosed || s == http.StateHijacked {
		st.waits.removeConn(c)
	}
}

// waitingTransport bounds the upstream's wait (UpstreamWait) around the
// Transport's round trip, which returns once the answer's header arrived.
type waitingTransport struct {
	base  http.RoundTripper
	waits *upstreamWaits
}

func (t *waitingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := waitFrom(r.Context())
	if w == nil || r.ProtoMajor > 1 {
		// A server without State.ConnContext (a test's), or a connection
		// that carries several requests at once (HTTP/2, which tollgate
		// does not serve today): a context for this request alone,
		// released with the request's own.
		w = &wait{}
		var ctx context.Context
		ctx, w.cancel = context.WithCancelCause(r.Context())
		t.waits.add(nil, w)
		defer t.waits.remove(w)
		r = r.WithContext(ctx)
	}
	if b := sentBody(r); b != nil {
		// Counted once the body has been read whole, as the Transport's
		// ResponseHeaderTimeout was: a long upload is not a hung upstream.
		// Until then, an app that takes none of the body is.
		b.setWait(w, t.waits)
		w.body.Store(b)
		w.state.Store(waitSending)
	} else {
		w.begin(waitIdle, t.waits)
	}
	resp, err := t.base.RoundTrip(r)
	if w.end() {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, errUpstreamWait
	}
	return resp, err
}

// sentBody is the client's body the request carries to the upstream
// (toUpstream wraps it; the ReverseProxy wraps it again, and leaves no body
// on a request without one).
func sentBody(r *http.Request) *idleBody {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	if f := forwardFrom(r.Context()); f != nil {
		return f.body
	}
	return nil
}

package gateway

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// How long request bodies may take (docs/SECURITY.md, "Server limits"). The server
// itself sets no ReadTimeout or WriteTimeout: those would cut large
// uploads, WebSockets and server-sent events. Instead:
//   - tollgate's own endpoints (webhooks, forms, the admin API) get an
//     absolute deadline for the whole body, and a write deadline;
//   - webhooks: at most WebhookBodyReads bodies read at a time per
//     endpoint, holding at most WebhookBodyBytes between them, each whole
//     within WebhookBodyTimeout;
//   - bodies forwarded to the upstream get an idle-progress deadline
//     (timeouts.body_idle): any byte pushes it on, silence ends it.
const (
	// OwnBodyTimeout is how long tollgate's own endpoints wait for a whole
	// request body, counted from when the handler starts.
	OwnBodyTimeout = 10 * time.Second
	// OwnWriteTimeout bounds the handling and the response of tollgate's
	// own endpoints on the public listener (a webhook's sync with Stripe
	// takes up to 20 s).
	OwnWriteTimeout = 60 * time.Second
	// WebhookBodyReads is how many webhook bodies one endpoint reads at
	// once; the next one is answered 503 with Retry-After at once, and
	// Stripe and Svix deliver it again later. It is large: what bounds
	// memory is WebhookBodyBytes, so that connections trickling a body
	// (which hold next to nothing) cannot shut real deliveries out.
	WebhookBodyReads = 4096
	// WebhookBodyReadsPerAddr is the share of them one client address may
	// hold (the address as ClientAddr sees it: behind a proxy that is not
	// trusted, everyone shares one, and only WebhookBodyReads applies in
	// effect). Stripe delivers from a dozen addresses.
	WebhookBodyReadsPerAddr = WebhookBodyReads / 4
	// WebhookBodyBytes bounds the bytes the bodies being read on one
	// endpoint hold between them; a read past it fails the delivery with
	// 503 (delivered again later). To hold it an attacker must keep
	// sending, at WebhookBodyBytes per WebhookBodyTimeout.
	WebhookBodyBytes = 32 << 20
	// WebhookBodyTimeout is how long a webhook body may take, counted
	// from the handler's start: Stripe and Svix send a few kilobytes at
	// once, so a body this slow is not theirs.
	WebhookBodyTimeout = 5 * time.Second
)

// hasBody reports whether a request carries a body to read.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// ownDeadlines puts tollgate's own endpoint under its deadlines: the whole
// body within body, the handling and response within write (0: none). The
// returned func lifts the write deadline when the handler returns, since
// the server would otherwise keep it for the next request on the
// connection. The read deadline is lifted once the body has been read: a
// deadline left on the connection would cancel the request's context while
// the handler works.
func ownDeadlines(w http.ResponseWriter, r *http.Request, body, write time.Duration) (done func()) {
	rc := http.NewResponseController(w)
	now := time.Now()
	if write > 0 && rc.SetWriteDeadline(now.Add(write)) != nil {
		write = 0 // not a connection we can bound (a test recorder)
	}
	if body > 0 && hasBody(r) && rc.SetReadDeadline(now.Add(body)) == nil {
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
	}
	return func() {
		if write > 0 {
			_ = rc.SetWriteDeadline(time.Time{})
		}
	}
}

// boundUnreadBody gives a request body the deadline of tollgate's own
// endpoints from the start. When the gate answers a request itself (sign
// in, deny, a redirect) the server drains up to 256 KiB of the unread body
// before it answers, and would wait on a trickling client for ever. A
// forwarded body gets the idle-progress deadline instead (toUpstream).
func boundUnreadBody(w http.ResponseWriter, d time.Duration) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
}

// WithBodyDeadline bounds the request bodies of h (the admin listener's
// API): each must arrive whole within d of the handler starting. Responses
// are not bounded: a backup streams for as long as the store is large.
func WithBodyDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ownDeadlines(w, r, d, 0)
		h.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the connection's read deadline once the body is read
// to its end.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// webhookLimit bounds the webhook bodies read through h at once: at most
// readers of them, at most perAddr from one client address, holding at
// most maxBytes between them, each body whole within WebhookBodyTimeout
// (or the server's own body timeout if shorter). A request finding no
// reader's slot gets 503 with Retry-After and its connection is closed
// without reading the body; a body that would take the endpoint past
// maxBytes fails to read with proxy.ErrBodyBudget (the handler answers
// 503, and the sender delivers it again). A reader's slot and bytes are
// given back once its body is read, or the handler returns.
func (s *Server) webhookLimit(h http.Handler, readers, perAddr int, maxBytes int64) http.Handler {
	l := &webhookReads{readers: readers, perAddr: perAddr, byAddr: map[string]int{}}
	timeout := min(s.ownBody, WebhookBodyTimeout)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := ClientAddr(r, s.cfg.TrustedProxies)
		if !l.take(addr) {
			entryFrom(r.Context()).reason = "webhook_reads_full"
			// Expire the read deadline: the server then gives up on the
			// unread body at once instead of draining it.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "10")
			s.writeError(w, r, http.StatusServiceUnavailable)
			return
		}
		body := &releaseBody{held: &l.bytes, max: maxBytes, give: func() { l.give(addr) }}
		defer body.release()
		if hasBody(r) {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
			body.ReadCloser, body.entry = r.Body, entryFrom(r.Context())
			r.Body = body
		} else {
			body.release()
		}
		h.ServeHTTP(w, r)
	})
}

// webhookReads counts one webhook endpoint's bodies being read: in all,
// per client address, and their bytes.
type webhookReads struct {
	readers, perAddr int
	bytes            atomic.Int64

	mu     sync.Mutex
	n      int
	byAddr map[string]int
}

// take claims a reader's slot for addr, if one is free to it.
func (l *webhookReads) take(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n >= l.readers || l.byAddr[addr] >= l.perAddr {
		return false
	}
	l.n++
	l.byAddr[addr]++
	return true
}

// give returns addr's slot.
func (l *webhookReads) give(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n--
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
}

// releaseBody is a webhook body under its endpoint's limits: it counts its
// bytes against held, and gives them and its reader's slot back once read
// (to its end or to an error) or released.
type releaseBody struct {
	io.ReadCloser
	entry *logEntry
	held  *atomic.Int64
	max   int64
	give  func() // returns the reader's slot
	n     int64  // bytes counted against held
	done  bool
	err   error // what every read returns once done by a read
}

func (b *releaseBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.n += int64(n)
		if b.held.Add(int64(n)) > b.max {
			if b.entry != nil {
				b.entry.reason = "webhook_bytes_full"
			}
			b.release()
			b.err = proxy.ErrBodyBudget
			return 0, b.err
		}
	}
	if err != nil {
		b.release()
		b.err = err
	}
	return n, err
}

// release gives back the slot and the bytes; only the first call counts.
// The handler's goroutine alone reads the body and releases it.
func (b *releaseBody) release() {
	if b.done {
		return
	}
	b.done = true
	b.held.Add(-b.n)
	b.give()
}

// Why a client's request body failed, for the access log and metrics.
const (
	bodyIdle      = "client_body_idle"      // nothing arrived for timeouts.body_idle
	bodyMalformed = "client_body_malformed" // e.g. broken chunked encoding
	bodyAborted   = "client_body_aborted"   // the connection ended mid-body
)

// ClientBodyObserver counts forwarded requests whose body the client broke
// or stalled, by reason (client_body_idle, client_body_malformed,
// client_body_aborted). An Observer that implements it is told; these
// requests are the client's failure, never counted as the upstream's.
type ClientBodyObserver interface {
	ClientBodyError(reason string)
}

// idleBody is a forwarded request body under an idle-progress deadline:
// every read pushes the connection's read deadline idle ahead, so a steady
// upload of any size and length passes and a stalled one is cut (idle 0:
// timeouts.body_idle is 0, no deadline). Its read errors are the client's;
// the ReverseProxy's ErrorHandler asks failure() to tell them from the
// upstream's. It also tells the upstream's wait (upstreamwait.go) when the
// body has been read whole, and since when the Transport has not asked for
// more of it: an app that takes none of the body stalls the Transport's
// writes, and no read of the client's connection would ever end that.
type idleBody struct {
	body io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	err  atomic.Pointer[error]

	// mu orders deadline moves against finish: the transport may still
	// read after the handler returned, when the connection may already
	// carry the next request.
	mu     sync.Mutex
	pushed time.Time // when the deadline was last moved
	ended  bool      // EOF seen or handler done: deadlines are no longer ours

	// wait begins when the body has been read whole (waitingTransport).
	wait  *wait
	waits *upstreamWaits
	// lastRead is the coarse second (upstreamWaits.clock, plus one) the
	// Transport's last read of the body returned; 0 while one is under way
	// (waiting on the client, which idle bounds).
	lastRead atomic.Int64
}

// setWait has the upstream's wait begin once the body has been read whole,
// and watch the Transport's reads until then.
func (b *idleBody) setWait(w *wait, u *upstreamWaits) {
	b.mu.Lock()
	b.wait, b.waits = w, u
	b.lastRead.Store(u.clock.Load() + 1)
	b.mu.Unlock()
}

// newIdleBody wraps r's body, or returns nil when it has none, or when idle
// is set and its connection takes no deadlines (a test's recorder).
func newIdleBody(w http.ResponseWriter, r *http.Request, idle time.Duration) *idleBody {
	if !hasBody(r) {
		return nil
	}
	rc := http.NewResponseController(w)
	if idle <= 0 {
		// No limit: not even the one the gate set (boundUnreadBody).
		_ = rc.SetReadDeadline(time.Time{})
		b := &idleBody{body: r.Body}
		r.Body = b
		return b
	}
	b := &idleBody{body: r.Body, rc: rc, idle: idle, pushed: time.Now()}
	if b.rc.SetReadDeadline(b.pushed.Add(idle)) != nil {
		return nil
	}
	r.Body = b
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	// Moving the deadline costs little, but a large upload reads often:
	// move it once per sixteenth of the idle time.
	b.mu.Lock()
	if now := time.Now(); b.idle > 0 && !b.ended && now.Sub(b.pushed) >= b.idle/16 {
		b.pushed = now
		_ = b.rc.SetReadDeadline(now.Add(b.idle))
	}
	waits := b.waits
	b.mu.Unlock()
	if waits != nil {
		b.lastRead.Store(0)
	}
	n, err := b.body.Read(p)
	if waits != nil {
		b.lastRead.Store(waits.clock.Load() + 1)
	}
	switch {
	case err == nil:
	case err == io.EOF:
		// Read whole: lift the deadline, or it would cancel the request
		// (an SSE answer, say) once it passed.
		b.mu.Lock()
		if !b.ended {
			b.ended = true
			if b.idle > 0 {
				_ = b.rc.SetReadDeadline(time.Time{})
			}
			if b.wait != nil {
				b.wait.begin(waitSending, b.waits)
			}
		}
		b.mu.Unlock()
	default:
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// finish is called when the handler returns: later reads leave the
// connection's deadline alone. A deadline still set (the body was not read
// to its end) bounds the server's draining of the rest.
func (b *idleBody) finish() {
	b.mu.Lock()
	b.ended = true
	b.mu.Unlock()
}

func (b *idleBody) Close() error { return b.body.Close() }

// failure reports the status and reason for a client's body read error, or
// 0 when the body did not fail.
func (b *idleBody) failure() (int, string) {
	if b == nil {
		return 0, ""
	}
	p := b.err.Load()
	if p == nil {
		return 0, ""
	}
	err := *p
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return http.StatusRequestTimeout, bodyIdle
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), errors.As(err, new(*net.OpError)):
		return http.StatusBadRequest, bodyAborted
	}
	return http.StatusBadRequest, bodyMalformed
}

// errUnaskedUpgrade is the upstream switching protocols on a request that
// did not ask to, or without answering its WebSocket key (or, on a gated
// route, on one the gate did not register as a tunnel).
var errUnaskedUpgrade = errors.New("upstream switched protocols without a WebSocket handshake the request asked for")

// clientsFault answers a forwarded request that failed through no fault of
// the upstream's: its body broke or stalled (400 or 408, counted as the
// client's), or its tunnel was closed by tollgate (nothing to answer). It
// reports false for the upstream's own failures.
func clientsFault(w http.ResponseWriter, r *http.Request, logger *slog.Logger, obs Observer, onError func(http.ResponseWriter, *http.Request, int)) bool {
	f := forwardFrom(r.Context())
	if f == nil {
		return false
	}
	if f.tunnel != nil && f.tunnel.reason.Load() != nil {
		return true
	}
	code, reason := f.body.failure()
	if code == 0 {
		return false
	}
	entryFrom(r.Context()).reason = reason
	logger.DebugContext(r.Context(), "client request body failed", "path", r.URL.Path, "reason", reason)
	if cb, ok := obs.(ClientBodyObserver); ok {
		cb.ClientBodyError(reason)
	}
	onError(w, r, code)
	return true
}

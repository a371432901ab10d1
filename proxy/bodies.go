package proxy

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// How long request bodies may take (README, "Server limits"). The server
// itself sets no ReadTimeout or WriteTimeout: those would cut large
// uploads, WebSockets and server-sent events. Instead:
//   - tollgate's own endpoints (webhooks, forms, the admin API) get an
//     absolute deadline for the whole body, and a write deadline;
//   - webhooks read at most WebhookBodyReads bodies at a time per endpoint.
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
	// Stripe and Svix deliver it again later.
	WebhookBodyReads = 64
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

// webhookLimit lets at most n requests read their bodies through h at once.
// A slot is held from the handler's start until its body is read (or the
// handler returns); a request finding none gets 503 with Retry-After, and
// its connection is closed without reading the body.
func (s *Server) webhookLimit(h http.Handler, n int) http.Handler {
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
		default:
			entryFrom(r.Context()).reason = "webhook_reads_full"
			// Expire the read deadline: the server then gives up on the
			// unread body at once instead of draining it.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "10")
			s.writeError(w, r, http.StatusServiceUnavailable)
			return
		}
		var once sync.Once
		release := func() { once.Do(func() { <-slots }) }
		defer release()
		if hasBody(r) {
			r.Body = &releaseBody{ReadCloser: r.Body, release: release}
		} else {
			release()
		}
		h.ServeHTTP(w, r)
	})
}

// releaseBody gives back a webhook read slot once the body is read (to its
// end or to an error).
type releaseBody struct {
	io.ReadCloser
	release func()
}

func (b *releaseBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.release()
	}
	return n, err
}

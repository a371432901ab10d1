package gateway

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Tunnels are the connections an upgrade (a WebSocket) turns into: after
// the 101 the ReverseProxy copies bytes both ways and no request passes the
// gate again. So that a tunnel on a signed_in or paid route ends when HTTP
// with the same credentials would stop being answered (README, "Security
// model"), tollgate keeps them in a registry and closes one when
//   - its Clerk session or user is revoked (Clerk's webhooks, sign-out), or
//     Clerk says the session is no longer active (asked every
//     tunnelRecheck, through the same per-session cache as the gateway
//     cookie's check, so a session already checked costs no call),
//   - the route's rule or the subject's plans no longer let it through
//     (judged again at once when the entitlement cache changes, on reload,
//     and every tunnelRecheck),
//   - timeouts.tunnel_max_lifetime has passed since it opened.
// A gated response without a length (server-sent events, a long poll) is a
// tunnel too: closing its upstream body ends it. Tunnels on public routes
// are not registered and never touched.

// tunnelRecheck is how often every open tunnel is judged again, for what no
// event announces: a past_due grace or a comp running out, a session ended
// in Clerk without a webhook. It matches session.refresh's default.
const tunnelRecheck = time.Minute

// Reasons a tunnel was closed, for the access log.
const (
	tunnelRevoked     = "tunnel_session_revoked"
	tunnelDenied      = "tunnel_no_longer_allowed"
	tunnelMaxLifetime = "tunnel_max_lifetime"
)

// tunnels is the registry. One lives as long as the process: a reloaded
// Server takes over its predecessor's (Options.Previous) and becomes the
// judge, so tunnels opened before a reload are judged by the new rules.
type tunnels struct {
	judge atomic.Pointer[Server]
	every time.Duration // tunnelRecheck (tests shorten it before the first tunnel)

	// buffers lend copy buffers to tunnels while data flows (tunnelConn).
	buffers *bufferPool

	mu      sync.Mutex
	open    map[*tunnel]struct{}
	dirty   map[proxy.Subject]struct{} // subjects whose entitlements changed
	all     bool                       // judge every tunnel (a reload)
	running bool                       // the recheck loop is running
	wake    chan struct{}
}

func newTunnels() *tunnels {
	return &tunnels{every: tunnelRecheck, buffers: newBufferPool(), open: map[*tunnel]struct{}{}, dirty: map[proxy.Subject]struct{}{}, wake: make(chan struct{}, 1)}
}

// tunnel is one upgraded connection on a gated route.
type tunnel struct {
	id     proxy.Identity // who opened it (a copy)
	method string
	host   string
	path   string // canonical, as the gate matched it
	// overrides are the methods its method-override headers named: the
	// tunnel is judged again as the gate judged it.
	overrides []string
	// conn ends it: the hijacked connection of an upgrade, or the upstream
	// body of a streamed response.
	conn io.Closer
	// upstream is an upgrade's connection to the app (nil for a stream,
	// whose conn is that already). Closing only the client's side would
	// leave the proxy's copy from the app waiting on an app that keeps
	// quiet, after the client half-closed (red team, issue 14).
	upstream io.Closer
	timer    *time.Timer
	reason   atomic.Pointer[string] // why tollgate closed it; nil: it did not
}

// setJudge makes s the server whose config and stores judge every tunnel,
// and has them judged again.
func (t *tunnels) setJudge(s *Server) {
	t.judge.Store(s)
	t.mu.Lock()
	t.all = true
	t.mu.Unlock()
	t.poke()
}

func (t *tunnels) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// add registers a freshly hijacked tunnel and judges it once: the gate
// decided before the upstream answered, and a revocation may have landed in
// between.
func (t *tunnels) add(tn *tunnel, conn io.Closer, maxLifetime time.Duration) {
	tn.conn = conn
	t.mu.Lock()
	t.open[tn] = struct{}{}
	if !t.running {
		t.running = true
		go t.run()
	}
	t.mu.Unlock()
	if maxLifetime > 0 {
		tn.timer = time.AfterFunc(maxLifetime, func() { t.close(tn, tunnelMaxLifetime) })
	}
	if reason := t.judge.Load().tunnelVerdict(tn, false); reason != "" {
		t.close(tn, reason)
	}
}

// remove forgets a tunnel that ended (the handler that proxied it returned).
func (t *tunnels) remove(tn *tunnel) {
	if tn.timer != nil {
		tn.timer.Stop()
	}
	t.mu.Lock()
	delete(t.open, tn)
	empty := len(t.open) == 0
	t.mu.Unlock()
	if empty {
		t.poke() // let the recheck loop end
	}
}

// close ends a tunnel, once, and says why.
func (t *tunnels) close(tn *tunnel, reason string) {
	if !tn.reason.CompareAndSwap(nil, &reason) {
		return
	}
	if s := t.judge.Load(); s != nil {
		s.log.Info("tunnel closed", "reason", reason, "user_id", tn.id.UserID, "path", tn.path)
	}
	_ = tn.conn.Close()
	if tn.upstream != nil {
		_ = tn.upstream.Close()
	}
}

// closeWhere closes every open tunnel that match selects.
func (t *tunnels) closeWhere(match func(*tunnel) bool, reason string) {
	t.mu.Lock()
	var hit []*tunnel
	for tn := range t.open {
		if match(tn) {
			hit = append(hit, tn)
		}
	}
	t.mu.Unlock()
	for _, tn := range hit {
		t.close(tn, reason)
	}
}

// changed has the tunnels of a subject judged again soon (its
// subscriptions or comps changed).
func (t *tunnels) changed(sub proxy.Subject) {
	t.mu.Lock()
	if len(t.open) == 0 {
		t.mu.Unlock()
		return
	}
	t.dirty[sub] = struct{}{}
	t.mu.Unlock()
	t.poke()
}

// run judges tunnels again: the dirty ones when poked, all of them every
// tunnelRecheck. It ends when no tunnel is open.
func (t *tunnels) run() {
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	for {
		all, askClerk := false, false
		select {
		case <-tick.C:
			all, askClerk = true, true
		case <-t.wake:
		}
		t.mu.Lock()
		if len(t.open) == 0 && all {
			// Nothing open for a whole tick: streams come and go by the
			// thousand, so the loop is not restarted for each.
			t.running, t.all = false, false
			clear(t.dirty)
			t.mu.Unlock()
			return
		}
		all = all || t.all
		var judge []*tunnel
		for tn := range t.open {
			if all || t.isDirty(tn) {
				judge = append(judge, tn)
			}
		}
		t.all = false
		clear(t.dirty)
		t.mu.Unlock()
		s := t.judge.Load()
		for _, tn := range judge {
			if reason := s.tunnelVerdict(tn, askClerk); reason != "" {
				t.close(tn, reason)
			}
		}
	}
}

// isDirty reports whether one of the tunnel's subjects changed; t.mu held.
func (t *tunnels) isDirty(tn *tunnel) bool {
	if _, ok := t.dirty[proxy.Subject{Kind: proxy.SubjectUser, ID: tn.id.UserID}]; ok {
		return true
	}
	if tn.id.OrgID == "" {
		return false
	}
	_, ok := t.dirty[proxy.Subject{Kind: proxy.SubjectOrg, ID: tn.id.OrgID}]
	return ok
}

// tunnelVerdict judges an open tunnel as the gate would judge a request by
// its opener to its path now: the same revocations, rules and paid
// decision, and with askClerk whether Clerk still holds the session
// active. It returns why the tunnel must close, or "" to keep it.
func (s *Server) tunnelVerdict(tn *tunnel, askClerk bool) string {
	if s.gw.isRevoked(&tn.id) {
		return tunnelRevoked
	}
	id := tn.id          // judged as the gate would judge its opener now
	s.gw.orgs.apply(&id) // membership changes Clerk reported since
	if askClerk && s.gw.checker != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := s.gw.checkSession(ctx, tn.id.SessionID, s.now())
		cancel()
		switch {
		case err != nil:
			// Clerk could not be asked: not cut for its outage; the next
			// check asks again.
			s.log.Warn("tunnel check: clerk session", "user_id", tn.id.UserID, "err", err)
		case !st.Active:
			s.gw.revoke(tn.id.SessionID, s.now())
			return tunnelRevoked
		case st.OrgID != id.OrgID:
			// Clerk's active organisation moved on: so does the tunnel's.
			id.OrgID, id.OrgSlug, id.OrgRole = st.OrgID, "", ""
		}
	}
	m, ok := s.cfg.Routes.Judge(tn.method, tn.host, tn.path, tn.overrides)
	switch {
	case !ok || !s.cfg.HostAllowed(tn.host):
		return tunnelDenied
	case m.Access == proxy.AccessPublic || m.Access == proxy.AccessSignedIn:
		return ""
	case m.Access != proxy.AccessPaid || m.RouteID != "" && !proxy.ValidRouteID(m.RouteID):
		return tunnelDenied
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := s.decidePaid(ctx, &id, m.RouteID, s.now()) // now: a tunnel is judged again as it lasts
	if err != nil {
		// The store did not answer: a new request would get 503, but an
		// open tunnel is not cut for our outage; the next check decides.
		s.log.Warn("tunnel check: entitlements unavailable", "user_id", tn.id.UserID, "err", err)
		return ""
	}
	if d.Outcome != proxy.PaidAllow {
		return tunnelDenied
	}
	return ""
}

// EntitlementsChanged has the open tunnels of sub judged again at once.
// main points the entitlement cache's OnChange here, so a cancellation
// that Stripe's webhook brings ends the subject's paid tunnels.
func (s *Server) EntitlementsChanged(sub proxy.Subject) {
	s.tunnels.changed(sub)
}

// isUpgrade reports whether r asks to switch protocols (a WebSocket).
// onlyWebSocketUpgrades removes an Upgrade header that asks for anything but
// one protocol, WebSocket, as a server that declines to upgrade may (RFC
// 9110 section 7.8), and h2c's HTTP2-Settings with it. A 101 turns the
// connection into a tunnel whose bytes tollgate no longer reads: an h2c
// tunnel (RFC 7540 section 3.2) would carry further requests, on any path
// and with any X-Tollgate-* header, to an app that accepts it, none of them
// judged (docs/SECURITY.md, "Upgrades"). A WebSocket carries frames, not
// requests; the ReverseProxy tunnels only the protocol that was asked for
// and answered.
//
// A WebSocket upgrade must carry its one Sec-WebSocket-Key, and the app's
// 101 must answer it (webSocketAccepted): an app that answers 101 to
// anything is not speaking WebSocket, and what follows could be requests.
func onlyWebSocketUpgrades(h http.Header) {
	if up := h["Upgrade"]; len(up) != 1 || !strings.EqualFold(strings.TrimSpace(up[0]), "websocket") || len(h["Sec-Websocket-Key"]) != 1 {
		delete(h, "Upgrade")
	}
	delete(h, "Http2-Settings")
}

// webSocketGUID is RFC 6455's, section 1.3.
const webSocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// webSocketAccepted reports whether a 101 is a WebSocket server's answer to
// the request's key: Sec-WebSocket-Accept is the base64 SHA-1 of the key and
// the GUID (RFC 6455 section 4.2.2), which a client must check (section
// 4.1) and so does tollgate, for the client behind it.
func webSocketAccepted(req *http.Request, resp *http.Response) bool {
	keys, accepts := req.Header["Sec-Websocket-Key"], resp.Header["Sec-Websocket-Accept"]
	if len(keys) != 1 || len(accepts) != 1 {
		return false
	}
	sum := sha1.Sum([]byte(keys[0] + webSocketGUID))
	return strings.TrimSpace(accepts[0]) == base64.StdEncoding.EncodeToString(sum[:])
}

func isUpgrade(r *http.Request) bool {
	if r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}

// tunnelWriter registers the connection the ReverseProxy hijacks for a 101.
// Unwrap keeps flushing and deadlines reaching the real writer.
type tunnelWriter struct {
	http.ResponseWriter
	reg         *tunnels
	tn          *tunnel
	maxLifetime time.Duration
}

func (w *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return conn, brw, err
	}
	w.reg.add(w.tn, conn, w.maxLifetime)
	return &tunnelConn{Conn: conn, buffers: w.reg.buffers}, brw, nil
}

// tunnelConn is a tunnel's client connection as the ReverseProxy copies
// it both ways. io.Copy would hold a 32 KiB buffer in each direction for
// the tunnel's whole life, most of it idle (the bulk of an idle
// WebSocket's memory, README "Scale"); ReadFrom and WriteTo, which io.Copy
// prefers, wait for data with a small buffer and take a pooled one only
// while data flows.
type tunnelConn struct {
	net.Conn
	buffers *bufferPool
}

// ReadFrom copies the upstream's side to the client.
func (c *tunnelConn) ReadFrom(src io.Reader) (int64, error) { return copyIdle(c.Conn, src, c.buffers) }

// WriteTo copies the client's side to the upstream.
func (c *tunnelConn) WriteTo(dst io.Writer) (int64, error) { return copyIdle(dst, c.Conn, c.buffers) }

// CloseWrite half-closes the client's connection, as the ReverseProxy
// does when the upstream's side ends.
func (c *tunnelConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// idleReadSize is the buffer a quiet direction of a tunnel waits with.
const idleReadSize = 512

// copyIdle copies src to dst until src ends (io.EOF is no error), reading
// into idleReadSize bytes while data trickles and into a pooled buffer
// while reads fill what they are given, given back at the first short read.
func copyIdle(dst io.Writer, src io.Reader, buffers *bufferPool) (int64, error) {
	small := make([]byte, idleReadSize)
	buf, big := small, []byte(nil)
	defer func() {
		if big != nil {
			buffers.Put(big)
		}
	}()
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr == nil && w < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
		switch {
		case big == nil && n == len(buf):
			big = buffers.Get()
			buf = big
		case big != nil && n < len(buf):
			buffers.Put(big)
			big, buf = nil, small
		}
	}
}

func (w *tunnelWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

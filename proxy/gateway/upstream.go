package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/limits"
)

// Identity headers tollgate sets for the upstream. Every inbound header with
// the X-Tollgate- prefix is removed first, so the upstream can trust them.
const (
	HeaderUser   = "X-Tollgate-User"
	HeaderOrg    = "X-Tollgate-Org"
	HeaderPlan   = "X-Tollgate-Plan"
	HeaderStatus = "X-Tollgate-Status"
	HeaderRoute  = "X-Tollgate-Route"
	// HeaderKey is the API key's ID (key_… or Clerk's ak_ key ID) when
	// the request carried one; never the key itself.
	HeaderKey = "X-Tollgate-Key"
)

// forward is what the gate hands the upstream proxy, through the request's
// context (request.fwd): the one typed value it needs to rewrite and
// post-process.
type forward struct {
	path       string // canonical decoded path
	rawPath    string // its escaped form
	identity   *proxy.Identity
	plan       string
	status     proxy.SubscriptionStatus
	routeID    string
	gated      bool           // not public: make the response private
	setCookies []string       // handshake directives etc. to append
	cookies    []*http.Cookie // gateway cookie to set
	sent       time.Time      // when the request left for the upstream (wall clock, for metrics)
	body       *idleBody      // the request body, when it has one: its read errors are the client's
	tunnel     *tunnel        // an upgrade on a gated route (nil: none)
	// trustedPeer: the connection comes from trusted_proxies, whose
	// forwarding headers are passed on.
	trustedPeer bool
	// preflight: a CORS preflight, forwarded without credentials or body.
	preflight bool
	// overrides: the methods the request's method-override headers name.
	overrides []string
	// limit is the admission under the plan's limits, settled when the
	// upstream answers (zero: the plan has none here).
	limit limits.Admission
	// wrote: the whole request reached the upstream (set by trace, from the
	// transport's goroutine), so a lost answer still costs (settleLost).
	wrote atomic.Bool
	trace httptrace.ClientTrace
	// costw strips the cost header from 1xx answers (Server.toUpstream),
	// kept here to cost no allocation.
	costw costWriter
	// meter: the granting plan's meter and whose it is, counted when the
	// upstream answers (README "Usage billing"); nil: not metered.
	meter *meterRef
	// idVals and vary back the X-Tollgate- values (setIdentityHeaders) and
	// a gated answer's Vary (makePrivate), so that neither costs an
	// allocation: each header's slice is capped at its own values, so an
	// append to it copies rather than write into the next.
	idVals [6]string
	vary   [2]string
}

func (f *forward) wroteRequest(info httptrace.WroteRequestInfo) {
	if info.Err == nil {
		f.wrote.Store(true)
	}
}

// traceWrite watches whether the request reaches the upstream, when a
// quota reservation depends on it.
func (f *forward) traceWrite(pr *httputil.ProxyRequest) {
	f.trace.WroteRequest = f.wroteRequest
	pr.Out = pr.Out.WithContext(httptrace.WithClientTrace(pr.Out.Context(), &f.trace))
}

// settleLost ends the quota reservation of a request the upstream did not
// answer: free when the request never reached it (the upstream down, the
// client's body failed); once written, a client gone or a timeout costs 1,
// since the upstream may have done the work (README "Limits"). Any other
// failure answers 502 and, as a 5xx, costs nothing.
func (f *forward) settleLost(err error) {
	var ne net.Error
	if f.wrote.Load() && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()) {
		f.limit.Abandon()
		return
	}
	f.limit.Release()
}

// meterRef is what a metered request is counted under.
type meterRef struct {
	subject   proxy.Subject
	sub       *proxy.Subscription
	eventName string
}

// clerkQueryParam reports whether a query parameter belongs to Clerk's
// handshake machinery and must not reach the upstream.
func clerkQueryParam(name string) bool {
	return strings.HasPrefix(name, "__clerk_") || name == "__dev_session"
}

// onlyClerkQuery is the part of rawQuery stripClerkQuery removes.
func onlyClerkQuery(rawQuery string) string {
	if !strings.Contains(rawQuery, "__") && !strings.Contains(rawQuery, "%") {
		return ""
	}
	var kept []string
	for p := range strings.SplitSeq(rawQuery, "&") {
		if clerkQueryPart(p) {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "&")
}

// clerkQueryPart reports whether one name=value of a query is Clerk's, its
// name read as the app's query parser would (unescaped).
func clerkQueryPart(p string) bool {
	name, _, _ := strings.Cut(p, "=")
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	return clerkQueryParam(name)
}

func stripClerkQuery(rawQuery string) string {
	// A name may arrive escaped (%5F%5Fclerk_handshake), and the app's
	// query parser would decode it: only a query with neither "__" nor "%"
	// is certainly free of Clerk's parameters.
	if !strings.Contains(rawQuery, "__") && !strings.Contains(rawQuery, "%") {
		return rawQuery
	}
	parts := strings.Split(rawQuery, "&")
	kept := parts[:0]
	for _, p := range parts {
		if !clerkQueryPart(p) {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "&")
}

// stripCookies removes from the Cookie header the cookies the upstream
// must not see: tollgate's own always, and Clerk's unless forwardClerk (an
// app behind tollgate runs no Clerk code, and a session token is a
// credential it has no use for). Names are compared as the app's cookie
// parser would read them, white space trimmed.
func stripCookies(h http.Header, forwardClerk bool) {
	lines := h["Cookie"]
	changed := false
	for _, l := range lines {
		if strings.Contains(l, "__") {
			changed = true
			break
		}
	}
	if !changed {
		return
	}
	kept := lines[:0]
	for _, l := range lines {
		if strings.Contains(l, "__") {
			l = withoutCookies(l, forwardClerk)
		}
		if l != "" {
			kept = append(kept, l)
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = kept
}

// withoutCookies drops the credential cookies from one Cookie header line.
// It copies only when two cookies or more are kept: a line of credentials
// alone (a browser's request to an app without cookies of its own) costs
// nothing, one kept cookie is a piece of the line (README "Performance").
func withoutCookies(line string, forwardClerk bool) string {
	n, size, first := 0, 0, ""
	for part := range strings.SplitSeq(line, ";") {
		if p, ok := keptCookie(part, forwardClerk); ok {
			if n == 0 {
				first = p
			}
			n, size = n+1, size+len(p)
		}
	}
	if n <= 1 {
		return first
	}
	var b strings.Builder
	b.Grow(size + 2*(n-1))
	for part := range strings.SplitSeq(line, ";") {
		if p, ok := keptCookie(part, forwardClerk); ok {
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(p)
		}
	}
	return b.String()
}

// keptCookie is one name=value of a Cookie line, trimmed, and whether the
// upstream may see it.
func keptCookie(part string, forwardClerk bool) (string, bool) {
	p := strings.TrimSpace(part)
	name, _, _ := strings.Cut(p, "=")
	name = strings.TrimSpace(name)
	return p, p != "" && !tollgateCookie(name) && (forwardClerk || !clerkCookie(name))
}

// tollgateCookie reports whether a cookie is tollgate's own (the gateway
// session in either spelling, the session bounce guard).
func tollgateCookie(name string) bool {
	return strings.HasPrefix(name, "__tollgate") || strings.HasPrefix(name, "__Host-tollgate")
}

// clerkCookie reports whether a cookie is Clerk's: the session token and
// client timestamp (plain and instance-suffixed), the refresh cookie, the
// client token (__client: the Frontend API's long-lived credential, which
// reaches the app's origin when the Frontend API is proxied on it,
// clerk.proxy_url), and the __clerk_* family (dev browser, handshake,
// redirect counter). "__client" also covers "__client_uat".
func clerkCookie(name string) bool {
	for _, c := range [...]string{"__session", "__client", "__refresh"} {
		if name == c || strings.HasPrefix(name, c+"_") {
			return true
		}
	}
	return strings.HasPrefix(name, "__clerk_")
}

// trusted reports whether the peer may supply X-Forwarded-* headers.
func trusted(remoteAddr string, prefixes []netip.Prefix) bool {
	if len(prefixes) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func newUpstream(target *url.URL, forwardClerkCookies bool, keyHeader string, clerkKeys bool, streamed func(*forward, *http.Response), transport http.RoundTripper, logger *slog.Logger,
	onError func(http.ResponseWriter, *http.Request, int), obs Observer, lim upstreamLimits) *httputil.ReverseProxy {
	rp := &httputil.ReverseProxy{
		Transport:  transport,
		ErrorLog:   slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BufferPool: newBufferPool(),
	}
	rp.Rewrite = func(pr *httputil.ProxyRequest) {
		f := forwardFrom(pr.In.Context())
		if f != nil {
			f.sent = time.Now()
		}
		pr.SetURL(target)
		// The upstream gets exactly the path the rules matched.
		if f != nil {
			out := pr.Out.URL
			base := strings.TrimSuffix(target.Path, "/")
			out.Path = base + f.path
			if target.RawPath != "" || f.rawPath != f.path {
				out.RawPath = strings.TrimSuffix(target.EscapedPath(), "/") + f.rawPath
			} else {
				out.RawPath = ""
			}
		}
		pr.Out.URL.RawQuery = stripClerkQuery(pr.In.URL.RawQuery)
		pr.Out.Host = pr.In.Host
		// The gate has already removed every forwarding header a client
		// may not send (sanitizeRequestHeaders); what a trusted proxy sent
		// is passed on, extended by this hop.
		if f != nil && f.trustedPeer {
			if v := pr.In.Header.Values("X-Forwarded-For"); len(v) > 0 {
				pr.Out.Header["X-Forwarded-For"] = append([]string(nil), v...)
			}
			pr.SetXForwarded()
			for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v := pr.In.Header.Get(h); v != "" {
					pr.Out.Header.Set(h, v)
				}
			}
		} else {
			pr.SetXForwarded()
		}
		h := pr.Out.Header
		stripCookies(h, forwardClerkCookies)
		stripAPIKeys(h, keyHeader, clerkKeys)
		if lim.costFolded != "" {
			// The cost is the upstream's to say, never the client's: in
			// every spelling the app's framework may read as it
			// (headers.go), X_Cost as X-Cost.
			stripFoldedHeader(h, lim.costFolded)
		}
		if f != nil && f.preflight {
			// A preflight carries no credentials by design: an app that
			// ignores the method must not run it as anyone. Only what
			// CORS needs passes, so no custom credential header (X-Api-Key)
			// or method override either.
			for k := range h {
				if class, _ := classifyHeader(k); class != headerForwarding && !preflightHeaders[k] {
					delete(h, k)
				}
			}
			pr.Out.Body, pr.Out.ContentLength = http.NoBody, 0
			h.Del("Content-Length")
			h.Del("Transfer-Encoding")
			pr.Out.TransferEncoding = nil
		}
		if f != nil {
			setIdentityHeaders(h, f)
			if f.limit.Holds() {
				f.traceWrite(pr)
			}
		}
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		// Only an upgrade the client asked for (a WebSocket: the gate
		// removed any other), and answered as one, becomes a tunnel, on
		// any route: an app that switches protocols otherwise would open
		// one whose bytes tollgate never judges.
		if resp.StatusCode == http.StatusSwitchingProtocols && (!isUpgrade(resp.Request) || !webSocketAccepted(resp.Request, resp)) {
			return errUnaskedUpgrade
		}
		f := forwardFrom(resp.Request.Context())
		if f == nil {
			return nil
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			if f.gated && f.tunnel == nil {
				return errUnaskedUpgrade
			}
			if f.tunnel != nil {
				// The app's side of the tunnel, closed with it. Set
				// before the ReverseProxy hijacks the client's
				// (tunnels.add).
				f.tunnel.upstream = resp.Body
			}
		}
		obs.Upstream(resp.StatusCode, time.Since(f.sent))
		if lim.settle != nil {
			lim.settle(f, resp)
		}
		h := resp.Header
		if f.gated {
			makePrivate(h, &f.vary)
		}
		if f.preflight && f.gated {
			// A browser reads only a preflight's status and headers; the
			// body of an app that ignored the method is the gated page.
			resp.Body.Close()
			resp.Body, resp.ContentLength = http.NoBody, 0
			h.Del("Content-Length")
			resp.TransferEncoding = nil
		}
		if f.gated && f.identity != nil && f.tunnel == nil && resp.ContentLength < 0 && streamed != nil {
			// A response without a length (server-sent events, a long
			// poll, a stream) may outlive the access that let it start.
			streamed(f, resp)
		}
		for _, c := range f.setCookies {
			h.Add("Set-Cookie", c)
		}
		for _, c := range f.cookies {
			if v := c.String(); v != "" {
				h.Add("Set-Cookie", v)
			}
		}
		return nil
	}
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		// Whatever tollgate answers instead of the upstream carries the
		// cookies the gate decided on: Clerk's handshake directives and the
		// gateway cookie (ModifyResponse, which adds them to an upstream
		// answer, did not run or its answer is dropped).
		if f := forwardFrom(r.Context()); f != nil {
			addSetCookies(w, f.setCookies)
			for _, c := range f.cookies {
				http.SetCookie(w, c)
			}
		}
		if f := forwardFrom(r.Context()); f != nil {
			f.settleLost(err)
		}
		if clientsFault(w, r, logger, obs, onError) {
			return
		}
		code := http.StatusBadGateway
		var ne net.Error
		switch {
		case errors.Is(err, context.Canceled):
			// The visitor went away; nobody reads what we write.
			logger.DebugContext(r.Context(), "upstream: client cancelled", "path", r.URL.Path)
			return
		case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
			code = http.StatusGatewayTimeout
			if errors.Is(err, errUpstreamWait) {
				// The wait was cut by cancelling the connection's context
				// (upstreamwait.go): the next request on it would start
				// cancelled, so there is none.
				w.Header().Set("Connection", "close")
			}
		}
		logger.WarnContext(r.Context(), "upstream error", "path", r.URL.Path, "status", code, "err", err)
		if f := forwardFrom(r.Context()); f != nil {
			obs.Upstream(code, time.Since(f.sent))
		}
		onError(w, r, code)
	}
	return rp
}

// setIdentityHeaders sets the X-Tollgate- headers of what the gate decided
// (the request's own were removed by sanitizeRequestHeaders). Their values
// share one backing array, each slice capped at its one value, so that an
// append to one copies it rather than overwrite the next: one allocation
// instead of one per header.
func setIdentityHeaders(h http.Header, f *forward) {
	var id proxy.Identity
	if f.identity != nil {
		id = *f.identity
	}
	vals := f.idVals[:0]
	set := func(name, v string, present bool) {
		if present {
			vals = append(vals, v)
			h[name] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	set(HeaderUser, id.UserID, f.identity != nil)
	set(HeaderOrg, id.OrgID, id.OrgID != "")
	set(HeaderKey, id.KeyID, id.KeyID != "")
	set(HeaderPlan, f.plan, f.plan != "")
	set(HeaderStatus, string(f.status), f.status != "")
	set(HeaderRoute, f.routeID, f.routeID != "")
}

// upstreamLimits is what the upstream proxy does for plans' limits: strip
// the cost header from requests and settle each admission on the response
// (settle nil: no limits and no cost header configured).
type upstreamLimits struct {
	costFolded string // the cost header's name, folded (foldHeaderName)
	settle     func(*forward, *http.Response)
}

// preflightHeaders are the request headers a CORS preflight keeps: what the
// Fetch standard's preflight sends, and what describes the client.
var preflightHeaders = map[string]bool{
	"Origin": true, "Access-Control-Request-Method": true, "Access-Control-Request-Headers": true,
	"Access-Control-Request-Private-Network": true, "User-Agent": true, "Accept": true, "Accept-Language": true,
	"Accept-Encoding": true, "Referer": true, "Sec-Fetch-Mode": true, "Sec-Fetch-Site": true, "Sec-Fetch-Dest": true,
	"Cache-Control": true, "Pragma": true,
}

// makePrivate stops shared caches from serving a gated response to anyone
// else: public/s-maxage caching becomes private, every directive family a
// shared cache honours besides Cache-Control is removed (RFC 9213's
// CDN-Cache-Control and every other targeted <name>-Cache-Control field,
// Surrogate-Control and its vendor forms, Akamai's Edge-Control, nginx's
// X-Accel-Expires), and the response varies on the credentials. vary backs
// a Vary the response did not have.
func makePrivate(h http.Header, vary *[2]string) {
	cc := h.Values("Cache-Control")
	noStore := false
	var buf [8]string
	directives := append(buf[:0], "private")
	for _, line := range cc {
		for line != "" {
			var d string
			d, line = nextListElement(line)
			name, _, _ := strings.Cut(strings.ToLower(d), "=")
			switch strings.TrimSpace(name) {
			case "no-store":
				noStore = true
			case "", "public", "s-maxage", "private", "proxy-revalidate":
				continue
			}
			directives = append(directives, d)
		}
	}
	if !noStore {
		v := "private"
		if len(directives) > 1 {
			v = strings.Join(directives, ", ")
		}
		if len(cc) == 1 {
			cc[0] = v // the upstream response's own header, changed in place
		} else {
			h["Cache-Control"] = []string{v}
		}
	}
	for k := range h {
		if sharedCacheHeader(k) {
			delete(h, k)
		}
	}
	addVary(h, vary, "Cookie", "Authorization")
}

// sharedCacheHeader reports whether a response header instructs shared
// caches only (a CDN, a surrogate, a caching proxy).
func sharedCacheHeader(name string) bool {
	switch {
	case foldedEqual(name, "edge-control"), foldedEqual(name, "x-accel-expires"):
		return true
	}
	for _, suffix := range [...]string{"-cache-control", "surrogate-control"} {
		if len(name) >= len(suffix) && foldedEqual(name[len(name)-len(suffix):], suffix) {
			return true
		}
	}
	return false
}

// addVary adds names to the Vary field, each unless it is there already;
// a response without Vary gets backing's array (nil: a new one) when the
// names fit it.
func addVary(h http.Header, backing *[2]string, names ...string) {
	vary := h["Vary"]
	var missing [4]string
	add := missing[:0]
	for _, n := range names {
		if !varyHas(vary, n) {
			add = append(add, n)
		}
	}
	switch {
	case len(add) == 0 || varyHas(vary, "*"):
	case len(vary) == 0 && backing != nil && len(add) <= len(backing):
		n := copy(backing[:], add)
		h["Vary"] = backing[:n:n]
	default:
		h["Vary"] = append(vary, add...) // one allocation for all
	}
}

// varyHas reports whether any Vary line names name, without regard to
// case. Whole names only: "X-Cookie-Hint" does not name Cookie (red team,
// issue 15).
func varyHas(lines []string, name string) bool {
	for _, l := range lines {
		for l != "" {
			var n string
			n, l = nextListElement(l)
			if strings.EqualFold(n, name) {
				return true
			}
		}
	}
	return false
}

// nextListElement splits the first element off a comma-separated header
// list (RFC 9110, section 5.6.1), trimmed of white space, and returns it and
// the rest. A comma inside a quoted string (section 5.6.4, with its
// backslash escapes) does not end an element: a Cache-Control extension's
// x="a, no-store" is one directive, not a no-store (red team, issue 15).
func nextListElement(s string) (elem, rest string) {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			return strings.TrimSpace(s[:i]), s[i+1:]
		}
	}
	return strings.TrimSpace(s), ""
}

// bufferPool reuses the 32 KiB copy buffers the ReverseProxy would
// otherwise allocate for every response body. A sync.Pool holds pointers;
// the *[]byte that carried a buffer is kept for the next Put, so that
// neither Get nor Put allocates.
type bufferPool struct{ bufs, holders sync.Pool }

func newBufferPool() *bufferPool { return &bufferPool{} }

func (bp *bufferPool) Get() []byte {
	p, ok := bp.bufs.Get().(*[]byte)
	if !ok {
		return make([]byte, 32<<10)
	}
	b := *p
	*p = nil
	bp.holders.Put(p)
	return b
}

func (bp *bufferPool) Put(b []byte) {
	p, ok := bp.holders.Get().(*[]byte)
	if !ok {
		p = new([]byte)
	}
	*p = b
	bp.bufs.Put(p)
}

// upstreamIdleConns is how many idle connections to the upstream are kept
// for reuse: above the concurrency one gateway serves, so that a wave of
// requests finds its connections again rather than dialing.
const upstreamIdleConns = 256

// defaultTransport is the upstream transport unless one is injected: the
// standard one (its dial is bounded; the wait for the answer is bounded
// around it, by waitingTransport, so a hung upstream costs a 504 rather
// than a goroutine forever), with three changes (README "Deploy", "Proxy
// variables"):
//
//   - no cap on idle connections across hosts (MaxIdleConns): the standard
//     cap of 100 is below MaxIdleConnsPerHost, so past 100 concurrent
//     requests each answer closed a connection the next request had to dial
//     again (measured at 200 connections: ~5 µs a request in dialing);
//   - no HTTP_PROXY: the upstream is the site owner's own app, named in
//     the config, and a proxy variable meant for the gateway's calls out
//     must not reroute every visitor's request (Proxy);
//   - the client's Accept-Encoding reaches the upstream as sent
//     (DisableCompression): otherwise, for a client that sent none, the
//     transport asks for gzip and then inflates the answer itself, work
//     no one asked for.
func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0
	t.MaxIdleConnsPerHost = upstreamIdleConns
	t.Proxy = nil
	t.DisableCompression = true
	return t
}

// costWriter keeps the upstream's cost header from the client where
// ModifyResponse does not see it: the ReverseProxy copies a 1xx answer's
// headers (103 Early Hints) straight to the ResponseWriter and calls
// WriteHeader, and it copies trailers after the body. WriteHeader of a 1xx
// removes the header; stripTrailers, once the ReverseProxy is done, removes
// it as a trailer.
type costWriter struct {
	http.ResponseWriter
	name string // canonical
}

func (w *costWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 {
		delete(w.Header(), w.name)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer
// (Flush, Hijack for an upgrade).
func (w *costWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// stripTrailers removes the cost header sent as a trailer, declared or not
// (http.TrailerPrefix): net/http writes trailers from the header map once
// the handler returns. A cost in a trailer is ignored (README "Limits").
func (w *costWriter) stripTrailers() {
	h := w.Header()
	delete(h, w.name)
	delete(h, http.TrailerPrefix+w.name)
}

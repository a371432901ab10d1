package gateway

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// logEntry collects what the gate learned about a request for the access
// log. It never holds tokens, cookies or query strings (they can carry
// Clerk handshake payloads).
type logEntry struct {
	rule     int // index in routes:, -1 for default_access
	access   proxy.Access
	routeID  string
	decision string // allow, sign_in, handshake, unauthorized, payment_required, deny, internal, redirect_canonical…
	reason   string
	userID   string
	source   string
}

// statusWriter records the status and size for the access log. Unwrap lets
// http.ResponseController reach the real writer, so flushing (SSE) and
// hijacking (WebSocket) work through it.
type statusWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusClientClosed is logged for a request whose client left before any
// answer was written.
const statusClientClosed = 499

func (s *Server) logRequest(r *http.Request, w *statusWriter, e *logEntry, start time.Time) {
	s.observe(e, start)
	if !s.log.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	status := w.status
	switch {
	case status != 0:
	case isUpgrade(r):
		// A hijacked connection (WebSocket) never writes a status here.
		status = http.StatusSwitchingProtocols
	default:
		// Nothing was written: the client went away before an answer
		// (nginx's 499, "client closed request").
		status = statusClientClosed
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes", w.bytes),
		slog.Duration("duration", s.now().Sub(start)),
		slog.String("decision", e.decision),
	}
	if e.access != "" {
		attrs = append(attrs, slog.String("access", string(e.access)), slog.Int("rule", e.rule))
	}
	if e.routeID != "" {
		attrs = append(attrs, slog.String("route", e.routeID))
	}
	if e.userID != "" {
		attrs = append(attrs, slog.String("user_id", e.userID), slog.String("via", e.source))
	}
	if e.reason != "" {
		attrs = append(attrs, slog.String("reason", e.reason))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// observe reports the request's decision to the metrics.
func (s *Server) observe(e *logEntry, start time.Time) {
	rule := "none"
	switch {
	case e.access == "":
	case e.rule < 0:
		rule = "default"
	default:
		rule = "routes[" + strconv.Itoa(e.rule) + "]"
	}
	s.obs.Decision(e.decision, rule, string(e.access), s.now().Sub(start))
}

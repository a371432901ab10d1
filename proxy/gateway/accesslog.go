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
	end := s.now()
	s.observe(e, end.Sub(start))
	h := s.log.Handler()
	if !h.Enabled(r.Context(), slog.LevelInfo) {
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
	// The record is made here rather than by Logger.LogAttrs, which walks
	// the stack for the caller's PC (unused: no handler adds the source)
	// on every request (README "Performance").
	rec := slog.NewRecord(end, slog.LevelInfo, "request", 0)
	rec.AddAttrs(
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes", w.bytes),
		slog.Duration("duration", end.Sub(start)),
	)
	rec.AddAttrs(slog.String("decision", e.decision))
	if e.access != "" {
		rec.AddAttrs(slog.String("access", string(e.access)), slog.Int("rule", e.rule))
	}
	if e.routeID != "" {
		rec.AddAttrs(slog.String("route", e.routeID))
	}
	if e.userID != "" {
		rec.AddAttrs(slog.String("user_id", e.userID), slog.String("via", e.source))
	}
	if e.reason != "" {
		rec.AddAttrs(slog.String("reason", e.reason))
	}
	_ = h.Handle(r.Context(), rec)
}

// observe reports the request's decision to the metrics.
func (s *Server) observe(e *logEntry, took time.Duration) {
	rule := "none"
	switch {
	case e.access == "":
	case e.rule < 0:
		rule = "default"
	default:
		rule = s.ruleLabel(e.rule)
	}
	s.obs.Decision(e.decision, rule, string(e.access), took)
}

// ruleLabel is the metrics label of routes[i], made once per config.
func (s *Server) ruleLabel(i int) string {
	if i < len(s.ruleLabels) {
		return s.ruleLabels[i]
	}
	return "routes[" + strconv.Itoa(i) + "]"
}

func ruleLabels(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "routes[" + strconv.Itoa(i) + "]"
	}
	return out
}

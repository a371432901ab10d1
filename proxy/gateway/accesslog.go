package gateway

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

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
	// keyID is the API key a request carried (its ID, never its secret),
	// and orgID the organisation of a key no person holds (an
	// organisation's key, whose userID is empty): who called, for the
	// site owner's audit of an API.
	keyID, orgID string
	// at is when the request came in: the one clock reading the gate's
	// decisions share (README "Performance"); zero outside ServeHTTP.
	at time.Time
}

// identify records who the request is: the user, how they were known,
// and for an API key its ID (and its organisation when no user holds it).
func (e *logEntry) identify(id *proxy.Identity) {
	e.userID, e.source, e.keyID = id.UserID, id.Source, id.KeyID
	if id.UserID == "" {
		e.orgID = id.OrgID
	}
}

// reqNow is the time the gate decides a request at: when it came in, or
// now for a request served outside ServeHTTP.
func (s *Server) reqNow(e *logEntry) time.Time {
	if e.at.IsZero() {
		return s.now()
	}
	return e.at
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

func (s *Server) logRequest(r *http.Request, req *request, start time.Time) {
	end := s.now()
	w, e := &req.sw, &req.log
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
	req.line = accessLine{end: end, took: end.Sub(start), method: r.Method, path: r.URL.Path, status: status, bytes: w.bytes, e: e}
	if s.accessLog != nil && jsonTimeOK(end) {
		// The line slog's JSON handler would write, appended straight
		// into the log's batch (README "Performance").
		s.accessLog.AppendLine(&req.line)
		return
	}
	_ = h.Handle(r.Context(), req.line.record())
}

// record is the line as a slog record. It is made here rather than by
// Logger.LogAttrs, which walks the stack for the caller's PC (unused: no
// handler adds the source) on every request (README "Performance").
func (l *accessLine) record() slog.Record {
	e := l.e
	rec := slog.NewRecord(l.end, slog.LevelInfo, "request", 0)
	rec.AddAttrs(
		slog.String("method", l.method),
		slog.String("path", l.path),
		slog.Int("status", l.status),
		slog.Int64("bytes", l.bytes),
		slog.Duration("duration", l.took),
	)
	rec.AddAttrs(slog.String("decision", e.decision))
	if e.access != "" {
		rec.AddAttrs(slog.String("access", string(e.access)), slog.Int("rule", e.rule))
	}
	if e.routeID != "" {
		rec.AddAttrs(slog.String("route", e.routeID))
	}
	switch {
	case e.userID != "":
		rec.AddAttrs(slog.String("user_id", e.userID), slog.String("via", e.source))
	case e.orgID != "":
		rec.AddAttrs(slog.String("org_id", e.orgID), slog.String("via", e.source))
	}
	if e.keyID != "" {
		rec.AddAttrs(slog.String("key_id", e.keyID))
	}
	if e.reason != "" {
		rec.AddAttrs(slog.String("reason", e.reason))
	}
	return rec
}

// LineBuffer takes whole log lines, each appended in place to the log's
// pending batch (cmd/tollgate's logWriter), so that the access log's line
// costs no copy and no allocation (README "Performance"). Options.AccessLog
// is given one only where Options.Logger is slog's JSON handler without
// options writing to the same batch: the lines are the ones that handler
// would write.
type LineBuffer interface {
	AppendLine(l Line)
}

// Line is one log line, appended to dst with its newline.
type Line interface {
	AppendTo(dst []byte) []byte
}

// accessLine is a request's access log record, encoded as slog's JSON
// handler (no options: no source, no ReplaceAttr, no groups) encodes it,
// byte for byte: TestAccessLine_MatchesSlog holds it to that.
type accessLine struct {
	end          time.Time
	took         time.Duration
	method, path string
	status       int
	bytes        int64
	e            *logEntry
}

// jsonTimeOK: slog writes a time outside years 0–9999 with an error
// instead (RFC 3339 has four-digit years); such a line goes through slog.
func jsonTimeOK(t time.Time) bool {
	y := t.Year()
	return y >= 0 && y < 10000
}

func (l *accessLine) AppendTo(b []byte) []byte {
	e := l.e
	b = append(b, `{"time":"`...)
	b = l.end.Round(0).AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request","method":`...)
	b = appendJSONString(b, l.method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, l.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(l.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, l.bytes, 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, int64(l.took), 10)
	b = append(b, `,"decision":`...)
	b = appendJSONString(b, e.decision)
	if e.access != "" {
		b = append(b, `,"access":`...)
		b = appendJSONString(b, string(e.access))
		b = append(b, `,"rule":`...)
		b = strconv.AppendInt(b, int64(e.rule), 10)
	}
	if e.routeID != "" {
		b = append(b, `,"route":`...)
		b = appendJSONString(b, e.routeID)
	}
	switch {
	case e.userID != "":
		b = append(b, `,"user_id":`...)
		b = appendJSONString(b, e.userID)
		b = append(b, `,"via":`...)
		b = appendJSONString(b, e.source)
	case e.orgID != "":
		b = append(b, `,"org_id":`...)
		b = appendJSONString(b, e.orgID)
		b = append(b, `,"via":`...)
		b = appendJSONString(b, e.source)
	}
	if e.keyID != "" {
		b = append(b, `,"key_id":`...)
		b = appendJSONString(b, e.keyID)
	}
	if e.reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, e.reason)
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s quoted and escaped as slog's JSON handler
// escapes strings (log/slog's appendEscapedJSONString): \" and \\, \n \r
// \t, other control characters as \u00XX, each byte of invalid UTF-8 as
// \ufffd, U+2028 and U+2029 as \u2028 and \u2029; <, > and & as they are.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

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

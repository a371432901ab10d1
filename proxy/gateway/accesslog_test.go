package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tollgate/tollgate/proxy"
)

// slogLine is what slog's JSON handler, as `tollgate serve` makes it (no
// options), writes for the line's record.
func slogLine(t testing.TB, l *accessLine) string {
	t.Helper()
	var buf bytes.Buffer
	if err := slog.NewJSONHandler(&buf, nil).Handle(context.Background(), l.record()); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// hostile are strings a request can put in the access log (its method and
// path) or that a misbehaving Clerk or config could (reasons, IDs).
var hostile = []string{
	"",
	"/plain/path",
	`quote " and backslash \ and both \"`,
	"controls \x00\x01\x07\x08\x0b\x0c\x0e\x1b\x1f\x7f and \t\n\r",
	"invalid UTF-8 \xff \xc3\x28 \xe2\x82 \xed\xa0\x80 end\xf0",
	"line separators \u2028 and \u2029, near misses \u2027 \u202a",
	`HTML <script>alert("x")</script> & &amp; '`,
	"unicode é ü 日本 🎉 \ufeff \ufffd",
	"}\n{\"forged\":\"line\"}",
	strings.Repeat("long/", 200),
}

func TestAccessLine_MatchesSlog(t *testing.T) {
	end := time.Date(2026, 12, 3, 17, 4, 5, 123456789, time.UTC)
	berlin := time.FixedZone("CET", 3600)
	entries := []logEntry{
		{decision: "allow", rule: 2, access: proxy.AccessPaid, routeID: "415VNA", userID: "user_ada", source: "cookie"},
		{decision: "allow", rule: 2, access: proxy.AccessPaid, routeID: "258AVO", userID: "user_ada", source: "api_key", keyID: "key_1"},
		{decision: "allow", rule: 2, access: proxy.AccessPaid, routeID: "258AVO", orgID: "org_acme", source: "api_key", keyID: "key_2"},
		{decision: "unauthorized", rule: -1, access: proxy.AccessSignedIn, reason: "session-token-and-uat-missing"},
		{decision: "allow", rule: 0, access: proxy.AccessPublic},
		{decision: "internal"},
		{decision: ""},
	}
	type tc struct {
		name string
		l    accessLine
	}
	var cases []tc
	for i := range entries {
		e := &entries[i]
		cases = append(cases, tc{e.decision, accessLine{end: end, took: 1234567 * time.Nanosecond, method: "GET", path: "/routes/415VNA/x", status: 200, bytes: 1024, e: e}})
	}
	for _, s := range hostile {
		e := &logEntry{decision: s, rule: 7, access: proxy.Access(s), routeID: s, userID: s, source: s, reason: s, keyID: s}
		cases = append(cases, tc{"hostile " + s, accessLine{end: end, method: s, path: s, status: 402, e: e}})
		org := &logEntry{decision: s, orgID: s, source: s, keyID: s}
		cases = append(cases, tc{"hostile org " + s, accessLine{end: end, method: s, path: s, status: 200, e: org}})
	}
	for _, when := range []time.Time{
		end.In(berlin), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 100, time.UTC),
		time.Now(), // with a monotonic reading and the local zone
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
	} {
		cases = append(cases, tc{"time " + when.String(), accessLine{end: when, took: -5, method: "POST", path: "/", status: 499, bytes: -1, e: &entries[0]}})
	}
	cases = append(cases, tc{"extremes", accessLine{end: end, took: 1<<63 - 1, status: -1 << 62, bytes: 1<<63 - 1, e: &logEntry{decision: "x", rule: -1 << 62, access: "a"}}})
	for _, c := range cases {
		if !jsonTimeOK(c.l.end) {
			t.Fatalf("%s: the time is outside what the line encodes", c.name)
		}
		if diff := cmp.Diff(slogLine(t, &c.l), string(c.l.AppendTo(nil))); diff != "" {
			t.Errorf("%s: line differs from slog's (-slog +line):\n%s", c.name, diff)
		}
	}
}

// A time slog cannot write as RFC 3339 goes through slog itself.
func TestAccessLine_YearsOutsideRFC3339GoThroughSlog(t *testing.T) {
	for _, y := range []int{-1, 10000} {
		if jsonTimeOK(time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("year %d taken by the line", y)
		}
	}
}

func FuzzAccessLine(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, s, s, int64(3))
	}
	f.Fuzz(func(t *testing.T, method, path, reason string, n int64) {
		e := &logEntry{decision: reason, rule: int(n), access: proxy.Access(method), routeID: path, source: method, reason: reason, keyID: path}
		if n%2 == 0 {
			e.userID = reason
		} else {
			e.orgID = reason
		}
		l := &accessLine{end: time.Unix(n%(1<<34), n), took: time.Duration(n), method: method, path: path, status: int(n), bytes: n, e: e}
		if !jsonTimeOK(l.end) {
			return
		}
		if got, want := string(l.AppendTo(nil)), slogLine(t, l); got != want {
			t.Errorf("line %q, slog %q", got, want)
		}
	})
}

// lockedLog is one output shared by a slog handler and a LineBuffer, as
// cmd/tollgate's logWriter is.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) AppendLine(line Line) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(line.AppendTo(nil))
}

func (l *lockedLog) requestLines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range strings.SplitAfter(l.buf.String(), "\n") {
		if strings.Contains(s, `"msg":"request"`) {
			out = append(out, s)
		}
	}
	return out
}

// The gateway writes the same access log through Options.AccessLog as
// through slog's JSON handler alone, for requests of every outcome.
func TestGate_AccessLogLinesAreSlogs(t *testing.T) {
	viaSlog, viaLines := &lockedLog{}, &lockedLog{}
	fxSlog := newGateFixtureWith(t, nil, nil, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(viaSlog, nil)) })
	fxLines := newGateFixtureWith(t, nil, nil, func(o *Options) {
		o.Logger, o.AccessLog = slog.New(slog.NewJSONHandler(viaLines, nil)), viaLines
	})
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	fxSlog.ents[ada] = &proxy.Entitlements{Subscriptions: []proxy.Subscription{{ID: "sub_1", Plan: "pro", Status: proxy.StatusActive}}}
	fxLines.ents[ada] = fxSlog.ents[ada]
	for _, fx := range []*gateFixture{fxSlog, fxLines} {
		fx.do("GET", "/routes/415VNA/x", map[string]string{"X-Test-User": "user_ada"}).Body.Close()
		fx.do("GET", "/routes/415VNA/x", map[string]string{"X-Test-User": "user_bob", "Accept": "text/html"}).Body.Close()
		fx.do("GET", "/private/x", nil).Body.Close()
		fx.do("GET", "/public/%22%3Cb%3E%E2%80%A8%FF", nil).Body.Close()
		fx.do("DELETE", "/items/1", map[string]string{"X-Test-User": "user_ada"}).Body.Close()
		fx.do("GET", "/.tollgate/healthz", nil).Body.Close()
	}
	want, got := viaSlog.requestLines(), viaLines.requestLines()
	if len(want) != 6 {
		t.Fatalf("slog wrote %d request lines, want 6:\n%s", len(want), strings.Join(want, ""))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("access log through Options.AccessLog differs from slog's (-slog +lines):\n%s", diff)
	}
}

// BenchmarkAccessLine: a paid request's access log line, by slog's JSON
// handler (/slog) and appended in place (/line).
func BenchmarkAccessLine(b *testing.B) {
	e := &logEntry{decision: "allow", rule: 2, access: proxy.AccessPaid, routeID: "415VNA", userID: "user_2abcdefghijklmnopqrstuvwxyz", source: "cookie"}
	l := &accessLine{end: time.Now(), took: 83 * time.Microsecond, method: "GET", path: "/routes/415VNA/some/page", status: 200, bytes: 1024, e: e}
	b.Run("slog", func(b *testing.B) {
		b.ReportAllocs()
		h := slog.NewJSONHandler(io.Discard, nil)
		for b.Loop() {
			_ = h.Handle(context.Background(), l.record())
		}
	})
	b.Run("line", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = l.AppendTo(buf[:0])
		}
	})
}

package demoapp

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newDemo(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	if opts.Now == nil {
		at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		opts.Now = func() time.Time { return at }
	}
	srv := httptest.NewServer(New(opts))
	t.Cleanup(srv.Close)
	return srv
}

// noRedirect is a client that returns redirects instead of following them.
func noRedirect(srv *httptest.Server) *http.Client {
	cl := *srv.Client()
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cl
}

func get(t *testing.T, srv *httptest.Server, path string, h http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	res, err := noRedirect(srv).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func identityHeaders(user string) http.Header {
	return http.Header{
		"X-Tollgate-User":   {user},
		"X-Tollgate-Org":    {"org_acme"},
		"X-Tollgate-Plan":   {"pro"},
		"X-Tollgate-Status": {"active"},
		"X-Tollgate-Route":  {"258AVO"},
		"X-Tollgate-Key":    {"key_x"},
	}
}

// Ensure /api/v1/whoami echoes the identity headers.
func TestWhoami(t *testing.T) {
	srv := newDemo(t, Options{})
	res, b := get(t, srv, "/api/v1/whoami", identityHeaders("user_grace"))
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("whoami: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var got whoamiBody
	if err := json.Unmarshal([]byte(b), &got); err != nil {
		t.Fatal(err)
	}
	want := whoamiBody{SignedIn: true, User: "user_grace", Org: "org_acme", Plan: "pro", Status: "active",
		Route: "258AVO", Method: "GET", Path: "/api/v1/whoami", Time: "2026-05-01T12:00:00Z"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("whoami (-want +got):\n%s", diff)
	}

	_, b = get(t, srv, "/api/v1/whoami", nil)
	if !strings.Contains(b, `"signed_in":false`) {
		t.Errorf("anonymous whoami: %s", b)
	}
	res, b = get(t, srv, "/api/v1/time", nil)
	if res.StatusCode != 200 || !strings.Contains(b, `"unix":1777636800`) {
		t.Errorf("time: %d %s", res.StatusCode, b)
	}
	if res, _ := get(t, srv, "/api/v1/nothing", nil); res.StatusCode != 404 {
		t.Errorf("unknown API: %d", res.StatusCode)
	}
}

// Ensure pages render, show the identity headers escaped, and link the
// demo routes.
func TestPages(t *testing.T) {
	srv := newDemo(t, Options{PollInterval: 2 * time.Second})

	res, b := get(t, srv, "/", nil)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("home: %d", res.StatusCode)
	}
	for _, want := range []string{`href="/routes/415VNA/"`, `href="/routes/258AVO/"`, `href="/app/"`, `href="/settings/"`,
		`href="/assets/app.css"`, "Not signed in"} {
		if !strings.Contains(b, want) {
			t.Errorf("home lacks %q", want)
		}
	}

	h := identityHeaders(`<b>user_x</b>"'`)
	res, b = get(t, srv, "/routes/415VNA/", h)
	if res.StatusCode != 200 || !strings.Contains(b, "Harbour charts") || !strings.Contains(b, "A paid route") {
		t.Errorf("route page: %d", res.StatusCode)
	}
	if strings.Contains(b, "<b>user_x") || !strings.Contains(b, "&lt;b&gt;user_x&lt;/b&gt;") {
		t.Error("identity header not escaped")
	}
	for _, want := range []string{`data-header="X-Tollgate-Plan">pro<`, `data-header="X-Tollgate-Route">258AVO<`,
		`data-header="X-Tollgate-Org">org_acme<`, `data-header="X-Tollgate-Status">active<`, `data-header="X-Tollgate-Key">key_x<`, `href="/.tollgate/account"`} {
		if !strings.Contains(b, want) {
			t.Errorf("route page lacks %q", want)
		}
	}

	if res, b := get(t, srv, "/routes/ZZZ999/deep/page", nil); res.StatusCode != 200 || !strings.Contains(b, "Route ZZZ999") {
		t.Errorf("unknown route: %d", res.StatusCode)
	}
	if res, _ := get(t, srv, "/routes/415VNA", nil); res.StatusCode/100 != 3 ||
		res.Header.Get("Location") != "/routes/415VNA/" {
		t.Errorf("route without slash: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if res, b := get(t, srv, "/settings/", h); res.StatusCode != 200 || !strings.Contains(b, "Settings") {
		t.Errorf("settings: %d", res.StatusCode)
	}
	if res, b := get(t, srv, "/app/", h); res.StatusCode != 200 || !strings.Contains(b, `data-interval="2000"`) ||
		!strings.Contains(b, `src="/assets/app.js"`) {
		t.Errorf("app page: %d", res.StatusCode)
	}
	if res, b := get(t, srv, "/assets/app.js", nil); res.StatusCode != 200 ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") || !strings.Contains(b, "fetch(\"/api/v1/whoami\"") {
		t.Errorf("app.js: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if res, _ := get(t, srv, "/assets/app.css", nil); res.StatusCode != 200 ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "text/css") {
		t.Errorf("app.css: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if res, b := get(t, srv, "/nope<script>", nil); res.StatusCode != 404 || strings.Contains(b, "<script>") {
		t.Errorf("not found: %d", res.StatusCode)
	}
}

type sseEvent struct{ id, event, data string }

func readEvent(t *testing.T, r *bufio.Reader) (sseEvent, error) {
	t.Helper()
	var e sseEvent
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return e, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return e, nil
		}
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "id":
			e.id = v
		case "event":
			e.event = v
		case "data":
			e.data = v
		}
	}
}

// Ensure /events flushes each tick as it happens and ends after Ticks.
func TestEvents(t *testing.T) {
	t.Run("FirstEventFlushed", func(t *testing.T) {
		// With an hour between ticks, the first event can only arrive if it
		// was flushed while the stream stays open.
		srv := newDemo(t, Options{TickInterval: time.Hour})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("Content-Type %q", ct)
		}
		e, err := readEvent(t, bufio.NewReader(res.Body))
		if err != nil {
			t.Fatalf("first event: %v", err)
		}
		if e.id != "1" || e.event != "tick" || !strings.Contains(e.data, `"n":1`) || !strings.Contains(e.data, `"of":10`) {
			t.Errorf("first event %+v", e)
		}
	})

	t.Run("WholeStream", func(t *testing.T) {
		srv := newDemo(t, Options{TickInterval: time.Millisecond, Ticks: 3})
		res, err := srv.Client().Get(srv.URL + "/events")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		r := bufio.NewReader(res.Body)
		var got []string
		for {
			e, err := readEvent(t, r)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e.id+":"+e.event)
		}
		if diff := cmp.Diff([]string{"1:tick", "2:tick", "3:tick", ":done"}, got); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

// wsClient is a hand-written WebSocket client for the tests.
type wsClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialWS(t *testing.T, srv *httptest.Server) *wsClient {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The key and accept value are RFC 6455's own example.
	_, err = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: "+srv.Listener.Addr().String()+"\r\n"+
		"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"+
		"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols ||
		res.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" ||
		!strings.EqualFold(res.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("upgrade: %d %v", res.StatusCode, res.Header)
	}
	return &wsClient{t: t, conn: conn, r: r}
}

// send writes one frame, masked unless unmasked is set.
func (c *wsClient) send(fin bool, op byte, payload []byte, unmasked bool) {
	c.t.Helper()
	b0 := op
	if fin {
		b0 |= 0x80
	}
	mask := byte(0x80)
	if unmasked {
		mask = 0
	}
	frame := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		frame = append(frame, mask|byte(n))
	case n <= 0xffff:
		frame = binary.BigEndian.AppendUint16(append(frame, mask|126), uint16(n))
	default:
		frame = binary.BigEndian.AppendUint64(append(frame, mask|127), uint64(n))
	}
	body := append([]byte(nil), payload...)
	if !unmasked {
		var key [4]byte
		_, _ = rand.Read(key[:])
		frame = append(frame, key[:]...)
		for i := range body {
			body[i] ^= key[i%4]
		}
	}
	if _, err := c.conn.Write(append(frame, body...)); err != nil {
		c.t.Fatal(err)
	}
}

// recv reads one server frame, which must be final and unmasked.
func (c *wsClient) recv() (byte, []byte) {
	c.t.Helper()
	var hdr [2]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		c.t.Fatal(err)
	}
	if hdr[0]&0x80 == 0 || hdr[1]&0x80 != 0 {
		c.t.Fatalf("server frame header %08b %08b: want FIN and no mask", hdr[0], hdr[1])
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		_, _ = io.ReadFull(c.r, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		_, _ = io.ReadFull(c.r, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.r, p); err != nil {
		c.t.Fatal(err)
	}
	return hdr[0] & 0x0f, p
}

func (c *wsClient) expect(op byte, payload string) {
	c.t.Helper()
	gotOp, got := c.recv()
	if gotOp != op || string(got) != payload {
		c.t.Errorf("got frame op %#x %q, want op %#x %q", gotOp, got, op, payload)
	}
}

func (c *wsClient) expectEOF() {
	c.t.Helper()
	if _, err := c.r.ReadByte(); err != io.EOF {
		c.t.Errorf("after close: %v, want EOF", err)
	}
}

// Ensure /ws echoes text and binary messages (also fragmented and long
// ones), answers pings and completes the closing handshake.
func TestWebSocketEcho(t *testing.T) {
	srv := newDemo(t, Options{})

	t.Run("Echo", func(t *testing.T) {
		c := dialWS(t, srv)
		c.send(true, wsOpText, []byte("hello, tollgate"), false)
		c.expect(wsOpText, "hello, tollgate")

		c.send(false, wsOpText, []byte("frag"), false)
		c.send(true, wsOpPing, []byte("are you there"), false) // control frames may interleave
		c.expect(wsOpPong, "are you there")
		c.send(false, wsOpCont, []byte("men"), false)
		c.send(true, wsOpCont, []byte("ted ✓"), false)
		c.expect(wsOpText, "fragmented ✓")

		long := strings.Repeat("0123456789", 30) // 300 bytes: 16-bit length
		c.send(true, wsOpBinary, []byte(long), false)
		c.expect(wsOpBinary, long)
		longer := strings.Repeat("x", 70000) // over 64 KiB: refused
		c.send(true, wsOpText, []byte("ok"), false)
		c.expect(wsOpText, "ok")

		c.send(true, wsOpClose, wsClosePayload(1000, "bye"), false)
		c.expect(wsOpClose, string(wsClosePayload(1000, "")))
		c.expectEOF()

		c = dialWS(t, srv)
		c.send(true, wsOpBinary, []byte(longer), false)
		c.expect(wsOpClose, string(wsClosePayload(1009, "message too big")))
		c.expectEOF()
	})

	t.Run("ProtocolErrors", func(t *testing.T) {
		for name, tc := range map[string]struct {
			fin      bool
			op       byte
			payload  string
			unmasked bool
			code     uint16
		}{
			"unmasked":          {true, wsOpText, "hi", true, 1002},
			"bad UTF-8":         {true, wsOpText, "\xff\xfe", false, 1007},
			"orphan cont":       {true, wsOpCont, "x", false, 1002},
			"fragmented ping":   {false, wsOpPing, "x", false, 1002},
			"reserved op":       {true, 0x3, "x", false, 1002},
			"one-byte close":    {true, wsOpClose, "x", false, 1002},
			"empty close is ok": {true, wsOpClose, "", false, 1000},
		} {
			t.Run(name, func(t *testing.T) {
				c := dialWS(t, srv)
				c.send(tc.fin, tc.op, []byte(tc.payload), tc.unmasked)
				op, p := c.recv()
				if op != wsOpClose || len(p) < 2 || binary.BigEndian.Uint16(p) != tc.code {
					t.Errorf("got op %#x payload %q, want close %d", op, p, tc.code)
				}
				c.expectEOF()
			})
		}
	})

	t.Run("NotAnUpgrade", func(t *testing.T) {
		if res, _ := get(t, srv, "/ws", nil); res.StatusCode != http.StatusUpgradeRequired {
			t.Errorf("plain GET /ws: %d", res.StatusCode)
		}
		h := http.Header{}
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
		h.Set("Sec-WebSocket-Version", "13")
		h.Set("Sec-WebSocket-Key", "short")
		if res, _ := get(t, srv, "/ws", h); res.StatusCode != http.StatusBadRequest {
			t.Errorf("bad key: %d", res.StatusCode)
		}
		h.Set("Sec-WebSocket-Version", "8")
		if res, _ := get(t, srv, "/ws", h); res.StatusCode != http.StatusUpgradeRequired ||
			res.Header.Get("Sec-WebSocket-Version") != "13" {
			t.Errorf("old version: %d", res.StatusCode)
		}
	})
}

package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Issue 8, "Slow bodies", "WebSockets outlive sign-out" and "Client errors
// counted as upstream failures": each attack over real TCP against the
// real gateway that `tollgate demo` wires.

// mustRunDemoLogged is mustRunDemoWith with the gateway's log kept
// for the test to read.
func mustRunDemoLogged(t *testing.T, o demoOptions) (*demo, *clock, *lockedWriter) {
	t.Helper()
	logs := &lockedWriter{w: &bytes.Buffer{}}
	o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, clk := mustRunDemoWith(t, o)
	return d, clk, logs
}

// cookieHeader is the Cookie header a browser would send to the gateway.
func cookieHeader(jar http.CookieJar, d *demo) string {
	u, _ := url.Parse(d.URL)
	var cookies []string
	for _, c := range jar.Cookies(u) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	return strings.Join(cookies, "; ")
}

// rawConn dials the gateway and writes head (and body, if any) as is.
func rawConn(t *testing.T, d *demo, head string, body []byte) net.Conn {
	t.Helper()
	u, _ := url.Parse(d.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, strings.ReplaceAll(head, "HOST", u.Host)); err != nil {
		t.Fatal(err)
	}
	if len(body) > 0 {
		if _, err := conn.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

// answer reads the gateway's response on conn, then makes sure the gateway
// closes the connection; it fails the test if either takes longer than
// within (a bound on a hang, not a measurement).
func answer(t *testing.T, conn net.Conn, within time.Duration) *http.Response {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(within))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Errorf("no answer: %v", err)
		return nil
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if _, err := br.ReadByte(); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the gateway kept the connection open after answering %d", resp.StatusCode)
	}
	return resp
}

func TestDemo_TricklingBodiesAreCut(t *testing.T) {
	d, clk, logs := mustRunDemoLogged(t, demoOptions{OwnBodyTimeout: 2 * time.Second})
	// More trickling deliveries than the gateway once read at a time (64;
	// red team: 70 of them kept Stripe's events out), from one address.
	const n = 200

	// n webhook deliveries announce 100 kB and send one byte of it.
	trickle := func(path string) net.Conn {
		return rawConn(t, d, "POST "+path+" HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"+
			"Stripe-Signature: t=1,v1=00\r\nSvix-Signature: v1,AA==\r\nContent-Length: 100000\r\n\r\n", []byte("{"))
	}
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = trickle("/.tollgate/webhooks/stripe")
	}
	// So do a Clerk webhook, a form, requests the gate answers itself
	// (sign in, deny, a non-canonical path; the server drains a body
	// before answering) and the admin API (on its own listener).
	others := []net.Conn{trickle("/.tollgate/webhooks/clerk"), trickle("/.tollgate/checkout"),
		trickle("/routes/415VNA/"), trickle("/admin/x"), trickle("/a/../settings/")}
	au, _ := url.Parse(d.AdminURL)
	adm, err := net.Dial("tcp", au.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	fmt.Fprintf(adm, "POST /api/sync HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nc", au.Host, d.AdminToken)
	others = append(others, adm)

	// While they trickle, a real signed delivery is read and answered.
	ev := []byte(`{"id":"evt_during_flood","object":"event","type":"balance.available","livemode":false,"data":{"object":{"object":"balance"}}}`)
	if code := postStripeEvent(t, d, clk.Now(), ev); code != http.StatusOK {
		t.Errorf("a signed delivery during %d trickling ones: %d, want 200", n, code)
	}

	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			resp := answer(t, c, 30*time.Second)
			if resp == nil {
				return
			}
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		})
	}
	for _, c := range others {
		wg.Go(func() { answer(t, c, 30*time.Second) })
	}
	wg.Wait()
	// Every trickling delivery was cut at its deadline and closed.
	if codes[http.StatusBadRequest] != n {
		t.Errorf("answers by status: %v; want all %d cut with 400", codes, n)
	}

	// The slots were given back: a whole (if unsigned) delivery is read
	// and judged at once.
	resp, err := http.Post(d.URL+"/.tollgate/webhooks/stripe", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a whole unsigned delivery after the flood: %d, want 400", resp.StatusCode)
	}
	if strings.Contains(logs.String(), "upstream error") {
		t.Errorf("tollgate's own endpoints logged upstream errors:\n%s", logs.String())
	}
}

// TestDemo_ClientBodyErrorsAreTheClients: a malformed chunked body is a 400,
// a stalled one a 408; neither is an upstream error in the log or the
// metrics. A steady upload of any length passes, and neither SSE nor
// WebSockets, busy or idle, are cut by the idle rule.
func TestDemo_ClientBodyErrorsAreTheClients(t *testing.T) {
	const idle = time.Second
	d, _, logs := mustRunDemoLogged(t, demoOptions{Tweak: func(c *proxy.Config) { c.Timeouts.BodyIdle = idle }})
	jar, _ := cookiejar.New(nil)
	signIn(t, d, jar, "user_ada")
	cookies := cookieHeader(jar, d)

	// WebSockets opened first: one stays idle throughout, one is busy.
	idleWS := dialWS(t, d, "/ws", cookies)
	busyWS := dialWS(t, d, "/ws", cookies)

	// Broken chunked encoding.
	conn := rawConn(t, d, "POST /api/v1/upload HTTP/1.1\r\nHost: HOST\r\nCookie: "+cookies+"\r\n"+
		"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", nil)
	if resp := answer(t, conn, 30*time.Second); resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed chunked body: %v, want 400", resp)
	}

	// A steady upload that lasts several idle periods, then, on the same
	// connection, an SSE stream that outlives several more: nothing the
	// upload left on the connection cuts it.
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	pr, pw := io.Pipe()
	const chunks, chunkSize = 40, 64 << 10
	go func() {
		tick := time.NewTicker(idle / 10) // the pace of the upload, not a synchronisation
		defer tick.Stop()
		buf := make([]byte, chunkSize)
		for i := 0; i < chunks; i++ {
			<-tick.C
			_, _ = rand.Read(buf)
			if _, err := pw.Write(buf); err != nil {
				return
			}
			if i%10 == 0 {
				if err := busyWS.echo("still here"); err != nil {
					pw.CloseWithError(err)
					return
				}
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", d.URL+"/api/v1/upload", pr)
	req.Header.Set("Cookie", cookies)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("steady upload: %v", err)
	}
	var got struct{ Bytes int64 }
	_ = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != 200 || got.Bytes != chunks*chunkSize {
		t.Fatalf("steady upload over %v: status %d, %d bytes arrived, want 200 and %d", chunks*idle/10, resp.StatusCode, got.Bytes, chunks*chunkSize)
	}
	req, _ = http.NewRequest("GET", d.URL+"/events", nil)
	req.Header.Set("Cookie", cookies)
	req.Header.Set("Accept", "text/event-stream")
	resp, err = c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("SSE after the upload: %v %v", resp, err)
	}
	sse := bufio.NewReader(resp.Body)
	for ticks := 0; ticks < 3; {
		line, err := sse.ReadString('\n')
		if err != nil {
			t.Fatalf("SSE cut after %d ticks: %v", ticks, err)
		}
		if strings.HasPrefix(line, "event: tick") {
			ticks++
		}
	}
	resp.Body.Close()

	// A stalled upload: ten bytes of a megabyte, then nothing.
	conn = rawConn(t, d, "POST /api/v1/upload HTTP/1.1\r\nHost: HOST\r\nCookie: "+cookies+"\r\n"+
		"Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n", []byte("0123456789"))
	if resp := answer(t, conn, 30*time.Second); resp == nil || resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("stalled upload: %v, want 408", resp)
	}

	// The stall took longer than the idle timeout: the idle WebSocket,
	// open all along, and the busy one still echo.
	for name, ws := range map[string]*wsClient{"idle": idleWS, "busy": busyWS} {
		if err := ws.echo("after the stall"); err != nil {
			t.Errorf("%s WebSocket: %v", name, err)
		}
	}

	if l := logs.String(); strings.Contains(l, "upstream error") {
		t.Errorf("a client's body was logged as an upstream error:\n%s", l)
	}
	m := scrapeMetrics(t, d)
	if v := metricValue(m, `tollgate_upstream_response_seconds_count{code="5xx"}`); v != "" {
		t.Errorf("client body errors counted as upstream 5xx: %s", v)
	}
	for _, reason := range []string{"client_body_malformed", "client_body_idle"} {
		if v := metricValue(m, `tollgate_client_body_errors_total{reason="`+reason+`"}`); v != "1" {
			t.Errorf("tollgate_client_body_errors_total{reason=%q} = %q, want 1", reason, v)
		}
	}
}

// wsClient is a minimal WebSocket client for these tests.
type wsClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
	mu   sync.Mutex
}

// dialWS opens a WebSocket through the gateway and fails the test unless
// it is switched.
func dialWS(t *testing.T, d *demo, path, cookies string) *wsClient {
	t.Helper()
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	conn := rawConn(t, d, "GET "+path+" HTTP/1.1\r\nHost: HOST\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "+key+"\r\nCookie: "+cookies+"\r\n\r\n", nil)
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("WebSocket %s: %v %v", path, resp, err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("WebSocket %s: bad Sec-WebSocket-Accept", path)
	}
	return &wsClient{t: t, conn: conn, br: br}
}

// echo sends a text message and reads it back.
func (c *wsClient) echo(msg string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	mask := []byte{7, 1, 9, 3}
	frame := []byte{0x81, 0x80 | byte(len(msg))}
	frame = append(frame, mask...)
	for i := range len(msg) {
		frame = append(frame, msg[i]^mask[i%4])
	}
	if _, err := c.conn.Write(frame); err != nil {
		return err
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(c.br, hdr); err != nil {
		return err
	}
	got := make([]byte, hdr[1]&0x7f)
	if _, err := io.ReadFull(c.br, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// closedWithin waits for the gateway to close the tunnel: a read that ends
// in EOF or a reset. It reports false if the tunnel is still open at the
// end of within (a bound on a hang, not a measurement).
func (c *wsClient) closedWithin(within time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.conn.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c.br)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// tunnelClosedFor reports whether the gateway logged closing a tunnel on
// path for reason.
func tunnelClosedFor(logs *lockedWriter, path, reason string) bool {
	for line := range strings.SplitSeq(logs.String(), "\n") {
		var e struct{ Msg, Reason, Path string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "tunnel closed" && e.Path == path && e.Reason == reason {
			return true
		}
	}
	return false
}

func TestDemo_SignOutClosesTunnels(t *testing.T) {
	d, clk, logs := mustRunDemoLogged(t, demoOptions{})
	jar, _ := cookiejar.New(nil)
	signIn(t, d, jar, "user_ada")
	cookies := cookieHeader(jar, d)
	gated := dialWS(t, d, "/ws", cookies)
	public := dialWS(t, d, "/assets/ws", cookies)
	for _, ws := range []*wsClient{gated, public} {
		if err := ws.echo("hello"); err != nil {
			t.Fatal(err)
		}
	}
	// A reload in between: the open tunnels are carried over.
	if err := d.gateway.Reload(d.Config); err != nil {
		t.Fatal(err)
	}

	// Sign-out (the POST the sign-out page makes).
	c := noRedirects(jar)
	if resp := form(t, c, d.URL+"/.tollgate/sign-out", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	if !gated.closedWithin(10 * time.Second) {
		t.Fatal("the signed_in tunnel is still open after sign-out")
	}
	if !tunnelClosedFor(logs, "/ws", "tunnel_session_revoked") {
		t.Errorf("no log of the tunnel closed for the revocation:\n%s", logs.String())
	}
	if err := public.echo("still public"); err != nil {
		t.Errorf("the public tunnel was closed too: %v", err)
	}
	// HTTP with the same cookies agrees.
	if code, _ := whoami(t, noRedirects(nil), d, withHeader(api, "Cookie", cookies)); code != http.StatusUnauthorized {
		t.Errorf("HTTP after sign-out: %d, want 401", code)
	}

	// Clerk's user.deleted webhook ends the tunnels of every session of
	// the user, opened before it.
	jar2, _ := cookiejar.New(nil)
	signIn(t, d, jar2, "user_grace")
	grace := dialWS(t, d, "/ws", cookieHeader(jar2, d))
	if err := grace.echo("hi"); err != nil {
		t.Fatal(err)
	}
	if resp := postSvix(t, d, clk.Now(), `{"type":"user.deleted","object":"event","data":{"id":"user_grace","object":"user","deleted":true}}`, ""); resp.StatusCode != 200 {
		t.Fatalf("Clerk webhook: %d", resp.StatusCode)
	}
	if !grace.closedWithin(10 * time.Second) {
		t.Error("the tunnel of a deleted user is still open")
	}
}

func TestDemo_TunnelMaxLifetime(t *testing.T) {
	d, _, logs := mustRunDemoLogged(t, demoOptions{Tweak: func(c *proxy.Config) { c.Timeouts.TunnelMaxLifetime = 2 * time.Second }})
	jar, _ := cookiejar.New(nil)
	signIn(t, d, jar, "user_ada")
	cookies := cookieHeader(jar, d)
	public := dialWS(t, d, "/assets/ws", cookies)
	gated := dialWS(t, d, "/ws", cookies)
	if err := gated.echo("hello"); err != nil {
		t.Fatal(err)
	}
	if !gated.closedWithin(30 * time.Second) {
		t.Fatal("the signed_in tunnel outlived timeouts.tunnel_max_lifetime")
	}
	if !tunnelClosedFor(logs, "/ws", "tunnel_max_lifetime") {
		t.Errorf("no log of the tunnel closed for its lifetime:\n%s", logs.String())
	}
	if err := public.echo("public tunnels have no lifetime"); err != nil {
		t.Errorf("the public tunnel, older than the gated one, was closed: %v", err)
	}
}

func TestDemo_CancelledSubscriptionClosesPaidTunnel(t *testing.T) {
	d, _, logs := mustRunDemoLogged(t, demoOptions{})
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	subID := subscribe(t, d, c)
	waitWebhooks(t, d)
	cookies := cookieHeader(jar, d)
	paid := dialWS(t, d, "/routes/415VNA/ws", cookies)
	signedIn := dialWS(t, d, "/ws", cookies)
	if err := paid.echo("paid"); err != nil {
		t.Fatal(err)
	}

	d.Stripe.SetSubscriptionStatus(subID, "canceled")
	waitWebhooks(t, d)
	if !paid.closedWithin(10 * time.Second) {
		t.Fatal("the paid tunnel is still open after the cancellation webhook")
	}
	if !tunnelClosedFor(logs, "/routes/415VNA/ws", "tunnel_no_longer_allowed") {
		t.Errorf("no log of the tunnel closed for the lapsed plan:\n%s", logs.String())
	}
	if code := get(t, c, d.URL+"/routes/415VNA/", api).StatusCode; code != http.StatusPaymentRequired {
		t.Errorf("HTTP after the cancellation: %d, want 402", code)
	}
	if err := signedIn.echo("the plan was never needed here"); err != nil {
		t.Errorf("the signed_in tunnel was closed too: %v", err)
	}
	// A paid tunnel is refused from the start now.
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	conn := rawConn(t, d, "GET /routes/415VNA/ws HTTP/1.1\r\nHost: HOST\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "+key+"\r\nCookie: "+cookieHeader(jar, d)+"\r\nAccept: application/json\r\n\r\n", nil)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("new paid tunnel after the cancellation: %v %v, want 402", resp, err)
	}
}

// A server-sent event stream on a gated route ends at sign-out, as a
// WebSocket does: a stream is not a way to keep receiving what HTTP with
// the same cookies no longer gets.
func TestDemo_SignOutEndsStreams(t *testing.T) {
	d, _, logs := mustRunDemoLogged(t, demoOptions{})
	jar, _ := cookiejar.New(nil)
	signIn(t, d, jar, "user_ada")
	req, _ := http.NewRequest("GET", d.URL+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cookie", cookieHeader(jar, d))
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "id: 1") {
		t.Fatalf("first event: %q %v (status %d)", line, err, resp.StatusCode)
	}
	if r := form(t, noRedirects(jar), d.URL+"/.tollgate/sign-out", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", r.StatusCode)
	}
	rest, _ := io.ReadAll(br) // ends when the gateway cuts the stream
	if strings.Contains(string(rest), "event: done") {
		t.Errorf("the stream ran to its end after sign-out:\n%s", rest)
	}
	if !tunnelClosedFor(logs, "/events", "tunnel_session_revoked") {
		t.Errorf("no log of the stream closed for the revocation:\n%s", logs.String())
	}
}

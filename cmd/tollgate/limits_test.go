package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Issue 8, "Slow bodies": each attack over real TCP against the real
// gateway that `tollgate demo` wires.

// mustRunDemoWith is mustRunDemo with options, and the gateway's log kept
// for the test to read.
func mustRunDemoWith(t *testing.T, o demoOptions) (*demo, *clock, *lockedWriter) {
	t.Helper()
	clk := &clock{now: time.Now().Truncate(time.Second)}
	logs := &lockedWriter{w: &bytes.Buffer{}}
	o.Now = clk.Now
	o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := startDemo(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel(t)
	done := make(chan error, 1)
	go func() { done <- d.serveUntilDone(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo shutdown: %v", err)
		}
		d.Close()
	})
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

func TestDemo_TricklingBodiesToOwnEndpointsAreCut(t *testing.T) {
	d, _, logs := mustRunDemoWith(t, demoOptions{OwnBodyTimeout: 2 * time.Second})
	const extra = 16
	n := proxy.WebhookBodyReads + extra

	// n webhook deliveries announce 100 kB and send one byte of it.
	trickle := func(path string) net.Conn {
		return rawConn(t, d, "POST "+path+" HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/json\r\n"+
			"Stripe-Signature: t=1,v1=00\r\nContent-Length: 100000\r\n\r\n", []byte("{"))
	}
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = trickle("/.tollgate/webhooks/stripe")
	}
	// So do a Clerk webhook, a form and the admin API (on its own listener).
	others := []net.Conn{trickle("/.tollgate/webhooks/clerk"), trickle("/.tollgate/checkout")}
	au, _ := url.Parse(d.AdminURL)
	adm, err := net.Dial("tcp", au.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	fmt.Fprintf(adm, "POST /api/sync HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nc", au.Host, d.AdminToken)
	others = append(others, adm)

	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			resp := answer(t, c, 30*time.Second)
			if resp == nil {
				return
			}
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		})
	}
	for _, c := range others {
		wg.Go(func() {
			if resp := answer(t, c, 30*time.Second); resp != nil && resp.StatusCode < 400 {
				t.Errorf("a trickled body got %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	// At most WebhookBodyReads were read at once; the rest were turned away
	// at once, and every one was cut and closed.
	if codes[400]+codes[503] != n || codes[400] > proxy.WebhookBodyReads || codes[503] < extra {
		t.Errorf("answers by status: %v; want at most %d 400s (cut) and the rest 503 (no slot)", codes, proxy.WebhookBodyReads)
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

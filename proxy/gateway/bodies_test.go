package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/config"
)

// timeouts.body_idle: 0 means no limit on a forwarded body, not the
// deadline every body starts with. The test knows the short own-endpoint
// deadline has passed when a trickled request the gate denies is answered
// (the server drains that body until the deadline, then answers).
func TestBodies_NoIdleLimitMeansNone(t *testing.T) {
	arrived := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d %v", n, err)
	}))
	defer upstream.Close()
	cfg, err := config.Parse("gate_test.yaml", []byte(fmt.Sprintf(gateTestConfig, upstream.URL)), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeouts.BodyIdle = 0
	srv, err := New(Options{Config: cfg, Auth: fakeAuth{signedInByHeader}, OwnBodyTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(srv)
	defer front.Close()
	u, _ := url.Parse(front.URL)
	dial := func(head string) net.Conn {
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprint(conn, head)
		return conn
	}

	upload := dial("POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n0123456789")
	<-arrived // the gate has passed it on: its deadline was set before the one below
	denied := dial("POST /admin/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0")
	_ = denied.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(denied), nil)
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("trickled denied request: %v %v", resp, err)
	}

	fmt.Fprint(upload, "0123456789")
	_ = upload.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(upload), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "20 <nil>" {
		t.Errorf("upload that paused past the own-endpoint deadline, body_idle 0: %d %q", resp.StatusCode, body)
	}
}

// webhookReadsRig drives webhookLimit directly: each delivery's body is a
// pipe the test feeds, and the handler reports when it starts reading and
// how its read ended.
type webhookReadsRig struct {
	t    *testing.T
	h    http.Handler
	read chan struct{}
}

type delivery struct {
	body *io.PipeWriter
	rec  *httptest.ResponseRecorder
	err  chan error // the handler's read outcome (nil: refused before it)
	done chan struct{}
}

func newWebhookReadsRig(t *testing.T, readers, perAddr int, maxBytes int64) *webhookReadsRig {
	cfg, err := config.Parse("gate_test.yaml", []byte(fmt.Sprintf(gateTestConfig, "http://127.0.0.1:1")), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Config: cfg, Auth: fakeAuth{signedInByHeader}})
	if err != nil {
		t.Fatal(err)
	}
	rig := &webhookReadsRig{t: t, read: make(chan struct{})}
	rig.h = srv.webhookLimit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		errs := r.Context().Value(deliveryKey{}).(chan error)
		rig.read <- struct{}{}
		_, err := io.ReadAll(r.Body)
		errs <- err
	}), readers, perAddr, maxBytes)
	return rig
}

type deliveryKey struct{}

// post starts a delivery from addr and returns once the handler reads its
// body or the limiter refused it.
func (rig *webhookReadsRig) post(addr string) *delivery {
	pr, pw := io.Pipe()
	d := &delivery{body: pw, rec: httptest.NewRecorder(), err: make(chan error, 1), done: make(chan struct{})}
	r := httptest.NewRequest("POST", "/.tollgate/webhooks/stripe", pr)
	r.ContentLength = -1
	r.RemoteAddr = addr + ":40000"
	r = r.WithContext(context.WithValue(r.Context(), deliveryKey{}, d.err))
	go func() { defer close(d.done); rig.h.ServeHTTP(d.rec, r) }()
	select {
	case <-rig.read:
	case <-d.done:
	}
	rig.t.Cleanup(func() { pw.Close(); <-d.done })
	return d
}

// finish sends the rest of the body and waits for the handler's outcome.
func (d *delivery) finish(t *testing.T, rest string) error {
	t.Helper()
	go func() { _, _ = io.WriteString(d.body, rest); d.body.Close() }()
	<-d.done
	select {
	case err := <-d.err:
		return err
	default:
		t.Fatalf("refused delivery has no read outcome: %d", d.rec.Code)
		return nil
	}
}

// Ensure one address cannot take every reader's slot, the readers are
// bounded in all, and a finished delivery gives its slot back.
func TestWebhookLimit_ReadersPerAddressAndInAll(t *testing.T) {
	rig := newWebhookReadsRig(t, 3, 2, 1<<20)
	a1, a2 := rig.post("10.0.0.1"), rig.post("10.0.0.1")
	if a3 := rig.post("10.0.0.1"); a3.rec.Code != http.StatusServiceUnavailable || a3.rec.Header().Get("Retry-After") == "" {
		t.Errorf("a third delivery from one address: %d, want 503 with Retry-After", a3.rec.Code)
	}
	rig.post("10.0.0.2") // the last slot in all
	if c := rig.post("10.0.0.3"); c.rec.Code != http.StatusServiceUnavailable {
		t.Errorf("a delivery past the readers in all: %d, want 503", c.rec.Code)
	}
	if err := a1.finish(t, "{}"); err != nil {
		t.Fatal(err)
	}
	c := rig.post("10.0.0.3")
	if err := c.finish(t, "{}"); err != nil {
		t.Errorf("a delivery after one finished: %v (%d)", err, c.rec.Code)
	}
	_ = a2
}

// Ensure the bodies being read hold at most maxBytes between them: a read
// past it fails with proxy.ErrBodyBudget, and a finished body's bytes are
// given back.
func TestWebhookLimit_BytesHeldInAll(t *testing.T) {
	rig := newWebhookReadsRig(t, 10, 10, 10)
	first := rig.post("10.0.0.1")
	if _, err := io.WriteString(first.body, "123456"); err != nil {
		t.Fatal(err)
	}
	// An empty write returns once the handler reads again, that is once
	// the six bytes are counted.
	if _, err := io.WriteString(first.body, ""); err != nil {
		t.Fatal(err)
	}
	second := rig.post("10.0.0.2")
	if err := second.finish(t, "abcdef"); !errors.Is(err, proxy.ErrBodyBudget) {
		t.Errorf("a body past the bytes in all: %v, want ErrBodyBudget", err)
	}
	if err := first.finish(t, "7"); err != nil {
		t.Errorf("the first body: %v", err)
	}
	if err := rig.post("10.0.0.2").finish(t, "abcdefghij"); err != nil {
		t.Errorf("a body once the first gave its bytes back: %v", err)
	}
}

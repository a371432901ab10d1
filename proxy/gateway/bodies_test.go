package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

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

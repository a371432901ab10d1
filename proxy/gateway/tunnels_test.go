package gateway

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/config"
)

// tunnelUpstream switches every request to a line echo, answering 101 with
// the Upgrade header the request asked for (none if it asked for none) and
// the Sec-WebSocket-Accept of its key (a wrong one with X-Test-Wrong-Accept).
func tunnelUpstream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
		if up := r.Header.Get("Upgrade"); up != "" {
			brw.WriteString("Upgrade: " + up + "\r\nConnection: Upgrade\r\n")
		}
		if key := r.Header.Get("Sec-WebSocket-Key"); key != "" {
			if r.Header.Get("X-Test-Wrong-Accept") != "" {
				key += "x"
			}
			brw.WriteString(wsAcceptHead(key))
		}
		brw.WriteString("\r\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo " + line)
			brw.Flush()
		}
	})
}

// openTunnel sends a raw request for path through the gateway and returns
// the connection and its reader after the response head.
func (fx *gateFixture) openTunnel(path string, upgrade bool) (net.Conn, *bufio.Reader, *http.Response) {
	fx.t.Helper()
	upgradeHead := ""
	if upgrade {
		upgradeHead = "Upgrade: websocket\r\nConnection: Upgrade\r\n" + wsKeyHead
	}
	return fx.openRaw(path, upgradeHead)
}

// wsAcceptHead is a WebSocket server's Sec-WebSocket-Accept line for key.
func wsAcceptHead(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return "Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n"
}

// wsKeyHead is a WebSocket client's key and version (RFC 6455's example key).
const wsKeyHead = "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

// openRaw sends a raw GET for path, signed in as user_1, with extraHead
// (whole header lines) added, and returns the connection and its reader
// after the response head.
func (fx *gateFixture) openRaw(path, extraHead string) (net.Conn, *bufio.Reader, *http.Response) {
	fx.t.Helper()
	u, _ := url.Parse(fx.front.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.t.Cleanup(func() { conn.Close() })
	head := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nX-Test-User: user_1\r\nAccept: application/json\r\n"
	fmt.Fprint(conn, head+extraHead+"\r\n")
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		fx.t.Fatal(err)
	}
	return conn, br, resp
}

func echoLine(conn net.Conn, br *bufio.Reader, msg string) error {
	if _, err := fmt.Fprint(conn, msg+"\n"); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "echo "+msg+"\n" {
		return fmt.Errorf("echo %q", line)
	}
	return nil
}

// closedWithin reports whether the gateway closed conn before within ran
// out (a bound on a hang, not a measurement).
func closedWithin(conn net.Conn, br *bufio.Reader, within time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, br)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// A reload carries the open tunnels over, and the new rules judge them at
// once: a route that became deny closes its tunnel; a public one is never
// registered at all.
func TestTunnels_ReloadJudgesOpenTunnelsByTheNewRules(t *testing.T) {
	fx := newGateFixture(t, tunnelUpstream())
	conn, br, resp := fx.openTunnel("/ws", true)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	if err := echoLine(conn, br, "hello"); err != nil {
		t.Fatal(err)
	}
	pconn, pbr, presp := fx.openTunnel("/public/ws", true)
	if presp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("public upgrade: %d", presp.StatusCode)
	}

	// The same config first: nothing changes.
	if _, err := New(Options{Config: fx.srv.cfg, Auth: fakeAuth{signedInByHeader}, State: fx.state, Entitlements: fx.ents}); err != nil {
		t.Fatal(err)
	}
	if err := echoLine(conn, br, "after a reload"); err != nil {
		t.Fatalf("a reload with the same rules closed the tunnel: %v", err)
	}

	doc := fmt.Sprintf(strings.Replace(gateTestConfig, `- { path: "/ws", access: signed_in }`, `- { path: "/ws", access: deny }`, 1), fx.upstream.URL)
	cfg, err := config.Parse("gate_test.yaml", []byte(doc), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	next, err := New(Options{Config: cfg, Auth: fakeAuth{signedInByHeader}, State: fx.state, Entitlements: fx.ents})
	if err != nil {
		t.Fatal(err)
	}
	if next.tunnels != fx.srv.tunnels {
		t.Fatal("the reloaded server has a registry of its own")
	}
	if !closedWithin(conn, br, 10*time.Second) {
		t.Fatal("a tunnel on a route that became deny is still open")
	}
	if err := echoLine(pconn, pbr, "public"); err != nil {
		t.Errorf("the public tunnel: %v", err)
	}
}

// Only an upgrade the client asked for becomes a tunnel: an upstream that
// switches protocols on an ordinary gated request would open one tollgate
// does not know about.
func TestTunnels_UnaskedUpgradeOnAGatedRouteIsRefused(t *testing.T) {
	fx := newGateFixture(t, tunnelUpstream())
	_, _, resp := fx.openTunnel("/ws", false)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("101 to a request that did not ask: %d, want 502", resp.StatusCode)
	}
}

// A 101 makes the connection a tunnel whose bytes tollgate no longer reads.
// h2c's would carry further HTTP requests, on any path and with any
// X-Tollgate-* header, to an app that accepts the upgrade: only a WebSocket,
// asked for alone, is passed on, on public and gated routes alike, and an
// app that switches protocols anyway gets 502 rather than a tunnel.
func TestTunnels_OnlyWebSocketUpgradesAreTunnelled(t *testing.T) {
	seen := make(chan http.Header, 64)
	upstream := tunnelUpstream()
	fx := newGateFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		upstream.ServeHTTP(w, r)
	}))
	cases := []struct {
		name, head string
		tunnel     bool
	}{
		{"websocket", "Upgrade: websocket\r\nConnection: Upgrade\r\n" + wsKeyHead, true},
		{"websocket in capitals", "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n" + wsKeyHead, true},
		{"websocket without a key", "Upgrade: websocket\r\nConnection: Upgrade\r\n", false},
		{"websocket with two keys", "Upgrade: websocket\r\nConnection: Upgrade\r\n" + wsKeyHead + "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n", false},
		{"h2c", "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n", false},
		{"h2c, settings not named in Connection", "Upgrade: h2c\r\nConnection: Upgrade\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n", false},
		{"h2c in capitals", "Upgrade: H2C\r\nConnection: Upgrade\r\n", false},
		{"websocket or h2c", "Upgrade: websocket, h2c\r\nConnection: Upgrade\r\n", false},
		{"two Upgrade lines", "Upgrade: websocket\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n", false},
		{"another protocol", "Upgrade: TLS/1.2\r\nConnection: Upgrade\r\n", false},
		{"no upgrade asked", "", false},
	}
	wrongAccept := "Upgrade: websocket\r\nConnection: Upgrade\r\n" + wsKeyHead + "X-Test-Wrong-Accept: 1\r\n"
	for _, path := range []string{"/public/ws", "/ws"} {
		for _, tc := range cases {
			t.Run(path+"/"+tc.name, func(t *testing.T) {
				conn, br, resp := fx.openRaw(path, tc.head)
				got := <-seen
				if tc.tunnel {
					if resp.StatusCode != http.StatusSwitchingProtocols {
						t.Fatalf("status %d, want 101", resp.StatusCode)
					}
					if err := echoLine(conn, br, "hello"); err != nil {
						t.Fatalf("the WebSocket tunnel: %v", err)
					}
					return
				}
				if resp.StatusCode != http.StatusBadGateway {
					t.Errorf("status %d, want 502: the app's 101 must not become a tunnel", resp.StatusCode)
				}
				if v := got.Values("Upgrade"); len(v) > 0 {
					t.Errorf("the app was asked to upgrade to %q", v)
				}
				if v := got.Values("Http2-Settings"); len(v) > 0 {
					t.Errorf("the app got HTTP2-Settings %q", v)
				}
			})
		}
		// A 101 that does not answer the key is no WebSocket server's.
		t.Run(path+"/a 101 with the wrong Sec-WebSocket-Accept", func(t *testing.T) {
			_, _, resp := fx.openRaw(path, wrongAccept)
			<-seen
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("status %d, want 502", resp.StatusCode)
			}
		})
	}
}

func TestTunnels_RevokedSessionAndUserClose(t *testing.T) {
	fx := newGateFixture(t, tunnelUpstream())
	for _, revoke := range []func(){
		func() { fx.srv.RevokeSession(t.Context(), "sess_1") },
		func() { fx.srv.RevokeUser(t.Context(), "user_1") },
	} {
		// Each round opens a new tunnel: the fixture's clock does not move,
		// and the fake Clerk issues nothing to revoke against, so undo the
		// previous round's revocations first.
		fx.srv.gw.revoked.Purge()
		fx.srv.gw.revokedUsers.Purge()
		conn, br, resp := fx.openTunnel("/ws", true)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %d", resp.StatusCode)
		}
		if err := echoLine(conn, br, "hello"); err != nil {
			t.Fatal(err)
		}
		revoke()
		if !closedWithin(conn, br, 10*time.Second) {
			t.Fatal("the tunnel is still open after the revocation")
		}
	}
}

// A session ended in Clerk without a webhook: the periodic check asks Clerk
// (as the gateway cookie's refresh does) and closes the tunnel.
func TestTunnels_SessionEndedInClerkCloses(t *testing.T) {
	fx := newGateFixture(t, tunnelUpstream())
	fx.srv.tunnels.every = 20 * time.Millisecond
	conn, br, resp := fx.openTunnel("/ws", true)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	if err := echoLine(conn, br, "hello"); err != nil {
		t.Fatal(err)
	}
	fx.checker.mu.Lock()
	fx.checker.active = false
	fx.checker.mu.Unlock()
	if !closedWithin(conn, br, 10*time.Second) {
		t.Fatal("the tunnel is still open after Clerk said the session ended")
	}
}

// Clerk could not be asked: the tunnel stays (a new request would get 503,
// but an open tunnel is not cut for an outage).
func TestTunnels_ClerkOutageKeepsTheTunnel(t *testing.T) {
	fx := newGateFixture(t, tunnelUpstream())
	fx.srv.tunnels.every = 20 * time.Millisecond
	fx.checker.mu.Lock()
	fx.checker.err = errors.New("clerk down")
	fx.checker.mu.Unlock()
	conn, br, resp := fx.openTunnel("/ws", true)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	// Wait until Clerk has been asked twice (two ticks), through the API.
	for deadline := time.Now().Add(10 * time.Second); ; {
		fx.checker.mu.Lock()
		calls := fx.checker.calls
		fx.checker.mu.Unlock()
		if calls >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Clerk was never asked")
		}
		if err := echoLine(conn, br, "waiting"); err != nil {
			t.Fatalf("closed during a Clerk outage: %v", err)
		}
	}
	if err := echoLine(conn, br, "after the outage checks"); err != nil {
		t.Errorf("closed during a Clerk outage: %v", err)
	}
}

// A client that half-closes its tunnel (FIN after the 101), to an app that
// stays silent and open after reading EOF: closing the tunnel must close
// the upstream's side too. Closing only the client's left the proxy's
// copy from the upstream blocked, and the request with it, for as long as
// the app kept quiet (red team, issue 14).
func TestTunnels_ClosingAHalfClosedTunnelEndsItsUpstreamSide(t *testing.T) {
	sawEOF := make(chan struct{})
	upstreamDone := make(chan struct{})
	fx := newGateFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + wsAcceptHead(r.Header.Get("Sec-WebSocket-Key")) + "\r\n")
		brw.Flush()
		_, _ = io.Copy(io.Discard, brw) // until the client's FIN comes through
		close(sawEOF)
		<-upstreamDone // silent and open
	}))
	defer close(upstreamDone)
	// The gateway's handler returning is the request ending.
	handled := make(chan struct{}, 1)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fx.srv.ServeHTTP(w, r)
		handled <- struct{}{}
	}))
	defer front.Close()
	fx.front = front

	conn, _, resp := fx.openTunnel("/ws", true)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	<-sawEOF
	doc := fmt.Sprintf(strings.Replace(gateTestConfig, `- { path: "/ws", access: signed_in }`, `- { path: "/ws", access: deny }`, 1), fx.upstream.URL)
	cfg, err := config.Parse("gate_test.yaml", []byte(doc), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Config: cfg, Auth: fakeAuth{signedInByHeader}, State: fx.state, Entitlements: fx.ents}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(10 * time.Second): // a bound on a hang
		t.Fatal("the closed tunnel's request is still being proxied: its upstream side lingers")
	}
	fx.srv.tunnels.mu.Lock()
	open := len(fx.srv.tunnels.open)
	fx.srv.tunnels.mu.Unlock()
	if open != 0 {
		t.Errorf("%d tunnels still registered", open)
	}
}

// A revocation another replica stored closes this replica's tunnels of
// that session at once, as the replica that took it closes its own (red
// team, issue 16: they stayed open until the minute's recheck).
func TestTunnels_ARevocationFromAnotherReplicaClosesThem(t *testing.T) {
	fx := newGateFixture(t, tunnelUpstream())
	conn, br, resp := fx.openTunnel("/ws", true)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	if err := echoLine(conn, br, "hello"); err != nil {
		t.Fatal(err)
	}
	fx.state.ApplyRevocation(proxy.Revocation{Kind: proxy.RevocationSession, ID: "sess_other", At: fx.now})
	if err := echoLine(conn, br, "another session's revocation"); err != nil {
		t.Fatalf("another session's revocation closed the tunnel: %v", err)
	}
	fx.state.ApplyRevocation(proxy.Revocation{Kind: proxy.RevocationSession, ID: "sess_1", At: fx.now})
	if !closedWithin(conn, br, 10*time.Second) {
		t.Fatal("a tunnel of a session another replica revoked is still open")
	}
}

package gateway

import (
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// A wave of concurrent requests leaves its upstream connections idle, and
// the next wave reuses them. With the standard transport's MaxIdleConns of
// 100, a wave of 200 kept only 100, and the next wave dialed 100 again.
func TestTransport_KeepsTheUpstreamConnectionsOfAWave(t *testing.T) {
	const wave = 200
	var dialed atomic.Int64
	var (
		mu      sync.Mutex
		arrived int
		release chan struct{}
	)
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Hold every request of a wave until all have arrived, so that the
		// wave needs wave connections at once.
		mu.Lock()
		arrived++
		ch := release
		if arrived%wave == 0 {
			close(release)
			release = make(chan struct{})
		}
		mu.Unlock()
		<-ch
		io.WriteString(w, "ok")
	}))
	upstream.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialed.Add(1)
		}
	}
	release = make(chan struct{})
	upstream.Start()
	t.Cleanup(upstream.Close)

	client := &http.Client{Transport: defaultTransport()}
	t.Cleanup(client.CloseIdleConnections)
	sendWave := func() {
		var wg sync.WaitGroup
		for range wave {
			wg.Go(func() {
				resp, err := client.Get(upstream.URL)
				if err != nil {
					t.Error(err)
					return
				}
				// Reading to EOF puts the connection back in the pool
				// before Read returns.
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		wg.Wait()
	}
	sendWave()
	if n := dialed.Load(); n != wave {
		t.Fatalf("the first wave dialed %d connections, want %d", n, wave)
	}
	sendWave()
	if n := dialed.Load() - wave; n != 0 {
		t.Errorf("the second wave dialed %d new connections, want 0 (all %d reused)", n, wave)
	}
}

// HTTP_PROXY and kin are read once per process (http.ProxyFromEnvironment
// caches them), so the transport is checked for not consulting them at all:
// the upstream is the site owner's app, never reached through a proxy meant
// for tollgate's calls out.
func TestTransport_NoProxyFromTheEnvironment(t *testing.T) {
	if tr := defaultTransport(); tr.Proxy != nil {
		t.Error("the upstream transport consults a proxy; want none")
	}
}

// The upstream sees the client's Accept-Encoding as sent, and an encoded
// answer reaches the client as the upstream encoded it: the transport
// neither asks for gzip on a client's behalf nor inflates the answer.
func TestTransport_AcceptEncodingIsTheClients(t *testing.T) {
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	io.WriteString(zw, "hello, compressed world")
	zw.Close()
	fx := newGateFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") == "gzip" {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(zipped.Bytes())
			return
		}
		io.WriteString(w, "plain")
	}))
	for _, tc := range []struct {
		name, acceptEncoding string
		wantEncoding         string
		wantBody             []byte
	}{
		{"a client that asks for nothing gets it plain", "", "", []byte("plain")},
		{"a client that asks for gzip gets the upstream's bytes", "gzip", "gzip", zipped.Bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.acceptEncoding != "" {
				hdr["Accept-Encoding"] = tc.acceptEncoding
			}
			resp := fx.rawRequest("/", hdr)
			body, _ := io.ReadAll(resp.Body)
			if got := fx.lastUpstream().Header.Get("Accept-Encoding"); got != tc.acceptEncoding {
				t.Errorf("the upstream saw Accept-Encoding %q, want %q", got, tc.acceptEncoding)
			}
			if got := resp.Header.Get("Content-Encoding"); got != tc.wantEncoding {
				t.Errorf("Content-Encoding %q, want %q", got, tc.wantEncoding)
			}
			if !bytes.Equal(body, tc.wantBody) {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
		})
	}
}

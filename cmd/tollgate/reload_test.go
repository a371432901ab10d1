package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink the test can read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statusOf(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// loopback is a listener on a port the system picked, closed when the
// test ends (serve closes it first when it has been handed it).
func loopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// servedGateway is `tollgate serve` run in-process by startServing.
type servedGateway struct {
	base   string        // http://addr
	reload chan struct{} // what SIGHUP does
	logs   *syncBuffer   // its log
	cancel func()        // what SIGTERM does
	done   chan struct{} // closed once serve has returned; err is then its result
	err    error
}

// wait waits for serve to return after cancel, and reports its result.
func (s *servedGateway) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(35 * time.Second): // past serve's 30 s grace
		t.Fatal("serve did not stop")
		return nil
	}
}

// startServing builds the gateway from the config file at path, as
// runServe does, and serves it on ln with a reload channel the test holds.
func startServing(t *testing.T, path string, ln net.Listener) *servedGateway {
	t.Helper()
	return startServingFrom(t, configSource{path: path}, ln)
}

// startServingFrom is startServing with the config read from src.
func startServingFrom(t *testing.T, src configSource, ln net.Listener) *servedGateway {
	t.Helper()
	cfg, err := src.load()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	logger := newLogger(logs, "json")
	gw, err := newApp(cfg, appDeps{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &servedGateway{base: "http://" + ln.Addr().String(), reload: make(chan struct{}), logs: logs, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = serve(ctx, gw, src, ln, nil, s.reload, logger)
		gw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		s.wait(t)
	})
	return s
}

// TestServe_ReloadSwapsRoutesWithoutDroppingConnections runs `tollgate
// serve` in-process: a reload swaps the rules, a request in flight
// finishes, a bad config is refused and the old one keeps serving, a
// change that needs a restart is refused, and the end of its context (what
// SIGTERM does) ends it cleanly.
func TestServe_ReloadSwapsRoutesWithoutDroppingConnections(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			started <- struct{}{}
			<-release
		}
		fmt.Fprint(w, "upstream ", r.URL.Path)
	}))
	defer upstream.Close()
	ln := loopback(t)
	addr := ln.Addr().String()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	write := func(routes string) {
		cfg := fmt.Sprintf("listen: %q\npublic_url: \"http://%s\"\nupstream: %q\ndefault_access: deny\nstore: { path: %q }\nroutes:\n%s",
			addr, addr, upstream.URL, filepath.Join(dir, "t.db"), routes)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("  - { path: \"/a\", access: public }\n  - { path: \"/slow\", access: public }\n")

	s := startServing(t, path, ln)
	base := s.base
	if got := statusOf(t, base+"/a"); got != 200 {
		t.Fatalf("/a before reload: %d", got)
	}
	if got := statusOf(t, base+"/b"); got != 403 {
		t.Fatalf("/b before reload: %d", got)
	}

	// A request in flight across the reload.
	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	<-started

	write("  - { path: \"/a\", access: public }\n  - { path: \"/b\", access: public }\n  - { path: \"/slow\", access: public }\n")
	s.reload <- struct{}{}
	eventually(t, "the new rule", func() bool { return statusOf(t, base+"/b") == 200 })

	close(release)
	if got := <-slow; got != "upstream /slow" {
		t.Errorf("in-flight request across the reload: %q", got)
	}

	// A bad config is refused; the old one keeps serving.
	write("  - { path: \"/b\", access: publik }\n")
	s.reload <- struct{}{}
	eventually(t, "the refusal in the log", func() bool { return strings.Contains(s.logs.String(), "reload refused") })
	if !strings.Contains(s.logs.String(), "publik") {
		t.Errorf("the refusal does not say what was wrong: %s", s.logs.String())
	}
	if got := statusOf(t, base+"/b"); got != 200 {
		t.Errorf("after a refused reload: %d", got)
	}

	// A change that needs a restart is refused too.
	write("  - { path: \"/b\", access: public }\n")
	cfgText := strings.Replace(mustRead(t, path), "t.db", "other.db", 1)
	os.WriteFile(path, []byte(cfgText), 0o600)
	s.reload <- struct{}{}
	eventually(t, "the restart-only refusal", func() bool { return strings.Contains(s.logs.String(), "store.path changed") })

	s.cancel()
	if err := s.wait(t); err != nil {
		t.Errorf("serve: %v", err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestServe_ShutdownFinishesRequestsInFlight: the end of serve's context
// (SIGTERM, through signal.NotifyContext) stops new connections but lets a
// request in flight complete.
func TestServe_ShutdownFinishesRequestsInFlight(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		fmt.Fprint(w, "done ", r.URL.Path)
	}))
	defer upstream.Close()
	ln := loopback(t)
	addr := ln.Addr().String()
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf("listen: %q\npublic_url: \"http://%s\"\nupstream: %q\ndefault_access: public\n", addr, addr, upstream.URL)
	os.WriteFile(path, []byte(cfg), 0o600)
	s := startServing(t, path, ln)
	if got := statusOf(t, s.base+"/up"); got != 200 {
		t.Fatalf("/up: %d", got)
	}

	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get(s.base + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- fmt.Sprint(resp.StatusCode, " ", string(b))
	}()
	<-started
	s.cancel()
	eventually(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if got := <-slow; got != "200 done /slow" {
		t.Errorf("request in flight: %q", got)
	}
	if err := s.wait(t); err != nil {
		t.Errorf("serve: %v", err)
	}
}

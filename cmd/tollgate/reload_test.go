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
	"syscall"
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

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
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

// TestServe_SIGHUPReloadsRoutesWithoutDroppingConnections runs `tollgate
// serve` for real: a reload swaps the rules, a request in flight finishes,
// a bad config is refused and the old one keeps serving, and SIGTERM ends
// it cleanly.
func TestServe_SIGHUPReloadsRoutesWithoutDroppingConnections(t *testing.T) {
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-release
		}
		fmt.Fprint(w, "upstream ", r.URL.Path)
	}))
	defer upstream.Close()
	addr := freeAddr(t)
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

	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", path}, io.Discard, logs) }()
	base := "http://" + addr
	eventually(t, "the gateway to listen", func() bool { return statusOf(t, base+"/a") == 200 })
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
	time.Sleep(100 * time.Millisecond)

	write("  - { path: \"/a\", access: public }\n  - { path: \"/b\", access: public }\n  - { path: \"/slow\", access: public }\n")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	eventually(t, "the new rule", func() bool { return statusOf(t, base+"/b") == 200 })

	close(release)
	if got := <-slow; got != "upstream /slow" {
		t.Errorf("in-flight request across the reload: %q", got)
	}

	// A bad config is refused; the old one keeps serving.
	write("  - { path: \"/b\", access: publik }\n")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	eventually(t, "the refusal in the log", func() bool { return strings.Contains(logs.String(), "reload refused") })
	if !strings.Contains(logs.String(), "publik") {
		t.Errorf("the refusal does not say what was wrong: %s", logs.String())
	}
	if got := statusOf(t, base+"/b"); got != 200 {
		t.Errorf("after a refused reload: %d", got)
	}

	// A change that needs a restart is refused too.
	write("  - { path: \"/b\", access: public }\n")
	cfgText := strings.Replace(mustRead(t, path), "t.db", "other.db", 1)
	os.WriteFile(path, []byte(cfgText), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	eventually(t, "the restart-only refusal", func() bool { return strings.Contains(logs.String(), "store changed") })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(35 * time.Second):
		t.Fatal("serve did not stop")
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

// TestServe_ShutdownFinishesRequestsInFlight: SIGTERM (the signal context
// ending) stops new connections but lets a request in flight complete.
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
	addr := freeAddr(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("listen: %q\npublic_url: \"http://%s\"\nupstream: %q\ndefault_access: public\n", addr, addr, upstream.URL)
	os.WriteFile(path, []byte(cfg), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", path}, io.Discard, io.Discard) }()
	base := "http://" + addr
	eventually(t, "the gateway to listen", func() bool { return statusOf(t, base+"/up") == 200 })

	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- fmt.Sprint(resp.StatusCode, " ", string(b))
	}()
	<-started
	cancel() // what SIGTERM does through signal.NotifyContext
	time.Sleep(100 * time.Millisecond)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting connections after shutdown began")
	}
	close(release)
	if got := <-slow; got != "200 done /slow" {
		t.Errorf("request in flight: %q", got)
	}
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}

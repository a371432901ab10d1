package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// idleChildArg runs the gateway alone in a child process, so that its
// memory is measured without the clients' and the upstream's.
const idleChildArg = "idle-gateway-child"

// childStats is what the gateway's process reports of itself.
type childStats struct {
	RssAnon, RssFile  int64 // bytes, from /proc/self/status
	HeapInuse, Stacks uint64
	Goroutines        int
}

// runIdle is the idle-connections scenario: n WebSockets (or server-sent
// event streams) opened through the gateway on a signed-in route and left
// idle; it prints the gateway process's anonymous memory, Go heap and
// stacks, and goroutines per connection. Loopback only.
func runIdle(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tollgate-load idle-connections", flag.ContinueOnError)
	n := fs.Int("n", 10000, "idle connections")
	kind := fs.String("kind", "ws", "ws (WebSocket upgrades) or sse (server-sent event streams)")
	profile := fs.Bool("goroutines", false, "print the gateway's goroutines, grouped, at the peak")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *kind != "ws" && *kind != "sse" {
		return fmt.Errorf("-kind %q: want ws or sse", *kind)
	}
	// Four descriptors a connection over the three parts (client and
	// upstream here, both sides in the gateway): raise the limit, which
	// the child inherits.
	if err := raiseFileLimit(uint64(2**n + 1024)); err != nil {
		return err
	}
	up := &idleUpstream{}
	upstream := serve(up)
	child := exec.Command(os.Args[0], idleChildArg, "-upstream", upstream)
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return err
	}
	defer func() { stdin.Close(); _ = child.Wait() }()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 16<<20)
	readLine := func() (string, error) {
		if !lines.Scan() {
			return "", fmt.Errorf("gateway child: %v", lines.Err())
		}
		return lines.Text(), nil
	}
	gwURL, err := readLine()
	if err != nil {
		return err
	}
	cookie, err := readLine()
	if err != nil {
		return err
	}
	stats := func() (childStats, error) {
		if _, err := io.WriteString(stdin, "stats\n"); err != nil {
			return childStats{}, err
		}
		l, err := readLine()
		if err != nil {
			return childStats{}, err
		}
		var st childStats
		return st, json.Unmarshal([]byte(l), &st)
	}
	u, _ := url.Parse(gwURL)
	if err := loopbackOnly(gwURL); err != nil {
		return err
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	open := func(k int) error {
		got := make([]net.Conn, k)
		errs := make([]error, k)
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= k {
						return
					}
					got[i], errs[i] = openIdle(u.Host, cookie, *kind)
				}
			})
		}
		wg.Wait()
		for _, c := range got {
			if c != nil {
				conns = append(conns, c)
			}
		}
		return errors.Join(errs...)
	}
	warm := min(100, *n)
	if err := open(warm); err != nil {
		return err
	}
	base, err := stats()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := open(*n - warm); err != nil {
		return fmt.Errorf("after %d connections: %w", len(conns), err)
	}
	took := time.Since(start)
	peak, err := stats()
	if err != nil {
		return err
	}
	added := int64(*n - warm)
	per := func(a, b int64) float64 { return float64(b-a) / float64(max(added, 1)) }
	fmt.Fprintf(out, "idle %s connections through the gateway on a signed-in route: %d open (%d opened in %s), upstream holding %d\n",
		*kind, len(conns), added, took.Round(time.Millisecond), up.held.Load())
	fmt.Fprintf(out, "gateway process at %d connections: RssAnon %.1f MiB (file-backed %.1f MiB), Go heap in use %.1f MiB, stacks %.1f MiB, %d goroutines\n",
		len(conns), mib(peak.RssAnon), mib(peak.RssFile), mib(int64(peak.HeapInuse)), mib(int64(peak.Stacks)), peak.Goroutines)
	fmt.Fprintf(out, "per connection: %.0f bytes anonymous memory (%.0f heap, %.0f stacks), %.2f goroutines\n",
		per(base.RssAnon, peak.RssAnon), per(int64(base.HeapInuse), int64(peak.HeapInuse)), per(int64(base.Stacks), int64(peak.Stacks)),
		float64(peak.Goroutines-base.Goroutines)/float64(max(added, 1)))
	if *profile {
		if _, err := io.WriteString(stdin, "goroutines\n"); err != nil {
			return err
		}
		for {
			l, err := readLine()
			if err != nil || l == "end" {
				return err
			}
			fmt.Fprintln(out, l)
		}
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// raiseFileLimit makes the process's open-file limit at least want (the
// hard limit too, which root may raise).
func raiseFileLimit(want uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= want {
		return nil
	}
	lim.Cur = want
	lim.Max = max(lim.Max, want)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising the open-file limit to %d (run as root, or ulimit -n): %w", want, err)
	}
	return nil
}

// openIdle opens one WebSocket or event stream through the gateway and
// returns its connection once the upstream's answer arrived.
func openIdle(host, cookie, kind string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		return nil, err
	}
	req := "GET /app/sse HTTP/1.1\r\nHost: " + host + "\r\nAccept: text/event-stream\r\nCookie: " + cookie + "\r\n\r\n"
	if kind == "ws" {
		req = "GET /app/ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: " + cookie + "\r\n\r\n"
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 1024), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	want := http.StatusOK
	if kind == "ws" {
		want = http.StatusSwitchingProtocols
	}
	if resp.StatusCode != want {
		c.Close()
		return nil, fmt.Errorf("status %d, want %d", resp.StatusCode, want)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// idleUpstream accepts WebSockets and event streams and keeps them open,
// saying nothing.
type idleUpstream struct {
	mu    sync.Mutex
	conns []net.Conn
	held  atomic.Int64
}

func (u *idleUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/app/ws" && strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		if brw.Flush() != nil {
			c.Close()
			return
		}
		u.mu.Lock()
		u.conns = append(u.conns, c)
		u.mu.Unlock()
		u.held.Add(1)
	case r.URL.Path == "/app/sse":
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		u.held.Add(1)
		<-r.Context().Done()
		u.held.Add(-1)
	default:
		io.WriteString(w, "ok\n")
	}
}

// runIdleChild serves the gateway and answers the parent on stdin/stdout:
// its URL and a signed-in Cookie header first, then one JSON childStats
// line for each "stats" line, and its goroutines for "goroutines".
func runIdleChild(args []string, out io.Writer) error {
	fs := flag.NewFlagSet(idleChildArg, flag.ContinueOnError)
	upstream := fs.String("upstream", "", "the upstream's URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	gwURL, cookie, err := startGateway(*upstream, nil)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, gwURL)
	fmt.Fprintln(out, cookie)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "stats":
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			st := childStats{HeapInuse: ms.HeapInuse, Stacks: ms.StackInuse, Goroutines: runtime.NumGoroutine()}
			st.RssAnon, st.RssFile = procStatus("RssAnon:"), procStatus("RssFile:")
			b, _ := json.Marshal(st)
			fmt.Fprintln(out, string(b))
		case "goroutines":
			_ = pprof.Lookup("goroutine").WriteTo(out, 1)
			fmt.Fprintln(out, "end")
		}
	}
	return in.Err()
}

// procStatus is a kB field of /proc/self/status, in bytes.
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

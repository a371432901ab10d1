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
	// The gateway holds two descriptors a connection (the client's, the
	// upstream's): raise the open-file limit, which the children inherit,
	// as far as the hard limit lets an unprivileged process.
	limit, err := raiseFileLimit(uint64(2**n + 1024))
	if err != nil {
		return err
	}
	if most := int(limit/2) - 64; *n > most {
		fmt.Fprintf(out, "the open-file limit is %d: %d connections at most (the gateway holds two descriptors each)\n", limit, most)
		*n = most
	}
	// The upstream runs in a process of its own, so that this one holds
	// only the clients' descriptors.
	upChild, err := startChild(idleUpstreamArg)
	if err != nil {
		return err
	}
	defer upChild.close()
	upstream, err := upChild.readLine()
	if err != nil {
		return err
	}
	gw, err := startChild(idleChildArg, "-upstream", upstream)
	if err != nil {
		return err
	}
	defer gw.close()
	stdin, readLine := gw.stdin, gw.readLine
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
	fmt.Fprintf(out, "idle %s connections through the gateway on a signed-in route: %d open (%d opened in %s)\n",
		*kind, len(conns), added, took.Round(time.Millisecond))
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

// child is a process of this command the scenario started, spoken to by
// lines on its stdin and stdout.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
}

func startChild(args ...string) (*child, error) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 16<<20)
	return &child{cmd: cmd, stdin: stdin, lines: lines}, nil
}

func (c *child) readLine() (string, error) {
	if !c.lines.Scan() {
		err := c.lines.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return "", fmt.Errorf("%s: %w", c.cmd.Args[1], err)
	}
	return c.lines.Text(), nil
}

// close ends the child: it exits when its stdin closes.
func (c *child) close() {
	c.stdin.Close()
	_ = c.cmd.Wait()
}

// idleUpstreamArg runs the idle upstream alone in a child process.
const idleUpstreamArg = "idle-upstream-child"

// runIdleUpstream serves an idleUpstream, prints its URL, and exits when
// stdin closes.
func runIdleUpstream(out io.Writer) error {
	fmt.Fprintln(out, serve(&idleUpstream{}))
	_, err := io.Copy(io.Discard, os.Stdin)
	return err
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// raiseFileLimit raises the process's open-file limit towards want: past
// the hard limit when the process may (CAP_SYS_RESOURCE), else to it. It
// returns the limit in force.
func raiseFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("open-file limit: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return want, nil
		}
	}
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raising the open-file limit to %d: %w", lim.Cur, err)
	}
	return lim.Cur, nil
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
	case r.URL.Path == "/app/sse":
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		<-r.Context().Done()
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

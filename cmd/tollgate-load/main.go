// Command tollgate-load runs tollgate's load scenarios on loopback, each
// printing its figures (README, "Performance" and "Scale"):
//
//	go run ./cmd/tollgate-load [wrk] [-d 10s] [-c 32] [-t 2]
//	go run ./cmd/tollgate-load webhook-storm [-events 5000] [-customers 500] [-c 8]
//	go run ./cmd/tollgate-load idle-connections [-n 10000] [-kind ws|sse]
//	go run ./cmd/tollgate-load million-user-store [-n 1000000] [-cache 100000] [-warm 100000]
//
// The default, wrk, measures tollgate's throughput against a bare
// httputil.ReverseProxy in the same run.
//
// It starts one upstream, a bare ReverseProxy in front of it, and a tollgate
// gateway in front of it (the real Clerk adapter, networkless with a PEM
// key from the sandbox; an entitlement cached in the LRU), then runs wrk
// against each in turn and prints requests per second and the ratio to the
// bare proxy. Absolute numbers drift on shared machines; the ratio in one
// run is what to compare. Only 127.0.0.1 is ever contacted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/cache"
	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/config"
	"github.com/tollgate/tollgate/proxy/gateway"
	"github.com/tollgate/tollgate/proxy/sandbox/clerk"
)

func main() {
	if err := dispatch(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tollgate-load:", err)
		os.Exit(1)
	}
}

const loadConfig = `
public_url: "%s"
upstream: "%s"
default_access: paid
clerk:
  publishable_key: "%s"
  secret_key: "%s"
  jwt_key: "%s"
session:
  secret: "0123456789abcdef0123456789abcdef"
stripe:
  secret_key: "sk_test_load"
  webhook_secret: "whsec_load"
plans:
  pro: { prices: [price_pro], routes: ["415VNA"] }
routes:
  - { path: "/public/*", access: public }
  - { path: "/routes/{route}/*", access: paid }
  - { path: "/app/*", access: signed_in }
`

type target struct {
	name, url string
	cookie    bool
}

// dispatch runs the scenario args name (the wrk comparison when none).
func dispatch(args []string, out io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "webhook-storm":
			return runStorm(args[1:], out)
		case "idle-connections":
			return runIdle(args[1:], out)
		case idleChildArg:
			return runIdleChild(args[1:], out)
		case idleUpstreamArg:
			return runIdleUpstream(out)
		case "million-user-store":
			return runStore(args[1:], out)
		case "wrk":
			args = args[1:]
		}
	}
	return run(args, out)
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tollgate-load", flag.ContinueOnError)
	duration := fs.Duration("d", 10*time.Second, "wrk duration per target")
	conns := fs.Int("c", 32, "wrk connections")
	threads := fs.Int("t", 1, "wrk threads")
	rounds := fs.Int("rounds", 3, "rounds over all targets, interleaved; the median round counts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found (apt-get install -y wrk)")
	}

	upstream := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><title>ok</title><p>hello from the upstream</p>\n")
	}))
	upURL, _ := url.Parse(upstream)
	// The bare proxy gets the same connection reuse as tollgate's own
	// transport (the stock default keeps only 2 idle connections per host,
	// which would measure connection churn, not proxying).
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 256
	bare := serve(&httputil.ReverseProxy{Transport: transport, ErrorLog: log.New(io.Discard, "", 0),
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upURL)
			pr.SetXForwarded()
		}})

	// The same, with the copy-buffer pool tollgate uses: the fair baseline
	// for what the gate itself costs.
	barePooled := serve(&httputil.ReverseProxy{Transport: transport, ErrorLog: log.New(io.Discard, "", 0), BufferPool: &bufPool{},
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upURL)
			pr.SetXForwarded()
		}})

	gwURL, cookie, err := startGateway(upstream, nil)
	if err != nil {
		return err
	}

	targets := []target{
		{"bare httputil.ReverseProxy", bare + "/app/x", true},
		{"bare, with a buffer pool", barePooled + "/app/x", true},
		{"tollgate, public route", gwURL + "/public/x", true},
		{"tollgate, signed-in route", gwURL + "/app/x", true},
		{"tollgate, paid route (LRU hit)", gwURL + "/routes/415VNA/x", true},
	}
	fmt.Fprintf(out, "wrk -t%d -c%d -d%s on loopback, %d interleaved rounds (median shown), upstream %s\n\n", *threads, *conns, *duration, *rounds, upstream)
	results := make([][]float64, len(targets))
	p99s := make([][]string, len(targets))
	for r := 0; r < *rounds; r++ {
		for i, t := range targets {
			rps, p99, non2xx, err := wrk(t.url, cookie, *threads, *conns, *duration)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if non2xx > 0 {
				return fmt.Errorf("%s: %d non-2xx answers: the load is not measuring what it claims", t.name, non2xx)
			}
			results[i] = append(results[i], rps)
			p99s[i] = append(p99s[i], p99)
		}
	}
	fmt.Fprintf(out, "%-34s %12s %10s %8s\n", "target", "req/s", "p99", "ratio")
	base := median(results[0])
	for i, t := range targets {
		m := median(results[i])
		fmt.Fprintf(out, "%-34s %12.0f %10s %8.2f\n", t.name, m, p99s[i][len(p99s[i])/2], m/base)
	}
	return nil
}

// startGateway serves a tollgate gateway on loopback in front of upstream
// (the real Clerk adapter, networkless with a PEM key from the sandbox; an
// entitlement cached in the LRU for user_ada), with internal routes added,
// and returns its URL and the Cookie header of a signed-in visitor who has
// picked up the gateway cookie.
func startGateway(upstream string, internal []gateway.InternalRoute) (string, string, error) {
	sb, err := clerksandbox.New(clerksandbox.Options{TokenTTL: time.Hour})
	if err != nil {
		return "", "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", err
	}
	gwURL := "http://" + ln.Addr().String()
	pem := strings.ReplaceAll(sb.PublicKeyPEM(), "\n", `\n`)
	cfg, err := config.Parse("load.yaml", []byte(fmt.Sprintf(loadConfig, gwURL, upstream, sb.PublishableKey(), sb.SecretKey(), pem)), func(string) string { return "" })
	if err != nil {
		return "", "", err
	}
	cc, err := clerk.New(clerk.Config{PublishableKey: cfg.Clerk.PublishableKey, SecretKey: cfg.Clerk.SecretKey,
		JWTKey: cfg.Clerk.JWTKey, AuthorizedParties: cfg.Clerk.AuthorizedParties, PublicURL: cfg.PublicURL})
	if err != nil {
		return "", "", err
	}
	cache, err := cache.NewEntitlementCache(noStore{}, 1000)
	if err != nil {
		return "", "", err
	}
	cache.Put(proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}, &proxy.Entitlements{
		Subscriptions: []proxy.Subscription{{ID: "sub_load", Plan: "pro", Status: proxy.StatusActive}}})
	gw, err := gateway.New(gateway.Options{Config: cfg, Auth: cc, Portal: cc, State: gateway.NewState(gateway.StateOptions{Sessions: cc}), Entitlements: cache,
		Logger: slog.New(slog.DiscardHandler), Internal: internal})
	if err != nil {
		return "", "", err
	}
	go (&http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)

	now := time.Now()
	tok := sb.MintSessionToken("user_ada", "sess_load", now, nil)
	cookie := fmt.Sprintf("__session=%s; __client_uat=%d", tok, now.Unix()-5)
	// One request first, as a browser would, to pick up the gateway cookie.
	req, _ := http.NewRequest("GET", gwURL+"/app/x", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", "", fmt.Errorf("warm-up request: status %d", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == gateway.GatewayCookie {
			cookie += "; " + c.Name + "=" + c.Value
		}
	}

	return gwURL, cookie, nil
}

type bufPool struct{ p sync.Pool }

func (b *bufPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}
func (b *bufPool) Put(v []byte) { b.p.Put(&v) }

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

type noStore struct{}

func (noStore) Entitlements(context.Context, proxy.Subject) (*proxy.Entitlements, error) {
	return nil, nil
}

func serve(h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	return "http://" + ln.Addr().String()
}

var (
	rpsRe    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	p99Re    = regexp.MustCompile(`\s99%\s+(\S+)`)
	non2xxRe = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
)

func wrk(u, cookie string, threads, conns int, d time.Duration) (float64, string, int, error) {
	host, _ := url.Parse(u)
	if h := host.Hostname(); h != "127.0.0.1" {
		return 0, "", 0, fmt.Errorf("refusing to load %s: loopback only", h)
	}
	cmd := exec.Command("wrk", "--latency", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", d.String(), "-H", "Cookie: "+cookie, "-H", "Accept: text/html", u)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return 0, "", 0, fmt.Errorf("wrk: %v: %s", err, b)
	}
	m := rpsRe.FindSubmatch(b)
	if m == nil {
		return 0, "", 0, fmt.Errorf("no Requests/sec in wrk output: %s", b)
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	p99 := ""
	if m := p99Re.FindSubmatch(b); m != nil {
		p99 = string(m[1])
	}
	non2xx := 0
	if m := non2xxRe.FindSubmatch(b); m != nil {
		non2xx, _ = strconv.Atoi(string(m[1]))
	}
	return rps, p99, non2xx, nil
}

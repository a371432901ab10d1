package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/cmd/internal/storegen"
	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
	clerksandbox "github.com/tollgate/tollgate/proxy/sandbox/clerk"
	stripesandbox "github.com/tollgate/tollgate/proxy/sandbox/stripe"
)

// The million-user store scenario: a store of n made-up subjects (written
// by storegen, or given), a real `tollgate serve` on it in a child process
// against the sandbox Clerk and Stripe, and what it costs:
//
//   - the file, in bytes per subject and per customer;
//   - start-up, to the first paid answer, and the memory then;
//   - memory after warm distinct users each had a paid request answered
//     (their entitlements in the LRU of cache entries), anonymous and
//     file-backed apart;
//   - the admin console's user listing, every sort both ways, first and
//     last pages, filters and searches, end to end.
//
// With -db postgres the same bbolt store is then copied into PostgreSQL by
// `tollgate store copy` (timed), tollgate serve runs on it (store.driver:
// postgres), and the database's size stands for the file's.
const storeUsage = `tollgate-load million-user-store [-n 1000000] [-profile mixed|paying] [-store FILE] [-db bolt|postgres [-dsn DSN]] [-cache 100000] [-warm 100000]`

func runStore(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tollgate-load million-user-store", flag.ContinueOnError)
	n := fs.Int("n", 1_000_000, "subjects to generate (without -store)")
	profile := fs.String("profile", string(storegen.Mixed), "what to generate: mixed or paying")
	storePath := fs.String("store", "", "an existing store to serve instead (an older schema is migrated on open, and timed)")
	keep := fs.Bool("keep", false, "keep the generated store")
	cacheSize := fs.Int("cache", 100_000, "store.cache_size: entitlements in the LRU")
	warm := fs.Int("warm", 100_000, "distinct users whose paid request warms the LRU")
	conc := fs.Int("c", 8, "requests in flight while warming")
	settle := fs.Duration("settle", 5*time.Second, "how long after start-up to read the gateway's memory again (a full read of the store would show as file-backed pages by then)")
	bin := fs.String("tollgate", "", "the tollgate binary (default: go build ./cmd/tollgate)")
	db := fs.String("db", "bolt", "the store tollgate serve runs on: bolt, or postgres (the bbolt store copied in by tollgate store copy)")
	dsn := fs.String("dsn", "", "with -db postgres: an empty database to copy into, or one holding a copy of -store already (default: a throwaway local cluster, fsync on)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w\nusage: %s", err, storeUsage)
	}
	if *db != "bolt" && *db != "postgres" {
		return fmt.Errorf("unknown -db %q; want bolt or postgres\nusage: %s", *db, storeUsage)
	}
	dir, err := os.MkdirTemp("", "tollgate-store-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	now := time.Now().UTC().Truncate(time.Second)

	// The store.
	path := *storePath
	if path == "" {
		path = filepath.Join(dir, "tollgate.db")
		if *keep {
			path = fmt.Sprintf("tollgate-%d-%s.db", *n, *profile)
		}
		cpu0 := cpuTime()
		counts, took, err := storegen.WriteFile(path, storegen.Options{N: *n, Seed: 1, Now: now, Profile: storegen.Profile(*profile)})
		if err != nil {
			return err
		}
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "store: %d subjects (%d users, %d organisations), %d customers, %d subscriptions, written in %s (%s of CPU)\n",
			counts.Subjects, counts.Users, counts.Orgs, counts.Customers, counts.Subscriptions, took.Round(100*time.Millisecond), (cpuTime() - cpu0).Round(100*time.Millisecond))
		fmt.Fprintf(out, "file: %s, %.0f bytes per subject, %.0f per customer (%.2f of the 500 target)\n", megabytes(st.Size()),
			float64(st.Size())/float64(max(counts.Subjects, 1)), float64(st.Size())/float64(max(counts.Customers, 1)),
			float64(st.Size())/float64(max(counts.Customers, 1))/500)
		if *keep {
			fmt.Fprintf(out, "kept %s\n", path)
		}
	}
	users, err := pickUsers(path, *warm, out)
	if err != nil {
		return err
	}
	if *bin == "" {
		*bin = filepath.Join(dir, "tollgate")
		build := exec.Command("go", "build", "-o", *bin, "./cmd/tollgate")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/tollgate (run from the repository): %w\n%s", err, b)
		}
	}
	gw := gatewayConfig{store: path, cache: *cacheSize}
	if *db == "postgres" {
		pg, cleanup, err := copyToPostgres(*bin, path, *dsn, out)
		if err != nil {
			return err
		}
		defer cleanup()
		gw.dsn = pg
	}

	// The sandbox, an upstream, and tollgate serve on the store. Each
	// user's session token is signed first, on every core: signing is
	// Clerk's work, not the gateway's.
	sb, err := clerksandbox.New(clerksandbox.Options{TokenTTL: 2 * time.Hour})
	if err != nil {
		return err
	}
	tokens := make([]string, len(users))
	var signing sync.WaitGroup
	for w := range runtime.GOMAXPROCS(0) {
		signing.Go(func() {
			for i := w; i < len(users); i += runtime.GOMAXPROCS(0) {
				tokens[i] = sb.MintSessionToken(users[i], "sess_"+users[i], now, nil)
			}
		})
	}
	signing.Wait()
	clerkURL := serve(sb.Handler())
	sb.SetBaseURL(clerkURL)
	stripeSB := stripesandbox.New(stripesandbox.Options{Prices: []stripesandbox.Price{
		{ID: "price_pro", Product: "Pro", Currency: "usd", UnitAmount: 1200, Interval: "month"},
		{ID: "price_business", Product: "Business", Currency: "usd", UnitAmount: 4900, Interval: "month"},
		{ID: "price_team", Product: "Team", Currency: "usd", UnitAmount: 9900, Interval: "month"},
	}})
	defer stripeSB.Close()
	stripeURL := serve(stripeSB.Handler())
	upstream := serve(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }))
	gw.upstream, gw.clerk, gw.clerkURL, gw.stripeURL, gw.stripeKey = upstream, sb, clerkURL, stripeURL, stripeSB.SecretKey()
	child, err := startServeChild(*bin, dir, gw)
	if err != nil {
		return err
	}
	defer child.stop()
	paid := func(i int) (int, error) {
		req, _ := http.NewRequest("GET", child.url+"/routes/415VNA/x", nil)
		req.Header.Set("Authorization", "Bearer "+tokens[i])
		resp, err := noRedirect.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	code, err := paid(0)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("first paid request for %s: %d, %v\n%s", users[0], code, err, child.logs())
	}
	firstAnswer := time.Since(child.started)
	fmt.Fprintf(out, "start-up: serving after %s, the first paid answer after %s (%.2f of the 2 s target); %s\n",
		child.serving.Round(time.Millisecond), firstAnswer.Round(time.Millisecond), firstAnswer.Seconds()/2, child.memory())
	if *settle > 0 {
		time.Sleep(*settle)
		fmt.Fprintf(out, "%s after start-up: %s\n", *settle, child.memory())
	}

	// Warm the LRU with distinct users' entitlements.
	start := time.Now()
	var done, granted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, *conc)
	next := atomic.Int64{}
	for range *conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(users) {
					return
				}
				code, err := paid(i)
				if err != nil {
					errs <- err
					return
				}
				if code == http.StatusOK {
					granted.Add(1)
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("warming: %w", err)
	}
	took := time.Since(start)
	fmt.Fprintf(out, "warm: %d distinct users' paid requests in %s (%.0f/s), %d granted; %s (RssAnon %.2f of the 150 MB target); Go heap %s\n",
		done.Load(), took.Round(100*time.Millisecond), float64(done.Load())/took.Seconds(), granted.Load(), child.memory(), float64(child.anon())/150e6,
		child.heap())

	// The console's listing, end to end, as an admin.
	if err := timeConsole(out, child.url, sb, users); err != nil {
		return err
	}
	if gw.dsn != "" {
		return pgSize(gw.dsn, "after the run (the users' sightings written)", out)
	}
	return nil
}

// pickUsers opens the store (migrating an older one, timed) and returns up
// to n user IDs from pages of the ID sort: those a paid route lets in
// first, then the others with a customer, then the rest.
func pickUsers(path string, n int, out io.Writer) ([]string, error) {
	start := time.Now()
	s, err := bolt.Open(path, bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if took := time.Since(start); took > time.Second {
		fmt.Fprintf(out, "opening the store took %s (a migration from an older schema)\n", took.Round(100*time.Millisecond))
	}
	var granted, paying, others []string
	f := proxy.UserFilter{Limit: proxy.MaxUsersPage}
	for len(granted)+len(paying) < n {
		page, err := s.ListPage(context.Background(), f)
		if err != nil {
			return nil, err
		}
		for _, u := range page.Users {
			if u.Kind != proxy.SubjectUser {
				continue
			}
			switch {
			case len(u.Plans) > 0:
				granted = append(granted, u.ID)
			case u.CustomerID != "":
				paying = append(paying, u.ID)
			case len(granted)+len(paying)+len(others) < n:
				others = append(others, u.ID)
			}
		}
		if page.Next == "" {
			break
		}
		f.After = page.Next
	}
	users := slices.Concat(granted, paying, others)
	if len(granted) == 0 {
		return nil, errors.New("the store holds no user a paid route lets in")
	}
	return users[:min(n, len(users))], nil
}

// timeConsole times the admin console's users page, end to end.
func timeConsole(out io.Writer, base string, sb *clerksandbox.Clerk, users []string) error {
	token := sb.MintSessionToken("user_admin", "sess_admin", time.Now(), nil)
	get := func(query string) (time.Duration, error) {
		req, _ := http.NewRequest("GET", base+"/.tollgate/admin/users?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "text/html")
		start := time.Now()
		resp, err := noRedirect.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("%s: %d", query, resp.StatusCode)
		}
		return time.Since(start), err
	}
	var queries []string
	for _, sort := range []string{"last_seen", "first_seen", "email", "status", "id"} {
		for _, dir := range []string{"asc", "desc"} {
			queries = append(queries, "sort="+sort+"&dir="+dir, "sort="+sort+"&dir="+dir+"&page=last")
		}
	}
	queries = append(queries, "status=past_due&sort=email", "status=none&sort=last_seen&dir=desc", "plan=business&sort=status",
		"status=trialing&plan=business&sort=first_seen", "q=grace.42", "q="+users[len(users)/2], "q=cus_00", "q=nobody%40nowhere")
	var worst time.Duration
	var all []time.Duration
	var over []string
	slowest := ""
	for _, q := range queries {
		var took []time.Duration
		for range 3 {
			d, err := get(q)
			if err != nil {
				return fmt.Errorf("console: %w", err)
			}
			took = append(took, d)
		}
		slices.Sort(took)
		all = append(all, took[1])
		if took[1] > 100*time.Millisecond {
			over = append(over, fmt.Sprintf("%s %s", q, took[1].Round(time.Millisecond)))
		}
		if took[2] > worst {
			worst, slowest = took[2], fmt.Sprintf("%s: %s, %s, %s", q, took[0].Round(10*time.Microsecond), took[1].Round(10*time.Microsecond), took[2].Round(10*time.Microsecond))
		}
	}
	slices.Sort(all)
	fmt.Fprintf(out, "console users page (%d pages: every sort both ways, first and last, filters, searches; 3 runs each): median %s, slowest median %s, worst %s (%.2f of the 100 ms target; %s)\n",
		len(queries), all[len(all)/2].Round(10*time.Microsecond), all[len(all)-1].Round(10*time.Microsecond), worst.Round(10*time.Microsecond),
		float64(worst)/float64(100*time.Millisecond), slowest)
	if len(over) > 0 {
		fmt.Fprintf(out, "pages whose median is over 100 ms: %s\n", strings.Join(over, "; "))
	}
	return nil
}

var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{MaxIdleConnsPerHost: 64},
	Timeout:       30 * time.Second,
}

type gatewayConfig struct {
	store, upstream, clerkURL, stripeURL, stripeKey string
	dsn                                             string // a PostgreSQL store instead of the file store
	cache                                           int
	clerk                                           *clerksandbox.Clerk
}

const storeConfig = `
listen: "%s"
public_url: "http://%s"
upstream: "%s"
default_access: paid
clerk:
  publishable_key: "%s"
  secret_key: "%s"
  jwt_key: "%s"
  api_url: "%s/v1"
  frontend_api_url: "%s"
session:
  secret: "0123456789abcdef0123456789abcdef"
  # wrk sends one Cookie header for minutes and never keeps the gateway
  # cookie a browser would get again every refresh/2: past that, every
  # request would be answered with a new one. A browser's steady state is
  # "nothing to set".
  refresh: 4h
  ttl: 8h
stripe:
  secret_key: "%s"
  webhook_secret: "whsec_load"
  api_url: "%s"
plans:
  # LIMITED: a rate and a monthly quota no run reaches, so every request
  # there goes through the limiter and is admitted (README "Limits").
  pro: { prices: [price_pro], routes: ["415VNA", "LIMITED"], limits: { LIMITED: { rate: 1000000/s, burst: 1000000, quota: 1000000000000/month } } }
  business: { prices: [price_business], routes: ["*"], limits: { LIMITED: { rate: 1000000/s, burst: 1000000, quota: 1000000000000/month } } }
  team: { prices: [price_team], routes: ["*"], scope: organization }
routes:
  - { path: "/routes/{route}/*", access: paid }
api_keys:
  enabled: true
store:
  %s
  cache_size: %d
admin:
  listen: "%s"
  token: "load-admin-token-0123456789"
  users: ["user_admin"]
`

// storeKeys is the store section's keys: bbolt's file, or PostgreSQL.
func storeKeys(c gatewayConfig) string {
	if c.dsn != "" {
		return fmt.Sprintf("driver: postgres\n  dsn: %q", c.dsn)
	}
	return fmt.Sprintf("path: %q", c.store)
}

// serveChild is the `tollgate serve` child. Its log goes to a file, so
// that reading it costs the scenario nothing while load runs.
type serveChild struct {
	cmd     *exec.Cmd
	url     string
	admin   string // host:port
	started time.Time
	serving time.Duration // when it logged that it serves
	logPath string
	exited  chan struct{}
}

// startServeChild starts tollgate serve on free loopback ports and returns
// once it logs that it serves (retrying on ports taken meanwhile).
func startServeChild(bin, dir string, c gatewayConfig) (*serveChild, error) {
	for attempt := 1; ; attempt++ {
		addr, admin := freeAddr(), freeAddr()
		pem := strings.ReplaceAll(c.clerk.PublicKeyPEM(), "\n", `\n`)
		cfg := fmt.Sprintf(storeConfig, addr, addr, c.upstream, c.clerk.PublishableKey(), c.clerk.SecretKey(), pem, c.clerkURL, c.clerkURL,
			c.stripeKey, c.stripeURL, storeKeys(c), c.cache, admin)
		path := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		g := &serveChild{url: "http://" + addr, admin: admin, logPath: filepath.Join(dir, fmt.Sprintf("tollgate-%d.log", attempt)), exited: make(chan struct{})}
		logf, err := os.Create(g.logPath)
		if err != nil {
			return nil, err
		}
		g.cmd = exec.Command(bin, "serve", "-config", path)
		g.cmd.Stdout, g.cmd.Stderr = logf, logf
		g.started = time.Now()
		err = g.cmd.Start()
		logf.Close() // the child has its own copy
		if err != nil {
			return nil, err
		}
		go func() { _ = g.cmd.Wait(); close(g.exited) }()
		deadline := time.Now().Add(10 * time.Minute)
		for {
			if strings.Contains(g.logs(), "tollgate serving") {
				g.serving = time.Since(g.started)
				return g, nil
			}
			select {
			case <-g.exited:
				if strings.Contains(g.logs(), "address already in use") && attempt < 5 {
					break
				}
				return nil, fmt.Errorf("tollgate serve exited before serving:\n%s", g.logs())
			case <-time.After(5 * time.Millisecond):
				if time.Now().After(deadline) {
					g.stop()
					return nil, fmt.Errorf("tollgate serve did not serve within 10 minutes:\n%s", g.logs())
				}
				continue
			}
			break
		}
	}
}

func (g *serveChild) logs() string {
	b, _ := os.ReadFile(g.logPath)
	return string(b)
}

// stop ends the child, by its PID, and waits for it.
func (g *serveChild) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(30 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
}

// memory is the child's resident memory, anonymous and file-backed apart.
func (g *serveChild) memory() string {
	anon, file := procRSS(g.cmd.Process.Pid)
	return fmt.Sprintf("RssAnon %s, RssFile %s", megabytes(anon), megabytes(file))
}

func (g *serveChild) anon() int64 { a, _ := procRSS(g.cmd.Process.Pid); return a }

// metricsURL is the child's /metrics, on its admin listener.
func (g *serveChild) metricsURL() string { return "http://" + g.admin + "/metrics" }

// heap reads the Go heap from the child's /metrics: in use (live and not
// yet collected), and what the runtime holds without having returned it.
func (g *serveChild) heap() string {
	resp, err := http.Get("http://" + g.admin + "/metrics")
	if err != nil {
		return "unknown: " + err.Error()
	}
	defer resp.Body.Close()
	vals := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.HasPrefix(f[0], "go_memstats_") {
			vals[f[0]], _ = strconv.ParseFloat(f[1], 64)
		}
	}
	return fmt.Sprintf("alloc %s, in use %s, idle not returned %s", megabytes(int64(vals["go_memstats_heap_alloc_bytes"])),
		megabytes(int64(vals["go_memstats_heap_inuse_bytes"])), megabytes(int64(vals["go_memstats_heap_idle_bytes"]-vals["go_memstats_heap_released_bytes"])))
}

// procRSS reads RssAnon and RssFile of a process, in bytes.
func procRSS(pid int) (anon, file int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "RssAnon:":
			anon = kb << 10
		case "RssFile:":
			file = kb << 10
		}
	}
	return anon, file
}

// cpuTime is the CPU this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func megabytes(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// freeAddr is a loopback address free a moment ago (startServeChild retries
// when another program takes it first).
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}

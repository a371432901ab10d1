package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/cmd/internal/storegen"
	"github.com/tollgate/tollgate/proxy/postgres/pgtest"
	clerksandbox "github.com/tollgate/tollgate/proxy/sandbox/clerk"
	stripesandbox "github.com/tollgate/tollgate/proxy/sandbox/stripe"
)

// The performance scenarios (README, "Performance"): wrk against a real
// `tollgate serve` and against two bare httputil.ReverseProxy, each in a
// process of its own in front of one upstream, in interleaved rounds:
//
//   - wrk: a paid request on an LRU hit (a browser's cookies: the Clerk
//     session token and the gateway cookie);
//   - cold-miss: paid requests of distinct users, each an LRU miss and a
//     store hit, against the same users on LRU hits.
//
// Every round runs every target once at each concurrency; a figure is the
// median of the rounds, and a ratio is the median of the rounds' ratios,
// each taken within its round (so that drift on a shared machine cancels),
// with the spread beside it. wrk -also adds other tollgate builds, each in
// a process of its own loaded as a browser, to compare builds round by
// round. The bare proxies: "tuned" has a Transport keeping 512 idle
// connections per host (the stock one keeps 2, which would measure
// connection churn), "pooled" also reuses the 32 KiB copy buffers, as
// tollgate does; -bare-like-tollgate gives both tollgate's other Transport
// settings too. CPU per request is the target process's utime+stime
// (/proc/PID/stat) over the round, divided by the requests wrk completed;
// allocations per request the process's Go heap allocations
// (go_memstats_mallocs_total: tollgate's /metrics on its admin listener,
// the bare proxies' own) over the round, divided likewise.

const (
	perfUpstreamArg = "perf-upstream-child"
	perfBareArg     = "perf-bare-child"
)

// perfFlags are the flags both scenarios share.
type perfFlags struct {
	duration time.Duration
	conns    []int
	threads  int
	rounds   int
	body     int
	bin      string
	stores   []string // bolt, postgres: each store's tollgate serve in the same run
	// bareLikeTollgate gives the bare proxies tollgate's upstream Transport
	// settings (no cap on idle connections across hosts, no proxy from the
	// environment, no compression asked on the client's behalf), so that
	// the ratio is the gate's own cost alone.
	bareLikeTollgate bool
	// fixedOrder loads the targets in the same order every round (until
	// 2026-12-07 04:46 UTC, the only order), instead of the processes
	// taking turns.
	fixedOrder bool
	// eachRun prints every wrk run as it ends, in the order they ran.
	eachRun bool
}

func (p *perfFlags) register(fs *flag.FlagSet, conns string) *string {
	fs.DurationVar(&p.duration, "d", 5*time.Second, "wrk duration per target and round")
	fs.IntVar(&p.threads, "t", 1, "wrk threads")
	fs.IntVar(&p.rounds, "rounds", 7, "rounds over all targets, interleaved; figures are medians of the rounds")
	fs.IntVar(&p.body, "body", 1024, "bytes of the upstream's answer")
	fs.StringVar(&p.bin, "tollgate", "", "the tollgate binary (default: go build ./cmd/tollgate)")
	fs.BoolVar(&p.bareLikeTollgate, "bare-like-tollgate", false, "give the bare proxies tollgate's upstream Transport settings (MaxIdleConns 0, Proxy nil, DisableCompression), so that a ratio measures the gate alone; default: the issue's tuned Transport (MaxIdleConnsPerHost 512 on the standard one)")
	fs.BoolVar(&p.fixedOrder, "fixed-order", false, "load the targets in the same order every round; default: the processes take turns at going first, a process's targets kept together")
	fs.BoolVar(&p.eachRun, "each-run", false, "print every wrk run as it ends (round, position, req/s, p99, CPU a request), to see what the order does")
	fs.Func("stores", "the stores tollgate serve runs on, each a target of the same run: bolt, postgres or bolt,postgres (default bolt; PostgreSQL is a throwaway local cluster with fsync on, filled by tollgate store copy)", func(v string) error {
		p.stores = nil
		for _, k := range strings.Split(v, ",") {
			if k != "bolt" && k != "postgres" {
				return fmt.Errorf("unknown store %q; want bolt or postgres", k)
			}
			p.stores = append(p.stores, k)
		}
		return nil
	})
	return fs.String("c", conns, "wrk connections, a comma-separated list")
}

// orderNote says in a run's heading how its rounds are ordered.
func (p *perfFlags) orderNote() string {
	if p.fixedOrder {
		return "the same order every round"
	}
	return "the processes take turns at going first"
}

// storeKinds are the stores asked for (default bolt).
func (p *perfFlags) storeKinds() []string {
	if len(p.stores) == 0 {
		return []string{"bolt"}
	}
	return p.stores
}

// storeSuffix names a target's store when the run compares stores.
func storeSuffix(p *perfFlags, kind string) string {
	if len(p.storeKinds()) < 2 && kind == "bolt" {
		return ""
	}
	return ", " + kind
}

func parseConns(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-c %q: want positive numbers, comma-separated", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// perfTarget is one process wrk loads.
type perfTarget struct {
	name  string
	url   string
	pid   int
	lua   string   // a wrk script (rotating users), or none
	heads []string // headers for every request
	// mallocs answers the process's go_memstats_mallocs_total (Prometheus
	// text; "": not known).
	mallocs string
}

// roundResult is one wrk run against one target.
type roundResult struct {
	rps           float64
	p50, p99      time.Duration
	requests      int64
	cpuPerRequest time.Duration // the target process's CPU / requests
	// appCPU and wrkCPU are the upstream's and wrk's CPU / requests over
	// the same run: on cores the three share, what a target's requests
	// cost the other two moves its req/s as much as its own CPU does.
	appCPU, wrkCPU time.Duration
	allocsPerReq   float64 // the target process's Go allocations / requests (-1: not known)
}

// perfEnv is the upstream and the two bare proxies, in child processes,
// and the sandboxes and the store a tollgate serve needs.
type perfEnv struct {
	dir                 string
	bin                 string
	upstream            string
	upstreamPID         int
	tuned, pooled       perfTarget
	children            []*child
	sb                  *clerksandbox.Clerk
	clerkURL, stripeURL string
	stripeKey           string
	closeStripe         func()
	pg                  *pgtest.Cluster // started for the first PostgreSQL gateway
	pgSeq               int
}

func newPerfEnv(p *perfFlags, out io.Writer) (*perfEnv, error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return nil, errors.New("wrk not found (apt-get install -y wrk)")
	}
	dir, err := os.MkdirTemp("", "tollgate-perf-*")
	if err != nil {
		return nil, err
	}
	e := &perfEnv{dir: dir, bin: p.bin}
	up, err := startChild(perfUpstreamArg, "-body", strconv.Itoa(p.body))
	if err != nil {
		e.close()
		return nil, err
	}
	e.children = append(e.children, up)
	if e.upstream, err = up.readLine(); err != nil {
		e.close()
		return nil, err
	}
	e.upstreamPID = up.cmd.Process.Pid
	like := ""
	if p.bareLikeTollgate {
		like = " (like tollgate's)"
	}
	for _, t := range []struct {
		target *perfTarget
		name   string
		args   []string
	}{
		{&e.tuned, "bare, tuned Transport" + like, nil},
		{&e.pooled, "bare, tuned + buffer pool", []string{"-pool"}},
	} {
		args := append([]string{perfBareArg, "-upstream", e.upstream}, t.args...)
		if p.bareLikeTollgate {
			args = append(args, "-like-tollgate")
		}
		c, err := startChild(args...)
		if err != nil {
			e.close()
			return nil, err
		}
		e.children = append(e.children, c)
		u, err := c.readLine()
		if err != nil {
			e.close()
			return nil, err
		}
		m, err := c.readLine()
		if err != nil {
			e.close()
			return nil, err
		}
		*t.target = perfTarget{name: t.name, url: u, pid: c.cmd.Process.Pid, mallocs: m}
	}
	if e.sb, err = clerksandbox.New(clerksandbox.Options{TokenTTL: 4 * time.Hour}); err != nil {
		e.close()
		return nil, err
	}
	e.clerkURL = serve(e.sb.Handler())
	e.sb.SetBaseURL(e.clerkURL)
	st := stripesandbox.New(stripesandbox.Options{Prices: []stripesandbox.Price{
		{ID: "price_pro", Product: "Pro", Currency: "usd", UnitAmount: 1200, Interval: "month"},
		{ID: "price_business", Product: "Business", Currency: "usd", UnitAmount: 4900, Interval: "month"},
		{ID: "price_team", Product: "Team", Currency: "usd", UnitAmount: 9900, Interval: "month"},
	}})
	e.closeStripe = func() { st.Close() }
	e.stripeURL, e.stripeKey = serve(st.Handler()), st.SecretKey()
	if e.bin == "" {
		e.bin = filepath.Join(dir, "tollgate")
		build := exec.Command("go", "build", "-o", e.bin, "./cmd/tollgate")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := build.CombinedOutput(); err != nil {
			e.close()
			return nil, fmt.Errorf("go build ./cmd/tollgate (run from the repository): %w\n%s", err, b)
		}
	}
	fmt.Fprintf(out, "upstream %s answers %d bytes; %d CPUs; the machine may be shared: compare ratios within a run\n", e.upstream, p.body, runtime.NumCPU())
	return e, nil
}

func (e *perfEnv) close() {
	for _, c := range e.children {
		c.close()
	}
	if e.pg != nil {
		e.pg.Remove()
	}
	if e.closeStripe != nil {
		e.closeStripe()
	}
	os.RemoveAll(e.dir)
}

// store generates a store of n paying users (storegen) and returns its
// path and the users a paid route lets in.
func (e *perfEnv) store(n int, name string, out io.Writer) (string, []string, error) {
	path := filepath.Join(e.dir, name)
	counts, took, err := storegen.WriteFile(path, storegen.Options{N: n, Seed: 1, Now: time.Now().UTC().Truncate(time.Second), Profile: storegen.Paying})
	if err != nil {
		return "", nil, err
	}
	users, err := pickUsers(path, n, io.Discard)
	if err != nil {
		return "", nil, err
	}
	fmt.Fprintf(out, "store: %d subjects, %d customers (storegen, paying), written in %s; %d users a paid route lets in\n",
		counts.Subjects, counts.Customers, took.Round(100*time.Millisecond), len(users))
	return path, users, nil
}

// gateway starts tollgate serve on a copy of the store at path, its LRU
// holding cache entitlements; on PostgreSQL (kind "postgres") the copy is
// tollgate store copy's into a fresh database of a local cluster.
func (e *perfEnv) gateway(path string, cache int, kind string) (*serveChild, error) {
	return e.gatewayOf(e.bin, path, cache, kind)
}

// gatewayOf is gateway with another tollgate binary.
func (e *perfEnv) gatewayOf(bin, path string, cache int, kind string) (*serveChild, error) {
	cp := filepath.Join(e.dir, fmt.Sprintf("copy-%d-%d.db", cache, time.Now().UnixNano()))
	if err := copyFile(path, cp); err != nil {
		return nil, err
	}
	sub, err := os.MkdirTemp(e.dir, "gw-*")
	if err != nil {
		return nil, err
	}
	gc := gatewayConfig{store: cp, cache: cache, upstream: e.upstream, clerk: e.sb, clerkURL: e.clerkURL,
		stripeURL: e.stripeURL, stripeKey: e.stripeKey}
	if kind == "postgres" {
		if e.pg == nil {
			if e.pg, err = pgtest.StartCluster(pgtest.Options{Durable: true}); err != nil {
				return nil, err
			}
		}
		e.pgSeq++
		if gc.dsn, err = e.pg.CreateDB(context.Background(), fmt.Sprintf("perf_%d", e.pgSeq)); err != nil {
			return nil, err
		}
		if b, err := exec.Command(bin, "store", "copy", "-from", "bolt:"+cp, "-to", gc.dsn).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("tollgate store copy: %w\n%s", err, b)
		}
	}
	g, err := startServeChild(bin, sub, gc)
	if err != nil {
		return nil, err
	}
	return g, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// runRounds runs every target at every concurrency, rounds times,
// interleaved, reading the upstream's (appPID) CPU too; results[c][target]
// holds one result per round.
func runRounds(p *perfFlags, appPID int, targets []perfTarget, out io.Writer) ([][][]roundResult, error) {
	results := make([][][]roundResult, len(p.conns))
	for ci := range p.conns {
		results[ci] = make([][]roundResult, len(targets))
	}
	for r := range p.rounds {
		order := roundOrder(targets, r, p.fixedOrder)
		for ci, c := range p.conns {
			for pos, ti := range order {
				t := targets[ti]
				res, err := wrkRound(t, appPID, p.threads, c, p.duration)
				if err != nil {
					return nil, fmt.Errorf("round %d, c%d, %s: %w", r+1, c, t.name, err)
				}
				results[ci][ti] = append(results[ci][ti], res)
				if p.eachRun {
					fmt.Fprintf(out, "round %d, c%d, #%d %-36s %6.0f req/s  p99 %8s  CPU %6.1f µs/req\n",
						r+1, c, pos+1, t.name, res.rps, res.p99.Round(10*time.Microsecond), float64(res.cpuPerRequest)/float64(time.Microsecond))
				}
			}
		}
		fmt.Fprintf(out, "round %d of %d done\n", r+1, p.rounds)
	}
	return results, nil
}

// roundOrder is the order round r loads the targets in, as indices. The
// targets of one process stay together and in their given order (a
// process's first load after it sat idle costs more than its next, so a
// browser target, first of its process's, meets the same as each bare
// proxy does). The processes take turns at going first: round r starts
// with the r-th process (in order of first appearance), so that no
// process always follows the same other one or always waits as long
// (docs/PERFORMANCE.md, "Order within a round"). fixed keeps every round
// in the given order.
func roundOrder(targets []perfTarget, r int, fixed bool) []int {
	order := make([]int, 0, len(targets))
	if fixed {
		for i := range targets {
			order = append(order, i)
		}
		return order
	}
	var groups [][]int
	at := map[int]int{} // pid → index in groups
	for i, t := range targets {
		g, ok := at[t.pid]
		if !ok {
			g = len(groups)
			at[t.pid] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	for i := range groups {
		order = append(order, groups[(r+i)%len(groups)]...)
	}
	return order
}

// stat is a median with its spread.
type stat struct{ med, lo, hi float64 }

func statOf(xs []float64) stat {
	s := slices.Clone(xs)
	slices.Sort(s)
	return stat{med: s[len(s)/2], lo: s[0], hi: s[len(s)-1]}
}

func (s stat) ratio() string { return fmt.Sprintf("%.2f (%.2f–%.2f)", s.med, s.lo, s.hi) }

// perRound maps each round of a target against the same round of a base.
func perRound(t, base []roundResult, f func(t, base roundResult) float64) stat {
	xs := make([]float64, len(t))
	for i := range t {
		xs[i] = f(t[i], base[i])
	}
	return statOf(xs)
}

func pick(rs []roundResult, f func(roundResult) float64) stat {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return statOf(xs)
}

func rps(t, b roundResult) float64 { return t.rps / b.rps }
func p99(t, b roundResult) float64 { return float64(t.p99) / float64(b.p99) }

// verdicts judges one target's rounds against the paid request's targets
// (README "Performance"), each median to three places: a table's two can
// round 0.946 up to the target.
func verdicts(t, tuned, pooled []roundResult) string {
	var b strings.Builder
	for i, v := range []struct {
		name   string
		s      stat
		limit  float64
		atMost bool
	}{
		{"× tuned bare", perRound(t, tuned, rps), 1.3, false},
		{"× pooled bare", perRound(t, pooled, rps), 0.95, false},
		{"p99 / tuned p99", perRound(t, tuned, p99), 1.1, true},
	} {
		if i > 0 {
			b.WriteString("; ")
		}
		holds := v.s.med >= v.limit
		op := "≥"
		if v.atMost {
			holds, op = v.s.med <= v.limit, "≤"
		}
		verdict := "holds"
		if !holds {
			verdict = "misses"
		}
		fmt.Fprintf(&b, "%s %.3f (target %s %.2f: %s)", v.name, v.s.med, op, v.limit, verdict)
	}
	return b.String()
}

// printTable prints one concurrency's figures: tuned is targets[0] and
// pooled targets[1].
func printTable(out io.Writer, c int, targets []perfTarget, res [][]roundResult) {
	fmt.Fprintf(out, "\nc%d: median of %d rounds (min–max); ratios taken within each round\n", c, len(res[0]))
	fmt.Fprintf(out, "%-40s %9s %17s %17s %9s %9s %17s %10s %11s %10s %10s\n", "target", "req/s", "× tuned bare", "× pooled bare", "p50", "p99", "p99 / tuned p99", "CPU µs/req", "allocs/req", "app µs/req", "wrk µs/req")
	for ti, t := range targets {
		rs := res[ti]
		allocs := "?"
		if a := pick(rs, func(r roundResult) float64 { return r.allocsPerReq }); a.lo >= 0 {
			allocs = fmt.Sprintf("%.1f", a.med)
		}
		fmt.Fprintf(out, "%-40s %9.0f %17s %17s %9s %9s %17s %10.1f %11s %10.1f %10.1f\n", t.name,
			pick(rs, func(r roundResult) float64 { return r.rps }).med,
			perRound(rs, res[0], rps).ratio(), perRound(rs, res[1], rps).ratio(),
			time.Duration(pick(rs, func(r roundResult) float64 { return float64(r.p50) }).med).Round(time.Microsecond),
			time.Duration(pick(rs, func(r roundResult) float64 { return float64(r.p99) }).med).Round(time.Microsecond),
			perRound(rs, res[0], p99).ratio(),
			pick(rs, func(r roundResult) float64 { return float64(r.cpuPerRequest) / 1e3 }).med, allocs,
			pick(rs, func(r roundResult) float64 { return float64(r.appCPU) / 1e3 }).med,
			pick(rs, func(r roundResult) float64 { return float64(r.wrkCPU) / 1e3 }).med)
	}
}

// browserTarget is a paid request to g on an LRU hit, as a signed-in
// browser sends it (cookie: browserCookie's).
func browserTarget(name string, g *serveChild, cookie string) perfTarget {
	return perfTarget{name: name, url: g.url + "/routes/415VNA/x", pid: g.cmd.Process.Pid,
		heads: []string{"Cookie: " + cookie, "Accept: text/html"}, mallocs: g.metricsURL()}
}

// builtTollgate is a tollgate binary wrk -also loads beside the one under
// test.
type builtTollgate struct{ name, bin string }

// runWrk is the paid LRU-hit scenario.
func runWrk(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tollgate-load wrk", flag.ContinueOnError)
	var p perfFlags
	conns := p.register(fs, "50,200")
	var also []builtTollgate
	fs.Func("also", "NAME=BINARY: another tollgate build, loaded as a browser in a process of its own, a target of the same run (repeatable): two builds compared under the same conditions", func(v string) error {
		name, bin, ok := strings.Cut(v, "=")
		if !ok || name == "" || bin == "" {
			return fmt.Errorf("-also %q: want NAME=BINARY", v)
		}
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("-also %s: %w", name, err)
		}
		also = append(also, builtTollgate{name, bin})
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if p.conns, err = parseConns(*conns); err != nil {
		return err
	}
	e, err := newPerfEnv(&p, out)
	if err != nil {
		return err
	}
	defer e.close()
	path, users, err := e.store(1000, "wrk.db", out)
	if err != nil {
		return err
	}
	targets := []perfTarget{e.tuned, e.pooled}
	var heads []string
	var gws []*serveChild
	// judged: the browser targets the run's verdict covers, one for each
	// store and one for each -also build.
	var judged []int
	for _, kind := range p.storeKinds() {
		gw, err := e.gateway(path, 1000, kind)
		if err != nil {
			return err
		}
		defer gw.stop()
		gws = append(gws, gw)
		cookie, err := browserCookie(e.sb, gw.url, users[0])
		if err != nil {
			return fmt.Errorf("%w\n%s", err, gw.logs())
		}
		t := browserTarget("tollgate, paid (LRU hit)"+storeSuffix(&p, kind), gw, cookie)
		h := t.heads
		if heads == nil {
			heads = h
		}
		judged = append(judged, len(targets))
		targets = append(targets, t)
		if len(gws) == 1 {
			// targets[3], beside targets[2]: the limit's cost on the first store.
			targets = append(targets, perfTarget{name: "tollgate, paid under a limit" + storeSuffix(&p, kind), url: gw.url + "/routes/LIMITED/x", pid: gw.cmd.Process.Pid, heads: h, mallocs: gw.metricsURL()})
		}
	}
	gw := gws[0]
	for i := range 2 {
		targets[i].url += "/routes/415VNA/x"
		targets[i].heads = heads
	}
	// The same paid request as a program makes it, on the first store:
	// with a Clerk session token, and with a tollgate API key of the same
	// user's (issue 17: the key within 5% of the token).
	key, err := makeAPIKey(gw, users[0])
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tail(gw.logs(), 2000))
	}
	bearer := e.sb.MintSessionToken(users[0], "sess_"+users[0], time.Now(), nil)
	bearerAt := len(targets)
	targets = append(targets,
		perfTarget{name: "tollgate, paid, Clerk token", url: gw.url + "/routes/415VNA/x", pid: gw.cmd.Process.Pid,
			heads: []string{"Authorization: Bearer " + bearer}, mallocs: gw.metricsURL()},
		perfTarget{name: "tollgate, paid, API key", url: gw.url + "/routes/415VNA/x", pid: gw.cmd.Process.Pid,
			heads: []string{"Authorization: Bearer " + key}, mallocs: gw.metricsURL()})
	for _, t := range targets[bearerAt:] {
		if err := expectOK(t); err != nil {
			return fmt.Errorf("%w\n%s", err, tail(gw.logs(), 2000))
		}
	}
	// Other builds, each in a process of its own loaded only as a browser,
	// so that each is as idle before its turn as the bare proxies are.
	for _, b := range also {
		g, err := e.gatewayOf(b.bin, path, 1000, "bolt")
		if err != nil {
			return fmt.Errorf("-also %s: %w", b.name, err)
		}
		defer g.stop()
		cookie, err := browserCookie(e.sb, g.url, users[0])
		if err != nil {
			return fmt.Errorf("-also %s: %w\n%s", b.name, err, tail(g.logs(), 2000))
		}
		judged = append(judged, len(targets))
		targets = append(targets, browserTarget("also "+b.name+", paid (LRU hit)", g, cookie))
	}
	fmt.Fprintf(out, "wrk -t%d -d%s --latency, c %v, %d interleaved rounds (%s); tollgate serve (a store of 1,000 paying users, the LRU warm) as a browser: Clerk session token and gateway cookie\n",
		p.threads, p.duration, p.conns, p.rounds, p.orderNote())
	res, err := runRounds(&p, e.upstreamPID, targets, out)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tail(gw.logs(), 2000))
	}
	for ci, c := range p.conns {
		printTable(out, c, targets, res[ci])
	}
	fmt.Fprintln(out, "\ntargets (issue 15): paid ≥ 1.3× tuned bare and ≥ 0.95× pooled bare; p99 ≤ 1.1× tuned bare's")
	for ci, c := range p.conns {
		for _, ti := range judged {
			fmt.Fprintf(out, "c%d, %s: %s\n", c, targets[ti].name, verdicts(res[ci][ti], res[ci][0], res[ci][1]))
		}
	}
	for ci, c := range p.conns {
		// The same paid request, on a route of the plan with a rate and a
		// quota it never reaches, against the one without, round by round.
		fmt.Fprintf(out, "c%d: paid under a limit / the same paid request without: %s req/s (target ≥ 0.95, README \"Limits\")\n",
			c, perRound(res[ci][3], res[ci][2], rps).ratio())
	}
	for ci, c := range p.conns {
		fmt.Fprintf(out, "c%d: paid with an API key / the same with a Clerk session token: %s req/s, CPU per request %s (targets ≥ 0.95 and ≤ 1.05, issue 17)\n",
			c, perRound(res[ci][bearerAt+1], res[ci][bearerAt], rps).ratio(),
			perRound(res[ci][bearerAt+1], res[ci][bearerAt], func(t, b roundResult) float64 { return float64(t.cpuPerRequest) / float64(b.cpuPerRequest) }).ratio())
	}
	return nil
}

// makeAPIKey makes a tollgate API key of user's, for every route, with
// the admin API of the gateway's admin listener (README "Paid APIs").
func makeAPIKey(gw *serveChild, user string) (string, error) {
	req, _ := http.NewRequest("POST", "http://"+gw.admin+"/api/users/"+user+"/keys",
		strings.NewReader(`{"name":"load","scopes":["*"]}`))
	req.Header.Set("Authorization", "Bearer load-admin-token-0123456789")
	req.Header.Set("Content-Type", "application/json")
	resp, err := noRedirect.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var made struct {
		Key string `json:"key"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&made); err != nil || resp.StatusCode != http.StatusCreated || made.Key == "" {
		return "", fmt.Errorf("make an API key for %s: status %d, %v", user, resp.StatusCode, err)
	}
	return made.Key, nil
}

// expectOK checks that a target answers 200 before it is loaded.
func expectOK(t perfTarget) error {
	req, _ := http.NewRequest("GET", t.url, nil)
	for _, h := range t.heads {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: warm-up request: status %d", t.name, resp.StatusCode)
	}
	return nil
}

// browserCookie is the Cookie header of a signed-in browser of user's,
// with the gateway cookie tollgate gives on the first request.
func browserCookie(sb *clerksandbox.Clerk, gwURL, user string) (string, error) {
	now := time.Now()
	tok := sb.MintSessionToken(user, "sess_"+user, now, nil)
	cookie := fmt.Sprintf("__session=%s; __client_uat=%d", tok, now.Unix()-5)
	req, _ := http.NewRequest("GET", gwURL+"/routes/415VNA/x", nil)
	req.Header.Set("Cookie", cookie)
	req.Header.Set("Accept", "text/html")
	resp, err := noRedirect.Do(req)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("warm-up request for %s: status %d", user, resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, "__tollgate") || strings.HasPrefix(c.Name, "__Host-tollgate") {
			cookie += "; " + c.Name + "=" + c.Value
		}
	}
	return cookie, nil
}

// runColdMiss is the cold-user scenario: the same users' paid requests,
// wrk rotating their session tokens (Authorization: Bearer), through a
// tollgate whose LRU holds them all (hits) and through one whose LRU is
// smaller than their number (each request a miss, read from the store).
// Both verified every token before the rounds (the Clerk token cache holds
// them), so the difference is the entitlement's read from the store.
func runColdMiss(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tollgate-load cold-miss", flag.ContinueOnError)
	var p perfFlags
	conns := p.register(fs, "1,50")
	n := fs.Int("users", 8000, "distinct users, rotated (at most the Clerk token cache's 10,000, so that no token is verified twice)")
	cache := fs.Int("cache", 1000, "store.cache_size of the missing gateway (fewer than -users)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if p.conns, err = parseConns(*conns); err != nil {
		return err
	}
	if *cache >= *n {
		return fmt.Errorf("-cache %d must be below -users %d: every request is to miss", *cache, *n)
	}
	e, err := newPerfEnv(&p, out)
	if err != nil {
		return err
	}
	defer e.close()
	path, users, err := e.store(*n+*n/4, "cold.db", out)
	if err != nil {
		return err
	}
	users = users[:min(len(users), *n)]
	if len(users) <= *cache {
		return fmt.Errorf("only %d users a paid route lets in: not more than the LRU's %d", len(users), *cache)
	}
	hit, err := e.gateway(path, 2*len(users), "bolt")
	if err != nil {
		return err
	}
	defer hit.stop()
	var misses []*serveChild
	for _, kind := range p.storeKinds() {
		miss, err := e.gateway(path, *cache, kind)
		if err != nil {
			return err
		}
		defer miss.stop()
		misses = append(misses, miss)
	}
	miss := misses[0]

	// One token per user, signed on every core (Clerk's work, not the
	// gateway's), and a wrk script sending them in turn.
	now := time.Now()
	tokens := make([]string, len(users))
	var signing sync.WaitGroup
	for w := range runtime.GOMAXPROCS(0) {
		signing.Go(func() {
			for i := w; i < len(users); i += runtime.GOMAXPROCS(0) {
				tokens[i] = e.sb.MintSessionToken(users[i], "sess_"+users[i], now, nil)
			}
		})
	}
	signing.Wait()
	// Every gateway verifies every token once, and the hit gateway's LRU
	// takes every user's entitlements.
	for _, g := range append([]*serveChild{hit}, misses...) {
		if err := warmUsers(g.url, tokens); err != nil {
			return fmt.Errorf("%w\n%s", err, tail(g.logs(), 2000))
		}
	}
	lua, err := rotateScript(e.dir, tokens)
	if err != nil {
		return err
	}
	heads := []string{"Accept: application/json"}
	targets := []perfTarget{e.tuned, e.pooled,
		{name: "tollgate, paid, LRU hit", url: hit.url + "/routes/415VNA/x", pid: hit.cmd.Process.Pid, mallocs: hit.metricsURL()},
		{name: "tollgate, paid, LRU miss" + storeSuffix(&p, p.storeKinds()[0]), url: miss.url + "/routes/415VNA/x", pid: miss.cmd.Process.Pid, mallocs: miss.metricsURL()}}
	for i, kind := range p.storeKinds()[1:] {
		targets = append(targets, perfTarget{name: "tollgate, paid, LRU miss" + storeSuffix(&p, kind), url: misses[i+1].url + "/routes/415VNA/x", pid: misses[i+1].cmd.Process.Pid, mallocs: misses[i+1].metricsURL()})
	}
	for i := range targets {
		if i < 2 {
			targets[i].url += "/routes/415VNA/x"
		}
		targets[i].lua, targets[i].heads = lua, heads
	}
	fmt.Fprintf(out, "wrk -t%d -d%s --latency, c %v, %d interleaved rounds (%s); %d users' bearer tokens in turn; one tollgate serve's LRU holds them all, the other's %d\n",
		p.threads, p.duration, p.conns, p.rounds, p.orderNote(), len(users), *cache)
	res, err := runRounds(&p, e.upstreamPID, targets, out)
	if err != nil {
		return fmt.Errorf("%w\n%s\n%s", err, tail(hit.logs(), 1000), tail(miss.logs(), 1000))
	}
	for ci, c := range p.conns {
		printTable(out, c, targets, res[ci])
		for k, kind := range p.storeKinds() {
			d := perRound(res[ci][3+k], res[ci][2], func(t, b roundResult) float64 { return float64(t.p50-b.p50) / 1e3 })
			cpu := perRound(res[ci][3+k], res[ci][2], func(t, b roundResult) float64 { return float64(t.cpuPerRequest-b.cpuPerRequest) / 1e3 })
			fmt.Fprintf(out, "c%d, %s: a miss costs %+.0f µs (%+.0f to %+.0f) at p50 over a hit (target ≤ 50 µs: %.2f of it), and %+.1f µs of CPU (%+.1f to %+.1f)\n",
				c, kind, d.med, d.lo, d.hi, d.med/50, cpu.med, cpu.lo, cpu.hi)
		}
	}
	return nil
}

// warmUsers sends each token's paid request once, 8 at a time.
func warmUsers(gwURL string, tokens []string) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(tokens))
	sem := make(chan struct{}, 8)
	for _, tok := range tokens {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			req, _ := http.NewRequest("GET", gwURL+"/routes/415VNA/x", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := noRedirect.Do(req)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("warming: status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// rotateScript writes a wrk script that sends the tokens in turn, each
// wrk thread from its own offset, the requests formatted once.
func rotateScript(dir string, tokens []string) (string, error) {
	tokPath := filepath.Join(dir, "tokens.txt")
	if err := os.WriteFile(tokPath, []byte(strings.Join(tokens, "\n")+"\n"), 0o600); err != nil {
		return "", err
	}
	script := fmt.Sprintf(`
local reqs = {}
local i = 0
init = function(args)
  for tok in io.lines(%q) do
    reqs[#reqs + 1] = wrk.format(nil, nil, {["Authorization"] = "Bearer " .. tok, ["Accept"] = "application/json"})
  end
  i = math.random(#reqs) - 1
end
request = function()
  i = (i %% #reqs) + 1
  return reqs[i]
end
`, tokPath)
	path := filepath.Join(dir, "rotate.lua")
	return path, os.WriteFile(path, []byte(script), 0o600)
}

var (
	rpsRe      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	requestsRe = regexp.MustCompile(`(\d+) requests in`)
	latRe      = regexp.MustCompile(`\s(50|99)%\s+([0-9.]+)(us|ms|s)\b`)
	non2xxRe   = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	sockErrRe  = regexp.MustCompile(`Socket errors: (.*)`)
)

// wrkRound runs wrk once against t, reading the target's and the
// upstream's (appPID) CPU around it.
func wrkRound(t perfTarget, appPID, threads, conns int, d time.Duration) (roundResult, error) {
	u, err := url.Parse(t.url)
	if err != nil {
		return roundResult{}, err
	}
	if h := u.Hostname(); h != "127.0.0.1" {
		return roundResult{}, fmt.Errorf("refusing to load %s: loopback only", h)
	}
	args := []string{"--latency", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", d.String()}
	for _, h := range t.heads {
		args = append(args, "-H", h)
	}
	if t.lua != "" {
		args = append(args, "-s", t.lua)
	}
	m0, merr := mallocs(t.mallocs)
	cpu0, err := procCPU(t.pid)
	if err != nil {
		return roundResult{}, err
	}
	app0, err := procCPU(appPID)
	if err != nil {
		return roundResult{}, err
	}
	cmd := exec.Command("wrk", append(args, t.url)...)
	b, err := cmd.CombinedOutput()
	cpu1, err2 := procCPU(t.pid)
	app1, err3 := procCPU(appPID)
	m1, merr2 := mallocs(t.mallocs)
	if err != nil {
		return roundResult{}, fmt.Errorf("wrk: %v: %s", err, b)
	}
	if err := errors.Join(err2, err3); err != nil {
		return roundResult{}, err
	}
	r, err := parseWrk(b, cpu1-cpu0)
	if r.requests > 0 {
		r.appCPU = (app1 - app0) / time.Duration(r.requests)
		r.wrkCPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()) / time.Duration(r.requests)
	}
	r.allocsPerReq = -1
	if merr == nil && merr2 == nil && r.requests > 0 {
		r.allocsPerReq = (m1 - m0) / float64(r.requests)
	}
	return r, err
}

// mallocs reads go_memstats_mallocs_total, the Go heap allocations a
// process made since it started, from a Prometheus text page.
func mallocs(url string) (float64, error) {
	if url == "" {
		return 0, errors.New("no allocation count")
	}
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_mallocs_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no go_memstats_mallocs_total", url)
}

func parseWrk(b []byte, cpu time.Duration) (roundResult, error) {
	var r roundResult
	m := rpsRe.FindSubmatch(b)
	n := requestsRe.FindSubmatch(b)
	if m == nil || n == nil {
		return r, fmt.Errorf("no Requests/sec in wrk output: %s", b)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	r.requests, _ = strconv.ParseInt(string(n[1]), 10, 64)
	for _, m := range latRe.FindAllSubmatch(b, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		unit := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9}[string(m[3])]
		if string(m[1]) == "50" {
			r.p50 = time.Duration(v * unit)
		} else {
			r.p99 = time.Duration(v * unit)
		}
	}
	if m := non2xxRe.FindSubmatch(b); m != nil {
		return r, fmt.Errorf("%s non-2xx answers: the load is not measuring what it claims", m[1])
	}
	if m := sockErrRe.FindSubmatch(b); m != nil {
		return r, fmt.Errorf("socket errors (%s): the load is not measuring what it claims", m[1])
	}
	if r.requests > 0 {
		r.cpuPerRequest = cpu / time.Duration(r.requests)
	}
	return r, nil
}

// procCPU is a process's utime+stime, from /proc/PID/stat (in USER_HZ
// ticks of 10 ms).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold anything: state is the first, utime the 12th, stime the 13th.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// runPerfUpstream serves bodies of -body bytes, prints its URL, and exits
// when stdin closes.
func runPerfUpstream(args []string, out io.Writer) error {
	fs := flag.NewFlagSet(perfUpstreamArg, flag.ContinueOnError)
	size := fs.Int("body", 1024, "bytes of every answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body := []byte(strings.Repeat("<p>hello from the upstream</p>\n", *size/31+1)[:*size])
	fmt.Fprintln(out, serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})))
	_, err := io.Copy(io.Discard, os.Stdin)
	return err
}

// runPerfBare serves a bare httputil.ReverseProxy in front of -upstream,
// prints its URL, and exits when stdin closes.
func runPerfBare(args []string, out io.Writer) error {
	fs := flag.NewFlagSet(perfBareArg, flag.ContinueOnError)
	upstream := fs.String("upstream", "", "the upstream's URL")
	pooled := fs.Bool("pool", false, "reuse the copy buffers (as tollgate does)")
	likeTollgate := fs.Bool("like-tollgate", false, "the upstream Transport settings of tollgate's (proxy/gateway defaultTransport)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	up, err := url.Parse(*upstream)
	if err != nil {
		return err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 512
	if *likeTollgate {
		transport.MaxIdleConns = 0
		transport.Proxy = nil
		transport.DisableCompression = true
	}
	rp := &httputil.ReverseProxy{Transport: transport, ErrorLog: log.New(io.Discard, "", 0),
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.SetXForwarded()
		}}
	if *pooled {
		rp.BufferPool = &bufPool{}
	}
	fmt.Fprintln(out, serve(rp))
	// Its allocations so far, in /metrics' form, on a listener of its own
	// (everything on the proxy's goes to the upstream).
	fmt.Fprintln(out, serve(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(w, "go_memstats_mallocs_total %d\n", ms.Mallocs)
	})))
	_, err = io.Copy(io.Discard, os.Stdin)
	return err
}

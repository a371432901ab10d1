package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
	stripeclient "github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate/tollgate/proxy/bolt"
)

// buildTollgate compiles this command once per test into dir.
func buildTollgate(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "tollgate")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// servePorts draws two loopback addresses for a `tollgate serve` child,
// which binds its own ports (they are in its config, as in the image). The
// ports are drawn at random outside the kernel's ephemeral range, which no
// `:0` listener and no outgoing connection is ever given: no socket of
// this test or another can take them between the draw and the child's
// bind, as it could a port found by listening on :0 and closing. A port
// some other program holds makes the child fail with EADDRINUSE, and
// startServe draws again.
func servePorts(t *testing.T) (addr, admin string) {
	t.Helper()
	low, high := 32768, 60999 // Linux's default ephemeral range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil {
				low, high = l, h
			}
		}
	}
	var ranges [][2]int // [from, to)
	if low > 10000 {
		ranges = append(ranges, [2]int{10000, low})
	}
	if high < 65535 {
		ranges = append(ranges, [2]int{high + 1, 65536})
	}
	n := 0
	for _, r := range ranges {
		n += r[1] - r[0]
	}
	if n < 1000 {
		t.Fatalf("no room outside the ephemeral ports %d-%d for a child's ports", low, high)
	}
	draw := func() int {
		i := rand.IntN(n)
		for _, r := range ranges {
			if i < r[1]-r[0] {
				return r[0] + i
			}
			i -= r[1] - r[0]
		}
		panic("unreachable")
	}
	p, q := draw(), draw()
	for q == p {
		q = draw()
	}
	return fmt.Sprintf("127.0.0.1:%d", p), fmt.Sprintf("127.0.0.1:%d", q)
}

// serveChild is a `tollgate serve` process the test started.
type serveChild struct {
	cmd    *exec.Cmd
	addr   string        // its public listener
	admin  string        // its admin listener
	logs   *lockedWriter // its stdout and stderr
	exited chan struct{} // closed once it has exited; err is then Wait's
	err    error
}

// startServe starts the `tollgate serve` process that newCmd builds for a
// public and an admin address, and returns once it logs that it serves,
// which it does after binding both. A child that fails to bind (a port
// another program holds) is started again on other ports. The process is
// killed by its PID when the test ends.
func startServe(t *testing.T, newCmd func(addr, admin string) *exec.Cmd) *serveChild {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr, admin := servePorts(t)
		c := &serveChild{cmd: newCmd(addr, admin), addr: addr, admin: admin, logs: &lockedWriter{w: &bytes.Buffer{}}, exited: make(chan struct{})}
		c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { c.err = c.cmd.Wait(); close(c.exited) }()
		t.Cleanup(func() {
			_ = c.cmd.Process.Kill()
			<-c.exited
			if t.Failed() {
				t.Logf("tollgate serve on %s:\n%s", addr, c.logs.String())
			}
		})
		if c.logs.waitFor("tollgate serving", c.exited, 30*time.Second) {
			return c
		}
		select {
		case <-c.exited:
			if strings.Contains(c.logs.String(), "address already in use") && attempt < 5 {
				continue
			}
			t.Fatalf("tollgate serve exited before serving: %v\n%s", c.err, c.logs.String())
		default:
			t.Fatalf("tollgate serve did not serve within 30s:\n%s", c.logs.String())
		}
	}
}

// TestServe_KillNineLosesNoDirtyMark: a webhook acknowledged with 2xx has
// been committed, as a sync or as a durable dirty mark. The gateway runs
// with Stripe unreachable, so the events that name the customer are
// acknowledged with marks; it is killed with SIGKILL right after; the
// store still holds the mark; started again with Stripe answering, the
// dirty worker syncs the customer and access is granted.
func TestServe_KillNineLosesNoDirtyMark(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	d, _ := mustRunDemo(t)
	child := newDemoChild(t, d)
	child.writeConfig(t, demoConfig)
	storePath, env, serveDemo := child.storePath, child.env, child.serve
	// Stripe's API is unreachable for the first process; its webhooks
	// still arrive (the sandbox delivers them).
	env["DEMO_STRIPE_URL"] = "http://127.0.0.1:9"
	proc := startServe(t, serveDemo)
	base := "http://" + proc.addr
	d.Stripe.SetRetryDelays(10 * time.Millisecond)
	d.Stripe.SetWebhook(base+"/.tollgate/webhooks/stripe", d.webhookSecret)

	// A customer made outside tollgate (the app's own checkout, say), tagged
	// with the Clerk user: tollgate learns of it only through webhooks.
	sc := stripeclient.New(d.Stripe.SecretKey(), stripego.NewBackendsWithConfig(&stripego.BackendConfig{URL: stripego.String(d.StripeURL)}))
	cus, err := sc.Customers.New(&stripego.CustomerParams{Email: stripego.String("ada@example.com"),
		Metadata: map[string]string{"clerk_user_id": "user_ada"}})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := sc.CheckoutSessions.New(&stripego.CheckoutSessionParams{Mode: stripego.String("subscription"), Customer: stripego.String(cus.ID),
		SuccessURL: stripego.String(base + "/"), CancelURL: stripego.String(base + "/"),
		LineItems: []*stripego.CheckoutSessionLineItemParams{{Price: stripego.String("price_demo_pro_monthly"), Quantity: stripego.Int64(1)}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := noRedirects(nil).PostForm(cs.URL, testCard)
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay: %v %v", resp, err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := d.Stripe.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	acked := 0
	for _, del := range d.Stripe.Deliveries() {
		if del.Status >= 200 && del.Status < 300 {
			acked++
		}
	}
	if acked == 0 {
		t.Fatalf("no delivery acknowledged: %+v", d.Stripe.Deliveries())
	}
	// Acknowledged: kill -9 now.
	if err := proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-proc.exited

	// The mark outlived the process.
	store, err := bolt.Open(storePath, bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	marks, _, err := store.DirtyDue(ctx, time.Now().Add(time.Hour), 100)
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 1 || marks[0].CustomerID != cus.ID {
		t.Fatalf("dirty marks after kill -9: %+v, want %s", marks, cus.ID)
	}

	// Started again with Stripe answering: the worker syncs the customer.
	env["DEMO_STRIPE_URL"] = d.StripeURL
	again := startServe(t, serveDemo)
	if !again.logs.waitFor("stripe: webhook backlog drained", again.exited, 60*time.Second) {
		t.Fatalf("the backlog was not drained after the restart:\n%s", again.logs.String())
	}
	tok := d.Clerk.MintSessionToken("user_ada", "sess_crash", time.Now(), nil)
	req, _ := http.NewRequest("GET", "http://"+again.addr+"/routes/415VNA/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = noRedirects(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after kill -9 and a restart with Stripe answering: %d, want 200", resp.StatusCode)
	}
}

// demoChild is a `tollgate serve` binary on the demo's services (its
// sandbox Clerk and Stripe) with a store of its own, to start again and
// again on that store (startServe) and kill with -9 in between.
type demoChild struct {
	bin, config, storePath string
	env                    map[string]string // the child's environment beyond the test's own
	adminAddr              string            // the admin listener of the child started last
}

func newDemoChild(t *testing.T, d *demo) *demoChild {
	t.Helper()
	dir := t.TempDir()
	c := &demoChild{bin: buildTollgate(t, dir), config: filepath.Join(dir, "config.yaml"), storePath: filepath.Join(dir, "tollgate.db"), env: map[string]string{}}
	for k, v := range d.env {
		c.env[k] = v
	}
	c.env["DEMO_STORE"] = c.storePath
	return c
}

// writeConfig puts the config the next child starts with.
func (c *demoChild) writeConfig(t *testing.T, cfg []byte) {
	t.Helper()
	_ = os.Remove(c.config)
	if err := os.WriteFile(c.config, cfg, 0o400); err != nil {
		t.Fatal(err)
	}
}

// serve is the command of a child listening on addr, its admin on admin.
func (c *demoChild) serve(addr, admin string) *exec.Cmd {
	c.env["DEMO_LISTEN"], c.env["DEMO_PUBLIC_URL"], c.env["DEMO_ADMIN_LISTEN"] = addr, "http://"+addr, admin
	c.adminAddr = admin
	cmd := exec.Command(c.bin, "serve", "-config", c.config)
	cmd.Env = os.Environ()
	for k, v := range c.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

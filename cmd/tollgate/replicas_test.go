package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
	stripeclient "github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/apikey"
	"github.com/tollgate/tollgate/proxy/postgres"
	"github.com/tollgate/tollgate/proxy/postgres/pgtest"
	stripesandbox "github.com/tollgate/tollgate/proxy/sandbox/stripe"
	"github.com/tollgate/tollgate/proxy/stripe"
)

// replicaSet is three `tollgate serve` processes on one PostgreSQL
// database, each hit directly (README, "Running several replicas").
type replicaSet struct {
	d       *demo
	cluster *pgtest.Cluster
	dsn     string
	store   *postgres.Store // the test's own view of the database
	serve   func(addr, admin string) *exec.Cmd
	procs   []*serveChild
	api     *stripeclient.API
	// before are the sandbox's API calls before the first replica
	// started (the demo's own gateway made them).
	before map[string]int
}

// replicaConfig is the demo's config on PostgreSQL, reconciling often so
// that a reconcile can be caught in flight.
func replicaConfig() []byte {
	cfg := strings.Replace(string(demoConfig), "store:\n  path: \"${DEMO_STORE}\"", "store:\n  driver: postgres\n  dsn: \"${DEMO_DSN}\"\n  max_conns: 8", 1)
	return []byte(strings.Replace(cfg, "stripe:\n", "stripe:\n  reconcile_interval: 3s\n", 1))
}

func startReplicas(t *testing.T, n int) *replicaSet {
	t.Helper()
	return startReplicasWith(t, n, replicaConfig())
}

// startReplicasWith starts n replicas on config cfg (replicaConfig's, or
// one a test changed).
func startReplicasWith(t *testing.T, n int, cfg []byte) *replicaSet {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and starts PostgreSQL")
	}
	// Durable: the outage test stops the server as a crash would, and an
	// acknowledged webhook's commit must survive it (synchronous_commit on).
	cluster := pgtest.Start(t, pgtest.Options{Durable: true})
	d, _ := mustRunDemo(t)
	dir := t.TempDir()
	bin := buildTollgate(t, dir)
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, cfg, 0o400); err != nil {
		t.Fatal(err)
	}
	rs := &replicaSet{d: d, cluster: cluster, dsn: cluster.NewDB(t)}
	env := map[string]string{}
	for k, v := range d.env {
		env[k] = v
	}
	env["DEMO_DSN"] = rs.dsn
	var mu sync.Mutex
	rs.serve = func(addr, admin string) *exec.Cmd {
		mu.Lock()
		defer mu.Unlock()
		env["DEMO_LISTEN"], env["DEMO_PUBLIC_URL"], env["DEMO_ADMIN_LISTEN"] = addr, "http://"+addr, admin
		cmd := exec.Command(bin, "serve", "-config", config)
		cmd.Env = os.Environ()
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		return cmd
	}
	rs.before = d.Stripe.APICalls()
	for range n {
		rs.procs = append(rs.procs, startServe(t, rs.serve))
	}
	s, err := postgres.Open(context.Background(), rs.dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rs.store = s
	d.Stripe.SetRetryDelays(20 * time.Millisecond)
	d.Stripe.SetWebhook(rs.url(0)+"/.tollgate/webhooks/stripe", d.webhookSecret)
	rs.api = stripeclient.New(d.Stripe.SecretKey(), stripego.NewBackendsWithConfig(&stripego.BackendConfig{
		URL: stripego.String(d.StripeURL), LeveledLogger: &stripego.LeveledLogger{Level: stripego.LevelNull}}))
	return rs
}

func (rs *replicaSet) url(i int) string { return "http://" + rs.procs[i].addr }

// pay makes a customer of userID pay for Pro through the sandbox's
// Checkout, and returns the customer and its subscription.
func (rs *replicaSet) pay(t *testing.T, userID string) (string, string) {
	t.Helper()
	return rs.payPrice(t, userID, "price_demo_pro_monthly")
}

// payPrice is pay for the plan of price.
func (rs *replicaSet) payPrice(t *testing.T, userID, price string) (string, string) {
	t.Helper()
	cus, err := rs.api.Customers.New(&stripego.CustomerParams{Email: stripego.String(userID + "@example.com"),
		Metadata: map[string]string{"clerk_user_id": userID}})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := rs.api.CheckoutSessions.New(&stripego.CheckoutSessionParams{Mode: stripego.String("subscription"), Customer: stripego.String(cus.ID),
		SuccessURL: stripego.String("http://127.0.0.1/"), CancelURL: stripego.String("http://127.0.0.1/"),
		LineItems: []*stripego.CheckoutSessionLineItemParams{{Price: stripego.String(price), Quantity: stripego.Int64(1)}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := noRedirects(nil).PostForm(cs.URL, testCard)
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay: %v %v", resp, err)
	}
	resp.Body.Close()
	it := rs.api.Subscriptions.List(&stripego.SubscriptionListParams{Customer: stripego.String(cus.ID)})
	if !it.Next() {
		t.Fatalf("customer %s: no subscription: %v", cus.ID, it.Err())
	}
	return cus.ID, it.Subscription().ID
}

// idle waits for the sandbox to have delivered every webhook.
func (rs *replicaSet) idle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := rs.d.Stripe.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

// paid asks replica i for a paid page as userID in session sid.
func (rs *replicaSet) paid(t *testing.T, i int, userID, sid string) int {
	t.Helper()
	tok := rs.d.Clerk.MintSessionToken(userID, sid, time.Now(), nil)
	req, _ := http.NewRequest("GET", rs.url(i)+"/routes/415VNA/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := noRedirects(nil).Do(req)
	for attempt := 0; err != nil && attempt < 3; attempt++ {
		// A kept-alive connection the replica closed meanwhile: once more.
		req, _ = http.NewRequest("GET", rs.url(i)+"/routes/415VNA/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err = noRedirects(nil).Do(req)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// until polls replica i (a real process) until want(status) holds, and
// returns how long that took, failing after limit.
func (rs *replicaSet) until(t *testing.T, i int, limit time.Duration, ask func() int, want func(int) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if got := ask(); want(got) {
			return time.Since(start)
		} else if time.Since(start) > limit {
			t.Fatalf("replica %d: still %d after %s", i, got, limit)
		}
		time.Sleep(10 * time.Millisecond) // polling real processes, with a deadline
	}
}

func (rs *replicaSet) clerkWebhook(t *testing.T, i int, body string) int {
	t.Helper()
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(rs.d.clerkWebhookSecret, "whsec_"))
	id, ts := "msg_"+strconv.FormatInt(time.Now().UnixNano(), 10), strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	req, _ := http.NewRequest("POST", rs.url(i)+"/.tollgate/webhooks/clerk", strings.NewReader(body))
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", ts)
	req.Header.Set("svix-signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// stripeEvent posts a Stripe-signed event to replica i.
func (rs *replicaSet) stripeEvent(i int, body []byte) (int, error) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(rs.d.webhookSecret))
	fmt.Fprintf(mac, "%s.%s", ts, body)
	req, _ := http.NewRequest("POST", rs.url(i)+"/.tollgate/webhooks/stripe", bytes.NewReader(body))
	req.Header.Set("Stripe-Signature", "t="+ts+",v1="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func refused(code int) bool { return code != http.StatusOK }
func allowed(code int) bool { return code == http.StatusOK }

// TestReplicas_ACancellationAndARevocationReachEveryReplica: a
// cancellation webhook delivered to A is refused by B and C within a
// second; a Clerk session revoked through A is refused by all three.
func TestReplicas_ACancellationAndARevocationReachEveryReplica(t *testing.T) {
	rs := startReplicas(t, 3)
	_, sub := rs.pay(t, "user_ada")
	rs.idle(t)
	for i := range rs.procs {
		// Each replica answers from the database once, then from its LRU.
		rs.until(t, i, 10*time.Second, func() int { return rs.paid(t, i, "user_ada", "sess_1") }, allowed)
		if got := rs.paid(t, i, "user_ada", "sess_1"); got != 200 {
			t.Fatalf("replica %d: paid page %d, want 200", i, got)
		}
	}

	// A Clerk session revoked through replica A.
	for i := range rs.procs {
		if got := rs.paid(t, i, "user_ada", "sess_gone"); got != 200 {
			t.Fatalf("replica %d before the revocation: %d", i, got)
		}
	}
	if got := rs.clerkWebhook(t, 0, `{"type":"session.revoked","object":"event","data":{"id":"sess_gone","object":"session"}}`); got != 200 {
		t.Fatalf("session.revoked on A: %d", got)
	}
	revoked := time.Now()
	for i := range rs.procs {
		rs.until(t, i, 5*time.Second, func() int { return rs.paid(t, i, "user_ada", "sess_gone") }, refused)
		t.Logf("replica %c refused the revoked session %s after the webhook's answer", 'A'+i, time.Since(revoked).Round(time.Millisecond))
		if got := rs.paid(t, i, "user_ada", "sess_1"); got != 200 {
			t.Errorf("replica %d: another session of the user: %d, want 200", i, got)
		}
	}

	// An API key of the user's, revoked through A's admin API: B and C,
	// which cached the key's record, hear of it at once.
	key, rec, err := proxy.NewAPIKey(false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rec.Subject, rec.Name, rec.Scopes, rec.CreatedBy = proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}, "ci", []string{"*"}, "user_ada"
	if err := rs.store.CreateAPIKey(context.Background(), rec, 0); err != nil {
		t.Fatal(err)
	}
	withKey := func(i int) func() int {
		return func() int {
			req, _ := http.NewRequest("GET", rs.url(i)+"/routes/415VNA/", nil)
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := noRedirects(nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
	}
	// Each replica reads the new key's record from the store at this
	// first request and caches it for apikey.DefaultCacheTTL: no earlier
	// request could have (a key not found is not cached), so the record
	// stays cached until filled[i] + the TTL at the earliest. A refusal
	// before then can only come from the change log's notification.
	filled := make([]time.Time, len(rs.procs))
	for i := range rs.procs {
		filled[i] = time.Now()
		if got := withKey(i)(); got != 200 {
			t.Fatalf("replica %d: the key got %d, want 200", i, got)
		}
	}
	req, _ := http.NewRequest("DELETE", "http://"+rs.procs[0].admin+"/api/keys/"+rec.ID, nil)
	req.Header.Set("Authorization", "Bearer "+rs.d.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoking the key through A's admin API: %v %v", resp, err)
	}
	resp.Body.Close()
	keyRevoked := time.Now()
	for i := 1; i < len(rs.procs); i++ {
		rs.until(t, i, 5*time.Second, withKey(i), refused)
		refusedAt := time.Now()
		took := refusedAt.Sub(keyRevoked)
		t.Logf("replica %c refused the revoked API key %s after A's answer, %s after it cached the key's record (TTL %s)",
			'A'+i, took.Round(time.Millisecond), refusedAt.Sub(filled[i]).Round(time.Millisecond), apikey.DefaultCacheTTL)
		if took > time.Second {
			t.Errorf("replica %c took %s to refuse a revoked key; the target is 1 s", 'A'+i, took.Round(time.Millisecond))
		}
		if !refusedAt.Before(filled[i].Add(apikey.DefaultCacheTTL)) {
			t.Errorf("replica %c refused the revoked key %s after caching its record, not before the cache's TTL (%s) ran out: "+
				"the refusal may be the cache's expiry, and the revocation's notification is not shown to work",
				'A'+i, refusedAt.Sub(filled[i]).Round(time.Millisecond), apikey.DefaultCacheTTL)
		}
	}

	// The subscription is canceled in Stripe: the webhook goes to A.
	if _, err := rs.api.Subscriptions.Cancel(sub, nil); err != nil {
		t.Fatal(err)
	}
	canceled := time.Now()
	var wg sync.WaitGroup
	took := make([]time.Duration, len(rs.procs))
	for i := 1; i < len(rs.procs); i++ {
		wg.Go(func() {
			rs.until(t, i, 5*time.Second, func() int { return rs.paid(t, i, "user_ada", "sess_1") }, refused)
			took[i] = time.Since(canceled)
		})
	}
	wg.Wait()
	for i := 1; i < len(rs.procs); i++ {
		t.Logf("replica %c refused the canceled subscription %s after Stripe canceled it (the webhook to A, A's sync with Stripe, its commit, NOTIFY)",
			'A'+i, took[i].Round(time.Millisecond))
		if took[i] > time.Second {
			t.Errorf("replica %c took %s to refuse a cancellation; the target is 1 s", 'A'+i, took[i].Round(time.Millisecond))
		}
	}
}

// TestReplicas_ShuffledDuplicatedEventsAgreeWithStripe: 650 Stripe events,
// shuffled, some twice, spread over three replicas, leave every replica
// answering as Stripe says.
func TestReplicas_ShuffledDuplicatedEventsAgreeWithStripe(t *testing.T) {
	rs := startReplicas(t, 3)
	const customers = 40
	type cust struct{ user, customer, sub string }
	cs := make([]cust, customers)
	for i := range cs {
		cs[i].user = fmt.Sprintf("user_r%02d", i)
		cs[i].customer, cs[i].sub = rs.pay(t, cs[i].user)
	}
	rs.idle(t)
	// Every replica caches every user as paying.
	for i := range rs.procs {
		for _, c := range cs {
			rs.until(t, i, 10*time.Second, func() int { return rs.paid(t, i, c.user, "sess_r") }, allowed)
		}
	}
	// Stripe changes a third of them without a webhook; the events that
	// follow say nothing of it (their bodies are hints), the state must.
	rs.d.Stripe.SetWebhook("http://127.0.0.1:9/nowhere", rs.d.webhookSecret)
	want := map[string]bool{}
	for i, c := range cs {
		want[c.user] = true
		if i%3 == 0 {
			rs.d.Stripe.SetSubscriptionStatus(c.sub, []string{"canceled", "unpaid"}[i/3%2])
			want[c.user] = false
		}
	}
	var bodies [][]byte
	types := []string{"customer.subscription.updated", "invoice.paid", "customer.subscription.updated", "invoice.payment_failed"}
	for n := 0; len(bodies) < 650; n++ {
		c := cs[n%customers]
		obj := map[string]any{"id": c.sub, "object": "subscription", "customer": c.customer, "status": "active"}
		typ := types[n/customers%len(types)]
		if strings.HasPrefix(typ, "invoice.") {
			obj = map[string]any{"id": fmt.Sprintf("in_r%d", n), "object": "invoice", "customer": c.customer, "status": "paid"}
		}
		b, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("evt_r%05d", n), "object": "event", "created": time.Now().Unix(), "type": typ,
			"livemode": false, "pending_webhooks": 1, "data": map[string]any{"object": obj}})
		bodies = append(bodies, b)
		if n%7 == 0 && len(bodies) < 650 {
			bodies = append(bodies, b) // delivered twice, as Stripe may
		}
	}
	r := rand.New(rand.NewPCG(16, 650))
	r.Shuffle(len(bodies), func(i, j int) { bodies[i], bodies[j] = bodies[j], bodies[i] })
	// The backlog is watched from before the first delivery until the
	// leader has drained it: by is the start of the last look that still
	// saw dirty marks, and last the customers marked then, whose syncs
	// are the drain's last commits (they came after by).
	ctx := context.Background()
	var delivered atomic.Bool
	type drain struct {
		by   time.Time
		last []string
		max  int
		err  error
	}
	drained := make(chan drain, 1)
	go func() {
		var d drain
		deadline := time.Now().Add(120 * time.Second)
		for {
			after := delivered.Load()
			start := time.Now()
			marks, _, err := rs.store.DirtyDue(ctx, start, 1000)
			switch {
			case err != nil:
				d.err = err
			case len(marks) > 0:
				d.by, d.max, d.last = start, max(d.max, len(marks)), nil
				for _, m := range marks {
					d.last = append(d.last, m.CustomerID)
				}
			case after:
				drained <- d
				return
			}
			if time.Now().After(deadline) {
				d.err = fmt.Errorf("backlog not drained: %d marks", len(marks))
				drained <- d
				return
			}
			time.Sleep(10 * time.Millisecond) // the leader is another process
		}
	}()
	var next, retried atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) {
					return
				}
				for attempt := 0; ; attempt++ {
					code, err := rs.stripeEvent((i+attempt)%len(rs.procs), bodies[i])
					if err == nil && code < 300 {
						break
					}
					if attempt > 50 {
						t.Errorf("event %d: %d, %v after %d attempts", i, code, err, attempt)
						return
					}
					retried.Add(1) // delivered again, to another replica, as Stripe would retry
				}
			}
		})
	}
	wg.Wait()
	delivered.Store(true)
	t.Logf("650 deliveries over 3 replicas; %d answers other than 2xx, delivered again", retried.Load())
	// The leader drains what was deferred; each replica reflects the
	// drain's last commits within a second (README, "Running several
	// replicas": a change reaches every replica within a second): a
	// poller per replica and customer, each time taken when the replica
	// answered.
	d := <-drained
	if d.err != nil {
		t.Fatal(d.err)
	}
	if d.max == 0 {
		t.Fatal("no backlog formed: the deliveries were all synced at once, and the drain is not measured")
	}
	took := make([]time.Duration, len(rs.procs))
	var mu sync.Mutex // took's
	var pwg sync.WaitGroup
	for i := range rs.procs {
		for _, c := range cs {
			if !slices.Contains(d.last, c.customer) {
				continue
			}
			pwg.Go(func() {
				deadline := time.Now().Add(10 * time.Second)
				for allowed(rs.paid(t, i, c.user, "sess_r")) != want[c.user] {
					if time.Now().After(deadline) {
						t.Errorf("replica %c: %s still not %v 10 s after the drain", 'A'+i, c.user, want[c.user])
						return
					}
					time.Sleep(10 * time.Millisecond) // polling a real process
				}
				at := time.Since(d.by)
				mu.Lock()
				took[i] = max(took[i], at)
				mu.Unlock()
			})
		}
	}
	pwg.Wait()
	for i, at := range took {
		t.Logf("replica %c reflected the drain's last %d customers %s after its last commit (backlog up to %d customers)", 'A'+i, len(d.last), at.Round(time.Millisecond), d.max)
		if at > time.Second {
			t.Errorf("replica %c took %s after the drain's last commit; the target is 1 s", 'A'+i, at.Round(time.Millisecond))
		}
	}
	// And every customer, on every replica, as Stripe says.
	for i := range rs.procs {
		for _, c := range cs {
			w := want[c.user]
			rs.until(t, i, 5*time.Second, func() int { return rs.paid(t, i, c.user, "sess_r") }, func(code int) bool { return allowed(code) == w })
		}
	}
	for _, c := range cs {
		st, ok, err := rs.store.StoredCustomer(ctx, c.customer)
		if err != nil || !ok || len(st.Subscriptions) != 1 {
			t.Fatalf("stored %s: %+v %v %v", c.customer, st, ok, err)
		}
		s, err := rs.api.Subscriptions.Get(c.sub, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Subscriptions[0].Status; string(got) != string(s.Status) {
			t.Errorf("%s: stored %s, Stripe says %s", c.customer, got, s.Status)
		}
	}
}

// TestReplicas_PricesLoadedFromStripeOnce: three replicas starting one
// after the other ask Stripe for each configured price once between them
// (the first loads and stores them; the others, and the leader's refresh,
// read the store), and every replica's upgrade page shows the amounts.
func TestReplicas_PricesLoadedFromStripeOnce(t *testing.T) {
	rs := startReplicas(t, 3)
	var prices []string
	for _, p := range rs.d.Config.Plans {
		for _, id := range append(slices.Clone(p.Prices), p.TrialFeePrice) {
			if id != "" && !slices.Contains(prices, id) {
				prices = append(prices, id)
			}
		}
		if p.Meter != nil && !slices.Contains(prices, p.Meter.Price) {
			prices = append(prices, p.Meter.Price)
		}
	}
	// Every replica leads or follows by now: the leader's log says so.
	deadline := time.Now().Add(30 * time.Second)
	for rs.leaderOf(nil) < 0 {
		if time.Now().After(deadline) {
			t.Fatal("no replica leads")
		}
		time.Sleep(20 * time.Millisecond) // reading real processes' logs
	}
	for i := range rs.procs {
		code, body := rs.upgradePage(t, i)
		for _, want := range []string{"$12.00", "$1.00"} {
			if !strings.Contains(body, want) {
				t.Errorf("replica %c's upgrade page (%d) lacks %q:\n%.1500s", 'A'+i, code, want, body)
			}
		}
	}
	got := rs.d.Stripe.APICalls()["GET /v1/prices/{id}"] - rs.before["GET /v1/prices/{id}"]
	t.Logf("%d configured prices; the three replicas asked Stripe for prices %d times", len(prices), got)
	if got != len(prices) {
		t.Errorf("the replicas asked Stripe for a price %d times, want %d (each configured price once, by the first replica)", got, len(prices))
	}
}

// upgradePage is replica i's upgrade page for route 415VNA, as a signed-in
// visitor without a plan sees it: its status and body.
func (rs *replicaSet) upgradePage(t *testing.T, i int) (int, string) {
	t.Helper()
	tok := rs.d.Clerk.MintSessionToken("user_nobody", "sess_p", time.Now(), nil)
	req, _ := http.NewRequest("GET", rs.url(i)+"/.tollgate/upgrade?route=415VNA&return=/routes/415VNA/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/html")
	resp, err := noRedirects(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

// leaderOf is the replica whose log says it leads now (-1: none).
func (rs *replicaSet) leaderOf(skip map[int]bool) int {
	for i, p := range rs.procs {
		if !skip[i] && strings.Count(p.logs.String(), "leading the background work") > 0 {
			return i
		}
	}
	return -1
}

// TestReplicas_AStoredCatalogueChangesNoCharge: the price catalogue the
// leader stores (the stripe.prices cursor) is read by every replica, so a
// writer of the cursors table can change the amounts an upgrade page
// shows, never what Checkout charges (docs/SECURITY.md). A replica starting
// on a catalogue that is not JSON loads the prices from Stripe and stores
// them; one starting on a crafted catalogue (the monthly Pro at $0.01
// under another price's ID, stamped now) shows $0.01 but still posts the
// configured price, and the Checkout it starts charges $12.00; one
// starting with none stored while Stripe fails serves without amounts and
// stores nothing. None refuses to start.
func TestReplicas_AStoredCatalogueChangesNoCharge(t *testing.T) {
	rs := startReplicas(t, 1)
	ctx := context.Background()
	upgrade := func(i int) string {
		t.Helper()
		code, body := rs.upgradePage(t, i)
		if code != http.StatusOK {
			t.Fatalf("replica %c's upgrade page: %d", 'A'+i, code)
		}
		return body
	}
	setCatalogue := func(v string) {
		t.Helper()
		if err := rs.store.SetCursor(ctx, stripe.CursorPrices, v); err != nil {
			t.Fatal(err)
		}
	}
	stored, err := rs.store.Cursor(ctx, stripe.CursorPrices)
	if err != nil || !strings.Contains(stored, `"Amount":1200`) {
		t.Fatalf("the first replica stored %q (%v), want the catalogue", stored, err)
	}

	setCatalogue("not a catalogue{")
	rs.procs = append(rs.procs, startServe(t, rs.serve)) // B
	if page := upgrade(1); !strings.Contains(page, "$12.00") {
		t.Errorf("B, started on a catalogue that is not JSON, shows no $12.00:\n%.1500s", page)
	}
	if got, _ := rs.store.Cursor(ctx, stripe.CursorPrices); !strings.Contains(got, `"Amount":1200`) {
		t.Errorf("B left the catalogue %q, want the one it loaded from Stripe", got)
	}

	now := time.Now().UTC().Format(time.RFC3339Nano)
	crafted := regexp.MustCompile(`"at":"[^"]*"`).ReplaceAllString(stored, `"at":"`+now+`"`)
	crafted = strings.Replace(crafted, `"ID":"price_demo_pro_monthly","Amount":1200`, `"ID":"price_demo_pro_yearly","Amount":1`, 1)
	if crafted == stored {
		t.Fatalf("the catalogue's form changed: %s", stored)
	}
	setCatalogue(crafted)
	rs.procs = append(rs.procs, startServe(t, rs.serve)) // C
	page := upgrade(2)
	if !strings.Contains(page, "$0.01") || !strings.Contains(page, `value="price_demo_pro_monthly"`) {
		t.Errorf("C, on the crafted catalogue, should show $0.01 and post the configured price:\n%.1500s", page)
	}
	tok := rs.d.Clerk.MintSessionToken("user_ada", "sess_c", time.Now(), nil)
	req, _ := http.NewRequest("POST", rs.url(2)+"/.tollgate/checkout", strings.NewReader(url.Values{
		"plan": {"pro"}, "price": {"price_demo_pro_monthly"}, "return": {"/routes/415VNA/"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Origin", rs.url(2))
	resp, err := noRedirects(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	payURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(payURL, rs.d.StripeURL+"/checkout/pay/") {
		t.Fatalf("checkout on C: %d %q", resp.StatusCode, payURL)
	}
	resp, err = http.Get(payURL)
	if err != nil {
		t.Fatal(err)
	}
	pay, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(pay), "$12.00") || strings.Contains(string(pay), "$0.01") {
		t.Errorf("the Checkout C started does not charge the configured $12.00:\n%.1500s", pay)
	}

	setCatalogue("")
	rs.d.Stripe.InjectAPIStatus("GET /v1/prices/{id}", 1000, http.StatusInternalServerError)
	rs.procs = append(rs.procs, startServe(t, rs.serve)) // D
	if page := upgrade(3); strings.Contains(page, "$") || !strings.Contains(page, `value="price_demo_pro_monthly"`) {
		t.Errorf("D, with no catalogue and Stripe failing, should show no amounts and post the configured price:\n%.1500s", page)
	}
	if got, _ := rs.store.Cursor(ctx, stripe.CursorPrices); got != "" {
		t.Errorf("D stored %q from a failed load", got)
	}
}

// TestReplicas_KillNineOfTheLeaderMidReconcile: the leader is killed with
// SIGKILL in the middle of a reconcile (the listing in pages of 3, its
// second page held by Stripe, the cursor saved after the first); another
// replica takes the lead within the lease, resumes the reconcile from the
// cursor and finishes it, so a change Stripe made without a webhook
// reaches every replica and the store agrees with Stripe.
func TestReplicas_KillNineOfTheLeaderMidReconcile(t *testing.T) {
	rs := startReplicas(t, 3)
	const customers = 12
	subs := make([]string, customers)
	users := make([]string, customers)
	cuss := make([]string, customers)
	for i := range subs {
		users[i] = fmt.Sprintf("user_k%02d", i)
		cuss[i], subs[i] = rs.pay(t, users[i])
	}
	rs.idle(t)
	// No more webhooks: only the reconcile can tell the replicas.
	rs.d.Stripe.SetWebhook("http://127.0.0.1:9/nowhere", rs.d.webhookSecret)
	for _, s := range subs {
		rs.d.Stripe.SetSubscriptionStatus(s, "canceled")
	}
	// The account-wide listing (no customer) comes in pages of 3, and its
	// pages after the first wait: the next reconcile stops there, its
	// first page done and its cursor saved.
	rs.d.Stripe.SetPageSize(3)
	hold := rs.d.Stripe.HoldAPI("GET /v1/subscriptions", func(q url.Values) bool {
		return q.Get("customer") == "" && q.Get("starting_after") != ""
	})
	t.Cleanup(hold.Release)
	select {
	case <-hold.Reached():
	case <-time.After(60 * time.Second):
		t.Fatal("no reconcile reached its second page")
	}
	ctx := context.Background()
	cursor, err := rs.store.Cursor(ctx, stripe.CursorSyncAll)
	if err != nil || cursor == "" {
		t.Fatalf("the reconcile's cursor while its second page waits: %q %v, want a subscription", cursor, err)
	}
	leader := rs.leaderOf(nil)
	if leader < 0 {
		t.Fatal("a reconcile runs but no replica's log says it leads")
	}
	p := rs.procs[leader]
	if strings.Contains(p.logs.String(), "stripe: reconcile done") {
		// Earlier runs (the store empty at start, and every 3 s) are done;
		// the one held is not: its cursor is set.
		t.Logf("the leader finished earlier reconciles; the one held has its cursor at %s", cursor)
	}
	killed := time.Now()
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL, to the child's PID
		t.Fatal(err)
	}
	<-p.exited
	hold.Release() // Stripe answers again; the new leader's listing goes on
	next := -1
	for next < 0 {
		if time.Since(killed) > postgres.LeaseTime+10*time.Second {
			t.Fatal("no replica took the lead after the leader's kill -9")
		}
		next = rs.leaderOf(map[int]bool{leader: true})
		time.Sleep(20 * time.Millisecond) // reading real processes' logs
	}
	t.Logf("replica %c led, was killed mid-reconcile (cursor %s); replica %c took over %s later", 'A'+leader, cursor, 'A'+next, time.Since(killed).Round(time.Millisecond))
	n := rs.procs[next]
	if !n.logs.waitFor(`"after_subscription":"`+cursor+`"`, n.exited, 60*time.Second) || !strings.Contains(n.logs.String(), "stripe: reconcile resuming") {
		t.Fatalf("the new leader did not log that it resumes the reconcile after %s:\n%s", cursor, n.logs.String())
	}
	if !n.logs.waitFor("stripe: reconcile done", n.exited, 60*time.Second) {
		t.Fatalf("the new leader did not finish the reconcile:\n%s", n.logs.String())
	}
	t.Logf("replica %c resumed after %s and finished %s after the kill", 'A'+next, cursor, time.Since(killed).Round(time.Millisecond))
	for i := range rs.procs {
		if i == leader {
			continue
		}
		for _, u := range users {
			rs.until(t, i, 30*time.Second, func() int { return rs.paid(t, i, u, "sess_k") }, refused)
		}
	}
	// The store agrees with Stripe, customer by customer.
	for i, c := range cuss {
		var st proxy.CustomerState
		deadline := time.Now().Add(30 * time.Second)
		for {
			var ok bool
			st, ok, err = rs.store.StoredCustomer(ctx, c)
			if err != nil || !ok {
				t.Fatalf("stored %s: %v %v", c, ok, err)
			}
			if len(st.Subscriptions) == 1 && st.Subscriptions[0].Status == proxy.StatusCanceled || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond) // the dirty worker is another process
		}
		s, err := rs.api.Subscriptions.Get(subs[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Subscriptions) != 1 || string(st.Subscriptions[0].Status) != string(s.Status) {
			t.Errorf("%s: stored %+v, Stripe says %s", c, st.Subscriptions, s.Status)
		}
	}
}

// TestReplicas_PostgreSQLStoppedMidTraffic: the database stops; paid
// requests the LRU answers keep working, misses and webhooks get 503,
// /readyz fails; it starts again and everything recovers: each webhook
// event that got 503 during the outage is acknowledged on a retry and its
// effect is in the store, and no webhook that was acknowledged is lost.
func TestReplicas_PostgreSQLStoppedMidTraffic(t *testing.T) {
	rs := startReplicas(t, 3)
	rs.pay(t, "user_ada")
	cusBob, subBob := rs.pay(t, "user_bob")
	rs.idle(t)
	for i := range rs.procs {
		rs.until(t, i, 10*time.Second, func() int { return rs.paid(t, i, "user_ada", "sess_o") }, allowed)
	}
	if err := rs.cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := range rs.procs {
		if got := rs.paid(t, i, "user_ada", "sess_o"); got != 200 {
			t.Errorf("replica %d, database down: a cached paid request got %d, want 200", i, got)
		}
		// A subject no replica has in memory (user_bob may be: the replica
		// that committed his sync keeps what it wrote).
		if got := rs.paid(t, i, "user_nobody", "sess_o"); got != http.StatusServiceUnavailable {
			t.Errorf("replica %d, database down: a miss got %d, want 503", i, got)
		}
		if code := childReady(t, rs.procs[i]); code == 200 {
			t.Errorf("replica %d: /readyz %d with the database down", i, code)
		}
	}
	// Stripe's webhooks meanwhile get 503 and are retried.
	rs.d.Stripe.SetWebhook(rs.url(1)+"/.tollgate/webhooks/stripe", rs.d.webhookSecret)
	// Stripe retries for three days; here every 200 ms for two minutes,
	// so that no event is given up on within the test.
	rs.d.Stripe.SetRetryDelays(slices.Repeat([]time.Duration{200 * time.Millisecond}, 600)...)
	before := len(rs.d.Stripe.Deliveries())
	if _, err := rs.api.Subscriptions.Cancel(subBob, nil); err != nil {
		t.Fatal(err)
	}
	// Every event the cancellation made is answered 503 while the
	// database is down (none can be committed), and remembered.
	refusedEvents := map[string]string{} // event ID → type
	deadline := time.Now().Add(10 * time.Second)
	for {
		ds := rs.d.Stripe.Deliveries()[before:]
		for _, d := range ds {
			if d.Status == http.StatusServiceUnavailable {
				refusedEvents[d.EventID] = d.Type
			} else if d.Status >= 200 && d.Status < 300 {
				t.Errorf("event %s (%s) acknowledged (%d) with the database down", d.EventID, d.Type, d.Status)
			}
		}
		if len(ds) > 0 && len(refusedEvents) == len(ds) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every delivery got 503 while the database is down: %+v", ds)
		}
		time.Sleep(20 * time.Millisecond) // the sandbox delivers from its own goroutine
	}
	t.Logf("events refused (503) during the outage: %v", refusedEvents)
	if err := rs.cluster.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range rs.procs {
		rs.until(t, i, 15*time.Second, func() int { return childReady(t, rs.procs[i]) }, allowed)
		rs.until(t, i, 10*time.Second, func() int { return rs.paid(t, i, "user_bob", "sess_o") }, refused)
		if got := rs.paid(t, i, "user_ada", "sess_o"); got != 200 {
			t.Errorf("replica %d after the outage: %d, want 200", i, got)
		}
	}
	// Each event refused during the outage is acknowledged on a retry (a
	// 2xx, no longer given up on), and its effect is in the store: the
	// event processed, Bob's subscription canceled.
	ctx := context.Background()
	deadline = time.Now().Add(60 * time.Second)
	status := func(id string) stripesandbox.Delivery {
		for _, d := range rs.d.Stripe.Deliveries() {
			if d.EventID == id {
				return d
			}
		}
		return stripesandbox.Delivery{}
	}
	for id, typ := range refusedEvents {
		for d := status(id); d.Status < 200 || d.Status >= 300; d = status(id) {
			if time.Now().After(deadline) {
				logs := rs.procs[1].logs.String()
				t.Fatalf("event %s (%s), refused during the outage, still not acknowledged: %+v\nthe receiving replica's log (its end):\n%s", id, typ, d, logs[max(0, len(logs)-20000):])
			}
			time.Sleep(50 * time.Millisecond) // the sandbox retries from its own goroutine
		}
		if done, err := rs.store.EventProcessed(ctx, id); err != nil || !done {
			t.Errorf("event %s (%s) acknowledged after the outage but not in the store: %v %v", id, typ, done, err)
		}
		t.Logf("event %s (%s): acknowledged after %d attempts", id, typ, status(id).Attempts)
	}
	st, ok, err := rs.store.StoredCustomer(ctx, cusBob)
	if err != nil || !ok || len(st.Subscriptions) != 1 || st.Subscriptions[0].Status != proxy.StatusCanceled {
		t.Errorf("Bob after the outage: stored %+v %v %v, want his subscription canceled", st, ok, err)
	}
	// Every acknowledged delivery's event is in the store.
	rs.idle(t)
	for _, d := range rs.d.Stripe.Deliveries() {
		if d.Status < 200 || d.Status >= 300 {
			t.Errorf("delivery %s (%s) ended with %d", d.EventID, d.Type, d.Status)
			continue
		}
		if done, err := rs.store.EventProcessed(ctx, d.EventID); err != nil || !done {
			t.Errorf("acknowledged event %s (%s) not in the store: %v %v", d.EventID, d.Type, done, err)
		}
	}
}

// childReady asks a replica's admin listener whether it is ready.
func childReady(t *testing.T, p *serveChild) int {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

package stripe

import (
	"bufio"
	"bytes"
	"errors"
	"go/build"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
)

// The contract test sends tollgate's real requests, through the real
// Billing code paths, to stripe-mock: Stripe's official mock, which
// validates every request against Stripe's OpenAPI spec. Its answers are
// canned (random IDs, fixed objects), so the test asserts only that
// stripe-mock accepted every request.

const stripeMockInstall = "go install github.com/stripe/stripe-mock@v0.203.0"

// stripeMockBinary finds stripe-mock on PATH, in $GOBIN or in $GOPATH/bin.
func stripeMockBinary() string {
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p
	}
	dirs := []string{os.Getenv("GOBIN")}
	for _, gp := range filepath.SplitList(build.Default.GOPATH) {
		dirs = append(dirs, filepath.Join(gp, "bin"))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, "stripe-mock")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

// startStripeMock runs stripe-mock on a loopback port chosen by the system
// and returns its base URL. It is killed by PID when the test ends.
func startStripeMock(t *testing.T) string {
	t.Helper()
	bin := stripeMockBinary()
	if bin == "" {
		msg := "stripe-mock not found on PATH or in GOPATH/bin; install it with: " + stripeMockInstall
		if os.Getenv("TOLLGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Both listeners on loopback with system-chosen ports: nothing binds
	// 12111/12112 or a public interface.
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start stripe-mock: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
		_ = cmd.Wait()
	})
	addr := make(chan string, 1)
	var out bytes.Buffer
	var outMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			outMu.Lock()
			out.WriteString(line + "\n")
			outMu.Unlock()
			if a, ok := strings.CutPrefix(line, "Listening for HTTP at address: "); ok {
				addr <- a
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case <-time.After(30 * time.Second):
		outMu.Lock()
		defer outMu.Unlock()
		t.Fatalf("stripe-mock did not start listening:\n%s\n%s", out.String(), stderr.String())
	}
	// Wait until it answers an authenticated request.
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/prices?limit=1", nil)
		req.Header.Set("Authorization", "Bearer sk_test_contract")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stripe-mock at %s does not answer: %v", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recordingTransport records every request and stripe-mock's verdict. With
// emptyLists set it hands tollgate an empty subscription list after
// stripe-mock has accepted the request, so the flow can reach Checkout
// (stripe-mock always answers one active subscription).
type recordingTransport struct {
	mu         sync.Mutex
	emptyLists bool
	seen       []contractCall
}

type contractCall struct {
	Method, Path, Query string
	Status              int
	Body                string // of rejected requests
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	c := contractCall{Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Status: resp.StatusCode}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.Body = string(b)
		resp.Body = io.NopCloser(bytes.NewReader(b))
	} else if rt.emptyLists && req.Method == http.MethodGet && req.URL.Path == "/v1/subscriptions" {
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(`{"object":"list","data":[],"has_more":false,"url":"/v1/subscriptions"}`))
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
	}
	rt.seen = append(rt.seen, c)
	return resp, nil
}

func (rt *recordingTransport) setEmptyLists(v bool) {
	rt.mu.Lock()
	rt.emptyLists = v
	rt.mu.Unlock()
}

func (rt *recordingTransport) calls() []contractCall {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]contractCall(nil), rt.seen...)
}

func TestContract_StripeMockAcceptsEveryRequest(t *testing.T) {
	base := startStripeMock(t)
	rt := &recordingTransport{}
	store, cache := newTestStore(t, time.Now), &testCache{}
	b, err := New(Config{
		SecretKey:      "sk_test_contract",
		WebhookSecrets: []string{testSecret},
		APIURL:         base,
		PublicURL:      mustURL("https://app.example.test"),
		Plans:          testPlans(),
		Store:          store,
		Cache:          cache,
		Directory:      &testDirectory{emails: map[string]string{"user_ada": "ada@example.com", "user_grace": "grace@example.com"}},
		HTTPClient:     &http.Client{Transport: rt, Timeout: 20 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	// Customer create, customer get, subscriptions list (customer, status=all),
	// checkout session create with a paid trial and metadata.
	rt.setEmptyLists(true)
	res, err := b.Checkout(ctx, proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro"), ReturnPath: "/docs?a=1"})
	if err != nil {
		t.Fatalf("Checkout: %v", err)
	}
	if res.Portal || res.URL == "" {
		t.Errorf("Checkout = %+v, want a Checkout URL", res)
	}
	// The organisation flavour: clerk_org_id metadata everywhere.
	// With every Checkout option on: promotion codes, automatic tax with
	// the billing address it needs.
	if _, err := b.Checkout(ctx, proxy.CheckoutRequest{Identity: idGrace(), Subject: orgAcme(), Plan: planByKey("team"), ReturnPath: "/",
		AllowPromotionCodes: true, AutomaticTax: true}); err != nil {
		t.Fatalf("Checkout (organisation): %v", err)
	}
	// stripe-mock's canned active subscription: the portal instead.
	rt.setEmptyLists(false)
	res, err = b.Checkout(ctx, proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro"), ReturnPath: "/docs"})
	if err != nil || !res.Portal {
		t.Fatalf("Checkout with a live subscription = %+v, %v; want the portal", res, err)
	}
	// Checkout session get (expand subscription). The canned session is not
	// Ada's, so ErrNotYours is the right answer: the request was still valid.
	if _, err := b.CompleteCheckout(ctx, "cs_test_contract", idAda()); err != nil && !errors.Is(err, proxy.ErrNotYours) {
		t.Errorf("CompleteCheckout: %v", err)
	}
	if _, err := b.Portal(ctx, userAda(), "https://app.example.test/.tollgate/account"); err != nil {
		t.Errorf("Portal: %v", err)
	}
	cus, _ := store.CustomerOf(ctx, userAda())
	if err := b.SyncCustomer(ctx, cus, "evt_contract"); err != nil {
		t.Errorf("SyncCustomer: %v", err)
	}
	if _, err := b.SyncAll(ctx); err != nil { // account-wide list, expand data.customer
		t.Errorf("SyncAll: %v", err)
	}
	if err := b.Ready(ctx); err != nil {
		t.Errorf("Ready: %v", err)
	}
	_ = b.RefreshPrices(ctx) // canned prices may be of the "wrong" kind; only the requests matter
	_, _ = b.CatchUp(ctx)    // events list (delivery_success=false, created[gte]); canned events
	// Expiring a session (Checkout expires the subject's other open
	// sessions; stripe-mock's canned ones carry no tollgate metadata).
	if err := b.expireSession(ctx, b.backgroundBudget(0), "cs_test_contract"); err != nil {
		t.Errorf("expire session: %v", err)
	}

	// Metered plans (README "Usage billing"): a Checkout with the metered
	// price as a line item without a quantity, the meter event the outbox
	// sends, the meter list and summary a day-old row is checked against,
	// and the meter check -online makes of a metered price.
	rt.setEmptyLists(true)
	metered := &proxy.Plan{Key: "api", Name: "API", Prices: []string{"price_api_base"}, Routes: []string{"*"}, Scope: proxy.SubjectUser,
		Meter: &proxy.PlanMeter{EventName: "api_requests", Price: "price_api_usage"}}
	if _, err := b.Checkout(ctx, proxy.CheckoutRequest{Identity: idGrace(), Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_grace"},
		Plan: metered, ReturnPath: "/"}); err != nil {
		t.Errorf("Checkout (metered): %v", err)
	}
	rt.setEmptyLists(false)
	out := &memOutbox{}
	m := b.MeterSender(MeterConfig{Store: out})
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	out.add(proxy.UsageRow{Subject: userAda(), Customer: "cus_ada", EventName: "api_requests", Window: at, At: at, Value: 3})
	if _, err := m.Pass(ctx); err != nil || out.state(1).Status != proxy.OutboxSent {
		t.Errorf("meter event: %v, %+v", err, out.state(1))
	}
	_, _ = m.meterID(ctx, "api_requests") // stripe-mock's canned meter has another event_name
	m.meters = map[string]string{"api_requests": "mtr_contract"}
	if _, err := m.summary(ctx, "api_requests", "cus_ada", at.Truncate(time.Minute), at.Truncate(time.Minute).Add(time.Minute)); err != nil {
		t.Errorf("meter event summary: %v", err)
	}
	_ = b.checkMetered(ctx, &stripe.Price{ID: "price_api_usage", Recurring: &stripe.PriceRecurring{
		UsageType: stripe.PriceRecurringUsageTypeMetered, Meter: "mtr_contract"}}, map[string]string{"price_api_usage": "api_requests"})

	// Every call is one of Endpoints (the metrics' allow-list), and every
	// one of Endpoints was exercised.
	want := map[string]bool{}
	for _, e := range Endpoints() {
		want[e] = false
	}
	for _, c := range rt.calls() {
		if c.Status >= 400 {
			t.Errorf("stripe-mock rejected %s %s?%s: %d %s", c.Method, c.Path, c.Query, c.Status, c.Body)
		}
		ep := EndpointLabel(c.Method, c.Path)
		if ep == EndpointOther {
			t.Errorf("%s %s is not in Endpoints: add its route template", c.Method, c.Path)
		}
		want[ep] = true
	}
	for ep, hit := range want {
		if !hit {
			t.Errorf("no %s request was exercised", ep)
		}
	}
	t.Logf("stripe-mock accepted %d requests", len(rt.calls()))
}

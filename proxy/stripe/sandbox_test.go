package stripe

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	stripesandbox "github.com/tollgate/tollgate/proxy/sandbox/stripe"
)

// The tests run tollgate against the sandbox Stripe: a stateful account
// whose answers decode into stripe-go's types as the real API's do. The
// test reaches the account on a server of its own (account), so that what
// it sets up is never counted among what tollgate asked (apiTap).

// testPrices are what the sandbox account sells: the plans' prices (see
// testPlans), and one that no plan names.
func testPrices() []stripesandbox.Price {
	return []stripesandbox.Price{
		{ID: "price_pro", Product: "Pro", Nickname: "Pro monthly", Currency: "usd", UnitAmount: 1200, Interval: "month"},
		{ID: "price_pro_yearly", Product: "Pro", Nickname: "Pro yearly", Currency: "usd", UnitAmount: 12000, Interval: "year"},
		{ID: "price_fee", Product: "Trial fee", Currency: "usd", UnitAmount: 100},
		{ID: "price_team", Product: "Team", Currency: "usd", UnitAmount: 4900, Interval: "month"},
		{ID: "price_other", Product: "Basic", Currency: "usd", UnitAmount: 500, Interval: "month"},
		{ID: "price_unknown", Product: "Elsewhere", Currency: "usd", UnitAmount: 700, Interval: "month"},
	}
}

// apiCall is one request tollgate sent to Stripe.
type apiCall struct {
	Method, Path string
	Form         url.Values // the query's and the body's parameters
	IdemKey      string
	Replayed     bool // Stripe answered with its first answer to IdemKey
}

// apiFailure makes requests fail as Stripe does when it is down or rate
// limiting, which the sandbox never does by itself.
type apiFailure struct {
	method, prefix string
	status         int
	code           string
	times          int // -1: forever
}

// apiTap stands between tollgate and the sandbox: it records every request
// tollgate sends, fails the ones a test asks it to, and runs a hook as a
// request arrives, so a test can change the account while tollgate is
// part-way through.
type apiTap struct {
	next http.Handler

	mu        sync.Mutex
	calls     []*apiCall
	failures  []*apiFailure
	onRequest func(method, path string)
}

func (tp *apiTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if hook := tp.hook(); hook != nil {
		hook(r.Method, r.URL.Path)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form := r.URL.Query()
	if r.Method == http.MethodPost {
		posted, err := url.ParseQuery(string(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for k, v := range posted {
			form[k] = append(form[k], v...)
		}
	}
	call := &apiCall{Method: r.Method, Path: r.URL.Path, Form: form, IdemKey: r.Header.Get("Idempotency-Key")}
	tp.mu.Lock()
	tp.calls = append(tp.calls, call)
	var fail *apiFailure
	for _, f := range tp.failures {
		if f.times != 0 && f.method == r.Method && strings.HasPrefix(r.URL.Path, f.prefix) {
			if f.times > 0 {
				f.times--
			}
			fail = f
			break
		}
	}
	tp.mu.Unlock()
	if fail != nil {
		// stripe-go would retry by itself, with real waits; Stripe's
		// header tells it not to, so only Billing's own backoff runs.
		w.Header().Set("Stripe-Should-Retry", "false")
		typ := "api_error"
		if fail.status < 500 {
			typ = "invalid_request_error"
		}
		e := map[string]any{"type": typ, "message": "injected failure"}
		if fail.code != "" {
			e["code"] = fail.code
		}
		b, _ := json.Marshal(map[string]any{"error": e})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(fail.status)
		_, _ = w.Write(b)
		return
	}
	tp.next.ServeHTTP(&replayWatch{ResponseWriter: w, tap: tp, call: call}, r)
}

// replayWatch notes whether an answer is a replay as its header goes out:
// before tollgate can read the answer, so before it can act on it.
type replayWatch struct {
	http.ResponseWriter
	tap   *apiTap
	call  *apiCall
	wrote bool
}

func (rw *replayWatch) WriteHeader(status int) {
	if !rw.wrote {
		rw.wrote = true
		if rw.Header().Get("Idempotent-Replayed") == "true" {
			rw.tap.mu.Lock()
			rw.call.Replayed = true
			rw.tap.mu.Unlock()
		}
	}
	rw.ResponseWriter.WriteHeader(status)
}

func (rw *replayWatch) Write(b []byte) (int, error) {
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	return rw.ResponseWriter.Write(b)
}

func (tp *apiTap) hook() func(string, string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.onRequest
}

// setHook runs h as each request arrives, before it is recorded.
func (tp *apiTap) setHook(h func(method, path string)) {
	tp.mu.Lock()
	tp.onRequest = h
	tp.mu.Unlock()
}

// fail makes the next n requests (n < 0: all) matching method and path
// prefix fail with status (and a Stripe error code, e.g. "rate_limit").
func (tp *apiTap) fail(method, prefix string, status int, code string, n int) {
	tp.mu.Lock()
	tp.failures = append(tp.failures, &apiFailure{method: method, prefix: prefix, status: status, code: code, times: n})
	tp.mu.Unlock()
}

func (tp *apiTap) clearFailures() {
	tp.mu.Lock()
	tp.failures = nil
	tp.mu.Unlock()
}

// all lists tollgate's calls so far, in order.
func (tp *apiTap) all() []apiCall {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	out := make([]apiCall, len(tp.calls))
	for i, c := range tp.calls {
		out[i] = *c
	}
	return out
}

// to lists the calls of method whose path starts with prefix.
func (tp *apiTap) to(method, prefix string) []apiCall {
	var out []apiCall
	for _, c := range tp.all() {
		if c.Method == method && strings.HasPrefix(c.Path, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// account is the sandbox Stripe as the test drives it: it sets up
// customers, subscriptions and Checkout Sessions the way the Dashboard
// and a paying visitor would, and reads back what Stripe holds.
type account struct {
	t    testing.TB
	sb   *stripesandbox.Stripe
	url  string      // the sandbox's own server: its API and hosted pages
	api  *client.API // with the test-mode key
	live *client.API // with the live-mode key
	web  *http.Client
}

func newAccount(t testing.TB, sb *stripesandbox.Stripe) *account {
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	sb.SetBaseURL(srv.URL)
	apiClient := func(key string) *client.API {
		return client.New(key, stripe.NewBackendsWithConfig(&stripe.BackendConfig{
			URL:               stripe.String(srv.URL),
			HTTPClient:        srv.Client(),
			MaxNetworkRetries: stripe.Int64(0),
			LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
			EnableTelemetry:   stripe.Bool(false),
		}))
	}
	web := srv.Client()
	web.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &account{t: t, sb: sb, url: srv.URL, api: apiClient(sb.SecretKey()), live: apiClient(sb.LiveSecretKey()), web: web}
}

// customer creates a test-mode customer.
func (a *account) customer(email string, md map[string]string) string {
	a.t.Helper()
	return a.newCustomer(a.api, email, md)
}

// liveCustomer creates a live-mode customer: one a test-mode key cannot see.
func (a *account) liveCustomer(email string, md map[string]string) string {
	a.t.Helper()
	return a.newCustomer(a.live, email, md)
}

func (a *account) newCustomer(api *client.API, email string, md map[string]string) string {
	a.t.Helper()
	p := &stripe.CustomerParams{Metadata: md}
	if email != "" {
		p.Email = stripe.String(email)
	}
	c, err := api.Customers.New(p)
	if err != nil {
		a.t.Fatalf("create customer: %v", err)
	}
	return c.ID
}

func (a *account) deleteCustomer(id string) {
	a.t.Helper()
	if _, err := a.api.Customers.Del(id, nil); err != nil {
		a.t.Fatalf("delete customer %s: %v", id, err)
	}
}

// sessionParams is a subscription Checkout Session for the prices, billed
// to cus ("": Checkout makes a customer) for the Clerk user ref ("": none).
func sessionParams(cus, ref string, prices ...string) *stripe.CheckoutSessionParams {
	p := &stripe.CheckoutSessionParams{
		Mode:       stripe.String(string(stripe.CheckoutSessionModeSubscription)),
		SuccessURL: stripe.String("https://app.example.test/.tollgate/checkout/done?session_id={CHECKOUT_SESSION_ID}"),
		CancelURL:  stripe.String("https://app.example.test/"),
	}
	if cus != "" {
		p.Customer = stripe.String(cus)
	}
	if ref != "" {
		p.ClientReferenceID = stripe.String(ref)
	}
	for _, id := range prices {
		p.LineItems = append(p.LineItems, &stripe.CheckoutSessionLineItemParams{Price: stripe.String(id), Quantity: stripe.Int64(1)})
	}
	return p
}

// openSession creates a Checkout Session and leaves it open.
func (a *account) openSession(p *stripe.CheckoutSessionParams) *stripe.CheckoutSession {
	a.t.Helper()
	cs, err := a.api.CheckoutSessions.New(p)
	if err != nil {
		a.t.Fatalf("create checkout session: %v", err)
	}
	return cs
}

// pay pays an open Checkout Session on its hosted page with the test card,
// and returns its subscription's ID.
func (a *account) pay(cs *stripe.CheckoutSession) string {
	a.t.Helper()
	res, err := a.web.PostForm(cs.URL, url.Values{"card_number": {"4242 4242 4242 4242"}})
	if err != nil {
		a.t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		a.t.Fatalf("pay %s: status %d, want 303\n%s", cs.ID, res.StatusCode, body)
	}
	return a.session(cs.ID).Subscription.ID
}

// subscribe opens a Checkout Session with p and pays it: the subscription
// it returns is active, or trialing when p asks for a trial.
func (a *account) subscribe(p *stripe.CheckoutSessionParams) string {
	a.t.Helper()
	return a.pay(a.openSession(p))
}

// subscribeWith subscribes cus to the prices, with no trial, and puts the
// subscription in status (as time, failed payments or the Dashboard
// would).
func (a *account) subscribeWith(cus, status string, prices ...string) string {
	a.t.Helper()
	sub := a.subscribe(sessionParams(cus, "", prices...))
	if status != "active" {
		a.setStatus(sub, status)
	}
	return sub
}

// setStatus puts a subscription in status; "canceled" cancels it now.
func (a *account) setStatus(sub, status string) {
	a.t.Helper()
	a.sb.SetSubscriptionStatus(sub, status)
	if got := a.subscription(sub).Status; string(got) != status {
		a.t.Fatalf("subscription %s is %s, want %s", sub, got, status)
	}
}

func (a *account) cancelAtPeriodEnd(sub string) {
	a.t.Helper()
	if _, err := a.api.Subscriptions.Update(sub, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)}); err != nil {
		a.t.Fatalf("cancel %s at period end: %v", sub, err)
	}
}

func (a *account) subscription(id string) *stripe.Subscription {
	a.t.Helper()
	s, err := a.api.Subscriptions.Get(id, nil)
	if err != nil {
		a.t.Fatalf("get subscription %s: %v", id, err)
	}
	return s
}

// session is a Checkout Session as Stripe holds it now, its subscription
// expanded.
func (a *account) session(id string) *stripe.CheckoutSession {
	a.t.Helper()
	p := &stripe.CheckoutSessionParams{}
	p.AddExpand("subscription")
	cs, err := a.api.CheckoutSessions.Get(id, p)
	if err != nil {
		a.t.Fatalf("get checkout session %s: %v", id, err)
	}
	return cs
}

func (a *account) expire(id string) {
	a.t.Helper()
	if _, err := a.api.CheckoutSessions.Expire(id, nil); err != nil {
		a.t.Fatalf("expire checkout session %s: %v", id, err)
	}
}

package stripe

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/tollgate/tollgate/proxy"
)

// fakeStripe is a small, stateful, in-process Stripe: the endpoints tollgate
// uses, answering JSON shaped like Stripe's at API version 2023-10-16 (it
// decodes into stripe-go v76 types through the real client).
type fakeStripe struct {
	t   testing.TB
	srv *httptest.Server

	mu        sync.Mutex
	seq       int
	customers map[string]*fakeCustomer
	subs      []*fakeSub // in creation order
	sessions  map[string]*fakeSession
	prices    map[string]fakePrice
	idem      map[string]fakeReply
	calls     []fakeCall
	failures  []*fakeFailure
	// onRequest runs (outside the lock) before a request is served.
	onRequest func(method, path string)
}

type fakeCustomer struct {
	ID       string
	Email    string
	Metadata map[string]string
	Deleted  bool
}

type fakeSub struct {
	ID                string
	Customer          string
	Status            string
	Prices            []string
	CurrentPeriodEnd  int64
	TrialEnd          int64
	CancelAtPeriodEnd bool
	Created           int64
}

type fakeSession struct {
	ID, URL, Customer, ClientReferenceID string
	Status, PaymentStatus, Subscription  string
	Metadata                             map[string]string
	Seq                                  int   // creation order
	ExpiresAt                            int64 // 0: a day after now
}

type fakePrice struct {
	ID        string
	Recurring bool
	Active    bool
	Amount    int64
}

type fakeReply struct {
	status int
	body   []byte
}

// fakeCall is one request tollgate sent.
type fakeCall struct {
	Method, Path string
	Form         url.Values
	IdemKey      string
	Replayed     bool
}

type fakeFailure struct {
	method, prefix string
	status         int
	code           string
	times          int // -1: forever
}

func newFakeStripe(t testing.TB) *fakeStripe {
	f := &fakeStripe{
		t:         t,
		customers: map[string]*fakeCustomer{},
		sessions:  map[string]*fakeSession{},
		prices: map[string]fakePrice{
			"price_pro":        {ID: "price_pro", Recurring: true, Active: true, Amount: 1200},
			"price_pro_yearly": {ID: "price_pro_yearly", Recurring: true, Active: true, Amount: 12000},
			"price_fee":        {ID: "price_fee", Active: true, Amount: 100},
			"price_team":       {ID: "price_team", Recurring: true, Active: true, Amount: 4900},
			"price_other":      {ID: "price_other", Recurring: true, Active: true, Amount: 500},
		},
		idem: map[string]fakeReply{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/customers", f.createCustomer)
	mux.HandleFunc("GET /v1/customers/{id}", f.getCustomer)
	mux.HandleFunc("GET /v1/subscriptions", f.listSubscriptions)
	mux.HandleFunc("POST /v1/checkout/sessions", f.createSession)
	mux.HandleFunc("GET /v1/checkout/sessions/{id}", f.getSession)
	mux.HandleFunc("GET /v1/checkout/sessions", f.listSessions)
	mux.HandleFunc("POST /v1/checkout/sessions/{id}/expire", f.expireSession)
	mux.HandleFunc("POST /v1/billing_portal/sessions", f.createPortal)
	mux.HandleFunc("GET /v1/prices", f.listPrices)
	mux.HandleFunc("GET /v1/account", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"id": "acct_fake", "object": "account", "charges_enabled": true})
	})
	mux.HandleFunc("GET /v1/prices/{id}", f.getPrice)
	f.srv = httptest.NewServer(f.middleware(mux))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeStripe) URL() string { return f.srv.URL }

func (f *fakeStripe) nextID(prefix string) string {
	f.seq++
	return fmt.Sprintf("%s_%04d", prefix, f.seq)
}

// middleware authenticates, records the call, injects failures and
// replays idempotent POSTs.
func (f *fakeStripe) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hook := f.hook(); hook != nil {
			hook(r.Method, r.URL.Path)
		}
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer sk_test_") {
			writeStripeError(w, http.StatusUnauthorized, "invalid_request_error", "", "Invalid API Key provided")
			return
		}
		if err := r.ParseForm(); err != nil {
			writeStripeError(w, http.StatusBadRequest, "invalid_request_error", "", err.Error())
			return
		}
		call := fakeCall{Method: r.Method, Path: r.URL.Path, Form: r.Form, IdemKey: r.Header.Get("Idempotency-Key")}
		f.mu.Lock()
		for _, fl := range f.failures {
			if fl.times != 0 && fl.method == r.Method && strings.HasPrefix(r.URL.Path, fl.prefix) {
				if fl.times > 0 {
					fl.times--
				}
				f.calls = append(f.calls, call)
				f.mu.Unlock()
				// Tell stripe-go not to retry on its own: tests stay fast.
				w.Header().Set("Stripe-Should-Retry", "false")
				typ := "api_error"
				if fl.status < 500 {
					typ = "invalid_request_error"
				}
				writeStripeError(w, fl.status, typ, fl.code, "injected failure")
				return
			}
		}
		if r.Method == http.MethodPost && call.IdemKey != "" {
			if rep, ok := f.idem[call.IdemKey]; ok {
				call.Replayed = true
				f.calls = append(f.calls, call)
				f.mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Idempotent-Replayed", "true")
				w.WriteHeader(rep.status)
				_, _ = w.Write(rep.body)
				return
			}
		}
		f.calls = append(f.calls, call)
		f.mu.Unlock()
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		if r.Method == http.MethodPost && call.IdemKey != "" {
			f.mu.Lock()
			f.idem[call.IdemKey] = fakeReply{rec.Code, rec.Body.Bytes()}
			f.mu.Unlock()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

func (f *fakeStripe) hook() func(string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.onRequest
}

func (f *fakeStripe) setHook(h func(method, path string)) {
	f.mu.Lock()
	f.onRequest = h
	f.mu.Unlock()
}

// fail makes the next n requests (n < 0: all) matching method and path
// prefix fail with status (and a Stripe error code, e.g. "rate_limit").
func (f *fakeStripe) fail(method, prefix string, status int, code string, n int) {
	f.mu.Lock()
	f.failures = append(f.failures, &fakeFailure{method: method, prefix: prefix, status: status, code: code, times: n})
	f.mu.Unlock()
}

func (f *fakeStripe) clearFailures() {
	f.mu.Lock()
	f.failures = nil
	f.mu.Unlock()
}

func (f *fakeStripe) callList() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// callsTo returns the calls of method whose path starts with prefix.
func (f *fakeStripe) callsTo(method, prefix string) []fakeCall {
	var out []fakeCall
	for _, c := range f.callList() {
		if c.Method == method && strings.HasPrefix(c.Path, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeStripe) addCustomer(id, email string, md map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.customers[id] = &fakeCustomer{ID: id, Email: email, Metadata: md}
}

func (f *fakeStripe) deleteCustomer(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.customers[id].Deleted = true
}

func (f *fakeStripe) addSub(s fakeSub) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.ID == "" {
		s.ID = f.nextID("sub")
	}
	f.seq++
	s.Created = int64(f.seq)
	if s.CurrentPeriodEnd == 0 {
		s.CurrentPeriodEnd = 1_900_000_000
	}
	f.subs = append(f.subs, &s)
	return s.ID
}

func (f *fakeStripe) setSubStatus(id, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.subs {
		if s.ID == id {
			s.Status = status
			return
		}
	}
	f.t.Fatalf("fake stripe: no subscription %s", id)
}

func (f *fakeStripe) addSession(s fakeSession) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions[s.ID] = &s
}

// --- handlers ---

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_fake")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeStripeError(w http.ResponseWriter, status int, typ, code, msg string) {
	e := map[string]any{"type": typ, "message": msg}
	if code != "" {
		e["code"] = code
	}
	writeJSON(w, status, map[string]any{"error": e})
}

func metadataOf(form url.Values, prefix string) map[string]string {
	md := map[string]string{}
	for k, v := range form {
		if strings.HasPrefix(k, prefix+"[") && strings.HasSuffix(k, "]") {
			md[strings.TrimSuffix(strings.TrimPrefix(k, prefix+"["), "]")] = v[0]
		}
	}
	return md
}

func (f *fakeStripe) createCustomer(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	c := &fakeCustomer{ID: f.nextID("cus"), Email: r.Form.Get("email"), Metadata: metadataOf(r.Form, "metadata")}
	f.customers[c.ID] = c
	body := customerJSON(c)
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func customerJSON(c *fakeCustomer) map[string]any {
	if c.Deleted {
		return map[string]any{"id": c.ID, "object": "customer", "deleted": true}
	}
	md := c.Metadata
	if md == nil {
		md = map[string]string{}
	}
	return map[string]any{"id": c.ID, "object": "customer", "email": c.Email, "metadata": md,
		"created": 1_700_000_000, "livemode": false, "currency": nil, "delinquent": false}
}

func (f *fakeStripe) getCustomer(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	c := f.customers[r.PathValue("id")]
	var body map[string]any
	if c != nil {
		body = customerJSON(c)
	}
	f.mu.Unlock()
	if c == nil {
		writeStripeError(w, http.StatusNotFound, "invalid_request_error", "resource_missing",
			fmt.Sprintf("No such customer: '%s'", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (f *fakeStripe) subJSON(s *fakeSub, expandCustomer bool) map[string]any {
	items := []any{}
	for i, p := range s.Prices {
		pr, ok := f.prices[p]
		if !ok {
			pr = fakePrice{ID: p, Recurring: true, Active: true, Amount: 1}
		}
		items = append(items, map[string]any{
			"id": fmt.Sprintf("si_%s_%d", s.ID, i), "object": "subscription_item", "quantity": 1,
			"subscription": s.ID, "price": priceJSON(pr),
		})
	}
	var customer any = s.Customer
	if expandCustomer {
		if c := f.customers[s.Customer]; c != nil {
			customer = customerJSON(c)
		}
	}
	var trialEnd any
	if s.TrialEnd != 0 {
		trialEnd = s.TrialEnd
	}
	return map[string]any{
		"id": s.ID, "object": "subscription", "customer": customer, "status": s.Status,
		"cancel_at_period_end": s.CancelAtPeriodEnd, "created": s.Created,
		"current_period_start": s.CurrentPeriodEnd - 30*86400, "current_period_end": s.CurrentPeriodEnd,
		"trial_end": trialEnd, "metadata": map[string]string{}, "livemode": false,
		"items": map[string]any{"object": "list", "data": items, "has_more": false,
			"url": "/v1/subscription_items?subscription=" + s.ID},
	}
}

func priceJSON(p fakePrice) map[string]any {
	m := map[string]any{"id": p.ID, "object": "price", "active": p.Active, "currency": "usd",
		"unit_amount": p.Amount, "product": "prod_" + p.ID, "type": "one_time", "recurring": nil}
	if p.Recurring {
		m["type"] = "recurring"
		m["recurring"] = map[string]any{"interval": "month", "interval_count": 1, "usage_type": "licensed"}
	}
	return m
}

func (f *fakeStripe) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	q := r.Form
	limit := 10
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 && l <= 100 {
		limit = l
	}
	status := q.Get("status")
	expand := slices.Contains(q["expand[]"], "data.customer") || slices.Contains(q["expand[0]"], "data.customer")
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []*fakeSub
	for i := len(f.subs) - 1; i >= 0; i-- { // newest first, as Stripe lists them
		s := f.subs[i]
		if c := q.Get("customer"); c != "" && s.Customer != c {
			continue
		}
		switch status {
		case "all":
		case "":
			if s.Status == "canceled" || s.Status == "incomplete_expired" {
				continue
			}
		default:
			if s.Status != status {
				continue
			}
		}
		all = append(all, s)
	}
	if after := q.Get("starting_after"); after != "" {
		i := slices.IndexFunc(all, func(s *fakeSub) bool { return s.ID == after })
		if i < 0 {
			w.Header().Set("Stripe-Should-Retry", "false")
			writeStripeError(w, http.StatusBadRequest, "invalid_request_error", "resource_missing", "No such subscription: "+after)
			return
		}
		all = all[i+1:]
	}
	more := len(all) > limit
	if more {
		all = all[:limit]
	}
	data := []any{}
	for _, s := range all {
		data = append(data, f.subJSON(s, expand))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "has_more": more, "url": "/v1/subscriptions"})
}

func (f *fakeStripe) createSession(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	id := f.nextID("cs_test")
	s := &fakeSession{ID: id, URL: "https://checkout.stripe.test/c/pay/" + id, Customer: r.Form.Get("customer"),
		ClientReferenceID: r.Form.Get("client_reference_id"), Status: "open", PaymentStatus: "unpaid",
		Metadata: metadataOf(r.Form, "metadata"), Seq: f.seq}
	f.sessions[id] = s
	body := f.sessionJSON(s, false)
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (f *fakeStripe) sessionJSON(s *fakeSession, expandSub bool) map[string]any {
	var sub any
	if s.Subscription != "" {
		sub = s.Subscription
		if expandSub {
			for _, x := range f.subs {
				if x.ID == s.Subscription {
					sub = f.subJSON(x, false)
				}
			}
		}
	}
	var cus any
	if s.Customer != "" {
		cus = s.Customer
	}
	var ref any
	if s.ClientReferenceID != "" {
		ref = s.ClientReferenceID
	}
	md := s.Metadata
	if md == nil {
		md = map[string]string{}
	}
	var u any
	if s.Status == "open" {
		u = s.URL
	}
	exp := s.ExpiresAt
	if exp == 0 {
		exp = time.Now().Add(24 * time.Hour).Unix()
	}
	return map[string]any{"id": s.ID, "object": "checkout.session", "url": u, "mode": "subscription",
		"customer": cus, "client_reference_id": ref, "status": s.Status, "payment_status": s.PaymentStatus,
		"subscription": sub, "metadata": md, "livemode": false, "expires_at": exp}
}

func (f *fakeStripe) listSessions(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	var all []*fakeSession
	for _, s := range f.sessions {
		if (r.Form.Get("customer") == "" || s.Customer == r.Form.Get("customer")) &&
			(r.Form.Get("status") == "" || s.Status == r.Form.Get("status")) {
			all = append(all, s)
		}
	}
	slices.SortFunc(all, func(a, b *fakeSession) int { return b.Seq - a.Seq })
	data := []any{}
	for _, s := range all {
		data = append(data, f.sessionJSON(s, false))
	}
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data, "has_more": false, "url": "/v1/checkout/sessions"})
}

func (f *fakeStripe) expireSession(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	s := f.sessions[r.PathValue("id")]
	var body map[string]any
	ok := s != nil && s.Status == "open"
	if ok {
		s.Status = "expired"
		body = f.sessionJSON(s, false)
	}
	f.mu.Unlock()
	switch {
	case s == nil:
		writeStripeError(w, http.StatusNotFound, "invalid_request_error", "resource_missing", "No such checkout.session")
	case !ok:
		writeStripeError(w, http.StatusBadRequest, "invalid_request_error", "",
			`Only Checkout Sessions with a status in ["open"] can be expired.`)
	default:
		writeJSON(w, http.StatusOK, body)
	}
}

// session is a copy of the fake's session id.
func (f *fakeStripe) session(id string) fakeSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.sessions[id]; s != nil {
		return *s
	}
	return fakeSession{}
}

func (f *fakeStripe) getSession(w http.ResponseWriter, r *http.Request) {
	expand := slices.Contains(r.Form["expand[]"], "subscription") || slices.Contains(r.Form["expand[0]"], "subscription")
	f.mu.Lock()
	s := f.sessions[r.PathValue("id")]
	var body map[string]any
	if s != nil {
		body = f.sessionJSON(s, expand)
	}
	f.mu.Unlock()
	if s == nil {
		writeStripeError(w, http.StatusNotFound, "invalid_request_error", "resource_missing", "No such checkout.session")
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (f *fakeStripe) createPortal(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	id := f.nextID("bps")
	known := f.customers[r.Form.Get("customer")] != nil
	f.mu.Unlock()
	if !known {
		writeStripeError(w, http.StatusBadRequest, "invalid_request_error", "resource_missing", "No such customer")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "billing_portal.session",
		"url": "https://billing.stripe.test/p/session/" + id, "customer": r.Form.Get("customer"),
		"return_url": r.Form.Get("return_url"), "livemode": false})
}

func (f *fakeStripe) listPrices(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "has_more": true, "url": "/v1/prices",
		"data": []any{priceJSON(f.prices["price_pro"])}})
}

func (f *fakeStripe) getPrice(w http.ResponseWriter, r *http.Request) {
	p, ok := f.prices[r.PathValue("id")]
	if !ok {
		writeStripeError(w, http.StatusNotFound, "invalid_request_error", "resource_missing", "No such price")
		return
	}
	writeJSON(w, http.StatusOK, priceJSON(p))
}

// --- fake store, cache, directory ---

type fakeStore struct {
	mu        sync.Mutex
	subjects  map[string]proxy.Subject // customer → subject
	customers map[proxy.Subject]string
	states    map[string]proxy.CustomerState
	events    map[string]bool
	cursors   map[string]string
	commits   []fakeCommit
	cursorLog []string
	trials    map[string]bool // customers HadTrial reports whatever the stored state says

	commitErr    error
	processedErr error
	failCommitAt int // > 0: the n-th commit from now fails
}

type fakeCommit struct {
	State   proxy.CustomerState
	EventID string
}

func newFakeStore() *fakeStore {
	return &fakeStore{subjects: map[string]proxy.Subject{}, customers: map[proxy.Subject]string{},
		states: map[string]proxy.CustomerState{}, events: map[string]bool{}, cursors: map[string]string{}}
}

func (s *fakeStore) CustomerOf(_ context.Context, subject proxy.Subject) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.customers[subject], nil
}

func (s *fakeStore) SubjectOf(_ context.Context, customerID string) (proxy.Subject, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.subjects[customerID]
	return sub, ok, nil
}

func (s *fakeStore) LinkCustomer(_ context.Context, subject proxy.Subject, customerID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subjects[customerID] = subject
	s.customers[subject] = customerID
	return nil
}

func (s *fakeStore) CommitCustomer(_ context.Context, state proxy.CustomerState, eventID string) (proxy.Subject, *proxy.Entitlements, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commitErr != nil {
		return proxy.Subject{}, nil, s.commitErr
	}
	if s.failCommitAt > 0 {
		s.failCommitAt--
		if s.failCommitAt == 0 {
			return proxy.Subject{}, nil, errors.New("fake store: commit failed")
		}
	}
	old := s.states[state.CustomerID]
	state.Subscriptions = proxy.MergeSubscriptions(old.Subscriptions, state.Subscriptions, state.SyncedAt)
	s.states[state.CustomerID] = state
	if eventID != "" {
		s.events[eventID] = true
	}
	s.commits = append(s.commits, fakeCommit{state, eventID})
	who := s.subjects[state.CustomerID]
	if who.ID == "" {
		who = state.Subject
	}
	if who.ID == "" {
		return proxy.Subject{}, nil, nil
	}
	return who, &proxy.Entitlements{Subject: who, CustomerID: state.CustomerID,
		Subscriptions: slices.Clone(state.Subscriptions), SyncedAt: state.SyncedAt}, nil
}

func (s *fakeStore) EventProcessed(_ context.Context, eventID string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.processedErr != nil {
		return false, s.processedErr
	}
	return s.events[eventID], nil
}

func (s *fakeStore) MarkEvent(_ context.Context, eventID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events[eventID] = true
	return nil
}

func (s *fakeStore) HadTrial(_ context.Context, customerID string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.trials[customerID] {
		return true, nil
	}
	for _, sub := range s.states[customerID].Subscriptions {
		if !sub.TrialEnd.IsZero() {
			return true, nil
		}
	}
	return false, nil
}

func (s *fakeStore) Cursor(_ context.Context, name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursors[name], nil
}

func (s *fakeStore) SetCursor(_ context.Context, name, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursors[name] = value
	s.cursorLog = append(s.cursorLog, value)
	return nil
}

func (s *fakeStore) processed(eventID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events[eventID]
}

func (s *fakeStore) state(customerID string) proxy.CustomerState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.states[customerID]
}

func (s *fakeStore) commitCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.commits)
}

type fakeCache struct {
	mu   sync.Mutex
	puts []fakePut
}

type fakePut struct {
	Subject proxy.Subject
	Ents    *proxy.Entitlements
}

func (c *fakeCache) Put(s proxy.Subject, e *proxy.Entitlements) {
	c.mu.Lock()
	c.puts = append(c.puts, fakePut{s, e})
	c.mu.Unlock()
}

// last is the latest Put for s (ok false: none).
func (c *fakeCache) last(s proxy.Subject) (*proxy.Entitlements, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.puts) - 1; i >= 0; i-- {
		if c.puts[i].Subject == s {
			return c.puts[i].Ents, true
		}
	}
	return nil, false
}

func (c *fakeCache) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.puts)
}

type fakeDirectory struct {
	mu     sync.Mutex
	emails map[string]string
	err    error
	calls  int
}

func (d *fakeDirectory) PrimaryEmail(_ context.Context, userID string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.err != nil {
		return "", d.err
	}
	return d.emails[userID], nil
}

// testClock is an adjustable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// --- harness ---

const (
	testSecret    = "whsec_test_primary"
	testSecretOld = "whsec_test_old"
)

// Fixed test subjects and plans (functions, so no test can change them for another).
func userAda() proxy.Subject { return proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"} }
func orgAcme() proxy.Subject { return proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"} }
func idAda() *proxy.Identity { return &proxy.Identity{UserID: "user_ada", SessionID: "sess_1"} }
func idGrace() *proxy.Identity {
	return &proxy.Identity{UserID: "user_grace", SessionID: "sess_2", OrgID: "org_acme", OrgRole: "org:admin"}
}

func testPlans() []proxy.Plan {
	return []proxy.Plan{
		{Key: "pro", Name: "Pro", Prices: []string{"price_pro", "price_pro_yearly"}, Routes: []string{"*"},
			TrialDays: 7, TrialFeePrice: "price_fee", Scope: proxy.SubjectUser},
		{Key: "basic", Name: "Basic", Prices: []string{"price_other"}, Routes: []string{"*"}, Scope: proxy.SubjectUser},
		{Key: "team", Name: "Team", Prices: []string{"price_team"}, Routes: []string{"*"}, Scope: proxy.SubjectOrg},
	}
}

type harness struct {
	b      *Billing
	stripe *fakeStripe
	store  *fakeStore
	cache  *fakeCache
	dir    *fakeDirectory
	clock  *testClock

	sleepMu sync.Mutex
	sleeps  []time.Duration
}

func newHarness(t testing.TB, mod ...func(*Config)) *harness {
	t.Helper()
	h := &harness{
		stripe: newFakeStripe(t),
		store:  newFakeStore(),
		cache:  &fakeCache{},
		dir:    &fakeDirectory{emails: map[string]string{"user_ada": "ada@example.com", "user_grace": "grace@example.com"}},
		clock:  &testClock{t: time.Now().Truncate(time.Second)},
	}
	pub, _ := url.Parse("https://app.example.test")
	cfg := Config{
		SecretKey:      "sk_test_123",
		WebhookSecrets: []string{testSecret},
		APIURL:         h.stripe.URL(),
		PublicURL:      pub,
		InternalPrefix: "/.tollgate",
		Plans:          testPlans(),
		Store:          h.store,
		Cache:          h.cache,
		Directory:      h.dir,
		Now:            h.clock.Now,
	}
	for _, m := range mod {
		m(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b.backoffBase = time.Millisecond
	b.sleep = func(ctx context.Context, d time.Duration) error {
		h.sleepMu.Lock()
		h.sleeps = append(h.sleeps, d)
		h.sleepMu.Unlock()
		return ctx.Err()
	}
	h.b = b
	return h
}

// link records subject ↔ customer in the store, as an earlier checkout would have.
func (h *harness) link(s proxy.Subject, cus string) {
	_ = h.store.LinkCustomer(context.Background(), s, cus)
}

// event builds a signed-ready event envelope around obj.
func event(id, typ string, obj map[string]any) []byte {
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": "2023-10-16", "created": 1_700_000_000,
		"type": typ, "livemode": false, "pending_webhooks": 1,
		"data": map[string]any{"object": obj},
	})
	if err != nil {
		panic(err)
	}
	return b
}

func signature(body []byte, ts time.Time, secrets ...string) string {
	h := fmt.Sprintf("t=%d", ts.Unix())
	for _, s := range secrets {
		h += ",v1=" + hex.EncodeToString(webhook.ComputeSignature(ts, body, s))
	}
	return h
}

// deliver posts body to the webhook handler, signed now with testSecret.
func (h *harness) deliver(body []byte) *httptest.ResponseRecorder {
	return h.deliverSigned(body, signature(body, h.clock.Now(), testSecret))
}

func (h *harness) deliverSigned(body []byte, sig string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/.tollgate/webhooks/stripe", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("Stripe-Signature", sig)
	}
	rec := httptest.NewRecorder()
	h.b.WebhookHandler().ServeHTTP(rec, req)
	return rec
}

func subObject(id, customer, status string) map[string]any {
	return map[string]any{"id": id, "object": "subscription", "customer": customer, "status": status}
}

// statuses lists the subscription statuses in ents, by ID.
func statuses(e *proxy.Entitlements) map[string]proxy.SubscriptionStatus {
	out := map[string]proxy.SubscriptionStatus{}
	if e != nil {
		for _, s := range e.Subscriptions {
			out[s.ID] = s.Status
		}
	}
	return out
}

// fakeObserver records what Billing tells its Observer.
type fakeObserver struct {
	mu        sync.Mutex
	anomalies []string
}

func (o *fakeObserver) WebhookEvent(string, string, string, time.Duration) {}

func (o *fakeObserver) StripeAnomaly(kind string) {
	o.mu.Lock()
	o.anomalies = append(o.anomalies, kind)
	o.mu.Unlock()
}

func (o *fakeObserver) count(kind string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, k := range o.anomalies {
		if k == kind {
			n++
		}
	}
	return n
}

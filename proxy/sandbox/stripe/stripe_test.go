package stripesandbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	"github.com/stripe/stripe-go/v76/webhook"
)

const testWebhookSecret = "whsec_sandbox_test"

// receiver is a webhook endpoint that verifies every delivery with
// stripe-go's webhook.ConstructEvent, as the gateway does.
type receiver struct {
	secret string
	// status, if set, is the answer to attempt n (from 1) of ev.
	status func(ev stripe.Event, attempt int) int

	mu       sync.Mutex
	events   []stripe.Event // accepted (2xx), in arrival order
	attempts map[string]int
	problems []string
}

func (h *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.problems = append(h.problems, "read: "+err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		h.problems = append(h.problems, "content type "+ct)
	}
	// As the gateway does: events may be in any API version (stripe-go's
	// ConstructEvent refuses all but its own).
	ev, err := webhook.ConstructEventWithOptions(body, r.Header.Get("Stripe-Signature"), h.secret,
		webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true})
	if err != nil {
		h.problems = append(h.problems, "ConstructEvent: "+err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if h.attempts == nil {
		h.attempts = map[string]int{}
	}
	h.attempts[ev.ID]++
	st := http.StatusOK
	if h.status != nil {
		st = h.status(ev, h.attempts[ev.ID])
	}
	if st < 300 {
		h.events = append(h.events, ev)
	}
	w.WriteHeader(st)
}

func (h *receiver) snapshot() ([]stripe.Event, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events), slices.Clone(h.problems)
}

func (h *receiver) types() []string {
	evs, _ := h.snapshot()
	var out []string
	for _, ev := range evs {
		out = append(out, string(ev.Type))
	}
	return out
}

type fixture struct {
	s    *Stripe
	srv  *httptest.Server
	sc   *client.API
	hook *receiver
	web  *http.Client // does not follow redirects

	mu   sync.Mutex
	hits map[string]int // API requests by "METHOD path"
}

func newSBFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	f := &fixture{hits: map[string]int{}, hook: &receiver{secret: testWebhookSecret}}
	f.s = New(opts)
	f.s.retryDelays = []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.hits[r.Method+" "+r.URL.Path]++
		f.mu.Unlock()
		f.s.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	hookSrv := httptest.NewServer(f.hook)
	t.Cleanup(hookSrv.Close)
	t.Cleanup(func() { _ = f.s.Close() }) // runs first
	f.s.SetBaseURL(f.srv.URL)
	f.s.SetWebhook(hookSrv.URL, testWebhookSecret)
	f.sc = client.New(f.s.SecretKey(), stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(f.srv.URL),
		HTTPClient:        f.srv.Client(),
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		EnableTelemetry:   stripe.Bool(false),
	}))
	f.web = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return f
}

func (f *fixture) hitCount(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[key]
}

func (f *fixture) wait(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := f.s.WaitIdle(ctx); err != nil {
		t.Fatalf("WaitIdle: %v", err)
	}
}

func (f *fixture) customer(t *testing.T, email, clerkUser string) *stripe.Customer {
	t.Helper()
	p := &stripe.CustomerParams{Email: stripe.String(email)}
	p.AddMetadata("clerk_user_id", clerkUser)
	c, err := f.sc.Customers.New(p)
	if err != nil {
		t.Fatalf("Customers.New: %v", err)
	}
	return c
}

// checkoutParams is what the gateway sends: mode subscription, the plan's
// price, an optional trial and trial fee, and the Clerk user in three
// places.
func checkoutParams(customer, price string, trialDays int64, fee string) *stripe.CheckoutSessionParams {
	p := &stripe.CheckoutSessionParams{
		Mode:              stripe.String(string(stripe.CheckoutSessionModeSubscription)),
		Customer:          stripe.String(customer),
		ClientReferenceID: stripe.String("user_ada"),
		LineItems:         []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(price), Quantity: stripe.Int64(1)}},
		SubscriptionData:  &stripe.CheckoutSessionSubscriptionDataParams{Metadata: map[string]string{"clerk_user_id": "user_ada"}},
		SuccessURL:        stripe.String("https://app.example.test/.tollgate/checkout/done?session_id={CHECKOUT_SESSION_ID}"),
		CancelURL:         stripe.String("https://app.example.test/.tollgate/upgrade"),
	}
	p.AddMetadata("clerk_user_id", "user_ada")
	p.AddMetadata("return_to", "/routes/415VNA/")
	if trialDays > 0 {
		p.SubscriptionData.TrialPeriodDays = stripe.Int64(trialDays)
	}
	if fee != "" {
		p.LineItems = append(p.LineItems, &stripe.CheckoutSessionLineItemParams{Price: stripe.String(fee), Quantity: stripe.Int64(1)})
	}
	return p
}

func (f *fixture) checkout(t *testing.T, p *stripe.CheckoutSessionParams) *stripe.CheckoutSession {
	t.Helper()
	cs, err := f.sc.CheckoutSessions.New(p)
	if err != nil {
		t.Fatalf("CheckoutSessions.New: %v", err)
	}
	return cs
}

func (f *fixture) postForm(t *testing.T, rawURL string, form url.Values) (*http.Response, string) {
	t.Helper()
	res, err := f.web.PostForm(rawURL, form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func (f *fixture) getPage(t *testing.T, rawURL string) (*http.Response, string) {
	t.Helper()
	res, err := f.web.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// pay submits the hosted Checkout page with the default test card and
// returns the redirect target.
func (f *fixture) pay(t *testing.T, cs *stripe.CheckoutSession) string {
	t.Helper()
	res, body := f.postForm(t, cs.URL, url.Values{"card_number": {"4242 4242 4242 4242"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay %s: status %d, want 303\n%s", cs.ID, res.StatusCode, body)
	}
	return res.Header.Get("Location")
}

// subscribe creates a session for price and pays it.
func (f *fixture) subscribe(t *testing.T, customer, price string, trialDays int64) *stripe.Subscription {
	t.Helper()
	cs := f.checkout(t, checkoutParams(customer, price, trialDays, ""))
	f.pay(t, cs)
	p := &stripe.CheckoutSessionParams{}
	p.AddExpand("subscription")
	got, err := f.sc.CheckoutSessions.Get(cs.ID, p)
	if err != nil {
		t.Fatalf("CheckoutSessions.Get: %v", err)
	}
	return got.Subscription
}

func (f *fixture) sub(t *testing.T, id string) *stripe.Subscription {
	t.Helper()
	s, err := f.sc.Subscriptions.Get(id, nil)
	if err != nil {
		t.Fatalf("Subscriptions.Get(%s): %v", id, err)
	}
	return s
}

func (f *fixture) portal(t *testing.T, customer string) *stripe.BillingPortalSession {
	t.Helper()
	ps, err := f.sc.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{
		Customer: stripe.String(customer), ReturnURL: stripe.String("https://app.example.test/.tollgate/account"),
	})
	if err != nil {
		t.Fatalf("BillingPortalSessions.New: %v", err)
	}
	return ps
}

func (f *fixture) portalAction(t *testing.T, ps *stripe.BillingPortalSession, form url.Values) {
	t.Helper()
	res, body := f.postForm(t, ps.URL, form)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("portal %v: status %d, want 303\n%s", form, res.StatusCode, body)
	}
	if loc := res.Header.Get("Location"); !strings.HasPrefix(loc, "/portal/"+ps.ID+"?done=") {
		t.Fatalf("portal %v: Location %q, want back to the portal", form, loc)
	}
}

func asStripeError(t *testing.T, err error) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want *stripe.Error", err, err)
	}
	return se
}

func TestCustomers(t *testing.T) {
	f := newSBFixture(t, Options{})

	newParams := func(email string) *stripe.CustomerParams {
		p := &stripe.CustomerParams{Email: stripe.String(email)}
		p.AddMetadata("clerk_user_id", "user_ada")
		p.SetIdempotencyKey("cus-create-user_ada")
		return p
	}
	c1, err := f.sc.Customers.New(newParams("ada@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := f.sc.Customers.New(newParams("ada@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if c1.ID != c2.ID || !strings.HasPrefix(c1.ID, "cus_") {
		t.Fatalf("idempotent create gave %q then %q, want the same cus_ ID", c1.ID, c2.ID)
	}
	_, err = f.sc.Customers.New(newParams("other@example.com"))
	if se := asStripeError(t, err); se.Type != stripe.ErrorTypeIdempotency || se.HTTPStatusCode != 400 {
		t.Errorf("same key, other params: %+v, want a 400 idempotency_error", se)
	}

	got, err := f.sc.Customers.Get(c1.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"clerk_user_id": "user_ada"}, got.Metadata); diff != "" || got.Email != "ada@example.com" {
		t.Errorf("Get: email %q, metadata (-want +got):\n%s", got.Email, diff)
	}
	grace := f.customer(t, "grace@example.com", "user_grace")

	// List, newest first, with an email filter.
	var ids []string
	it := f.sc.Customers.List(&stripe.CustomerListParams{})
	for it.Next() {
		ids = append(ids, it.Customer().ID)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{grace.ID, c1.ID}, ids); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	it = f.sc.Customers.List(&stripe.CustomerListParams{Email: stripe.String("grace@example.com")})
	ids = nil
	for it.Next() {
		ids = append(ids, it.Customer().ID)
	}
	if diff := cmp.Diff([]string{grace.ID}, ids); diff != "" {
		t.Errorf("List(email) (-want +got):\n%s", diff)
	}

	// Search by metadata, as the gateway adopts customers.
	sp := &stripe.CustomerSearchParams{}
	sp.Query = "metadata['clerk_user_id']:'user_grace'"
	sit := f.sc.Customers.Search(sp)
	ids = nil
	for sit.Next() {
		ids = append(ids, sit.Customer().ID)
	}
	if err := sit.Err(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{grace.ID}, ids); diff != "" {
		t.Errorf("Search (-want +got):\n%s", diff)
	}

	// Update merges metadata; an empty value deletes a key.
	up := &stripe.CustomerParams{}
	up.AddMetadata("plan", "pro")
	up.AddMetadata("clerk_user_id", "")
	got, err = f.sc.Customers.Update(grace.ID, up)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"plan": "pro"}, got.Metadata); diff != "" {
		t.Errorf("Update metadata (-want +got):\n%s", diff)
	}

	// Unknown IDs: 404 resource_missing.
	_, err = f.sc.Customers.Get("cus_nope", nil)
	if se := asStripeError(t, err); se.HTTPStatusCode != 404 || se.Code != stripe.ErrorCodeResourceMissing ||
		se.Type != stripe.ErrorTypeInvalidRequest || se.Msg != "No such customer: 'cus_nope'" {
		t.Errorf("Get(unknown): %+v", se)
	}

	// Delete: a stub afterwards, subscriptions canceled, no new sessions.
	sub := f.subscribe(t, c1.ID, "price_demo_pro_monthly", 0)
	del, err := f.sc.Customers.Del(c1.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !del.Deleted || del.ID != c1.ID {
		t.Errorf("Del: %+v", del)
	}
	got, err = f.sc.Customers.Get(c1.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Deleted || got.Email != "" {
		t.Errorf("Get(deleted): %+v, want a deleted stub", got)
	}
	if s := f.sub(t, sub.ID); s.Status != stripe.SubscriptionStatusCanceled || s.EndedAt == 0 {
		t.Errorf("subscription of a deleted customer: status %s ended_at %d", s.Status, s.EndedAt)
	}
	_, err = f.sc.CheckoutSessions.New(checkoutParams(c1.ID, "price_demo_pro_monthly", 0, ""))
	if se := asStripeError(t, err); se.HTTPStatusCode != 400 || se.Code != stripe.ErrorCodeResourceMissing || se.Param != "customer" {
		t.Errorf("checkout for a deleted customer: %+v", se)
	}
	_, err = f.sc.Customers.Del(c1.ID, nil)
	if se := asStripeError(t, err); se.HTTPStatusCode != 404 {
		t.Errorf("second Del: %+v", se)
	}

	f.wait(t)
	if diff := cmp.Diff([]string{
		"customer.created", "customer.created", "customer.updated",
		"checkout.session.completed", "customer.subscription.created", "invoice.paid",
		"customer.subscription.deleted", "customer.deleted",
	}, f.hook.types()); diff != "" {
		t.Errorf("webhooks (-want +got):\n%s", diff)
	}

	// The key is checked.
	bad := client.New("sk_test_wrong", stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String(f.srv.URL), HTTPClient: f.srv.Client(), MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	}))
	_, err = bad.Customers.Get(grace.ID, nil)
	if se := asStripeError(t, err); se.HTTPStatusCode != 401 {
		t.Errorf("wrong key: %+v", se)
	}
}

func TestCheckoutTrialFeeAndCancel(t *testing.T) {
	f := newSBFixture(t, Options{})
	cus := f.customer(t, "ada@example.com", "user_ada")
	cs := f.checkout(t, checkoutParams(cus.ID, "price_demo_pro_monthly", 7, "price_demo_trial_fee"))

	if !strings.HasPrefix(cs.ID, "cs_test_") || cs.URL != f.srv.URL+"/checkout/pay/"+cs.ID ||
		cs.Status != stripe.CheckoutSessionStatusOpen || cs.PaymentStatus != stripe.CheckoutSessionPaymentStatusUnpaid ||
		cs.Mode != stripe.CheckoutSessionModeSubscription || cs.Customer.ID != cus.ID ||
		cs.ClientReferenceID != "user_ada" || cs.Subscription != nil || cs.AmountTotal != 100 ||
		cs.Metadata["return_to"] != "/routes/415VNA/" || cs.ExpiresAt <= cs.Created {
		t.Fatalf("new session: %+v", cs)
	}

	// The hosted page.
	res, page := f.getPage(t, cs.URL)
	if res.StatusCode != 200 {
		t.Fatalf("checkout page: %d", res.StatusCode)
	}
	for _, want := range []string{
		"tollgate sandbox — stands in for Stripe",
		"7-day trial, then $12.00/month; $1.00 charged today",
		`<label for="card">Card number</label>`, `value="4242 4242 4242 4242"`,
		">Start trial</button>", `href="https://app.example.test/.tollgate/upgrade"`,
		"<caption>Order summary</caption>", "Trial fee",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("checkout page lacks %q", want)
		}
	}

	// A declined card leaves the session open.
	res, page = f.postForm(t, cs.URL, url.Values{"card_number": {"4000 0000 0000 0002"}})
	if res.StatusCode != http.StatusPaymentRequired || !strings.Contains(page, `role="alert"`) {
		t.Errorf("declined card: %d", res.StatusCode)
	}

	loc := f.pay(t, cs)
	if want := "https://app.example.test/.tollgate/checkout/done?session_id=" + cs.ID; loc != want {
		t.Errorf("redirect to %q, want %q", loc, want)
	}
	if res, _ := f.postForm(t, cs.URL, url.Values{"card_number": {"4242424242424242"}}); res.StatusCode != http.StatusConflict {
		t.Errorf("paying twice: %d, want 409", res.StatusCode)
	}

	gp := &stripe.CheckoutSessionParams{}
	gp.AddExpand("subscription")
	done, err := f.sc.CheckoutSessions.Get(cs.ID, gp)
	if err != nil {
		t.Fatal(err)
	}
	sub := done.Subscription
	if done.Status != stripe.CheckoutSessionStatusComplete || done.PaymentStatus != stripe.CheckoutSessionPaymentStatusPaid ||
		sub == nil || sub.Status != stripe.SubscriptionStatusTrialing || done.URL != "" {
		t.Fatalf("paid session: %+v, subscription %+v", done, sub)
	}
	if sub.Customer.ID != cus.ID || sub.TrialEnd-sub.TrialStart != 7*86400 || sub.CurrentPeriodEnd != sub.TrialEnd ||
		sub.CurrentPeriodStart != sub.TrialStart || sub.Metadata["clerk_user_id"] != "user_ada" || sub.LatestInvoice == nil {
		t.Errorf("subscription: %+v", sub)
	}
	if len(sub.Items.Data) != 1 || sub.Items.Data[0].Price.ID != "price_demo_pro_monthly" ||
		sub.Items.Data[0].Price.Product.ID != "prod_pro" || sub.Items.Data[0].Price.Recurring.Interval != "month" ||
		sub.Items.Data[0].Price.UnitAmount != 1200 || sub.Items.Data[0].Quantity != 1 {
		t.Errorf("items (the fee must not be one): %+v", sub.Items.Data)
	}
	inv, err := f.sc.Invoices.Get(sub.LatestInvoice.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !inv.Paid || inv.AmountPaid != 100 || inv.Subscription.ID != sub.ID || len(inv.Lines.Data) != 2 {
		t.Errorf("first invoice: paid %v amount %d lines %d", inv.Paid, inv.AmountPaid, len(inv.Lines.Data))
	}
	// Without expand, the subscription is an ID.
	plain, err := f.sc.CheckoutSessions.Get(cs.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Subscription == nil || plain.Subscription.ID != sub.ID || plain.Subscription.Status != "" {
		t.Errorf("unexpanded subscription: %+v", plain.Subscription)
	}

	// Portal: cancel at period end.
	ps := f.portal(t, cus.ID)
	if !strings.HasPrefix(ps.ID, "bps_") || ps.URL != f.srv.URL+"/portal/"+ps.ID || ps.Customer != cus.ID {
		t.Fatalf("portal session: %+v", ps)
	}
	res, page = f.getPage(t, ps.URL)
	for _, want := range []string{
		"tollgate sandbox — stands in for Stripe", "Pro", "Trial ends on", ">Cancel at period end</button>",
		">Cancel now</button>", ">Update payment method</button>", "Advance the clock by:", ">1 month</button>",
		`href="https://app.example.test/.tollgate/account">Return to the site</a>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("portal page (%d) lacks %q", res.StatusCode, want)
		}
	}
	f.portalAction(t, ps, url.Values{"action": {"cancel_at_period_end"}, "subscription": {sub.ID}})
	got := f.sub(t, sub.ID)
	if !got.CancelAtPeriodEnd || got.Status != stripe.SubscriptionStatusTrialing || got.CanceledAt == 0 || got.CancelAt != got.TrialEnd {
		t.Errorf("after cancel at period end: %+v", got)
	}
	if _, page = f.getPage(t, ps.URL+"?done=cancel_at_period_end"); !strings.Contains(page, ">Resume</button>") ||
		!strings.Contains(page, "will be cancelled at the end") {
		t.Errorf("portal page after cancelling lacks Resume and the notice")
	}

	// The trial ends: canceled.
	f.s.Advance(8 * 24 * time.Hour)
	got = f.sub(t, sub.ID)
	if got.Status != stripe.SubscriptionStatusCanceled || got.EndedAt != sub.TrialEnd {
		t.Errorf("after the trial: status %s ended_at %d, want canceled at %d", got.Status, got.EndedAt, sub.TrialEnd)
	}
	// The default list leaves canceled subscriptions out; status=all has them.
	lp := &stripe.SubscriptionListParams{Customer: stripe.String(cus.ID)}
	if it := f.sc.Subscriptions.List(lp); it.Next() {
		t.Errorf("default list has %s (%s)", it.Subscription().ID, it.Subscription().Status)
	}
	lp.Status = stripe.String("all")
	if it := f.sc.Subscriptions.List(lp); !it.Next() || it.Subscription().ID != sub.ID {
		t.Errorf("status=all lacks the canceled subscription (err %v)", it.Err())
	}

	f.wait(t)
	if diff := cmp.Diff([]string{
		"customer.created", "checkout.session.completed", "customer.subscription.created", "invoice.paid",
		"customer.subscription.updated", "customer.subscription.deleted",
	}, f.hook.types()); diff != "" {
		t.Errorf("webhooks (-want +got):\n%s", diff)
	}
}

func TestCheckoutValidation(t *testing.T) {
	f := newSBFixture(t, Options{Prices: append(DefaultPrices(),
		Price{ID: "price_pro_yearly", Product: "prod_pro", Nickname: "Pro", UnitAmount: 12000, Interval: "year"})})
	cus := f.customer(t, "ada@example.com", "user_ada")
	tests := []struct {
		name      string
		edit      func(p *stripe.CheckoutSessionParams)
		status    int
		code      string
		param     string
		errSubstr string
	}{
		{"unknown price", func(p *stripe.CheckoutSessionParams) { p.LineItems[0].Price = stripe.String("price_nope") },
			400, "resource_missing", "line_items[0][price]", "No such price: 'price_nope'"},
		{"one-time price only", func(p *stripe.CheckoutSessionParams) { p.LineItems[0].Price = stripe.String("price_demo_trial_fee") },
			400, "parameter_invalid", "line_items", "at least one recurring price"},
		{"no mode", func(p *stripe.CheckoutSessionParams) { p.Mode = nil }, 400, "parameter_missing", "mode", ""},
		{"no success_url", func(p *stripe.CheckoutSessionParams) { p.SuccessURL = nil }, 400, "parameter_missing", "success_url", ""},
		{"no line items", func(p *stripe.CheckoutSessionParams) { p.LineItems = nil }, 400, "parameter_missing", "line_items", ""},
		{"zero trial days", func(p *stripe.CheckoutSessionParams) { p.SubscriptionData.TrialPeriodDays = stripe.Int64(0) },
			400, "parameter_invalid", "subscription_data[trial_period_days]", ""},
		{"unknown customer", func(p *stripe.CheckoutSessionParams) { p.Customer = stripe.String("cus_nope") },
			400, "resource_missing", "customer", ""},
		{"mixed intervals", func(p *stripe.CheckoutSessionParams) {
			p.LineItems = append(p.LineItems, &stripe.CheckoutSessionLineItemParams{Price: stripe.String("price_pro_yearly")})
		}, 400, "parameter_invalid", "line_items[1][price]", "different billing intervals"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := checkoutParams(cus.ID, "price_demo_pro_monthly", 0, "")
			p.SubscriptionData.TrialPeriodDays = stripe.Int64(7)
			tt.edit(p)
			_, err := f.sc.CheckoutSessions.New(p)
			se := asStripeError(t, err)
			if se.HTTPStatusCode != tt.status || string(se.Code) != tt.code || se.Param != tt.param ||
				se.Type != stripe.ErrorTypeInvalidRequest || !strings.Contains(se.Msg, tt.errSubstr) {
				t.Errorf("got %d code=%q param=%q type=%q msg=%q", se.HTTPStatusCode, se.Code, se.Param, se.Type, se.Msg)
			}
		})
	}

	// A price whose Product is an ID shares that product.
	yearly, err := f.sc.Prices.Get("price_pro_yearly", nil)
	if err != nil || yearly.Product.ID != "prod_pro" || yearly.Currency != "usd" || yearly.Recurring.Interval != "year" {
		t.Errorf("yearly price: %v %+v", err, yearly)
	}

	// Unknown objects in the URL are 404s; unknown routes too.
	_, err = f.sc.CheckoutSessions.Get("cs_test_nope", nil)
	if se := asStripeError(t, err); se.HTTPStatusCode != 404 || se.Code != stripe.ErrorCodeResourceMissing {
		t.Errorf("unknown session: %+v", se)
	}
	_, err = f.sc.Subscriptions.Get("sub_nope", nil)
	if se := asStripeError(t, err); se.HTTPStatusCode != 404 || se.Code != stripe.ErrorCodeResourceMissing {
		t.Errorf("unknown subscription: %+v", se)
	}
	_, err = f.sc.Coupons.Get("co_1", nil)
	if se := asStripeError(t, err); se.HTTPStatusCode != 404 || !strings.Contains(se.Msg, "Unrecognized request URL") {
		t.Errorf("unknown route: %+v", se)
	}
	// Every request is counted by its route pattern, answered or not.
	calls := f.s.APICalls()
	if calls["GET /v1/checkout/sessions/{id}"] != 1 || calls["GET /v1/subscriptions/{id}"] != 1 || calls["/v1/"] != 1 {
		t.Errorf("API calls by route: %v", calls)
	}

	// A session expires after 24 hours and can no longer be paid.
	cs := f.checkout(t, checkoutParams(cus.ID, "price_demo_pro_monthly", 0, ""))
	f.s.Advance(25 * time.Hour)
	if res, _ := f.postForm(t, cs.URL, url.Values{"card_number": {"4242424242424242"}}); res.StatusCode != http.StatusGone {
		t.Errorf("paying an expired session: %d, want 410", res.StatusCode)
	}
	got, err := f.sc.CheckoutSessions.Get(cs.ID, nil)
	if err != nil || got.Status != stripe.CheckoutSessionStatusExpired {
		t.Errorf("expired session: %v %+v", err, got)
	}
	if res, _ := f.getPage(t, f.srv.URL+"/checkout/pay/cs_test_nope"); res.StatusCode != 404 {
		t.Errorf("unknown checkout page: %d", res.StatusCode)
	}

	// Hosted-page POSTs refuse cross-origin browser requests.
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/checkout/pay/"+cs.ID, strings.NewReader("card_number=4242424242424242"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := f.web.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", res.StatusCode)
	}
}

func TestSubscriptionLists(t *testing.T) {
	f := newSBFixture(t, Options{})
	ada := f.customer(t, "ada@example.com", "user_ada")
	grace := f.customer(t, "grace@example.com", "user_grace")
	a1 := f.subscribe(t, ada.ID, "price_demo_pro_monthly", 0)
	g1 := f.subscribe(t, grace.ID, "price_demo_team_monthly", 0)
	a2 := f.subscribe(t, ada.ID, "price_demo_team_monthly", 7)
	a3 := f.subscribe(t, ada.ID, "price_demo_pro_monthly", 0)
	if _, err := f.sc.Subscriptions.Cancel(a3.ID, nil); err != nil {
		t.Fatal(err)
	}

	list := func(p *stripe.SubscriptionListParams) []string {
		t.Helper()
		var ids []string
		it := f.sc.Subscriptions.List(p)
		for it.Next() {
			ids = append(ids, it.Subscription().ID)
		}
		if err := it.Err(); err != nil {
			t.Fatalf("List: %v", err)
		}
		return ids
	}
	before := f.hitCount("GET /v1/subscriptions")
	p := &stripe.SubscriptionListParams{Customer: stripe.String(ada.ID), Status: stripe.String("all")}
	p.Limit = stripe.Int64(1)
	p.AddExpand("data.items.data.price.product")
	if diff := cmp.Diff([]string{a3.ID, a2.ID, a1.ID}, list(p)); diff != "" {
		t.Errorf("status=all, limit 1 (-want +got):\n%s", diff)
	}
	if n := f.hitCount("GET /v1/subscriptions") - before; n != 3 {
		t.Errorf("paging with limit 1 took %d requests, want 3 (has_more must be false on the last page)", n)
	}
	if diff := cmp.Diff([]string{a2.ID, a1.ID}, list(&stripe.SubscriptionListParams{Customer: stripe.String(ada.ID)})); diff != "" {
		t.Errorf("default (not canceled) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{a2.ID}, list(&stripe.SubscriptionListParams{Customer: stripe.String(ada.ID), Status: stripe.String("trialing")})); diff != "" {
		t.Errorf("status=trialing (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{a3.ID}, list(&stripe.SubscriptionListParams{Status: stripe.String("canceled")})); diff != "" {
		t.Errorf("status=canceled (-want +got):\n%s", diff)
	}
	all := &stripe.SubscriptionListParams{Status: stripe.String("all")}
	all.Limit = stripe.Int64(2)
	if diff := cmp.Diff([]string{a3.ID, a2.ID, g1.ID, a1.ID}, list(all)); diff != "" {
		t.Errorf("account-wide, newest first (-want +got):\n%s", diff)
	}

	// Expanded products come back as objects.
	ep := &stripe.SubscriptionListParams{Customer: stripe.String(grace.ID)}
	ep.AddExpand("data.items.data.price.product")
	it := f.sc.Subscriptions.List(ep)
	if !it.Next() || it.Subscription().Items.Data[0].Price.Product.Name != "Team" {
		t.Errorf("expanded product: %v", it.Err())
	}

	// The account-wide sweep expands customers; a deleted one is a stub.
	if _, err := f.sc.Customers.Del(grace.ID, nil); err != nil {
		t.Fatal(err)
	}
	sw := &stripe.SubscriptionListParams{Status: stripe.String("all")}
	sw.AddExpand("data.customer")
	customers := map[string]stripe.Customer{}
	for it := f.sc.Subscriptions.List(sw); it.Next(); {
		c := it.Subscription().Customer
		customers[c.ID] = stripe.Customer{ID: c.ID, Email: c.Email, Deleted: c.Deleted, Metadata: c.Metadata}
	}
	wantCustomers := map[string]stripe.Customer{
		ada.ID:   {ID: ada.ID, Email: "ada@example.com", Metadata: map[string]string{"clerk_user_id": "user_ada"}},
		grace.ID: {ID: grace.ID, Deleted: true},
	}
	if diff := cmp.Diff(wantCustomers, customers); diff != "" {
		t.Errorf("expanded customers (-want +got):\n%s", diff)
	}

	// Cursors: an unknown one is an error; ending_before pages backwards.
	bad := &stripe.SubscriptionListParams{}
	bad.StartingAfter = stripe.String("sub_nope")
	it = f.sc.Subscriptions.List(bad)
	if it.Next() {
		t.Error("starting_after an unknown subscription listed something")
	}
	if se := asStripeError(t, it.Err()); se.Code != stripe.ErrorCodeResourceMissing || se.Param != "starting_after" {
		t.Errorf("unknown cursor: %+v", se)
	}
	var page struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
		HasMore bool `json:"has_more"`
	}
	q := url.Values{"status": {"all"}, "ending_before": {g1.ID}, "limit": {"1"}}
	f.rawGet(t, "/v1/subscriptions?"+q.Encode(), &page)
	if len(page.Data) != 1 || page.Data[0].ID != a2.ID || !page.HasMore {
		t.Errorf("ending_before: %+v, want [%s] with has_more", page, a2.ID)
	}
}

func (f *fixture) rawGet(t *testing.T, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+f.s.SecretKey())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestRenewalsAndFailures(t *testing.T) {
	f := newSBFixture(t, Options{})
	cus := f.customer(t, "ada@example.com", "user_ada")
	sub := f.subscribe(t, cus.ID, "price_demo_pro_monthly", 0)
	if sub.Status != stripe.SubscriptionStatusActive || sub.TrialEnd != 0 {
		t.Fatalf("new subscription: %s trial_end %d", sub.Status, sub.TrialEnd)
	}
	start := time.Unix(sub.CurrentPeriodStart, 0)
	if want := addInterval(start, "month", 1).Unix(); sub.CurrentPeriodEnd != want {
		t.Errorf("period end %d, want %d", sub.CurrentPeriodEnd, want)
	}
	untilEnd := func(s *stripe.Subscription) time.Duration {
		return time.Unix(s.CurrentPeriodEnd, 0).Sub(f.s.BillingNow()) + time.Minute
	}

	// A renewal starts the next period and pays it.
	f.s.Advance(untilEnd(sub))
	got := f.sub(t, sub.ID)
	if got.Status != stripe.SubscriptionStatusActive || got.CurrentPeriodStart != sub.CurrentPeriodEnd ||
		got.LatestInvoice.ID == sub.LatestInvoice.ID {
		t.Fatalf("after renewal: %s period %d-%d", got.Status, got.CurrentPeriodStart, got.CurrentPeriodEnd)
	}
	inv, err := f.sc.Invoices.Get(got.LatestInvoice.ID, nil)
	if err != nil || !inv.Paid || inv.AmountPaid != 1200 || inv.BillingReason != stripe.InvoiceBillingReasonSubscriptionCycle {
		t.Fatalf("renewal invoice: %v %+v", err, inv)
	}

	// Failing payments: past_due, retried after 1, 3 and 7 days, then unpaid.
	f.s.FailNextPayments(cus.ID, true)
	f.s.Advance(untilEnd(got))
	due := f.sub(t, sub.ID)
	if due.Status != stripe.SubscriptionStatusPastDue || due.CurrentPeriodStart != got.CurrentPeriodEnd {
		t.Fatalf("after a failed renewal: %s", due.Status)
	}
	inv, _ = f.sc.Invoices.Get(due.LatestInvoice.ID, nil)
	if inv.Paid || inv.Status != stripe.InvoiceStatusOpen || inv.AttemptCount != 1 || inv.NextPaymentAttempt == 0 {
		t.Errorf("failed invoice: paid %v status %s attempts %d next %d", inv.Paid, inv.Status, inv.AttemptCount, inv.NextPaymentAttempt)
	}
	if c, _ := f.sc.Customers.Get(cus.ID, nil); !c.Delinquent {
		t.Error("a past_due customer is not delinquent")
	}
	f.s.Advance(8 * 24 * time.Hour)
	if s := f.sub(t, sub.ID); s.Status != stripe.SubscriptionStatusUnpaid {
		t.Fatalf("after three failed retries: %s, want unpaid", s.Status)
	}
	inv, _ = f.sc.Invoices.Get(due.LatestInvoice.ID, nil)
	if inv.AttemptCount != 4 || inv.NextPaymentAttempt != 0 {
		t.Errorf("exhausted invoice: attempts %d next %d", inv.AttemptCount, inv.NextPaymentAttempt)
	}

	// Updating the payment method in the portal pays it: active again.
	ps := f.portal(t, cus.ID)
	if _, page := f.getPage(t, ps.URL); !strings.Contains(page, "Unpaid") {
		t.Error("portal page does not show the unpaid status")
	}
	f.portalAction(t, ps, url.Values{"action": {"update_payment"}})
	back := f.sub(t, sub.ID)
	if back.Status != stripe.SubscriptionStatusActive {
		t.Fatalf("after updating the payment method: %s", back.Status)
	}
	if inv, _ = f.sc.Invoices.Get(due.LatestInvoice.ID, nil); !inv.Paid {
		t.Error("the open invoice was not paid")
	}

	// A retry that succeeds recovers on its own.
	f.s.FailNextPayments(cus.ID, true)
	f.s.Advance(untilEnd(back))
	if s := f.sub(t, sub.ID); s.Status != stripe.SubscriptionStatusPastDue {
		t.Fatalf("second failure: %s", s.Status)
	}
	f.s.FailNextPayments(cus.ID, false)
	f.s.Advance(25 * time.Hour)
	if s := f.sub(t, sub.ID); s.Status != stripe.SubscriptionStatusActive {
		t.Fatalf("after a successful retry: %s", s.Status)
	}

	// A trial ending with failing payments goes past_due; with good ones, active.
	trial := f.subscribe(t, cus.ID, "price_demo_team_monthly", 7)
	bob := f.customer(t, "bob@example.com", "user_bob")
	trial2 := f.subscribe(t, bob.ID, "price_demo_team_monthly", 7)
	f.s.FailNextPayments(cus.ID, true)
	f.s.Advance(7*24*time.Hour + time.Minute)
	if s := f.sub(t, trial.ID); s.Status != stripe.SubscriptionStatusPastDue || s.CurrentPeriodStart != trial.TrialEnd {
		t.Errorf("failed trial end: %s", s.Status)
	}
	if s := f.sub(t, trial2.ID); s.Status != stripe.SubscriptionStatusActive || s.CurrentPeriodStart != trial2.TrialEnd {
		t.Errorf("trial end: %s period start %d, want active from %d", s.Status, s.CurrentPeriodStart, trial2.TrialEnd)
	}

	// Renewals that were due while nobody looked all happen, in order.
	f.s.FailNextPayments(cus.ID, false)
	before := f.sub(t, trial2.ID)
	f.s.Advance(3 * 31 * 24 * time.Hour)
	after := f.sub(t, trial2.ID)
	if want := addInterval(time.Unix(trial2.TrialEnd, 0), "month", 3).Unix(); after.CurrentPeriodStart != want || after.Status != "active" {
		t.Errorf("three renewals: period start %d (was %d), want %d", after.CurrentPeriodStart, before.CurrentPeriodStart, want)
	}
	f.wait(t)
	_, problems := f.hook.snapshot()
	if len(problems) > 0 {
		t.Errorf("webhook problems: %v", problems)
	}
}

func TestAddInterval(t *testing.T) {
	jan31 := time.Date(2027, 1, 31, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		interval string
		n        int
		want     time.Time
	}{
		{"month", 1, time.Date(2027, 2, 28, 10, 0, 0, 0, time.UTC)},
		{"month", 2, time.Date(2027, 3, 31, 10, 0, 0, 0, time.UTC)},
		{"month", 13, time.Date(2028, 2, 29, 10, 0, 0, 0, time.UTC)},
		{"year", 1, time.Date(2028, 1, 31, 10, 0, 0, 0, time.UTC)},
		{"week", 1, time.Date(2027, 2, 7, 10, 0, 0, 0, time.UTC)},
		{"day", 1, time.Date(2027, 2, 1, 10, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		if got := addInterval(jan31, tt.interval, tt.n); !got.Equal(tt.want) {
			t.Errorf("%d %s after %v = %v, want %v", tt.n, tt.interval, jan31, got, tt.want)
		}
	}
}

func TestWebhooks(t *testing.T) {
	f := newSBFixture(t, Options{})
	cus := f.customer(t, "ada@example.com", "user_ada")
	cs := f.checkout(t, checkoutParams(cus.ID, "price_demo_pro_monthly", 7, "price_demo_trial_fee"))
	f.pay(t, cs)
	f.wait(t)

	evs, problems := f.hook.snapshot()
	if len(problems) > 0 {
		t.Fatalf("webhook problems: %v", problems)
	}
	if diff := cmp.Diff([]string{"customer.created", "checkout.session.completed", "customer.subscription.created", "invoice.paid"},
		f.hook.types()); diff != "" {
		t.Fatalf("webhooks (-want +got):\n%s", diff)
	}
	// Every payload is real-shaped and decodes into stripe-go's types.
	for _, ev := range evs {
		if ev.APIVersion != stripe.APIVersion || ev.Object != "event" || ev.Livemode || ev.PendingWebhooks != 1 ||
			!strings.HasPrefix(ev.ID, "evt_") || time.Since(time.Unix(ev.Created, 0)).Abs() > time.Minute {
			t.Errorf("event %s: %+v", ev.Type, ev)
		}
	}
	var done stripe.CheckoutSession
	if err := json.Unmarshal(evs[1].Data.Raw, &done); err != nil || done.ID != cs.ID || done.Status != "complete" ||
		done.Customer.ID != cus.ID || done.ClientReferenceID != "user_ada" || done.Subscription == nil {
		t.Errorf("checkout.session.completed object: %v %+v", err, done)
	}
	var sub stripe.Subscription
	if err := json.Unmarshal(evs[2].Data.Raw, &sub); err != nil || sub.ID != done.Subscription.ID ||
		sub.Status != "trialing" || sub.Customer.ID != cus.ID || sub.Items.Data[0].Price.ID != "price_demo_pro_monthly" {
		t.Errorf("customer.subscription.created object: %v %+v", err, sub)
	}
	var inv stripe.Invoice
	if err := json.Unmarshal(evs[3].Data.Raw, &inv); err != nil || inv.Customer.ID != cus.ID || inv.Subscription.ID != sub.ID || !inv.Paid {
		t.Errorf("invoice.paid object: %v %+v", err, inv)
	}
	if got := evs[2].GetObjectValue("customer"); got != cus.ID {
		t.Errorf("GetObjectValue(customer) = %q, want %q", got, cus.ID)
	}

	// A month of billing time later (the trial ends), events are still
	// signed with the wall clock, so ConstructEvent's 300 s tolerance passes.
	f.s.Advance(31 * 24 * time.Hour)
	f.wait(t)
	evs, problems = f.hook.snapshot()
	if len(problems) > 0 {
		t.Fatalf("webhook problems after Advance: %v", problems)
	}
	if diff := cmp.Diff([]string{"customer.subscription.updated", "invoice.paid"}, f.hook.types()[4:]); diff != "" {
		t.Errorf("after a month (-want +got):\n%s", diff)
	}
	var upd stripe.Subscription
	if err := json.Unmarshal(evs[4].Data.Raw, &upd); err != nil || upd.Status != "active" ||
		evs[4].Data.PreviousAttributes["status"] != "trialing" {
		t.Errorf("trial end update: %v status %s previous %v", err, upd.Status, evs[4].Data.PreviousAttributes)
	}
	for _, d := range f.s.Deliveries() {
		if d.Status != 200 || d.Attempts != 1 {
			t.Errorf("delivery %+v", d)
		}
	}

	// Forced statuses.
	f.s.SetSubscriptionStatus(sub.ID, "past_due")
	f.s.SetSubscriptionStatus(sub.ID, "canceled")
	f.wait(t)
	evs, _ = f.hook.snapshot()
	last := evs[len(evs)-2:]
	if last[0].Type != "customer.subscription.updated" || last[0].Data.PreviousAttributes["status"] != "active" ||
		last[0].GetObjectValue("status") != "past_due" || last[1].Type != "customer.subscription.deleted" {
		t.Errorf("forced statuses: %s %v, %s", last[0].Type, last[0].Data.PreviousAttributes, last[1].Type)
	}
}

func TestWebhookRetries(t *testing.T) {
	f := newSBFixture(t, Options{})
	// The endpoint fails the first two attempts of every event, and every
	// attempt at customer.updated.
	f.hook.status = func(ev stripe.Event, attempt int) int {
		if ev.Type == "customer.updated" || attempt <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	cus := f.customer(t, "ada@example.com", "user_ada")
	up := &stripe.CustomerParams{}
	up.AddMetadata("plan", "pro")
	if _, err := f.sc.Customers.Update(cus.ID, up); err != nil {
		t.Fatal(err)
	}
	cus2 := f.customer(t, "grace@example.com", "user_grace")
	f.wait(t)

	if diff := cmp.Diff([]string{"customer.created", "customer.created"}, f.hook.types()); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	evs, _ := f.hook.snapshot()
	if len(evs) == 2 && (evs[0].GetObjectValue("id") != cus.ID || evs[1].GetObjectValue("id") != cus2.ID) {
		t.Error("events arrived out of order")
	}
	var got []Delivery
	for _, d := range f.s.Deliveries() {
		d.EventID = ""
		got = append(got, d)
	}
	want := []Delivery{
		{Type: "customer.created", Status: 200, Attempts: 3},
		{Type: "customer.updated", Status: 503, Attempts: deliverLimit},
		{Type: "customer.created", Status: 200, Attempts: 3},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Deliveries (-want +got):\n%s", diff)
	}

	// The failed event is what catching up after downtime finds.
	lp := &stripe.EventListParams{DeliverySuccess: stripe.Bool(false)}
	it := f.sc.Events.List(lp)
	var failed []string
	for it.Next() {
		failed = append(failed, string(it.Event().Type))
		if it.Event().PendingWebhooks != 1 {
			t.Errorf("failed event has pending_webhooks %d", it.Event().PendingWebhooks)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"customer.updated"}, failed); diff != "" {
		t.Errorf("delivery_success=false (-want +got):\n%s", diff)
	}
}

func TestEventsList(t *testing.T) {
	f := newSBFixture(t, Options{})
	cus := f.customer(t, "ada@example.com", "user_ada")
	sub := f.subscribe(t, cus.ID, "price_demo_pro_monthly", 0)
	f.wait(t)

	types := func(p *stripe.EventListParams) []string {
		t.Helper()
		var out []string
		it := f.sc.Events.List(p)
		for it.Next() {
			out = append(out, string(it.Event().Type))
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	p := &stripe.EventListParams{}
	p.Limit = stripe.Int64(2)
	if diff := cmp.Diff([]string{"invoice.paid", "customer.subscription.created", "checkout.session.completed", "customer.created"},
		types(p)); diff != "" {
		t.Errorf("all, newest first (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"customer.subscription.created"}, types(&stripe.EventListParams{Type: stripe.String("customer.subscription.*")})); diff != "" {
		t.Errorf("type wildcard (-want +got):\n%s", diff)
	}
	p = &stripe.EventListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: time.Now().Add(time.Hour).Unix()}}
	if got := types(p); len(got) != 0 {
		t.Errorf("created[gte] in the future: %v", got)
	}
	if got := types(&stripe.EventListParams{DeliverySuccess: stripe.Bool(true)}); len(got) != 4 {
		t.Errorf("delivery_success=true: %v", got)
	}
	ev, err := f.sc.Events.Get(f.s.Deliveries()[2].EventID, nil)
	if err != nil || ev.Type != "customer.subscription.created" || ev.GetObjectValue("id") != sub.ID || ev.PendingWebhooks != 0 {
		t.Errorf("Events.Get: %v %+v", err, ev)
	}
}

func TestPricesAndPortal(t *testing.T) {
	f := newSBFixture(t, Options{})
	var ids []string
	it := f.sc.Prices.List(&stripe.PriceListParams{Active: stripe.Bool(true)})
	for it.Next() {
		ids = append(ids, it.Price().ID)
	}
	if diff := cmp.Diff([]string{"price_demo_pro_monthly", "price_demo_pro_yearly", "price_demo_team_monthly", "price_demo_api_monthly", "price_demo_trial_fee"}, ids); diff != "" {
		t.Errorf("prices (-want +got):\n%s", diff)
	}
	fee, err := f.sc.Prices.Get("price_demo_trial_fee", nil)
	if err != nil || fee.Type != stripe.PriceTypeOneTime || fee.Recurring != nil || fee.UnitAmount != 100 || fee.Product.ID != "prod_trial_fee" {
		t.Errorf("fee price: %v %+v", err, fee)
	}
	pro, err := f.sc.Prices.Get("price_demo_pro_monthly", nil)
	if err != nil || pro.Type != stripe.PriceTypeRecurring || pro.Recurring.Interval != stripe.PriceRecurringIntervalMonth ||
		pro.Currency != "usd" || pro.UnitAmountDecimal != 1200 || !pro.Active {
		t.Errorf("pro price: %v %+v", err, pro)
	}
	prod, err := f.sc.Products.Get("prod_team", nil)
	if err != nil || prod.Name != "Team" {
		t.Errorf("product: %v %+v", err, prod)
	}

	ada := f.customer(t, "ada@example.com", "user_ada")
	grace := f.customer(t, "grace@example.com", "user_grace")
	sub := f.subscribe(t, ada.ID, "price_demo_pro_monthly", 0)
	gsub := f.subscribe(t, grace.ID, "price_demo_pro_monthly", 0)
	ps := f.portal(t, ada.ID)

	// Another customer's subscription is out of reach.
	if res, _ := f.postForm(t, ps.URL, url.Values{"action": {"cancel_now"}, "subscription": {gsub.ID}}); res.StatusCode != 404 {
		t.Errorf("cancelling another customer's subscription: %d, want 404", res.StatusCode)
	}
	f.portalAction(t, ps, url.Values{"action": {"cancel_at_period_end"}, "subscription": {sub.ID}})
	f.portalAction(t, ps, url.Values{"action": {"resume"}, "subscription": {sub.ID}})
	if s := f.sub(t, sub.ID); s.CancelAtPeriodEnd || s.CanceledAt != 0 || s.Status != "active" {
		t.Errorf("after resume: %+v", s)
	}
	before := f.s.BillingNow()
	f.portalAction(t, ps, url.Values{"action": {"advance"}, "by": {"1d"}})
	if d := f.s.BillingNow().Sub(before); d < 24*time.Hour || d > 25*time.Hour {
		t.Errorf("advance 1d moved the clock by %v", d)
	}
	f.portalAction(t, ps, url.Values{"action": {"cancel_now"}, "subscription": {sub.ID}})
	if s := f.sub(t, sub.ID); s.Status != "canceled" || s.CancellationDetails.Reason != "cancellation_requested" {
		t.Errorf("after cancel now: %s", s.Status)
	}
	if s := f.sub(t, gsub.ID); s.Status != "active" {
		t.Errorf("grace's subscription: %s", s.Status)
	}
	f.wait(t)
	got := f.hook.types()
	if diff := cmp.Diff([]string{"customer.subscription.updated", "customer.subscription.updated", "customer.subscription.deleted"},
		got[len(got)-3:]); diff != "" {
		t.Errorf("portal webhooks (-want +got):\n%s", diff)
	}
	if res, _ := f.getPage(t, f.srv.URL+"/portal/bps_nope"); res.StatusCode != 404 {
		t.Errorf("unknown portal: %d", res.StatusCode)
	}
	_, err = f.sc.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{Customer: stripe.String("cus_nope")})
	if se := asStripeError(t, err); se.Code != stripe.ErrorCodeResourceMissing || se.Param != "customer" {
		t.Errorf("portal for an unknown customer: %+v", se)
	}
}

func TestNewRejectsBadPrices(t *testing.T) {
	tests := map[string][]Price{
		"empty ID":     {{ID: "", UnitAmount: 1, Interval: "month"}},
		"not a price":  {{ID: "pro", UnitAmount: 1, Interval: "month"}},
		"duplicate":    {{ID: "price_a", UnitAmount: 1, Interval: "month"}, {ID: "price_a", UnitAmount: 2, Interval: "month"}},
		"bad interval": {{ID: "price_a", UnitAmount: 1, Interval: "fortnight"}},
		"negative":     {{ID: "price_a", UnitAmount: -1, Interval: "month"}},
	}
	for name, prices := range tests {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%+v) did not panic", prices)
				}
			}()
			New(Options{Prices: prices})
		})
	}
}

// TestPageSizeAndHold: SetPageSize caps a list's page below its limit
// (has_more set, every object still listed by following it); HoldAPI
// keeps the requests it matches waiting until Release, and lets others by.
func TestPageSizeAndHold(t *testing.T) {
	f := newSBFixture(t, Options{})
	var want []string
	for _, email := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		c := f.customer(t, email, "")
		want = append([]string{f.subscribe(t, c.ID, "price_demo_pro_monthly", 0).ID}, want...) // newest first
	}
	f.s.SetPageSize(2)
	var pages [][]string
	after := ""
	for {
		p := &stripe.SubscriptionListParams{Status: stripe.String("all")}
		p.Limit, p.Single = stripe.Int64(100), true
		if after != "" {
			p.StartingAfter = stripe.String(after)
		}
		it := f.sc.Subscriptions.List(p)
		var page []string
		for it.Next() {
			page = append(page, it.Subscription().ID)
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		pages = append(pages, page)
		if !it.Meta().HasMore {
			break
		}
		after = page[len(page)-1]
	}
	if d := cmp.Diff([][]string{want[:2], want[2:]}, pages); d != "" {
		t.Errorf("pages of 2 (-want +got):\n%s", d)
	}

	h := f.s.HoldAPI("GET /v1/subscriptions", func(q url.Values) bool { return q.Get("starting_after") != "" })
	t.Cleanup(h.Release)
	// The first page is not held.
	if _, err := f.sc.Subscriptions.Get(want[0], nil); err != nil {
		t.Fatal(err)
	}
	p := &stripe.SubscriptionListParams{Status: stripe.String("all")}
	p.Single = true
	if it := f.sc.Subscriptions.List(p); !it.Next() {
		t.Fatalf("the first page: %v", it.Err())
	}
	select {
	case <-h.Reached():
		t.Fatal("a request the hold does not match was held")
	default:
	}
	done := make(chan error, 1)
	go func() {
		p := &stripe.SubscriptionListParams{Status: stripe.String("all")}
		p.Single, p.StartingAfter = true, stripe.String(want[1])
		it := f.sc.Subscriptions.List(p)
		for it.Next() {
		}
		done <- it.Err()
	}()
	<-h.Reached()
	select {
	case err := <-done:
		t.Fatalf("the held request answered before Release: %v", err)
	default:
	}
	h.Release()
	if err := <-done; err != nil {
		t.Errorf("the held request after Release: %v", err)
	}
}

// TestWebhookRetries_AsManyAsTheDelaysGiven: with more retry delays than
// deliverLimit allows attempts, an event is attempted once more than the
// delays: an endpoint down for 9 attempts gets the event on the 10th.
func TestWebhookRetries_AsManyAsTheDelaysGiven(t *testing.T) {
	f := newSBFixture(t, Options{})
	f.s.SetRetryDelays(slices.Repeat([]time.Duration{time.Millisecond}, 12)...)
	f.hook.status = func(_ stripe.Event, attempt int) int {
		if attempt <= 9 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	f.customer(t, "ada@example.com", "user_ada")
	f.wait(t)
	var got []Delivery
	for _, d := range f.s.Deliveries() {
		d.EventID = ""
		got = append(got, d)
	}
	if d := cmp.Diff([]Delivery{{Type: "customer.created", Status: 200, Attempts: 10}}, got); d != "" {
		t.Errorf("Deliveries (-want +got):\n%s", d)
	}
}

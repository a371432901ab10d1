package stripesandbox

import (
	"context"
	"crypto/rand"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Wire constants of the Stripe stand-in.
const (
	// DefaultSecretKey is the API key the sandbox accepts unless
	// Options.SecretKey says otherwise.
	DefaultSecretKey = "sk_test_sandbox"
	// DefaultLiveSecretKey is the live-mode API key the sandbox
	// accepts unless Options.LiveSecretKey says otherwise. Objects
	// made with it live in live mode: a test-mode key cannot see them, nor
	// it theirs (resource_missing, as at Stripe).
	DefaultLiveSecretKey = "sk_live_sandbox"
	// APIVersion is the version stripe-go v76 pins and sends in
	// every request's Stripe-Version header, and the account's default
	// API version unless Options.APIVersion says otherwise.
	APIVersion = "2023-10-16"
	// APIVersionLatest is the newest API version in Stripe's
	// changelog (docs.stripe.com/changelog) when this was written. Objects
	// rendered in it have the shapes of 2025-03-31.basil and later
	// (billing periods on subscription items, an invoice's subscription
	// under parent, no Checkout shipping_details) and of 2026-03-25.dahlia
	// (Checkout ui_mode hosted_page).
	APIVersionLatest = "2026-08-26.dahlia"

	checkoutTTL    = 24 * time.Hour   // life of an open Checkout Session (billing time)
	idemTTL        = 24 * time.Hour   // how long an Idempotency-Key is remembered (wall time)
	maxDueSteps    = 100000           // guard against a runaway billing loop
	deliverLimit   = 6                // webhook attempts per event
	deliverTimeout = 10 * time.Second // per attempt
)

// retryAfter is when a failed invoice is retried, counted from the first
// failure: three retries, after 1, 3 and 7 days. A past_due subscription
// whose third retry fails becomes unpaid.
func retryAfter(retry int) time.Duration {
	switch retry {
	case 1:
		return 24 * time.Hour
	case 2:
		return 3 * 24 * time.Hour
	default:
		return 7 * 24 * time.Hour
	}
}

// Price is a price the sandbox sells. Product is the product's name
// ("Pro"), from which the product ID "prod_pro" is derived; a value that
// already starts with "prod_" is taken as the product ID itself, named by
// Nickname. Currency defaults to "usd". Interval is "day", "week", "month"
// or "year" for a recurring price (always every one interval) and "" for a
// one-time price.
type Price struct {
	ID, Product, Nickname, Currency string
	UnitAmount                      int64 // in the currency's minor unit (cents)
	Interval                        string
}

// DefaultPrices returns the prices used when Options.Prices is
// empty: price_demo_pro_monthly ($12/month, product Pro),
// price_demo_team_monthly ($49/month, product Team) and
// price_demo_trial_fee ($1 one-time, product "Trial fee").
func DefaultPrices() []Price {
	return []Price{
		{ID: "price_demo_pro_monthly", Product: "Pro", Nickname: "Pro monthly", Currency: "usd", UnitAmount: 1200, Interval: "month"},
		{ID: "price_demo_team_monthly", Product: "Team", Nickname: "Team monthly", Currency: "usd", UnitAmount: 4900, Interval: "month"},
		{ID: "price_demo_trial_fee", Product: "Trial fee", Nickname: "Trial fee", Currency: "usd", UnitAmount: 100},
	}
}

// Options configures New. The zero value is usable.
type Options struct {
	// Prices are the prices on sale (default DefaultPrices()).
	Prices []Price
	// Now is the wall clock (default time.Now). Webhooks are signed and
	// events stamped with it, because the gateway checks signatures against
	// its own clock; billing runs on Now()+the test clock's offset.
	Now func() time.Time
	// Logger receives API calls, payments and deliveries (default: discard).
	Logger *slog.Logger
	// SecretKey is the test-mode API key callers send as a bearer token
	// (default DefaultSecretKey).
	SecretKey string
	// LiveSecretKey is the live-mode API key (default
	// DefaultLiveSecretKey).
	LiveSecretKey string
	// LivePrices are the prices on sale in live mode (default none). A
	// price ID is one mode's only, as at Stripe.
	LivePrices []Price
	// APIVersion is the account's default API version (default
	// APIVersion): requests without a Stripe-Version header are
	// answered in it, and events are rendered in it when they happen, for
	// webhooks and the Events API alike. Requests with the header are
	// answered in the version they name (stripe-go always sends its own).
	APIVersion string
}

// APIVersions are the API versions the sandbox renders faithfully:
// the one tollgate's stripe-go pins and the newest. The end-to-end tests
// run the billing journeys with the account's default set to each.
func APIVersions() []string { return []string{APIVersion, APIVersionLatest} }

// Delivery is the state of one event's webhook delivery: the last
// HTTP status the endpoint answered (0 before any answer, or after a
// network error) and how many attempts were made.
type Delivery struct {
	EventID  string
	Type     string
	Status   int
	Attempts int
}

// Stripe is an in-memory stand-in for a Stripe account, in test mode and
// in live mode (each key sees only its own mode's objects): the parts of
// the API tollgate uses, hosted Checkout and Billing Portal pages, a
// billing engine driven by a test clock, and signed webhook delivery, one
// endpoint per mode. Answers are rendered in the API version a request
// names, events in the account's default. Create it with New; it is
// safe for concurrent use.
type Stripe struct {
	now         func() time.Time
	log         *slog.Logger
	secret      string // test mode
	liveSecret  string
	apiVersion  string   // the account's default
	prices      []*price // in the order given, test mode then live mode
	priceIdx    map[string]*price
	products    []*product
	productIdx  map[string]*product // by modeKey
	createdAt   time.Time
	pages       *template.Template
	handler     http.Handler
	client      *http.Client    // webhook deliveries
	retryDelays []time.Duration // between delivery attempts; tests shorten it

	mu sync.Mutex
	// view is how the answer being built is rendered: the API version
	// and the mode of the key that asked. Set under mu by the API wrapper
	// for each request and by emitLocked for each event.
	view       view
	baseURL    string
	offset     time.Duration // test clock: billing time = now() + offset
	seq        int64         // creation order of every object
	customers  map[string]*customer
	subs       map[string]*subscription
	sessions   map[string]*checkoutSession
	portals    map[string]*portalSession
	invoices   map[string]*invoice
	events     []*event // oldest first
	eventIdx   map[string]*event
	failing    map[string]bool // customer IDs whose next payments fail
	idem       map[string]*idemEntry
	apiCalls   map[string]int // API requests received, by route pattern
	apiLog     []Request
	hooks      [2]endpoint // by mode: [0] test, [1] live
	queue      []*event    // awaiting delivery, in order
	delivering bool
	idle       chan struct{} // closed when the queue is drained
	closed     bool
	stopCtx    context.Context // ends with Close: cancels deliveries
	stop       context.CancelFunc
}

// view is the API version and mode an answer is rendered for.
type view struct {
	version string
	live    bool // the key that asked is a live-mode key
}

// basil reports the shapes of 2025-03-31.basil and later.
func (v view) basil() bool { return versionDate(v.version) >= "2025-03-31" }

// dahlia reports the shapes of 2026-03-25.dahlia and later.
func (v view) dahlia() bool { return versionDate(v.version) >= "2026-03-25" }

func versionDate(v string) string {
	if len(v) < 10 {
		return v
	}
	return v[:10]
}

// endpoint is a webhook endpoint of one mode.
type endpoint struct {
	url, secret string
}

// object is anything that belongs to one mode.
type object interface{ isLive() bool }

type product struct {
	id, name string
	livemode bool
}

func (p *product) isLive() bool { return p.livemode }

type price struct {
	Price
	product  *product
	livemode bool
}

func (p *price) isLive() bool { return p.livemode }

// modeKey keys what two modes may both name (products derived from a
// price's product name).
func modeKey(live bool, id string) string {
	if live {
		return "live:" + id
	}
	return "test:" + id
}

func (p *price) recurring() bool { return p.Interval != "" }

type customer struct {
	id, email, name string
	metadata        map[string]string
	created         time.Time
	seq             int64
	deleted         bool
	currency        string
	invoiceSeq      int64
	invoicePrefix   string
	livemode        bool
}

func (c *customer) isLive() bool { return c.livemode }

type subItem struct {
	id       string
	price    *price
	quantity int64
	created  time.Time
}

type subscription struct {
	id, customer       string
	status             string
	items              []subItem
	metadata           map[string]string
	created            time.Time
	seq                int64
	anchor             time.Time // billing cycle anchor
	periods            int       // periods since the anchor at current_period_start
	periodStart        time.Time
	periodEnd          time.Time
	trialStart         time.Time // zero: no trial
	trialEnd           time.Time
	cancelAtPeriodEnd  bool
	canceledAt         time.Time
	endedAt            time.Time
	cancelReason       string
	latestInvoice      string
	pastDueSince       time.Time
	retries            int
	nextRetry          time.Time
	defaultPaymentMeth string
	livemode           bool
	// pauseBehavior is pause_collection's behavior while payment
	// collection is paused ("" when it is not): keep_as_draft,
	// mark_uncollectible or void. The status stays what it is.
	pauseBehavior string
	pauseResumes  time.Time // pause_collection.resumes_at; zero: until resumed
}

func (s *subscription) isLive() bool { return s.livemode }

func (s *subscription) interval() string { return s.items[0].price.Interval }

func (s *subscription) currency() string { return s.items[0].price.Currency }

// amount is what one period costs.
func (s *subscription) amount() int64 {
	var n int64
	for _, it := range s.items {
		n += it.price.UnitAmount * it.quantity
	}
	return n
}

// live reports whether the subscription can still change by itself.
func (s *subscription) live() bool {
	switch s.status {
	case "trialing", "active", "past_due":
		return true
	}
	return false
}

// dueAt is when the billing engine next has work for the subscription.
func (s *subscription) dueAt() (time.Time, bool) {
	t, ok := s.billingDueAt()
	if s.pauseBehavior != "" && !s.pauseResumes.IsZero() && s.live() && (!ok || s.pauseResumes.Before(t)) {
		return s.pauseResumes, true
	}
	return t, ok
}

func (s *subscription) billingDueAt() (time.Time, bool) {
	switch s.status {
	case "trialing":
		return s.trialEnd, true
	case "active":
		return s.periodEnd, true
	case "past_due":
		if s.cancelAtPeriodEnd && s.periodEnd.Before(s.nextRetry) {
			return s.periodEnd, true
		}
		return s.nextRetry, true
	}
	return time.Time{}, false
}

type lineItem struct {
	price    *price
	quantity int64
}

type checkoutSession struct {
	id                string
	customer          string // "" until paid, when none was given
	customerEmail     string
	clientReferenceID string
	mode              string
	items             []lineItem
	trialDays         int64
	trialEnd          time.Time
	subMetadata       map[string]string
	metadata          map[string]string
	successURL        string
	cancelURL         string
	allowPromo        bool
	status            string // open, complete, expired
	paymentStatus     string // unpaid, paid
	subscription      string
	created           time.Time
	expiresAt         time.Time
	seq               int64
	email             string // customer_details.email once paid
	livemode          bool
}

func (c *checkoutSession) isLive() bool { return c.livemode }

// trial reports whether paying starts a trial, and when it ends.
func (c *checkoutSession) trial(now time.Time) (time.Time, bool) {
	switch {
	case !c.trialEnd.IsZero():
		return c.trialEnd, true
	case c.trialDays > 0:
		return now.Add(time.Duration(c.trialDays) * 24 * time.Hour), true
	}
	return time.Time{}, false
}

// dueToday is what paying charges now; subtotal the same before trials.
func (c *checkoutSession) dueToday() (total int64) {
	trial := c.trialDays > 0 || !c.trialEnd.IsZero()
	for _, li := range c.items {
		if li.price.recurring() && trial {
			continue
		}
		total += li.price.UnitAmount * li.quantity
	}
	return total
}

func (c *checkoutSession) currency() string { return c.items[0].price.Currency }

type portalSession struct {
	id, customer, returnURL string
	created                 time.Time
	livemode                bool
}

type invoice struct {
	id, customer, subscription string
	number                     string
	billingReason              string
	currency                   string
	lines                      []invoiceLine
	created                    time.Time
	periodStart, periodEnd     time.Time
	paid                       bool
	paidAt                     time.Time
	attempts                   int64
	nextAttempt                time.Time
	livemode                   bool
	subMetadata                map[string]string // the subscription's when the invoice was made
	// state overrides the status of an unpaid invoice: "draft",
	// "uncollectible" or "void" (made while collection was paused).
	state string
}

func (in *invoice) isLive() bool { return in.livemode }

func (in *invoice) total() int64 {
	var n int64
	for _, l := range in.lines {
		n += l.amount
	}
	return n
}

type invoiceLine struct {
	id          string
	price       *price
	quantity    int64
	amount      int64
	description string
	subItem     string // "" for one-time items
	start, end  time.Time
}

// New builds the Stripe stand-in. It panics if opts.Prices is
// invalid: an empty or duplicate ID, a negative amount, or an interval
// other than day, week, month, year or "".
func New(opts Options) *Stripe {
	s := &Stripe{
		now:         opts.Now,
		log:         opts.Logger,
		secret:      opts.SecretKey,
		priceIdx:    map[string]*price{},
		productIdx:  map[string]*product{},
		client:      webhookClient(),
		retryDelays: []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, time.Second, 2 * time.Second, 3 * time.Second},
		customers:   map[string]*customer{},
		subs:        map[string]*subscription{},
		sessions:    map[string]*checkoutSession{},
		portals:     map[string]*portalSession{},
		invoices:    map[string]*invoice{},
		eventIdx:    map[string]*event{},
		failing:     map[string]bool{},
		idem:        map[string]*idemEntry{},
		apiCalls:    map[string]int{},
		idle:        make(chan struct{}),
	}
	s.stopCtx, s.stop = context.WithCancel(context.Background())
	close(s.idle)
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.secret == "" {
		s.secret = DefaultSecretKey
	}
	s.liveSecret = opts.LiveSecretKey
	if s.liveSecret == "" {
		s.liveSecret = DefaultLiveSecretKey
	}
	if s.liveSecret == s.secret {
		panic("sandbox: stripe test and live keys must differ")
	}
	s.apiVersion = opts.APIVersion
	if s.apiVersion == "" {
		s.apiVersion = APIVersion
	}
	if !validVersion(s.apiVersion) {
		panic(fmt.Sprintf("sandbox: stripe API version %q: want YYYY-MM-DD or YYYY-MM-DD.name", s.apiVersion))
	}
	s.view = view{version: s.apiVersion}
	s.createdAt = s.now()
	prices := opts.Prices
	if len(prices) == 0 {
		prices = DefaultPrices()
	}
	for i, p := range prices {
		s.addPrice(i, p, false)
	}
	for i, p := range opts.LivePrices {
		s.addPrice(i, p, true)
	}
	s.pages = template.Must(template.New("stripe").ParseFS(templateFS, "templates/*.html"))
	s.handler = s.routes()
	return s
}

// addPrice puts p on sale in one mode; it panics on a bad price (see
// New).
func (s *Stripe) addPrice(i int, p Price, live bool) {
	if !strings.HasPrefix(p.ID, "price_") && !strings.HasPrefix(p.ID, "plan_") {
		panic(fmt.Sprintf("sandbox: stripe price %d: ID %q must start with price_", i, p.ID))
	}
	if _, dup := s.priceIdx[p.ID]; dup {
		panic(fmt.Sprintf("sandbox: stripe price %q listed twice", p.ID))
	}
	switch p.Interval {
	case "", "day", "week", "month", "year":
	default:
		panic(fmt.Sprintf("sandbox: stripe price %q: interval %q: want day, week, month, year or empty", p.ID, p.Interval))
	}
	if p.UnitAmount < 0 {
		panic(fmt.Sprintf("sandbox: stripe price %q: negative amount", p.ID))
	}
	p.Currency = strings.ToLower(p.Currency)
	if p.Currency == "" {
		p.Currency = "usd"
	}
	pid, name := productID(p)
	prod := s.productIdx[modeKey(live, pid)]
	if prod == nil {
		prod = &product{id: pid, name: name, livemode: live}
		s.productIdx[modeKey(live, pid)] = prod
		s.products = append(s.products, prod)
	}
	sp := &price{Price: p, product: prod, livemode: live}
	s.prices = append(s.prices, sp)
	s.priceIdx[p.ID] = sp
}

// validVersion accepts what Stripe-Version may name: a date, or a date
// and a release name ("2025-03-31.basil").
func validVersion(v string) bool {
	date, name, _ := strings.Cut(v, ".")
	if _, err := time.Parse("2006-01-02", date); err != nil {
		return false
	}
	for _, r := range name {
		if r < 'a' || r > 'z' {
			return false
		}
	}
	return true
}

// webhookClient delivers webhooks straight to the configured URL: no
// proxy from the environment, and no redirects followed (a 3xx answer is
// a failed delivery, as at Stripe).
func webhookClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &http.Client{
		Transport: tr,
		Timeout:   deliverTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// productID derives a price's product ID and name (see Price).
func productID(p Price) (id, name string) {
	if strings.HasPrefix(p.Product, "prod_") {
		name = p.Nickname
		if name == "" {
			name = p.Product
		}
		return p.Product, name
	}
	name = p.Product
	if name == "" {
		name = p.Nickname
	}
	if name == "" {
		name = strings.TrimPrefix(p.ID, "price_")
	}
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	return "prod_" + strings.TrimSuffix(b.String(), "_"), name
}

// Handler serves the API under /v1 (bearer secret key) and the hosted
// pages: /checkout/pay/{id} and /portal/{id}.
func (s *Stripe) Handler() http.Handler { return s.handler }

// SetBaseURL records the sandbox's own URL ("http://127.0.0.1:4200"), once
// its listener is up: the hosted page URLs the API returns start with it.
func (s *Stripe) SetBaseURL(u string) {
	s.mu.Lock()
	s.baseURL = strings.TrimRight(u, "/")
	s.mu.Unlock()
}

// APICalls counts the API requests received so far, by route pattern
// ("GET /v1/customers/{id}"), whatever their answer.
func (s *Stripe) APICalls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.apiCalls)
}

// Request is an API request the sandbox received, with the
// Stripe-Version it named ("" for none).
type Request struct {
	Method, Path, Query, Version string
}

const apiLogMax = 100000

// APIRequests lists the API requests received so far, in order (the first
// 100,000).
func (s *Stripe) APIRequests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.apiLog)
}

// SecretKey is the test-mode API key the sandbox accepts.
func (s *Stripe) SecretKey() string { return s.secret }

// LiveSecretKey is the live-mode API key the sandbox accepts.
func (s *Stripe) LiveSecretKey() string { return s.liveSecret }

// SetRetryDelays sets the waits between webhook delivery attempts (tests
// that make deliveries fail want them short).
func (s *Stripe) SetRetryDelays(d ...time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(d) > 0 {
		s.retryDelays = append([]time.Duration(nil), d...)
	}
}

// SetWebhook sets the one test-mode endpoint events are delivered to,
// signed with secret (whsec_…). Events created afterwards are delivered;
// an empty url stops delivery of new events.
func (s *Stripe) SetWebhook(url, secret string) { s.setWebhook(false, url, secret) }

// SetLiveWebhook sets the one live-mode endpoint, as SetWebhook does for
// test mode. At Stripe each mode has its own endpoints and signing
// secrets; a live-mode event never reaches a test-mode endpoint.
func (s *Stripe) SetLiveWebhook(url, secret string) { s.setWebhook(true, url, secret) }

func (s *Stripe) setWebhook(live bool, url, secret string) {
	s.mu.Lock()
	s.hooks[modeIndex(live)] = endpoint{url: url, secret: secret}
	s.mu.Unlock()
}

func modeIndex(live bool) int {
	if live {
		return 1
	}
	return 0
}

// BillingNow is the test clock's time: the wall clock plus every Advance.
func (s *Stripe) BillingNow() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.billingNowLocked()
}

func (s *Stripe) billingNowLocked() time.Time { return s.now().Add(s.offset) }

// Advance moves the test clock forward by d and runs the billing that
// falls due, in time order: trials end, subscriptions renew, failed
// invoices are retried, cancellations at period end take effect and open
// Checkout Sessions expire, each with the events Stripe would send.
// Subscriptions are never billed for the time they were not due, and a
// negative d is ignored.
//
// The rules, simplified from Stripe's defaults: a trial ends into active
// (or past_due when the customer's payments fail, see FailNextPayments);
// a renewal starts the next period and pays its invoice (or goes past_due);
// a failed invoice is retried 1, 3 and 7 days after the first failure, and
// when the third retry fails the subscription becomes unpaid, where it
// stays until its payment method is updated in the portal; a subscription
// set to cancel at period end is canceled when its period (or trial) ends.
func (s *Stripe) Advance(d time.Duration) {
	if d < 0 {
		s.log.Warn("sandbox stripe: the test clock cannot go back", "by", d)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
	s.log.Info("sandbox stripe: test clock advanced", "by", d, "billing_now", s.billingNowLocked())
	s.runDueLocked()
}

// FailNextPayments makes the customer's renewals (and retries) fail while
// fail is true, so its subscriptions go past_due with invoice.payment_failed.
func (s *Stripe) FailNextPayments(customerID string, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fail {
		s.failing[customerID] = true
	} else {
		delete(s.failing, customerID)
	}
}

// SetSubscriptionStatus forces a subscription's status, as if Stripe had
// moved it there, and sends customer.subscription.updated; forcing
// "canceled" ends it and sends customer.subscription.deleted instead, as
// Stripe does. Unknown subscriptions and statuses are logged and ignored.
func (s *Stripe) SetSubscriptionStatus(subID, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs[subID]
	if sub == nil {
		s.log.Warn("sandbox stripe: SetSubscriptionStatus: no such subscription", "subscription", subID)
		return
	}
	if !validStatus(status) {
		s.log.Warn("sandbox stripe: SetSubscriptionStatus: unknown status", "status", status)
		return
	}
	now := s.billingNowLocked()
	if status == "canceled" {
		s.cancelNowLocked(sub, now, "cancellation_requested")
		return
	}
	prev := map[string]any{"status": sub.status}
	sub.status = status
	if status == "past_due" && sub.pastDueSince.IsZero() {
		sub.pastDueSince, sub.retries = now, 0
		sub.nextRetry = now.Add(retryAfter(1))
	}
	if status != "past_due" {
		sub.pastDueSince, sub.retries, sub.nextRetry = time.Time{}, 0, time.Time{}
	}
	if status == "trialing" && !sub.trialEnd.After(now) {
		// A forced trial ends with the current period.
		sub.trialStart, sub.trialEnd = sub.periodStart, sub.periodEnd
	}
	s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
}

func validStatus(st string) bool {
	switch st {
	case "active", "canceled", "incomplete", "incomplete_expired", "past_due", "paused", "trialing", "unpaid":
		return true
	}
	return false
}

// nextSeqLocked numbers objects in creation order (lists are newest first).
func (s *Stripe) nextSeqLocked() int64 {
	s.seq++
	return s.seq
}

// runDueLocked runs the billing that is due at the billing clock's time:
// the earliest due subscription first, at the time it was due.
func (s *Stripe) runDueLocked() {
	now := s.billingNowLocked()
	for step := 0; ; step++ {
		if step == maxDueSteps {
			s.log.Error("sandbox stripe: billing loop stopped; too much was due at once", "steps", step)
			break
		}
		var next *subscription
		var at time.Time
		for _, sub := range s.subs {
			t, ok := sub.dueAt()
			if !ok || t.After(now) {
				continue
			}
			if next == nil || t.Before(at) || (t.Equal(at) && sub.seq < next.seq) {
				next, at = sub, t
			}
		}
		if next == nil {
			break
		}
		s.billLocked(next, at)
	}
	var expired []*checkoutSession
	for _, cs := range s.sessions {
		if cs.status == "open" && !cs.expiresAt.After(now) {
			expired = append(expired, cs)
		}
	}
	slices.SortFunc(expired, func(a, b *checkoutSession) int { return a.expiresAt.Compare(b.expiresAt) })
	for _, cs := range expired {
		cs.status = "expired"
		s.emitLocked("checkout.session.expired", func() any { return s.checkoutJSON(cs, nil) }, nil)
	}
}

// billLocked does the work due for sub at time at.
func (s *Stripe) billLocked(sub *subscription, at time.Time) {
	// Paused collection resumes by itself at resumes_at.
	if sub.pauseBehavior != "" && !sub.pauseResumes.IsZero() && !at.Before(sub.pauseResumes) {
		prev := map[string]any{"pause_collection": pauseJSON(sub)}
		sub.pauseBehavior, sub.pauseResumes = "", time.Time{}
		s.log.Info("sandbox stripe: payment collection resumed", "subscription", sub.id)
		s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
		return
	}
	// Cancellation at period end: a trial's end is its period's end.
	if sub.cancelAtPeriodEnd && !at.Before(sub.periodEnd) {
		s.cancelNowLocked(sub, sub.periodEnd, "cancellation_requested")
		return
	}
	fail := s.failing[sub.customer]
	switch sub.status {
	case "trialing", "active":
		prev := map[string]any{
			"current_period_start": sub.periodStart.Unix(),
			"current_period_end":   sub.periodEnd.Unix(),
			"latest_invoice":       sub.latestInvoice,
		}
		if sub.status == "trialing" {
			prev["status"] = "trialing"
		}
		sub.periodStart = sub.periodEnd
		sub.periods++
		sub.periodEnd = addInterval(sub.anchor, sub.interval(), sub.periods+1)
		inv := s.newInvoiceLocked(sub, "subscription_cycle", sub.periodStart, nil, true)
		if sub.pauseBehavior != "" {
			// Collection paused: the period starts and its invoice is
			// made but not collected; the status stays as it is
			// (docs.stripe.com/billing/subscriptions/pause-payment).
			sub.status = "active"
			inv.state = map[string]string{"keep_as_draft": "draft", "mark_uncollectible": "uncollectible", "void": "void"}[sub.pauseBehavior]
			s.log.Info("sandbox stripe: renewed without collecting", "subscription", sub.id, "invoice", inv.state)
			s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
			s.emitLocked("invoice.created", func() any { return s.invoiceJSON(inv) }, nil)
			switch inv.state {
			case "uncollectible":
				s.emitLocked("invoice.marked_uncollectible", func() any { return s.invoiceJSON(inv) }, nil)
			case "void":
				s.emitLocked("invoice.voided", func() any { return s.invoiceJSON(inv) }, nil)
			}
			return
		}
		if fail {
			inv.attempts = 1
			sub.status = "past_due"
			sub.pastDueSince, sub.retries = at, 0
			sub.nextRetry = at.Add(retryAfter(1))
			inv.nextAttempt = sub.nextRetry
			s.log.Info("sandbox stripe: renewal failed", "subscription", sub.id, "customer", sub.customer)
			s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
			s.emitLocked("invoice.payment_failed", func() any { return s.invoiceJSON(inv) }, nil)
			return
		}
		s.payInvoiceLocked(inv, at)
		sub.status = "active"
		s.log.Info("sandbox stripe: renewed", "subscription", sub.id, "customer", sub.customer, "period_end", sub.periodEnd)
		s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
		s.emitLocked("invoice.paid", func() any { return s.invoiceJSON(inv) }, nil)
	case "past_due":
		inv := s.invoices[sub.latestInvoice]
		if inv == nil || inv.paid {
			// Forced into past_due with nothing to pay: recover.
			sub.status, sub.pastDueSince, sub.retries, sub.nextRetry = "active", time.Time{}, 0, time.Time{}
			s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, map[string]any{"status": "past_due"})
			return
		}
		inv.attempts++
		sub.retries++
		if !fail {
			s.recoverLocked(sub, inv, at)
			return
		}
		if sub.retries >= 3 {
			inv.nextAttempt = time.Time{}
			sub.status, sub.nextRetry = "unpaid", time.Time{}
			s.log.Info("sandbox stripe: retries exhausted; unpaid", "subscription", sub.id)
			s.emitLocked("invoice.payment_failed", func() any { return s.invoiceJSON(inv) }, nil)
			s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, map[string]any{"status": "past_due"})
			return
		}
		sub.nextRetry = sub.pastDueSince.Add(retryAfter(sub.retries + 1))
		inv.nextAttempt = sub.nextRetry
		s.emitLocked("invoice.payment_failed", func() any { return s.invoiceJSON(inv) }, nil)
	}
}

// recoverLocked pays a past_due or unpaid subscription's open invoice at
// time at, making it active again (a new period starts when the old one is
// over).
func (s *Stripe) recoverLocked(sub *subscription, inv *invoice, at time.Time) {
	prev := map[string]any{"status": sub.status}
	s.payInvoiceLocked(inv, at)
	sub.status = "active"
	sub.pastDueSince, sub.retries, sub.nextRetry = time.Time{}, 0, time.Time{}
	if !sub.periodEnd.After(at) {
		prev["current_period_start"] = sub.periodStart.Unix()
		prev["current_period_end"] = sub.periodEnd.Unix()
		sub.anchor, sub.periods = at, 0
		sub.periodStart, sub.periodEnd = at, addInterval(at, sub.interval(), 1)
	}
	s.log.Info("sandbox stripe: invoice paid; active again", "subscription", sub.id, "invoice", inv.id)
	s.emitLocked("invoice.paid", func() any { return s.invoiceJSON(inv) }, nil)
	s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
}

// cancelNowLocked ends a subscription at time at and sends
// customer.subscription.deleted.
func (s *Stripe) cancelNowLocked(sub *subscription, at time.Time, reason string) {
	if sub.status == "canceled" {
		return
	}
	sub.status = "canceled"
	if sub.canceledAt.IsZero() {
		sub.canceledAt = at
	}
	sub.endedAt = at
	sub.cancelReason = reason
	sub.pastDueSince, sub.retries, sub.nextRetry = time.Time{}, 0, time.Time{}
	if inv := s.invoices[sub.latestInvoice]; inv != nil {
		inv.nextAttempt = time.Time{}
	}
	s.log.Info("sandbox stripe: subscription canceled", "subscription", sub.id, "customer", sub.customer, "reason", reason)
	s.emitLocked("customer.subscription.deleted", func() any { return s.subJSON(sub, nil) }, nil)
}

// newInvoiceLocked bills sub for the period starting at start (recurring
// items, zero-priced during a trial) plus extra one-time items.
func (s *Stripe) newInvoiceLocked(sub *subscription, reason string, at time.Time, extra []lineItem, charge bool) *invoice {
	cus := s.customers[sub.customer]
	inv := &invoice{
		id: newID("in_"), customer: sub.customer, subscription: sub.id, billingReason: reason,
		currency: sub.currency(), created: at, periodStart: sub.periodStart, periodEnd: sub.periodEnd,
		livemode: sub.livemode, subMetadata: metadataJSON(sub.metadata),
	}
	if cus != nil {
		cus.invoiceSeq++
		inv.number = fmt.Sprintf("%s-%04d", cus.invoicePrefix, cus.invoiceSeq)
	}
	for _, it := range sub.items {
		l := invoiceLine{
			id: newID("il_"), price: it.price, quantity: it.quantity, subItem: it.id,
			start: sub.periodStart, end: sub.periodEnd,
		}
		if charge {
			l.amount = it.price.UnitAmount * it.quantity
			l.description = fmt.Sprintf("%d × %s (at %s / %s)", it.quantity, it.price.product.name,
				formatMoney(it.price.UnitAmount, it.price.Currency), it.price.Interval)
		} else {
			l.description = "Trial period for " + it.price.product.name
		}
		inv.lines = append(inv.lines, l)
	}
	for _, li := range extra {
		inv.lines = append(inv.lines, invoiceLine{
			id: newID("il_"), price: li.price, quantity: li.quantity, amount: li.price.UnitAmount * li.quantity,
			description: li.price.product.name, start: at, end: at,
		})
	}
	s.invoices[inv.id] = inv
	sub.latestInvoice = inv.id
	return inv
}

func (s *Stripe) payInvoiceLocked(inv *invoice, at time.Time) {
	if inv.attempts == 0 && inv.total() > 0 {
		inv.attempts = 1
	}
	inv.paid, inv.paidAt, inv.nextAttempt = true, at, time.Time{}
}

// addInterval is anchor plus n intervals, keeping the anchor's day of
// the month where the month is long enough (Jan 31 → Feb 28 → Mar 31).
func addInterval(anchor time.Time, interval string, n int) time.Time {
	switch interval {
	case "day":
		return anchor.AddDate(0, 0, n)
	case "week":
		return anchor.AddDate(0, 0, 7*n)
	case "year":
		n *= 12
	}
	y, m, d := anchor.Date()
	first := time.Date(y, m+time.Month(n), 1, anchor.Hour(), anchor.Minute(), anchor.Second(), anchor.Nanosecond(), anchor.Location())
	last := first.AddDate(0, 1, -1).Day()
	return first.AddDate(0, 0, min(d, last)-1)
}

// newID is a Stripe-looking object ID: prefix and 24 random letters and
// digits.
func newID(prefix string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return prefix + string(b)
}

// formatMoney formats an amount in minor units: "$12.00", "€4.50", "12.00 CHF".
func formatMoney(amount int64, currency string) string {
	sign := ""
	if amount < 0 {
		sign, amount = "-", -amount
	}
	num := fmt.Sprintf("%d.%02d", amount/100, amount%100)
	switch strings.ToLower(currency) {
	case "usd":
		return sign + "$" + num
	case "eur":
		return sign + "€" + num
	case "gbp":
		return sign + "£" + num
	}
	return sign + num + " " + strings.ToUpper(currency)
}

func formatDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2 January 2006, 15:04 UTC")
}

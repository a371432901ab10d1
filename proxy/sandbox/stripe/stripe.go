package stripesandbox

import (
	"context"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
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
	deliverLimit   = 6                // webhook attempts per event (at least: SetRetryDelays)
	deliverTimeout = 10 * time.Second // per attempt
)

// Price is a price the sandbox sells. Product is the product's name
// ("Pro"), from which the product ID "prod_pro" is derived; a value that
// already starts with "prod_" is taken as the product ID itself, named by
// Nickname. Currency defaults to "usd". Interval is "day", "week", "month"
// or "year" for a recurring price (always every one interval) and "" for a
// one-time price.
//
// Meter makes a recurring price metered (recurring[usage_type]=metered),
// backed by the meter with that ID (one of Options.Meters): UnitAmount is
// then per unit of usage, billed at the end of each period for the usage
// the meter counted in it.
type Price struct {
	ID, Product, Nickname, Currency string
	UnitAmount                      int64 // in the currency's minor unit (cents)
	Interval                        string
	Meter                           string
}

// DefaultPrices returns the prices used when Options.Prices is
// empty: price_demo_pro_monthly ($12/month, product Pro),
// price_demo_pro_yearly ($120/year, product Pro),
// price_demo_team_monthly ($49/month, product Team),
// price_demo_api_monthly ($19/month, product API) and
// price_demo_trial_fee ($1 one-time, product "Trial fee").
func DefaultPrices() []Price {
	return []Price{
		{ID: "price_demo_pro_monthly", Product: "Pro", Nickname: "Pro monthly", Currency: "usd", UnitAmount: 1200, Interval: "month"},
		{ID: "price_demo_pro_yearly", Product: "Pro", Nickname: "Pro yearly", Currency: "usd", UnitAmount: 12000, Interval: "year"},
		{ID: "price_demo_team_monthly", Product: "Team", Nickname: "Team monthly", Currency: "usd", UnitAmount: 4900, Interval: "month"},
		{ID: "price_demo_api_monthly", Product: "API", Nickname: "API monthly", Currency: "usd", UnitAmount: 1900, Interval: "month"},
		{ID: "price_demo_trial_fee", Product: "Trial fee", Nickname: "Trial fee", Currency: "usd", UnitAmount: 100},
	}
}

// DemoMeter is the Billing Meter `tollgate demo` starts the sandbox with:
// the tide API's calls, summed by customer (README "Usage billing").
func DemoMeter() Meter {
	return Meter{ID: "mtr_demo_tide_calls", EventName: "tide_api_calls", DisplayName: "Tide API calls"}
}

// DemoMeteredPrice is the demo's metered price, a cent a call, backed by
// DemoMeter: the pay-as-you-go plan's only price.
func DemoMeteredPrice() Price {
	return Price{ID: "price_demo_tides_usage", Product: "Tide API usage", Nickname: "Tide API per call", Currency: "usd",
		UnitAmount: 1, Interval: "month", Meter: DemoMeter().ID}
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
	// Meters are the test-mode Billing Meters the account starts with
	// (more can be made through the API).
	Meters []Meter
	// StripeTax says the account has Stripe Tax set up (an origin
	// address, Tax turned on): without it Checkout refuses automatic_tax,
	// as Stripe does. The account has no tax registration, so the tax
	// Stripe Tax works out is nothing.
	StripeTax bool
}

// APIVersions are the API versions the sandbox renders faithfully:
// the one tollgate's stripe-go pins and the newest. The end-to-end tests
// run the billing journeys with the account's default set to each.
func APIVersions() []string { return []string{APIVersion, APIVersionLatest} }

// Delivery is the state of one event's delivery to one webhook endpoint:
// the endpoint's ID ("" for the one SetWebhook sets), the last HTTP status
// it answered (0 before any answer, or after a network error) and how
// many attempts were made.
type Delivery struct {
	EventID  string
	Type     string
	Endpoint string
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
	stripeTax   bool     // Options.StripeTax
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
	view      view
	baseURL   string
	offset    time.Duration // test clock: billing time = now() + offset
	seq       int64         // creation order of every object
	customers map[string]*customer
	subs      map[string]*subscription
	sessions  map[string]*checkoutSession
	portals   map[string]*portalSession
	invoices  map[string]*invoice
	events    []*event // oldest first
	eventIdx  map[string]*event
	failing   map[string]bool // customer IDs whose next payments fail
	idem      map[string]*idemEntry
	apiCalls  map[string]int // API requests received, by route pattern
	// apiFailures are the next requests, by route pattern, that fail as
	// Stripe's own server errors do (InjectAPIError).
	apiFailures map[string]int
	// apiFailStatus is the status they fail with (InjectAPIStatus).
	apiFailStatus map[string]int
	// pageSize caps every list's page (SetPageSize); 0: as limit asks.
	pageSize int
	// holds are the requests kept waiting (HoldAPI).
	holds  []*Hold
	apiLog []Request
	hooks  [2]endpoint // set by SetWebhook, by mode: [0] test, [1] live
	// webhookEndpoints are the endpoints made through the API, by ID.
	webhookEndpoints map[string]*webhookEndpoint
	// Billing Meters (api_meters.go): by ID, in creation order; the
	// identifiers seen in the last day, by mode; every accepted event.
	meters      map[string]*meter
	meterOrder  []string
	meterIdents map[string]*meterEvent
	meterEvents []*meterEvent
	queue       []*delivery // awaiting delivery, in order
	delivering  bool
	idle        chan struct{} // closed when the queue is drained
	closed      bool
	stopCtx     context.Context // ends with Close: cancels deliveries
	stop        context.CancelFunc
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
		apiFailures: map[string]int{}, apiFailStatus: map[string]int{},
		idle: make(chan struct{}),

		webhookEndpoints: map[string]*webhookEndpoint{},
		meters:           map[string]*meter{},
		meterIdents:      map[string]*meterEvent{},
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
	s.stripeTax = opts.StripeTax
	s.apiVersion = opts.APIVersion
	if s.apiVersion == "" {
		s.apiVersion = APIVersion
	}
	if !validVersion(s.apiVersion) {
		panic(fmt.Sprintf("sandbox: stripe API version %q: want YYYY-MM-DD or YYYY-MM-DD.name", s.apiVersion))
	}
	s.view = view{version: s.apiVersion}
	s.createdAt = s.now()
	for _, m := range opts.Meters {
		s.addMeter(m, false)
	}
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
	if m := s.meters[p.Meter]; p.Meter != "" && (m == nil || m.livemode != live || p.Interval == "") {
		panic(fmt.Sprintf("sandbox: stripe price %q: meter %q is not a meter of its mode, or the price is not recurring", p.ID, p.Meter))
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
// InjectAPIError makes the next n requests to the route pattern (e.g.
// "POST /v1/checkout/sessions") fail with a 500 api_error once their
// handler has begun, as Stripe's own failures do: under an Idempotency-Key
// the failure is saved and replayed like any result.
func (s *Stripe) InjectAPIError(pattern string, n int) {
	s.InjectAPIStatus(pattern, n, http.StatusInternalServerError)
}

// InjectAPIStatus is InjectAPIError with another answer: a 5xx as an
// api_error, or 429 as Stripe's rate limit (type invalid_request_error,
// code rate_limit; docs.stripe.com/rate-limits).
func (s *Stripe) InjectAPIStatus(pattern string, n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiFailures[pattern] = n
	s.apiFailStatus[pattern] = status
}

// SetPageSize makes every list answer at most n objects a page, whatever
// its limit asks (0: as asked), with has_more set when more follow, so a
// test can make an account-wide listing span pages without making
// hundreds of objects. A client that follows has_more, as Stripe's pages
// require, is not affected otherwise.
func (s *Stripe) SetPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageSize = n
}

// Hold keeps the API requests HoldAPI names waiting until Release (or
// until the caller gives up on the request): a test can catch a client in
// the middle of a long run, as a slow Stripe would.
type Hold struct {
	pattern string
	match   func(url.Values) bool
	once    sync.Once
	reached chan struct{}
	release chan struct{}
	rel     sync.Once
}

// HoldAPI holds every request to the route pattern (e.g. "GET
// /v1/subscriptions") whose query and form match says so (nil: all), from
// now until the Hold's Release.
func (s *Stripe) HoldAPI(pattern string, match func(url.Values) bool) *Hold {
	h := &Hold{pattern: pattern, match: match, reached: make(chan struct{}), release: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holds = append(s.holds, h)
	return h
}

// Reached is closed when the first request is held.
func (h *Hold) Reached() <-chan struct{} { return h.reached }

// Release lets the held requests, and every later one, go on.
func (h *Hold) Release() { h.rel.Do(func() { close(h.release) }) }

// wait holds r if a Hold names it, until its Release or r's end.
func (s *Stripe) wait(r *http.Request) {
	s.mu.Lock()
	var held *Hold
	for _, h := range s.holds {
		select {
		case <-h.release:
			continue
		default:
		}
		if h.pattern == r.Pattern && (h.match == nil || h.match(r.Form)) {
			held = h
			break
		}
	}
	s.mu.Unlock()
	if held == nil {
		return
	}
	held.once.Do(func() { close(held.reached) })
	select {
	case <-held.release:
	case <-r.Context().Done():
	}
}

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
// that make deliveries fail want them short). An event is attempted
// deliverLimit times, or once more than the waits given if they are more:
// a test that outlasts an outage gives as many as it needs (Stripe itself
// retries for three days).
func (s *Stripe) SetRetryDelays(d ...time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(d) > 0 {
		s.retryDelays = append([]time.Duration(nil), d...)
	}
}

// SetWebhook sets the test-mode endpoint that every event is delivered
// to, signed with secret (whsec_…), as one made in the dashboard would be:
// it is not among the API's webhook endpoints, which get the events they
// are subscribed to besides. Events created afterwards are delivered; an
// empty url stops delivery of new events to it.
func (s *Stripe) SetWebhook(url, secret string) { s.setWebhook(false, url, secret) }

// SetLiveWebhook sets the live-mode endpoint, as SetWebhook does for
// test mode. At Stripe each mode has its own endpoints and signing
// secrets; a live-mode event never reaches a test-mode endpoint.
func (s *Stripe) SetLiveWebhook(url, secret string) { s.setWebhook(true, url, secret) }

func (s *Stripe) setWebhook(live bool, url, secret string) {
	s.mu.Lock()
	s.hooks[modeIndex(live)] = endpoint{url: url, secret: secret}
	s.mu.Unlock()
}

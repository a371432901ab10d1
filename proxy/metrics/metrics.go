// Package metrics exports tollgate's Prometheus metrics. It implements the
// small observer interfaces that proxy, proxy/stripe and the cache declare,
// so none of them imports client_golang.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every series tollgate exports, on its own registry (no
// globals: two gateways in one test process do not collide).
type Metrics struct {
	reg             *prometheus.Registry
	decisions       *prometheus.CounterVec
	cache           *prometheus.CounterVec
	upstream        *prometheus.HistogramVec
	stripeCalls     *prometheus.CounterVec
	stripeErrors    *prometheus.CounterVec
	webhookEvents   *prometheus.CounterVec
	webhookLag      *prometheus.HistogramVec
	stripeAnomalies *prometheus.CounterVec
	anomalyKinds    *labelSet
	requestDuration *prometheus.HistogramVec
	endpoints       *labelSet
	webhookTypes    *labelSet
	clientBodies    *prometheus.CounterVec
	clerkCalls      *prometheus.CounterVec
	clerkLimited    *prometheus.CounterVec
	clerkErrors     *prometheus.CounterVec
	clerkEndpoints  *labelSet
	sessionChecks   *prometheus.CounterVec
	stretchMu       sync.Mutex
	stretch         func() float64 // the session check interval's stretch, if set
	backlogMu       sync.Mutex
	backlog         func() (customers int, age time.Duration, err error) // the webhook backlog, if set
	reconcile       *prometheus.GaugeVec
	reconcileDone   prometheus.Gauge
	limits          limitMetrics
	meterEvents     *prometheus.CounterVec
	outbox          *prometheus.GaugeVec
	eventsPruned    prometheus.Counter

	// The series every request touches, looked up once, on first use (a
	// series appears when it has something to say; the labels are fixed
	// words and the config's rules, so these stay small): a
	// WithLabelValues checks, hashes and looks its labels up each time.
	decisionSeries sync.Map // decisionKey → prometheus.Counter
	durationSeries sync.Map // decision → prometheus.Observer
	upstreamSeries sync.Map // status class (int) → prometheus.Observer
	cacheSeries    sync.Map // bool (hit) → prometheus.Counter
}

type decisionKey struct{ decision, rule, access string }

// New registers every series, plus the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg:            prometheus.NewRegistry(),
		endpoints:      &labelSet{max: maxEndpoints},
		clerkEndpoints: &labelSet{max: maxEndpoints},
		webhookTypes:   &labelSet{max: maxWebhookTypes},
		anomalyKinds:   &labelSet{max: maxAnomalyKinds},
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_decisions_total",
			Help: "Requests by the gate's decision (allow, sign_in, handshake, unauthorized, payment_required, deny, …) and the rule that matched.",
		}, []string{"decision", "rule", "access"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_entitlement_cache_total",
			Help: "Entitlement LRU lookups by result (hit, miss).",
		}, []string{"result"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_upstream_response_seconds",
			Help:    "Time from forwarding a request to the upstream's response headers, by status class.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_request_duration_seconds",
			Help:    "Time tollgate spent on a request, including the upstream, by decision.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}, []string{"decision"}),
		stripeCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_stripe_calls_total",
			Help: "Calls to the Stripe API by endpoint.",
		}, []string{"endpoint"}),
		stripeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_stripe_errors_total",
			Help: "Failed calls to the Stripe API by endpoint.",
		}, []string{"endpoint"}),
		webhookEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_webhook_events_total",
			Help: "Webhook deliveries by source (stripe, clerk), event type and result (processed, deferred: acknowledged with a dirty mark, duplicate, ignored, rejected, failed).",
		}, []string{"source", "type", "result"}),
		webhookLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_webhook_lag_seconds",
			Help:    "Time from an event's creation at the source to its commit in the store.",
			Buckets: prometheus.ExponentialBuckets(0.05, 3, 10),
		}, []string{"source"}),
		clerkCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_clerk_api_calls_total",
			Help: "Calls made to Clerk's Backend API, by endpoint (route template, never an ID).",
		}, []string{"endpoint"}),
		clerkLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_clerk_api_rate_limited_total",
			Help: "Clerk Backend API answers 429 (rate limited), by endpoint; tollgate then holds its calls back for Retry-After.",
		}, []string{"endpoint"}),
		clerkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_clerk_api_errors_total",
			Help: "Clerk Backend API calls that failed (transport errors and non-2xx answers, 429s included), by endpoint.",
		}, []string{"endpoint"}),
		sessionChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_session_checks_total",
			Help: "Session checks the gateway session needed, by result: clerk (Clerk answered), shared (another request's call answered), stale (Clerk's budget was spent; the last known answer was served), failed.",
		}, []string{"result"}),
		stripeAnomalies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_stripe_anomalies_total",
			Help: "What Stripe said that points at a configuration error or a race, by kind: customer_unseen (resource_missing for a customer tollgate knows: the key is another account's or mode's; access kept), livemode_mismatch (a signed event of the other mode; ignored), several_live_subscriptions (a customer with more than one live subscription to the plans).",
		}, []string{"kind"}),
		clientBodies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_client_body_errors_total",
			Help: "Forwarded requests whose body the client broke or stalled (client_body_malformed, client_body_aborted, client_body_idle): answered 400 or 408, never counted as the upstream's.",
		}, []string{"reason"}),
	}
	stretch := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_session_refresh_stretch",
		Help: "How many times session.refresh a gateway session may now go without a session check (1: not stretched; up to 5 as Clerk's Backend API budget runs short).",
	}, func() float64 {
		m.stretchMu.Lock()
		f := m.stretch
		m.stretchMu.Unlock()
		if f == nil {
			return 1
		}
		return f()
	})
	backlogCustomers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_webhook_backlog_customers",
		Help: "Customers whose Stripe webhooks were acknowledged with a durable dirty mark and not yet read again from Stripe.",
	}, func() float64 { n, _ := m.readBacklog(); return float64(n) })
	backlogAge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_webhook_backlog_oldest_seconds",
		Help: "Age of the oldest dirty mark (0 when none): how far behind Stripe the deferred syncs are. /readyz warns (still 200) past 10 minutes.",
	}, func() float64 { _, age := m.readBacklog(); return age.Seconds() })
	m.reconcile = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_reconcile_progress",
		Help: "The account-wide reconcile now running, or the last one: pages and subscriptions listed, customers committed from the listing and customers marked dirty (found out of date), and running (1 while it runs).",
	}, []string{"what"})
	m.reconcileDone = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_reconcile_last_completed_timestamp_seconds",
		Help: "When the last complete account-wide reconcile ended (unix seconds; 0: none since start).",
	})
	m.meterEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_meter_events_total",
		Help: "Usage rows sent to Stripe as meter events, by outcome: accepted, duplicate (Stripe held the identifier: accepted earlier), retry (429, 5xx, network: backing off), flagged (refused for good, or unconfirmed after a day: an admin decides), confirmed (by Stripe's meter event summary).",
	}, []string{"result"})
	for _, r := range []string{"accepted", "duplicate", "retry", "flagged", "confirmed"} {
		m.meterEvents.WithLabelValues(r)
	}
	m.outbox = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_usage_outbox",
		Help: "The usage outbox after the sender's last pass: pending (rows not yet accepted by Stripe), flagged (rows an admin must look at) and oldest_seconds (age of the oldest pending row: the metering lag).",
	}, []string{"what"})
	m.eventsPruned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tollgate_events_pruned_total",
		Help: "Processed webhook event IDs (Stripe's events, Clerk's Svix messages) the store forgot past their retention (stripe.EventRetention: 31 days), on the leader.",
	})
	m.reg.MustRegister(backlogCustomers, backlogAge, m.reconcile, m.reconcileDone, m.meterEvents, m.outbox, m.eventsPruned)
	m.reg.MustRegister(m.decisions, m.cache, m.upstream, m.requestDuration, m.stripeCalls, m.stripeErrors,
		m.webhookEvents, m.webhookLag, m.clientBodies, m.clerkCalls, m.clerkLimited, m.clerkErrors, m.sessionChecks, stretch, m.stripeAnomalies,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registerLimits()
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Decision counts one request's outcome (proxy.Observer).
func (m *Metrics) Decision(decision, rule, access string, took time.Duration) {
	k := decisionKey{decision, rule, access}
	c, ok := m.decisionSeries.Load(k)
	if !ok {
		c, _ = m.decisionSeries.LoadOrStore(k, m.decisions.WithLabelValues(decision, rule, access))
	}
	c.(prometheus.Counter).Inc()
	o, ok := m.durationSeries.Load(decision)
	if !ok {
		o, _ = m.durationSeries.LoadOrStore(decision, m.requestDuration.WithLabelValues(decision))
	}
	o.(prometheus.Observer).Observe(took.Seconds())
}

// Upstream records the upstream's time to response headers (proxy.Observer).
func (m *Metrics) Upstream(status int, took time.Duration) {
	class := status / 100
	o, ok := m.upstreamSeries.Load(class)
	if !ok {
		o, _ = m.upstreamSeries.LoadOrStore(class, m.upstream.WithLabelValues(strconv.Itoa(class)+"xx"))
	}
	o.(prometheus.Observer).Observe(took.Seconds())
}

// ClientBodyError counts a request body the client broke or stalled
// (proxy.ClientBodyObserver). reason is one of three fixed values.
func (m *Metrics) ClientBodyError(reason string) {
	m.clientBodies.WithLabelValues(reason).Inc()
}

// CacheLookup counts an entitlement LRU lookup (proxy.CacheObserver).
func (m *Metrics) CacheLookup(hit bool) {
	c, ok := m.cacheSeries.Load(hit)
	if !ok {
		label := "miss"
		if hit {
			label = "hit"
		}
		c, _ = m.cacheSeries.LoadOrStore(hit, m.cache.WithLabelValues(label))
	}
	c.(prometheus.Counter).Inc()
}

// StripeCall counts a Stripe API call and whether it failed.
func (m *Metrics) StripeCall(endpoint string, err error) {
	m.stripeCalls.WithLabelValues(endpoint).Inc()
	if err != nil {
		m.stripeErrors.WithLabelValues(endpoint).Inc()
	}
}

// WebhookEvent counts a webhook delivery; lag > 0 is observed for commits.
// The event type comes from a signed payload, but from outside tollgate:
// its distinct values are bounded all the same.
func (m *Metrics) WebhookEvent(source, eventType, result string, lag time.Duration) {
	m.webhookEvents.WithLabelValues(source, m.webhookTypes.bound(eventType), result).Inc()
	if lag > 0 {
		m.webhookLag.WithLabelValues(source).Observe(lag.Seconds())
	}
}

// StripeAnomalyKinds makes each kind's series exist at 0, so an alert on
// its increase sees the first one.
func (m *Metrics) StripeAnomalyKinds(kinds []string) {
	for _, k := range kinds {
		m.stripeAnomalies.WithLabelValues(m.anomalyKinds.bound(k))
	}
}

// StripeAnomaly counts one of proxy/stripe's fixed anomaly kinds.
func (m *Metrics) StripeAnomaly(kind string) {
	m.stripeAnomalies.WithLabelValues(m.anomalyKinds.bound(kind)).Inc()
}

// StripeTransport counts every call the Stripe SDK makes through rt, by
// endpoint, and its failures (transport errors and non-2xx answers). label
// names a request by its route template from a fixed allow-list
// (stripe.EndpointLabel: "GET /v1/customers/{id}", else "other"); the
// labels never carry IDs, and at most maxEndpoints distinct ones are kept
// whatever label returns.
func (m *Metrics) StripeTransport(rt http.RoundTripper, label func(method, path string) string) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(r)
		failed := err
		if err == nil && resp.StatusCode >= 300 {
			failed = errStatus
		}
		m.StripeCall(m.endpoints.bound(label(r.Method, r.URL.Path)), failed)
		return resp, err
	})
}

// ClerkTransport counts every call the Clerk adapter makes to the Backend
// API through rt, by endpoint, with its failures and its 429s. label names
// a call by its route template from a fixed list (clerk.EndpointLabel), and
// at most maxEndpoints distinct labels are kept whatever it returns.
func (m *Metrics) ClerkTransport(rt http.RoundTripper, label func(method, path string) string) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		endpoint := m.clerkEndpoints.bound(label(r.Method, r.URL.Path))
		resp, err := rt.RoundTrip(r)
		m.clerkCalls.WithLabelValues(endpoint).Inc()
		switch {
		case err != nil:
			m.clerkErrors.WithLabelValues(endpoint).Inc()
		case resp.StatusCode == http.StatusTooManyRequests:
			m.clerkLimited.WithLabelValues(endpoint).Inc()
			m.clerkErrors.WithLabelValues(endpoint).Inc()
		case resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotFound:
			// A 404 is an answer (a session or user Clerk does not know).
			m.clerkErrors.WithLabelValues(endpoint).Inc()
		}
		return resp, err
	})
}

// SessionCheck counts a session check by its result
// (proxy.SessionCheckObserver). result is one of four fixed values.
func (m *Metrics) SessionCheck(result string) {
	m.sessionChecks.WithLabelValues(result).Inc()
}

// SetRefreshStretch gives the gauge of the session check interval's
// stretch its source (the Clerk adapter's RefreshStretch).
func (m *Metrics) SetRefreshStretch(f func() float64) {
	m.stretchMu.Lock()
	m.stretch = f
	m.stretchMu.Unlock()
}

// SetWebhookBacklog gives the backlog gauges their source (the Stripe
// adapter's backlog, read at each scrape: a Get and a cursor's First).
func (m *Metrics) SetWebhookBacklog(f func() (customers int, age time.Duration, err error)) {
	m.backlogMu.Lock()
	m.backlog = f
	m.backlogMu.Unlock()
}

func (m *Metrics) readBacklog() (int, time.Duration) {
	m.backlogMu.Lock()
	f := m.backlog
	m.backlogMu.Unlock()
	if f == nil {
		return 0, 0
	}
	n, age, err := f()
	if err != nil {
		return 0, 0
	}
	return n, age
}

// MeterEvent counts one usage row's outcome (stripe.MeterObserver); result
// is one of five fixed values.
func (m *Metrics) MeterEvent(result string) { m.meterEvents.WithLabelValues(result).Inc() }

// Outbox sets the usage outbox gauges (stripe.MeterObserver).
func (m *Metrics) Outbox(pending, flagged int, oldest time.Duration) {
	m.outbox.WithLabelValues("pending").Set(float64(pending))
	m.outbox.WithLabelValues("flagged").Set(float64(flagged))
	m.outbox.WithLabelValues("oldest_seconds").Set(oldest.Seconds())
}

// EventsPruned counts the processed event IDs a prune forgot (stripe's
// EventsObserver).
func (m *Metrics) EventsPruned(n int) { m.eventsPruned.Add(float64(n)) }

// ReconcileProgress sets the reconcile's progress gauges (stripe's
// ReconcileObserver): pages and subscriptions listed so far, customers
// committed and marked, whether it runs, and when it completed (zero:
// not yet).
func (m *Metrics) ReconcileProgress(pages, subscriptions, committed, marked int, running bool, completed time.Time) {
	m.reconcile.WithLabelValues("pages").Set(float64(pages))
	m.reconcile.WithLabelValues("subscriptions").Set(float64(subscriptions))
	m.reconcile.WithLabelValues("committed").Set(float64(committed))
	m.reconcile.WithLabelValues("marked").Set(float64(marked))
	r := 0.0
	if running {
		r = 1
	}
	m.reconcile.WithLabelValues("running").Set(r)
	if !completed.IsZero() {
		m.reconcileDone.Set(float64(completed.Unix()))
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type statusError struct{}

func (statusError) Error() string { return "non-2xx answer" }

var errStatus error = statusError{}

// Label bounds: how many distinct values a label taken from outside
// tollgate's own code may have before further ones count as "other".
const (
	maxEndpoints     = 64  // Stripe endpoints (an allow-list of about ten)
	maxWebhookTypes  = 400 // Stripe has about 250 event types; Clerk a few dozen
	maxAnomalyKinds  = 8   // proxy/stripe names three
	otherLabel       = "other"
	maxLabelValueLen = 100
)

// labelSet keeps a label's cardinality bounded: the first max distinct
// values are kept, any later one (or an overlong one) is "other".
type labelSet struct {
	max  int
	seen sync.Map // value → struct{}
	mu   sync.Mutex
	n    int
}

func (s *labelSet) bound(v string) string {
	if _, ok := s.seen.Load(v); ok {
		return v
	}
	if v == "" || len(v) > maxLabelValueLen {
		return otherLabel
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen.Load(v); ok {
		return v
	}
	if s.n >= s.max {
		return otherLabel
	}
	s.n++
	s.seen.Store(v, struct{}{})
	return v
}

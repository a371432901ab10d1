// Package stripe is tollgate's Stripe adapter: customers, Checkout, the
// Billing Portal, subscription sync and the webhook handler. It implements
// proxy.Billing and proxy.PriceCatalog with stripe-go v76.
//
// Every path that learns something about a customer (a webhook, the
// Checkout return, Checkout's pre-sync, an account-wide sync) goes through
// one function under one per-customer lock: fetch the customer and all its
// subscriptions from Stripe, commit them to the store together with the
// event ID, then write the committed record through to the LRU. Webhook
// payloads are never trusted beyond the IDs they carry, so duplicate and
// out-of-order deliveries converge on whatever Stripe says now.
//
// Nothing here runs on the gate's request path: package proxy does not
// import this package.
package stripe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate/tollgate/proxy"
)

// Store is the durable state this package needs. Implemented by
// proxy/bolt.Store.
type Store interface {
	// CustomerOf returns the subject's Stripe customer ID, "" when none.
	CustomerOf(ctx context.Context, subject proxy.Subject) (string, error)
	// SubjectOf returns who a customer belongs to.
	SubjectOf(ctx context.Context, customerID string) (proxy.Subject, bool, error)
	// LinkCustomer records subject ↔ customer, both ways.
	LinkCustomer(ctx context.Context, subject proxy.Subject, customerID string) error
	// CommitCustomer stores a freshly synced state and, when eventID is not
	// empty, marks the event processed, in one transaction. It returns the
	// subject's new entitlements (a zero subject and nil when the customer
	// is linked to nobody).
	CommitCustomer(ctx context.Context, state proxy.CustomerState, eventID string) (proxy.Subject, *proxy.Entitlements, error)
	EventProcessed(ctx context.Context, eventID string) (bool, error)
	MarkEvent(ctx context.Context, eventID string) error
	// PruneEvents forgets at most limit events processed before before,
	// the oldest first, and returns how many (prune.go says when).
	PruneEvents(ctx context.Context, before time.Time, limit int) (int, error)
	// HadTrial reports whether the customer ever had a trial.
	HadTrial(ctx context.Context, customerID string) (bool, error)
	Cursor(ctx context.Context, name string) (string, error)
	SetCursor(ctx context.Context, name, value string) error

	// The deferred syncs (proxy.DirtyMark, dirty.go). MarkDirty commits
	// the event ID (when not empty) and the customer's mark in one
	// transaction; ClearDirty removes a mark only if it is still the one
	// read (its Seq), else ages it from syncStart; RetryDirty puts one off.
	MarkDirty(ctx context.Context, customerID, eventID string) error
	DirtyDue(ctx context.Context, now time.Time, limit int) ([]proxy.DirtyMark, time.Time, error)
	ClearDirty(ctx context.Context, m proxy.DirtyMark, syncStart time.Time) (bool, error)
	RetryDirty(ctx context.Context, customerID string, due time.Time) error
	DirtyBacklog(ctx context.Context) (proxy.Backlog, error)
	// StoredCustomer is what the store holds of a customer (ok false:
	// nothing), for the reconcile's comparison.
	StoredCustomer(ctx context.Context, customerID string) (proxy.CustomerState, bool, error)
}

// Cache is the hot-path LRU, written through with committed records.
// Implemented by *cache.EntitlementCache.
type Cache interface {
	Put(s proxy.Subject, e *proxy.Entitlements)
}

// Observer learns what the webhook did, and what Stripe said that points
// at a configuration error or a race, for metrics. Implemented by
// proxy/metrics.
type Observer interface {
	WebhookEvent(source, eventType, result string, lag time.Duration)
	// StripeAnomaly counts one of the Anomaly* kinds.
	StripeAnomaly(kind string)
}

// Kinds of StripeAnomaly: a fixed set, so they can be metric labels.
const (
	// AnomalyCustomerUnseen: Stripe answered resource_missing for a
	// customer tollgate knows. The key belongs to another account or mode
	// than the one the customer was made in: access is kept.
	AnomalyCustomerUnseen = "customer_unseen"
	// AnomalyLivemodeMismatch: a signed event of the other mode than the
	// key's (a test endpoint pointed at a live gateway); ignored.
	AnomalyLivemodeMismatch = "livemode_mismatch"
	// AnomalySeveralLiveSubscriptions: a customer holds more than one live
	// subscription to the configured plans (two checkouts completed in the
	// same instant, or made elsewhere).
	AnomalySeveralLiveSubscriptions = "several_live_subscriptions"
)

// Anomalies lists the StripeAnomaly kinds.
func Anomalies() []string {
	return []string{AnomalyCustomerUnseen, AnomalyLivemodeMismatch, AnomalySeveralLiveSubscriptions}
}

// ErrCustomerUnseen is wrapped by a sync whose customer Stripe answers
// resource_missing for: the key cannot see it (another account or mode).
// Nothing is committed, so access stays as it was.
const ErrCustomerUnseen = errorString("stripe: the key cannot see this customer (resource_missing): is it the key of another account or mode?")

// Config configures a Billing. SecretKey, PublicURL and Store are required.
type Config struct {
	SecretKey      string
	WebhookSecrets []string     // any may match (rotation)
	APIURL         string       // default https://api.stripe.com (stripe-mock, the sandbox)
	PublicURL      *url.URL     // origin visitors see: Checkout's success and cancel URLs
	InternalPrefix string       // default "/.tollgate"
	Plans          []proxy.Plan // price → plan mapping, trial days, trial fees
	// Access is stripe.past_due_grace and stripe.paused_collection: only
	// for CompleteCheckout's Settled.
	Access proxy.AccessPolicy

	Store     Store
	Cache     Cache           // nil: nothing is written through (tests, CLI syncs)
	Directory proxy.Directory // a new customer's email, from Clerk (nil: customers are created without one)

	Observer        Observer         // nil: no metrics
	HTTPClient      *http.Client     // nil: a client with a 20 s timeout
	Logger          *slog.Logger     // nil: discard
	Now             func() time.Time // nil: time.Now
	MaxWebhookBytes int64            // default 512 KiB
	Pacing          Pacing           // zero fields: DefaultPacing
}

// Metadata keys tollgate writes on Stripe objects and reads back.
const (
	MetaUserID     = "clerk_user_id"
	MetaOrgID      = "clerk_org_id"
	MetaSubject    = "subject"     // checkout session: "user:user_…" or "org:org_…"
	MetaReturnPath = "return_path" // checkout session
	MetaPlan       = "plan"        // checkout session: the plan's config key
	// MetaTerms is a checkout session's terms (who, plan, prices, trial,
	// return path) as a digest: an open session with the same terms is
	// handed out again rather than a second one opened.
	MetaTerms = "terms"
)

// CursorSyncAll is the Store cursor SyncAll resumes from: the last
// subscription of the last page it finished.
const CursorSyncAll = "stripe.sync_all"

// ErrSyncRunning is SyncAll's answer while another SyncAll runs.
const ErrSyncRunning = errorString("stripe: a sync of all customers is already running")

type errorString string

func (e errorString) Error() string { return string(e) }

const (
	defaultMaxWebhookBytes = 512 << 10
	webhookTolerance       = 300 * time.Second
	webhookDeadline        = 20 * time.Second
)

// Billing talks to Stripe for tollgate. Safe for concurrent use.
type Billing struct {
	api     *client.API
	store   Store
	cache   Cache
	dir     proxy.Directory
	log     *slog.Logger
	now     func() time.Time
	plans   atomic.Pointer[[]proxy.Plan]       // swapped on a config reload
	access  atomic.Pointer[proxy.AccessPolicy] // swapped on a config reload
	secrets []string
	public  string // public URL without a trailing slash
	prefix  string
	maxBody int64

	obs      Observer
	livemode bool // the key is a live-mode key
	locks    keyedLocks
	// background and visitors are the two lanes of the Stripe budget
	// (Pacing); maxWait is how long a visitor's call may wait for its lane.
	background *bucket
	visitors   *bucket
	maxWait    atomic.Int64
	sessions   *sessionMemo // Checkout Sessions' owners, and IDs Stripe does not know
	// failedKeys counts, per Checkout idempotency key, the creations
	// Stripe failed with a server error: Stripe saves such a failure under
	// its key and replays it for 24 hours, so the next attempt needs
	// another key (checkout.go).
	failedKeys *lru.Cache[string, int]
	// sleep waits for d or until ctx is done; backoffBase is the first wait
	// after a 429. Both are fields so tests can run without real waits.
	sleep        func(ctx context.Context, d time.Duration) error
	backoffBase  time.Duration
	retries      int        // 429 retries on interactive paths
	sweepRetries int        // 429 retries in SyncAll
	sweepRun     sync.Mutex // one SyncAll at a time
	sweepMu      sync.Mutex
	sweeps       map[*sweep]struct{}
	dirtyKick    chan struct{} // wakes the dirty worker (dirty.go)
	pricesMu     sync.RWMutex
	prices       map[string]proxy.Price
}

var (
	_ proxy.Billing      = (*Billing)(nil)
	_ proxy.PriceCatalog = (*Billing)(nil)
)

// New builds a Billing from cfg.
func New(cfg Config) (*Billing, error) {
	if cfg.Store == nil {
		return nil, errors.New("stripe: no store")
	}
	return newBilling(cfg)
}

// CheckKey is what `tollgate check -online` asks of Stripe, without a
// store: the key works and sees every configured price (Ready), and each
// price is active and of the right kind (RefreshPrices). It writes nothing;
// cfg.Store and cfg.Cache are not used.
func CheckKey(ctx context.Context, cfg Config) error {
	cfg.Store, cfg.Cache = nil, nil
	b, err := newBilling(cfg)
	if err != nil {
		return err
	}
	if err := b.Ready(ctx); err != nil {
		return err
	}
	return b.RefreshPrices(ctx)
}

// newBilling is New without the store check: a Billing without a store
// may only call Stripe, never commit (CheckKey).
func newBilling(cfg Config) (*Billing, error) {
	if cfg.SecretKey == "" {
		return nil, errors.New("stripe: no secret key")
	}
	if cfg.PublicURL == nil || cfg.PublicURL.Scheme == "" || cfg.PublicURL.Host == "" {
		return nil, errors.New("stripe: public URL must be absolute")
	}
	apiURL := cfg.APIURL
	if apiURL == "" {
		apiURL = proxy.DefaultStripeAPIURL
	}
	if u, err := url.Parse(apiURL); err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("stripe: api url %q is not an absolute URL", apiURL)
	}
	b := &Billing{
		store:        cfg.Store,
		cache:        cfg.Cache,
		obs:          cfg.Observer,
		livemode:     keyLivemode(cfg.SecretKey),
		dir:          cfg.Directory,
		log:          cfg.Logger,
		now:          cfg.Now,
		public:       strings.TrimSuffix(cfg.PublicURL.String(), "/"),
		prefix:       "/" + strings.Trim(cfg.InternalPrefix, "/"),
		maxBody:      cfg.MaxWebhookBytes,
		background:   newBucket(DefaultPacing().Background),
		visitors:     newBucket(DefaultPacing().Visitors),
		sessions:     newSessionMemo(sessionMemoSize, sessionMemoTTL),
		failedKeys:   mustLRU[string, int](sessionMemoSize),
		sleep:        sleepCtx,
		backoffBase:  time.Second,
		retries:      2,
		sweepRetries: 8,
		sweeps:       map[*sweep]struct{}{},
		dirtyKick:    make(chan struct{}, 1),
		prices:       map[string]proxy.Price{},
	}
	for _, s := range cfg.WebhookSecrets {
		if s = strings.TrimSpace(s); s != "" {
			b.secrets = append(b.secrets, s)
		}
	}
	switch {
	case cfg.InternalPrefix == "":
		b.prefix = "/.tollgate"
	case b.prefix == "/":
		b.prefix = ""
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.maxBody <= 0 {
		b.maxBody = defaultMaxWebhookBytes
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 20 * time.Second}
	}
	b.api = client.New(cfg.SecretKey, stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(apiURL),
		HTTPClient:        hc,
		MaxNetworkRetries: stripe.Int64(2),
		LeveledLogger:     sdkLogger{b.log},
		EnableTelemetry:   stripe.Bool(false),
	}))
	b.SetPlans(cfg.Plans)
	b.SetAccess(cfg.Access)
	b.SetPacing(cfg.Pacing)
	return b, nil
}

// SetAccess replaces the access policy (a config reload).
func (b *Billing) SetAccess(p proxy.AccessPolicy) { b.access.Store(&p) }

// Plans returns the plans prices are mapped to.
func (b *Billing) Plans() []proxy.Plan { return *b.plans.Load() }

// configuredPrices are the price IDs of the current plans (recurring
// prices and trial fees), each once.
func (b *Billing) configuredPrices() []string {
	var out []string
	for _, p := range b.Plans() {
		meter := ""
		if p.Meter != nil {
			meter = p.Meter.Price
		}
		for _, id := range append(slices.Clone(p.Prices), p.TrialFeePrice, meter) {
			if id != "" && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// SetPlans replaces the plans (a config reload): later syncs and checkouts
// map prices with them.
func (b *Billing) SetPlans(plans []proxy.Plan) {
	p := append([]proxy.Plan(nil), plans...)
	b.plans.Store(&p)
}

// keyLivemode reports whether a secret key is a live-mode one: sk_live_…
// or rk_live_… (docs.stripe.com/keys).
func keyLivemode(key string) bool {
	return strings.HasPrefix(key, "sk_live_") || strings.HasPrefix(key, "rk_live_")
}

// Livemode reports whether the key is a live-mode key.
func (b *Billing) Livemode() bool { return b.livemode }

// Ready checks the key itself: the account answers (GET /v1/account) and
// every configured price exists for it. A key of another account or mode
// than the prices' fails here, whatever the store holds; a customer the
// key cannot see never does (it is one customer, not the key).
func (b *Billing) Ready(ctx context.Context) error {
	bud := b.backgroundBudget(b.retries)
	err := b.call(ctx, bud, func() error {
		// stripe-go's Accounts.Get takes no params, hence no context:
		// the same call through its backend, with one.
		p := &stripe.AccountParams{}
		p.Context = ctx
		c := b.api.Accounts
		return c.B.Call(http.MethodGet, "/v1/account", c.Key, p, &stripe.Account{})
	})
	switch {
	case stripeStatus(err) == http.StatusForbidden:
		// A restricted key without the Account permission: it
		// authenticated, which is what this asks.
	case err != nil:
		return fmt.Errorf("stripe ready: account: %w", stripeFailure(err))
	}
	var missing []string
	for _, id := range b.configuredPrices() {
		err := b.call(ctx, bud, func() error {
			p := &stripe.PriceParams{}
			p.Context = ctx
			_, err := b.api.Prices.Get(id, p)
			return err
		})
		switch {
		case isResourceMissing(err):
			missing = append(missing, id)
		case err != nil:
			return fmt.Errorf("stripe ready: price %s: %w", id, stripeFailure(err))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("stripe ready: the key (%s mode) cannot see the configured prices %s: is it the key of another account or mode?",
			modeName(b.livemode), strings.Join(missing, ", "))
	}
	return nil
}

func modeName(live bool) string {
	if live {
		return "live"
	}
	return "test"
}

// anomaly counts one of the Anomaly* kinds.
func (b *Billing) anomaly(kind string) {
	if b.obs != nil {
		b.obs.StripeAnomaly(kind)
	}
}

// Price implements proxy.PriceCatalog from what RefreshPrices last loaded.
func (b *Billing) Price(id string) (proxy.Price, bool) {
	b.pricesMu.RLock()
	defer b.pricesMu.RUnlock()
	p, ok := b.prices[id]
	return p, ok
}

// RefreshPrices loads every configured price (plan prices and trial fees)
// for the pages, and reports the ones that are missing, inactive, or of the
// wrong kind (plan prices recurring, trial fees one-time). Prices it could
// load are kept even when it returns an error. Call it at start and now and
// then in the background, never per request.
func (b *Billing) RefreshPrices(ctx context.Context) error {
	fees := map[string]bool{}
	meters := map[string]string{} // metered price → the event_name its meter must have
	for _, p := range b.Plans() {
		if p.TrialFeePrice != "" {
			fees[p.TrialFeePrice] = true
		}
		if p.Meter != nil {
			meters[p.Meter.Price] = p.Meter.EventName
		}
	}
	var errs []error
	got := map[string]proxy.Price{}
	for _, id := range b.configuredPrices() {
		var sp *stripe.Price
		err := b.call(ctx, b.backgroundBudget(b.retries), func() (err error) {
			p := &stripe.PriceParams{}
			p.Context = ctx
			sp, err = b.api.Prices.Get(id, p)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("price %s: %w", id, stripeFailure(err)))
			continue
		}
		pr := proxy.Price{ID: sp.ID, Amount: sp.UnitAmount, Currency: string(sp.Currency)}
		if sp.Recurring != nil {
			pr.Interval, pr.IntervalCount = string(sp.Recurring.Interval), sp.Recurring.IntervalCount
			pr.Metered = sp.Recurring.UsageType == stripe.PriceRecurringUsageTypeMetered
		}
		got[id] = pr
		recurring := sp.Type == stripe.PriceTypeRecurring || sp.Recurring != nil
		switch {
		case !sp.Active:
			errs = append(errs, fmt.Errorf("price %s is not active", id))
		case fees[id] && recurring:
			errs = append(errs, fmt.Errorf("price %s is a trial fee but recurring; want a one-time price", id))
		case !fees[id] && !recurring:
			errs = append(errs, fmt.Errorf("price %s is one-time; plan prices must be recurring", id))
		default:
			if err := b.checkMetered(ctx, sp, meters); err != nil {
				errs = append(errs, err)
			}
		}
	}
	b.pricesMu.Lock()
	for id, p := range got {
		b.prices[id] = p
	}
	b.pricesMu.Unlock()
	return errors.Join(errs...)
}

// checkMetered holds a recurring price to its place in the config: a
// plan's meter.price must be metered (recurring[usage_type]=metered) and
// backed by the meter whose event_name the plan names
// (recurring[meter], GET /v1/billing/meters/{id}); any other plan price
// must not be metered, as Checkout would refuse it a quantity.
func (b *Billing) checkMetered(ctx context.Context, sp *stripe.Price, meters map[string]string) error {
	metered := sp.Recurring != nil && sp.Recurring.UsageType == stripe.PriceRecurringUsageTypeMetered
	event, isMeter := meters[sp.ID]
	switch {
	case !isMeter && metered:
		return fmt.Errorf("price %s is metered; a plan's metered price goes under meter: with its meter's event_name", sp.ID)
	case !isMeter:
		return nil
	case !metered:
		return fmt.Errorf("price %s is meter.price but not metered; want a price with usage type metered, backed by the meter %q", sp.ID, event)
	case sp.Recurring.Meter == "":
		return fmt.Errorf("price %s is metered but uses no meter (legacy usage records); want a price backed by the meter %q", sp.ID, event)
	}
	var mt *stripe.BillingMeter
	err := b.call(ctx, b.backgroundBudget(b.retries), func() (err error) {
		p := &stripe.BillingMeterParams{}
		p.Context = ctx
		mt, err = b.api.BillingMeters.Get(sp.Recurring.Meter, p)
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("price %s: meter %s: %w", sp.ID, sp.Recurring.Meter, stripeFailure(err))
	case mt.EventName != event:
		return fmt.Errorf("price %s uses the meter %s, whose event_name is %q; the plan's meter.event_name is %q", sp.ID, mt.ID, mt.EventName, event)
	case mt.Status != stripe.BillingMeterStatusActive:
		return fmt.Errorf("price %s uses the meter %s, which is %s; Stripe drops events sent to an inactive meter", sp.ID, mt.ID, mt.Status)
	}
	return nil
}

// sdkLogger keeps stripe-go quiet: everything it says goes to Debug (the
// errors it logs are returned to us and logged where they matter).
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) logf(format string, v ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, v...), "component", "stripe-go")
	}
}
func (l sdkLogger) Debugf(format string, v ...any) { l.logf(format, v...) }
func (l sdkLogger) Infof(format string, v ...any)  { l.logf(format, v...) }
func (l sdkLogger) Warnf(format string, v ...any)  { l.logf(format, v...) }
func (l sdkLogger) Errorf(format string, v ...any) { l.logf(format, v...) }

// stripeStatus is the HTTP status of a Stripe API error, 0 for others
// (network errors, context errors).
func stripeStatus(err error) int {
	var se *stripe.Error
	if errors.As(err, &se) {
		return se.HTTPStatusCode
	}
	return 0
}

// isResourceMissing reports Stripe's answer for an object the key cannot
// see: 404 with code resource_missing. Another 404 (a proxy, a wrong
// api_url) is a failure like any other.
func isResourceMissing(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) && se.HTTPStatusCode == http.StatusNotFound && se.Code == stripe.ErrorCodeResourceMissing
}

// stripeFailure marks errors that mean "Stripe is not answering properly
// now" (network, 429, 5xx) with proxy.ErrStripeUnavail; a 4xx other than
// 429 is our request's fault and stays as it is.
func stripeFailure(err error) error {
	if err == nil || errors.Is(err, proxy.ErrStripeUnavail) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if st := stripeStatus(err); st >= 400 && st < 500 && st != http.StatusTooManyRequests {
		return err
	}
	return fmt.Errorf("%w: %w", proxy.ErrStripeUnavail, err)
}

// subjectMetadataKey is the metadata key naming a subject of this kind.
func subjectMetadataKey(s proxy.Subject) string {
	if s.Kind == proxy.SubjectOrg {
		return MetaOrgID
	}
	return MetaUserID
}

// subjectFromMetadata adopts a customer created elsewhere through its
// metadata (never by email). An organisation wins over a user when both
// are set: such a customer pays for the organisation.
func subjectFromMetadata(md map[string]string) (proxy.Subject, bool) {
	if s, ok := subjectOfKind(proxy.SubjectOrg, strings.TrimSpace(md[MetaOrgID])); ok {
		return s, true
	}
	return subjectOfKind(proxy.SubjectUser, strings.TrimSpace(md[MetaUserID]))
}

// subjectOfKind reads a subject (proxy.ParseSubject) that must be of kind.
func subjectOfKind(kind proxy.SubjectKind, s string) (proxy.Subject, bool) {
	sub, err := proxy.ParseSubject(s)
	return sub, err == nil && sub.Kind == kind
}

// mustLRU is an LRU of a size fixed in code (only a size below 1 fails).
func mustLRU[K comparable, V any](size int) *lru.Cache[K, V] {
	c, err := lru.New[K, V](size)
	if err != nil {
		panic(err)
	}
	return c
}

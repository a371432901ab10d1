package stripe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
)

// Metered usage (README "Usage billing"): the sender drains the usage
// outbox into Stripe meter events (POST /v1/billing/meter_events,
// stripe-go's billing/meterevent), one row one event, its identifier the
// row's own (proxy.UsageRow.Identifier).

// MeterStore is what the sender needs of the store's usage outbox. bbolt's
// is proxy/bolt (outbox.go), PostgreSQL's proxy/postgres (usage.go).
type MeterStore interface {
	// DueUsage lists up to limit pending rows due at now, oldest first.
	DueUsage(ctx context.Context, now time.Time, limit int) ([]proxy.OutboxEntry, error)
	// SetUsageState records what became of a row; a row marked sent can
	// never change again.
	SetUsageState(ctx context.Context, seq uint64, st proxy.OutboxState) error
	// MeteredUsageBetween sums a subject's rows of a meter whose
	// timestamps fall in [from, to), whatever their state.
	MeteredUsageBetween(ctx context.Context, subject proxy.Subject, eventName string, from, to time.Time) (int64, error)
	// OutboxStats counts the rows by state, with the oldest pending one.
	OutboxStats(ctx context.Context) (proxy.OutboxStats, error)
}

// MeterObserver hears what the sender does, for metrics. Implemented by
// proxy/metrics.
type MeterObserver interface {
	// MeterEvent counts one row's outcome: one of the Meter* results.
	MeterEvent(result string)
	// Outbox reports the outbox after each pass: rows waiting, rows
	// flagged for an admin, and the oldest waiting row's age (0: none).
	Outbox(pending, flagged int, oldest time.Duration)
}

// Outcomes of sending one row, a fixed set for metric labels.
const (
	MeterAccepted  = "accepted"  // Stripe created the event
	MeterDuplicate = "duplicate" // Stripe already holds the identifier: accepted earlier
	MeterRetry     = "retry"     // 429, 5xx, network: sent again after a backoff
	MeterFlagged   = "flagged"   // refused for good, or unconfirmed after a day: an admin decides
	MeterConfirmed = "confirmed" // unconfirmed after a day, but Stripe's summary holds it
)

// Stripe's rules the sender follows.
const (
	// meterUnconfirmedAfter: Stripe enforces an identifier's uniqueness for
	// at least 24 hours (docs.stripe.com/api/billing/meter-event/create,
	// "identifier"). A row first tried longer ago than this is not sent
	// again blindly: Stripe might take it as new and bill it twice.
	meterUnconfirmedAfter = 23 * time.Hour
	// meterMaxAge: a meter event's timestamp "must be within the past 35
	// calendar days" (the same reference, "timestamp").
	meterMaxAge = 35 * 24 * time.Hour
	// meterBatch rows are read from the store per pass.
	meterBatch = 100
	// meterMaxBackoff caps the wait after repeated failures.
	meterMaxBackoff = 5 * time.Minute
)

// DefaultMeterLane paces meter events by the key's mode. Stripe allows
// 1,000 meter-event calls a second in live mode, its own limit apart from
// the rest of the API; in test mode they "count toward the basic limit"
// (docs.stripe.com/billing/subscriptions/usage-based/recording-usage-api,
// "Rate limits"), 25 a second, of which DefaultPacing's two lanes take 20.
func DefaultMeterLane(livemode bool) Lane {
	if livemode {
		return Lane{Rate: 500, Burst: 100}
	}
	return Lane{Rate: 4, Burst: 4}
}

// MeterConfig configures a MeterSender.
type MeterConfig struct {
	Store MeterStore
	// Leader says whether this replica flushes the outbox now: with several
	// replicas only the holder of the store's leader lease sends. nil: always
	// (one gateway per bbolt file; with PostgreSQL, cmd/tollgate runs the
	// sender only among the leader's work, on the lease's context).
	Leader func() bool
	// Lane paces the events (default DefaultMeterLane of the key's mode).
	Lane Lane
	// Interval is how often the outbox is read when idle (default 1s).
	Interval time.Duration
	// Observer hears outcomes and the backlog (nil: none).
	Observer MeterObserver
}

// MeterSender sends the usage outbox to Stripe. One runs per gateway
// (Run); only the leader's sends.
type MeterSender struct {
	b        *Billing
	store    MeterStore
	leader   func() bool
	lane     *bucket
	interval time.Duration
	obs      MeterObserver
	log      *slog.Logger
	now      func() time.Time
	sleep    func(context.Context, time.Duration) error
	kick     chan struct{}

	mu       sync.Mutex
	meters   map[string]string // event_name → meter ID, for summaries
	failures int               // retryable failures in a row
	pause    time.Time         // no sending before: the backoff after a failure, for every row
}

// MeterSender builds the outbox's sender on b's Stripe client.
func (b *Billing) MeterSender(cfg MeterConfig) *MeterSender {
	m := &MeterSender{
		b: b, store: cfg.Store, leader: cfg.Leader, interval: cfg.Interval, obs: cfg.Observer,
		log: b.log, now: b.now, sleep: sleepCtx, kick: make(chan struct{}, 1),
	}
	if m.leader == nil {
		m.leader = func() bool { return true }
	}
	if cfg.Lane.Rate <= 0 || cfg.Lane.Burst <= 0 {
		cfg.Lane = DefaultMeterLane(b.livemode)
	}
	m.lane = newBucket(cfg.Lane)
	if m.interval <= 0 {
		m.interval = time.Second
	}
	return m
}

// Kick wakes the sender: rows were appended.
func (m *MeterSender) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Run sends due rows until ctx ends: a pass, then the wait the pass asks
// for (the interval, or a backoff after a failure), or a Kick.
func (m *MeterSender) Run(ctx context.Context) {
	for ctx.Err() == nil {
		wait := m.interval
		if m.leader() {
			d, err := m.Pass(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				m.log.Warn("stripe: sending usage", "err", err)
			case d < 0:
				continue // a full batch: more rows are due now
			case d > 0:
				// Woken at least every interval, so the backlog's
				// gauges stay fresh through a long backoff.
				wait = min(d, m.interval)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-m.kick:
			t.Stop()
		}
	}
}

func (m *MeterSender) report(ctx context.Context) {
	if m.obs == nil {
		return
	}
	if st, err := m.store.OutboxStats(ctx); err == nil {
		var age time.Duration
		if !st.Oldest.IsZero() {
			age = max(m.now().Sub(st.Oldest), 0)
		}
		m.obs.Outbox(st.Pending, st.Flagged, age)
	}
}

// Pass sends the rows due now, oldest first, one at a time (Stripe allows
// one concurrent call per customer and meter), paced by the lane. It stops
// at the first retryable failure and returns how long to back off; a
// negative wait says the batch was full and more rows may be due now.
//
// With several replicas only the leader sends, and a row is settled only
// by Stripe's answer: a leader that loses its lease mid-request, or a
// store write that fails after Stripe accepted, leaves the row pending,
// and the next attempt (here or on the new leader) meets the identifier
// Stripe holds and settles it. A leader change neither loses nor repeats
// a row.
func (m *MeterSender) Pass(ctx context.Context) (time.Duration, error) {
	// The outbox's pending rows and their lag, after every pass, failed or
	// not (README "Usage billing": the lag is visible while Stripe fails).
	defer m.report(ctx)
	m.mu.Lock()
	pause := m.pause.Sub(m.now())
	m.mu.Unlock()
	if pause > 0 {
		return pause, nil // a Kick during a backoff sends nothing
	}
	rows, err := m.store.DueUsage(ctx, m.now(), meterBatch)
	if err != nil {
		return 0, err
	}
	for _, e := range rows {
		if !m.leader() {
			return 0, nil // the lease moved: the new leader goes on
		}
		if d := m.lane.reserve(1); d > 0 {
			if err := m.sleep(ctx, d); err != nil {
				return 0, err
			}
		}
		st, result, err := m.send(ctx, e)
		if err != nil {
			return 0, err
		}
		if err := m.store.SetUsageState(ctx, e.Row.Seq, st); err != nil {
			return 0, fmt.Errorf("usage row %d: %w", e.Row.Seq, err)
		}
		if m.obs != nil {
			m.obs.MeterEvent(result)
		}
		switch result {
		case MeterRetry:
			m.log.Warn("stripe: meter event not accepted; backing off", "identifier", e.Row.Identifier(),
				"attempts", st.Attempts, "retry_at", st.Next, "why", st.Note)
			return st.Next.Sub(m.now()), nil
		case MeterFlagged:
			m.log.Error("stripe: meter event flagged for an admin", "identifier", e.Row.Identifier(), "why", st.Note)
		}
	}
	if len(rows) == meterBatch {
		return -1, nil
	}
	return 0, nil
}

// send decides and, when it may, sends one row; it returns the row's new
// state and the outcome. err is only for what stops the pass (the context,
// the store).
func (m *MeterSender) send(ctx context.Context, e proxy.OutboxEntry) (proxy.OutboxState, string, error) {
	now := m.now()
	st := e.State
	switch {
	case now.Sub(e.Row.At) > meterMaxAge:
		return flagged(st, now, "timestamp older than Stripe's 35 days"), MeterFlagged, nil
	case st.Attempts > 0 && !st.First.IsZero() && now.Sub(st.First) >= meterUnconfirmedAfter:
		return m.confirm(ctx, e, now)
	}
	if st.First.IsZero() {
		st.First = now
	}
	st.Attempts++
	err := m.post(ctx, &e.Row)
	if ctx.Err() != nil {
		return st, "", ctx.Err()
	}
	out, note := classifyMeterError(err)
	return m.next(st, out, note, now), out, nil
}

// post creates the meter event.
func (m *MeterSender) post(ctx context.Context, r *proxy.UsageRow) error {
	p := &stripe.BillingMeterEventParams{
		EventName:  stripe.String(r.EventName),
		Identifier: stripe.String(r.Identifier()),
		Payload: map[string]string{
			"stripe_customer_id": r.Customer,
			"value":              strconv.FormatInt(r.Value, 10),
		},
		Timestamp: stripe.Int64(r.At.Unix()),
	}
	// No Idempotency-Key of ours: Stripe saves a 500 under a key and
	// replays it for a day (docs.stripe.com/api/idempotent_requests), which
	// would pin a row to its first failure. stripe-go makes a key per
	// call, shared by its own retries; the identifier is what dedupes.
	p.Context = ctx
	_, err := m.b.api.BillingMeterEvents.New(p)
	return err
}

// classifyMeterError maps Stripe's answer to an outcome:
//   - nil: accepted.
//   - 400 "An event already exists with identifier …": Stripe holds the
//     identifier, so an earlier attempt was accepted; counts as accepted.
//     Stripe gives this refusal no code of its own, only the message and
//     Stripe-Should-Retry: false (langfuse/langfuse#16292 shows the real
//     answer), so the message is what is matched.
//   - 429, 5xx, 409 (a lock or an idempotent request in flight), 401 and
//     403 (the key, not the row), network errors: retried with backoff.
//   - any other 4xx: the row is at fault (a customer Stripe does not
//     know, a value it refuses): flagged, never retried forever.
func classifyMeterError(err error) (result, note string) {
	if err == nil {
		return MeterAccepted, ""
	}
	var se *stripe.Error
	if !errors.As(err, &se) {
		return MeterRetry, "network: " + err.Error()
	}
	note = fmt.Sprintf("%d %s", se.HTTPStatusCode, se.Type)
	if se.Code != "" {
		note += " " + string(se.Code)
	}
	if se.Msg != "" {
		note += ": " + se.Msg
	}
	switch s := se.HTTPStatusCode; {
	case s == http.StatusBadRequest && strings.HasPrefix(se.Msg, "An event already exists with identifier"):
		return MeterDuplicate, "duplicate"
	case s == http.StatusTooManyRequests, s >= 500, s == http.StatusConflict,
		s == http.StatusUnauthorized, s == http.StatusForbidden, s == 0:
		return MeterRetry, note
	}
	return MeterFlagged, note
}

// next is a row's state after an outcome: the pure part of the state
// machine.
func (m *MeterSender) next(st proxy.OutboxState, result, note string, now time.Time) proxy.OutboxState {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch result {
	case MeterAccepted, MeterDuplicate, MeterConfirmed:
		m.failures = 0
		st.Status, st.Done, st.Next, st.Note = proxy.OutboxSent, now, time.Time{}, note
	case MeterFlagged:
		m.failures = 0
		st = flagged(st, now, note)
	default:
		m.failures++
		d := min(time.Second<<min(m.failures-1, 16), meterMaxBackoff)
		d = d/2 + rand.N(d/2+1)
		st.Status, st.Next, st.Note = proxy.OutboxPending, now.Add(d), note
		m.pause = st.Next
	}
	return st
}

func flagged(st proxy.OutboxState, now time.Time, note string) proxy.OutboxState {
	st.Status, st.Done, st.Next, st.Note = proxy.OutboxFlagged, now, time.Time{}, note
	return st
}

// confirm settles a row first tried about a day ago or more without an
// answer Stripe gave for it: it asks Stripe's meter event summary for the
// row's customer and meter over the minute of its timestamp, and compares
// it with every row the outbox holds for that subject, meter and minute.
// Equal: Stripe holds them all, this one included: sent. Otherwise, or when
// the summary cannot be read: flagged for an admin, never re-sent blindly.
func (m *MeterSender) confirm(ctx context.Context, e proxy.OutboxEntry, now time.Time) (proxy.OutboxState, string, error) {
	from := e.Row.At.Truncate(time.Minute)
	to := from.Add(time.Minute)
	want, err := m.store.MeteredUsageBetween(ctx, e.Row.Subject, e.Row.EventName, from, to)
	if err != nil {
		return e.State, "", err
	}
	got, err := m.summary(ctx, e.Row.EventName, e.Row.Customer, from, to)
	if ctx.Err() != nil {
		return e.State, "", ctx.Err()
	}
	switch {
	case err != nil:
		return flagged(e.State, now, "unconfirmed for a day; Stripe's summary unreadable: "+err.Error()), MeterFlagged, nil
	case got == want:
		return m.next(e.State, MeterConfirmed, "summary", now), MeterConfirmed, nil
	}
	return flagged(e.State, now, fmt.Sprintf("unconfirmed for a day; Stripe's summary for %s–%s is %d, the outbox's %d",
		from.Format(time.RFC3339), to.Format(time.RFC3339), got, want)), MeterFlagged, nil
}

// summary reads Stripe's aggregated value of a customer's events of a
// meter in [from, to) (GET /v1/billing/meters/{id}/event_summaries).
func (m *MeterSender) summary(ctx context.Context, eventName, customer string, from, to time.Time) (int64, error) {
	id, err := m.meterID(ctx, eventName)
	if err != nil {
		return 0, err
	}
	p := &stripe.BillingMeterEventSummaryListParams{
		ID: stripe.String(id), Customer: stripe.String(customer),
		StartTime: stripe.Int64(from.Unix()), EndTime: stripe.Int64(to.Unix()),
	}
	p.Context = ctx
	var total float64
	err = m.b.call(ctx, m.b.backgroundBudget(m.b.retries), func() error {
		total = 0
		it := m.b.api.BillingMeterEventSummaries.List(p)
		for it.Next() {
			total += it.BillingMeterEventSummary().AggregatedValue
		}
		return it.Err()
	})
	if err != nil {
		return 0, err
	}
	return int64(total), nil
}

// meterID finds the active meter of eventName (GET /v1/billing/meters),
// remembered once found.
func (m *MeterSender) meterID(ctx context.Context, eventName string) (string, error) {
	m.mu.Lock()
	id := m.meters[eventName]
	m.mu.Unlock()
	if id != "" {
		return id, nil
	}
	found := map[string]string{}
	err := m.b.call(ctx, m.b.backgroundBudget(m.b.retries), func() error {
		p := &stripe.BillingMeterListParams{Status: stripe.String(string(stripe.BillingMeterStatusActive))}
		p.Context = ctx
		it := m.b.api.BillingMeters.List(p)
		for it.Next() {
			mt := it.BillingMeter()
			found[mt.EventName] = mt.ID
		}
		return it.Err()
	})
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	m.meters = found
	m.mu.Unlock()
	if id = found[eventName]; id == "" {
		return "", fmt.Errorf("no active meter with event_name %q", eventName)
	}
	return id, nil
}

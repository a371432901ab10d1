package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Usage billed through Stripe Meters (README "Usage billing").
//
// A plan with a meter: reports what its subjects use as Stripe meter
// events. Usage passes through a durable outbox in the store: a flush
// appends immutable UsageRows (in the same transaction as the usage
// counters), and one sender, on the leader, posts each row as one meter
// event until Stripe accepts it or says its identifier already exists.

// PlanMeter is a plan's meter: { event_name: …, price: price_… }.
type PlanMeter struct {
	// EventName is the Stripe Billing Meter's event_name, sent with each
	// meter event.
	EventName string
	// Price is the metered price (recurring[usage_type]=metered, backed by
	// the meter) that Checkout adds to the plan's subscription.
	Price string
}

// MaxMeterEventName is Stripe's limit on event_name (maxLength 100 in the
// OpenAPI spec of POST /v1/billing/meter_events).
const MaxMeterEventName = 100

// ValidMeterEventName reports whether name can be a meter's event_name as
// tollgate writes it: 1 to 100 characters (Stripe's maxLength), printable
// ASCII without spaces, so that it reads the same in YAML, URLs and logs.
func ValidMeterEventName(name string) bool {
	if name == "" || len(name) > MaxMeterEventName {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// UsageRow is one row of the usage outbox: units a subject used of a
// metered plan in a window, to be sent to Stripe as one meter event. A row
// is immutable once appended; what happened to it is its OutboxState.
type UsageRow struct {
	// Writer and Seq are assigned by the store when the row is appended:
	// Writer names the store's opening or the replica that wrote it, Seq
	// counts the store's rows and is never reused, not after a crash, not
	// after a failed transaction; together never twice, not even after a
	// store is restored from a backup.
	Writer string
	Seq    uint64
	// Subject used the units; Customer is its Stripe customer when the
	// row was written (the meter event's payload[stripe_customer_id]).
	Subject  Subject
	Customer string
	// EventName is the meter's event_name.
	EventName string
	// Window is the start of the window the units were counted in (whole
	// seconds, UTC); At is the meter event's timestamp, within it.
	Window time.Time
	At     time.Time
	// Value is the units used: the sum of the requests' costs, > 0.
	Value int64
}

// Validate checks a row before it is appended (Writer and Seq aside,
// which the store assigns).
func (r *UsageRow) Validate() error {
	switch {
	case !r.Subject.Valid():
		return fmt.Errorf("usage row: invalid subject %q", r.Subject)
	case !strings.HasPrefix(r.Customer, "cus_") || strings.ContainsAny(r.Customer, " \x00"):
		return fmt.Errorf("usage row: invalid customer %q", r.Customer)
	case !ValidMeterEventName(r.EventName):
		return fmt.Errorf("usage row: invalid event name %q", r.EventName)
	case r.Window.IsZero() || r.At.Before(r.Window):
		return errors.New("usage row: the timestamp is before its window")
	case r.Value <= 0:
		return fmt.Errorf("usage row: value %d; want > 0", r.Value)
	}
	return nil
}

// MaxMeterIdentifier is Stripe's limit on a meter event's identifier
// (maxLength 100 in the OpenAPI spec of POST /v1/billing/meter_events).
const MaxMeterIdentifier = 100

// Identifier is the row's meter event identifier: its own key, made of
// its subject, meter, window, writer and sequence, as
//
//	user_2abc.api_requests.1767225600.w3f9a1c2e.42
//
// Stripe enforces an identifier's uniqueness for at least 24 hours and
// refuses a second event with it (docs.stripe.com/api/billing/meter-event/create),
// so two rows must never share one: the writer and sequence alone make it
// unique, and a late flush, a retried transaction or another replica
// writes under another sequence or writer. When the readable form would
// pass Stripe's 100 characters, the subject and meter are replaced by a
// hash of both (the writer and sequence keep it unique).
func (r *UsageRow) Identifier() string {
	tail := "." + strconv.FormatInt(r.Window.Unix(), 10) + ".w" + r.Writer + "." + strconv.FormatUint(r.Seq, 10)
	id := r.Subject.ID + "." + r.EventName + tail
	if len(id) <= MaxMeterIdentifier && !strings.ContainsAny(r.EventName, ".") {
		return id
	}
	sum := sha256.Sum256([]byte(r.Subject.String() + "\x00" + r.EventName))
	return "h" + hex.EncodeToString(sum[:12]) + tail
}

// OutboxStatus is where a row stands.
type OutboxStatus uint8

const (
	// OutboxPending: not yet accepted by Stripe; sent again when due.
	OutboxPending OutboxStatus = iota
	// OutboxSent: Stripe accepted it, or answered that its identifier
	// already exists (an earlier attempt was accepted). Never sent again.
	OutboxSent
	// OutboxFlagged: Stripe refused it for good (a 4xx other than 429 and
	// the duplicate identifier), or it stayed unconfirmed for about 23
	// hours and Stripe's meter event summaries could not confirm it. An
	// admin decides; it is never sent again on its own.
	OutboxFlagged
)

func (s OutboxStatus) String() string {
	switch s {
	case OutboxPending:
		return "pending"
	case OutboxSent:
		return "sent"
	case OutboxFlagged:
		return "flagged"
	}
	return "unknown"
}

// OutboxState is what the sender did with a row: the only part of the
// outbox that changes.
type OutboxState struct {
	Status   OutboxStatus
	Attempts int
	// First is the first attempt: Stripe's uniqueness of the identifier
	// runs from about then, so a row first tried a day ago is not sent
	// again blindly.
	First time.Time
	// Next is when a pending row is due again (zero: now).
	Next time.Time
	// Done is when it was sent or flagged.
	Done time.Time
	// Note is the last failure, or why it was flagged, or "duplicate" /
	// "summary" when it was confirmed another way than a plain 200. Never
	// a key or a token: Stripe's error message and code.
	Note string
}

// OutboxEntry is a row with its state.
type OutboxEntry struct {
	Row   UsageRow
	State OutboxState
}

// OutboxStats sum up the outbox for the metrics and the admin console.
type OutboxStats struct {
	Pending int       // rows not yet accepted
	Oldest  time.Time // when the oldest pending row was written (its At); zero when none
	Flagged int       // rows that need an admin
	Sent    int       // rows accepted, kept until pruned
}

// ErrUsageSettled is returned for a change to a row Stripe accepted: a
// row marked sent is never sent again, nor made pending or flagged.
var ErrUsageSettled = errors.New("usage row already sent")

// ErrNoUsageRow is returned for a sequence the outbox does not hold.
var ErrNoUsageRow = errors.New("no such usage row")

// UsageOutbox is everything a store keeps of the usage outbox: what
// storetest.UsageOutbox holds every store to. Its consumers ask for less
// (stripe.MeterStore, admin.Outbox, gateway.OutboxReader, MeteredUsage).
type UsageOutbox interface {
	MeteredUsage
	// AppendUsage writes rows in one transaction, all or none, and returns
	// them with the writer and sequence the store gave them.
	AppendUsage(ctx context.Context, rows []UsageRow) ([]UsageRow, error)
	// DueUsage lists up to limit pending rows whose Next has come at now,
	// oldest first.
	DueUsage(ctx context.Context, now time.Time, limit int) ([]OutboxEntry, error)
	// SetUsageState records what became of a row (ErrUsageSettled once
	// sent, ErrNoUsageRow for none).
	SetUsageState(ctx context.Context, seq uint64, st OutboxState) error
	UsageEntry(ctx context.Context, seq uint64) (OutboxEntry, error)
	OutboxStats(ctx context.Context) (OutboxStats, error)
	FlaggedUsage(ctx context.Context, limit int) ([]OutboxEntry, error)
	MeteredUsageBetween(ctx context.Context, subject Subject, eventName string, from, to time.Time) (int64, error)
	// PruneUsage deletes the sent rows whose timestamp is before before
	// (UsageRetention), never a pending or flagged one, and returns how
	// many it deleted.
	PruneUsage(ctx context.Context, before time.Time) (int, error)
}

// UsageRetention is how long a sent row is kept after its timestamp
// before it is pruned (README "Usage billing"). What reads sent rows: the
// account page sums a subject's rows since its billing period began, and
// a period can last three years (Stripe's longest recurring interval:
// "Maximum of three years interval allowed", recurring.interval_count in
// its API reference); and the sender's check of a row unconfirmed after 23
// hours sums the rows of its minute, which runs only for rows younger than
// Stripe's 35 days (older ones are flagged). Three years and five weeks
// keep both whole.
const UsageRetention = (3*366 + 35) * 24 * time.Hour

// MeteredUsage reads what a subject used of a meter since a time, for the
// account page: the sum of the outbox rows written for it, sent or not.
// bbolt's is proxy/bolt (outbox.go), PostgreSQL's proxy/postgres (usage.go).
type MeteredUsage interface {
	MeteredUsage(ctx context.Context, subject Subject, eventName string, since time.Time) (int64, error)
}

// MeterWindowLength is how much usage one row carries: a subject's use of
// a meter in one hour becomes one meter event, not one a request or one a
// counters' flush. At one event a busy subject a second, a thousand busy
// subjects would pass Stripe's 1,000 meter-event calls a second in live
// mode (docs.stripe.com/billing/subscriptions/usage-based/recording-usage-api,
// "Rate limits"); an hour's row keeps a million subjects under 300 a
// second. The window's count is durable with the usage counters, and its
// row is written in the transaction that closes it.
const MeterWindowLength = time.Hour

// MeterWindow is the window that holds t: the UTC hour, cut at a
// subscription period's boundary inside that hour, so that a row's usage
// and its timestamp (MeterTimestamp) belong to one invoice. periodEnd is a
// boundary near t: the end of the period t falls in (or of the one before
// it); zero when none is known, for the plain hour.
func MeterWindow(t, periodEnd time.Time) (start, end time.Time) {
	return MeterWindowOf(MeterWindowLength, t, periodEnd)
}

// MeterWindowOf is MeterWindow with windows of length (meter_window: whole
// seconds dividing an hour), for demos and tests that cannot wait an hour.
func MeterWindowOf(length time.Duration, t, periodEnd time.Time) (start, end time.Time) {
	if length <= 0 {
		length = MeterWindowLength
	}
	t = t.UTC()
	start = t.Truncate(length)
	end = start.Add(length)
	if b := periodEnd.UTC(); !periodEnd.IsZero() && b.After(start) && b.Before(end) {
		if t.Before(b) {
			end = b
		} else {
			start = b
		}
	}
	return start, end
}

// MeterTimestamp is the meter event's timestamp for a window's row: its
// last whole second, inside the window and so inside its invoice's period.
func MeterTimestamp(start, end time.Time) time.Time {
	if ts := end.Add(-time.Second).Truncate(time.Second); !ts.Before(start) {
		return ts
	}
	return start
}

// MeterKey names one count of metered usage: a subject's use of a meter
// in one window (MeterWindow), billed to Customer, the Stripe customer of
// the subscription that granted the requests.
type MeterKey struct {
	Subject    Subject
	Customer   string
	EventName  string
	Start, End time.Time
}

// MeterCount is a meter window's count as one process counted it: an
// absolute value (never a delta), so that saving it twice, or an older
// value after a newer one, changes nothing (README "Usage billing").
type MeterCount struct {
	Key  MeterKey
	Used int64
}

// MeterKeyFor is the key a request of subject on a metered plan counts
// under at now: the meter window holding now, cut at the subscription's
// period end (MeterWindow), billed to the subscription's customer.
func MeterKeyFor(length time.Duration, subject Subject, sub *Subscription, eventName string, now time.Time) MeterKey {
	var periodEnd time.Time
	var customer string
	if sub != nil {
		// This period's end, or the one before it when now already passed
		// it (the renewal not yet synced): MeterWindow cuts at it only when
		// it falls inside now's hour.
		periodEnd, customer = sub.CurrentPeriodEnd, sub.CustomerID
	}
	start, end := MeterWindowOf(length, now, periodEnd)
	return MeterKey{Subject: subject, Customer: customer, EventName: eventName, Start: start, End: end}
}

// UsageRowFor is the outbox row billing value units of key's window,
// stamped inside the window (MeterTimestamp).
func UsageRowFor(key MeterKey, value int64) UsageRow {
	return UsageRow{Subject: key.Subject, Customer: key.Customer, EventName: key.EventName,
		Window: key.Start, At: MeterTimestamp(key.Start, key.End), Value: value}
}

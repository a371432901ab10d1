package proxy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Plans with limits (README "Limits"): a plan's limits: entries and the
// free: section, read by proxy/config; the pure parts of enforcing them
// (which entry applies, the quota's window, GCRA) are here, and the
// in-memory state with its durable counters is proxy/limits'.

// QuotaPeriod is the window a quota counts in.
type QuotaPeriod uint8

const (
	PeriodNone QuotaPeriod = iota
	PeriodHour
	PeriodDay
	PeriodMonth
)

func (p QuotaPeriod) String() string {
	switch p {
	case PeriodHour:
		return "hour"
	case PeriodDay:
		return "day"
	case PeriodMonth:
		return "month"
	}
	return ""
}

// Limit is one entry of a plan's limits: a GCRA rate with its burst, a
// quota, or both. The zero value limits nothing.
type Limit struct {
	Rate   int           // requests per Per (rate: 10/s); 0: no rate limit
	Per    time.Duration // time.Second, time.Minute or time.Hour
	Burst  int           // burst, default Rate
	Quota  int64         // requests (or cost units) per Period; 0: no quota
	Period QuotaPeriod
}

// Interval is GCRA's emission interval: the time one request's share of the
// rate takes.
func (l *Limit) Interval() time.Duration { return l.Per / time.Duration(l.Rate) }

// LimitEntry is one key of limits:: a route ID, or "*" for every route the
// plan unlocks that has no entry of its own.
type LimitEntry struct {
	Route string
	Limit Limit
}

// LimitFor is the one entry that applies to routeID: its own (route IDs
// compare without regard to case), else "*"; nil when neither exists. It
// allocates nothing.
func (p *Plan) LimitFor(routeID string) *LimitEntry {
	var star *LimitEntry
	for i := range p.Limits {
		e := &p.Limits[i]
		if e.Route == "*" {
			star = e
		} else if routeID != "" && strings.EqualFold(e.Route, routeID) {
			return e
		}
	}
	return star
}

// FreePlanKey is the plan name free: goes by (X-Tollgate-Plan, counters,
// metrics).
const FreePlanKey = "free"

// ErrLimitSyntax is wrapped by ParseRate's and ParseQuota's errors.
var ErrLimitSyntax = errors.New("bad limit")

// ParseRate reads "N/s", "N/m" or "N/h" (also second, minute, hour): N
// requests per unit, N from 1 to 1,000,000.
func ParseRate(s string) (n int, per time.Duration, err error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want N/s, N/m or N/h: %w", s, ErrLimitSyntax)
	}
	v, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || v < 1 || v > 1_000_000 {
		return 0, 0, fmt.Errorf("%q: want a whole number of requests from 1 to 1000000 before the /: %w", s, ErrLimitSyntax)
	}
	switch strings.TrimSpace(unit) {
	case "s", "sec", "second":
		per = time.Second
	case "m", "min", "minute":
		per = time.Minute
	case "h", "hour":
		per = time.Hour
	default:
		return 0, 0, fmt.Errorf("%q: the unit after / must be s, m or h: %w", s, ErrLimitSyntax)
	}
	return v, per, nil
}

// ParseQuota reads "N/hour", "N/day" or "N/month", N from 1 to 10^12.
func ParseQuota(s string) (n int64, period QuotaPeriod, err error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want N/hour, N/day or N/month: %w", s, ErrLimitSyntax)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || v < 1 || v > 1e12 {
		return 0, 0, fmt.Errorf("%q: want a whole number from 1 to 1000000000000 before the /: %w", s, ErrLimitSyntax)
	}
	switch strings.TrimSpace(unit) {
	case "hour":
		period = PeriodHour
	case "day":
		period = PeriodDay
	case "month":
		period = PeriodMonth
	default:
		return 0, 0, fmt.Errorf("%q: the period after / must be hour, day or month: %w", s, ErrLimitSyntax)
	}
	return v, period, nil
}

// QuotaAnchor is the moment a subscription's monthly quota windows are
// counted from: Stripe's billing_cycle_anchor, which "sets the day of
// month for month and year intervals" (Stripe API reference, Subscription
// object, billing_cycle_anchor; stripe-go v76 Subscription.BillingCycleAnchor),
// so a yearly plan's monthly quota resets on the anchor's day each month.
// A subscription synced before tollgate kept the anchor has its current
// period's end instead, which Stripe sets on the same day (unless that
// month was shorter); a comp without an end, nothing (UTC calendar months).
func (sub *Subscription) QuotaAnchor() time.Time {
	if sub == nil {
		return time.Time{}
	}
	if !sub.BillingCycleAnchor.IsZero() {
		return sub.BillingCycleAnchor
	}
	return sub.CurrentPeriodEnd
}

// QuotaWindow is the window [start, end) of a quota that holds now. Hours
// and days are UTC calendar ones. Months follow anchor when it is set:
// each starts on the anchor's day of the month at its time of day (UTC),
// or on the month's last day when the month is shorter, as Stripe bills a
// subscription anchored on the 31st on the last day of shorter months
// (Stripe docs, "Billing cycle"); with no anchor they are UTC calendar
// months (free:).
func QuotaWindow(period QuotaPeriod, anchor, now time.Time) (start, end time.Time) {
	now = now.UTC()
	switch period {
	case PeriodHour:
		start = now.Truncate(time.Hour)
		return start, start.Add(time.Hour)
	case PeriodDay:
		start = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	case PeriodMonth:
	default:
		return time.Time{}, time.Time{}
	}
	if anchor.IsZero() {
		start = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	anchor = anchor.UTC().Truncate(time.Second)
	k := (now.Year()-anchor.Year())*12 + int(now.Month()) - int(anchor.Month())
	for addMonths(anchor, k).After(now) {
		k--
	}
	for !addMonths(anchor, k+1).After(now) {
		k++
	}
	return addMonths(anchor, k), addMonths(anchor, k+1)
}

// addMonths is anchor k months on, on the anchor's day or the month's last.
func addMonths(anchor time.Time, k int) time.Time {
	y, m := anchor.Year(), int(anchor.Month())-1+k
	y += m / 12
	m %= 12
	if m < 0 {
		m += 12
		y--
	}
	month := time.Month(m + 1)
	day := min(anchor.Day(), time.Date(y, month+1, 0, 0, 0, 0, 0, time.UTC).Day())
	return time.Date(y, month, day, anchor.Hour(), anchor.Minute(), anchor.Second(), 0, time.UTC)
}

// GCRAResult is one GCRA decision.
type GCRAResult struct {
	Allowed bool
	TAT     int64         // the new theoretical arrival time (unix nanoseconds) to keep
	Remain  int           // requests that could come now, after this one
	Reset   time.Duration // until the burst is whole again
	Retry   time.Duration // refused: until one request would pass
}

// GCRA decides one request at now against the theoretical arrival time
// tat (0: none yet) with emission interval t and burst: the generic cell
// rate algorithm, the virtual-scheduling form (ITU-T I.371). A request
// passes when it is no earlier than tat - t*burst; it moves tat on by t.
//
// A kept tat is never more than t*burst ahead of the clock when it is set,
// so one further ahead means the wall clock stepped back (NTP, a VM
// resumed, the sandbox clock): it is capped at now + t*burst, an empty
// bucket, so that a step back costs a subject at most one interval's wait
// rather than the step's length (red team, issue 18). A refusal's TAT is
// the capped one, for the caller to keep.
func GCRA(tat, now int64, t time.Duration, burst int) GCRAResult {
	ti, tau := int64(t), int64(t)*int64(burst)
	if tat < now {
		tat = now
	} else if tat > now+tau {
		tat = now + tau
	}
	next := tat + ti
	if allowAt := next - tau; now < allowAt {
		return GCRAResult{TAT: tat, Retry: time.Duration(allowAt - now), Reset: time.Duration(tat - now),
			Remain: 0}
	}
	remain := int((tau - (next - now)) / ti)
	return GCRAResult{Allowed: true, TAT: next, Remain: max(remain, 0), Reset: time.Duration(next - now)}
}

// CeilSeconds is d in whole seconds, rounded up, at least 0: what
// Retry-After and the RateLimit fields carry.
func CeilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(math.Ceil(d.Seconds()))
}

// LimitSubject is whose counters a request spends: the subject whose
// subscription granted it (the organisation for an organisation plan), or
// for free:, the user (an organisation's own key: the organisation).
func LimitSubject(d *PaidDecision, id *Identity) Subject {
	if d.Subject.ID != "" {
		return d.Subject
	}
	if id == nil {
		return Subject{}
	}
	if id.UserID != "" {
		return Subject{Kind: SubjectUser, ID: id.UserID}
	}
	return Subject{Kind: SubjectOrg, ID: id.OrgID}
}

// QuotaKey names one quota counter: a subject's use of one limits: entry
// of one plan in one window. Start and End are whole seconds, UTC.
type QuotaKey struct {
	Subject Subject
	Plan    string // plan key, or FreePlanKey
	Route   string // the limits: entry: a route ID or "*"
	Start   time.Time
	End     time.Time
}

// QuotaCount is a counter's value: units used in the window (a store's
// answer sums every replica's), and the quota it counts against when known.
type QuotaCount struct {
	Key   QuotaKey
	Used  int64
	Quota int64 // 0: not known to the store (the config has it)
}

// ReplicaHeartbeat is one replica's row in a shared store's heartbeats
// (README "Limits", "Enforcement and its bounds"): each replica enforces
// 1/n of a rate, n the live rows.
type ReplicaHeartbeat struct {
	ID        string    `json:"id"`
	Host      string    `json:"host"` // the host name it runs on
	Started   time.Time `json:"started_at"`
	Heartbeat time.Time `json:"heartbeat_at"`
	// Age is the heartbeat's age on the store's clock, in seconds.
	Age  float64 `json:"age_seconds"`
	Live bool    `json:"live"`
	Self bool    `json:"self"` // the replica answering
}

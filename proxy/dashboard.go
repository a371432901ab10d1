package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The admin dashboard is made of counters a store keeps up to date as it
// writes subscriptions, so that reading it never walks the subscriptions:
// every subscription adds a few facts (SubscriptionFacts), the store adds
// a subscription's facts when it stores it and takes them away when it
// replaces or drops it, and BuildDashboard turns the sums into figures.

// DashboardDays is how many days of new and cancelled subscriptions the
// dashboard shows (the store reads the dated counters of that many days).
const DashboardDays = 90

// MonthlyAmount normalises amount, charged every count intervals, to one
// month: a year is 12 months, a month has 52/12 weeks and 365/12 days.
// ok is false for an interval that is none of day, week, month, year.
func MonthlyAmount(amount int64, interval string, count int64) (float64, bool) {
	if count <= 0 {
		count = 1
	}
	a := float64(amount) / float64(count)
	switch interval {
	case "day":
		return a * 365 / 12, true
	case "week":
		return a * 52 / 12, true
	case "month":
		return a, true
	case "year":
		return a / 12, true
	}
	return 0, false
}

// TrialOutcome says how a subscription's trial went.
type TrialOutcome string

const (
	TrialRunning   TrialOutcome = "running"   // still in its trial (or waiting for its first payment)
	TrialConverted TrialOutcome = "converted" // paid on after the trial
	TrialLost      TrialOutcome = "lost"      // ended at or before the trial's end, unpaid
)

// TrialOutcome is "" for a subscription that never had a trial. A trial
// converted when the subscription went on past it: it is active, past
// due, unpaid or paused now, or it ended after the trial did.
func (s *Subscription) TrialOutcome() TrialOutcome {
	if s.TrialEnd.IsZero() && s.Status != StatusTrialing {
		return ""
	}
	switch s.Status {
	case StatusTrialing, StatusIncomplete:
		return TrialRunning
	case StatusActive, StatusPastDue, StatusUnpaid, StatusPaused:
		return TrialConverted
	case StatusCanceled:
		if !s.EndedAt.IsZero() && !s.TrialEnd.IsZero() && s.EndedAt.After(s.TrialEnd) {
			return TrialConverted
		}
		return TrialLost
	case StatusIncompleteExpired:
		return TrialLost
	}
	return ""
}

// started reports whether a subscription in this status ever began: an
// incomplete one waits for its first payment, and an expired incomplete
// one never got it.
func started(st SubscriptionStatus) bool {
	return st.Known() && st != StatusIncomplete && st != StatusIncompleteExpired
}

// FactKind names what a Counter counts.
type FactKind string

const (
	FactStatus      FactKind = "status"       // subscriptions in Status on Plan
	FactRevenue     FactKind = "revenue"      // and what they cost, per Currency, Interval and IntervalCount
	FactNew         FactKind = "new"          // subscriptions that began (were created) on Day
	FactCanceled    FactKind = "canceled"     // subscriptions that ended on Day
	FactTrial       FactKind = "trial"        // subscriptions that had a trial, by Outcome
	FactTrialEnding FactKind = "trial_by_day" // the same, by the Day the trial ends (or ended)
)

// dated reports whether a kind's counters are per day (Day set).
func (k FactKind) dated() bool { return k == FactNew || k == FactCanceled || k == FactTrialEnding }

// Fact is what one counter counts.
type Fact struct {
	Kind          FactKind
	Day           string // YYYY-MM-DD, UTC, for the dated kinds
	Status        SubscriptionStatus
	Plan          string
	Currency      string
	Interval      string
	IntervalCount int64
	Outcome       TrialOutcome
}

// Counter is a fact's tally: how many subscriptions, and (FactRevenue)
// the sum of their amounts.
type Counter struct {
	Fact
	Count  int64
	Amount int64
}

// Key encodes the fact for a store, in an order where a dated kind's
// counters sort by day ("new\x00" then the day): a store reads a window by
// seeking to DatedKey(kind, first day).
func (f Fact) Key() string {
	fields := []string{string(f.Kind)}
	if f.Kind.dated() {
		fields = append(fields, f.Day)
	}
	fields = append(fields, string(f.Status), f.Plan, f.Currency, f.Interval, strconv.FormatInt(f.IntervalCount, 10), string(f.Outcome))
	return strings.Join(fields, "\x00")
}

// DatedKey is where a dated kind's counters of day and later begin.
func DatedKey(kind FactKind, day time.Time) string {
	return string(kind) + "\x00" + day.UTC().Format(time.DateOnly)
}

// DatedKinds are the kinds whose counters are per day.
func DatedKinds() []FactKind { return []FactKind{FactNew, FactCanceled, FactTrialEnding} }

// ErrBadFactKey is wrapped by ParseFactKey's errors.
var ErrBadFactKey = errors.New("not a dashboard counter key")

// ParseFactKey reads a key Fact.Key wrote.
func ParseFactKey(key string) (Fact, error) {
	fields := strings.Split(key, "\x00")
	if len(fields) == 0 {
		return Fact{}, ErrBadFactKey
	}
	f := Fact{Kind: FactKind(fields[0])}
	if f.Kind.dated() {
		if len(fields) < 2 {
			return Fact{}, fmt.Errorf("%w: %q", ErrBadFactKey, key)
		}
		f.Day, fields = fields[1], fields[1:]
	}
	if len(fields) != 7 {
		return Fact{}, fmt.Errorf("%w: %q", ErrBadFactKey, key)
	}
	n, err := strconv.ParseInt(fields[5], 10, 64)
	if err != nil {
		return Fact{}, fmt.Errorf("%w: %q: %w", ErrBadFactKey, key, err)
	}
	f.Status, f.Plan, f.Currency, f.Interval, f.IntervalCount, f.Outcome = SubscriptionStatus(fields[1]), fields[2], fields[3], fields[4], n, TrialOutcome(fields[6])
	return f, nil
}

// day is t's UTC date, "" for the zero time.
func day(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.DateOnly)
}

// SubscriptionFacts are what one subscription adds to the dashboard's
// counters. They depend on the subscription alone (never on the time of
// asking), so a store that adds them when it stores a subscription and
// subtracts them when it replaces it keeps every counter exact. A comp is
// no subscription: it adds nothing.
func SubscriptionFacts(s *Subscription) []Counter {
	if s.Comp || s.Status == "" {
		return nil
	}
	out := []Counter{{Fact: Fact{Kind: FactStatus, Status: s.Status, Plan: s.Plan}, Count: 1}}
	if s.Amount != 0 && s.Currency != "" && s.Interval != "" {
		out = append(out, Counter{Fact: Fact{Kind: FactRevenue, Status: s.Status, Plan: s.Plan, Currency: strings.ToLower(s.Currency),
			Interval: s.Interval, IntervalCount: max(s.IntervalCount, 1)}, Count: 1, Amount: s.Amount})
	}
	if d := day(s.Created); d != "" && started(s.Status) {
		out = append(out, Counter{Fact: Fact{Kind: FactNew, Day: d, Plan: s.Plan}, Count: 1})
	}
	if s.Status == StatusCanceled {
		if d := day(cmp.Or(s.EndedAt, s.CurrentPeriodEnd)); d != "" {
			out = append(out, Counter{Fact: Fact{Kind: FactCanceled, Day: d, Plan: s.Plan}, Count: 1})
		}
	}
	if o := s.TrialOutcome(); o != "" {
		out = append(out, Counter{Fact: Fact{Kind: FactTrial, Plan: s.Plan, Outcome: o}, Count: 1})
		if d := day(s.TrialEnd); d != "" {
			out = append(out, Counter{Fact: Fact{Kind: FactTrialEnding, Day: d, Plan: s.Plan, Outcome: o}, Count: 1})
		}
	}
	return out
}

// Money is an amount in a currency's minor unit.
type Money struct {
	Currency string // ISO code, lower case
	Minor    int64
}

// Format renders it as Price.Format does: "$12.00", "12.00 CHF".
func (m Money) Format() string { return Price{Amount: m.Minor, Currency: m.Currency}.Format() }

// PlanBreakdown is one plan's line of the dashboard ("" : subscriptions to
// prices no configured plan lists).
type PlanBreakdown struct {
	Plan                                string
	Active, Trialing, PastDue, Canceled int64
	Other                               int64 // in any other status
	MRR, TrialMRR                       []Money

	activeMRR, trialMRR map[string]float64 // sums while building
}

// DayCount is one day's new and cancelled subscriptions.
type DayCount struct {
	Day           time.Time // midnight UTC
	New, Canceled int64
}

// TrialStats are trials: running now, and how those that ended went, in
// all and among those whose trial ended in the last Days days.
type TrialStats struct {
	Running, Converted, Lost int64
	Days                     int
	RecentConverted          int64
	RecentLost               int64
}

// Rate is converted / (converted + lost), in percent; ok is false when no
// trial has ended.
func (t TrialStats) Rate() (pct float64, ok bool) { return rate(t.Converted, t.Lost) }

// RecentRate is Rate over the trials that ended in the last Days days.
func (t TrialStats) RecentRate() (pct float64, ok bool) { return rate(t.RecentConverted, t.RecentLost) }

func rate(won, lost int64) (float64, bool) {
	if won+lost == 0 {
		return 0, false
	}
	return 100 * float64(won) / float64(won+lost), true
}

// Dashboard is the admin dashboard's figures.
type Dashboard struct {
	// MRR is monthly recurring revenue per currency: active and past-due
	// subscriptions, each normalised to a month (MonthlyAmount). Trials
	// are apart in TrialMRR (what they bring once they convert) and not
	// counted in MRR.
	MRR, TrialMRR                       []Money
	Active, Trialing, PastDue, Canceled int64
	Other                               int64 // unpaid, incomplete, paused, …
	Unpriced                            int64 // active or past-due subscriptions of unknown amount, not in MRR
	Plans                               []PlanBreakdown
	Days                                []DayCount // the last DashboardDays days, oldest first, today last
	Trials                              TrialStats
}

// Window sums the last n days of Days.
func (d *Dashboard) Window(n int) (added, canceled int64) {
	for _, dc := range d.Days[max(len(d.Days)-n, 0):] {
		added += dc.New
		canceled += dc.Canceled
	}
	return added, canceled
}

// BuildDashboard turns a store's counters into the dashboard at now: the
// undated counters, and the dated ones of the last DashboardDays days
// (older ones are ignored).
func BuildDashboard(counters []Counter, now time.Time) Dashboard {
	today := now.UTC().Truncate(24 * time.Hour)
	first := today.AddDate(0, 0, 1-DashboardDays)
	d := Dashboard{Trials: TrialStats{Days: DashboardDays}}
	byDay := make(map[string]*DayCount, DashboardDays)
	for i := range DashboardDays {
		day := first.AddDate(0, 0, i)
		d.Days = append(d.Days, DayCount{Day: day})
	}
	for i := range d.Days {
		byDay[d.Days[i].Day.Format(time.DateOnly)] = &d.Days[i]
	}
	plans := map[string]*PlanBreakdown{}
	plan := func(key string) *PlanBreakdown {
		p := plans[key]
		if p == nil {
			p = &PlanBreakdown{Plan: key, activeMRR: map[string]float64{}, trialMRR: map[string]float64{}}
			plans[key] = p
		}
		return p
	}
	mrr, trialMRR := map[string]float64{}, map[string]float64{}
	for _, c := range counters {
		switch c.Kind {
		case FactStatus:
			p := plan(c.Plan)
			switch c.Status {
			case StatusActive:
				d.Active += c.Count
				p.Active += c.Count
			case StatusTrialing:
				d.Trialing += c.Count
				p.Trialing += c.Count
			case StatusPastDue:
				d.PastDue += c.Count
				p.PastDue += c.Count
			case StatusCanceled:
				d.Canceled += c.Count
				p.Canceled += c.Count
			default:
				d.Other += c.Count
				p.Other += c.Count
			}
		case FactRevenue:
			m, ok := MonthlyAmount(c.Amount, c.Interval, c.IntervalCount)
			if !ok {
				continue
			}
			p := plan(c.Plan)
			switch c.Status {
			case StatusActive, StatusPastDue:
				mrr[c.Currency] += m
				p.activeMRR[c.Currency] += m
			case StatusTrialing:
				trialMRR[c.Currency] += m
				p.trialMRR[c.Currency] += m
			}
		case FactNew, FactCanceled:
			dc := byDay[c.Day]
			if dc == nil {
				continue
			}
			if c.Kind == FactNew {
				dc.New += c.Count
			} else {
				dc.Canceled += c.Count
			}
		case FactTrial:
			switch c.Outcome {
			case TrialRunning:
				d.Trials.Running += c.Count
			case TrialConverted:
				d.Trials.Converted += c.Count
			case TrialLost:
				d.Trials.Lost += c.Count
			}
		case FactTrialEnding:
			if byDay[c.Day] == nil {
				continue
			}
			switch c.Outcome {
			case TrialConverted:
				d.Trials.RecentConverted += c.Count
			case TrialLost:
				d.Trials.RecentLost += c.Count
			}
		}
	}
	// Subscriptions whose amount is unknown: counted, not in MRR.
	priced := int64(0)
	for _, c := range counters {
		if c.Kind == FactRevenue && (c.Status == StatusActive || c.Status == StatusPastDue) {
			if _, ok := MonthlyAmount(c.Amount, c.Interval, c.IntervalCount); ok {
				priced += c.Count
			}
		}
	}
	d.Unpriced = max(d.Active+d.PastDue-priced, 0)
	d.MRR, d.TrialMRR = monies(mrr), monies(trialMRR)
	for _, p := range plans {
		p.MRR, p.TrialMRR = monies(p.activeMRR), monies(p.trialMRR)
		p.activeMRR, p.trialMRR = nil, nil
		d.Plans = append(d.Plans, *p)
	}
	// Configured plans by name, the unconfigured ("") last.
	slices.SortFunc(d.Plans, func(a, b PlanBreakdown) int {
		if (a.Plan == "") != (b.Plan == "") {
			if a.Plan == "" {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Plan, b.Plan)
	})
	return d
}

// monies rounds per-currency sums to the minor unit, by currency.
func monies(sums map[string]float64) []Money {
	out := make([]Money, 0, len(sums))
	for cur, v := range sums {
		out = append(out, Money{Currency: cur, Minor: int64(math.Round(v))})
	}
	slices.SortFunc(out, func(a, b Money) int { return cmp.Compare(a.Currency, b.Currency) })
	return out
}

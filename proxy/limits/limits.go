// Package limits enforces plans' limits (README "Limits"): a GCRA rate per
// subject, in memory, and quotas whose counters live in memory and are
// flushed to the store about every second. The decisions themselves are
// the domain's (proxy.GCRA, proxy.QuotaWindow); this package keeps their
// state and its durability.
//
// Durability: a flush writes each counter's absolute value for this
// replica (never a delta), and a store keeps the larger of what it holds
// and what it is given. Writing the same flush twice, or an older one
// after a newer, changes nothing, so a crash can lose what was counted
// since the last flush (one interval) and can never count a request twice.
package limits

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Store keeps quota counters. bbolt's is proxy/bolt (quotas.go), PostgreSQL's
// proxy/postgres (quotas.go); the suite
// every store passes is storetest.QuotaCounters.
type Store interface {
	// QuotaCount reads one counter: own is what replica last saved, total
	// the sum over every replica (own included).
	QuotaCount(ctx context.Context, replica string, key proxy.QuotaKey) (own, total int64, err error)
	// SaveQuotaCounts saves each counter's absolute value for replica,
	// keeping the larger where the store holds more: idempotent.
	SaveQuotaCounts(ctx context.Context, replica string, counts []proxy.QuotaCount) error
	// QuotaUsage lists a subject's counters whose window has not ended at
	// now, summed over replicas, ordered by plan, route and start.
	QuotaUsage(ctx context.Context, subject proxy.Subject, now time.Time) ([]proxy.QuotaCount, error)
	// PruneQuotaCounts deletes counters whose window ended before t.
	PruneQuotaCounts(ctx context.Context, before time.Time) (int, error)
}

// BatchStore is a Store that reads many counters in one round trip
// (PostgreSQL's). A shared store's flush re-reads every counter this
// replica holds, one per subject active in the last IdleCounter: with a
// BatchStore that is one read a flush, not one a subject, so a flush's
// length (and the quota's bound, README "Limits") does not grow with the
// active subjects' round trips.
type BatchStore interface {
	// QuotaCounts answers, for each key in order, what QuotaCount does.
	QuotaCounts(ctx context.Context, replica string, keys []proxy.QuotaKey) (own, total []int64, err error)
}

// MeterStore is a Store that also bills metered usage (README "Usage
// billing"). bbolt's is proxy/bolt (meters.go), PostgreSQL's proxy/postgres
// (usage.go).
type MeterStore interface {
	// SaveUsageCounts saves the quota counters (as SaveQuotaCounts does)
	// and the meter counts in ONE transaction, and in that same
	// transaction appends to the usage outbox a row for every meter
	// window that has ended at now with units not yet billed. Meter
	// counts are absolute per writing process, the larger kept:
	// idempotent. It returns the rows written and the end of the earliest
	// window still open (zero when none), when a flush must run again to
	// close it even with nothing new counted.
	SaveUsageCounts(ctx context.Context, replica string, counts []proxy.QuotaCount, meters []proxy.MeterCount, now time.Time) (rows int, nextClose time.Time, err error)
	// MeteredUsage is what subject used of the meter in windows that
	// began at or after since: billed rows and open windows' counts.
	proxy.MeteredUsage
}

// Replicas is the number of live replicas sharing a store, from their
// heartbeats in it. Each replica enforces 1/n of a rate (README "Limits",
// "Several replicas"). A single-process store (bbolt) is One.
type Replicas interface {
	LiveReplicas() int
}

// MaxReplicas caps the count a Replicas may report: a rate is divided by
// at most this (a forged count cannot overflow the arithmetic).
const MaxReplicas = 1024

// One is the replica count of a store only one process opens.
type One struct{}

func (One) LiveReplicas() int { return 1 }

// Observer hears what the limiter does, for metrics. Implemented by
// proxy/metrics.
type Observer interface {
	Limited(plan, route, reason string)
	QuotaUsed(plan, route string, units int64)
	QuotaFlushed(took time.Duration, err error)
}

type nopObserver struct{}

func (nopObserver) Limited(string, string, string)    {}
func (nopObserver) QuotaUsed(string, string, int64)   {}
func (nopObserver) QuotaFlushed(time.Duration, error) {}

// Options wire a Limiter. Store is required.
type Options struct {
	Store    Store
	Replicas Replicas // nil: One
	// Replica names this process in the store's counters ("" for bbolt,
	// which one process opens).
	Replica string
	// Shared says other replicas write the store's counters too
	// (PostgreSQL): each flush reads their counts again for the counters
	// this replica holds, even while Replicas counts one (README "Limits",
	// "Several replicas").
	Shared   bool
	Observer Observer
	Logger   *slog.Logger
	Now      func() time.Time
	// Billed hears that a flush wrote usage rows to the outbox (the
	// sender's Kick); nil: nobody.
	Billed func()
	// MeterWindow is meter_window (proxy.MeterWindowOf); 0: an hour.
	MeterWindow time.Duration
}

// Limiter holds the rate and quota state of every subject on this replica.
type Limiter struct {
	store    Store
	replicas Replicas
	replica  string
	shared   bool
	obs      Observer
	log      *slog.Logger
	now      func() time.Time

	meterStore MeterStore // nil: the store bills nothing; Count counts in memory only
	billed     func()
	meterWin   time.Duration

	mu        sync.Mutex
	state     map[rateKey]*subjState // per subject, plan and entry: one lookup a request
	quotas    map[quotaKey]*counter  // every counter, for the flush
	meters    map[proxy.MeterKey]*meterCounter
	nextClose time.Time // a flush saves even with nothing new once a meter window ends; zero: at the first flush
	// forgot is the reading of the latest flush that forgot a full bucket
	// (zero: none yet). A bucket made after it starts from it as the
	// latest arrival judged, so that a request which arrived before that
	// flush and waited in the gate is judged as of the flush, when the
	// bucket was full, not at its own arrival against a fresh bucket,
	// which would spend the burst twice (Admit, overtaken).
	forgot time.Time

	flushMu     sync.Mutex // one flush at a time
	lastFlush   time.Time  // of the last successful flush
	lastFlushMu sync.Mutex
}

type rateKey struct {
	subject proxy.Subject
	plan    string
	route   string
}

type window struct {
	anchor     int64 // unix seconds (zero time: calendar)
	start, end time.Time
}

// subjState is what a request of one subject on one entry needs, found
// with one map lookup: the GCRA's theoretical arrival time, the quota's
// current window (worked out once per window) and its counter, and the
// RateLimit-Policy field for them.
type subjState struct {
	tat       int64     // unix ns; 0: none
	seen      time.Time // the latest arrival judged (Admit)
	win       window
	c         *counter
	policy    string            // RateLimit-Policy for policyFor in win
	policyFor *proxy.LimitEntry // the entry policy was written for
}

// meterCounter is this process's count of one meter window: absolute,
// since the process began counting it (the store keeps each process's
// count apart, so nothing is read back at start).
type meterCounter struct {
	used, flushed int64 // guarded by Limiter.mu
}

type quotaKey struct {
	rateKey
	start int64
}

type counter struct {
	key proxy.QuotaKey

	loadMu sync.Mutex // held while the store is read
	loaded bool

	// Guarded by Limiter.mu.
	touched  int64 // when a request last used it, unix ns
	own      int64 // this replica's units in the window (loaded + counted)
	others   int64 // the other replicas', as last read
	inflight int64 // admitted, response not yet seen
	flushed  int64 // own as last saved
	evicted  bool  // a flush dropped it from Limiter.quotas
}

// New builds a Limiter.
func New(o Options) (*Limiter, error) {
	if o.Store == nil {
		return nil, errors.New("limits.New: no store")
	}
	l := &Limiter{store: o.Store, replicas: o.Replicas, replica: o.Replica, shared: o.Shared, obs: o.Observer, log: o.Logger, now: o.Now,
		state: map[rateKey]*subjState{}, quotas: map[quotaKey]*counter{}, meters: map[proxy.MeterKey]*meterCounter{}, billed: o.Billed}
	l.meterStore, _ = o.Store.(MeterStore)
	l.meterWin = o.MeterWindow
	if l.replicas == nil {
		l.replicas = One{}
	}
	if l.obs == nil {
		l.obs = nopObserver{}
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	l.lastFlush = l.now()
	return l, nil
}

// Reason is why a request was refused.
type Reason uint8

const (
	Allowed Reason = iota
	RateLimited
	QuotaExceeded
)

// Admission is the limiter's answer to one request: refused, or admitted
// holding a reservation on its quota that Settle (or Release) ends.
type Admission struct {
	Reason Reason
	Plan   string
	Route  string // the limits: entry
	lim    *proxy.Limit

	// Rate, when the entry has one.
	RateRemain int
	RateReset  time.Duration
	RateRetry  time.Duration

	// Quota, when the entry has one.
	Used       int64 // before this request
	QuotaReset time.Time
	QuotaStart time.Time

	policy string // RateLimit-Policy, made once per subject, entry and window
	c      *counter
	l      *Limiter
}

// Limit is the entry's limit (nil for a zero Admission).
func (a *Admission) Limit() *proxy.Limit { return a.lim }

// RetryAfter is how long a refused client should wait.
func (a *Admission) RetryAfter(now time.Time) time.Duration {
	switch a.Reason {
	case RateLimited:
		return a.RateRetry
	case QuotaExceeded:
		return a.QuotaReset.Sub(now)
	}
	return 0
}

// ArrivalSkew is how much earlier than the latest arrival a bucket judged
// an arrival read from a clock without a monotonic reading (a test's, an
// injected one) may be and still be taken as a request overtaken in the
// gate rather than the clock stepping back (Admit, overtaken).
const ArrivalSkew = time.Second

// overtaken reports whether a request that arrived at arrival was
// overtaken in the gate by the latest one its bucket judged, seen. With
// both times read from time.Now, their monotonic readings decide, however
// far apart: a wall clock stepped back (NTP, a resumed VM) moves no
// monotonic reading back, so it is never taken for an overtaken request.
// Without them, the wall clocks decide, within ArrivalSkew.
func overtaken(arrival, seen time.Time) bool {
	if !arrival.Before(seen) {
		return false
	}
	return monotonic(arrival) && monotonic(seen) || seen.Sub(arrival) <= ArrivalSkew
}

// monotonic reports whether t carries a monotonic clock reading (Round(0)
// strips it, and it is the only part that differs then).
func monotonic(t time.Time) bool { return t != t.Round(0) }

// Admit decides a request of subject on plan's limits: entry e. anchor is
// the monthly quota windows' anchor (proxy.QuotaAnchor; zero: calendar).
// now is the request's arrival, the time the gate decides it at (README
// "Performance": one clock reading a request). Requests pass each other in
// the gate (one waits on the store or on Clerk), so an arrival may be
// earlier than one this bucket has judged already. Such an overtaken
// request (overtaken) is judged at the later arrival: otherwise GCRA's cap
// for a clock stepped back would lower the bucket's tat to the stale
// arrival and give credit back, and the quota window could flip back at
// its end. A clock stepped back is judged at its own time, which
// proxy.GCRA caps. It reads the
// store only the first time a counter is touched; an error then refuses
// nothing and admits nothing: the caller answers 503.
func (l *Limiter) Admit(ctx context.Context, subject proxy.Subject, plan string, e *proxy.LimitEntry, anchor, now time.Time) (Admission, error) {
	lim := &e.Limit
	a := Admission{Plan: plan, Route: e.Route, lim: lim, l: l}
	rk := rateKey{subject: subject, plan: plan, route: e.Route}
	var c *counter
	l.mu.Lock()
	locked := true
	defer func() {
		if locked {
			l.mu.Unlock()
		}
	}()
	st := l.state[rk]
	if st == nil {
		st = &subjState{seen: l.forgot}
		l.state[rk] = st
	}
	if overtaken(now, st.seen) {
		now = st.seen
	} else {
		st.seen = now
	}
	if lim.Quota > 0 {
		// The window is worked out again only when it has ended (or the
		// anchor moved): QuotaWindow's month arithmetic is the costly part.
		wc := st.win
		if wc.end.IsZero() || wc.anchor != anchor.Unix() || now.Before(wc.start) || !now.Before(wc.end) {
			wc.start, wc.end = proxy.QuotaWindow(lim.Period, anchor, now)
			wc.anchor = anchor.Unix()
			st.win, st.c, st.policyFor = wc, nil, nil
		}
		a.QuotaStart, a.QuotaReset = wc.start, wc.end
		c = st.c
		if c == nil || c.evicted {
			qk := quotaKey{rateKey: rk, start: wc.start.Unix()}
			if c != nil {
				// A flush let it go while this state held it: keep
				// counting on it.
				c.evicted = false
				l.quotas[qk] = c
			}
			if c = l.quotas[qk]; c == nil {
				c = &counter{key: proxy.QuotaKey{Subject: subject, Plan: plan, Route: e.Route, Start: wc.start, End: wc.end}}
				l.quotas[qk] = c
			}
			st.c = c
		}
		if !c.loaded {
			l.mu.Unlock()
			locked = false
			if err := l.load(ctx, c); err != nil {
				return Admission{}, err
			}
			l.mu.Lock()
			locked = true
			if c.evicted { // let go while the store was read
				c.evicted = false
				l.quotas[quotaKey{rateKey: rk, start: wc.start.Unix()}] = c
			}
		}
	}
	if st.policyFor != e {
		st.policy, st.policyFor = policyField(plan, lim, a.QuotaStart, a.QuotaReset), e
	}
	a.policy = st.policy
	var g proxy.GCRAResult
	if lim.Rate > 0 {
		n := min(l.replicas.LiveReplicas(), MaxReplicas)
		t, burst := lim.Interval(), lim.Burst
		if n > 1 {
			// This replica's share: 1/n of the rate and of the burst.
			t *= time.Duration(n)
			burst = max(1, (burst+n-1)/n)
		}
		g = proxy.GCRA(st.tat, now.UnixNano(), t, burst)
		a.RateRemain, a.RateReset, a.RateRetry = g.Remain, g.Reset, g.Retry
	}
	if c != nil {
		c.touched = now.UnixNano()
		a.Used = c.own + c.others + c.inflight
		if a.Used >= lim.Quota {
			// Refused on the quota: the rate is not spent, only shown.
			a.Reason = QuotaExceeded
			if g.Allowed {
				a.RateRemain++
			}
			l.obs.Limited(plan, e.Route, "quota")
			return a, nil
		}
	}
	if lim.Rate > 0 {
		if !g.Allowed {
			// Unchanged, or capped after the clock stepped back
			// (proxy.GCRA).
			st.tat = g.TAT
			a.Reason = RateLimited
			l.obs.Limited(plan, e.Route, "rate")
			return a, nil
		}
		st.tat = g.TAT
	}
	if c != nil {
		c.inflight++
		a.c = c
	}
	return a, nil
}

func (l *Limiter) load(ctx context.Context, c *counter) error {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	if c.loaded {
		return nil
	}
	own, total, err := l.store.QuotaCount(ctx, l.replica, c.key)
	if err != nil {
		return fmt.Errorf("quota counter %s: %w", c.key.Subject, err)
	}
	l.mu.Lock()
	c.own += own
	c.others = total - own
	c.flushed = own
	c.loaded = true
	l.mu.Unlock()
	return nil
}

// Settle ends a's reservation with the response's status and cost: a 5xx
// costs nothing, anything else costs cost (at least 0). It is a no-op on
// a refused or already settled Admission.
func (a *Admission) Settle(status int, cost int64) {
	c := a.c
	if c == nil {
		return
	}
	a.c = nil
	l := a.l
	l.mu.Lock()
	c.inflight--
	counted := status < 500 && cost > 0
	if counted {
		c.own += cost
	}
	l.mu.Unlock()
	if counted {
		l.obs.QuotaUsed(a.Plan, a.Route, cost)
	}
}

// Release ends a's reservation without cost: the request never reached
// the upstream.
func (a *Admission) Release() { a.Settle(http.StatusBadGateway, 0) }

// Abandon ends a's reservation at its unit, 1: the upstream had the
// request but its answer never came back (the client went away, or the
// wait timed out), so it may have done the work (README "Limits").
func (a *Admission) Abandon() { a.Settle(http.StatusOK, 1) }

// Holds reports whether a holds a quota reservation still to end.
func (a *Admission) Holds() bool { return a.c != nil }

// ParseCost reads a cost header's value: a whole number from 0 to 10^9;
// anything else costs 1, as an absent header does.
func ParseCost(v string) int64 {
	if v == "" {
		return 1
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1e9 {
		return 1
	}
	return n
}

// Count adds units a metered plan's request cost to subject's meter
// window holding now (proxy.MeterKeyFor, on sub's period and customer;
// README "Usage billing"): the caller counts a request once its response
// arrived and was not a 5xx, with the same cost its quota is debited. The
// next flush saves it with the quota counters and, once the window has
// ended, bills it through the usage outbox in the same transaction.
//
// The window is read under the lock a flush takes before it lets an ended
// window's counter go, so no unit lands on a counter already let go (a
// new one would restart the process's absolute count at zero).
func (l *Limiter) Count(subject proxy.Subject, sub *proxy.Subscription, eventName string, units int64) {
	if units <= 0 {
		return
	}
	l.mu.Lock()
	key := proxy.MeterKeyFor(l.meterWin, subject, sub, eventName, l.now())
	m := l.meters[key]
	if m == nil {
		m = &meterCounter{}
		l.meters[key] = m
	}
	m.used += units
	l.mu.Unlock()
}

// IdleCounter is how long a counter whose count is all in the store stays
// in memory without a request: a subject that comes back later costs one
// read of the store.
const IdleCounter = 5 * time.Minute

// Flush saves every counter that changed since the last flush, then
// forgets counters of ended windows and full rate buckets. With several
// replicas (a shared store) it re-reads the others' counts of the
// counters it holds.
func (l *Limiter) Flush(ctx context.Context) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	start := l.now()
	nowNS := start.UnixNano()
	var counts []proxy.QuotaCount
	var held []*counter
	l.mu.Lock()
	for k, c := range l.quotas {
		if !c.loaded {
			continue
		}
		if c.own != c.flushed {
			counts = append(counts, proxy.QuotaCount{Key: c.key, Used: c.own})
		} else if c.inflight == 0 && (!start.Before(c.key.End) || nowNS-c.touched > int64(IdleCounter)) {
			// Ended, or idle and all on disk: the store has it, and a
			// later request reads it again.
			delete(l.quotas, k)
			c.evicted = true
			continue
		}
		held = append(held, c)
	}
	var meters []proxy.MeterCount
	for k, m := range l.meters {
		if m.used != m.flushed {
			meters = append(meters, proxy.MeterCount{Key: k, Used: m.used})
		} else if !start.Before(k.End) {
			// Saved and ended: the store bills it (now or at the flush
			// that closes its window) without this process.
			delete(l.meters, k)
		}
	}
	closing := l.meterStore != nil && (l.nextClose.IsZero() || !start.Before(l.nextClose))
	for k, st := range l.state {
		// A full bucket and no counter held: nothing to remember.
		if st.tat <= nowNS && (st.c == nil || st.c.evicted) {
			delete(l.state, k)
			l.forgot = start
		}
	}
	l.mu.Unlock()
	var err error
	rows := 0
	if l.meterStore != nil && (len(counts) > 0 || len(meters) > 0 || closing) {
		// Counters, meter counts and the outbox rows of ended windows:
		// one transaction (README "Usage billing").
		var next time.Time
		rows, next, err = l.meterStore.SaveUsageCounts(ctx, l.replica, counts, meters, start)
		if err == nil {
			l.mu.Lock()
			for _, mc := range meters {
				if m := l.meters[mc.Key]; m != nil && m.flushed < mc.Used {
					m.flushed = mc.Used
				}
			}
			l.nextClose = next
			if next.IsZero() {
				l.nextClose = start.Add(MeterWindowCheck)
			}
			l.mu.Unlock()
		}
	} else if len(counts) > 0 {
		err = l.store.SaveQuotaCounts(ctx, l.replica, counts)
	}
	if err == nil && len(counts) > 0 {
		l.mu.Lock()
		for _, qc := range counts {
			if c := l.quotas[quotaKey{rateKey: rateKey{subject: qc.Key.Subject, plan: qc.Key.Plan, route: qc.Key.Route}, start: qc.Key.Start.Unix()}]; c != nil && c.flushed < qc.Used {
				c.flushed = qc.Used
			}
		}
		l.mu.Unlock()
	}
	if err == nil && (l.shared || l.replicas.LiveReplicas() > 1) {
		err = l.reread(ctx, held)
	}
	l.obs.QuotaFlushed(l.now().Sub(start), err)
	if err != nil {
		return fmt.Errorf("quota flush: %w", err)
	}
	if rows > 0 && l.billed != nil {
		l.billed()
	}
	l.lastFlushMu.Lock()
	l.lastFlush = start
	l.lastFlushMu.Unlock()
	return nil
}

// reread gives each held counter the other replicas' counts, in one read
// when the store is a BatchStore.
func (l *Limiter) reread(ctx context.Context, held []*counter) error {
	if len(held) == 0 {
		return nil
	}
	if bs, ok := l.store.(BatchStore); ok {
		keys := make([]proxy.QuotaKey, len(held))
		for i, c := range held {
			keys[i] = c.key
		}
		own, total, err := bs.QuotaCounts(ctx, l.replica, keys)
		if err != nil {
			return err
		}
		if len(own) != len(held) || len(total) != len(held) {
			return fmt.Errorf("quota counters: %d and %d answers for %d keys", len(own), len(total), len(held))
		}
		l.mu.Lock()
		for i, c := range held {
			c.others = total[i] - own[i]
		}
		l.mu.Unlock()
		return nil
	}
	for _, c := range held {
		own, total, err := l.store.QuotaCount(ctx, l.replica, c.key)
		if err != nil {
			return err
		}
		l.mu.Lock()
		c.others = total - own
		l.mu.Unlock()
	}
	return nil
}

// MeterWindowCheck is how often a flush with nothing new looks for meter
// windows to close when the store knows of none open: a window another
// writer left open (a crash) is closed within this.
const MeterWindowCheck = time.Minute

// MeteredUsage is what subject used of the meter eventName in windows
// that end after since (a period's first window may begin before it): the store's (billed rows and open windows)
// and this process's counts not yet flushed (README "Usage billing").
func (l *Limiter) MeteredUsage(ctx context.Context, subject proxy.Subject, eventName string, since time.Time) (int64, error) {
	// No flush between the store's read and memory's: a flush commits its
	// counts before it marks them flushed, and read in between they would
	// count twice (the account page once showed 46 for 43 calls).
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	var n int64
	if l.meterStore != nil {
		var err error
		if n, err = l.meterStore.MeteredUsage(ctx, subject, eventName, since); err != nil {
			return 0, err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, m := range l.meters {
		if k.Subject == subject && k.EventName == eventName && k.End.After(since) {
			if l.meterStore == nil {
				n += m.used
			} else {
				n += m.used - m.flushed
			}
		}
	}
	return n, nil
}

// FlushLag is how long ago the last successful flush began: about the
// flush interval while the store takes writes, growing while it does not.
func (l *Limiter) FlushLag() time.Duration {
	l.lastFlushMu.Lock()
	defer l.lastFlushMu.Unlock()
	return l.now().Sub(l.lastFlush)
}

// Run flushes every interval until ctx ends, then once more (a clean
// shutdown loses nothing). Counters of windows that ended over a day ago
// are pruned from the store once an hour.
func (l *Limiter) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var pruned time.Time
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := l.Flush(fctx); err != nil {
				l.log.Error("quota counters: final flush", "err", err)
			}
			cancel()
			return
		case <-t.C:
		}
		if err := l.Flush(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("quota counters: flush failed; counting on in memory", "err", err)
		}
		if now := l.now(); now.Sub(pruned) > time.Hour {
			pruned = now
			if _, err := l.store.PruneQuotaCounts(ctx, now.Add(-24*time.Hour)); err != nil && ctx.Err() == nil {
				l.log.Warn("quota counters: prune failed", "err", err)
			}
		}
	}
}

// Usage is a subject's counters for pages: the store's, with this
// replica's counts not yet flushed added in.
func (l *Limiter) Usage(ctx context.Context, subject proxy.Subject) ([]proxy.QuotaCount, error) {
	l.flushMu.Lock() // as MeteredUsage: no flush between the two reads
	defer l.flushMu.Unlock()
	out, err := l.store.QuotaUsage(ctx, subject, l.now())
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range out {
		k := out[i].Key
		if c := l.quotas[quotaKey{rateKey: rateKey{subject: k.Subject, plan: k.Plan, route: k.Route}, start: k.Start.Unix()}]; c != nil && c.loaded {
			out[i].Used += c.own - c.flushed
		}
	}
	for _, c := range l.quotas {
		if c.key.Subject == subject && c.loaded && c.flushed == 0 && c.own > 0 && !containsKey(out, c.key) {
			out = append(out, proxy.QuotaCount{Key: c.key, Used: c.own + c.others})
		}
	}
	return out, nil
}

func containsKey(counts []proxy.QuotaCount, k proxy.QuotaKey) bool {
	for _, c := range counts {
		if c.Key.Plan == k.Plan && c.Key.Route == k.Route && c.Key.Start.Equal(k.Start) {
			return true
		}
	}
	return false
}

package stripe

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	stripe "github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
)

// keyedLocks is one mutex per key (a customer, a subject), created on
// demand and dropped when nobody holds or waits for it. Waiting respects
// the caller's context.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	ch   chan struct{} // holds one token while locked
	refs int           // holders and waiters
}

// lock takes key's lock and returns its unlock function.
func (l *keyedLocks) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyedLock{}
	}
	e := l.m[key]
	if e == nil {
		e = &keyedLock{ch: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
		var once sync.Once
		return func() {
			once.Do(func() {
				<-e.ch
				l.release(key, e)
			})
		}, nil
	case <-ctx.Done():
		l.release(key, e)
		return nil, ctx.Err()
	}
}

func (l *keyedLocks) release(key string, e *keyedLock) {
	l.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(l.m, key)
	}
	l.mu.Unlock()
}

// size reports how many keys have holders or waiters (for tests).
func (l *keyedLocks) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

func customerKey(id string) string { return "customer:" + id }
func subjectKey(s string) string   { return "subject:" + s }

// Lane is one share of tollgate's Stripe budget: a token bucket of Rate
// calls a second that holds at most Burst.
type Lane struct {
	Rate  float64
	Burst int
}

// Pacing splits tollgate's Stripe budget in two lanes that cannot drain
// each other. Background is for the work that keeps access right
// (webhooks, the reconcile, catching up on missed events, stale re-syncs,
// price loads, readiness): visitors cannot spend it. Visitors is for what
// a visitor asks for (Checkout, its return, the Billing Portal); a visitor's
// call waits at most MaxWait for its lane, and is refused with a
// proxy.BusyError beyond that, never queued for longer.
type Pacing struct {
	Background Lane
	Visitors   Lane
	MaxWait    time.Duration
}

// DefaultPacing is 10 calls a second (burst 10) for each lane: 20 a second
// in all, below Stripe's 25 a second in test mode and well below its 100 in
// live mode, leaving room for the app's own Stripe calls. A visitor waits
// at most 2 s for a call.
func DefaultPacing() Pacing {
	return Pacing{Background: Lane{Rate: 10, Burst: 10}, Visitors: Lane{Rate: 10, Burst: 10}, MaxWait: 2 * time.Second}
}

// SetPacing replaces the lanes' rates and bursts and MaxWait; a lane or
// MaxWait left zero takes DefaultPacing's. Tokens already taken stay taken.
func (b *Billing) SetPacing(p Pacing) {
	def := DefaultPacing()
	if p.Background.Rate <= 0 || p.Background.Burst <= 0 {
		p.Background = def.Background
	}
	if p.Visitors.Rate <= 0 || p.Visitors.Burst <= 0 {
		p.Visitors = def.Visitors
	}
	if p.MaxWait <= 0 {
		p.MaxWait = def.MaxWait
	}
	b.background.set(p.Background)
	b.visitors.set(p.Visitors)
	b.maxWait.Store(int64(p.MaxWait))
}

// bucket is one lane's token bucket. It runs on the real clock: it paces
// requests, it does not decide anything.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time // time.Now; tests may stop it
}

func newBucket(l Lane) *bucket {
	return &bucket{rate: l.Rate, burst: float64(l.Burst), tokens: float64(l.Burst), now: time.Now}
}

func (b *bucket) set(l Lane) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	b.rate, b.burst = l.Rate, float64(l.Burst)
	b.tokens = min(b.tokens, b.burst)
}

func (b *bucket) refill() {
	now := b.now()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
}

// reserve takes n tokens and says how long to wait before using them.
func (b *bucket) reserve(n int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// room is how many tokens bulk work (the dirty worker, the reconcile)
// leaves in the lane: a fifth of a second's worth, and at least one sync's
// two calls, so an eager sync (an admin's, a stale re-sync) finds them
// there and never waits behind a backlog. It is capped so that a lane with
// a small burst still lets bulk work through. The caller holds b.mu.
func (b *bucket) room() float64 {
	return min(max(2, math.Ceil(b.rate/5)), max(b.burst-2, 0))
}

// reserveAbove takes n tokens if that leaves room() in the lane, and
// otherwise takes nothing and says how long until it would.
func (b *bucket) reserveAbove(n int) (time.Duration, bool) {
	return b.reserveAboveWithin(n, 0)
}

// reserveAboveWithin takes n tokens if that leaves room() in the lane
// now or within the wait it returns, which is at most within; otherwise it
// takes nothing and says how long until it would.
func (b *bucket) reserveAboveWithin(n int, within time.Duration) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	need := float64(n) + b.room()
	if b.tokens >= need {
		b.tokens -= float64(n)
		return 0, true
	}
	d := time.Duration((need - b.tokens) / b.rate * float64(time.Second))
	if d > within {
		return d, false
	}
	b.tokens -= float64(n)
	return d, true
}

// cancel gives back n tokens reserved but not used.
func (b *bucket) cancel(n int) {
	b.mu.Lock()
	b.tokens = min(b.burst, b.tokens+float64(n))
	b.mu.Unlock()
}

// drain empties the bucket after a 429, so concurrent callers slow down too.
func (b *bucket) drain() {
	b.mu.Lock()
	b.tokens = min(b.tokens, 0)
	b.mu.Unlock()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// isRateLimited reports a 429 that is Stripe's rate limiter (stripe-go
// retries only lock_timeout 429s itself).
func isRateLimited(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) && se.HTTPStatusCode == http.StatusTooManyRequests
}

// budget is how one operation pays for its Stripe calls: from which lane,
// with how many tokens already paid for, and whether its calls run under
// a lock (then they never wait and never back off).
type budget struct {
	lane    *bucket
	visitor bool // waits are bounded by Pacing.MaxWait
	retries int  // 429 retries, with backoff, when not under a lock
	prepaid int  // tokens taken before any lock was taken, not spent yet
	locked  bool
}

// backgroundBudget pays from the lane visitors cannot drain.
func (b *Billing) backgroundBudget(retries int) *budget {
	return &budget{lane: b.background, retries: retries}
}

// visitorBudget pays from the visitors' lane.
func (b *Billing) visitorBudget() *budget {
	return &budget{lane: b.visitors, visitor: true, retries: b.retries}
}

// wait takes n tokens from bud's lane, sleeping until they are due. A
// visitor is refused with a proxy.BusyError instead of waiting longer than
// Pacing.MaxWait.
func (b *Billing) wait(ctx context.Context, bud *budget, n int) error {
	d := bud.lane.reserve(n)
	if d <= 0 {
		return nil
	}
	if bud.visitor {
		if limit := time.Duration(b.maxWait.Load()); d > limit {
			bud.lane.cancel(n)
			return &proxy.BusyError{RetryAfter: d}
		}
	}
	if err := b.sleep(ctx, d); err != nil {
		bud.lane.cancel(n)
		return err
	}
	return nil
}

// waitRoom takes n tokens from the background lane for bulk work, waiting
// (on b.sleep) until taking them leaves the lane's room for eager syncs.
func (b *Billing) waitRoom(ctx context.Context, n int) error {
	for {
		d, ok := b.background.reserveAbove(n)
		if ok {
			return nil
		}
		if err := b.sleep(ctx, d); err != nil {
			return err
		}
	}
}

// take pays for one call: from what was paid ahead, else from the lane.
// Under a lock a call never waits: the token is taken as a debt, which
// whoever asks the lane next waits for, outside any lock.
func (b *Billing) take(ctx context.Context, bud *budget) error {
	switch {
	case bud.prepaid > 0:
		bud.prepaid--
		return nil
	case bud.locked:
		bud.lane.reserve(1)
		return nil
	}
	return b.wait(ctx, bud, 1)
}

// call runs one Stripe request paid from bud, retrying a rate-limited
// answer up to bud.retries times with exponential backoff and jitter;
// under a lock it returns the 429 at once (see underLocks).
func (b *Billing) call(ctx context.Context, bud *budget, fn func() error) error {
	for attempt := 0; ; attempt++ {
		if err := b.take(ctx, bud); err != nil {
			return err
		}
		err := fn()
		if err == nil || !isRateLimited(err) {
			return err
		}
		bud.lane.drain()
		if bud.locked || attempt >= bud.retries {
			return err
		}
		if serr := b.backoff(ctx, attempt); serr != nil {
			return errors.Join(err, serr)
		}
	}
}

func (b *Billing) backoff(ctx context.Context, attempt int) error {
	d := min(b.backoffBase<<attempt, 30*b.backoffBase)
	d = d/2 + rand.N(d/2+1)
	b.log.WarnContext(ctx, "stripe: rate limited, backing off", "retry_in", d, "attempt", attempt+1)
	return b.sleep(ctx, d)
}

// underLocks runs fn, which takes locks and makes Stripe calls under them,
// so that no lock is held while waiting on the pacer or backing off: the
// first n calls are paid for before fn runs (waiting, if need be, with no
// lock held), further calls inside fn are taken as debt without waiting,
// and a 429 inside fn makes fn return, after which the backoff happens
// here, with every lock released, and fn runs again. fn must therefore be
// safe to repeat (syncs are; creations carry idempotency keys). Tokens
// paid for and not used are given back. A bud that comes with n tokens
// already paid (bud.prepaid: the dirty worker's, an eager webhook's) does
// not pay again for the first run.
func (b *Billing) underLocks(ctx context.Context, bud *budget, n int, fn func(*budget) error) error {
	for attempt := 0; ; attempt++ {
		if attempt == 0 && bud.prepaid >= n {
			bud.prepaid -= n
		} else if err := b.wait(ctx, bud, n); err != nil {
			return err
		}
		locked := &budget{lane: bud.lane, visitor: bud.visitor, prepaid: n, locked: true}
		err := fn(locked)
		if locked.prepaid > 0 {
			bud.lane.cancel(locked.prepaid)
		}
		if err == nil || !isRateLimited(err) || attempt >= bud.retries {
			return err
		}
		if serr := b.backoff(ctx, attempt); serr != nil {
			return errors.Join(err, serr)
		}
	}
}

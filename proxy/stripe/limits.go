package stripe

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	stripe "github.com/stripe/stripe-go/v76"
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

// bucket is a token bucket in front of every Stripe call, kept below
// Stripe's limits (25 req/s per endpoint in test mode, 100 in live). It
// runs on the real clock: it paces requests, it does not decide anything.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate, burst float64) *bucket {
	return &bucket{rate: rate, burst: burst, tokens: burst}
}

// reserve takes a token and says how long to wait before using it.
func (b *bucket) reserve() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// cancel gives back a token reserved but not used.
func (b *bucket) cancel() {
	b.mu.Lock()
	b.tokens = min(b.burst, b.tokens+1)
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

// call runs one Stripe request through the token bucket, retrying a
// rate-limited answer up to retries times with exponential backoff and
// jitter.
func (b *Billing) call(ctx context.Context, retries int, fn func() error) error {
	for attempt := 0; ; attempt++ {
		if d := b.limit.reserve(); d > 0 {
			if err := b.sleep(ctx, d); err != nil {
				b.limit.cancel()
				return err
			}
		}
		err := fn()
		if err == nil || !isRateLimited(err) || attempt >= retries {
			return err
		}
		b.limit.drain()
		d := min(b.backoffBase<<attempt, 30*b.backoffBase)
		d = d/2 + rand.N(d/2+1)
		b.log.WarnContext(ctx, "stripe: rate limited, backing off", "retry_in", d, "attempt", attempt+1)
		if serr := b.sleep(ctx, d); serr != nil {
			return errors.Join(err, serr)
		}
	}
}

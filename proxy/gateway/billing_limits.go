package gateway

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/tollgate/tollgate/proxy"
)

// Per-user bounds on the billing endpoints that cost Stripe calls
// (Checkout, its return, the portal). Every other endpoint a visitor can
// reach, signed in or not, costs none.
const (
	billingBurst    = 10              // requests a user may make in a row
	billingEvery    = 6 * time.Second // then one more each (10 a minute)
	billingInFlight = 2               // requests of one user at once
	billingUsers    = 10000           // users remembered; the least recent are forgotten
)

// billingLimiter bounds, per user, the requests that cost Stripe calls: a
// token bucket of billingBurst refilled one every billingEvery, and at most
// billingInFlight at once. A request beyond either is refused at once with
// a Retry-After; nothing queues. It runs on the server's clock and carries
// over a config reload.
type billingLimiter struct {
	mu    sync.Mutex
	users *simplelru.LRU[string, *allowance]
}

type allowance struct {
	tokens   float64
	last     time.Time
	inFlight int
}

func newBillingLimiter() *billingLimiter {
	users, err := simplelru.NewLRU[string, *allowance](billingUsers, nil)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return &billingLimiter{users: users}
}

// admit takes one request of user. It returns the function that ends the
// request, or nil and how long to wait before trying again.
func (l *billingLimiter) admit(user string, now time.Time) (func(), time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.users.Get(user)
	if !ok {
		a = &allowance{tokens: billingBurst, last: now}
		l.users.Add(user, a)
	}
	if now.After(a.last) {
		a.tokens = min(billingBurst, a.tokens+float64(now.Sub(a.last))/float64(billingEvery))
		a.last = now
	}
	if a.inFlight >= billingInFlight {
		return nil, time.Second
	}
	if a.tokens < 1 {
		return nil, time.Duration((1 - a.tokens) * float64(billingEvery))
	}
	a.tokens--
	a.inFlight++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			a.inFlight--
			l.mu.Unlock()
		})
	}, 0
}

// admitBilling admits one request of the signed-in visitor to an endpoint
// that costs Stripe calls, or answers 429 with Retry-After (a page or JSON,
// as the request wants) and returns nil.
func (s *Server) admitBilling(w http.ResponseWriter, r *http.Request, id *proxy.Identity) func() {
	done, wait := s.billingLimits.admit(id.UserID, s.now())
	if done == nil {
		w.Header().Set("Retry-After", retryAfter(wait))
		entryFrom(r.Context()).reason = "billing_rate_limited"
		s.writeError(w, r, http.StatusTooManyRequests)
	}
	return done
}

// retryAfter is a Retry-After value: whole seconds, rounded up, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(max(1, int64((d+time.Second-1)/time.Second)), 10)
}

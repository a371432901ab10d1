package clerk

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Clerk's Backend API budget (README "Sessions", "The Backend API budget"):
// "Backend API requests are rate-limited per application instance which is
// identified by the Secret Key", 1,000 requests per 10 s for a production
// instance and 100 for a development one; a 429 carries Retry-After, "the
// number of seconds after which the block expires"
// (https://clerk.com/docs/guides/how-clerk-works/system-limits). The JWKS
// is not counted (Clerk does not limit it, and tollgate fetches it at most
// every 30 s). clerk-sdk-go does not retry a 429, nor does tollgate: a
// refused call fails at once, and the caller decides (the gateway session
// serves its last known answer, within a bound).
const (
	apiWindow           = 10 * time.Second
	apiLimitProduction  = 1000 // requests per apiWindow
	apiLimitDevelopment = 100
	// Shares of the budget, as fractions of the limit: handshake nonce
	// exchanges get a tenth between them (nonce.go), session checks stop
	// at sessionCheckShare of the limit in use (the rest is the users,
	// revocations and nonces' own), and the session check interval
	// stretches from stretchFrom of the limit in use, reaching its most,
	// proxy.MaxRefreshStretch, at sessionCheckShare.
	nonceShare        = 0.10
	sessionCheckShare = 0.85
	stretchFrom       = 0.50
	// apiKeyShare bounds the calls API key verifications (ak_…) make, by
	// their own count over the window, besides the session checks' share
	// they stop at too. Every made-up key costs Clerk one verification
	// (each is new to the verdict cache), so a flood of them would
	// otherwise spend what session checks need; this share is below
	// stretchFrom, so key verifications alone do not even stretch the
	// session check interval, and session checks keep at least
	// sessionCheckShare - apiKeyShare of the limit.
	apiKeyShare = 0.40
	// After a 429 without Retry-After, and for each one that follows
	// another, the wait doubles from backoffMin up to backoffMax.
	backoffMin = time.Second
	backoffMax = time.Minute
)

// apiBudget counts this client's Backend API calls over a sliding window
// and remembers Clerk's 429s, so that tollgate holds back before Clerk has
// to say so, and after it has.
type apiBudget struct {
	now   func() time.Time
	limit float64 // requests per apiWindow

	mu      sync.Mutex
	calls   slidingCount // every call
	keys    slidingCount // API key verifications (keyRoom)
	blocked time.Time    // no call before this (a 429's Retry-After)
	backoff time.Duration
}

// slidingCount counts events over a sliding apiWindow: the current
// window's and the part of the previous one's that the sliding window
// still covers.
type slidingCount struct {
	start     time.Time // of the current window
	cur, prev float64   // counted in the current and the previous window
}

// roll moves the window on.
func (w *slidingCount) roll(now time.Time) {
	switch gap := now.Sub(w.start); {
	case w.start.IsZero() || gap >= 2*apiWindow:
		w.start, w.cur, w.prev = now, 0, 0
	case gap >= apiWindow:
		w.start, w.prev, w.cur = w.start.Add(apiWindow), w.cur, 0
	}
}

// at is the count over the apiWindow up to now.
func (w *slidingCount) at(now time.Time) float64 {
	w.roll(now)
	elapsed := float64(now.Sub(w.start)) / float64(apiWindow)
	return w.cur + w.prev*(1-elapsed)
}

// add counts one event at now.
func (w *slidingCount) add(now time.Time) {
	w.roll(now)
	w.cur++
}

func newAPIBudget(production bool, limit int, now func() time.Time) *apiBudget {
	if limit <= 0 {
		limit = apiLimitDevelopment
		if production {
			limit = apiLimitProduction
		}
	}
	return &apiBudget{now: now, limit: float64(limit)}
}

// usedLocked is the share of the limit spent over the last apiWindow.
// b.mu is held.
func (b *apiBudget) usedLocked(now time.Time) float64 {
	return b.calls.at(now) / b.limit
}

// used is the share of the limit spent over the last apiWindow (1: all).
func (b *apiBudget) used() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.usedLocked(b.now())
}

// room reports whether a call may be made now: not while a 429's wait
// runs, nor, when share < 1, once that share of the limit is in use.
func (b *apiBudget) room(share float64) error {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.roomLocked(now, share)
}

func (b *apiBudget) roomLocked(now time.Time, share float64) error {
	if now.Before(b.blocked) {
		return fmt.Errorf("clerk: Backend API rate limited for another %s: %w", b.blocked.Sub(now).Round(time.Second), proxy.ErrRateLimited)
	}
	if share < 1 && b.usedLocked(now) >= share {
		return fmt.Errorf("clerk: over %.0f%% of the Backend API budget in use: %w", share*100, proxy.ErrRateLimited)
	}
	return nil
}

// admit counts one call about to be made, or refuses it while a 429's
// wait runs.
func (b *apiBudget) admit() error {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.roomLocked(now, 1); err != nil {
		return err
	}
	b.calls.add(now)
	return nil
}

// keyRoom reserves one API key verification: refused as a session check
// is (a 429's wait, sessionCheckShare of the limit in use), and once key
// verifications have made apiKeyShare of the limit's calls over the
// window. The call itself is then counted by admit.
func (b *apiBudget) keyRoom() error {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.roomLocked(now, sessionCheckShare); err != nil {
		return err
	}
	if b.keys.at(now) >= apiKeyShare*b.limit {
		return fmt.Errorf("clerk: API key verifications made %.0f%% of the Backend API budget's calls, their share: %w", apiKeyShare*100, proxy.ErrRateLimited)
	}
	b.keys.add(now)
	return nil
}

// answered records Clerk's answer to a call: a 429 blocks every call until
// its Retry-After has passed (at least the backoff, which doubles with each
// 429 in a row); anything else ends the backoff.
func (b *apiBudget) answered(status int, retryAfter string) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if status != http.StatusTooManyRequests {
		b.backoff = 0
		return
	}
	b.backoff = min(max(2*b.backoff, backoffMin), backoffMax)
	wait := max(parseRetryAfter(retryAfter, now), b.backoff)
	if until := now.Add(wait); until.After(b.blocked) {
		b.blocked = until
	}
}

// stretch is by how much the session check interval is stretched now:
// 1 below stretchFrom of the limit in use, rising linearly to
// proxy.MaxRefreshStretch at sessionCheckShare and while a 429's wait runs.
func (b *apiBudget) stretch() float64 {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.blocked) {
		return proxy.MaxRefreshStretch
	}
	u := b.usedLocked(now)
	switch {
	case u <= stretchFrom:
		return 1
	case u >= sessionCheckShare:
		return proxy.MaxRefreshStretch
	}
	return 1 + (proxy.MaxRefreshStretch-1)*(u-stretchFrom)/(sessionCheckShare-stretchFrom)
}

// parseRetryAfter reads Retry-After as seconds (Clerk's form) or an HTTP
// date; anything else, or a negative or absurd value, is 0. At most
// backoffMax: a wait longer than that is not believed.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n <= 0 || math.IsNaN(n) || math.IsInf(n, 0) {
			return 0
		}
		return min(time.Duration(n*float64(time.Second)), backoffMax)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), backoffMax)
	}
	return 0
}

// budgetTransport puts every Backend API call of a Client under its
// budget: counted, refused while a 429's wait runs, and each 429 noted.
type budgetTransport struct {
	next   http.RoundTripper
	budget *apiBudget
}

func (t *budgetTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/jwks") {
		return t.next.RoundTrip(r) // not rate limited by Clerk
	}
	if err := t.budget.admit(); err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(r)
	if err == nil {
		t.budget.answered(resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	return resp, err
}

// EndpointLabel names a Backend API call by its route, from a fixed list,
// for metrics: never an ID. Anything else is "other".
func EndpointLabel(method, path string) string {
	seg := strings.Split(strings.Trim(path, "/"), "/")
	n := len(seg)
	at := func(i int) string {
		if i < 0 || i >= n {
			return ""
		}
		return seg[i]
	}
	switch {
	case method == http.MethodGet && at(n-1) == "jwks":
		return "GET /v1/jwks"
	case method == http.MethodGet && at(n-2) == "sessions":
		return "GET /v1/sessions/{id}"
	case method == http.MethodPost && at(n-3) == "sessions" && at(n-1) == "revoke":
		return "POST /v1/sessions/{id}/revoke"
	case method == http.MethodGet && at(n-2) == "users":
		return "GET /v1/users/{id}"
	case method == http.MethodGet && at(n-2) == "clients" && at(n-1) == "handshake_payload":
		return "GET /v1/clients/handshake_payload"
	}
	return "other"
}

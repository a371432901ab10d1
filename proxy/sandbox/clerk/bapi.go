package clerksandbox

import (
	"sync"
	"time"
)

// What tests can observe and steer of the Backend API: how often each
// route is called, the instance's rate limit, and requests held mid-call.

// hold keeps the requests of one Backend API route waiting (HoldBackendAPI).
type hold struct {
	arrived chan struct{}
	release chan struct{}
}

// BackendCalls is how many Backend API requests have come in for route
// (a pattern of Handler's, e.g. "GET /v1/clients/handshake_payload"),
// authorised or not.
func (c *Clerk) BackendCalls(route string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[route]
}

// SetAPIRateLimit changes how many Backend API requests per 10 s the
// instance answers before it says 429 (see Options.APIRateLimit); the
// count of the current window is kept.
func (c *Clerk) SetAPIRateLimit(n int) {
	c.mu.Lock()
	c.rateLimit = n
	c.mu.Unlock()
}

// RateLimited is how many Backend API requests the sandbox has answered
// with 429.
func (c *Clerk) RateLimited() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limited
}

// overLimit counts a Backend API request against the instance's limit and
// reports how long until the window ends if it is over it (0: answer it).
// Like Clerk's, the limit is per instance (per secret key) and the JWKS is
// not counted.
func (c *Clerk) overLimit(route string) time.Duration {
	if route == "GET /v1/jwks" {
		return 0
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.windowStart.IsZero() || now.Sub(c.windowStart) >= apiWindow || now.Before(c.windowStart) {
		c.windowStart, c.windowCalls = now, 0
	}
	c.windowCalls++
	if c.windowCalls <= c.rateLimit {
		return 0
	}
	c.limited++
	return c.windowStart.Add(apiWindow).Sub(now)
}

// HoldBackendAPI makes the Backend API's requests for route (a pattern of
// Handler's, e.g. "GET /v1/sessions/{id}") wait until release is called;
// arrived receives one value per request as it arrives (what it cannot
// hold is dropped). For tests of what callers do while a call is under
// way.
func (c *Clerk) HoldBackendAPI(route string) (arrived <-chan struct{}, release func()) {
	h := &hold{arrived: make(chan struct{}, 1024), release: make(chan struct{})}
	c.mu.Lock()
	c.holds[route] = h
	c.mu.Unlock()
	var once sync.Once
	return h.arrived, func() {
		once.Do(func() {
			c.mu.Lock()
			if c.holds[route] == h {
				delete(c.holds, route)
			}
			c.mu.Unlock()
			close(h.release)
		})
	}
}

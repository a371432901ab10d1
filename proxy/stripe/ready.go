package stripe

import (
	"context"
	"sync"
	"time"
)

// ReadyCheck returns Stripe's readiness for the admin listener's /readyz:
// Ready, asked sparingly and remembered (stickyCheck), on b's clock.
func (b *Billing) ReadyCheck() func(context.Context) error {
	return (&stickyCheck{run: b.Ready, now: b.now}).Run
}

// stickyCheck is Stripe's readiness (README, "Admin listener"): "reachable
// or cached". A success is reused for a minute (probes do not each call
// Stripe), and while Stripe
// fails the gateway stays ready for 15 minutes after the last success:
// the gate never calls Stripe, so a Stripe outage alone must not take it
// out of a load balancer. A failure is reused for stickyRetry, so however
// often /readyz is asked, Stripe is asked at most once in that time, and
// one call at a time: concurrent probes wait for its answer, and no lock
// is held while the call waits for its share of the Stripe budget.
type stickyCheck struct {
	run func(context.Context) error
	now func() time.Time

	mu      sync.Mutex
	ok      time.Time     // last success
	last    time.Time     // last call
	lastErr error         // its outcome
	running chan struct{} // closed when the call in flight ends; nil when none
}

const stickyRetry = 10 * time.Second

func (c *stickyCheck) Run(ctx context.Context) error {
	c.mu.Lock()
	for c.running != nil {
		ch := c.running
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.mu.Lock()
	}
	now := c.now()
	if !c.ok.IsZero() && now.Sub(c.ok) < time.Minute {
		c.mu.Unlock()
		return nil
	}
	if !c.last.IsZero() && now.Sub(c.last) < stickyRetry {
		err := c.verdict(now)
		c.mu.Unlock()
		return err
	}
	ch := make(chan struct{})
	c.running = ch
	c.mu.Unlock()

	err := c.run(ctx)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.running = nil
	close(ch)
	c.last, c.lastErr = now, err
	if err == nil {
		c.ok = now
	}
	return c.verdict(now)
}

// verdict is ready (nil) after a success, or a failure within 15 minutes
// of one; else the last error. The caller holds c.mu.
func (c *stickyCheck) verdict(now time.Time) error {
	if c.lastErr == nil || !c.ok.IsZero() && now.Sub(c.ok) < 15*time.Minute {
		return nil
	}
	return c.lastErr
}

package stripe

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// Ensure /readyz on the admin listener cannot be used to spend Stripe
// calls: while Stripe fails, the failure is reused for stickyRetry, and
// probes arriving while the one call is in flight share its answer.
func TestStickyCheck_AsksStripeOnceWhileFailing(t *testing.T) {
	var calls atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	c := &stickyCheck{now: time.Now, run: func(ctx context.Context) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		return errors.New("stripe is down")
	}}
	errs := make(chan error, 20)
	go func() { errs <- c.Run(t.Context()) }()
	<-entered
	for range 19 {
		go func() { errs <- c.Run(t.Context()) }()
	}
	close(release)
	for range 20 {
		if err := <-errs; err == nil {
			t.Error("ready while Stripe has never answered")
		}
	}
	for range 100 {
		c.Run(t.Context())
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("120 probes while failing made %d Stripe calls, want 1", n)
	}
}

// TestStickyCheck_ReadyThroughAStripeOutageByTheInjectedClock: a gateway
// that was ready stays ready for 15 minutes of Stripe failing, then says
// why not; Stripe is asked again only after stickyRetry.
func TestStickyCheck_ReadyThroughAStripeOutageByTheInjectedClock(t *testing.T) {
	clk := &bgClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	var calls atomic.Int32
	var down atomic.Bool
	c := &stickyCheck{now: clk.Now, run: func(context.Context) error {
		calls.Add(1)
		if down.Load() {
			return errors.New("stripe is down")
		}
		return nil
	}}
	if err := c.Run(t.Context()); err != nil || calls.Load() != 1 {
		t.Fatalf("first probe: %v after %d calls", err, calls.Load())
	}
	down.Store(true)
	clk.Advance(59 * time.Second)
	if err := c.Run(t.Context()); err != nil || calls.Load() != 1 {
		t.Fatalf("within a minute of a success: %v after %d calls, want the success reused", err, calls.Load())
	}
	clk.Advance(time.Second)
	if err := c.Run(t.Context()); err != nil || calls.Load() != 2 {
		t.Fatalf("a minute on, Stripe down: %v after %d calls, want ready and Stripe asked again", err, calls.Load())
	}
	clk.Advance(stickyRetry - time.Second)
	c.Run(t.Context())
	if n := calls.Load(); n != 2 {
		t.Fatalf("within stickyRetry of a failure: %d calls, want 2", n)
	}
	clk.Advance(15*time.Minute - stickyRetry)
	if err := c.Run(t.Context()); err == nil {
		t.Error("15 minutes after the last success, Stripe still down: ready")
	}
}

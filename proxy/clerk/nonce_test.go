package clerk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
)

// countingCall is a Backend API stand-in for nonceGuard.exchange.
type countingCall struct {
	calls atomic.Int64
	err   error
}

func (c *countingCall) call(context.Context) ([]string, error) {
	c.calls.Add(1)
	if c.err != nil {
		return nil, c.err
	}
	return []string{"__session=x; Path=/"}, nil
}

var errInvalidNonce = &clerk.APIErrorResponse{HTTPStatusCode: http.StatusBadRequest}

func TestNonceGuard_PerClientAndGlobal(t *testing.T) {
	clk := &testClock{t: testStart}
	g := newNonceGuard(true, clk.Now)
	var cc countingCall
	for i := range 100 {
		g.exchange(t.Context(), "192.0.2.1:5000", fmt.Sprintf("nonce%d", i), cc.call)
	}
	if got := cc.calls.Load(); got != nonceClientBurst {
		t.Errorf("100 nonces from one client: %d calls, want %d", got, nonceClientBurst)
	}
	// The client's bucket refills slowly.
	clk.Advance(nonceClientEvery)
	for i := range 10 {
		g.exchange(t.Context(), "192.0.2.1:5001", fmt.Sprintf("later%d", i), cc.call)
	}
	if got := cc.calls.Load(); got != nonceClientBurst+1 {
		t.Errorf("after %v: %d calls, want one more", nonceClientEvery, got)
	}
	// Many clients together stop at the global share: 20 in production.
	cc.calls.Store(0)
	clk.Advance(time.Minute)
	for i := range 200 {
		g.exchange(t.Context(), fmt.Sprintf("198.51.100.%d:443", i), fmt.Sprintf("n%d", i), cc.call)
	}
	if got, want := cc.calls.Load(), int64(nonceShareProduction*nonceBurstSeconds); got != want {
		t.Errorf("200 clients at once: %d calls, want %d", got, want)
	}
	// IPv6 clients are counted by /64: rotating the low bits buys nothing.
	cc.calls.Store(0)
	clk.Advance(time.Minute)
	for i := range 50 {
		g.exchange(t.Context(), fmt.Sprintf("[2001:db8:1:2::%x]:443", i+1), fmt.Sprintf("v6-%d", i), cc.call)
	}
	if got := cc.calls.Load(); got != nonceClientBurst {
		t.Errorf("50 addresses of one /64: %d calls, want %d", got, nonceClientBurst)
	}

	dev := newNonceGuard(false, clk.Now)
	cc.calls.Store(0)
	for i := range 50 {
		dev.exchange(t.Context(), fmt.Sprintf("198.51.100.%d:443", i), fmt.Sprintf("n%d", i), cc.call)
	}
	if got, want := cc.calls.Load(), int64(nonceShareDevelopment*nonceBurstSeconds); got != want {
		t.Errorf("development instance: %d calls, want %d", got, want)
	}
}

func TestNonceGuard_RefusedNoncesAreRemembered(t *testing.T) {
	clk := &testClock{t: testStart}
	g := newNonceGuard(true, clk.Now)
	bad := countingCall{err: fmt.Errorf("clerk: get handshake payload: %w", errInvalidNonce)}
	if _, err := g.exchange(t.Context(), "192.0.2.1:1", "stale", bad.call); !errors.Is(err, errInvalidNonce) {
		t.Fatalf("first exchange: %v", err)
	}
	for range 50 {
		if _, err := g.exchange(t.Context(), "192.0.2.1:1", "stale", bad.call); !errors.Is(err, errNonceFailed) {
			t.Fatalf("repeat: %v, want errNonceFailed", err)
		}
	}
	if got := bad.calls.Load(); got != 1 {
		t.Errorf("one refused nonce sent 51 times: %d calls, want 1", got)
	}
	// A transport failure or a rate limit says nothing about the nonce.
	for i, failure := range []error{errors.New("connection refused"), &clerk.APIErrorResponse{HTTPStatusCode: http.StatusTooManyRequests},
		&clerk.APIErrorResponse{HTTPStatusCode: http.StatusBadGateway}} {
		client := fmt.Sprintf("192.0.2.%d:1", 10+i)
		flaky := countingCall{err: failure}
		g.exchange(t.Context(), client, "fine", flaky.call)
		flaky.err = nil
		if _, err := g.exchange(t.Context(), client, "fine", flaky.call); err != nil || flaky.calls.Load() != 2 {
			t.Errorf("after %v: %v, %d calls", failure, err, flaky.calls.Load())
		}
	}
	// Remembered for a while, not for ever.
	clk.Advance(nonceFailedFor + time.Second)
	if g.exchange(t.Context(), "192.0.2.1:1", "stale", bad.call); bad.calls.Load() != 2 {
		t.Errorf("after %v the nonce was not asked about again", nonceFailedFor)
	}
	// Malformed nonces cost nothing.
	var cc countingCall
	for _, n := range []string{"", strings.Repeat("a", nonceMaxLen+1), "a b", "a;b", "a\"b", "é"} {
		if _, err := g.exchange(t.Context(), "192.0.2.3:1", n, cc.call); !errors.Is(err, errNonceInvalid) {
			t.Errorf("nonce %q: %v", n, err)
		}
	}
	if cc.calls.Load() != 0 {
		t.Errorf("malformed nonces made %d calls", cc.calls.Load())
	}
}

// Concurrent requests with one nonce make one call and share its answer.
func TestNonceGuard_OneCallInFlightPerNonce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newNonceGuard(true, time.Now)
		release := make(chan struct{})
		var calls atomic.Int64
		call := func(context.Context) ([]string, error) {
			calls.Add(1)
			<-release
			return []string{"__session=x; Path=/"}, nil
		}
		var wg sync.WaitGroup
		results := make([][]string, 20)
		for i := range results {
			wg.Go(func() {
				results[i], _ = g.exchange(context.Background(), fmt.Sprintf("192.0.2.%d:1", i), "shared", call)
			})
		}
		synctest.Wait() // every goroutine is in the call or waiting for it
		close(release)
		wg.Wait()
		if calls.Load() != 1 {
			t.Errorf("20 concurrent exchanges of one nonce: %d calls", calls.Load())
		}
		for i, r := range results {
			if len(r) != 1 {
				t.Errorf("request %d got %v", i, r)
			}
		}
		results[0][0] = "changed"
		if results[1][0] == "changed" {
			t.Error("waiters share one slice")
		}
	})
}

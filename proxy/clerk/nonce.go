package clerk

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Bounds on handshake nonce exchanges (README "Sessions"). Each exchange is
// a Backend API call made with the secret key, and the nonce comes from the
// visitor, so without bounds every request carrying a made-up nonce costs a
// call: a few clients could spend the instance's whole Backend API budget
// and starve the session checks. Nonce exchanges get nonceShare (a tenth)
// of Clerk's Backend API budget between them (budget.go), leaving the rest
// to session checks, keys and users. One client address gets a handful,
// refilled slowly: a browser exchanges one nonce per handshake, at most
// about once a minute per tab.
const (
	// Exchanges per second, all clients: 10 in production, 1 in development.
	nonceShareProduction  = apiLimitProduction * nonceShare / float64(apiWindow/time.Second)
	nonceShareDevelopment = apiLimitDevelopment * nonceShare / float64(apiWindow/time.Second)
	nonceBurstSeconds     = 2.0 // the global bucket holds this many seconds' worth
	nonceClientBurst      = 6
	nonceClientEvery      = 5 * time.Second // one more exchange per client this often
	nonceFailedFor        = 10 * time.Minute
	// A client whose nonces Clerk refused this many times is refused any
	// exchange for nonceFailedFor: a browser brings the nonce Clerk just
	// gave it, a client that keeps bringing bad ones is spending the
	// budget others' sign-ins need (many addresses flooding together would
	// otherwise drain the global share).
	nonceClientRefusals = 3
	nonceMaxLen         = 512
	nonceClients        = 10_000
	nonceFailed         = 10_000
)

var (
	errNonceLimited = errors.New("clerk: handshake nonce exchanges over their budget")
	errNonceFailed  = errors.New("clerk: handshake nonce already refused by Clerk")
	errNonceInvalid = errors.New("clerk: handshake nonce malformed")
)

// nonceGuard bounds the nonce exchanges of one Client: a token bucket per
// client address and one for everyone, one call in flight per nonce (the
// others wait for its answer), and nonces Clerk refused remembered for a
// while. Nonces are kept as their SHA-256, so a long one costs no memory.
type nonceGuard struct {
	now        func() time.Time
	globalRate float64 // per second
	mu         sync.Mutex
	global     bucket
	clients    *lru.Cache[netip.Prefix, *bucket]
	offenders  *lru.Cache[netip.Prefix, offence]
	failed     *lru.Cache[[32]byte, time.Time] // until when
	flights    map[[32]byte]*nonceFlight
}

// offence counts a client's refused nonces within nonceFailedFor.
type offence struct {
	refusals int
	since    time.Time
}

type nonceFlight struct {
	done       chan struct{}
	directives []string
	err        error
}

func newNonceGuard(production bool, now func() time.Time) *nonceGuard {
	g := &nonceGuard{now: now, globalRate: nonceShareDevelopment, flights: map[[32]byte]*nonceFlight{}}
	if production {
		g.globalRate = nonceShareProduction
	}
	g.clients, _ = lru.New[netip.Prefix, *bucket](nonceClients)
	g.offenders, _ = lru.New[netip.Prefix, offence](nonceClients)
	g.failed, _ = lru.New[[32]byte, time.Time](nonceFailed)
	return g
}

// exchange runs call for nonce within the bounds, on behalf of the client
// at remoteAddr. Waiters on a call already in flight share its answer
// (each gets its own copy of the directives).
func (g *nonceGuard) exchange(ctx context.Context, remoteAddr, nonce string, call func(context.Context) ([]string, error)) ([]string, error) {
	if !plausibleNonce(nonce) {
		return nil, errNonceInvalid
	}
	key := sha256.Sum256([]byte(nonce))
	now := g.now()
	g.mu.Lock()
	if until, ok := g.failed.Get(key); ok && now.Before(until) {
		g.mu.Unlock()
		return nil, errNonceFailed
	}
	if f := g.flights[key]; f != nil {
		g.mu.Unlock()
		select {
		case <-f.done:
			return slices.Clone(f.directives), f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	client := clientPrefix(remoteAddr)
	if !g.allow(client, now) {
		g.mu.Unlock()
		return nil, errNonceLimited
	}
	f := &nonceFlight{done: make(chan struct{})}
	g.flights[key] = f
	g.mu.Unlock()

	// The call is everyone's now: the first visitor going away must not
	// fail the others.
	f.directives, f.err = call(context.WithoutCancel(ctx))
	g.mu.Lock()
	delete(g.flights, key)
	if refused(f.err) {
		now := g.now()
		g.failed.Add(key, now.Add(nonceFailedFor))
		o, _ := g.offenders.Get(client)
		if now.Sub(o.since) > nonceFailedFor {
			o = offence{since: now}
		}
		o.refusals++
		g.offenders.Add(client, o)
	}
	g.mu.Unlock()
	close(f.done)
	return slices.Clone(f.directives), f.err
}

// allow takes one exchange from the client's bucket and the global one, or
// from neither. g.mu is held.
func (g *nonceGuard) allow(client netip.Prefix, now time.Time) bool {
	if o, ok := g.offenders.Get(client); ok && o.refusals >= nonceClientRefusals && now.Sub(o.since) <= nonceFailedFor {
		return false
	}
	b, ok := g.clients.Get(client)
	if !ok {
		b = &bucket{}
		g.clients.Add(client, b)
	}
	if !b.take(now, 1/nonceClientEvery.Seconds(), nonceClientBurst) {
		return false
	}
	if !g.global.take(now, g.globalRate, g.globalRate*nonceBurstSeconds) {
		b.tokens++ // not spent after all
		return false
	}
	return true
}

// refused reports whether Clerk answered that the nonce is no good (a 4xx
// other than a rate limit), so that asking again is pointless.
func refused(err error) bool {
	var apiErr *clerk.APIErrorResponse
	return errors.As(err, &apiErr) && apiErr.HTTPStatusCode >= 400 && apiErr.HTTPStatusCode < 500 &&
		apiErr.HTTPStatusCode != http.StatusTooManyRequests
}

// plausibleNonce keeps out what no Clerk nonce looks like before it costs
// anything: empty, long, or with characters outside a URL-safe token.
func plausibleNonce(n string) bool {
	if n == "" || len(n) > nonceMaxLen {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return false
		}
	}
	return true
}

// clientPrefix is the address a client is counted by: its IPv4 address,
// or the /64 of its IPv6 address (one host usually holds a whole /64). It
// is the request's peer: behind a proxy, the proxy decides what that is.
func clientPrefix(remoteAddr string) netip.Prefix {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// bucket is a token bucket: burst tokens at most, rate more per second.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate, burst float64) bool {
	switch {
	case b.last.IsZero():
		b.tokens = burst
	case now.After(b.last):
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	if now.After(b.last) {
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

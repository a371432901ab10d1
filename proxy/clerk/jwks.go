package clerk

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
)

const (
	jwksTTL        = 5 * time.Minute  // a fetched key set is trusted this long (as @clerk/backend)
	jwksMinRefetch = 30 * time.Second // at most one refetch per this for an unknown kid
	jwksRetry      = 5 * time.Second  // after a failed fetch of a stale or empty set
	jwksTimeout    = 10 * time.Second // one fetch, whoever asked for it
	// jwksMaxStale is how long a key set that can no longer be refetched
	// still verifies tokens. @clerk/backend stops at jwksTTL (it throws
	// when the refetch fails); tollgate rides out a short Backend API
	// outage, but not a long one, during which Clerk may have retired a key
	// (README, "Where tollgate differs from Clerk's SDKs").
	jwksMaxStale = time.Hour
)

var errUnknownKID = errors.New("no key with this kid in the instance's JWKS")

// keyStore caches the instance's JSON Web Key Set from the Backend API.
//
// Keys are refetched when the set is older than jwksTTL, and when a token
// names an unknown kid, but then at most once per jwksMinRefetch, so a
// stream of made-up kids cannot turn into a stream of Backend API calls.
// Concurrent lookups that need a fetch share one.
type keyStore struct {
	client *jwks.Client
	now    func() time.Time
	log    *slog.Logger

	mu        sync.Mutex
	keys      map[string]*clerk.JSONWebKey
	fetchedAt time.Time  // last successful fetch
	attempted time.Time  // last fetch started
	lastErr   error      // of the last fetch (nil after a success)
	inflight  *fetchCall // the fetch under way, if any
}

type fetchCall struct {
	done    chan struct{}
	err     error
	waiters int // lookups waiting for it, the one that started it too (for tests)
}

// key returns the verification key for kid.
func (ks *keyStore) key(ctx context.Context, kid string) (*clerk.JSONWebKey, error) {
	if kid == "" {
		return nil, errors.New("token has no kid header")
	}
	ks.mu.Lock()
	k, fresh := ks.keys[kid], ks.fresh()
	if k != nil && fresh {
		ks.mu.Unlock()
		return k, nil
	}
	call := ks.startFetch(fresh)
	ks.mu.Unlock()
	if call != nil {
		if err := ks.wait(ctx, call); err != nil {
			return nil, err
		}
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if k = ks.keys[kid]; k != nil && ks.now().Sub(ks.fetchedAt) < jwksMaxStale {
		return k, nil // possibly stale: better than nothing during a short outage
	}
	if ks.lastErr != nil {
		return nil, fmt.Errorf("fetch jwks: %w", ks.lastErr)
	}
	return nil, errUnknownKID
}

// ready reports whether the store holds a usable key set, fetching one if
// it has none or an old one.
func (ks *keyStore) ready(ctx context.Context) error {
	ks.mu.Lock()
	if ks.fresh() && len(ks.keys) > 0 {
		ks.mu.Unlock()
		return nil
	}
	call := ks.startFetch(false)
	ks.mu.Unlock()
	if call != nil {
		if err := ks.wait(ctx, call); err != nil {
			return err
		}
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	switch {
	case ks.lastErr != nil:
		return fmt.Errorf("fetch jwks: %w", ks.lastErr)
	case len(ks.keys) == 0:
		return errors.New("jwks not loaded yet")
	}
	return nil
}

// fresh reports whether the key set is younger than jwksTTL. ks.mu is held.
func (ks *keyStore) fresh() bool {
	return !ks.fetchedAt.IsZero() && ks.now().Sub(ks.fetchedAt) < jwksTTL
}

// startFetch returns the fetch to wait for: the one under way, a new one
// if one is allowed now, or nil. ks.mu is held.
func (ks *keyStore) startFetch(fresh bool) *fetchCall {
	if ks.inflight != nil {
		ks.inflight.waiters++
		return ks.inflight
	}
	now := ks.now()
	if !ks.attempted.IsZero() {
		gap := jwksRetry
		if fresh {
			gap = jwksMinRefetch // a fresh set that lacks the kid: probably made up
		}
		if now.Sub(ks.attempted) < gap {
			return nil
		}
	}
	call := &fetchCall{done: make(chan struct{}), waiters: 1}
	ks.inflight, ks.attempted = call, now
	// The fetch belongs to everyone waiting for it, not to the request that
	// happened to start it: a cancelled request must not fail the others.
	go ks.fetch(call)
	return call
}

// fetchWaiters reports how many lookups wait for the fetch under way (for
// tests).
func (ks *keyStore) fetchWaiters() int {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.inflight == nil {
		return 0
	}
	return ks.inflight.waiters
}

func (ks *keyStore) wait(ctx context.Context, call *fetchCall) error {
	select {
	case <-call.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for jwks: %w", ctx.Err())
	}
}

func (ks *keyStore) fetch(call *fetchCall) {
	ctx, cancel := context.WithTimeout(context.Background(), jwksTimeout)
	defer cancel()
	keys, err := ks.load(ctx)
	if err != nil {
		err = apiError(err)
		ks.log.Warn("clerk: cannot fetch the JWKS", "err", err)
	}

	ks.mu.Lock()
	defer ks.mu.Unlock()
	if err == nil {
		ks.keys, ks.fetchedAt = keys, ks.now()
	}
	ks.lastErr, call.err = err, err
	ks.inflight = nil
	close(call.done)
}

func (ks *keyStore) load(ctx context.Context) (map[string]*clerk.JSONWebKey, error) {
	set, err := ks.client.Get(ctx, &jwks.GetParams{})
	if err != nil {
		return nil, err
	}
	keys := make(map[string]*clerk.JSONWebKey, len(set.Keys))
	for _, k := range set.Keys {
		if k == nil || k.KeyID == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if _, ok := k.Key.(*rsa.PublicKey); !ok {
			continue
		}
		switch k.Algorithm {
		case "":
			k.Algorithm = "RS256" // jwt.Verify compares it with the token's alg
		case "RS256":
		default:
			continue
		}
		keys[k.KeyID] = k
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks has no RS256 signing key")
	}
	return keys, nil
}

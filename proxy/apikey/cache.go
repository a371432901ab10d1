package apikey

import (
	"context"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tollgate/tollgate/proxy"
)

// CachedStore is a proxy.APIKeyStore that keeps the records of keys it
// found by hash for a short while, so a key's request does not read the
// store each time. Only found records are kept (a made-up key is refused
// by its checksum or counted by the failure limiter, and a key made a
// moment ago must work at once). The record is kept, not a verdict: expiry
// is still judged at each request's own time.
//
// Every revocation made through it drops the key at once, so a revoked key
// is refused from the next request on this replica: give the account page,
// the admin console and the admin API this same value. A revocation made
// elsewhere (another replica) is seen after TTL at most.
type CachedStore struct {
	proxy.APIKeyStore
	ttl   time.Duration
	now   func() time.Time
	cache *lru.Cache[[32]byte, cachedKey]

	// mu orders a lookup's fill against revocations: a record read before
	// a revocation must not be cached after it.
	mu  sync.Mutex
	gen uint64 // revocations so far
}

type cachedKey struct {
	rec     proxy.APIKey
	expires time.Time
}

// DefaultCacheTTL is how long a found key's record is kept: short enough
// that a revocation on another replica (which this replica does not hear
// of) still applies within a second.
const DefaultCacheTTL = time.Second

// DefaultCacheSize bounds the records kept.
const DefaultCacheSize = 10000

// NewCachedStore caches store's records by hash, at most size of them for
// ttl each. now nil is time.Now.
func NewCachedStore(store proxy.APIKeyStore, size int, ttl time.Duration, now func() time.Time) (*CachedStore, error) {
	c, err := lru.New[[32]byte, cachedKey](size)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &CachedStore{APIKeyStore: store, ttl: ttl, now: now, cache: c}, nil
}

// APIKeyByHash answers from the cache while the record is fresh, else
// from the store.
func (c *CachedStore) APIKeyByHash(ctx context.Context, hash [32]byte) (proxy.APIKey, error) {
	now := c.now()
	if e, ok := c.cache.Get(hash); ok && now.Before(e.expires) {
		return e.rec, nil
	}
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	rec, err := c.APIKeyStore.APIKeyByHash(ctx, hash)
	if err != nil {
		return rec, err
	}
	c.mu.Lock()
	if c.gen == gen {
		c.cache.Add(hash, cachedKey{rec: rec, expires: now.Add(c.ttl)})
	}
	c.mu.Unlock()
	return rec, nil
}

// RevokeAPIKey revokes in the store, then drops the key from the cache
// and keeps any lookup under way from caching what it read before.
func (c *CachedStore) RevokeAPIKey(ctx context.Context, id string, at time.Time) (proxy.APIKey, error) {
	rec, err := c.APIKeyStore.RevokeAPIKey(ctx, id, at)
	c.Forget(id)
	return rec, err
}

// Forget drops the key with that ID from the cache, for a revocation this
// replica hears of from elsewhere.
func (c *CachedStore) Forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, h := range c.cache.Keys() {
		if e, ok := c.cache.Peek(h); ok && e.rec.ID == id {
			c.cache.Remove(h)
		}
	}
}

// ForgetSubject drops every cached key of a subject, for a revocation of
// all its keys that went to the store without passing here (Clerk deleted
// the user or the organisation).
func (c *CachedStore) ForgetSubject(subject proxy.Subject) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, h := range c.cache.Keys() {
		if e, ok := c.cache.Peek(h); ok && e.rec.Subject == subject {
			c.cache.Remove(h)
		}
	}
}

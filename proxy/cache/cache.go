package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tollgate/tollgate/proxy"
)

// EntitlementCache is the hot-path LRU in front of the store. Writers (the
// billing sync, under its per-customer lock) Put the record they just
// committed; readers fill it from the store on a miss, but never with a
// read that started before a write landed, so a cancelled
// subscriber cannot keep a stale "paid" in memory, nor a new one a stale
// "unpaid".
type EntitlementCache struct {
	store proxy.EntitlementSource
	lru   *lru.Cache[proxy.Subject, *proxy.Entitlements] // a nil value caches "none known"

	mu      sync.Mutex // orders fills against writes
	version uint64     // bumped by every Put and Remove

	obs CacheObserver // nil: lookups are not counted

	onChange atomic.Pointer[func(proxy.Subject)] // told after every Put and Remove
}

// CacheObserver counts LRU hits and misses, for metrics.
type CacheObserver interface {
	CacheLookup(hit bool)
}

// OnChange has fn called after every Put and Remove, with the subject that
// changed (the gateway judges that subject's open tunnels again). fn must
// not block: writers hold their per-customer lock.
func (c *EntitlementCache) OnChange(fn func(proxy.Subject)) { c.onChange.Store(&fn) }

func (c *EntitlementCache) changed(s proxy.Subject) {
	if fn := c.onChange.Load(); fn != nil {
		(*fn)(s)
	}
}

// SetObserver makes the cache report every lookup to o. Call it before use.
func (c *EntitlementCache) SetObserver(o CacheObserver) { c.obs = o }

// NewEntitlementCache puts an LRU of size entries in front of store.
func NewEntitlementCache(store proxy.EntitlementSource, size int) (*EntitlementCache, error) {
	if size <= 0 {
		size = 10000
	}
	c, err := lru.New[proxy.Subject, *proxy.Entitlements](size)
	if err != nil {
		return nil, fmt.Errorf("entitlement cache: %w", err)
	}
	return &EntitlementCache{store: store, lru: c}, nil
}

// Entitlements implements EntitlementSource: memory first, then the store.
func (c *EntitlementCache) Entitlements(ctx context.Context, s proxy.Subject) (*proxy.Entitlements, error) {
	if e, ok := c.lru.Get(s); ok {
		if c.obs != nil {
			c.obs.CacheLookup(true)
		}
		return e, nil
	}
	if c.obs != nil {
		c.obs.CacheLookup(false)
	}
	c.mu.Lock()
	v := c.version
	c.mu.Unlock()
	e, err := c.store.Entitlements(ctx, s)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.version == v {
		c.lru.Add(s, e)
	}
	c.mu.Unlock()
	return e, nil
}

// Put writes through a record that was just committed to the store.
func (c *EntitlementCache) Put(s proxy.Subject, e *proxy.Entitlements) {
	c.mu.Lock()
	c.version++
	c.lru.Add(s, e)
	c.mu.Unlock()
	c.changed(s)
}

// Remove forgets a subject, so the next read goes to the store.
func (c *EntitlementCache) Remove(s proxy.Subject) {
	c.mu.Lock()
	c.version++
	c.lru.Remove(s)
	c.mu.Unlock()
	c.changed(s)
}

// Purge forgets every subject: a replica that lost track of the store's
// changes for too long to replay them (the PostgreSQL store's change log).
func (c *EntitlementCache) Purge() {
	c.mu.Lock()
	c.version++
	keys := c.lru.Keys()
	c.lru.Purge()
	c.mu.Unlock()
	for _, s := range keys {
		c.changed(s)
	}
}

// Len reports how many subjects are cached.
func (c *EntitlementCache) Len() int { return c.lru.Len() }

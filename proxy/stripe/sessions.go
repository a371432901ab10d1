package stripe

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

const (
	sessionMemoSize = 4096
	sessionMemoTTL  = time.Hour
)

// sessionMemo remembers, for the Checkout return, whom each Checkout
// Session belongs to and which session IDs Stripe does not know, so that
// asking about the same ID again costs no Stripe call. A session's owner
// (its client_reference_id) never changes, and an ID Stripe answered 404
// for does not come into being later. Bounded: the least recently used
// entries are forgotten first, and every entry after ttl.
type sessionMemo struct {
	ttl   time.Duration
	cache *lru.Cache[string, sessionFact]
}

type sessionFact struct {
	owner string // the session's client_reference_id; "" when Stripe does not know the ID
	at    time.Time
}

func newSessionMemo(size int, ttl time.Duration) *sessionMemo {
	c, err := lru.New[string, sessionFact](size)
	if err != nil {
		panic(err) // only for size <= 0
	}
	return &sessionMemo{ttl: ttl, cache: c}
}

func (m *sessionMemo) get(id string, now time.Time) (sessionFact, bool) {
	f, ok := m.cache.Get(id)
	if !ok {
		return sessionFact{}, false
	}
	if now.Sub(f.at) > m.ttl || now.Before(f.at) {
		m.cache.Remove(id)
		return sessionFact{}, false
	}
	return f, true
}

func (m *sessionMemo) put(id, owner string, now time.Time) {
	m.cache.Add(id, sessionFact{owner: owner, at: now})
}

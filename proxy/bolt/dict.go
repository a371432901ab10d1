package bolt

import (
	"errors"
	"fmt"
	"sync"

	"go.etcd.io/bbolt"
)

// The dictionary numbers the strings that repeat across records
// (statuses, plans, price IDs, currencies, intervals, pause behaviours), so
// a record or an index key holds a byte or two instead:
//
//	dict  0x00, id (orderedUint)  → the string
//	      0x01, the string        → id (uvarint)
//
// Numbers come from the bucket's sequence, from 1 ("" is 0 and never
// stored), and never change once committed. Each open store keeps the
// entries it has read in memory, so decoding a record allocates no string
// the dictionary holds, and every cached entitlement shares them.
const bucketDict = "dict"

// maxDictString bounds what the dictionary takes: longer strings are not
// the repeating kind, and a key must stay small.
const maxDictString = 1000

// dictCache is one database's committed entries.
type dictCache struct {
	mu   sync.RWMutex
	byID map[uint64]string
	ids  map[string]uint64
	// committed is the highest number known committed: an entry a write
	// transaction reads with a higher one may be its own, uncommitted,
	// and is cached only once that transaction commits.
	committed uint64
}

// dictCaches holds each open database's cache; Close drops it.
var dictCaches sync.Map // *bbolt.DB → *dictCache

func dictOf(tx *bbolt.Tx) *dictCache {
	if c, ok := dictCaches.Load(tx.DB()); ok {
		return c.(*dictCache)
	}
	c, _ := dictCaches.LoadOrStore(tx.DB(), &dictCache{byID: map[uint64]string{}, ids: map[string]uint64{}})
	return c.(*dictCache)
}

func (c *dictCache) lookupID(id uint64) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s, ok := c.byID[id]
	return s, ok
}

func (c *dictCache) lookup(s string) (uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	id, ok := c.ids[s]
	return id, ok
}

// add caches an entry read in tx if it is known committed.
func (c *dictCache) add(tx *bbolt.Tx, id uint64, s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tx.Writable() && id > c.committed {
		return
	}
	c.byID[id], c.ids[s] = s, id
}

// addCommitted caches an entry its transaction just committed.
func (c *dictCache) addCommitted(id uint64, s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byID[id], c.ids[s] = s, id
	c.committed = max(c.committed, id)
}

// setCommitted records the sequence a read transaction saw.
func (c *dictCache) setCommitted(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.committed = max(c.committed, seq)
}

func dictIDKey(id uint64) []byte { return orderedUint([]byte{0}, id) }

func dictStrKey(s string) []byte { return append([]byte{1}, s...) }

// dictString is the string numbered id.
func dictString(tx *bbolt.Tx, id uint64) (string, error) {
	if id == 0 {
		return "", nil
	}
	c := dictOf(tx)
	if s, ok := c.lookupID(id); ok {
		return s, nil
	}
	b := optionalBucket(tx, bucketDict)
	var v []byte
	if b != nil {
		v = b.Get(dictIDKey(id))
	}
	if v == nil {
		return "", fmt.Errorf("dictionary entry %d missing: %w", id, errCorrupt)
	}
	s := string(v)
	c.add(tx, id, s)
	return s, nil
}

// dictID is the number of s, giving it one in a write transaction when
// it has none; 0 for "".
func dictID(tx *bbolt.Tx, s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	c := dictOf(tx)
	if id, ok := c.lookup(s); ok {
		return id, nil
	}
	if len(s) > maxDictString {
		return 0, fmt.Errorf("%.40q…: longer than %d bytes", s, maxDictString)
	}
	b := optionalBucket(tx, bucketDict)
	if b != nil {
		if v := b.Get(dictStrKey(s)); v != nil {
			d := dec{b: v}
			id := d.uvarint()
			if err := d.end(); err != nil {
				return 0, fmt.Errorf("dictionary entry %q: %w", s, err)
			}
			c.add(tx, id, s)
			return id, nil
		}
	}
	if !tx.Writable() {
		return 0, errNotInDict
	}
	b, err := createdBucket(tx, bucketDict)
	if err != nil {
		return 0, err
	}
	id, err := b.NextSequence()
	if err != nil {
		return 0, err
	}
	if err := put(b, dictIDKey(id), []byte(s), 0); err != nil {
		return 0, err
	}
	if err := b.Put(dictStrKey(s), uvarintBytes(id)); err != nil {
		return 0, err
	}
	tx.OnCommit(func() { c.addCommitted(id, s) })
	return id, nil
}

func uvarintBytes(v uint64) []byte {
	e := enc{}
	e.uvarint(v)
	return e.b
}

// errNotInDict: a read looked for a string no record holds (a filter for
// a plan nobody has).
var errNotInDict = errors.New("not in the dictionary")

// loadDictSequence tells the cache how far the committed entries go.
func loadDictSequence(db *bbolt.DB) error {
	return db.View(func(tx *bbolt.Tx) error {
		if b := optionalBucket(tx, bucketDict); b != nil {
			dictOf(tx).setCommitted(b.Sequence())
		}
		return nil
	})
}

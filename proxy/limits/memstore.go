package limits

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// MemoryStore is a Store in memory: for tests, and for a gateway run
// without a store file. It forgets everything with the process.
type MemoryStore struct {
	mu sync.Mutex
	m  map[memKey]memVal
}

type memKey struct {
	subject     proxy.Subject
	plan, route string
	start       int64
	replica     string
}

type memVal struct {
	end  int64
	used int64
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{m: map[memKey]memVal{}} }

func memKeyOf(k *proxy.QuotaKey, replica string) (memKey, error) {
	if !k.Subject.Valid() || k.Plan == "" || k.Route == "" || k.Start.IsZero() || !k.End.After(k.Start) {
		return memKey{}, errors.New("limits: invalid quota key")
	}
	return memKey{k.Subject, k.Plan, k.Route, k.Start.Unix(), replica}, nil
}

func (s *MemoryStore) QuotaCount(_ context.Context, replica string, key proxy.QuotaKey) (own, total int64, err error) {
	mk, err := memKeyOf(&key, replica)
	if err != nil {
		return 0, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		if k.subject == mk.subject && k.plan == mk.plan && k.route == mk.route && k.start == mk.start {
			total += v.used
			if k.replica == replica {
				own = v.used
			}
		}
	}
	return own, total, nil
}

func (s *MemoryStore) SaveQuotaCounts(_ context.Context, replica string, counts []proxy.QuotaCount) error {
	keys := make([]memKey, len(counts))
	for i := range counts {
		k, err := memKeyOf(&counts[i].Key, replica)
		if err != nil {
			return err
		}
		keys[i] = k
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, k := range keys {
		if old, ok := s.m[k]; !ok || old.used < counts[i].Used {
			s.m[k] = memVal{end: counts[i].Key.End.Unix(), used: counts[i].Used}
		}
	}
	return nil
}

func (s *MemoryStore) QuotaUsage(_ context.Context, subject proxy.Subject, now time.Time) ([]proxy.QuotaCount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sums := map[memKey]*proxy.QuotaCount{}
	var out []proxy.QuotaCount
	for k, v := range s.m {
		if k.subject != subject || now.Unix() >= v.end {
			continue
		}
		k.replica = ""
		if c := sums[k]; c != nil {
			c.Used += v.used
			continue
		}
		sums[k] = &proxy.QuotaCount{Key: proxy.QuotaKey{Subject: subject, Plan: k.plan, Route: k.route,
			Start: time.Unix(k.start, 0).UTC(), End: time.Unix(v.end, 0).UTC()}, Used: v.used}
	}
	for _, c := range sums {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b proxy.QuotaCount) int {
		return cmp.Or(cmp.Compare(a.Key.Plan, b.Key.Plan), cmp.Compare(a.Key.Route, b.Key.Route), a.Key.Start.Compare(b.Key.Start))
	})
	return out, nil
}

func (s *MemoryStore) PruneQuotaCounts(_ context.Context, before time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.m {
		if v.end < before.Unix() {
			delete(s.m, k)
			n++
		}
	}
	return n, nil
}

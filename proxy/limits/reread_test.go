package limits_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/limits"
)

// batchStore reads many counters in one call (limits.BatchStore, as
// PostgreSQL's store does), counting its calls and the single reads.
type batchStore struct {
	limits.Store
	singles, batches atomic.Int64
}

func (s *batchStore) QuotaCount(ctx context.Context, replica string, key proxy.QuotaKey) (int64, int64, error) {
	s.singles.Add(1)
	return s.Store.QuotaCount(ctx, replica, key)
}

func (s *batchStore) QuotaCounts(ctx context.Context, replica string, keys []proxy.QuotaKey) (own, total []int64, err error) {
	s.batches.Add(1)
	for _, k := range keys {
		o, t, err := s.Store.QuotaCount(ctx, replica, k)
		if err != nil {
			return nil, nil, err
		}
		own, total = append(own, o), append(total, t)
	}
	return own, total, nil
}

var _ limits.BatchStore = (*batchStore)(nil)

// A shared store's flush re-reads every counter the replica holds, and
// it holds one per subject active in the last IdleCounter: with a store
// that reads many at once, that is ONE read a flush, not one a subject
// (a flush of 50 subjects made 50 round trips to PostgreSQL before). The
// re-read still gives each counter the others' counts.
func TestFlush_SharedReReadsInOneBatch(t *testing.T) {
	const subjects = 50
	c := &clock{t: jan1}
	st := &batchStore{Store: limits.NewMemoryStore()}
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Quota: 10, Period: proxy.PeriodMonth}}
	r1, err := limits.New(limits.Options{Store: st, Replica: "r1", Shared: true, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	subject := func(i int) proxy.Subject {
		return proxy.Subject{Kind: proxy.SubjectUser, ID: fmt.Sprintf("user_%02d", i)}
	}
	admit := func(sub proxy.Subject, n int) (got int) {
		for range n {
			a, err := r1.Admit(ctx, sub, "pro", e, time.Time{}, c.now())
			if err != nil {
				t.Fatal(err)
			}
			if a.Reason == limits.Allowed {
				got++
				a.Settle(http.StatusOK, 1)
			}
		}
		return got
	}
	for i := range subjects {
		admit(subject(i), 1)
	}
	// Another replica counts 8 of subject 0's quota meanwhile.
	key := proxy.QuotaKey{Subject: subject(0), Plan: "pro", Route: "*", Start: jan1, End: jan1.AddDate(0, 1, 0)}
	if err := st.Store.SaveQuotaCounts(ctx, "r2", []proxy.QuotaCount{{Key: key, Used: 8}}); err != nil {
		t.Fatal(err)
	}
	st.singles.Store(0)
	for range 2 {
		c.add(time.Second)
		if err := r1.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s, b := st.singles.Load(), st.batches.Load(); s != 0 || b != 2 {
		t.Errorf("two flushes holding %d counters read %d counters one by one and made %d batch reads; want 0 and 2", subjects, s, b)
	}
	if got := admit(subject(0), 10); got != 1 {
		t.Errorf("after the flushes, subject 0 was admitted %d more against a quota of 10 with 9 used; want 1", got)
	}
}

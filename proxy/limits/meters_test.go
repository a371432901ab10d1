package limits_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/limits"
)

// meterStore records what the limiter's flush hands a limits.MeterStore:
// every call's quota counts and meter counts together (one transaction).
type meterStore struct {
	*limits.MemoryStore
	mu     sync.Mutex
	saves  [][]proxy.MeterCount
	counts [][]proxy.QuotaCount
	rows   int
	next   time.Time
}

func (m *meterStore) SaveUsageCounts(_ context.Context, _ string, counts []proxy.QuotaCount, meters []proxy.MeterCount, _ time.Time) (int, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saves = append(m.saves, meters)
	m.counts = append(m.counts, counts)
	return m.rows, m.next, nil
}

func (m *meterStore) MeteredUsage(context.Context, proxy.Subject, string, time.Time) (int64, error) {
	return 100, nil
}

// Count adds a request's cost to the subject's meter window holding now;
// a flush hands the meter counts (absolute) and the quota counters to the
// store in one call, kicks the sender when rows were written, and lets a
// saved window go once it has ended.
func TestCount_FlushedWithQuotaCounters(t *testing.T) {
	c := &clock{t: jan1.Add(10*time.Hour + 30*time.Minute)}
	st := &meterStore{MemoryStore: limits.NewMemoryStore()}
	kicks := 0
	l, err := limits.New(limits.Options{Store: st, Now: c.now, Billed: func() { kicks++ }})
	if err != nil {
		t.Fatal(err)
	}
	sub := &proxy.Subscription{CustomerID: "cus_ada", CurrentPeriodEnd: jan1.AddDate(0, 1, 0)}
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Quota: 100, Period: proxy.PeriodMonth}}
	a, err := l.Admit(ctx, ada, "metered", e, time.Time{}, c.now())
	if err != nil {
		t.Fatal(err)
	}
	a.Settle(200, 3)
	l.Count(ada, sub, "api_requests", 3)
	l.Count(ada, sub, "api_requests", 2)
	l.Count(ada, sub, "api_requests", 0) // a 0 cost counts nothing
	if n, err := l.MeteredUsage(ctx, ada, "api_requests", jan1); err != nil || n != 105 {
		t.Errorf("MeteredUsage before a flush = %d, %v; want the store's 100 + 5 in memory", n, err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	h10 := jan1.Add(10 * time.Hour)
	key := proxy.MeterKey{Subject: ada, Customer: "cus_ada", EventName: "api_requests", Start: h10, End: h10.Add(time.Hour)}
	if d := cmp.Diff([][]proxy.MeterCount{{{Key: key, Used: 5}}}, st.saves); d != "" {
		t.Errorf("meter counts saved (-want +got):\n%s", d)
	}
	if len(st.counts) != 1 || len(st.counts[0]) != 1 || st.counts[0][0].Used != 3 {
		t.Errorf("quota counts saved with them: %+v; want one of 3", st.counts)
	}
	if n, _ := l.MeteredUsage(ctx, ada, "api_requests", jan1); n != 100 {
		t.Errorf("MeteredUsage after the flush = %d; want the store's 100 only", n)
	}
	if kicks != 0 {
		t.Errorf("kicks = %d with no rows written", kicks)
	}

	// The window ends (the store said when): the next flush runs even with
	// nothing new, the store bills, the sender is kicked.
	st.next, st.rows = h10.Add(time.Hour), 0
	if err := l.Flush(ctx); err != nil { // nothing new, window open: no call
		t.Fatal(err)
	}
	if len(st.saves) != 1 {
		t.Fatalf("a flush with nothing new before the window's end called the store (%d calls)", len(st.saves))
	}
	c.add(time.Hour)
	st.rows, st.next = 1, time.Time{}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(st.saves) != 2 || kicks != 1 {
		t.Errorf("after the window's end: %d calls, %d kicks; want 2 and 1", len(st.saves), kicks)
	}
	// A request now counts in the next hour's window, never the ended one.
	l.Count(ada, sub, "api_requests", 1)
	st.rows = 0
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := st.saves[len(st.saves)-1]; len(got) != 1 || !got[0].Key.Start.Equal(h10.Add(time.Hour)) || got[0].Used != 1 {
		t.Errorf("after the hour: %+v; want 1 in the 11:00 window", got)
	}
}

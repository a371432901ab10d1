package limits_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/limits"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var (
	ada  = proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	bob  = proxy.Subject{Kind: proxy.SubjectUser, ID: "user_bob"}
	ctx  = context.Background()
	jan1 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
)

func newLimiter(t *testing.T, st limits.Store, c *clock) *limits.Limiter {
	t.Helper()
	l, err := limits.New(limits.Options{Store: st, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// N parallel requests from two subjects against a quota Q: exactly Q each.
func TestAdmit_ExactQuotaInParallel(t *testing.T) {
	const q, n = 25, 80
	c := &clock{t: jan1.Add(10 * 24 * time.Hour)}
	l := newLimiter(t, limits.NewMemoryStore(), c)
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Quota: q, Period: proxy.PeriodMonth}}
	var allowed [2]atomic.Int64
	var wg sync.WaitGroup
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := []proxy.Subject{ada, bob}[i%2]
			a, err := l.Admit(ctx, sub, "pro", e, time.Time{}, c.now())
			if err != nil {
				t.Error(err)
				return
			}
			if a.Reason == limits.Allowed {
				allowed[i%2].Add(1)
				a.Settle(http.StatusOK, 1)
			} else if a.Reason != limits.QuotaExceeded {
				t.Errorf("refused for %v", a.Reason)
			}
		}()
	}
	wg.Wait()
	for i, got := range []int64{allowed[0].Load(), allowed[1].Load()} {
		if got != q {
			t.Errorf("subject %d: %d allowed, want exactly %d", i, got, q)
		}
	}
}

// A 5xx costs nothing, the cost header's value is the cost, and a request
// is admitted while used < quota.
func TestSettle(t *testing.T) {
	c := &clock{t: jan1}
	st := limits.NewMemoryStore()
	l := newLimiter(t, st, c)
	e := &proxy.LimitEntry{Route: "258AVO", Limit: proxy.Limit{Quota: 10, Period: proxy.PeriodDay}}
	admit := func() limits.Admission {
		t.Helper()
		a, err := l.Admit(ctx, ada, "pro", e, time.Time{}, c.now())
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := admit()
	a.Settle(http.StatusServiceUnavailable, 5)
	if b := admit(); b.Used != 0 {
		t.Errorf("after a 5xx: used %d, want 0", b.Used)
	} else {
		b.Settle(http.StatusOK, 9)
	}
	if b := admit(); b.Reason != limits.Allowed || b.Used != 9 {
		t.Errorf("at 9 of 10: %v used %d, want admitted", b.Reason, b.Used)
	} else {
		b.Settle(http.StatusOK, 3) // over by its own cost: allowed, as the issue says
	}
	if b := admit(); b.Reason != limits.QuotaExceeded || b.Used != 12 {
		t.Errorf("at 12 of 10: %v used %d, want quota exceeded", b.Reason, b.Used)
	}
	a.Settle(http.StatusOK, 100) // settled already: nothing
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	own, total, _ := st.QuotaCount(ctx, "", proxy.QuotaKey{Subject: ada, Plan: "pro", Route: "258AVO", Start: jan1, End: jan1.Add(24 * time.Hour)})
	if own != 12 || total != 12 {
		t.Errorf("flushed %d/%d, want 12", own, total)
	}
}

// A crash loses at most what was counted since the last flush, and a
// restart never counts a flushed request twice.
func TestFlush_RestartRemembers(t *testing.T) {
	c := &clock{t: jan1}
	st := limits.NewMemoryStore()
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Quota: 100, Period: proxy.PeriodMonth}}
	use := func(l *limits.Limiter, n int) {
		for range n {
			a, err := l.Admit(ctx, ada, "pro", e, time.Time{}, c.now())
			if err != nil || a.Reason != limits.Allowed {
				t.Fatalf("admit: %v %v", a.Reason, err)
			}
			a.Settle(http.StatusOK, 1)
		}
	}
	l := newLimiter(t, st, c)
	use(l, 7)
	for range 3 { // flushing again and again changes nothing
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	use(l, 2) // counted, never flushed: the crash loses these
	l2 := newLimiter(t, st, c)
	a, err := l2.Admit(ctx, ada, "pro", e, time.Time{}, c.now())
	if err != nil {
		t.Fatal(err)
	}
	if a.Used != 7 {
		t.Errorf("after a restart: used %d, want the 7 flushed", a.Used)
	}
	a.Settle(http.StatusOK, 1)
	if err := l2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	use(l2, 0)
	l3 := newLimiter(t, st, c)
	if a, _ := l3.Admit(ctx, ada, "pro", e, time.Time{}, c.now()); a.Used != 8 {
		t.Errorf("after a second restart: used %d, want 8", a.Used)
	}
}

// A new window starts from zero, and the limiter forgets ended windows.
func TestRollover(t *testing.T) {
	c := &clock{t: jan1.Add(20 * 24 * time.Hour)}
	l := newLimiter(t, limits.NewMemoryStore(), c)
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Quota: 2, Period: proxy.PeriodMonth}}
	anchor := time.Date(2024, 6, 25, 8, 0, 0, 0, time.UTC)
	for range 2 {
		a, _ := l.Admit(ctx, ada, "pro", e, anchor, c.now())
		a.Settle(http.StatusOK, 1)
	}
	if a, _ := l.Admit(ctx, ada, "pro", e, anchor, c.now()); a.Reason != limits.QuotaExceeded || !a.QuotaReset.Equal(time.Date(2025, 1, 25, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("over quota: %v, resets %v; want refused until 25 January 08:00", a.Reason, a.QuotaReset)
	}
	c.add(5 * 24 * time.Hour) // 26 January: past the anchor's day
	if a, _ := l.Admit(ctx, ada, "pro", e, anchor, c.now()); a.Reason != limits.Allowed || a.Used != 0 {
		t.Errorf("new period: %v used %d, want admitted from 0", a.Reason, a.Used)
	}
}

// The rate: exactly the burst at once, then one per interval; with
// several replicas, each enforces its share.
func TestAdmit_Rate(t *testing.T) {
	c := &clock{t: jan1}
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Rate: 10, Per: time.Second, Burst: 4}}
	for _, tt := range []struct {
		replicas  int
		wantBurst int
		wantRetry time.Duration
	}{{1, 4, 100 * time.Millisecond}, {2, 2, 200 * time.Millisecond}, {3, 2, 300 * time.Millisecond},
		// A forged count (rows written into the heartbeats' table) divides
		// by at most MaxReplicas.
		{1 << 40, 1, limits.MaxReplicas * 100 * time.Millisecond}} {
		l, _ := limits.New(limits.Options{Store: limits.NewMemoryStore(), Now: c.now, Replicas: replicas(tt.replicas)})
		n := 0
		var last limits.Admission
		for {
			a, _ := l.Admit(ctx, ada, "pro", e, time.Time{}, c.now())
			if a.Reason != limits.Allowed {
				last = a
				break
			}
			n++
		}
		if n != tt.wantBurst || last.Reason != limits.RateLimited || last.RateRetry != tt.wantRetry {
			t.Errorf("%d replicas: %d at once, then %v retry %v; want %d, then rate limited, retry %v", tt.replicas, n, last.Reason, last.RateRetry, tt.wantBurst, tt.wantRetry)
		}
	}
}

type replicas int

// movingReplicas is a count that changes between requests (a replica
// starting or stopping).
type movingReplicas struct{ n atomic.Int64 }

func (m *movingReplicas) LiveReplicas() int { return int(m.n.Load()) }

// TestAdmit_RateWhileTheCountChanges: the replica count changing (2 → 1 →
// 2) never lets a subject through more than the burst at once on this
// replica: its arrival time carries over, so a smaller count gives no
// fresh burst on top of what the larger one spent.
func TestAdmit_RateWhileTheCountChanges(t *testing.T) {
	c := &clock{t: jan1}
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Rate: 10, Per: time.Second, Burst: 4}}
	var n movingReplicas
	l, _ := limits.New(limits.Options{Store: limits.NewMemoryStore(), Now: c.now, Replicas: &n})
	burst := func() (got int) {
		for range 10 {
			if a, _ := l.Admit(ctx, ada, "pro", e, time.Time{}, c.now()); a.Reason == limits.Allowed {
				got++
			}
		}
		return got
	}
	total := 0
	for _, count := range []int64{2, 1, 2, 1} {
		n.n.Store(count)
		total += burst()
	}
	if total != 2 {
		t.Errorf("at one instant, the count moving 2, 1, 2, 1: %d admitted; want 2 (the half burst of 2 replicas, nothing more)", total)
	}
	c.add(time.Second) // the bucket refills: 4 at the rate of one replica
	n.n.Store(1)
	if got := burst(); got != 4 {
		t.Errorf("a second later, alone: %d, want the whole burst, 4", got)
	}
}

// TestTwoReplicas_QuotaReReadWhateverTheCount: a replica of a shared store
// re-reads the others' counts at each flush even while its heartbeats
// count it alone (a replica that just started, one whose row went stale):
// the quota never rests on the count.
func TestTwoReplicas_QuotaReReadWhateverTheCount(t *testing.T) {
	c := &clock{t: jan1}
	st := limits.NewMemoryStore()
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Quota: 10, Period: proxy.PeriodMonth}}
	r1, _ := limits.New(limits.Options{Store: st, Replica: "r1", Shared: true, Replicas: replicas(1), Now: c.now})
	r2, _ := limits.New(limits.Options{Store: st, Replica: "r2", Shared: true, Replicas: replicas(1), Now: c.now})
	admit := func(l *limits.Limiter, n int) (got int) {
		for range n {
			a, err := l.Admit(ctx, ada, "pro", e, time.Time{}, c.now())
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
	admit(r1, 1) // r1 reads the counter now: nobody else has counted
	if got := admit(r2, 7); got != 7 {
		t.Fatalf("r2 admitted %d of 7", got)
	}
	for _, l := range []*limits.Limiter{r2, r1} {
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := admit(r1, 10); got != 2 {
		t.Errorf("r1, after a flush, admitted %d more against a quota of 10 with 8 used; want 2", got)
	}
}

func (r replicas) LiveReplicas() int { return int(r) }

// The fields of draft-ietf-httpapi-ratelimit-headers-10.
func TestWriteHeaders(t *testing.T) {
	c := &clock{t: time.Date(2025, 1, 31, 23, 0, 0, 0, time.UTC)}
	l := newLimiter(t, limits.NewMemoryStore(), c)
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Rate: 10, Per: time.Second, Burst: 20, Quota: 2, Period: proxy.PeriodDay}}
	a, _ := l.Admit(ctx, ada, "pro", e, time.Time{}, c.now())
	h := http.Header{}
	a.WriteHeaders(h, c.now())
	want := http.Header{
		"Ratelimit-Policy": {`"pro-rate";q=20;w=2, "pro-quota";q=2;w=86400`},
		"Ratelimit":        {`"pro-rate";r=19;t=1, "pro-quota";r=1;t=3600`},
	}
	for k, v := range want {
		if got := h.Values(k); len(got) != 1 || got[0] != v[0] {
			t.Errorf("%s: %q, want %q", k, got, v[0])
		}
	}
	a.Settle(http.StatusOK, 2)
	b, _ := l.Admit(ctx, ada, "pro", e, time.Time{}, c.now())
	h = http.Header{}
	b.WriteHeaders(h, c.now())
	if got := h.Get("Ratelimit"); got != `"pro-rate";r=19;t=1, "pro-quota";r=0;t=3600` {
		t.Errorf("refused: RateLimit %q", got)
	}
	if got := h.Get("Retry-After"); got != "3600" {
		t.Errorf("refused: Retry-After %q, want 3600", got)
	}
}

type failingStore struct{ limits.Store }

func (failingStore) QuotaCount(context.Context, string, proxy.QuotaKey) (int64, int64, error) {
	return 0, 0, errors.New("disk on fire")
}

// A counter the store cannot read admits nothing.
func TestAdmit_StoreDown(t *testing.T) {
	c := &clock{t: jan1}
	l := newLimiter(t, failingStore{limits.NewMemoryStore()}, c)
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Quota: 5, Period: proxy.PeriodDay}}
	if _, err := l.Admit(ctx, ada, "pro", e, time.Time{}, c.now()); err == nil {
		t.Error("admitted with the store down")
	}
}

type countingStore struct {
	limits.Store
	reads atomic.Int64
}

func (s *countingStore) QuotaCount(ctx context.Context, replica string, key proxy.QuotaKey) (int64, int64, error) {
	s.reads.Add(1)
	return s.Store.QuotaCount(ctx, replica, key)
}

// An idle counter whose count is all in the store leaves memory; the next
// request reads it again and goes on from it.
func TestFlush_ForgetsIdleCounters(t *testing.T) {
	c := &clock{t: jan1}
	st := &countingStore{Store: limits.NewMemoryStore()}
	l := newLimiter(t, st, c)
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Quota: 10, Period: proxy.PeriodMonth}}
	for range 3 {
		a, _ := l.Admit(ctx, ada, "pro", e, time.Time{}, c.now())
		a.Settle(http.StatusOK, 1)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.add(limits.IdleCounter + time.Second)
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := l.Admit(ctx, ada, "pro", e, time.Time{}, c.now())
	if err != nil || a.Used != 3 || st.reads.Load() != 2 {
		t.Errorf("after idling: used %d (%v), %d store reads; want 3 used, read again", a.Used, err, st.reads.Load())
	}
}

// Two replicas over one store (as PostgreSQL's will be): each counts its
// own row and reads the other's at each flush; together they admit the
// quota, and at most what the other replica admits in two flush
// intervals more (README "Limits", "Several replicas").
func TestTwoReplicas_QuotaWithinTheBound(t *testing.T) {
	const q, perInterval = 100, 7
	c := &clock{t: jan1}
	st := limits.NewMemoryStore()
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Quota: q, Period: proxy.PeriodMonth}}
	var reps []*limits.Limiter
	for _, name := range []string{"r1", "r2"} {
		l, err := limits.New(limits.Options{Store: st, Replica: name, Replicas: replicas(2), Now: c.now})
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, l)
	}
	admitted, refusedRounds := 0, 0
	for round := 0; refusedRounds < 3 && round < 100; round++ {
		before := admitted
		for _, l := range reps {
			for range perInterval {
				a, err := l.Admit(ctx, ada, "pro", e, time.Time{}, c.now())
				if err != nil {
					t.Fatal(err)
				}
				if a.Reason == limits.Allowed {
					admitted++
					a.Settle(http.StatusOK, 1)
				}
			}
		}
		for _, l := range reps {
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		c.add(time.Second)
		if admitted == before {
			refusedRounds++
		}
	}
	if admitted < q || admitted > q+2*perInterval {
		t.Errorf("two replicas admitted %d against a quota of %d; want %d to %d", admitted, q, q, q+2*perInterval)
	}
	_, total, _ := st.QuotaCount(ctx, "r1", proxy.QuotaKey{Subject: ada, Plan: "pro", Route: "*", Start: jan1, End: jan1.AddDate(0, 1, 0)})
	if total != int64(admitted) {
		t.Errorf("the store holds %d, %d were admitted", total, admitted)
	}
	t.Logf("two replicas, quota %d, %d a replica between flushes: %d admitted", q, perInterval, admitted)
}

// BenchmarkAdmitSettle: the limiter's whole part in a request under a rate
// and a quota: Admit, Settle and the RateLimit fields.
func BenchmarkAdmitSettle(b *testing.B) { benchAdmitSettle(b, nil) }

// BenchmarkAdmitSettle_TwoReplicas: the same with the count of a shared
// store (an atomic, as postgres.Replicas keeps it) at 2, each replica's
// share of the rate worked out per request.
func BenchmarkAdmitSettle_TwoReplicas(b *testing.B) {
	var n movingReplicas
	n.n.Store(2)
	benchAdmitSettle(b, &n)
}

func benchAdmitSettle(b *testing.B, reps limits.Replicas) {
	now := jan1.Add(time.Hour)
	// The requests arrive 2 µs apart: twice the rate's interval (1 µs), or
	// as much as a replica's share with two: the bucket never empties. The
	// limiter reads no clock of its own on this path.
	l, _ := limits.New(limits.Options{Store: limits.NewMemoryStore(), Replicas: reps, Now: func() time.Time { return now }})
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Rate: 1_000_000, Per: time.Second, Burst: 1_000_000, Quota: 1e12, Period: proxy.PeriodMonth}}
	anchor := time.Date(2024, 6, 25, 8, 0, 0, 0, time.UTC)
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(2 * time.Microsecond)
		a, err := l.Admit(ctx, ada, "pro", e, anchor, now)
		if err != nil || a.Reason != limits.Allowed {
			b.Fatal(a.Reason, err)
		}
		a.Settle(http.StatusOK, 1)
		a.WriteHeaders(h, now)
	}
}

package limits_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/limits"
)

// Admit judges a request at its arrival, which the gate passes, and not
// at the limiter's own clock: the quota window is the arrival's.
func TestAdmit_JudgesAtArrival(t *testing.T) {
	c := &clock{t: jan1.Add(5 * 24 * time.Hour)} // the limiter's clock: days off
	l := newLimiter(t, limits.NewMemoryStore(), c)
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Quota: 10, Period: proxy.PeriodDay}}
	a, err := l.Admit(ctx, ada, "pro", e, time.Time{}, jan1.Add(10*time.Second))
	if err != nil || a.Reason != limits.Allowed {
		t.Fatalf("admit: %v %v", a.Reason, err)
	}
	if !a.QuotaStart.Equal(jan1) || !a.QuotaReset.Equal(jan1.Add(24*time.Hour)) {
		t.Errorf("window %v–%v, want the arrival's day %v", a.QuotaStart, a.QuotaReset, jan1)
	}
}

// Requests overtake each other in the gate (one waits on the store or on
// Clerk), so a bucket may be asked about an arrival earlier than one it
// judged already. Such an arrival, up to ArrivalSkew back, is judged at
// the later one: it neither gets credit back through GCRA's cap for a
// clock stepped back, nor flips the quota window back across its end.
func TestAdmit_OvertakenArrival(t *testing.T) {
	const interval = time.Second
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Rate: 1, Per: interval, Burst: 1}}
	c := &clock{t: jan1}
	l := newLimiter(t, limits.NewMemoryStore(), c)
	at := jan1.Add(time.Hour)
	admit := func(arrival time.Time) limits.Admission {
		t.Helper()
		a, err := l.Admit(ctx, ada, "pro", e, time.Time{}, arrival)
		if err != nil {
			t.Fatal(err)
		}
		if a.Reason == limits.Allowed {
			a.Settle(http.StatusOK, 1)
		}
		return a
	}
	steps := []struct {
		name    string
		arrival time.Time
		want    limits.Reason
	}{
		{"first", at, limits.Allowed},
		{"half an interval on", at.Add(interval / 2), limits.RateLimited},
		// Without the clamp GCRA would cap the bucket at this arrival plus
		// the burst, and the next request would pass.
		{"0.9 s before the latest", at.Add(-400 * time.Millisecond), limits.RateLimited},
		{"0.6 s on", at.Add(600 * time.Millisecond), limits.RateLimited},
		{"one interval on", at.Add(interval), limits.Allowed},
	}
	for _, st := range steps {
		if a := admit(st.arrival); a.Reason != st.want {
			t.Errorf("%s: %v, want %v", st.name, a.Reason, st.want)
		}
	}

	// The quota window does not flip back at its end: a request that
	// arrived just before midnight, judged after one that arrived just
	// after, counts in the new day, as the bucket has moved on.
	q := &proxy.LimitEntry{Route: "q", Limit: proxy.Limit{Quota: 5, Period: proxy.PeriodDay}}
	jan2 := jan1.Add(24 * time.Hour)
	for _, arrival := range []time.Time{jan2.Add(100 * time.Millisecond), jan2.Add(-100 * time.Millisecond)} {
		a, err := l.Admit(ctx, ada, "pro", q, time.Time{}, arrival)
		if err != nil {
			t.Fatal(err)
		}
		if !a.QuotaStart.Equal(jan2) {
			t.Errorf("arrival %v after one at %v: window from %v, want %v", arrival, jan2.Add(100*time.Millisecond), a.QuotaStart, jan2)
		}
		a.Settle(http.StatusOK, 1)
	}
}

// Arrivals read from time.Now carry a monotonic reading, which decides
// whether a request was overtaken however long it waited in the gate (on
// Clerk, on the store): five seconds stale, it gets no credit back.
func TestAdmit_OvertakenMonotonic(t *testing.T) {
	const interval = time.Second
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Rate: 1, Per: interval, Burst: 1}}
	l := newLimiter(t, limits.NewMemoryStore(), &clock{t: jan1})
	at := time.Now() // Add keeps its monotonic reading
	for _, st := range []struct {
		name    string
		arrival time.Time
		want    limits.Reason
	}{
		{"first", at, limits.Allowed},
		{"half an interval on", at.Add(interval / 2), limits.RateLimited},
		{"5 s before the latest", at.Add(-4500 * time.Millisecond), limits.RateLimited},
		{"0.6 s on", at.Add(600 * time.Millisecond), limits.RateLimited},
		{"one interval on", at.Add(interval), limits.Allowed},
	} {
		a, err := l.Admit(ctx, ada, "pro", e, time.Time{}, st.arrival)
		if err != nil {
			t.Fatal(err)
		}
		if a.Reason != st.want {
			t.Errorf("%s: %v, want %v", st.name, a.Reason, st.want)
		}
		if a.Reason == limits.Allowed {
			a.Settle(http.StatusOK, 1)
		}
	}
}

// An arrival more than ArrivalSkew before the latest one, without
// monotonic readings, is the clock stepped back (NTP, a resumed VM): it is judged at its own time, and
// GCRA's cap keeps the wait to one interval (proxy.GCRA, red team issue
// 18), not the step's length.
func TestAdmit_ClockSteppedBack(t *testing.T) {
	const interval = time.Second
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Rate: 1, Per: interval, Burst: 1}}
	l := newLimiter(t, limits.NewMemoryStore(), &clock{t: jan1})
	at := jan1.Add(time.Hour)
	if a, _ := l.Admit(ctx, ada, "pro", e, time.Time{}, at); a.Reason != limits.Allowed {
		t.Fatalf("first: %v", a.Reason)
	}
	back := at.Add(-10 * time.Minute)
	if a, _ := l.Admit(ctx, ada, "pro", e, time.Time{}, back); a.Reason != limits.RateLimited || a.RateRetry > interval {
		t.Errorf("stepped back 10 min, at once: %v retry %v, want refused, retry within %v", a.Reason, a.RateRetry, interval)
	}
	if a, _ := l.Admit(ctx, ada, "pro", e, time.Time{}, back.Add(interval)); a.Reason != limits.Allowed {
		t.Errorf("stepped back 10 min, one interval later: %v, want allowed", a.Reason)
	}
}

// A flush forgets a bucket that is full at the flush's time. A request that
// arrived before that flush and is judged after it (it waited in the gate
// on Clerk or the store) must not find a fresh bucket at its own, older
// arrival: it would spend the burst a second time, and the requests after
// the flush a third (red team, issue 15). It is judged as of the flush
// that forgot the bucket: over the interval from the first request to the
// last, no more than the burst and the rate allow.
func TestAdmit_OvertakenAcrossFlush(t *testing.T) {
	const interval, burst = time.Second, 2
	e := &proxy.LimitEntry{Route: "*", Limit: proxy.Limit{Rate: 1, Per: interval, Burst: burst}}
	c := &clock{t: time.Now()} // Add keeps the monotonic reading, as time.Now's arrivals carry one
	l := newLimiter(t, limits.NewMemoryStore(), c)
	at := c.now()
	allowed := 0
	admit := func(arrival time.Time) {
		t.Helper()
		a, err := l.Admit(ctx, ada, "pro", e, time.Time{}, arrival)
		if err != nil {
			t.Fatal(err)
		}
		if a.Reason == limits.Allowed {
			allowed++
			a.Settle(http.StatusOK, 1)
		}
	}
	for range burst {
		admit(at)
	}
	const wait = 3 * interval
	c.add(wait)
	if err := l.Flush(ctx); err != nil { // the bucket is full again: forgotten
		t.Fatal(err)
	}
	for range 3 { // arrived with the first ones, judged only now
		admit(at)
	}
	for range 3 {
		admit(at.Add(wait))
	}
	if most := burst + int(wait/interval); allowed > most {
		t.Errorf("%d requests allowed over %v, want at most %d (burst %d, one a %v)", allowed, wait, most, burst, interval)
	}
}

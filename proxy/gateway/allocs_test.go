package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// paidRequestAllocs is the most allocations a paid request on an LRU hit
// may make through the gate and the reverse proxy (README "Performance"),
// a browser's request with the Clerk session token and the gateway cookie,
// answered by an in-memory upstream into an httptest recorder (whose own
// allocations count too): 58 before the work of docs/PERFORMANCE.md, 44
// after its first round, 43 after the second (the Cookie line stripped
// without a copy), 41 after the third (the X-Tollgate- values and Vary
// backed by the request's own allocation). Raise it only with a reason.
const paidRequestAllocs = 41

// TestPaidRequestAllocations guards the allocation count of a paid
// request. The race detector changes allocation counts (sync.Pool drops
// items at random), so CI runs it without -race as well.
func TestPaidRequestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector; .ci/run runs this test without -race")
	}
	f := newBenchFixture(t)
	const runs = 200
	reqs := make([]*http.Request, runs+1)
	recs := make([]*httptest.ResponseRecorder, runs+1)
	for i := range reqs {
		reqs[i], recs[i] = f.request("/routes/415VNA/x"), httptest.NewRecorder()
	}
	i := 0
	got := testing.AllocsPerRun(runs, func() {
		f.gate.ServeHTTP(recs[i], reqs[i])
		i++
	})
	for j, w := range recs[:i] {
		if w.Code != http.StatusOK {
			t.Fatalf("request %d: status %d: %s", j, w.Code, w.Body)
		}
	}
	t.Logf("a paid request (LRU hit): %.0f allocations", got)
	if got > paidRequestAllocs {
		t.Errorf("a paid request (LRU hit) makes %.0f allocations, more than the %d allowed", got, paidRequestAllocs)
	}
}

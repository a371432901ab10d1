package stripe

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// memOutbox is an in-memory MeterStore that keeps bbolt's rule: a row
// marked sent never changes again.
type memOutbox struct {
	mu      sync.Mutex
	entries []proxy.OutboxEntry
}

func (o *memOutbox) add(rows ...proxy.UsageRow) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range rows {
		r.Writer, r.Seq = "0a1b2c3d", uint64(len(o.entries)+1)
		o.entries = append(o.entries, proxy.OutboxEntry{Row: r})
	}
}

func (o *memOutbox) DueUsage(_ context.Context, now time.Time, limit int) ([]proxy.OutboxEntry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []proxy.OutboxEntry
	for _, e := range o.entries {
		if e.State.Status == proxy.OutboxPending && !e.State.Next.After(now) && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (o *memOutbox) SetUsageState(_ context.Context, seq uint64, st proxy.OutboxState) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := &o.entries[seq-1]
	if e.State.Status == proxy.OutboxSent {
		return fmt.Errorf("row %d already sent", seq)
	}
	e.State = st
	return nil
}

func (o *memOutbox) MeteredUsageBetween(_ context.Context, s proxy.Subject, ev string, from, to time.Time) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var n int64
	for _, e := range o.entries {
		if e.Row.Subject == s && e.Row.EventName == ev && !e.Row.At.Before(from) && e.Row.At.Before(to) {
			n += e.Row.Value
		}
	}
	return n, nil
}

func (o *memOutbox) OutboxStats(context.Context) (proxy.OutboxStats, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var st proxy.OutboxStats
	for _, e := range o.entries {
		switch e.State.Status {
		case proxy.OutboxPending:
			st.Pending++
			if st.Oldest.IsZero() {
				st.Oldest = e.Row.At
			}
		case proxy.OutboxSent:
			st.Sent++
		case proxy.OutboxFlagged:
			st.Flagged++
		}
	}
	return st, nil
}

func (o *memOutbox) state(seq uint64) proxy.OutboxState {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.entries[seq-1].State
}

// scriptedStripe answers meter events from a script, one answer a request,
// and records each request's form.
type scriptedStripe struct {
	mu      sync.Mutex
	answers []answer
	forms   []url.Values
	summary int64
}

type answer struct {
	status int
	body   string
}

const (
	okEvent   = `{"object":"billing.meter_event","event_name":"api_requests","identifier":"x","payload":{},"timestamp":1}`
	duplicate = `{"error":{"type":"invalid_request_error","message":"An event already exists with identifier user_ada.api_requests.1.w0a1b2c3d.1."}}`
)

func (s *scriptedStripe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	w.Header().Set("Content-Type", "application/json")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/billing/meters":
		fmt.Fprint(w, `{"object":"list","url":"/v1/billing/meters","has_more":false,"data":[{"id":"mtr_1","object":"billing.meter","event_name":"api_requests","status":"active"}]}`)
		return
	case r.Method == http.MethodGet && r.URL.Path == "/v1/billing/meters/mtr_1/event_summaries":
		fmt.Fprintf(w, `{"object":"list","url":"/v1/billing/meters/mtr_1/event_summaries","has_more":false,"data":[{"id":"mtrusg_1","object":"billing.meter_event_summary","aggregated_value":%d,"meter":"mtr_1","start_time":%s,"end_time":%s}]}`,
			s.summary, r.Form.Get("start_time"), r.Form.Get("end_time"))
		return
	}
	s.forms = append(s.forms, r.PostForm)
	a := answer{200, okEvent}
	if len(s.answers) > 0 {
		a, s.answers = s.answers[0], s.answers[1:]
	}
	if a.status == 400 && a.body == duplicate {
		w.Header().Set("Stripe-Should-Retry", "false")
	}
	w.WriteHeader(a.status)
	fmt.Fprint(w, a.body)
}

func (s *scriptedStripe) requests() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.forms)
}

func newMeterTest(t *testing.T, clock *testClock, answers ...answer) (*MeterSender, *memOutbox, *scriptedStripe, *[]time.Duration) {
	t.Helper()
	fake := &scriptedStripe{answers: answers}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	b, err := newBilling(Config{SecretKey: "sk_test_meters", APIURL: srv.URL, PublicURL: mustURL("https://app.example.test"), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	b.sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	out := &memOutbox{}
	m := b.MeterSender(MeterConfig{Store: out, Lane: Lane{Rate: 1000, Burst: 1000}})
	var sleeps []time.Duration
	m.sleep = func(ctx context.Context, d time.Duration) error { sleeps = append(sleeps, d); return ctx.Err() }
	return m, out, fake, &sleeps
}

func meterRow(at time.Time, n int64) proxy.UsageRow {
	return proxy.UsageRow{Subject: userAda(), Customer: "cus_ada", EventName: "api_requests", Window: at, At: at, Value: n}
}

// The sender's state machine, one row, one answer from Stripe.
func TestMeterSender_Outcomes(t *testing.T) {
	tests := []struct {
		name    string
		answer  answer
		result  string
		status  proxy.OutboxStatus
		backoff bool // a later pass may send it again
	}{
		{"accepted", answer{200, okEvent}, MeterAccepted, proxy.OutboxSent, false},
		{"duplicate identifier counts as accepted", answer{400, duplicate}, MeterDuplicate, proxy.OutboxSent, false},
		{"429 is retried", answer{429, `{"error":{"type":"invalid_request_error","code":"rate_limit","message":"Too many requests"}}`}, MeterRetry, proxy.OutboxPending, true},
		{"500 is retried", answer{500, `{"error":{"type":"api_error","message":"An unknown error occurred"}}`}, MeterRetry, proxy.OutboxPending, true},
		{"401 is the key, retried", answer{401, `{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}`}, MeterRetry, proxy.OutboxPending, true},
		{"400 is permanent: flagged", answer{400, `{"error":{"type":"invalid_request_error","code":"parameter_invalid","param":"payload[value]","message":"Invalid value"}}`}, MeterFlagged, proxy.OutboxFlagged, false},
		{"404 is permanent: flagged", answer{404, `{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such customer"}}`}, MeterFlagged, proxy.OutboxFlagged, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &testClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
			m, out, fake, _ := newMeterTest(t, clock, tt.answer)
			obs := &meterObs{}
			m.obs = obs
			out.add(meterRow(clock.Now().Add(-time.Minute), 3))
			wait, err := m.Pass(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			st := out.state(1)
			if st.Status != tt.status || st.Attempts != 1 || !st.First.Equal(clock.Now()) {
				t.Errorf("state = %+v; want %s after 1 attempt first made now", st, tt.status)
			}
			if diff := cmp.Diff([]string{tt.result}, obs.results); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			if tt.backoff != (wait > 0) || tt.backoff != st.Next.After(clock.Now()) {
				t.Errorf("wait %v, next %v; want a backoff: %v", wait, st.Next, tt.backoff)
			}
			// One more pass at once: only a backed-off row could go again,
			// and not before its time.
			if _, err := m.Pass(t.Context()); err != nil {
				t.Fatal(err)
			}
			if n := len(fake.requests()); n != 1 {
				t.Errorf("%d requests; want 1", n)
			}
			if tt.backoff {
				clock.Advance(st.Next.Sub(clock.Now()))
				if _, err := m.Pass(t.Context()); err != nil {
					t.Fatal(err)
				}
				if st := out.state(1); st.Status != proxy.OutboxSent || st.Attempts != 2 {
					t.Errorf("after the backoff: %+v; want sent on the second attempt", st)
				}
			}
		})
	}
}

type meterObs struct{ results []string }

func (o *meterObs) MeterEvent(r string)            { o.results = append(o.results, r) }
func (o *meterObs) Outbox(int, int, time.Duration) {}

// The request is Stripe's meter event: event_name, the row's identifier,
// payload[stripe_customer_id], payload[value] and its timestamp.
func TestMeterSender_Request(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	m, out, fake, _ := newMeterTest(t, clock)
	at := clock.Now().Add(-time.Minute)
	out.add(meterRow(at, 7))
	if _, err := m.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []url.Values{{
		"event_name":                  {"api_requests"},
		"identifier":                  {fmt.Sprintf("user_ada.api_requests.%d.w0a1b2c3d.1", at.Unix())},
		"payload[stripe_customer_id]": {"cus_ada"},
		"payload[value]":              {"7"},
		"timestamp":                   {fmt.Sprint(at.Unix())},
	}}
	if diff := cmp.Diff(want, fake.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// Failures in a row back off longer each time, up to the cap, and a pass
// stops at the first: the rows behind wait too.
func TestMeterSender_BackoffGrowsAndStopsThePass(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	fail := answer{500, `{"error":{"type":"api_error","message":"boom"}}`}
	m, out, fake, _ := newMeterTest(t, clock, fail, fail, fail, fail)
	out.add(meterRow(clock.Now(), 1), meterRow(clock.Now(), 2))
	var waits []time.Duration
	for range 4 {
		// A pass during the backoff (a Kick) sends nothing, not even the
		// row behind, which is due.
		if d, err := m.Pass(t.Context()); err != nil || (len(waits) > 0 && d <= 0) {
			t.Fatalf("a pass during the backoff: %v, %v", d, err)
		}
		wait, err := m.Pass(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, wait)
		clock.Advance(wait)
	}
	for i := 1; i < len(waits); i++ {
		if waits[i] < waits[i-1]/2 || waits[i] > time.Second<<i {
			t.Errorf("waits %v: want each about twice the last, jittered", waits)
		}
	}
	if n := len(fake.requests()); n != 4 {
		t.Errorf("%d requests; want 4 (one a pass)", n)
	}
	if _, err := m.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	if out.state(1).Status != proxy.OutboxSent || out.state(2).Status != proxy.OutboxSent {
		t.Errorf("after Stripe recovers: %+v, %+v; want both sent", out.state(1), out.state(2))
	}
}

// A row first tried a day ago is never sent again blindly: Stripe's
// summary confirms it, or it is flagged.
func TestMeterSender_UnconfirmedAfterADay(t *testing.T) {
	for _, tt := range []struct {
		name    string
		summary int64
		status  proxy.OutboxStatus
		result  string
	}{
		{"the summary holds it", 5, proxy.OutboxSent, MeterConfirmed},
		{"the summary lacks it", 0, proxy.OutboxFlagged, MeterFlagged},
		{"the summary holds more", 9, proxy.OutboxFlagged, MeterFlagged},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := &testClock{t: time.Date(2026, 12, 3, 12, 0, 30, 0, time.UTC)}
			m, out, fake, _ := newMeterTest(t, clock, answer{500, `{"error":{"type":"api_error","message":"boom"}}`})
			fake.summary = tt.summary
			obs := &meterObs{}
			m.obs = obs
			out.add(meterRow(clock.Now(), 5))
			if _, err := m.Pass(t.Context()); err != nil {
				t.Fatal(err)
			}
			clock.Advance(23 * time.Hour)
			if _, err := m.Pass(t.Context()); err != nil {
				t.Fatal(err)
			}
			if n := len(fake.requests()); n != 1 {
				t.Errorf("%d meter events sent; want 1 (no blind re-send)", n)
			}
			if st := out.state(1); st.Status != tt.status {
				t.Errorf("state %+v; want %s", st, tt.status)
			}
			if diff := cmp.Diff([]string{MeterRetry, tt.result}, obs.results); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
		})
	}
}

// A row never tried goes out whatever its age, up to Stripe's 35 days;
// older is flagged unsent. A follower sends nothing.
func TestMeterSender_AgeAndLeader(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	m, out, fake, _ := newMeterTest(t, clock)
	out.add(meterRow(clock.Now().Add(-30*time.Hour), 1), meterRow(clock.Now().Add(-36*24*time.Hour), 1))
	leader := false
	m.leader = func() bool { return leader }
	if _, err := m.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(fake.requests()); n != 0 {
		t.Fatalf("a follower sent %d events", n)
	}
	leader = true
	if _, err := m.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(fake.requests()); n != 1 || out.state(1).Status != proxy.OutboxSent || out.state(2).Status != proxy.OutboxFlagged {
		t.Errorf("%d sent, states %+v %+v; want the 30-hour-old row sent, the 36-day-old one flagged", n, out.state(1), out.state(2))
	}
}

// A metered plan's Checkout: the chosen price with a quantity of one, the
// metered price with none (Stripe refuses a quantity on a metered line
// item); pay-as-you-go lists the metered price once.
func TestLineItems(t *testing.T) {
	type item struct {
		Price    string
		Quantity int64 // 0: none sent
	}
	meter := &proxy.PlanMeter{EventName: "api_requests", Price: "price_usage"}
	tests := []struct {
		name  string
		plan  proxy.Plan
		price string
		want  []item
	}{
		{"no meter", proxy.Plan{Prices: []string{"price_pro"}}, "price_pro", []item{{"price_pro", 1}}},
		{"base fee plus usage", proxy.Plan{Prices: []string{"price_base"}, Meter: meter}, "price_base",
			[]item{{"price_base", 1}, {"price_usage", 0}}},
		{"pay as you go", proxy.Plan{Prices: []string{"price_usage"}, Meter: meter}, "price_usage", []item{{"price_usage", 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []item
			for _, li := range lineItems(&tt.plan, tt.price) {
				it := item{Price: *li.Price}
				if li.Quantity != nil {
					it.Quantity = *li.Quantity
				}
				got = append(got, it)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// A full batch asks for another pass at once; the last, short one does not.
func TestMeterSender_FullBatchPassesAgain(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	m, out, fake, _ := newMeterTest(t, clock)
	for i := range meterBatch + 1 {
		out.add(meterRow(clock.Now().Add(-time.Duration(i)*time.Second), 1))
	}
	if d, err := m.Pass(t.Context()); err != nil || d >= 0 {
		t.Fatalf("a full batch: %v, %v; want a negative wait", d, err)
	}
	if d, err := m.Pass(t.Context()); err != nil || d != 0 {
		t.Fatalf("the last row: %v, %v; want 0", d, err)
	}
	if n := len(fake.requests()); n != meterBatch+1 {
		t.Errorf("%d requests; want %d", n, meterBatch+1)
	}
}

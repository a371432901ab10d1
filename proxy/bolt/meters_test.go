package bolt

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

func meterCount(s proxy.Subject, start time.Time, used int64) proxy.MeterCount {
	return proxy.MeterCount{Key: proxy.MeterKey{Subject: s, Customer: "cus_" + s.ID, EventName: "api_requests",
		Start: start, End: start.Add(time.Hour)}, Used: used}
}

func quotaCount(s proxy.Subject, start time.Time, used int64) proxy.QuotaCount {
	return proxy.QuotaCount{Key: proxy.QuotaKey{Subject: s, Plan: "metered", Route: "*", Start: start, End: start.AddDate(0, 1, 0)}, Used: used}
}

// The usage billed equals the counts saved, once: a window is billed by the
// flush after its end, a repeated or older save changes nothing, units a
// late flush adds to an ended window are billed at once, and the quota
// counters commit with the meter counts (README "Usage billing").
func TestSaveUsageCounts_BillsEndedWindowsOnce(t *testing.T) {
	ctx := context.Background()
	s, path := newStore(t)
	h0 := ot0 // 12:00
	h1 := ot0.Add(time.Hour)
	type step struct {
		name      string
		counts    []proxy.QuotaCount
		meters    []proxy.MeterCount
		now       time.Time
		rows      int
		nextClose time.Time
	}
	for _, st := range []step{
		{"open window saved", []proxy.QuotaCount{quotaCount(oAda, h0, 5)}, []proxy.MeterCount{meterCount(oAda, h0, 5), meterCount(oAcme, h0, 2)}, h0.Add(time.Minute), 0, h1},
		{"same save again", nil, []proxy.MeterCount{meterCount(oAda, h0, 5)}, h0.Add(2 * time.Minute), 0, h1},
		{"older value", nil, []proxy.MeterCount{meterCount(oAda, h0, 3)}, h0.Add(3 * time.Minute), 0, h1},
		{"more counted", []proxy.QuotaCount{quotaCount(oAda, h0, 7)}, []proxy.MeterCount{meterCount(oAda, h0, 7)}, h0.Add(4 * time.Minute), 0, h1},
		{"window ends: two rows", nil, []proxy.MeterCount{meterCount(oAda, h1, 1)}, h1.Add(time.Second), 2, h1.Add(time.Hour)},
		{"nothing to close", nil, nil, h1.Add(2 * time.Second), 0, h1.Add(time.Hour)},
		{"late units on an ended window", nil, []proxy.MeterCount{meterCount(oAda, h0, 9)}, h1.Add(3 * time.Second), 1, h1.Add(time.Hour)},
		{"late save of an older value", nil, []proxy.MeterCount{meterCount(oAda, h0, 8)}, h1.Add(4 * time.Second), 0, h1.Add(time.Hour)},
	} {
		rows, next, err := s.SaveUsageCounts(ctx, "", st.counts, st.meters, st.now)
		if err != nil || rows != st.rows || !next.Equal(st.nextClose) {
			t.Fatalf("%s: SaveUsageCounts = %d rows, next %v, %v; want %d, %v", st.name, rows, next, err, st.rows, st.nextClose)
		}
	}
	due, err := s.DueUsage(ctx, h1.Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []proxy.UsageRow
	for _, e := range due {
		r := e.Row
		r.Writer, r.Seq = "", 0
		got = append(got, r)
	}
	at := h1.Add(-time.Second)
	// Rows of one flush in the order of their windows' ends, then keys:
	// org:… before user:….
	want := []proxy.UsageRow{usageRow(oAcme, h0, 2), usageRow(oAda, h0, 7), usageRow(oAda, h0, 2)}
	for i := range want {
		want[i].At = at
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("rows (-want +got):\n%s", d)
	}
	// The account page: 9 billed for ada in h0, 1 open in h1.
	if n, err := s.MeteredUsage(ctx, oAda, "api_requests", h0); err != nil || n != 10 {
		t.Errorf("MeteredUsage(ada) = %d, %v; want 10", n, err)
	}
	if own, _, err := s.QuotaCount(ctx, "", quotaCount(oAda, h0, 0).Key); err != nil || own != 7 {
		t.Errorf("quota counter = %d, %v; want 7 (saved with the meters)", own, err)
	}

	// A reopened file (a restart) counts under a new writer from zero: its
	// count adds to the window instead of being lost under the larger kept.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path)
	if _, _, err := s.SaveUsageCounts(ctx, "", nil, []proxy.MeterCount{meterCount(oAda, h1, 1)}, h1.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.MeteredUsage(ctx, oAda, "api_requests", h0); err != nil || n != 11 {
		t.Errorf("MeteredUsage(ada) after a restart = %d, %v; want 11", n, err)
	}
	rows, _, err := s.SaveUsageCounts(ctx, "", nil, nil, h1.Add(time.Hour))
	if err != nil || rows != 2 {
		t.Errorf("closing h1 after the restart: %d rows, %v; want 2 (one a writer)", rows, err)
	}
}

// A bad meter count writes nothing: not the quota counters either.
func TestSaveUsageCounts_InvalidWritesNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	bad := meterCount(oAda, ot0, 1)
	bad.Key.EventName = ""
	if _, _, err := s.SaveUsageCounts(ctx, "", []proxy.QuotaCount{quotaCount(oAda, ot0, 4)}, []proxy.MeterCount{bad}, ot0); err == nil {
		t.Fatal("SaveUsageCounts with an invalid meter count: no error")
	}
	if own, _, err := s.QuotaCount(ctx, "", quotaCount(oAda, ot0, 0).Key); err != nil || own != 0 {
		t.Errorf("quota counter = %d, %v; want 0", own, err)
	}
}

package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/limits"
	"github.com/tollgate/tollgate/proxy/storetest"
)

var (
	uAda  = proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	uAcme = proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"}
	ut0   = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
)

var (
	_ limits.MeterStore = (*Store)(nil)
	_ proxy.UsageOutbox = (*Store)(nil)
)

func usageRow(s proxy.Subject, at time.Time, n int64) proxy.UsageRow {
	return proxy.UsageRow{Subject: s, Customer: "cus_" + s.ID, EventName: "api_requests", Window: at, At: at, Value: n}
}

func meterCount(s proxy.Subject, start time.Time, used int64) proxy.MeterCount {
	return proxy.MeterCount{Key: proxy.MeterKey{Subject: s, Customer: "cus_" + s.ID, EventName: "api_requests",
		Start: start, End: start.Add(time.Hour)}, Used: used}
}

func quotaCount(s proxy.Subject, start time.Time, used int64) proxy.QuotaCount {
	return proxy.QuotaCount{Key: proxy.QuotaKey{Subject: s, Plan: "metered", Route: "*", Start: start, End: start.AddDate(0, 1, 0)}, Used: used}
}

// reopen opens the same database again: another replica, or this one
// after a restart (a new writer).
func reopen(t *testing.T, s *Store) *Store {
	t.Helper()
	r, err := Open(context.Background(), s.dsn, Options{Now: s.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestUsageOutbox runs the usage outbox's suite against PostgreSQL; the
// reopen closes the store and opens the database again.
func TestUsageOutbox(t *testing.T) {
	storetest.UsageOutbox(t, func(t *testing.T) (proxy.UsageOutbox, func() proxy.UsageOutbox) {
		s := open(t, time.Now)
		return s, func() proxy.UsageOutbox {
			s.Close()
			return reopen(t, s)
		}
	})
}

// The usage billed equals the counts saved, once (bbolt's
// TestSaveUsageCounts_BillsEndedWindowsOnce, on PostgreSQL): a window is
// billed by the flush after its end, a repeated or older save changes
// nothing, late units on an ended window are billed at once, the quota
// counters commit with the meter counts, and a restarted replica counts
// under a new writer.
func TestSaveUsageCounts_BillsEndedWindowsOnce(t *testing.T) {
	ctx := context.Background()
	s := open(t, time.Now)
	h0, h1 := ut0, ut0.Add(time.Hour)
	for _, st := range []struct {
		name      string
		counts    []proxy.QuotaCount
		meters    []proxy.MeterCount
		now       time.Time
		rows      int
		nextClose time.Time
	}{
		{"open window saved", []proxy.QuotaCount{quotaCount(uAda, h0, 5)}, []proxy.MeterCount{meterCount(uAda, h0, 5), meterCount(uAcme, h0, 2)}, h0.Add(time.Minute), 0, h1},
		{"same save again", nil, []proxy.MeterCount{meterCount(uAda, h0, 5)}, h0.Add(2 * time.Minute), 0, h1},
		{"older value", nil, []proxy.MeterCount{meterCount(uAda, h0, 3)}, h0.Add(3 * time.Minute), 0, h1},
		{"more counted", []proxy.QuotaCount{quotaCount(uAda, h0, 7)}, []proxy.MeterCount{meterCount(uAda, h0, 7)}, h0.Add(4 * time.Minute), 0, h1},
		{"window ends: two rows", nil, []proxy.MeterCount{meterCount(uAda, h1, 1)}, h1.Add(time.Second), 2, h1.Add(time.Hour)},
		{"nothing to close", nil, nil, h1.Add(2 * time.Second), 0, h1.Add(time.Hour)},
		{"late units on an ended window", nil, []proxy.MeterCount{meterCount(uAda, h0, 9)}, h1.Add(3 * time.Second), 1, h1.Add(time.Hour)},
		{"late save of an older value", nil, []proxy.MeterCount{meterCount(uAda, h0, 8)}, h1.Add(4 * time.Second), 0, h1.Add(time.Hour)},
	} {
		rows, next, err := s.SaveUsageCounts(ctx, s.Writer(), st.counts, st.meters, st.now)
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
		if e.Row.Writer != s.Writer() {
			t.Errorf("row %d written by %q, want the store's writer %q", e.Row.Seq, e.Row.Writer, s.Writer())
		}
		r := e.Row
		r.Writer, r.Seq = "", 0
		got = append(got, r)
	}
	at := h1.Add(-time.Second)
	want := []proxy.UsageRow{usageRow(uAcme, h0, 2), usageRow(uAda, h0, 7), usageRow(uAda, h0, 2)}
	for i := range want {
		want[i].At = at
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("rows (-want +got):\n%s", d)
	}
	if n, err := s.MeteredUsage(ctx, uAda, "api_requests", h0); err != nil || n != 10 {
		t.Errorf("MeteredUsage(ada) = %d, %v; want 10", n, err)
	}
	if own, _, err := s.QuotaCount(ctx, s.Writer(), quotaCount(uAda, h0, 0).Key); err != nil || own != 7 {
		t.Errorf("quota counter = %d, %v; want 7 (saved with the meters)", own, err)
	}

	// A restart (another opening) counts under a new writer from zero.
	s.Close()
	s = reopen(t, s)
	if _, _, err := s.SaveUsageCounts(ctx, s.Writer(), nil, []proxy.MeterCount{meterCount(uAda, h1, 1)}, h1.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.MeteredUsage(ctx, uAda, "api_requests", h0); err != nil || n != 11 {
		t.Errorf("MeteredUsage(ada) after a restart = %d, %v; want 11", n, err)
	}
	rows, _, err := s.SaveUsageCounts(ctx, s.Writer(), nil, nil, h1.Add(time.Hour))
	if err != nil || rows != 2 {
		t.Errorf("closing h1 after the restart: %d rows, %v; want 2 (one a writer)", rows, err)
	}
}

// A bad meter count writes nothing: not the quota counters either.
func TestSaveUsageCounts_InvalidWritesNothing(t *testing.T) {
	ctx := context.Background()
	s := open(t, time.Now)
	bad := meterCount(uAda, ut0, 1)
	bad.Key.EventName = ""
	if _, _, err := s.SaveUsageCounts(ctx, "", []proxy.QuotaCount{quotaCount(uAda, ut0, 4)}, []proxy.MeterCount{bad}, ut0); err == nil {
		t.Fatal("SaveUsageCounts with an invalid meter count: no error")
	}
	if own, _, err := s.QuotaCount(ctx, "", quotaCount(uAda, ut0, 0).Key); err != nil || own != 0 {
		t.Errorf("quota counter = %d, %v; want 0", own, err)
	}
}

// Replicas flush at once, round after round, each counting into the same
// windows under its own writer, and each flush closing whatever windows
// have ended, its own and the others': the rows bill exactly the units
// counted, none twice, and no two rows share an identifier.
func TestSaveUsageCounts_ReplicasFlushingAtOnceBillEachUnitOnce(t *testing.T) {
	ctx := context.Background()
	first := open(t, time.Now)
	reps := []*Store{first, reopen(t, first), reopen(t, first)}
	const rounds = 40
	subjects := []proxy.Subject{uAda, uAcme}
	// Round r saves, for each subject, the absolute count 1+r (window h0
	// while r < 20, then also the next window), at a time that has passed
	// h0's end from round 10 on: late units keep arriving on an ended
	// window while every replica closes it.
	var wg sync.WaitGroup
	for _, s := range reps {
		wg.Go(func() {
			for r := range rounds {
				var meters []proxy.MeterCount
				for _, sub := range subjects {
					meters = append(meters, meterCount(sub, ut0, int64(1+r)))
					if r >= 20 {
						meters = append(meters, meterCount(sub, ut0.Add(time.Hour), int64(r-19)))
					}
				}
				now := ut0.Add(time.Duration(r-10) * 6 * time.Minute)
				if _, _, err := s.SaveUsageCounts(ctx, s.Writer(), nil, meters, now); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Close what is left: every window has ended.
	if _, _, err := first.SaveUsageCounts(ctx, first.Writer(), nil, nil, ut0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	due, err := first.DueUsage(ctx, ut0.Add(3*time.Hour), 10_000)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	billed := map[proxy.Subject]int64{}
	for _, e := range due {
		if id := e.Row.Identifier(); ids[id] {
			t.Errorf("identifier %s twice", id)
		} else {
			ids[id] = true
		}
		billed[e.Row.Subject] += e.Row.Value
	}
	// Each replica counted 40 in h0 and 20 in h1 for each subject.
	want := int64(len(reps) * (rounds + rounds - 20))
	for _, sub := range subjects {
		if billed[sub] != want {
			t.Errorf("%s billed %d, want %d", sub, billed[sub], want)
		}
		if n, err := first.MeteredUsage(ctx, sub, "api_requests", ut0); err != nil || n != want {
			t.Errorf("MeteredUsage(%s) = %d, %v; want %d", sub, n, err, want)
		}
	}
	t.Logf("%d replicas, %d rounds: %d rows", len(reps), rounds, len(due))
}

// The table itself keeps the outbox's rules, whatever writes it: a row's
// columns never change, a sent row's state never changes, and only a sent
// row can be deleted.
func TestUsageOutbox_TheTableRefusesChanges(t *testing.T) {
	ctx := context.Background()
	s := open(t, time.Now)
	rows, err := s.AppendUsage(ctx, []proxy.UsageRow{usageRow(uAda, ut0, 3), usageRow(uAda, ut0, 4)})
	if err != nil {
		t.Fatal(err)
	}
	sent, pending := int64(rows[0].Seq), int64(rows[1].Seq)
	if err := s.SetUsageState(ctx, rows[0].Seq, proxy.OutboxState{Status: proxy.OutboxSent, Done: ut0}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		sql  string
		seq  int64
		code string
	}{
		{`UPDATE usage_outbox SET status = 0 WHERE seq = $1`, sent, sqlSettled},
		{`UPDATE usage_outbox SET note = 'x' WHERE seq = $1`, sent, sqlSettled},
		{`UPDATE usage_outbox SET value = 99 WHERE seq = $1`, pending, sqlImmutable},
		{`UPDATE usage_outbox SET writer = 'other' WHERE seq = $1`, pending, sqlImmutable},
		{`UPDATE usage_outbox SET seq = 999 WHERE seq = $1`, pending, sqlImmutable},
		{`DELETE FROM usage_outbox WHERE seq = $1`, pending, sqlImmutable},
	} {
		_, err := s.pool.Exec(ctx, tt.sql, tt.seq)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != tt.code {
			t.Errorf("%s on row %d: %v; want SQLSTATE %s", tt.sql, tt.seq, err, tt.code)
		}
	}
	e, err := s.UsageEntry(ctx, rows[1].Seq)
	if err != nil || e.Row != rows[1] || e.State.Status != proxy.OutboxPending {
		t.Errorf("the pending row after the refusals: %+v, %v", e, err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM usage_outbox WHERE seq = $1`, sent); err != nil {
		t.Errorf("deleting a sent row (pruning): %v", err)
	}
}

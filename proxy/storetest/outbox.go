package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// UsageOutbox runs the proxy.UsageOutbox suite (README "Usage billing").
// open makes a fresh store and a reopen that closes it and opens the same
// data again, as after a crash or a restart (nil: the store cannot; the
// reopen's test is skipped, and the store's own tests must do it, as
// proxy/bolt's outbox_test.go does).
func UsageOutbox(t *testing.T, open func(t *testing.T) (s proxy.UsageOutbox, reopen func() proxy.UsageOutbox)) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	acme := proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"}
	row := func(s proxy.Subject, at time.Time, n int64) proxy.UsageRow {
		return proxy.UsageRow{Subject: s, Customer: "cus_" + s.ID, EventName: "api_requests", Window: at, At: at, Value: n}
	}

	// Rows get a writer and increasing sequences; a row and its state
	// survive a reopen, and a row written after it has an identifier no
	// earlier row has (the sequence goes on, or the writer is another).
	t.Run("rows survive a reopen", func(t *testing.T) {
		s, reopen := open(t)
		if reopen == nil {
			t.Skip("the store's factory cannot reopen it; its own tests run this")
		}
		got, err := s.AppendUsage(ctx, []proxy.UsageRow{row(ada, t0, 3), row(acme, t0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Writer == "" || got[0].Writer != got[1].Writer || got[1].Seq <= got[0].Seq {
			t.Fatalf("appended %+v; want one writer and increasing sequences", got)
		}
		sent := proxy.OutboxState{Status: proxy.OutboxSent, Attempts: 1, First: t0, Done: t0}
		if err := s.SetUsageState(ctx, got[0].Seq, sent); err != nil {
			t.Fatal(err)
		}
		s = reopen()
		due, err := s.DueUsage(ctx, t0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]proxy.OutboxEntry{{Row: got[1]}}, due); diff != "" {
			t.Errorf("due after reopen (-want +got):\n%s", diff)
		}
		e, err := s.UsageEntry(ctx, got[0].Seq)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(proxy.OutboxEntry{Row: got[0], State: sent}, e); diff != "" {
			t.Errorf("sent row after reopen (-want +got):\n%s", diff)
		}
		more, err := s.AppendUsage(ctx, []proxy.UsageRow{row(ada, t0.Add(time.Second), 2)})
		if err != nil {
			t.Fatal(err)
		}
		if id := more[0].Identifier(); id == got[0].Identifier() || id == got[1].Identifier() ||
			(more[0].Writer == got[0].Writer && more[0].Seq <= got[1].Seq) {
			t.Errorf("after reopen: %+v reuses an identifier or a sequence of %+v", more[0], got)
		}
	})

	// A row marked sent is settled: never due again, no state can be set
	// on it, so it is never sent twice.
	t.Run("a sent row is never sent again", func(t *testing.T) {
		s, _ := open(t)
		got, err := s.AppendUsage(ctx, []proxy.UsageRow{row(ada, t0, 3)})
		if err != nil {
			t.Fatal(err)
		}
		seq := got[0].Seq
		if err := s.SetUsageState(ctx, seq, proxy.OutboxState{Status: proxy.OutboxSent, Done: t0}); err != nil {
			t.Fatal(err)
		}
		for _, st := range []proxy.OutboxStatus{proxy.OutboxPending, proxy.OutboxFlagged, proxy.OutboxSent} {
			if err := s.SetUsageState(ctx, seq, proxy.OutboxState{Status: st}); !errors.Is(err, proxy.ErrUsageSettled) {
				t.Errorf("set %s on a sent row: %v, want ErrUsageSettled", st, err)
			}
		}
		if due, err := s.DueUsage(ctx, t0.Add(48*time.Hour), 10); err != nil || len(due) != 0 {
			t.Errorf("due = %v, %v; want none", due, err)
		}
		if err := s.SetUsageState(ctx, seq+100, proxy.OutboxState{Status: proxy.OutboxSent}); !errors.Is(err, proxy.ErrNoUsageRow) {
			t.Errorf("set on a missing row: %v, want ErrNoUsageRow", err)
		}
	})

	t.Run("an invalid row writes nothing", func(t *testing.T) {
		s, _ := open(t)
		if got, err := s.AppendUsage(ctx, []proxy.UsageRow{row(ada, t0, 3), {Subject: ada}}); err == nil {
			t.Fatalf("appended an invalid row: %+v", got)
		}
		if st, err := s.OutboxStats(ctx); err != nil || st != (proxy.OutboxStats{}) {
			t.Errorf("stats after a refused append: %+v, %v; want none", st, err)
		}
	})

	t.Run("stats, due rows, flagged rows and usage", func(t *testing.T) {
		s, _ := open(t)
		rows, err := s.AppendUsage(ctx, []proxy.UsageRow{row(ada, t0, 1), row(ada, t0.Add(time.Second), 2),
			row(acme, t0.Add(2*time.Second), 4), row(ada, t0.Add(3*time.Second), 8)})
		if err != nil {
			t.Fatal(err)
		}
		for i, st := range []proxy.OutboxState{
			{Status: proxy.OutboxSent, Attempts: 1, Done: t0},
			{Status: proxy.OutboxPending, Attempts: 1, First: t0, Next: t0.Add(time.Minute), Note: "429 rate_limit"},
			{Status: proxy.OutboxFlagged, Attempts: 1, Done: t0, Note: "400 parameter_invalid"},
		} {
			if err := s.SetUsageState(ctx, rows[i].Seq, st); err != nil {
				t.Fatal(err)
			}
		}
		stats, err := s.OutboxStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := (proxy.OutboxStats{Pending: 2, Flagged: 1, Sent: 1, Oldest: t0.Add(time.Second)}); stats != want {
			t.Errorf("stats = %+v, want %+v", stats, want)
		}
		if due, err := s.DueUsage(ctx, t0, 10); err != nil || len(due) != 1 || due[0].Row != rows[3] {
			t.Errorf("due at t0 = %+v, %v; want the last row only (the second waits a minute)", due, err)
		}
		if due, err := s.DueUsage(ctx, t0.Add(time.Minute), 1); err != nil || len(due) != 1 || due[0].Row != rows[1] {
			t.Errorf("due a minute later, limit 1 = %+v, %v; want the second row", due, err)
		}
		if flagged, err := s.FlaggedUsage(ctx, 10); err != nil || len(flagged) != 1 || flagged[0].Row != rows[2] {
			t.Errorf("flagged = %+v, %v; want the third row", flagged, err)
		}
		// An admin sends a flagged row again: pending once more.
		if err := s.SetUsageState(ctx, rows[2].Seq, proxy.OutboxState{Status: proxy.OutboxPending, Attempts: 1}); err != nil {
			t.Fatal(err)
		}
		if stats, _ = s.OutboxStats(ctx); stats.Pending != 3 || stats.Flagged != 0 {
			t.Errorf("after a retry: %+v", stats)
		}
		for _, tt := range []struct {
			s        proxy.Subject
			event    string
			from, to time.Time
			want     int64
		}{
			{ada, "api_requests", t0, time.Time{}, 11},
			{ada, "api_requests", t0.Add(time.Second), time.Time{}, 10},
			{ada, "api_requests", t0, t0.Add(3 * time.Second), 3},
			{ada, "api_requests", t0.Add(4 * time.Second), time.Time{}, 0},
			{acme, "api_requests", time.Time{}, time.Time{}, 4},
			{ada, "tokens", t0, time.Time{}, 0},
		} {
			if n, err := s.MeteredUsageBetween(ctx, tt.s, tt.event, tt.from, tt.to); err != nil || n != tt.want {
				t.Errorf("MeteredUsageBetween(%s, %s, %v, %v) = %d, %v; want %d", tt.s, tt.event, tt.from, tt.to, n, err, tt.want)
			}
		}
		if n, err := s.MeteredUsage(ctx, ada, "api_requests", t0.Add(time.Second)); err != nil || n != 10 {
			t.Errorf("MeteredUsage = %d, %v; want 10", n, err)
		}
	})
	// Only sent rows are pruned, and only those stamped before the time
	// given (proxy.UsageRetention); the counts and the usage follow.
	t.Run("prune deletes old sent rows only", func(t *testing.T) {
		s, _ := open(t)
		old, recent := t0.Add(-48*time.Hour), t0
		rows, err := s.AppendUsage(ctx, []proxy.UsageRow{row(ada, old, 1), row(ada, old, 2), row(ada, old, 4), row(ada, recent, 8)})
		if err != nil {
			t.Fatal(err)
		}
		for i, st := range []proxy.OutboxState{
			{Status: proxy.OutboxSent, Attempts: 1, Done: t0},
			{Status: proxy.OutboxFlagged, Attempts: 1, Done: t0, Note: "400"},
			{},
			{Status: proxy.OutboxSent, Attempts: 1, Done: t0},
		} {
			if i == 2 {
				continue // stays pending
			}
			if err := s.SetUsageState(ctx, rows[i].Seq, st); err != nil {
				t.Fatal(err)
			}
		}
		n, err := s.PruneUsage(ctx, t0.Add(-time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("prune = %d, %v; want 1 (the old sent row)", n, err)
		}
		if _, err := s.UsageEntry(ctx, rows[0].Seq); !errors.Is(err, proxy.ErrNoUsageRow) {
			t.Errorf("the pruned row: %v, want ErrNoUsageRow", err)
		}
		for _, r := range rows[1:] {
			if _, err := s.UsageEntry(ctx, r.Seq); err != nil {
				t.Errorf("row %d after prune: %v", r.Seq, err)
			}
		}
		if st, err := s.OutboxStats(ctx); err != nil || st != (proxy.OutboxStats{Pending: 1, Flagged: 1, Sent: 1, Oldest: old}) {
			t.Errorf("stats after prune = %+v, %v", st, err)
		}
		if n, err := s.MeteredUsageBetween(ctx, ada, "api_requests", time.Time{}, time.Time{}); err != nil || n != 14 {
			t.Errorf("usage after prune = %d, %v; want 14", n, err)
		}
		if n, err := s.PruneUsage(ctx, t0.Add(-time.Hour)); err != nil || n != 0 {
			t.Errorf("prune again = %d, %v; want 0", n, err)
		}
	})
}

package bolt

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

var (
	oAda  = proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	oAcme = proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"}
	ot0   = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
)

func usageRow(s proxy.Subject, at time.Time, n int64) proxy.UsageRow {
	return proxy.UsageRow{Subject: s, Customer: "cus_" + s.ID, EventName: "api_requests", Window: at, At: at, Value: n}
}

// Rows get one writer and increasing sequences; a row, its state and its
// writer survive a reopen, and sequences go on after the last committed
// row, so no identifier is ever made twice.
func TestOutbox_SurvivesReopen(t *testing.T) {
	ctx := context.Background()
	s, path := newStore(t)
	got, err := s.AppendUsage(ctx, []proxy.UsageRow{usageRow(oAda, ot0, 3), usageRow(oAcme, ot0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Writer == "" || got[0].Writer != got[1].Writer || got[0].Seq != 1 || got[1].Seq != 2 {
		t.Fatalf("appended %+v; want one writer and sequences 1, 2", got)
	}
	if err := s.SetUsageState(ctx, 1, proxy.OutboxState{Status: proxy.OutboxSent, Attempts: 1, Done: ot0}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, path)
	due, err := s.DueUsage(ctx, ot0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []proxy.OutboxEntry{{Row: got[1]}}
	if diff := cmp.Diff(want, due); diff != "" {
		t.Errorf("due after reopen (-want +got):\n%s", diff)
	}
	e, err := s.UsageEntry(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(proxy.OutboxEntry{Row: got[0], State: proxy.OutboxState{Status: proxy.OutboxSent, Attempts: 1, Done: ot0}}, e); diff != "" {
		t.Errorf("sent row after reopen (-want +got):\n%s", diff)
	}
	more, err := s.AppendUsage(ctx, []proxy.UsageRow{usageRow(oAda, ot0.Add(time.Second), 2)})
	if err != nil {
		t.Fatal(err)
	}
	if more[0].Writer != got[0].Writer || more[0].Seq != 3 {
		t.Errorf("after reopen: writer %q seq %d; want %q 3", more[0].Writer, more[0].Seq, got[0].Writer)
	}
}

// A row marked sent is settled: it is never due again and no state can be
// set on it, so it is never sent twice.
func TestOutbox_SentIsNeverResent(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if _, err := s.AppendUsage(ctx, []proxy.UsageRow{usageRow(oAda, ot0, 3)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUsageState(ctx, 1, proxy.OutboxState{Status: proxy.OutboxSent, Done: ot0}); err != nil {
		t.Fatal(err)
	}
	for _, st := range []proxy.OutboxStatus{proxy.OutboxPending, proxy.OutboxFlagged, proxy.OutboxSent} {
		if err := s.SetUsageState(ctx, 1, proxy.OutboxState{Status: st}); !errors.Is(err, ErrUsageSettled) {
			t.Errorf("set %s on a sent row: %v, want ErrUsageSettled", st, err)
		}
	}
	if due, err := s.DueUsage(ctx, ot0.Add(48*time.Hour), 10); err != nil || len(due) != 0 {
		t.Errorf("due = %v, %v; want none", due, err)
	}
	if err := s.SetUsageState(ctx, 9, proxy.OutboxState{Status: proxy.OutboxSent}); !errors.Is(err, ErrNoUsageRow) {
		t.Errorf("set on a missing row: %v, want ErrNoUsageRow", err)
	}
}

// A transaction that fails after appending writes nothing and takes no
// sequence: the next row is still 1. This is how the quota flush uses
// appendUsage, in its own transaction.
func TestOutbox_FailedTransactionWritesNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	boom := errors.New("boom")
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		if _, err := appendUsage(tx, []proxy.UsageRow{usageRow(oAda, ot0, 3)}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update: %v", err)
	}
	if st, err := s.OutboxStats(ctx); err != nil || st != (proxy.OutboxStats{}) {
		t.Errorf("stats after a failed transaction: %+v, %v; want none", st, err)
	}
	got, err := s.AppendUsage(ctx, []proxy.UsageRow{usageRow(oAda, ot0, 3), {Subject: oAda}})
	if err == nil {
		t.Fatalf("appended an invalid row: %+v", got)
	}
	got, err = s.AppendUsage(ctx, []proxy.UsageRow{usageRow(oAda, ot0, 3)})
	if err != nil || got[0].Seq != 1 {
		t.Errorf("first committed row: %+v, %v; want seq 1", got, err)
	}
}

func TestOutbox_StatsDueAndFlagged(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	rows, err := s.AppendUsage(ctx, []proxy.UsageRow{usageRow(oAda, ot0, 1), usageRow(oAda, ot0.Add(time.Second), 2),
		usageRow(oAcme, ot0.Add(2*time.Second), 4), usageRow(oAda, ot0.Add(3*time.Second), 8)})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		seq uint64
		st  proxy.OutboxState
	}{
		{1, proxy.OutboxState{Status: proxy.OutboxSent, Attempts: 1, Done: ot0}},
		{2, proxy.OutboxState{Status: proxy.OutboxPending, Attempts: 1, Next: ot0.Add(time.Minute), Note: "429 rate_limit"}},
		{3, proxy.OutboxState{Status: proxy.OutboxFlagged, Attempts: 1, Done: ot0, Note: "400 parameter_invalid"}},
	}
	for _, st := range steps {
		if err := s.SetUsageState(ctx, st.seq, st.st); err != nil {
			t.Fatal(err)
		}
	}
	stats, err := s.OutboxStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (proxy.OutboxStats{Pending: 2, Flagged: 1, Sent: 1, Oldest: ot0.Add(time.Second)}); stats != want {
		t.Errorf("stats = %+v, want %+v", stats, want)
	}
	due, err := s.DueUsage(ctx, ot0, 10)
	if err != nil || len(due) != 1 || due[0].Row.Seq != 4 {
		t.Errorf("due at ot0 = %+v, %v; want row 4 only (row 2 waits a minute)", due, err)
	}
	due, err = s.DueUsage(ctx, ot0.Add(time.Minute), 1)
	if err != nil || len(due) != 1 || due[0].Row.Seq != 2 {
		t.Errorf("due a minute later, limit 1 = %+v, %v; want row 2", due, err)
	}
	flagged, err := s.FlaggedUsage(ctx, 10)
	if err != nil || len(flagged) != 1 || flagged[0].Row != rows[2] {
		t.Errorf("flagged = %+v, %v; want row 3", flagged, err)
	}
	// An admin sends a flagged row again: pending once more, counted so.
	if err := s.SetUsageState(ctx, 3, proxy.OutboxState{Status: proxy.OutboxPending, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	if stats, _ = s.OutboxStats(ctx); stats.Pending != 3 || stats.Flagged != 0 {
		t.Errorf("after a retry: %+v", stats)
	}
	// Usage so far sums a subject's rows of a meter since a time.
	for _, tt := range []struct {
		s     proxy.Subject
		event string
		since time.Time
		want  int64
	}{
		{oAda, "api_requests", ot0, 11},
		{oAda, "api_requests", ot0.Add(time.Second), 10},
		{oAda, "api_requests", ot0.Add(4 * time.Second), 0},
		{oAcme, "api_requests", time.Time{}, 4},
		{oAda, "tokens", ot0, 0},
	} {
		if n, err := s.MeteredUsage(ctx, tt.s, tt.event, tt.since); err != nil || n != tt.want {
			t.Errorf("MeteredUsage(%s, %s, %v) = %d, %v; want %d", tt.s, tt.event, tt.since, n, err, tt.want)
		}
	}
}

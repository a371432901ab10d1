package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate/tollgate/proxy"
)

// Metered usage (README "Usage billing") in migrations/0002_usage.sql, as
// proxy/bolt keeps it in meters.go and outbox.go:
//
//   - meter_counts: each meter window's count as each writer (an opening
//     of the store, Store.writer: one replica's process) counted it,
//     absolute, the larger kept, and the part already billed;
//   - usage_outbox: the immutable rows, one meter event each, with their
//     state; a trigger refuses any change to a row's columns, any change
//     once it is sent, and the deletion of a row not sent;
//   - usage_outbox_counts: rows by status, kept with each write.
//
// A flush (SaveUsageCounts) saves the quota counters and the meter counts
// and bills every window ended at its time in ONE transaction: the rows of
// windows with units not yet billed are locked (FOR UPDATE SKIP LOCKED:
// two replicas' flushes never bill one unit twice, nor wait on each
// other), their billed part moves to their count, and one outbox row each
// is inserted for the difference. A row's seq comes from usage_seq, taken
// in that transaction: a sequence value is never handed out twice, not to
// a failed transaction, not to another replica; with the writer it makes
// the row's meter event identifier (proxy.UsageRow.Identifier).

// Outbox statuses, as stored (proxy.OutboxStatus's values).
const (
	stPending = int16(proxy.OutboxPending)
	stSent    = int16(proxy.OutboxSent)
	stFlagged = int16(proxy.OutboxFlagged)
)

// The trigger's refusals (migrations/0002_usage.sql).
const (
	sqlSettled   = "TG001"
	sqlImmutable = "TG002"
)

// countUsage adds delta to the rows of a status, applied at commit.
func (t *wtx) countUsage(status int16, delta int64) {
	t.usage[status] += delta
}

func validMeterCount(mc *proxy.MeterCount) error {
	k := &mc.Key
	if !k.Subject.Valid() || !proxy.ValidMeterEventName(k.EventName) || strings.ContainsRune(k.EventName+k.Customer, 0) ||
		k.Start.IsZero() || !k.End.After(k.Start) || mc.Used < 0 {
		return fmt.Errorf("postgres: meter count: invalid %s %q %v–%v %d", k.Subject, k.EventName, k.Start, k.End, mc.Used)
	}
	return nil
}

// SaveUsageCounts saves quota counters and meter counts and bills every
// meter window ended at now, in one transaction (limits.MeterStore).
func (s *Store) SaveUsageCounts(ctx context.Context, replica string, counts []proxy.QuotaCount, meters []proxy.MeterCount, now time.Time) (rows int, nextClose time.Time, err error) {
	counts, err = validQuotaCounts(replica, counts)
	if err != nil {
		return 0, time.Time{}, err
	}
	for i := range meters {
		if err := validMeterCount(&meters[i]); err != nil {
			return 0, time.Time{}, err
		}
	}
	meters = sortedMeters(meters)
	err = s.update(ctx, func(t *wtx) error {
		rows, nextClose = 0, time.Time{}
		if err := saveQuotaCounts(ctx, t, replica, counts); err != nil {
			return err
		}
		if err := s.saveMeterCounts(ctx, t, meters); err != nil {
			return err
		}
		bill, err := s.closeWindows(ctx, t, now)
		if err != nil {
			return err
		}
		if _, err := s.appendUsage(ctx, t, bill); err != nil {
			return err
		}
		rows = len(bill)
		var next *time.Time
		if err := t.QueryRow(ctx, `SELECT min(win_end) FROM meter_counts WHERE used > billed AND win_end > $1`, now.UTC()).Scan(&next); err != nil {
			return err
		}
		nextClose = tm(next)
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("postgres: save usage counts: %w", err)
	}
	return rows, nextClose, nil
}

// sortedMeters orders meter counts by key, one per key (the largest), so
// that one statement updates a row once and transactions lock in one order.
func sortedMeters(meters []proxy.MeterCount) []proxy.MeterCount {
	out := slices.Clone(meters)
	slices.SortFunc(out, func(a, b proxy.MeterCount) int {
		return cmp.Or(cmp.Compare(a.Key.Subject.String(), b.Key.Subject.String()), cmp.Compare(a.Key.EventName, b.Key.EventName),
			a.Key.Start.Compare(b.Key.Start), cmp.Compare(b.Used, a.Used))
	})
	return slices.CompactFunc(out, func(a, b proxy.MeterCount) bool {
		return a.Key.Subject == b.Key.Subject && a.Key.EventName == b.Key.EventName && a.Key.Start.Equal(b.Key.Start)
	})
}

// saveMeterCounts writes this writer's meter counts, the larger kept; a
// window's customer is the one its first save named.
func (s *Store) saveMeterCounts(ctx context.Context, t *wtx, meters []proxy.MeterCount) error {
	if len(meters) == 0 {
		return nil
	}
	n := len(meters)
	subjects, events, customers := make([]string, n), make([]string, n), make([]string, n)
	starts, ends, used := make([]time.Time, n), make([]time.Time, n), make([]int64, n)
	for i := range meters {
		k := &meters[i].Key
		subjects[i], events[i], customers[i] = k.Subject.String(), k.EventName, k.Customer
		starts[i], ends[i], used[i] = k.Start.UTC(), k.End.UTC(), meters[i].Used
	}
	_, err := t.Exec(ctx, `INSERT INTO meter_counts (subject, event_name, win_start, writer, win_end, customer, used)
		SELECT s, e, st, $7, en, c, u FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::bigint[]) AS m(s, e, st, en, c, u)
		ON CONFLICT (subject, event_name, win_start, writer) DO UPDATE SET used = excluded.used
		WHERE meter_counts.used < excluded.used`,
		subjects, events, starts, ends, customers, used, s.writer)
	if err != nil {
		return fmt.Errorf("meter counts: %w", err)
	}
	return nil
}

// closeWindows bills, in t, every window ended at now with units not yet
// billed, whoever counted them: it locks their rows (skipping those
// another transaction holds: that one saves or bills them), moves billed
// to used, and returns one row each for the difference. A window without
// a customer to bill is left open (the gateway counts only requests a
// subscription granted, so not expected), as bbolt's.
func (s *Store) closeWindows(ctx context.Context, t *wtx, now time.Time) ([]proxy.UsageRow, error) {
	rs, err := t.Query(ctx, `SELECT subject, event_name, win_start, writer, win_end, customer, used, billed FROM meter_counts
		WHERE used > billed AND win_end <= $1
		ORDER BY win_end, subject, event_name, win_start, writer FOR UPDATE SKIP LOCKED`, now.UTC())
	if err != nil {
		return nil, fmt.Errorf("open meter windows: %w", err)
	}
	type open struct {
		subject, event, writer string
		start                  time.Time
		used                   int64
	}
	var (
		bill   []proxy.UsageRow
		closed []open
	)
	for rs.Next() {
		var (
			o            open
			end          time.Time
			customer     string
			used, billed int64
		)
		if err := rs.Scan(&o.subject, &o.event, &o.start, &o.writer, &end, &customer, &used, &billed); err != nil {
			rs.Close()
			return nil, err
		}
		sub, err := proxy.ParseSubject(o.subject)
		if err != nil {
			rs.Close()
			return nil, fmt.Errorf("meter count of %q: %w", o.subject, err)
		}
		row := proxy.UsageRowFor(proxy.MeterKey{Subject: sub, Customer: customer, EventName: o.event, Start: o.start.UTC(), End: end.UTC()}, used-billed)
		if row.Validate() != nil {
			continue
		}
		o.used = used
		bill = append(bill, row)
		closed = append(closed, o)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("open meter windows: %w", err)
	}
	if len(closed) == 0 {
		return nil, nil
	}
	subjects, events, writers := make([]string, len(closed)), make([]string, len(closed)), make([]string, len(closed))
	starts, used := make([]time.Time, len(closed)), make([]int64, len(closed))
	for i, o := range closed {
		subjects[i], events[i], writers[i], starts[i], used[i] = o.subject, o.event, o.writer, o.start, o.used
	}
	// The rows are locked: billed moves to exactly the count read.
	tag, err := t.Exec(ctx, `UPDATE meter_counts m SET billed = c.u
		FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::bigint[]) AS c(s, e, st, w, u)
		WHERE m.subject = c.s AND m.event_name = c.e AND m.win_start = c.st AND m.writer = c.w AND m.used = c.u`,
		subjects, events, starts, writers, used)
	if err != nil {
		return nil, fmt.Errorf("bill meter windows: %w", err)
	}
	if tag.RowsAffected() != int64(len(closed)) {
		return nil, fmt.Errorf("bill meter windows: %d of %d rows changed under their lock", tag.RowsAffected(), len(closed))
	}
	return bill, nil
}

// AppendUsage writes rows to the outbox in one transaction and returns
// them with their writer and sequence. Either every row is written or none.
func (s *Store) AppendUsage(ctx context.Context, rows []proxy.UsageRow) ([]proxy.UsageRow, error) {
	var out []proxy.UsageRow
	err := s.update(ctx, func(t *wtx) (err error) {
		out, err = s.appendUsage(ctx, t, rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: append usage: %w", err)
	}
	return out, nil
}

// appendUsage writes rows in t, the caller's transaction (SaveUsageCounts
// bills in the transaction that saves the counts). The sequence values are
// taken first and given out in ascending order, so a batch's rows are in
// the order given.
func (s *Store) appendUsage(ctx context.Context, t *wtx, rows []proxy.UsageRow) ([]proxy.UsageRow, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	for i := range rows {
		if err := rows[i].Validate(); err != nil {
			return nil, err
		}
		if strings.ContainsRune(rows[i].Customer+rows[i].EventName, 0) {
			return nil, fmt.Errorf("usage row: NUL in %q", rows[i].Customer+rows[i].EventName)
		}
	}
	n := len(rows)
	seqRows, err := t.Query(ctx, `SELECT nextval('usage_seq') FROM generate_series(1, $1)`, n)
	if err != nil {
		return nil, err
	}
	seqs, err := pgx.CollectRows(seqRows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	slices.Sort(seqs)
	out := make([]proxy.UsageRow, n)
	subjects, customers, events := make([]string, n), make([]string, n), make([]string, n)
	wins, ats, values := make([]time.Time, n), make([]time.Time, n), make([]int64, n)
	for i, r := range rows {
		r.Writer, r.Seq = s.writer, uint64(seqs[i])
		r.Window, r.At = r.Window.Truncate(time.Second).UTC(), r.At.Truncate(time.Second).UTC()
		out[i] = r
		subjects[i], customers[i], events[i] = r.Subject.String(), r.Customer, r.EventName
		wins[i], ats[i], values[i] = r.Window, r.At, r.Value
	}
	_, err = t.Exec(ctx, `INSERT INTO usage_outbox (seq, writer, subject, customer, event_name, win_start, at, value)
		SELECT q, $8, s, c, e, w, a, v FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::bigint[]) AS r(q, s, c, e, w, a, v)`,
		seqs, subjects, customers, events, wins, ats, values, s.writer)
	if err != nil {
		return nil, fmt.Errorf("usage rows: %w", err)
	}
	t.countUsage(stPending, int64(n))
	return out, nil
}

const outboxColumns = `seq, writer, subject, customer, event_name, win_start, at, value, status, attempts, first_at, next_at, done_at, note`

func scanEntry(row pgx.Row) (proxy.OutboxEntry, error) {
	var (
		e                   proxy.OutboxEntry
		seq                 int64
		subject             string
		status              int16
		first, next, doneAt *time.Time
	)
	r := &e.Row
	if err := row.Scan(&seq, &r.Writer, &subject, &r.Customer, &r.EventName, &r.Window, &r.At, &r.Value,
		&status, &e.State.Attempts, &first, &next, &doneAt, &e.State.Note); err != nil {
		return proxy.OutboxEntry{}, err
	}
	sub, err := proxy.ParseSubject(subject)
	if err != nil {
		return proxy.OutboxEntry{}, fmt.Errorf("usage row %d: %w", seq, err)
	}
	r.Seq, r.Subject, r.Window, r.At = uint64(seq), sub, r.Window.UTC(), r.At.UTC()
	e.State.Status = proxy.OutboxStatus(status)
	e.State.First, e.State.Next, e.State.Done = tm(first), tm(next), tm(doneAt)
	return e, nil
}

func (s *Store) entries(ctx context.Context, sql string, args ...any) ([]proxy.OutboxEntry, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []proxy.OutboxEntry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// DueUsage lists up to limit pending rows whose Next has come at now,
// oldest first.
func (s *Store) DueUsage(ctx context.Context, now time.Time, limit int) ([]proxy.OutboxEntry, error) {
	out, err := s.entries(ctx, `SELECT `+outboxColumns+` FROM usage_outbox
		WHERE status = 0 AND (next_at IS NULL OR next_at <= $1) ORDER BY seq LIMIT $2`, now.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: due usage: %w", err)
	}
	return out, nil
}

// FlaggedUsage lists up to limit flagged rows, oldest first, for the
// admin console (a partial index holds them).
func (s *Store) FlaggedUsage(ctx context.Context, limit int) ([]proxy.OutboxEntry, error) {
	out, err := s.entries(ctx, `SELECT `+outboxColumns+` FROM usage_outbox WHERE status = 2 ORDER BY seq LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: flagged usage: %w", err)
	}
	return out, nil
}

// UsageEntry reads one row and its state.
func (s *Store) UsageEntry(ctx context.Context, seq uint64) (proxy.OutboxEntry, error) {
	e, err := scanEntry(s.pool.QueryRow(ctx, `SELECT `+outboxColumns+` FROM usage_outbox WHERE seq = $1`, int64(seq)))
	if errors.Is(err, pgx.ErrNoRows) {
		return proxy.OutboxEntry{}, fmt.Errorf("%w: %d", proxy.ErrNoUsageRow, seq)
	}
	if err != nil {
		return proxy.OutboxEntry{}, fmt.Errorf("postgres: usage row %d: %w", seq, err)
	}
	return e, nil
}

// SetUsageState records what became of a row. A row marked sent is
// settled: any later change is proxy.ErrUsageSettled (checked here under
// the row's lock, and refused by the table's trigger whatever writes it),
// so it is never sent again. A flagged row may be made pending again (an
// admin's retry) or marked sent (an admin found it in Stripe).
func (s *Store) SetUsageState(ctx context.Context, seq uint64, st proxy.OutboxState) error {
	switch st.Status {
	case proxy.OutboxPending, proxy.OutboxSent, proxy.OutboxFlagged:
	default:
		return fmt.Errorf("postgres: usage row %d: unknown status %d", seq, st.Status)
	}
	err := s.update(ctx, func(t *wtx) error {
		var old int16
		err := t.QueryRow(ctx, `SELECT status FROM usage_outbox WHERE seq = $1 FOR UPDATE`, int64(seq)).Scan(&old)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %d", proxy.ErrNoUsageRow, seq)
		}
		if err != nil {
			return err
		}
		if old == stSent {
			return fmt.Errorf("%w: %d", proxy.ErrUsageSettled, seq)
		}
		if _, err := t.Exec(ctx, `UPDATE usage_outbox SET status = $2, attempts = $3, first_at = $4, next_at = $5, done_at = $6, note = $7
			WHERE seq = $1`, int64(seq), int16(st.Status), st.Attempts, ts(st.First), ts(st.Next), ts(st.Done), st.Note); err != nil {
			return err
		}
		if int16(st.Status) != old {
			t.countUsage(old, -1)
			t.countUsage(int16(st.Status), 1)
		}
		return nil
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == sqlSettled {
		return fmt.Errorf("postgres: usage state: %w: %d", proxy.ErrUsageSettled, seq)
	}
	if err != nil {
		return fmt.Errorf("postgres: usage state: %w", err)
	}
	return nil
}

// OutboxStats counts the rows by state (the counters kept with the
// writes) and finds the oldest pending one (the pending rows' index).
func (s *Store) OutboxStats(ctx context.Context) (proxy.OutboxStats, error) {
	var st proxy.OutboxStats
	rows, err := s.pool.Query(ctx, `SELECT status, sum(n)::bigint FROM usage_outbox_counts GROUP BY status`)
	if err != nil {
		return st, fmt.Errorf("postgres: outbox stats: %w", err)
	}
	for rows.Next() {
		var (
			status int16
			n      int64
		)
		if err := rows.Scan(&status, &n); err != nil {
			rows.Close()
			return st, fmt.Errorf("postgres: outbox stats: %w", err)
		}
		switch status {
		case stPending:
			st.Pending = int(n)
		case stSent:
			st.Sent = int(n)
		case stFlagged:
			st.Flagged = int(n)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("postgres: outbox stats: %w", err)
	}
	var oldest *time.Time
	err = s.pool.QueryRow(ctx, `SELECT at FROM usage_outbox WHERE status = 0 ORDER BY seq LIMIT 1`).Scan(&oldest)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("postgres: outbox stats: %w", err)
	}
	st.Oldest = tm(oldest)
	return st, nil
}

// MeteredUsage sums what subject used of the meter eventName since since:
// the rows written for it, sent or not, and the units of windows that end
// after since not yet billed (a window is at most an hour long), every
// writer's: the account page's "usage so far".
func (s *Store) MeteredUsage(ctx context.Context, subject proxy.Subject, eventName string, since time.Time) (int64, error) {
	billed, err := s.MeteredUsageBetween(ctx, subject, eventName, since, time.Time{})
	if err != nil {
		return 0, err
	}
	var open int64
	err = s.pool.QueryRow(ctx, `SELECT coalesce(sum(used - billed), 0)::bigint FROM meter_counts
		WHERE subject = $1 AND event_name = $2 AND win_start >= $3 AND win_end > $4`,
		subject.String(), eventName, since.Add(-proxy.MeterWindowLength).UTC(), since.UTC()).Scan(&open)
	if err != nil {
		return 0, fmt.Errorf("postgres: metered usage: %w", err)
	}
	return billed + open, nil
}

// MeteredUsageBetween sums subject's rows of the meter eventName whose
// timestamps fall in [from, to); a zero to has no end.
func (s *Store) MeteredUsageBetween(ctx context.Context, subject proxy.Subject, eventName string, from, to time.Time) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(value), 0)::bigint FROM usage_outbox
		WHERE subject = $1 AND event_name = $2 AND at >= $3 AND ($4::timestamptz IS NULL OR at < $4)`,
		subject.String(), eventName, from.Truncate(time.Second).UTC(), ts(to.Truncate(time.Second))).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("postgres: metered usage: %w", err)
	}
	return n, nil
}

// PruneUsage deletes the sent rows whose timestamp is before before
// (README "Usage billing": the retention), in batches, each its own
// transaction with the counters. Pending and flagged rows are never
// deleted (the table's trigger refuses it too).
func (s *Store) PruneUsage(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		var n int64
		err := s.update(ctx, func(t *wtx) error {
			err := t.QueryRow(ctx, `WITH d AS (DELETE FROM usage_outbox WHERE status = 1 AND ctid = ANY (ARRAY(
				SELECT ctid FROM usage_outbox WHERE status = 1 AND at < $1 LIMIT $2)) RETURNING 1)
				SELECT count(*) FROM d`, before.UTC(), pruneBatch).Scan(&n)
			if err == nil {
				t.countUsage(stSent, -n)
			}
			return err
		})
		if err != nil {
			return total, fmt.Errorf("postgres: prune usage: %w", err)
		}
		total += int(n)
		if n < pruneBatch {
			return total, nil
		}
	}
}

var _ proxy.UsageOutbox = (*Store)(nil)

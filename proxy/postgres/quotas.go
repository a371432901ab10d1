package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Quota counters (README "Limits"), in quota_counts
// (migrations/0002_usage.sql): one row per counter and replica, holding
// the replica's absolute count. A save keeps the larger of the old and new
// values, so a flush repeated or reordered changes nothing; a counter's
// total is the sum of its replicas' rows (limits.Store, the same contract
// as proxy/bolt/quotas.go, held by storetest.QuotaCounters).

// Writer names this opening of the store: made afresh at each Open, so a
// restarted replica counts under a new name (README "Limits", "Several
// replicas"), and no two replicas ever share one.
func (s *Store) Writer() string { return s.writer }

// newWriterID is 8 random hex digits, as bbolt's writer IDs.
func newWriterID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func validQuotaKey(k *proxy.QuotaKey, replica string) error {
	if !k.Subject.Valid() || k.Plan == "" || k.Route == "" || k.Start.IsZero() || !k.End.After(k.Start) ||
		strings.ContainsRune(k.Plan+k.Route+replica, 0) {
		return fmt.Errorf("postgres: quota counter: invalid key %s %q %q %v–%v", k.Subject, k.Plan, k.Route, k.Start, k.End)
	}
	return nil
}

// QuotaCount reads one counter: replica's own value and every replica's sum.
func (s *Store) QuotaCount(ctx context.Context, replica string, key proxy.QuotaKey) (own, total int64, err error) {
	if err := validQuotaKey(&key, replica); err != nil {
		return 0, 0, err
	}
	err = s.pool.QueryRow(ctx, `SELECT coalesce(sum(used) FILTER (WHERE replica = $5), 0)::bigint, coalesce(sum(used), 0)::bigint
		FROM quota_counts WHERE subject = $1 AND plan = $2 AND route = $3 AND win_start = $4`,
		key.Subject.String(), key.Plan, key.Route, key.Start.UTC(), replica).Scan(&own, &total)
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: quota counter: %w", err)
	}
	return own, total, nil
}

// QuotaCounts reads many counters in one statement: for each key, in
// order, replica's own value and every replica's sum, as QuotaCount's. A
// flush re-reads every counter the replica holds (limits.BatchStore), so
// it costs one round trip, not one per subject active in the last
// limits.IdleCounter.
func (s *Store) QuotaCounts(ctx context.Context, replica string, keys []proxy.QuotaKey) (own, total []int64, err error) {
	if len(keys) == 0 {
		return nil, nil, nil
	}
	n := len(keys)
	subjects, plans, routes, starts := make([]string, n), make([]string, n), make([]string, n), make([]time.Time, n)
	for i := range keys {
		if err := validQuotaKey(&keys[i], replica); err != nil {
			return nil, nil, err
		}
		subjects[i], plans[i], routes[i], starts[i] = keys[i].Subject.String(), keys[i].Plan, keys[i].Route, keys[i].Start.UTC()
	}
	own, total = make([]int64, n), make([]int64, n)
	rows, err := s.pool.Query(ctx, `SELECT k.i, coalesce(sum(q.used) FILTER (WHERE q.replica = $5), 0)::bigint, coalesce(sum(q.used), 0)::bigint
		FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) WITH ORDINALITY AS k(s, p, r, st, i)
		LEFT JOIN quota_counts q ON q.subject = k.s COLLATE "C" AND q.plan = k.p COLLATE "C" AND q.route = k.r COLLATE "C" AND q.win_start = k.st
		GROUP BY k.i`, subjects, plans, routes, starts, replica)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: quota counters: %w", err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var i, o, t int64
		if err := rows.Scan(&i, &o, &t); err != nil {
			return nil, nil, fmt.Errorf("postgres: quota counters: %w", err)
		}
		if i < 1 || i > int64(n) {
			return nil, nil, fmt.Errorf("postgres: quota counters: key %d of %d", i, n)
		}
		own[i-1], total[i-1] = o, t
		seen++
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("postgres: quota counters: %w", err)
	}
	if seen != n {
		return nil, nil, fmt.Errorf("postgres: quota counters: %d answers for %d keys", seen, n)
	}
	return own, total, nil
}

// SaveQuotaCounts writes each counter's absolute value for replica in one
// transaction, keeping the larger where the store holds more.
func (s *Store) SaveQuotaCounts(ctx context.Context, replica string, counts []proxy.QuotaCount) error {
	counts, err := validQuotaCounts(replica, counts)
	if err != nil || len(counts) == 0 {
		return err
	}
	if err := s.update(ctx, func(t *wtx) error { return saveQuotaCounts(ctx, t, replica, counts) }); err != nil {
		return fmt.Errorf("postgres: save quota counts: %w", err)
	}
	return nil
}

// validQuotaCounts checks counts and returns them sorted by key, one per
// key (the largest): one statement may not update a row twice, and two
// transactions that lock rows in one order never deadlock.
func validQuotaCounts(replica string, counts []proxy.QuotaCount) ([]proxy.QuotaCount, error) {
	for i := range counts {
		if err := validQuotaKey(&counts[i].Key, replica); err != nil {
			return nil, err
		}
		if counts[i].Used < 0 {
			return nil, errors.New("postgres: quota counter: negative count")
		}
	}
	out := slices.Clone(counts)
	slices.SortFunc(out, func(a, b proxy.QuotaCount) int {
		return cmp.Or(cmp.Compare(a.Key.Subject.String(), b.Key.Subject.String()), cmp.Compare(a.Key.Plan, b.Key.Plan),
			cmp.Compare(a.Key.Route, b.Key.Route), a.Key.Start.Compare(b.Key.Start), cmp.Compare(b.Used, a.Used))
	})
	return slices.CompactFunc(out, func(a, b proxy.QuotaCount) bool {
		return a.Key.Subject == b.Key.Subject && a.Key.Plan == b.Key.Plan && a.Key.Route == b.Key.Route && a.Key.Start.Equal(b.Key.Start)
	}), nil
}

// saveQuotaCounts writes counts (validQuotaCounts') in t: one statement.
func saveQuotaCounts(ctx context.Context, t *wtx, replica string, counts []proxy.QuotaCount) error {
	if len(counts) == 0 {
		return nil
	}
	subjects, plans, routes := make([]string, len(counts)), make([]string, len(counts)), make([]string, len(counts))
	starts, ends, used := make([]time.Time, len(counts)), make([]time.Time, len(counts)), make([]int64, len(counts))
	for i := range counts {
		k := &counts[i].Key
		subjects[i], plans[i], routes[i] = k.Subject.String(), k.Plan, k.Route
		starts[i], ends[i], used[i] = k.Start.UTC(), k.End.UTC(), counts[i].Used
	}
	_, err := t.Exec(ctx, `INSERT INTO quota_counts (subject, plan, route, win_start, replica, win_end, used)
		SELECT s, p, r, st, $7, e, u FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::bigint[]) AS c(s, p, r, st, e, u)
		ON CONFLICT (subject, plan, route, win_start, replica) DO UPDATE SET used = excluded.used
		WHERE quota_counts.used < excluded.used`,
		subjects, plans, routes, starts, ends, used, replica)
	return err
}

// QuotaUsage lists subject's counters whose window has not ended at now,
// every replica's summed, by plan, route and start.
func (s *Store) QuotaUsage(ctx context.Context, subject proxy.Subject, now time.Time) ([]proxy.QuotaCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT plan, route, win_start, max(win_end), sum(used)::bigint FROM quota_counts
		WHERE subject = $1 AND win_end > $2 GROUP BY plan, route, win_start ORDER BY plan, route, win_start`,
		subject.String(), now.UTC())
	if err != nil {
		return nil, fmt.Errorf("postgres: quota usage: %w", err)
	}
	defer rows.Close()
	var out []proxy.QuotaCount
	for rows.Next() {
		qc := proxy.QuotaCount{Key: proxy.QuotaKey{Subject: subject}}
		if err := rows.Scan(&qc.Key.Plan, &qc.Key.Route, &qc.Key.Start, &qc.Key.End, &qc.Used); err != nil {
			return nil, fmt.Errorf("postgres: quota usage: %w", err)
		}
		qc.Key.Start, qc.Key.End = qc.Key.Start.UTC(), qc.Key.End.UTC()
		out = append(out, qc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: quota usage: %w", err)
	}
	return out, nil
}

// pruneBatch is how many rows one prune statement deletes, so that no
// transaction runs long.
const pruneBatch = 5000

// PruneQuotaCounts deletes the counters whose window ended before t, and
// the meter counts of windows as old that are billed in full (as bbolt's).
// It deletes in batches, each its own statement.
func (s *Store) PruneQuotaCounts(ctx context.Context, before time.Time) (int, error) {
	n, err := s.pruneBatches(ctx, `DELETE FROM quota_counts WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM quota_counts WHERE win_end < $1 LIMIT $2))`, before.UTC())
	if err != nil {
		return n, fmt.Errorf("postgres: prune quota counters: %w", err)
	}
	// A day after its end no process still counts into a window (the
	// limiter lets a window go once saved and ended).
	// used = billed is checked again on the row deleted: a late flush may
	// have counted more into it meanwhile.
	m, err := s.pruneBatches(ctx, `DELETE FROM meter_counts WHERE used = billed AND ctid = ANY (ARRAY(
		SELECT ctid FROM meter_counts WHERE win_end < $1 AND used = billed LIMIT $2))`, before.UTC())
	if err != nil {
		return n + m, fmt.Errorf("postgres: prune meter counts: %w", err)
	}
	return n + m, nil
}

// pruneBatches runs a DELETE of at most $2 rows until it deletes fewer.
func (s *Store) pruneBatches(ctx context.Context, sql string, before time.Time) (int, error) {
	n := 0
	for {
		tag, err := s.pool.Exec(ctx, sql, before, pruneBatch)
		if err != nil {
			return n, err
		}
		n += int(tag.RowsAffected())
		if tag.RowsAffected() < pruneBatch {
			return n, nil
		}
	}
}

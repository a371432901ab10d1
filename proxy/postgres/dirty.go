package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/proxy"
)

// MarkDirty commits the event ID (when not empty) and the customer's
// deferred-sync mark in one transaction, with a change-log entry that
// wakes the leader's worker (proxy/bolt/dirty.go has the contract).
func (s *Store) MarkDirty(ctx context.Context, customerID, eventID string) error {
	if customerID == "" {
		return errors.New("postgres: mark dirty: empty customer id")
	}
	// One statement, so one round trip and one commit (a webhook storm is
	// acknowledged at the pace of these): the event, the mark (a new one
	// due now; a kept one keeps its times and attempts and takes a new
	// Seq, so a sync in flight does not clear it), the change-log entry and
	// its notification, which wakes the leader's worker.
	now := s.now().UTC()
	_, err := s.pool.Exec(ctx, `WITH e AS (
			INSERT INTO events (id, processed_at) SELECT $2, $3 WHERE $2 <> '' ON CONFLICT (id) DO NOTHING),
		d AS (
			INSERT INTO dirty (customer_id, marked_at, due, seq, attempts) VALUES ($1, $3, $3, nextval('dirty_seq'), 0)
			ON CONFLICT (customer_id) DO UPDATE SET seq = nextval('dirty_seq')),
		c AS (
			INSERT INTO changes (kind, id) VALUES ($4, $1) RETURNING version)
		SELECT pg_notify('`+notifyChannel+`', version || ' ' || $4 || ' ' || $1) FROM c`,
		customerID, eventID, now, string(ChangeDirty))
	if err != nil {
		return fmt.Errorf("postgres: mark dirty %s: %w", customerID, err)
	}
	return nil
}

func scanDirty(row pgx.Row) (proxy.DirtyMark, error) {
	var (
		m   proxy.DirtyMark
		seq int64
	)
	if err := row.Scan(&m.CustomerID, &m.MarkedAt, &m.Due, &seq, &m.Attempts); err != nil {
		return proxy.DirtyMark{}, err
	}
	m.MarkedAt, m.Due, m.Seq = m.MarkedAt.UTC(), m.Due.UTC(), uint64(seq)
	return m, nil
}

// DirtyDue returns up to limit marks due at now, earliest first, and when
// the next one is due (zero: none waits).
func (s *Store) DirtyDue(ctx context.Context, now time.Time, limit int) ([]proxy.DirtyMark, time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT customer_id, marked_at, due, seq, attempts FROM dirty ORDER BY due, customer_id LIMIT $1`, limit+1)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("postgres: dirty due: %w", err)
	}
	defer rows.Close()
	var (
		out  []proxy.DirtyMark
		next time.Time
	)
	for rows.Next() {
		m, err := scanDirty(rows)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("postgres: dirty due: %w", err)
		}
		if len(out) >= limit || m.Due.After(now) {
			next = m.Due
			break
		}
		out = append(out, m)
	}
	return out, next, rows.Err()
}

// ClearDirty removes a mark if it is still the one read (its Seq); else a
// new event came in during the sync, and the mark is aged from syncStart.
func (s *Store) ClearDirty(ctx context.Context, m proxy.DirtyMark, syncStart time.Time) (bool, error) {
	cleared := false
	err := s.update(ctx, func(t *wtx) error {
		cleared = false
		cur, err := scanDirty(t.QueryRow(ctx, `SELECT customer_id, marked_at, due, seq, attempts FROM dirty WHERE customer_id = $1 FOR UPDATE`, m.CustomerID))
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur.Seq == m.Seq {
			cleared = true
			_, err := t.Exec(ctx, `DELETE FROM dirty WHERE customer_id = $1`, m.CustomerID)
			return err
		}
		marked := cur.MarkedAt
		if syncStart.After(marked) {
			marked = syncStart
		}
		_, err = t.Exec(ctx, `UPDATE dirty SET marked_at = $2, due = $3, attempts = 0 WHERE customer_id = $1`, m.CustomerID, marked.UTC(), syncStart.UTC())
		return err
	})
	if err != nil {
		return false, fmt.Errorf("postgres: clear dirty %s: %w", m.CustomerID, err)
	}
	return cleared, nil
}

// RetryDirty puts a mark off until due and counts the attempt.
func (s *Store) RetryDirty(ctx context.Context, customerID string, due time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE dirty SET due = $2, attempts = attempts + 1 WHERE customer_id = $1`, customerID, due.UTC())
	if err != nil {
		return fmt.Errorf("postgres: retry dirty %s: %w", customerID, err)
	}
	return nil
}

// DirtyBacklog counts the marks and finds the oldest (by index: the count
// reads the primary key's index, the oldest one row of dirty_by_marked).
func (s *Store) DirtyBacklog(ctx context.Context) (proxy.Backlog, error) {
	var (
		out    proxy.Backlog
		oldest *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT count(*), min(marked_at) FROM dirty`).Scan(&out.Customers, &oldest)
	if err != nil {
		return proxy.Backlog{}, fmt.Errorf("postgres: dirty backlog: %w", err)
	}
	out.Oldest = tm(oldest)
	return out, nil
}

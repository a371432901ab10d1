package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/proxy"
)

var _ proxy.RevocationStore = (*Store)(nil)

// AddRevocation keeps what Clerk ended until it expires, and tells every
// replica (the change log) to apply it.
func (s *Store) AddRevocation(ctx context.Context, r proxy.Revocation) error {
	if err := r.Valid(); err != nil {
		return fmt.Errorf("postgres: add %s revocation: %w", r.Kind, err)
	}
	err := s.update(ctx, func(t *wtx) error {
		if _, err := t.Exec(ctx, `DELETE FROM revocations WHERE expires <= $1`, t.now.UTC()); err != nil {
			return err
		}
		if r.Expired(t.now) {
			return nil
		}
		var id int64
		err := t.QueryRow(ctx, `INSERT INTO revocations (kind, sid, user_id, org_id, role, at, expires, happened) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			string(r.Kind), r.ID, r.UserID, r.OrgID, r.Role, r.At.UTC(), r.Expires.UTC(), ts(r.Happened)).Scan(&id)
		if err != nil {
			return err
		}
		t.changed(ChangeRevocation, strconv.FormatInt(id, 10))
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: add %s revocation: %w", r.Kind, err)
	}
	return nil
}

const revocationColumns = `kind, sid, user_id, org_id, role, at, expires, happened`

// Revocations lists the unexpired revocations, earliest expiry first.
func (s *Store) Revocations(ctx context.Context, now time.Time) ([]proxy.Revocation, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+revocationColumns+` FROM revocations WHERE expires > $1 ORDER BY expires, id`, now.UTC())
	if err != nil {
		return nil, fmt.Errorf("postgres: revocations: %w", err)
	}
	defer rows.Close()
	var out []proxy.Revocation
	for rows.Next() {
		var (
			r        proxy.Revocation
			kind     string
			happened *time.Time
		)
		if err := rows.Scan(&kind, &r.ID, &r.UserID, &r.OrgID, &r.Role, &r.At, &r.Expires, &happened); err != nil {
			return nil, fmt.Errorf("postgres: revocations: %w", err)
		}
		r.Kind, r.At, r.Expires, r.Happened = proxy.RevocationKind(kind), r.At.UTC(), r.Expires.UTC(), tm(happened)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Revocation reads one revocation by its change-log ID (ok false: expired
// and pruned, or unknown): what a replica applies on a notification.
func (s *Store) Revocation(ctx context.Context, id string) (proxy.Revocation, bool, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return proxy.Revocation{}, false, nil
	}
	var (
		r        proxy.Revocation
		kind     string
		happened *time.Time
	)
	err = s.pool.QueryRow(ctx, `SELECT `+revocationColumns+` FROM revocations WHERE id = $1`, n).
		Scan(&kind, &r.ID, &r.UserID, &r.OrgID, &r.Role, &r.At, &r.Expires, &happened)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return proxy.Revocation{}, false, nil
		}
		return proxy.Revocation{}, false, fmt.Errorf("postgres: revocation %s: %w", id, err)
	}
	r.Kind, r.At, r.Expires, r.Happened = proxy.RevocationKind(kind), r.At.UTC(), r.Expires.UTC(), tm(happened)
	return r, true, nil
}

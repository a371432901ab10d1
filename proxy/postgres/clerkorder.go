package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/proxy"
)

// OrderClerk decides, in one transaction holding the row's lock, whether a
// Clerk message about key made at at is applied (proxy.ClerkVersion.Admit),
// and keeps the version that follows (migration 0004): every replica
// orders a Clerk object's messages by Clerk's time, as bolt's store does.
func (s *Store) OrderClerk(ctx context.Context, key string, at time.Time, deleted bool) (bool, error) {
	var applied bool
	err := s.update(ctx, func(t *wtx) error {
		// The row is made first, so that two replicas' first messages
		// about one object queue on its lock.
		if _, err := t.Exec(ctx, `INSERT INTO clerk_versions (key, at_ms) VALUES ($1, 0) ON CONFLICT (key) DO NOTHING`, key); err != nil {
			return err
		}
		var ms int64
		var v proxy.ClerkVersion
		err := t.QueryRow(ctx, `SELECT at_ms, deleted FROM clerk_versions WHERE key = $1 FOR UPDATE`, key).Scan(&ms, &v.Deleted)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("version row vanished")
		}
		if err != nil {
			return err
		}
		if ms != 0 {
			v.At = time.UnixMilli(ms)
		}
		next, ok := v.Admit(at, deleted)
		applied = ok
		if !ok {
			return nil
		}
		ms = 0
		if !next.At.IsZero() {
			ms = next.At.UnixMilli()
		}
		_, err = t.Exec(ctx, `UPDATE clerk_versions SET at_ms = $2, deleted = $3 WHERE key = $1`, key, ms, next.Deleted)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("postgres: order clerk %s: %w", key, err)
	}
	return applied, nil
}

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

// LockClerkOrder holds one Clerk message from its ordering to its writes
// (proxy/clerk.OrderStore) for every replica: a transaction-scoped advisory
// lock, on a connection of its own outside the pool. Its own, because the
// holder's writes need the pool's connections and a replica's waiters must
// not use them all up; transaction-scoped, so that a replica that dies or
// freezes while holding it frees it: its connection closes, or the server
// ends it after idle_in_transaction_session_timeout (Options
// .IdleInTransaction, inherited from the pool's settings). On this replica
// messages queue in memory first, so that a replica holds one such
// connection at a time.
func (s *Store) LockClerkOrder(ctx context.Context) (func(), error) {
	unlockLocal, err := s.clerkOrder.Lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	fail := func(err error) (func(), error) {
		unlockLocal()
		return nil, fmt.Errorf("postgres: lock clerk order: %w", err)
	}
	cc := s.cfg.Copy()
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["application_name"] = "tollgate-clerk-order"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fail(redact(err))
	}
	closeConn := func() { _ = conn.Close(context.WithoutCancel(ctx)) }
	if _, err := conn.Exec(ctx, `BEGIN`); err != nil {
		closeConn()
		return fail(err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockSpace, lockClerkOrder); err != nil {
		closeConn()
		return fail(err)
	}
	// Closing the connection ends its transaction and so frees the lock:
	// no COMMIT that could fail and leave it held.
	return func() {
		closeConn()
		unlockLocal()
	}, nil
}

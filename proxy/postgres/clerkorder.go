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
// messages queue in memory first, so a replica needs one such connection,
// kept between messages (a connection made per message held a replica to
// about 85 messages a second); one that fails is closed and made again for
// the next message.
func (s *Store) LockClerkOrder(ctx context.Context) (func(), error) {
	unlockLocal, err := s.clerkOrder.Lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	fail := func(err error) (func(), error) {
		s.dropClerkOrderConn()
		unlockLocal()
		return nil, fmt.Errorf("postgres: lock clerk order: %w", err)
	}
	// A kept connection the server has ended since (its idle timeout, a
	// restart) fails its BEGIN: one more try, on a new connection.
	for fresh := s.clerkOrderConn == nil; ; fresh = true {
		if s.clerkOrderConn == nil {
			cc := s.cfg.Copy()
			if cc.RuntimeParams == nil {
				cc.RuntimeParams = map[string]string{}
			}
			cc.RuntimeParams["application_name"] = "tollgate-clerk-order"
			if s.clerkOrderConn, err = pgx.ConnectConfig(ctx, cc); err != nil {
				s.clerkOrderConn = nil
				return fail(redact(err))
			}
		}
		if _, err = s.clerkOrderConn.Exec(ctx, `BEGIN`); err == nil {
			break
		}
		if fresh || ctx.Err() != nil {
			return fail(err)
		}
		s.dropClerkOrderConn()
	}
	conn := s.clerkOrderConn
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockSpace, lockClerkOrder); err != nil {
		return fail(err)
	}
	return func() {
		// The transaction wrote nothing: its end frees the lock. A
		// ROLLBACK that fails or does not come back leaves the lock to
		// the connection's close.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if _, err := conn.Exec(rctx, `ROLLBACK`); err != nil {
			s.dropClerkOrderConn()
		}
		cancel()
		unlockLocal()
	}, nil
}

// dropClerkOrderConn closes the Clerk order lock's connection, if any,
// which ends its transaction; the next message makes another. Called with
// s.clerkOrder held.
func (s *Store) dropClerkOrderConn() {
	if s.clerkOrderConn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = s.clerkOrderConn.Close(ctx)
	cancel()
	s.clerkOrderConn = nil
}

// closeClerkOrderConn closes the lock's connection at the store's Close,
// once no message holds it (or after a few seconds: closing ends its
// transaction either way).
func (s *Store) closeClerkOrderConn() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	unlock, err := s.clerkOrder.Lock(ctx)
	if err != nil {
		return
	}
	s.dropClerkOrderConn()
	unlock()
}

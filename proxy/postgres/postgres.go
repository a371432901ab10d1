// Package postgres is the PostgreSQL store: everything proxy/bolt keeps,
// in one database that any number of tollgate replicas share (README,
// "Running several replicas"). It meets the same interfaces as bolt.Store
// (docs/ARCHITECTURE.md, "Where to add… A store"), and adds what several
// replicas need: a change log with NOTIFY (notify.go), a leader lock for
// background work (leader.go) and heartbeats that count the live replicas
// (replicas.go).
//
// It imports only proxy and pgx (pgxpool for the store's queries; a plain
// pgx.Conn, outside the pool, for LISTEN and for the leader's lock).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tollgate/tollgate/proxy"
)

// Options configure Open. Zero values take the defaults of
// proxy/config (store.max_conns, …).
type Options struct {
	MaxConns        int
	MinConns        int
	MaxConnLifetime time.Duration
	MaxConnIdle     time.Duration
	ConnectTimeout  time.Duration
	Now             func() time.Time
	// IdleInTransaction is how long the server lets a session of the pool
	// sit idle inside a transaction before it ends it (PostgreSQL's
	// idle_in_transaction_session_timeout), so that a replica frozen or
	// cut off mid-transaction releases its row locks: a flush locks other
	// writers' rows, and would otherwise hold the others' flushes for as
	// long as the freeze lasts (README "Limits"). 0: DefaultIdleInTransaction;
	// a value in store.dsn's options wins.
	IdleInTransaction time.Duration
	// Migrate applies the embedded migrations under the advisory lock
	// before the store serves (tollgate serve and migrate); false: Open
	// refuses a database whose schema is not this tollgate's.
	Migrate bool
}

// DefaultIdleInTransaction is Options.IdleInTransaction's default: far
// longer than any gap between a transaction's statements (milliseconds),
// and the longest a frozen replica holds the others' flushes.
const DefaultIdleInTransaction = 30 * time.Second

// Store is the PostgreSQL store. Safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	dsn  string
	cfg  *pgx.ConnConfig // for the connections outside the pool
	now  func() time.Time
	// writer names this opening of the store, made afresh at each Open:
	// the replica's quota counters and meter counts are kept under it, and
	// it is part of every usage row's identifier (usage.go).
	writer string
	// clerkOrder queues this replica's Clerk messages before the
	// database's lock (LockClerkOrder), so that a replica holds one
	// connection for it, not one per message.
	clerkOrder proxy.ClerkOrderLock
	// clerkOrderConn is the Clerk order lock's connection, outside the
	// pool (nil: none yet, or dropped after a failure). Used only while
	// clerkOrder is held.
	clerkOrderConn *pgx.Conn
	// listRareRows, if set, replaces rareRows (listpage.go): tests.
	listRareRows *int64
}

// ErrSchema is returned by Open when the database's schema is not the one
// this tollgate reads (run `tollgate migrate`, or a newer tollgate wrote it).
var ErrSchema = errors.New("postgres: schema version mismatch")

// Open connects, checks the connection, and migrates or checks the schema.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse store.dsn: %w", redact(err))
	}
	if opts.MaxConns > 0 {
		pc.MaxConns = int32(opts.MaxConns)
	}
	if opts.MinConns >= 0 && opts.MinConns <= int(pc.MaxConns) {
		pc.MinConns = int32(opts.MinConns)
	}
	if opts.MaxConnLifetime > 0 {
		pc.MaxConnLifetime = opts.MaxConnLifetime
	}
	if opts.MaxConnIdle > 0 {
		pc.MaxConnIdleTime = opts.MaxConnIdle
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	pc.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	if opts.IdleInTransaction <= 0 {
		opts.IdleInTransaction = DefaultIdleInTransaction
	}
	if _, set := pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !set {
		pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(opts.IdleInTransaction.Milliseconds(), 10)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", redact(err))
	}
	s := &Store{pool: pool, dsn: dsn, cfg: pc.ConnConfig.Copy(), now: opts.Now, writer: newWriterID(), clerkOrder: proxy.NewClerkOrderLock()}
	pctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", redact(err))
	}
	if opts.Migrate {
		if _, err := s.Migrate(ctx); err != nil {
			pool.Close()
			return nil, err
		}
	} else if err := s.checkSchema(ctx, migrations()); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Inspect connects and reads the database's schema version, migrating
// nothing and refusing nothing (tollgate check -online).
func Inspect(ctx context.Context, dsn string, opts Options) (int, error) {
	opts.Migrate = false
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return 0, fmt.Errorf("postgres: parse store.dsn: %w", redact(err))
	}
	pc.MaxConns, pc.MinConns = 1, 0
	if opts.ConnectTimeout > 0 {
		pc.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return 0, fmt.Errorf("postgres: connect: %w", redact(err))
	}
	defer pool.Close()
	s := &Store{pool: pool}
	if err := pool.Ping(ctx); err != nil {
		return 0, fmt.Errorf("postgres: connect: %w", redact(err))
	}
	return s.SchemaVersion(ctx)
}

// redact keeps a connection error from carrying the DSN's password: pgx's
// errors name the host and user, never the password, but a parse error
// may quote the string.
func redact(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("the connection string does not parse (it is not shown: it may hold a password)")
	}
	return err
}

// Close closes the pool and the Clerk order lock's connection.
func (s *Store) Close() error {
	if s.clerkOrder != nil {
		s.closeClerkOrderConn()
	}
	s.pool.Close()
	return nil
}

// Ping checks that the database answers (readiness).
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, "SELECT 1"); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Now is the store's clock.
func (s *Store) Now() time.Time { return s.now() }

// ErrNoBackup is Backup's answer: a PostgreSQL store is backed up with the
// database's own tools (pg_dump), which see every replica's writes.
var ErrNoBackup = errors.New("postgres: the store is a PostgreSQL database; back it up with pg_dump (README, \"Running several replicas\"), not tollgate backup")

// Backup refuses: see ErrNoBackup.
func (s *Store) Backup(io.Writer) (int64, error) { return 0, ErrNoBackup }

// querier is what a read needs: the pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// wtx is one write transaction and what it changed: the change log and
// NOTIFY are written in it, just before its commit, and the counters'
// deltas are applied then, in one order (so two commits never deadlock
// on them).
type wtx struct {
	pgx.Tx
	now     time.Time
	shard   int16
	changes []change
	lists   map[string]int64
	stats   map[string][2]int64
	usage   [3]int64 // usage outbox rows by status (usage.go)
}

// A change is one entry of the change log (notify.go).
type change struct {
	Kind ChangeKind
	ID   string
}

func (t *wtx) changed(kind ChangeKind, id string) {
	for _, c := range t.changes {
		if c.Kind == kind && c.ID == id {
			return
		}
	}
	t.changes = append(t.changes, change{kind, id})
}

// counterShards spreads each counter over rows, so that concurrent
// commits do not all wait on one row lock.
const counterShards = 16

// update runs fn in a transaction and commits it with its counters and
// its changes. A deadlock or a serialization failure (another replica's
// commit on the same rows) is retried, up to three times.
func (s *Store) update(ctx context.Context, fn func(*wtx) error) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if err = s.updateOnce(ctx, fn); !retryable(err) {
			return err
		}
	}
	return err
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

func (s *Store) updateOnce(ctx context.Context, fn func(*wtx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	t := &wtx{Tx: tx, now: s.now(), shard: int16(rand.IntN(counterShards))}
	if err := fn(t); err != nil {
		return err
	}
	if err := t.flush(ctx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// flush writes the counters' deltas, sorted, then the changes and their
// notifications.
func (t *wtx) flush(ctx context.Context) error {
	if err := t.flushCounters(ctx); err != nil {
		return err
	}
	if len(t.changes) == 0 {
		return nil
	}
	kinds, ids := make([]string, len(t.changes)), make([]string, len(t.changes))
	for i, c := range t.changes {
		kinds[i], ids[i] = string(c.Kind), c.ID
	}
	// The payload is the entry's version, kind and ID: a hint to look
	// again, never a value a replica decides on.
	_, err := t.Exec(ctx, `WITH c AS (
		INSERT INTO changes (kind, id) SELECT * FROM unnest($1::text[], $2::text[]) RETURNING version, kind, id)
		SELECT pg_notify('`+notifyChannel+`', version || ' ' || kind || ' ' || id) FROM c`, kinds, ids)
	if err != nil {
		return fmt.Errorf("change log: %w", err)
	}
	return nil
}

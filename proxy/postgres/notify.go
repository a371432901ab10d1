package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Freshness across replicas (README, "Running several replicas"). Every
// commit that changes what a request is decided on writes a change-log
// row and sends pg_notify in the same transaction (wtx.flush): its
// payload is the row's version, a kind and an ID (a subject, a
// revocation, a key, a customer), never a value. Each replica LISTENs on
// a connection of its own, outside the pool, and applies each change by
// reading the store again (or dropping what it cached). While that
// connection is down the replica keeps its LRU, as in an outage, but
// serves no miss (Fresh); on reconnect it replays the log from its
// cursor, then serves misses again.

// ChangeKind says what a change-log entry names.
type ChangeKind string

const (
	ChangeSubject    ChangeKind = "s" // a subject's entitlements (ID: user_… or org_…)
	ChangeRevocation ChangeKind = "r" // a stored revocation (ID: its row)
	ChangeKey        ChangeKind = "k" // an API key revoked (ID: key_…)
	ChangeKeysOf     ChangeKind = "K" // every key of a subject revoked (ID: the subject)
	ChangeDirty      ChangeKind = "d" // a deferred webhook sync marked (ID: the customer): wakes the leader's worker
)

const notifyChannel = "tollgate_changes"

// Change is one entry of the change log.
type Change struct {
	Version int64
	Kind    ChangeKind
	ID      string
}

// replayMargin is how far back, beyond the cursor, a replay also reads:
// a transaction takes its version before it commits, so one that
// committed just after the replica lost its connection can hold a
// version below the cursor. A change read twice is applied twice, which
// only drops a cache entry again.
const replayMargin = 30 * time.Second

// ChangeRetention is how long the change log is kept (the leader prunes
// it); a replica away for longer than half of it drops its whole cache
// instead of replaying.
const ChangeRetention = time.Hour

// ListenConfig configures a Listener.
type ListenConfig struct {
	// Apply applies one change; it reads the store again for what it
	// needs (the payload is never trusted). It must not block for long.
	// An error (the read failed) leaves the change unapplied and the
	// cursor before it: the Listener reconnects and replays it, not fresh
	// meanwhile (red team, issue 16: a failed read was dropped for good).
	Apply func(ctx context.Context, c Change) error
	// Purge drops everything cached: the log could not be replayed (the
	// replica was away longer than ChangeRetention/2).
	Purge  func()
	Logger *slog.Logger
	Now    func() time.Time // the replica's clock, for the time away
	// Retry is the wait between reconnections (0: 500 ms, doubling to 5 s).
	Retry time.Duration
}

// Listener follows the change log for one replica.
type Listener struct {
	s   *Store
	cfg ListenConfig

	mu        sync.Mutex
	conn      *pgx.Conn
	fresh     bool      // connected and replayed: misses may be served
	cursor    int64     // the highest version applied
	lastOK    time.Time // when the connection last answered
	reconnect int       // how many times it reconnected (tests, metrics)
}

// ErrNotFresh is what a miss gets while the replica is not following the
// change log: the store may have changed without it knowing.
var ErrNotFresh = errors.New("postgres: not following the change log (reconnecting); refusing to read past the cache")

// Listen connects the LISTEN connection and reads the log's current
// version, so the replica starts fresh; Run follows it.
func (s *Store) Listen(ctx context.Context, cfg ListenConfig) (*Listener, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 500 * time.Millisecond
	}
	l := &Listener{s: s, cfg: cfg}
	if err := l.connect(ctx, true); err != nil {
		return nil, err
	}
	return l, nil
}

// Fresh is nil while the replica follows the change log, else ErrNotFresh.
func (l *Listener) Fresh() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.fresh {
		return ErrNotFresh
	}
	return nil
}

// Reconnects is how many times the listener has reconnected.
func (l *Listener) Reconnects() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reconnect
}

// connect opens the connection, LISTENs, and replays from the cursor (or,
// the first time, starts at the log's end).
func (l *Listener) connect(ctx context.Context, first bool) error {
	cctx, cancel := context.WithTimeout(ctx, l.s.cfg.ConnectTimeout+time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, l.s.cfg)
	if err != nil {
		return fmt.Errorf("postgres: listen: %w", err)
	}
	if _, err := conn.Exec(cctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(ctx)
		return fmt.Errorf("postgres: listen: %w", err)
	}
	now := l.cfg.Now()
	l.mu.Lock()
	cursor, away := l.cursor, now.Sub(l.lastOK)
	l.mu.Unlock()
	switch {
	case first:
		err = conn.QueryRow(cctx, `SELECT coalesce(max(version), 0) FROM changes`).Scan(&cursor)
	case away > ChangeRetention/2:
		l.cfg.Logger.Warn("postgres: away from the change log too long to replay it; dropping the cache", "away", away.Round(time.Second))
		l.cfg.Purge()
		err = conn.QueryRow(cctx, `SELECT coalesce(max(version), 0) FROM changes`).Scan(&cursor)
	default:
		cursor, err = l.replay(cctx, conn, cursor, away+replayMargin)
	}
	if err != nil {
		conn.Close(ctx)
		return fmt.Errorf("postgres: listen: replay: %w", err)
	}
	l.mu.Lock()
	l.conn, l.cursor, l.lastOK, l.fresh = conn, cursor, now, true
	if !first {
		l.reconnect++
	}
	l.mu.Unlock()
	return nil
}

// replay applies every change after cursor, and those of the last since
// (the margin), in version order, and returns the new cursor.
func (l *Listener) replay(ctx context.Context, conn *pgx.Conn, cursor int64, since time.Duration) (int64, error) {
	rows, err := conn.Query(ctx, `SELECT version, kind, id FROM changes
		WHERE version > $1 OR at > clock_timestamp() - make_interval(secs => $2) ORDER BY version`, cursor, since.Seconds())
	if err != nil {
		return cursor, err
	}
	var changes []Change
	for rows.Next() {
		var c Change
		var kind string
		if err := rows.Scan(&c.Version, &kind, &c.ID); err != nil {
			rows.Close()
			return cursor, err
		}
		c.Kind = ChangeKind(kind)
		changes = append(changes, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return cursor, err
	}
	for _, c := range changes {
		if err := l.cfg.Apply(ctx, c); err != nil {
			return cursor, fmt.Errorf("applying change %d: %w", c.Version, err)
		}
		cursor = max(cursor, c.Version)
	}
	if len(changes) > 0 {
		l.cfg.Logger.Info("postgres: replayed the change log", "changes", len(changes))
	}
	return cursor, nil
}

// Run follows the log until ctx ends, reconnecting after a failure.
func (l *Listener) Run(ctx context.Context) {
	defer l.Close()
	wait := l.cfg.Retry
	for ctx.Err() == nil {
		l.mu.Lock()
		conn := l.conn
		l.mu.Unlock()
		if conn == nil {
			if err := l.connect(ctx, false); err != nil {
				if ctx.Err() == nil {
					l.cfg.Logger.Warn("postgres: change log: reconnecting", "err", err, "retry", wait)
				}
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
				wait = min(wait*2, 5*time.Second)
				continue
			}
			wait = l.cfg.Retry
			l.cfg.Logger.Info("postgres: change log: following again")
			continue
		}
		err := l.follow(ctx, conn)
		l.mu.Lock()
		l.conn, l.fresh = nil, false
		l.mu.Unlock()
		conn.Close(context.Background())
		if ctx.Err() == nil {
			l.cfg.Logger.Warn("postgres: change log: connection lost; cached answers stand, misses wait", "err", err)
		}
	}
}

// follow applies notifications as they come, and pings the connection when
// none has come for a while, so that a dead connection is noticed.
func (l *Listener) follow(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			c, ok := parseChange(n.Payload)
			if !ok {
				l.cfg.Logger.Warn("postgres: change log: unreadable notification ignored")
				continue
			}
			if err := l.cfg.Apply(ctx, c); err != nil {
				return fmt.Errorf("applying change %d: %w", c.Version, err)
			}
			l.mu.Lock()
			l.cursor, l.lastOK = max(l.cursor, c.Version), l.cfg.Now()
			l.mu.Unlock()
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			l.mu.Lock()
			l.lastOK = l.cfg.Now()
			l.mu.Unlock()
		default:
			return err
		}
	}
}

// parseChange reads "version kind id".
func parseChange(p string) (Change, bool) {
	v, rest, ok := strings.Cut(p, " ")
	if !ok {
		return Change{}, false
	}
	kind, id, ok := strings.Cut(rest, " ")
	n, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil || id == "" {
		return Change{}, false
	}
	return Change{Version: n, Kind: ChangeKind(kind), ID: id}, true
}

// Close closes the connection (Run does on its way out).
func (l *Listener) Close() error {
	l.mu.Lock()
	conn := l.conn
	l.conn, l.fresh = nil, false
	l.mu.Unlock()
	if conn != nil {
		return conn.Close(context.Background())
	}
	return nil
}

// PruneChanges deletes change-log entries older than ChangeRetention (the
// leader's work).
func (s *Store) PruneChanges(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM changes WHERE at < clock_timestamp() - make_interval(secs => $1)`, ChangeRetention.Seconds())
	if err != nil {
		return 0, fmt.Errorf("postgres: prune change log: %w", err)
	}
	return tag.RowsAffected(), nil
}

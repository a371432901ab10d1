package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Heartbeats count the live replicas sharing the database, for the share
// of a plan's rate each one enforces (README "Limits", "Enforcement and
// its bounds"; limits.Replicas):
//   - each replica upserts its row in replicas every HeartbeatInterval,
//     stamped with the DATABASE's now(), and in the same statement counts
//     the rows stamped within ReplicaTTL of that same now(): the replicas'
//     own clocks are never compared, so their skew does not matter;
//   - the count is kept in memory: the request path reads an atomic and
//     never queries;
//   - a beat that fails keeps the last count. A replica cannot start
//     without the database (its first beat must succeed), so while the
//     database is away from every replica the true count can only have
//     fallen (replicas that died): the kept count errs towards a smaller
//     share, never a larger. A replica cut off alone is dropped by the
//     others after ReplicaTTL while it keeps its share: the total is then
//     over by that share (rate/n) until it is back; its store readiness
//     check fails meanwhile, and Check says why;
//   - a clean stop deletes the row, so the others raise their share
//     within one interval; a crashed or frozen replica's row goes stale
//     and stops counting after ReplicaTTL.
const (
	HeartbeatInterval = 2 * time.Second
	ReplicaTTL        = 3 * HeartbeatInterval
	// replicaPrune: rows stale (or in the future) by more than this are
	// deleted, once an hour, by any replica.
	replicaPrune = time.Hour
)

// ReplicasConfig configures Store.Replicas.
type ReplicasConfig struct {
	ID       string        // this replica's name in the table; "" : NewReplicaID()
	Interval time.Duration // 0: HeartbeatInterval
	TTL      time.Duration // 0: 3 × Interval
	Logger   *slog.Logger
}

// Replicas is this replica's heartbeat and its cached count of the live
// replicas. It implements limits.Replicas by its method set.
type Replicas struct {
	s        *Store
	id       string
	host     string
	interval time.Duration
	ttl      time.Duration
	log      *slog.Logger

	live atomic.Int64

	mu      sync.Mutex
	last    time.Time // of the last successful beat (the store's clock)
	failing bool      // the last beat failed (logged once per streak)
	pruned  time.Time
}

// NewReplicaID names a replica: 48 random bits, new at every start.
func NewReplicaID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return hex.EncodeToString(b[:])
}

// hostName is this machine's name (a container's ID in Docker), printable
// and at most 253 bytes, for the admin API's list.
func hostName() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r > ' ' && r < 0x7f {
			return r
		}
		return -1
	}, host)
	if len(host) > 253 {
		host = host[:253]
	}
	return host
}

// Replicas starts this replica's heartbeat: it beats once now, so the
// count is known before the replica serves (an error: the replica does
// not start), and Run beats on.
func (s *Store) Replicas(ctx context.Context, cfg ReplicasConfig) (*Replicas, error) {
	if cfg.ID == "" {
		cfg.ID = NewReplicaID()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = HeartbeatInterval
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 3 * cfg.Interval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Replicas{s: s, id: cfg.ID, host: hostName(), interval: cfg.Interval, ttl: cfg.TTL, log: cfg.Logger}
	r.live.Store(1)
	if err := r.Beat(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// ID is this replica's name.
func (r *Replicas) ID() string { return r.id }

// LiveReplicas is the count as of the last successful beat, this replica
// included: at least 1 (limits.Replicas).
func (r *Replicas) LiveReplicas() int { return int(r.live.Load()) }

// Beat upserts this replica's row and counts the live ones, in one
// statement on the database's clock. On an error the count is kept.
func (r *Replicas) Beat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.interval)
	defer cancel()
	var n int64
	// A data-modifying WITH runs once, whatever the outer query reads; the
	// outer query sees the table as it was before it, so this replica's
	// row is counted as the 1.
	err := r.s.pool.QueryRow(ctx, `WITH beat AS (
		INSERT INTO replicas (id, host, started_at, heartbeat_at) VALUES ($1, $3, now(), now())
		ON CONFLICT (id) DO UPDATE SET heartbeat_at = now() RETURNING id)
		SELECT 1 + count(*) FROM replicas
		WHERE id <> $1 AND heartbeat_at > now() - make_interval(secs => $2) AND heartbeat_at < now() + make_interval(secs => $2)`,
		r.id, r.ttl.Seconds(), r.host).Scan(&n)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if !r.failing {
			r.log.Warn("postgres: replica heartbeat failed; keeping the last count of live replicas", "live", r.live.Load(), "err", err)
		}
		r.failing = true
		return fmt.Errorf("postgres: replica heartbeat: %w", err)
	}
	if r.failing {
		r.log.Info("postgres: replica heartbeat back", "live", n)
	}
	r.failing = false
	if old := r.live.Swap(n); old != n {
		r.log.Info("postgres: live replicas changed", "live", n, "was", old)
	}
	r.last = r.s.now()
	return nil
}

// Run beats every interval until ctx ends, then deletes this replica's
// row (a clean stop: the others raise their share within an interval).
// Stale rows are pruned once an hour.
func (r *Replicas) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := r.Leave(lctx); err != nil {
				r.log.Warn("postgres: removing this replica's heartbeat; the others count it until it is stale", "err", err)
			}
			cancel()
			return
		case <-t.C:
		}
		_ = r.Beat(ctx) // logged by Beat
		if now := r.s.now(); now.Sub(r.pruned) > replicaPrune {
			r.pruned = now
			if err := r.prune(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("postgres: pruning stale replica heartbeats", "err", err)
			}
		}
	}
}

// Leave deletes this replica's row.
func (r *Replicas) Leave(ctx context.Context) error {
	if _, err := r.s.pool.Exec(ctx, `DELETE FROM replicas WHERE id = $1`, r.id); err != nil {
		return fmt.Errorf("postgres: replica leave: %w", err)
	}
	return nil
}

func (r *Replicas) prune(ctx context.Context) error {
	_, err := r.s.pool.Exec(ctx, `DELETE FROM replicas
		WHERE heartbeat_at < now() - make_interval(secs => $1) OR heartbeat_at > now() + make_interval(secs => $1)`, replicaPrune.Seconds())
	return err
}

// Age is how long ago the last successful beat was (the store's clock):
// about the interval while the database answers.
func (r *Replicas) Age() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.s.now().Sub(r.last)
}

// Check fails while the last successful beat is older than the TTL: the
// other replicas no longer count this one, and enforce a larger share of
// each rate than it assumes (readiness, advisory).
func (r *Replicas) Check(context.Context) error {
	if age := r.Age(); age > r.ttl {
		return fmt.Errorf("no replica heartbeat for %s (the others count this replica for %s): rates are over-admitted by this replica's share", age.Round(time.Second), r.ttl)
	}
	return nil
}

// List reads every row, live or stale, newest heartbeat first.
func (r *Replicas) List(ctx context.Context) ([]proxy.ReplicaHeartbeat, error) {
	rows, err := r.s.pool.Query(ctx, `SELECT id, host, started_at, heartbeat_at, extract(epoch FROM now() - heartbeat_at)::float8,
		heartbeat_at > now() - make_interval(secs => $1) AND heartbeat_at < now() + make_interval(secs => $1)
		FROM replicas ORDER BY heartbeat_at DESC, id`, r.ttl.Seconds())
	if err != nil {
		return nil, fmt.Errorf("postgres: replicas: %w", err)
	}
	defer rows.Close()
	out := []proxy.ReplicaHeartbeat{}
	for rows.Next() {
		var row proxy.ReplicaHeartbeat
		if err := rows.Scan(&row.ID, &row.Host, &row.Started, &row.Heartbeat, &row.Age, &row.Live); err != nil {
			return nil, fmt.Errorf("postgres: replicas: %w", err)
		}
		row.Started, row.Heartbeat, row.Self = row.Started.UTC(), row.Heartbeat.UTC(), row.ID == r.id
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: replicas: %w", err)
	}
	return out, nil
}

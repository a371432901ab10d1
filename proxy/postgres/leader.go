package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// One leader runs the background work that must happen once for all
// replicas (reconcile, catch-up, the dirty-mark worker, pruning): the
// replica that holds a session advisory lock, pg_try_advisory_lock, on a
// connection of its own outside the pool, held open while it leads.
//
// A dead leader is noticed through its connection, not a lease row:
//   - a crashed process (kill -9) has its socket closed by the kernel, so
//     the server ends the session and releases the lock at once;
//   - a host or network that goes silent is found by TCP: the session
//     sets tcp_keepalives_idle 5 s, _interval 2 s, _count 3 and
//     tcp_user_timeout 10 s, so the server drops it within about 11 s
//     (LeaseTime), and the lock with it.
// The other replicas try for the lock every LeaderRetry. The leader
// itself pings its connection every second and stops leading as soon as
// a ping fails (within TakeoverDelay). A replica that gets the lock
// waits TakeoverDelay before it works: a session the server ended (a
// restart, pg_terminate_backend) releases the lock at once, while its
// replica, alive, needs that long to notice, so two never work at once.

const (
	LeaseTime     = 11 * time.Second
	LeaderRetry   = 2 * time.Second
	TakeoverDelay = 3 * time.Second
)

// LeadConfig configures Lead.
type LeadConfig struct {
	// Run does the leader's work until its context ends (leadership lost
	// or the replica stopping).
	Run    func(ctx context.Context)
	Logger *slog.Logger
	Retry  time.Duration // 0: LeaderRetry
}

// Leader reports whether this replica leads.
type Leader struct{ leading atomic.Bool }

// Leading reports whether this replica leads now.
func (l *Leader) Leading() bool { return l.leading.Load() }

// Lead competes for leadership until ctx ends, running cfg.Run while it
// leads. It returns at once; the work runs in the background, and the
// returned func waits for it to stop.
func (s *Store) Lead(ctx context.Context, cfg LeadConfig) (*Leader, func()) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Retry <= 0 {
		cfg.Retry = LeaderRetry
	}
	l := &Leader{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := s.leadOnce(ctx, l, cfg); err != nil && ctx.Err() == nil {
				cfg.Logger.Warn("postgres: leader lock", "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(cfg.Retry):
			}
		}
	}()
	return l, func() { <-done }
}

// leadConn opens the lock's connection with the keepalives that let the
// server notice a dead leader.
func (s *Store) leadConn(ctx context.Context) (*pgx.Conn, error) {
	cc := s.cfg.Copy()
	d := &net.Dialer{Timeout: cc.ConnectTimeout, KeepAlive: 5 * time.Second}
	cc.DialFunc = d.DialContext
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["tcp_keepalives_idle"] = "5"
	cc.RuntimeParams["tcp_keepalives_interval"] = "2"
	cc.RuntimeParams["tcp_keepalives_count"] = "3"
	cc.RuntimeParams["tcp_user_timeout"] = "10000"
	cc.RuntimeParams["application_name"] = "tollgate-leader"
	return pgx.ConnectConfig(ctx, cc)
}

// leadOnce connects, waits for the lock, and leads until the connection
// fails or ctx ends.
func (s *Store) leadOnce(ctx context.Context, l *Leader, cfg LeadConfig) error {
	conn, err := s.leadConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for {
		var got bool
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1, $2)`, lockSpace, lockLeader).Scan(&got)
		cancel()
		if err != nil {
			return fmt.Errorf("try lock: %w", err)
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cfg.Retry):
		}
	}
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(TakeoverDelay):
	}
	if err := conn.Ping(ctx); err != nil {
		return fmt.Errorf("lost the lock's connection: %w", err)
	}
	cfg.Logger.Info("postgres: leading the background work")
	l.leading.Store(true)
	defer l.leading.Store(false)
	wctx, stop := context.WithCancel(ctx)
	worked := make(chan struct{})
	go func() {
		defer close(worked)
		cfg.Run(wctx)
	}()
	defer func() {
		stop()
		<-worked
	}()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				cfg.Logger.Warn("postgres: lost the leader's connection; no longer leading", "err", err)
				return err
			}
		}
	}
}

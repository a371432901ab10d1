package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/postgres/pgtest"
	"github.com/tollgate/tollgate/proxy/storetest"
)

// A replica frozen (SIGSTOP, a paused VM) or cut off in the middle of a
// transaction keeps its row locks while its session lives, and a flush
// locks other writers' meter rows (closeWindows): without a limit, the
// other replicas' flushes waited on those rows for as long as the freeze
// lasted, their quota counters unsaved and their re-reads not made, so
// README "Limits"' bound grew without end. The server ends a session
// idle in a transaction after Options.IdleInTransaction: the others'
// flush goes on, and the frozen transaction is rolled back.
func TestFrozenTransaction_DoesNotHoldTheOthersFlush(t *testing.T) {
	ctx := context.Background()
	h0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { return h0.Add(30 * time.Minute) }
	dsn := pgtest.DB(t)
	a, err := Open(ctx, dsn, Options{Now: now, Migrate: true, IdleInTransaction: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, dsn, Options{Now: now, IdleInTransaction: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	if _, _, err := b.SaveUsageCounts(ctx, "b", nil, []proxy.MeterCount{meterCount(ada, h0, 3)}, now()); err != nil {
		t.Fatal(err)
	}
	// a's flush locked b's row, and a froze before its commit.
	frozen, err := a.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Rollback(ctx) // releases the connection whatever the outcome
	if _, err := frozen.Exec(ctx, `SELECT 1 FROM meter_counts FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	_, _, err = b.SaveUsageCounts(wctx, "b", []proxy.QuotaCount{quotaCount(ada, h0, 4)}, []proxy.MeterCount{meterCount(ada, h0, 4)}, now())
	if err != nil {
		t.Fatalf("b's flush behind a frozen transaction: %v after %v", err, time.Since(start))
	}
	t.Logf("b's flush went on %v after the frozen transaction's lock", time.Since(start).Round(10*time.Millisecond))
	if err := frozen.Commit(ctx); err == nil {
		t.Error("the frozen transaction committed after the server ended its session")
	}
}

// Two replicas on one database share the Clerk order lock
// (clerk.OrderStore): one message about a Clerk object holds it from its
// ordering to its writes, whichever replica it reached.
func TestClerkOrderLock(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	a, err := Open(ctx, dsn, Options{Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	storetest.ClerkOrderLock(t, a, b)
}

// A replica frozen while it holds the Clerk order lock does not stop the
// others' Clerk webhooks for as long as the freeze lasts: the lock is a
// transaction's, and the server ends the holder's session after
// Options.IdleInTransaction.
func TestFrozenTransaction_DoesNotHoldTheClerkOrder(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	a, err := Open(ctx, dsn, Options{Migrate: true, IdleInTransaction: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, dsn, Options{IdleInTransaction: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	unlockA, err := a.LockClerkOrder(ctx) // a freezes: never unlocks in time
	if err != nil {
		t.Fatal(err)
	}
	defer unlockA()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	unlockB, err := b.LockClerkOrder(wctx)
	if err != nil {
		t.Fatalf("b behind a frozen holder: %v after %v", err, time.Since(start))
	}
	unlockB()
	t.Logf("b got the Clerk order lock %v after a froze holding it", time.Since(start).Round(10*time.Millisecond))
}

// A replica keeps one connection for the Clerk order lock across messages,
// and makes another when the server has ended it.
func TestClerkOrderLock_KeepsOneConnection(t *testing.T) {
	ctx := context.Background()
	s := open(t, time.Now)
	conns := func() int {
		t.Helper()
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tollgate-clerk-order'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	lockUnlock := func() {
		t.Helper()
		unlock, err := s.LockClerkOrder(ctx)
		if err != nil {
			t.Fatal(err)
		}
		unlock()
	}
	for range 5 {
		lockUnlock()
	}
	if n := conns(); n != 1 {
		t.Fatalf("after 5 messages: %d lock connections, want 1", n)
	}
	if _, err := s.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tollgate-clerk-order'`); err != nil {
		t.Fatal(err)
	}
	lockUnlock() // the ended connection's BEGIN fails; a new one serves
	if n := conns(); n != 1 {
		t.Fatalf("after the server ended it: %d lock connections, want 1", n)
	}
}

// BenchmarkClerkOrderLock is one Clerk message's lock and unlock on one
// replica (the connection kept between messages).
func BenchmarkClerkOrderLock(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.DB(b), Options{Migrate: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		unlock, err := s.LockClerkOrder(ctx)
		if err != nil {
			b.Fatal(err)
		}
		unlock()
	}
}

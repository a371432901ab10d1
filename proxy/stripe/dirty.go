package stripe

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// The dirty worker re-reads from Stripe the customers whose webhooks were
// acknowledged with a durable mark instead of a sync (syncOrDefer): the
// earliest due first, each customer once however many events it got,
// paid from the background lane at its pace while leaving the lane's room
// (bucket.room) to the eager syncs (an admin's, a stale re-sync), which so
// never wait behind a backlog. The Checkout return pays from the
// visitors' lane and does not meet the backlog at all.
const (
	// dirtyParallel bounds the syncs in flight: the pace is the lane's,
	// this only hides Stripe's latency (a sync is two round trips).
	dirtyParallel = 4
	// dirtyBatch is how many due marks are read at a time.
	dirtyBatch = 2 * dirtyParallel
	// dirtyIdle is how long the worker waits with nothing due before
	// looking again, should a kick be missed (another process's mark).
	dirtyIdle = time.Minute
	// dirtyRetryMax caps the wait before a failed sync is tried again.
	dirtyRetryMax = 5 * time.Minute
	// dirtySyncTimeout bounds one sync.
	dirtySyncTimeout = 30 * time.Second
	// BacklogMaxAge is how old the oldest mark may be before /readyz
	// warns (BacklogCheck): the worker is far behind.
	BacklogMaxAge = 10 * time.Minute
)

// KickDirty wakes the dirty worker: another replica made a mark (the
// PostgreSQL store's change log tells the leader).
func (b *Billing) KickDirty() { b.kickDirty() }

// kickDirty wakes the worker: a mark was made or a sync ended.
func (b *Billing) kickDirty() {
	select {
	case b.dirtyKick <- struct{}{}:
	default:
	}
}

// Backlog is the deferred syncs' size and the oldest mark's time, from the
// store (a Get and a cursor's First).
func (b *Billing) Backlog(ctx context.Context) (proxy.Backlog, error) {
	bl, err := b.store.DirtyBacklog(ctx)
	if err != nil {
		return proxy.Backlog{}, fmt.Errorf("stripe backlog: %w", err)
	}
	return bl, nil
}

// BacklogCheck is an advisory readiness check (/readyz warns, never
// fails, on it: README, "Admin listener"): it errs while the oldest
// dirty mark is older than maxAge (BacklogMaxAge when 0), on b's clock.
func (b *Billing) BacklogCheck(maxAge time.Duration) func(context.Context) error {
	if maxAge <= 0 {
		maxAge = BacklogMaxAge
	}
	return func(ctx context.Context) error {
		bl, err := b.Backlog(ctx)
		if err != nil {
			return err
		}
		if age := bl.Age(b.now()); age > maxAge {
			return fmt.Errorf("webhook backlog far behind: %d customers to sync from Stripe, the oldest marked %s ago (more than %s)",
				bl.Customers, age.Round(time.Second), maxAge)
		}
		return nil
	}
}

// RunDirty runs the dirty worker until ctx ends, then waits for the syncs
// in flight. Marks left are in the store for the next start.
func (b *Billing) RunDirty(ctx context.Context) {
	var (
		mu       sync.Mutex
		inflight = map[string]bool{}
		// endedSinceRead holds the customers whose sync ended since the
		// batch was read: the batch may still hold a mark that the sync
		// cleared, and starting it again would fetch the customer twice.
		endedSinceRead = map[string]bool{}
		wg             sync.WaitGroup
		slots          = make(chan struct{}, dirtyParallel)
		synced         = 0 // syncs started since the backlog was last empty
	)
	defer wg.Wait()
	for ctx.Err() == nil {
		mu.Lock()
		clear(endedSinceRead)
		mu.Unlock()
		marks, next, err := b.store.DirtyDue(ctx, b.now(), dirtyBatch)
		if err != nil {
			if ctx.Err() == nil {
				b.log.ErrorContext(ctx, "stripe: dirty worker: reading the backlog", "err", err)
				_ = b.sleep(ctx, time.Second)
			}
			continue
		}
		started, stale := 0, false
		for _, m := range marks {
			mu.Lock()
			busy, ended := inflight[m.CustomerID], endedSinceRead[m.CustomerID]
			mu.Unlock()
			if ended {
				stale = true // read again: the mark may be gone, or new
				continue
			}
			if busy {
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			if err := b.waitRoom(ctx, 2); err != nil {
				<-slots
				return
			}
			mu.Lock()
			inflight[m.CustomerID] = true
			mu.Unlock()
			started++
			synced++
			wg.Go(func() {
				b.syncDirty(ctx, m)
				mu.Lock()
				delete(inflight, m.CustomerID)
				endedSinceRead[m.CustomerID] = true
				mu.Unlock()
				<-slots
				b.kickDirty()
			})
		}
		if started > 0 || stale {
			continue
		}
		mu.Lock()
		busy := len(inflight) > 0
		mu.Unlock()
		if busy {
			// Every due mark is in flight: the end of one kicks.
			select {
			case <-b.dirtyKick:
			case <-ctx.Done():
			}
			continue
		}
		if len(marks) == 0 && next.IsZero() && synced > 0 {
			b.log.InfoContext(ctx, "stripe: webhook backlog drained", "syncs", synced)
			synced = 0
		}
		wait := dirtyIdle
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(b.now()), 0))
		}
		b.waitKick(ctx, wait)
	}
}

// waitKick waits for a kick, for d on b.sleep, or for ctx.
func (b *Billing) waitKick(ctx context.Context, d time.Duration) {
	select {
	case <-b.dirtyKick:
		return
	default:
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-b.dirtyKick:
			cancel()
		case <-wctx.Done():
		}
	}()
	_ = b.sleep(wctx, d)
}

// syncDirty reads one marked customer from Stripe with the two calls
// already paid, and clears its mark if no event came in meanwhile. A
// failure puts the mark off, doubling the wait each time up to
// dirtyRetryMax. A customer the key cannot see (ErrCustomerUnseen) is
// such a failure too: its mark stays, as the direct path answers 503 so
// that Stripe retries (README, "A customer the key cannot see is an
// outage"), because the mark is the only record left of the event that
// was acknowledged. Each try is logged and counted as customer_unseen
// (syncLocked); the backlog's readiness check only warns, so a mark
// kept this way never takes the gateway out of rotation.
func (b *Billing) syncDirty(ctx context.Context, m proxy.DirtyMark) {
	sctx, cancel := context.WithTimeout(ctx, dirtySyncTimeout)
	defer cancel()
	start := b.now()
	bud := b.backgroundBudget(b.retries)
	bud.prepaid = 2
	err := b.underLocks(sctx, bud, 2, func(lb *budget) error {
		unlock, err := b.locks.lock(sctx, customerKey(m.CustomerID))
		if err != nil {
			return fmt.Errorf("stripe sync %s: %w", m.CustomerID, err)
		}
		defer unlock()
		_, _, err = b.syncLocked(sctx, lb, m.CustomerID, "")
		return err
	})
	if bud.prepaid > 0 { // not spent: underLocks failed before its first run
		b.background.cancel(bud.prepaid)
	}
	log := b.log.With("customer", m.CustomerID)
	// The outcome is written even when ctx just ended: it is what happened.
	wctx := context.WithoutCancel(ctx)
	if err == nil {
		if _, cerr := b.store.ClearDirty(wctx, m, start); cerr != nil {
			log.ErrorContext(ctx, "stripe: dirty worker: clearing a mark", "err", cerr)
		}
		log.DebugContext(ctx, "stripe: dirty customer synced", "events_folded_since", m.MarkedAt)
		return
	}
	if ctx.Err() != nil {
		// Stopped, not failed: the mark stays as it was read, due at the
		// next start, and the attempt is not counted against its backoff.
		return
	}
	wait := min(time.Second<<min(m.Attempts, 16), dirtyRetryMax)
	if rerr := b.store.RetryDirty(wctx, m.CustomerID, b.now().Add(wait)); rerr != nil {
		log.ErrorContext(ctx, "stripe: dirty worker: putting a mark off", "err", rerr)
	}
	log.WarnContext(ctx, "stripe: dirty worker: sync failed; retrying later", "err", err, "retry_in", wait, "attempts", m.Attempts+1)
}

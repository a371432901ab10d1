package stripe

import (
	"context"
	"fmt"
	"time"
)

// The store keeps the ID of every event it processed (the webhook's
// duplicate check, EventProcessed; Clerk's Svix messages share it), and
// the leader forgets them once no delivery can bring them again (README
// "Billing", "Processed events").
const (
	// EventRetention is how long a processed event's ID is kept: longer
	// than Stripe retries a delivery (up to three days, in live mode:
	// docs.stripe.com/webhooks, "Automatic retries") and than the
	// catch-up looks back (catchUpWindow: the Events API lists 30 days,
	// docs.stripe.com/api/events), with a day to spare for clocks and a
	// catch-up that runs late. An ID forgotten sooner would let a retry
	// or the catch-up process an event twice: harmless (every event only
	// re-reads its customer from Stripe) but a wasted sync. Svix retries
	// a Clerk message for a little over a day (docs.svix.com, "Retries"),
	// well inside.
	EventRetention = catchUpWindow + 24*time.Hour
	// eventPruneBatch is how many IDs one transaction forgets: a write
	// transaction of bbolt holds the file's one writer, so webhooks'
	// commits wait at most one small batch.
	eventPruneBatch = 500
	// eventPruneEvery is how often the leader prunes.
	eventPruneEvery = time.Hour
)

// EventsObserver learns how many processed event IDs a prune forgot, for
// metrics. An Observer that implements it is told after every pass that
// forgot any.
type EventsObserver interface {
	EventsPruned(n int)
}

// PruneEvents forgets the processed events older than EventRetention, a
// batch of eventPruneBatch per transaction until none is left, and
// returns how many it forgot. A store that prunes by an index reads only
// what it deletes, so a pass with nothing to do costs one small read.
func (b *Billing) PruneEvents(ctx context.Context) (int, error) {
	before := b.now().Add(-EventRetention)
	total := 0
	for {
		n, err := b.store.PruneEvents(ctx, before, eventPruneBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("stripe: prune events: %w", err)
		}
		if n < eventPruneBatch {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// pruneEvents prunes at start and every eventPruneEvery until ctx ends,
// logging and counting what each pass forgot.
func (bg *Background) pruneEvents(ctx context.Context) {
	for {
		n, err := bg.b.PruneEvents(ctx)
		if n > 0 {
			bg.log.Info("stripe: forgot processed events past their retention", "events", n, "retention", EventRetention)
		}
		if err != nil && ctx.Err() == nil {
			bg.log.Warn("stripe: pruning processed events", "err", err, "forgot", n)
		}
		if n > 0 && bg.obs != nil {
			bg.obs.EventsPruned(n)
		}
		if bg.sleep(ctx, eventPruneEvery) != nil {
			return
		}
	}
}

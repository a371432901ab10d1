package stripe

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// catchUpWindow is how far back CatchUp looks: Stripe's Events API keeps 30
// days, and retries a failed delivery for 3.
const catchUpWindow = 30 * 24 * time.Hour

// CatchUp processes the events Stripe could not deliver to the webhook
// (while tollgate was down or unreachable): it lists them with
// delivery_success=false and runs each through the webhook's own handling,
// so the duplicate check, the per-customer sync and the one-transaction
// commit are the same. It returns how many events it processed.
func (b *Billing) CatchUp(ctx context.Context) (int, error) {
	p := &stripe.EventListParams{DeliverySuccess: stripe.Bool(false)}
	p.Context = ctx
	p.Filters.AddFilter("created", "gte", fmt.Sprint(b.now().Add(-catchUpWindow).Unix()))
	p.Limit = stripe.Int64(100)
	var events []*stripe.Event
	err := b.call(ctx, b.backgroundBudget(b.sweepRetries), func() error {
		events = events[:0]
		it := b.api.Events.List(p)
		for it.Next() {
			events = append(events, it.Event())
		}
		return it.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("stripe catch-up: list events: %w", stripeFailure(err))
	}
	// Oldest first, as they happened; each re-fetches current state anyway.
	n := 0
	for i := len(events) - 1; i >= 0; i-- {
		ev := events[i]
		if code := b.handleEvent(ctx, ev); code >= http.StatusMultipleChoices {
			return n, fmt.Errorf("stripe catch-up: event %s (%s): status %d", ev.ID, ev.Type, code)
		}
		n++
	}
	return n, nil
}

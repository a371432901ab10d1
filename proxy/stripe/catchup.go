package stripe

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/stripe/stripe-go/v76"
)

const (
	// catchUpWindow is how far back CatchUp looks at most: Stripe's
	// Events API keeps 30 days, and retries a failed delivery for 3.
	catchUpWindow = 30 * 24 * time.Hour
	// catchUpOverlap is how far before the last complete run's start the
	// next run looks again, for clocks that disagree.
	catchUpOverlap = time.Hour
	// catchUpPage is the events fetched and processed at a time.
	catchUpPage = 100
	// maxFolded bounds the customers one run remembers having synced.
	maxFolded = 10000
)

// CursorCatchUp is the Store cursor holding when the last complete
// CatchUp started (unix seconds).
const CursorCatchUp = "stripe.catch_up"

// CatchUp processes the events Stripe could not deliver to the webhook
// (while tollgate was down or unreachable). It asks the Events API only
// for the event types tollgate handles (types[]) that are not delivered
// (delivery_success=false: pending or failed, for any endpoint of the
// account) since the last complete run (at most 30 days back), and pages
// lazily: one page of 100 is fetched, processed and dropped before the
// next, so memory stays bounded however many events failed. Each event
// goes through the webhook's own handling (duplicate check, livemode,
// per-customer sync, one-transaction commit); events for a customer this
// run has already synced since they happened are only marked, so many
// events of one customer cost one fetch. It returns how many events it
// processed.
func (b *Billing) CatchUp(ctx context.Context) (int, error) {
	start := b.now()
	since := start.Add(-catchUpWindow)
	if v, err := b.store.Cursor(ctx, CursorCatchUp); err != nil {
		return 0, fmt.Errorf("stripe catch-up: cursor: %w", err)
	} else if sec, err := strconv.ParseInt(v, 10, 64); err == nil {
		if last := time.Unix(sec, 0).Add(-catchUpOverlap); last.After(since) {
			since = last
		}
	}
	bud := b.backgroundBudget(b.sweepRetries)
	synced := map[string]bool{} // customers synced by this run
	n, after := 0, ""
	for {
		page, more, err := b.eventPage(ctx, bud, since, after)
		if err != nil {
			return n, fmt.Errorf("stripe catch-up: list events: %w", stripeFailure(err))
		}
		// Newest first, as listed: every event re-reads the customer's
		// state now, so their order does not matter.
		for _, ev := range page {
			if err := b.catchUpEvent(ctx, ev, synced); err != nil {
				return n, fmt.Errorf("stripe catch-up: %w", err)
			}
			n++
		}
		if !more || len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
	}
	if err := b.store.SetCursor(ctx, CursorCatchUp, strconv.FormatInt(start.Unix(), 10)); err != nil {
		return n, fmt.Errorf("stripe catch-up: save cursor: %w", err)
	}
	return n, nil
}

// catchUpEvent handles one listed event, folding it into a sync this run
// already made of its customer when it can.
func (b *Billing) catchUpEvent(ctx context.Context, ev *stripe.Event, synced map[string]bool) error {
	var obj eventObject
	if ev.Data != nil {
		obj = parseEventObject(ev.Data.Raw)
	}
	cus := obj.customerID()
	if cus != "" && synced[cus] && !linksCheckout(string(ev.Type)) && ev.Livemode == b.livemode {
		// The customer was read after this event happened (the pages go
		// back in time): its state is already newer than the event.
		if err := b.store.MarkEvent(ctx, ev.ID); err != nil {
			return fmt.Errorf("event %s: mark: %w", ev.ID, err)
		}
		return nil
	}
	if code, _ := b.handleEvent(ctx, ev); code >= http.StatusMultipleChoices {
		return fmt.Errorf("event %s (%s): status %d", ev.ID, ev.Type, code)
	}
	if cus != "" && ev.Livemode == b.livemode && len(synced) < maxFolded {
		synced[cus] = true
	}
	return nil
}

// eventPage fetches one page of undelivered events of the handled types
// created since since, after the event ID after.
func (b *Billing) eventPage(ctx context.Context, bud *budget, since time.Time, after string) ([]*stripe.Event, bool, error) {
	var page []*stripe.Event
	var more bool
	err := b.call(ctx, bud, func() error {
		p := &stripe.EventListParams{DeliverySuccess: stripe.Bool(false), Types: stripe.StringSlice(handledEvents)}
		p.Context = ctx
		p.Filters.AddFilter("created", "gte", strconv.FormatInt(since.Unix(), 10))
		p.Limit = stripe.Int64(catchUpPage)
		p.Single = true
		if after != "" {
			p.StartingAfter = stripe.String(after)
		}
		page, more = page[:0], false
		it := b.api.Events.List(p)
		for it.Next() {
			page = append(page, it.Event())
		}
		if err := it.Err(); err != nil {
			return err
		}
		more = it.Meta() != nil && it.Meta().HasMore
		return nil
	})
	return page, more, err
}

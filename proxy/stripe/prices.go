package stripe

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// CursorPrices is the Store cursor that holds the price catalogue the
// upgrade page shows (amounts, intervals), as the last refresh from Stripe
// loaded it, stamped with when: the replicas of one PostgreSQL store read
// it from there, so that only the leader spends the Stripe rate limit on
// prices (README, "Running several replicas").
const CursorPrices = "stripe.prices"

// priceCatalogue is CursorPrices' value, as JSON.
type priceCatalogue struct {
	At     time.Time              `json:"at"`
	Prices map[string]proxy.Price `json:"prices"`
}

// PublishPrices stores the prices this replica holds (every one
// RefreshPrices ever loaded, the last load of each), stamped now, for the
// other replicas of the store (SharedPrices).
func (b *Billing) PublishPrices(ctx context.Context) error {
	b.pricesMu.RLock()
	c := priceCatalogue{At: b.now().UTC(), Prices: maps.Clone(b.prices)}
	b.pricesMu.RUnlock()
	raw, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("stripe: publish prices: %w", err)
	}
	if err := b.store.SetCursor(ctx, CursorPrices, string(raw)); err != nil {
		return fmt.Errorf("stripe: publish prices: %w", err)
	}
	return nil
}

// SharedPrices reads the price catalogue PublishPrices stored (a read of
// the store, no call to Stripe) and takes from it every configured price
// it holds. It returns when the catalogue was published (zero: none yet)
// and how many configured prices it lacks. A configured price it lacks
// keeps what this replica had.
func (b *Billing) SharedPrices(ctx context.Context) (time.Time, int, error) {
	ids := b.configuredPrices()
	raw, err := b.store.Cursor(ctx, CursorPrices)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("stripe: shared prices: %w", err)
	}
	if raw == "" {
		return time.Time{}, len(ids), nil
	}
	var c priceCatalogue
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return time.Time{}, 0, fmt.Errorf("stripe: shared prices: %w", err)
	}
	missing := 0
	b.pricesMu.Lock()
	for _, id := range ids {
		if p, ok := c.Prices[id]; ok {
			b.prices[id] = p
		} else {
			missing++
		}
	}
	b.pricesMu.Unlock()
	return c.At, missing, nil
}

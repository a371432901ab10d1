package proxy

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// CustomerState is one Stripe customer's subscriptions as a sync just read
// them from Stripe (all statuses, all pages), ready to commit.
type CustomerState struct {
	CustomerID    string
	Subject       Subject // who the customer belongs to (zero: unknown, kept by customer ID until linked)
	Email         string
	Subscriptions []Subscription
	Deleted       bool // Stripe deleted the customer (or answers 404 for it)
	SyncedAt      time.Time
}

// MergeSubscriptions carries what only tollgate knows from the stored
// subscriptions into freshly synced ones: when each was first seen past
// due (so past_due_grace counts from then, not from the latest sync).
func MergeSubscriptions(old, fresh []Subscription, now time.Time) []Subscription {
	prev := make(map[string]*Subscription, len(old))
	for i := range old {
		prev[old[i].ID] = &old[i]
	}
	out := make([]Subscription, len(fresh))
	for i, s := range fresh {
		if s.Status == StatusPastDue {
			if p := prev[s.ID]; p != nil && p.Status == StatusPastDue && !p.PastDueSince.IsZero() {
				s.PastDueSince = p.PastDueSince
			} else if s.PastDueSince.IsZero() {
				s.PastDueSince = now
			}
		} else {
			s.PastDueSince = time.Time{}
		}
		out[i] = s
	}
	return out
}

// CheckoutRequest asks Billing to start a Checkout for a plan.
type CheckoutRequest struct {
	Identity *Identity
	Subject  Subject // the user, or the active organisation for organisation plans
	Plan     *Plan
	// Price is the plan's price the visitor chose (monthly or yearly): one
	// of Plan.Prices, "" for the first.
	Price      string
	ReturnPath string // same-origin path to come back to after paying
	// AllowPromotionCodes and AutomaticTax are stripe.allow_promotion_codes
	// and stripe.automatic_tax of the config serving the request.
	AllowPromotionCodes, AutomaticTax bool
}

// PriceID is the price the request subscribes to: Price, or the plan's
// first.
func (r CheckoutRequest) PriceID() string {
	if r.Price != "" || r.Plan == nil || len(r.Plan.Prices) == 0 {
		return r.Price
	}
	return r.Plan.Prices[0]
}

// CheckoutResult is where to send the visitor: Stripe Checkout, or the
// Billing Portal when the subject already holds a live subscription (no
// double subscriptions).
type CheckoutResult struct {
	URL    string
	Portal bool
}

// CheckoutReturn is what the success URL learned from Stripe.
type CheckoutReturn struct {
	ReturnPath string // from the session's metadata, unvalidated: the caller checks it
	Settled    bool   // the subscription grants access already
}

// Billing is what tollgate's own billing endpoints ask of Stripe.
// Implemented by proxy/stripe. It is called only from those endpoints
// (checkout, its return, the portal), never from the gate.
type Billing interface {
	Checkout(ctx context.Context, req CheckoutRequest) (CheckoutResult, error)
	CompleteCheckout(ctx context.Context, sessionID string, id *Identity) (CheckoutReturn, error)
	Portal(ctx context.Context, subject Subject, returnURL string) (string, error)
}

// ValidCheckoutSessionID reports whether id has the form of a Stripe
// Checkout Session ID: "cs_test_" or "cs_live_", then letters and digits,
// at most 255 characters in all (Stripe's longest object ID). Anything else
// is refused before any Stripe call.
func ValidCheckoutSessionID(id string) bool {
	rest, ok := strings.CutPrefix(id, "cs_test_")
	if !ok {
		rest, ok = strings.CutPrefix(id, "cs_live_")
	}
	if !ok || rest == "" || len(id) > 255 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// SeenRecorder learns that a user was seen, off the request path: the
// implementation batches the writes.
type SeenRecorder interface {
	Seen(userID string, at time.Time)
}

// Price is what the pages show of a Stripe price.
type Price struct {
	ID            string
	Amount        int64  // in the currency's minor unit
	Currency      string // ISO code, lower case
	Interval      string // day, week, month, year; "" for one-time prices
	IntervalCount int64
	// Metered: Amount is per unit of usage, billed at the end of each
	// interval (a metered plan's meter.price).
	Metered bool
}

// Format renders the amount for people: "$12.00", "€9.50", "12.00 CHF".
func (p Price) Format() string {
	major := fmt.Sprintf("%d.%02d", p.Amount/100, p.Amount%100)
	switch strings.ToLower(p.Currency) {
	case "usd":
		return "$" + major
	case "eur":
		return "€" + major
	case "gbp":
		return "£" + major
	}
	return major + " " + strings.ToUpper(p.Currency)
}

// Per renders the billing interval: "month", "3 months", "", or "unit"
// for a metered price.
func (p Price) Per() string {
	if p.Metered {
		return "unit"
	}
	if p.Interval == "" {
		return ""
	}
	if p.IntervalCount > 1 {
		return fmt.Sprintf("%d %ss", p.IntervalCount, p.Interval)
	}
	return p.Interval
}

// PriceCatalog knows the configured prices (loaded from Stripe at start and
// refreshed in the background, never per request). Implemented by
// proxy/stripe.
type PriceCatalog interface {
	Price(id string) (Price, bool)
}

package stripe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	stripe "github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
)

// customerInfo is what a sync needs of a Stripe customer.
type customerInfo struct {
	ID       string
	Email    string
	Metadata map[string]string
	Deleted  bool
}

func infoOf(c *stripe.Customer) customerInfo {
	return customerInfo{ID: c.ID, Email: c.Email, Metadata: c.Metadata, Deleted: c.Deleted}
}

// SyncCustomer re-reads one customer and all its subscriptions from Stripe
// and commits them, with eventID when not empty, under the customer's lock;
// the LRU is then written with the committed record. It is the one sync
// every path uses. It is paid from the background lane of the Stripe
// budget, which visitors cannot drain.
func (b *Billing) SyncCustomer(ctx context.Context, customerID, eventID string) error {
	if customerID == "" {
		return errors.New("stripe sync: empty customer ID")
	}
	// Two calls (the customer, its subscriptions), paid before the lock.
	return b.underLocks(ctx, b.backgroundBudget(b.retries), 2, func(bud *budget) error {
		unlock, err := b.locks.lock(ctx, customerKey(customerID))
		if err != nil {
			return fmt.Errorf("stripe sync %s: %w", customerID, err)
		}
		defer unlock()
		_, _, err = b.syncLocked(ctx, bud, customerID, eventID)
		return err
	})
}

// syncLocked is SyncCustomer's body; the caller holds the customer's lock
// and pays with bud (see underLocks). A customer Stripe reports deleted
// (deleted: true) is committed as deleted. One Stripe answers
// resource_missing for is not: the key cannot see it, which says the key
// is another account's or mode's, not that the customer is gone; nothing
// is committed (access stays as it was) and ErrCustomerUnseen is returned,
// logged and counted.
func (b *Billing) syncLocked(ctx context.Context, bud *budget, customerID, eventID string) (proxy.CustomerState, *proxy.Entitlements, error) {
	// The state is as of when the read began: a store shared by several
	// replicas keeps the later of two reads of one customer by it
	// (proxy/postgres), so a slow replica's older read cannot undo a
	// fresher one. The start is read from the store's clock when it has
	// one of its own (SyncClock: the shared database's), so that replicas'
	// clocks never meet.
	now, err := b.syncStart(ctx)
	if err != nil {
		return proxy.CustomerState{}, nil, fmt.Errorf("stripe sync %s: %w", customerID, err)
	}
	var c *stripe.Customer
	err = b.call(ctx, bud, func() (err error) {
		p := &stripe.CustomerParams{}
		p.Context = ctx
		c, err = b.api.Customers.Get(customerID, p)
		return err
	})
	var info customerInfo
	switch {
	case isResourceMissing(err):
		b.anomaly(AnomalyCustomerUnseen)
		b.log.ErrorContext(ctx, "stripe: the key cannot see a customer (resource_missing); keeping its state. "+
			"Is stripe.secret_key the key of another account or mode?", "customer", customerID,
			"key_mode", modeName(b.livemode), "err", err)
		return proxy.CustomerState{}, nil, fmt.Errorf("stripe sync %s: %w", customerID, ErrCustomerUnseen)
	case err != nil:
		return proxy.CustomerState{}, nil, fmt.Errorf("stripe sync %s: get customer: %w", customerID, stripeFailure(err))
	default:
		info = infoOf(c)
		info.ID = customerID
	}
	var subs []*stripe.Subscription
	if !info.Deleted {
		if subs, err = b.customerSubscriptions(ctx, bud, customerID); err != nil {
			return proxy.CustomerState{}, nil, fmt.Errorf("stripe sync %s: %w", customerID, err)
		}
	}
	mapped := make([]proxy.Subscription, 0, len(subs))
	for _, s := range subs {
		mapped = append(mapped, b.subscription(s, customerID, now))
	}
	return b.commitLocked(ctx, info, mapped, eventID, now)
}

// SyncClock is a Store with a clock of its own that orders the commits of
// every process sharing it (proxy/postgres: the database's). A sync's start
// is read from it; a store without one (bolt: one process) is ordered by
// the Billing's clock.
type SyncClock interface {
	SyncTime(ctx context.Context) (time.Time, error)
}

// syncStart is the time a sync starts reading Stripe at.
func (b *Billing) syncStart(ctx context.Context) (time.Time, error) {
	if c, ok := b.store.(SyncClock); ok {
		at, err := c.SyncTime(ctx)
		if err != nil {
			return time.Time{}, fmt.Errorf("sync time: %w", err)
		}
		return at, nil
	}
	return b.now(), nil
}

// customerSubscriptions lists all of a customer's subscriptions, every
// status, every page.
func (b *Billing) customerSubscriptions(ctx context.Context, bud *budget, customerID string) ([]*stripe.Subscription, error) {
	var out []*stripe.Subscription
	after := ""
	for {
		page, more, err := b.subscriptionPage(ctx, bud, customerID, after)
		if err != nil {
			return nil, fmt.Errorf("list subscriptions: %w", stripeFailure(err))
		}
		out = append(out, page...)
		if !more || len(page) == 0 {
			return out, nil
		}
		after = page[len(page)-1].ID
	}
}

// subscriptionPage fetches one page of subscriptions in every status, after
// the subscription ID after: one customer's, or with customerID "" the whole
// account's (with each customer expanded, for grouping).
func (b *Billing) subscriptionPage(ctx context.Context, bud *budget, customerID, after string) ([]*stripe.Subscription, bool, error) {
	var page []*stripe.Subscription
	var more bool
	err := b.call(ctx, bud, func() error {
		p := &stripe.SubscriptionListParams{Status: stripe.String("all")}
		p.Context = ctx
		p.Limit = stripe.Int64(100)
		p.Single = true
		if customerID != "" {
			p.Customer = stripe.String(customerID)
		} else {
			p.AddExpand("data.customer")
		}
		if after != "" {
			p.StartingAfter = stripe.String(after)
		}
		page, more = nil, false
		it := b.api.Subscriptions.List(p)
		for it.Next() {
			page = append(page, it.Subscription())
		}
		if err := it.Err(); err != nil {
			return err
		}
		more = it.Meta() != nil && it.Meta().HasMore
		return nil
	})
	return page, more, err
}

// commitLocked resolves who the customer belongs to (the stored link, else
// its metadata), commits the state with eventID, and writes the committed
// record through to the cache. The caller holds the customer's lock.
func (b *Billing) commitLocked(ctx context.Context, info customerInfo, subs []proxy.Subscription, eventID string, now time.Time) (proxy.CustomerState, *proxy.Entitlements, error) {
	subject, err := b.resolveSubject(ctx, info)
	if err != nil {
		return proxy.CustomerState{}, nil, err
	}
	if n := severalLive(subs); n > 1 {
		b.anomaly(AnomalySeveralLiveSubscriptions)
		b.log.WarnContext(ctx, "stripe: customer holds several live subscriptions to the configured plans",
			"customer", info.ID, "subject", subject.String(), "live", n)
	}
	state := proxy.CustomerState{
		CustomerID:    info.ID,
		Subject:       subject,
		Email:         info.Email,
		Subscriptions: subs,
		Deleted:       info.Deleted,
		SyncedAt:      now,
	}
	if info.Deleted {
		state.Subscriptions = nil
	}
	who, ents, err := b.store.CommitCustomer(ctx, state, eventID)
	if err != nil {
		return proxy.CustomerState{}, nil, fmt.Errorf("stripe sync %s: commit: %w", info.ID, err)
	}
	if who.ID != "" && b.cache != nil {
		b.cache.Put(who, ents)
	}
	b.markFresh(info.ID)
	b.log.DebugContext(ctx, "stripe: customer synced", "customer", info.ID, "subject", who.String(),
		"subscriptions", len(state.Subscriptions), "deleted", info.Deleted, "event_id", eventID)
	return state, ents, nil
}

// severalLive counts the live subscriptions (as Checkout counts them) to
// configured plans.
func severalLive(subs []proxy.Subscription) int {
	n := 0
	for i := range subs {
		if subs[i].Plan != "" && live(subs[i].Status) {
			n++
		}
	}
	return n
}

// resolveSubject finds who a customer belongs to: the stored link; else,
// for a customer created elsewhere, its metadata clerk_user_id or
// clerk_org_id (never its email), linked when that subject has no customer
// yet. Zero when nobody.
func (b *Billing) resolveSubject(ctx context.Context, info customerInfo) (proxy.Subject, error) {
	s, ok, err := b.store.SubjectOf(ctx, info.ID)
	if err != nil {
		return proxy.Subject{}, fmt.Errorf("stripe sync %s: subject: %w", info.ID, err)
	}
	if ok {
		return s, nil
	}
	if info.Deleted {
		return proxy.Subject{}, nil
	}
	s, ok = subjectFromMetadata(info.Metadata)
	if !ok {
		return proxy.Subject{}, nil
	}
	cur, err := b.store.CustomerOf(ctx, s)
	if err != nil {
		return proxy.Subject{}, fmt.Errorf("stripe sync %s: customer of %s: %w", info.ID, s, err)
	}
	if cur != "" && cur != info.ID {
		b.log.WarnContext(ctx, "stripe: customer metadata names a subject that already has another customer; not adopting",
			"customer", info.ID, "subject", s.String(), "linked_customer", cur)
		return proxy.Subject{}, nil
	}
	if cur == "" {
		if err := b.store.LinkCustomer(ctx, s, info.ID); err != nil {
			return proxy.Subject{}, fmt.Errorf("stripe sync %s: adopt %s: %w", info.ID, s, err)
		}
		b.log.InfoContext(ctx, "stripe: adopted customer from its metadata", "customer", info.ID, "subject", s.String())
	}
	return s, nil
}

// subscription maps a Stripe subscription (rendered at stripe-go's pinned
// API version) to tollgate's record.
// cost is what a subscription's recurring items cost together, for the
// admin dashboard: unit amount times quantity, summed. Stripe bills every
// item of a subscription in one currency and interval. An item of unknown
// amount (metered or tiered) makes the whole amount unknown: zeros.
func cost(items *stripe.SubscriptionItemList) (amount int64, currency, interval string, count int64) {
	if items == nil {
		return 0, "", "", 0
	}
	for _, it := range items.Data {
		if it == nil || it.Price == nil || it.Price.Type == stripe.PriceTypeOneTime {
			continue
		}
		p := it.Price
		if p.Recurring == nil || p.BillingScheme == stripe.PriceBillingSchemeTiered || p.Recurring.UsageType == stripe.PriceRecurringUsageTypeMetered {
			return 0, "", "", 0
		}
		amount += p.UnitAmount * max(it.Quantity, 1)
		currency, interval, count = string(p.Currency), string(p.Recurring.Interval), p.Recurring.IntervalCount
	}
	return amount, currency, interval, count
}

func (b *Billing) subscription(s *stripe.Subscription, customerID string, now time.Time) proxy.Subscription {
	out := proxy.Subscription{
		ID:               s.ID,
		CustomerID:       customerID,
		Status:           proxy.SubscriptionStatus(s.Status),
		CurrentPeriodEnd: unixTime(s.CurrentPeriodEnd),
		// billing_cycle_anchor (stripe-go v76 Subscription.BillingCycleAnchor):
		// monthly quotas reset on its day (proxy.QuotaWindow).
		BillingCycleAnchor: unixTime(s.BillingCycleAnchor),
		TrialEnd:           unixTime(s.TrialEnd),
		CancelAtPeriodEnd:  s.CancelAtPeriodEnd,
		SyncedAt:           now,
	}
	if pc := s.PauseCollection; pc != nil && pc.Behavior != "" {
		out.PausedCollection = string(pc.Behavior)
		out.CollectionResumesAt = unixTime(pc.ResumesAt)
	}
	if s.Customer != nil && s.Customer.ID != "" {
		out.CustomerID = s.Customer.ID
	}
	out.Created, out.EndedAt = unixTime(s.Created), unixTime(s.EndedAt)
	out.Amount, out.Currency, out.Interval, out.IntervalCount = cost(s.Items)
	if s.Items != nil {
		for _, it := range s.Items.Data {
			if it == nil {
				continue
			}
			id := ""
			switch {
			case it.Price != nil && it.Price.Type != stripe.PriceTypeOneTime:
				id = it.Price.ID
			case it.Price == nil && it.Plan != nil: // legacy plans are prices too
				id = it.Plan.ID
			}
			if id != "" && !slices.Contains(out.PriceIDs, id) {
				out.PriceIDs = append(out.PriceIDs, id)
			}
		}
	}
	out.Plan = b.planFor(out.PriceIDs)
	return out
}

// planFor is the key of the first configured plan listing one of prices.
func (b *Billing) planFor(prices []string) string {
	for _, p := range b.Plans() {
		for _, id := range prices {
			if slices.Contains(p.Prices, id) {
				return p.Key
			}
		}
	}
	return ""
}

func unixTime(sec int64) time.Time {
	if sec <= 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

// sweep is one running SyncAll. Customers another path commits while it
// runs are marked fresh: the sweep's older read must not overwrite them.
type sweep struct {
	fresh map[string]bool // guarded by Billing.sweepMu
}

func (b *Billing) startSweep() *sweep {
	sw := &sweep{fresh: map[string]bool{}}
	b.sweepMu.Lock()
	b.sweeps[sw] = struct{}{}
	b.sweepMu.Unlock()
	return sw
}

func (b *Billing) endSweep(sw *sweep) {
	b.sweepMu.Lock()
	delete(b.sweeps, sw)
	b.sweepMu.Unlock()
}

func (b *Billing) markFresh(customerID string) {
	b.sweepMu.Lock()
	for sw := range b.sweeps {
		sw.fresh[customerID] = true
	}
	b.sweepMu.Unlock()
}

// isFresh reports whether another path committed customerID since sw
// started.
func (b *Billing) isFresh(sw *sweep, customerID string) bool {
	b.sweepMu.Lock()
	defer b.sweepMu.Unlock()
	return sw.fresh[customerID]
}

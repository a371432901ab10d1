package stripe

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	stripe "github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
)

// ReconcileObserver learns the reconcile's progress, for metrics. An
// Observer that implements it is told after every page.
type ReconcileObserver interface {
	ReconcileProgress(pages, subscriptions, committed, marked int, running bool, completed time.Time)
}

const (
	// reconcileLogEvery is how many pages (of 100 subscriptions) pass
	// between two progress lines in the log.
	reconcileLogEvery = 50
	// reconcileMineMax bounds the customers one run remembers having
	// committed from the listing (to add a later page's subscriptions to
	// them); past it such a customer is marked dirty instead.
	reconcileMineMax = 100000
)

// sweepGroup is one customer's subscriptions as one page of the
// account-wide list returned them.
type sweepGroup struct {
	info customerInfo
	subs []proxy.Subscription
}

// reconcileRun is one SyncAll's counts.
type reconcileRun struct {
	pages, subs, committed, marked int
	started                        time.Time
}

// SyncAll reconciles the store with Stripe from one account-wide listing
// of every subscription (status=all, 100 a page, each customer expanded),
// not one call per customer, page by page, so memory holds one page
// whatever the account's size:
//
//   - a customer the store holds nothing for (or no subscription) is
//     committed from the listing, under its lock; a later page's
//     subscriptions of a customer this run committed are added to it;
//   - a customer whose stored state differs from the listing (a
//     subscription missing or changed, a deletion, metadata naming a
//     subject for an unlinked customer) is marked dirty, and the dirty
//     worker reads it whole from Stripe at the background lane's pace;
//   - a customer another path committed since the run began is left
//     alone: its record is newer than the listing.
//
// Each page is paid from the background lane leaving its room for eager
// syncs (bucket.room), so at the default pacing 100,000 subscriptions take
// 1,000 calls, about two minutes, well within Stripe's limits. After each
// page the last subscription listed is saved in the CursorSyncAll cursor:
// a run that fails, is cancelled or dies resumes after the last page it
// finished; a finished run clears it. Progress is logged every
// reconcileLogEvery pages and told to a ReconcileObserver after each. It
// returns how many customers it committed or marked. A second call while
// one runs returns ErrSyncRunning.
func (b *Billing) SyncAll(ctx context.Context) (n int, err error) {
	if !b.sweepRun.TryLock() {
		return 0, ErrSyncRunning
	}
	defer b.sweepRun.Unlock()
	sw := b.startSweep()
	defer b.endSweep(sw)
	after, err := b.store.Cursor(ctx, CursorSyncAll)
	if err != nil {
		return 0, fmt.Errorf("stripe sync all: cursor: %w", err)
	}
	if !strings.HasPrefix(after, "sub_") {
		after = "" // none, or an older tollgate's (a customer ID): start over
	}
	run := &reconcileRun{started: b.now()}
	if after != "" {
		b.log.InfoContext(ctx, "stripe: reconcile resuming", "after_subscription", after)
	}
	defer func() {
		if err != nil { // stopped: not running, not completed
			b.reconcileProgress(run, false, time.Time{})
		}
	}()
	mine := map[string]bool{}
	bud := b.backgroundBudget(b.sweepRetries)
	for {
		if err := b.waitRoom(ctx, 1); err != nil {
			return run.committed + run.marked, fmt.Errorf("stripe sync all: %w", err)
		}
		bud.prepaid = 1
		page, more, err := b.subscriptionPage(ctx, bud, "", after)
		if bud.prepaid > 0 {
			b.background.cancel(bud.prepaid)
			bud.prepaid = 0
		}
		if err != nil && after != "" && run.pages == 0 && stripeStatus(err) >= 400 && stripeStatus(err) < 500 && !isRateLimited(err) {
			// The subscription resumed after is gone: start over.
			b.log.WarnContext(ctx, "stripe: reconcile cannot resume; starting over", "after_subscription", after, "err", err)
			after = ""
			continue
		}
		if err != nil {
			return run.committed + run.marked, fmt.Errorf("stripe sync all: list subscriptions (page %d): %w", run.pages+1, stripeFailure(err))
		}
		if err := b.reconcilePage(ctx, sw, page, mine, run); err != nil {
			return run.committed + run.marked, fmt.Errorf("stripe sync all: %w", err)
		}
		run.pages++
		run.subs += len(page)
		if len(page) > 0 {
			after = page[len(page)-1].ID
			if err := b.store.SetCursor(ctx, CursorSyncAll, after); err != nil {
				return run.committed + run.marked, fmt.Errorf("stripe sync all: save cursor: %w", err)
			}
		}
		b.reconcileProgress(run, true, time.Time{})
		if run.pages%reconcileLogEvery == 0 {
			b.log.InfoContext(ctx, "stripe: reconcile progress", "pages", run.pages, "subscriptions", run.subs,
				"committed", run.committed, "marked_dirty", run.marked, "elapsed", b.now().Sub(run.started).Round(time.Second))
		}
		if !more || len(page) == 0 {
			break
		}
	}
	if err := b.store.SetCursor(ctx, CursorSyncAll, ""); err != nil {
		return run.committed + run.marked, fmt.Errorf("stripe sync all: clear cursor: %w", err)
	}
	done := b.now()
	b.reconcileProgress(run, false, done)
	b.log.InfoContext(ctx, "stripe: reconcile done", "pages", run.pages, "subscriptions", run.subs,
		"committed", run.committed, "marked_dirty", run.marked, "took", done.Sub(run.started).Round(time.Second))
	return run.committed + run.marked, nil
}

func (b *Billing) reconcileProgress(run *reconcileRun, running bool, completed time.Time) {
	if o, ok := b.obs.(ReconcileObserver); ok {
		o.ReconcileProgress(run.pages, run.subs, run.committed, run.marked, running, completed)
	}
}

// reconcilePage handles one page of the listing, customer by customer in
// the order they first appear.
func (b *Billing) reconcilePage(ctx context.Context, sw *sweep, page []*stripe.Subscription, mine map[string]bool, run *reconcileRun) error {
	now := b.now()
	groups := map[string]*sweepGroup{}
	var order []string
	for _, s := range page {
		if s.Customer == nil || s.Customer.ID == "" {
			continue
		}
		g := groups[s.Customer.ID]
		if g == nil {
			g = &sweepGroup{info: infoOf(s.Customer)}
			groups[s.Customer.ID] = g
			order = append(order, s.Customer.ID)
		}
		g.subs = append(g.subs, b.subscription(s, s.Customer.ID, now))
	}
	for _, id := range order {
		committed, marked, err := b.reconcileCustomer(ctx, sw, groups[id], mine)
		if err != nil {
			return err
		}
		if committed && !mine[id] {
			run.committed++
			if len(mine) < reconcileMineMax {
				mine[id] = true
			}
		}
		if marked {
			run.marked++
		}
	}
	return nil
}

// reconcileCustomer commits, marks or leaves one customer of a page
// (SyncAll), under its lock.
func (b *Billing) reconcileCustomer(ctx context.Context, sw *sweep, g *sweepGroup, mine map[string]bool) (committed, marked bool, err error) {
	id := g.info.ID
	unlock, err := b.locks.lock(ctx, customerKey(id))
	if err != nil {
		return false, false, err
	}
	defer unlock()
	if b.isFresh(sw, id) {
		return false, false, nil
	}
	st, known, err := b.store.StoredCustomer(ctx, id)
	if err != nil {
		return false, false, err
	}
	subs := g.subs
	switch {
	case mine[id]:
		// Committed from an earlier page of this run: the listing's
		// subscriptions together make the customer whole.
		subs = unionSubscriptions(st.Subscriptions, g.subs)
	case !known || len(st.Subscriptions) == 0 && !st.Deleted:
		// Nothing stored that the listing could take away.
	case drifted(st, g):
		if err := b.store.MarkDirty(ctx, id, ""); err != nil {
			return false, false, err
		}
		b.kickDirty()
		return false, true, nil
	default:
		return false, false, nil
	}
	start, err := b.syncStart(ctx)
	if err != nil {
		return false, false, err
	}
	if _, _, err := b.commitLocked(ctx, g.info, subs, "", start); err != nil {
		return false, false, err
	}
	// The run's own commit is not another path's (markFresh marked it).
	b.sweepMu.Lock()
	delete(sw.fresh, id)
	b.sweepMu.Unlock()
	return true, false, nil
}

// unionSubscriptions is stored with fresh added, fresh's version winning
// for a subscription in both.
func unionSubscriptions(stored, fresh []proxy.Subscription) []proxy.Subscription {
	out := slices.Clone(fresh)
	for _, s := range stored {
		if !slices.ContainsFunc(fresh, func(f proxy.Subscription) bool { return f.ID == s.ID }) {
			out = append(out, s)
		}
	}
	return out
}

// drifted reports whether the listing says something the store does not:
// a subscription it lacks or holds otherwise, a deletion, or a subject in
// the metadata of a customer linked to nobody.
func drifted(st proxy.CustomerState, g *sweepGroup) bool {
	if st.Deleted != g.info.Deleted {
		return true
	}
	if st.Subject == (proxy.Subject{}) {
		if _, ok := subjectFromMetadata(g.info.Metadata); ok {
			return true
		}
	}
	for _, s := range g.subs {
		i := slices.IndexFunc(st.Subscriptions, func(x proxy.Subscription) bool { return x.ID == s.ID })
		if i < 0 || !sameSubscription(st.Subscriptions[i], s) {
			return true
		}
	}
	return false
}

// sameSubscription compares what Stripe says of a subscription (not what
// tollgate adds: sync times, PastDueSince, comps).
func sameSubscription(a, b proxy.Subscription) bool {
	return a.Status == b.Status && a.Plan == b.Plan && slices.Equal(a.PriceIDs, b.PriceIDs) &&
		a.CurrentPeriodEnd.Equal(b.CurrentPeriodEnd) && a.TrialEnd.Equal(b.TrialEnd) &&
		a.CancelAtPeriodEnd == b.CancelAtPeriodEnd && a.PausedCollection == b.PausedCollection &&
		a.CollectionResumesAt.Equal(b.CollectionResumesAt) && a.Amount == b.Amount && a.Currency == b.Currency &&
		a.Interval == b.Interval && a.IntervalCount == b.IntervalCount && a.EndedAt.Equal(b.EndedAt) &&
		a.Created.Equal(b.Created) && a.CustomerID == b.CustomerID && a.BillingCycleAnchor.Equal(b.BillingCycleAnchor)
}

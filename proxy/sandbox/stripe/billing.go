package stripesandbox

import (
	"fmt"
	"slices"
	"time"
)

// The test clock and the billing engine it drives.

// retryAfter is when a failed invoice is retried, counted from the first
// failure: three retries, after 1, 3 and 7 days. A past_due subscription
// whose third retry fails becomes unpaid.
func retryAfter(retry int) time.Duration {
	switch retry {
	case 1:
		return 24 * time.Hour
	case 2:
		return 3 * 24 * time.Hour
	default:
		return 7 * 24 * time.Hour
	}
}

// BillingNow is the test clock's time: the wall clock plus every Advance.
func (s *Stripe) BillingNow() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.billingNowLocked()
}

func (s *Stripe) billingNowLocked() time.Time { return s.now().Add(s.offset) }

// Advance moves the test clock forward by d and runs the billing that
// falls due, in time order: trials end, subscriptions renew, failed
// invoices are retried, cancellations at period end take effect and open
// Checkout Sessions expire, each with the events Stripe would send.
// Subscriptions are never billed for the time they were not due, and a
// negative d is ignored.
//
// The rules, simplified from Stripe's defaults: a trial ends into active
// (or past_due when the customer's payments fail, see FailNextPayments);
// a renewal starts the next period and pays its invoice (or goes past_due);
// a failed invoice is retried 1, 3 and 7 days after the first failure, and
// when the third retry fails the subscription becomes unpaid, where it
// stays until its payment method is updated in the portal; a subscription
// set to cancel at period end is canceled when its period (or trial) ends.
func (s *Stripe) Advance(d time.Duration) {
	if d < 0 {
		s.log.Warn("sandbox stripe: the test clock cannot go back", "by", d)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
	s.log.Info("sandbox stripe: test clock advanced", "by", d, "billing_now", s.billingNowLocked())
	s.runDueLocked()
}

// FailNextPayments makes the customer's renewals (and retries) fail while
// fail is true, so its subscriptions go past_due with invoice.payment_failed.
func (s *Stripe) FailNextPayments(customerID string, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fail {
		s.failing[customerID] = true
	} else {
		delete(s.failing, customerID)
	}
}

// SetSubscriptionStatus forces a subscription's status, as if Stripe had
// moved it there, and sends customer.subscription.updated; forcing
// "canceled" ends it and sends customer.subscription.deleted instead, as
// Stripe does. Unknown subscriptions and statuses are logged and ignored.
func (s *Stripe) SetSubscriptionStatus(subID, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs[subID]
	if sub == nil {
		s.log.Warn("sandbox stripe: SetSubscriptionStatus: no such subscription", "subscription", subID)
		return
	}
	if !validStatus(status) {
		s.log.Warn("sandbox stripe: SetSubscriptionStatus: unknown status", "status", status)
		return
	}
	now := s.billingNowLocked()
	if status == "canceled" {
		s.cancelNowLocked(sub, now, "cancellation_requested")
		return
	}
	prev := map[string]any{"status": sub.status}
	sub.status = status
	if status == "past_due" && sub.pastDueSince.IsZero() {
		sub.pastDueSince, sub.retries = now, 0
		sub.nextRetry = now.Add(retryAfter(1))
	}
	if status != "past_due" {
		sub.pastDueSince, sub.retries, sub.nextRetry = time.Time{}, 0, time.Time{}
	}
	if status == "trialing" && !sub.trialEnd.After(now) {
		// A forced trial ends with the current period.
		sub.trialStart, sub.trialEnd = sub.periodStart, sub.periodEnd
	}
	s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
}

func validStatus(st string) bool {
	switch st {
	case "active", "canceled", "incomplete", "incomplete_expired", "past_due", "paused", "trialing", "unpaid":
		return true
	}
	return false
}

// runDueLocked runs the billing that is due at the billing clock's time:
// the earliest due subscription first, at the time it was due.
func (s *Stripe) runDueLocked() {
	now := s.billingNowLocked()
	for step := 0; ; step++ {
		if step == maxDueSteps {
			s.log.Error("sandbox stripe: billing loop stopped; too much was due at once", "steps", step)
			break
		}
		var next *subscription
		var at time.Time
		for _, sub := range s.subs {
			t, ok := sub.dueAt()
			if !ok || t.After(now) {
				continue
			}
			if next == nil || t.Before(at) || (t.Equal(at) && sub.seq < next.seq) {
				next, at = sub, t
			}
		}
		if next == nil {
			break
		}
		s.billLocked(next, at)
	}
	var expired []*checkoutSession
	for _, cs := range s.sessions {
		if cs.status == "open" && !cs.expiresAt.After(now) {
			expired = append(expired, cs)
		}
	}
	slices.SortFunc(expired, func(a, b *checkoutSession) int { return a.expiresAt.Compare(b.expiresAt) })
	for _, cs := range expired {
		cs.status = "expired"
		s.emitLocked("checkout.session.expired", func() any { return s.checkoutJSON(cs, nil) }, nil)
	}
}

// billLocked does the work due for sub at time at.
func (s *Stripe) billLocked(sub *subscription, at time.Time) {
	// Paused collection resumes by itself at resumes_at.
	if sub.pauseBehavior != "" && !sub.pauseResumes.IsZero() && !at.Before(sub.pauseResumes) {
		prev := map[string]any{"pause_collection": pauseJSON(sub)}
		sub.pauseBehavior, sub.pauseResumes = "", time.Time{}
		s.log.Info("sandbox stripe: payment collection resumed", "subscription", sub.id)
		s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
		return
	}
	// Cancellation at period end: a trial's end is its period's end.
	if sub.cancelAtPeriodEnd && !at.Before(sub.periodEnd) {
		s.cancelNowLocked(sub, sub.periodEnd, "cancellation_requested")
		return
	}
	fail := s.failing[sub.customer]
	switch sub.status {
	case "trialing", "active":
		prev := map[string]any{
			"current_period_start": sub.periodStart.Unix(),
			"current_period_end":   sub.periodEnd.Unix(),
			"latest_invoice":       sub.latestInvoice,
		}
		if sub.status == "trialing" {
			prev["status"] = "trialing"
		}
		sub.periodStart = sub.periodEnd
		sub.periods++
		sub.periodEnd = addInterval(sub.anchor, sub.interval(), sub.periods+1)
		inv := s.newInvoiceLocked(sub, "subscription_cycle", sub.periodStart, nil, true)
		if sub.pauseBehavior != "" {
			// Collection paused: the period starts and its invoice is
			// made but not collected; the status stays as it is
			// (docs.stripe.com/billing/subscriptions/pause-payment).
			sub.status = "active"
			inv.state = map[string]string{"keep_as_draft": "draft", "mark_uncollectible": "uncollectible", "void": "void"}[sub.pauseBehavior]
			s.log.Info("sandbox stripe: renewed without collecting", "subscription", sub.id, "invoice", inv.state)
			s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
			s.emitLocked("invoice.created", func() any { return s.invoiceJSON(inv) }, nil)
			switch inv.state {
			case "uncollectible":
				s.emitLocked("invoice.marked_uncollectible", func() any { return s.invoiceJSON(inv) }, nil)
			case "void":
				s.emitLocked("invoice.voided", func() any { return s.invoiceJSON(inv) }, nil)
			}
			return
		}
		if fail {
			inv.attempts = 1
			sub.status = "past_due"
			sub.pastDueSince, sub.retries = at, 0
			sub.nextRetry = at.Add(retryAfter(1))
			inv.nextAttempt = sub.nextRetry
			s.log.Info("sandbox stripe: renewal failed", "subscription", sub.id, "customer", sub.customer)
			s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
			s.emitLocked("invoice.payment_failed", func() any { return s.invoiceJSON(inv) }, nil)
			return
		}
		s.payInvoiceLocked(inv, at)
		sub.status = "active"
		s.log.Info("sandbox stripe: renewed", "subscription", sub.id, "customer", sub.customer, "period_end", sub.periodEnd)
		s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
		s.emitLocked("invoice.paid", func() any { return s.invoiceJSON(inv) }, nil)
	case "past_due":
		inv := s.invoices[sub.latestInvoice]
		if inv == nil || inv.paid {
			// Forced into past_due with nothing to pay: recover.
			sub.status, sub.pastDueSince, sub.retries, sub.nextRetry = "active", time.Time{}, 0, time.Time{}
			s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, map[string]any{"status": "past_due"})
			return
		}
		inv.attempts++
		sub.retries++
		if !fail {
			s.recoverLocked(sub, inv, at)
			return
		}
		if sub.retries >= 3 {
			inv.nextAttempt = time.Time{}
			sub.status, sub.nextRetry = "unpaid", time.Time{}
			s.log.Info("sandbox stripe: retries exhausted; unpaid", "subscription", sub.id)
			s.emitLocked("invoice.payment_failed", func() any { return s.invoiceJSON(inv) }, nil)
			s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, map[string]any{"status": "past_due"})
			return
		}
		sub.nextRetry = sub.pastDueSince.Add(retryAfter(sub.retries + 1))
		inv.nextAttempt = sub.nextRetry
		s.emitLocked("invoice.payment_failed", func() any { return s.invoiceJSON(inv) }, nil)
	}
}

// recoverLocked pays a past_due or unpaid subscription's open invoice at
// time at, making it active again (a new period starts when the old one is
// over).
func (s *Stripe) recoverLocked(sub *subscription, inv *invoice, at time.Time) {
	prev := map[string]any{"status": sub.status}
	s.payInvoiceLocked(inv, at)
	sub.status = "active"
	sub.pastDueSince, sub.retries, sub.nextRetry = time.Time{}, 0, time.Time{}
	if !sub.periodEnd.After(at) {
		prev["current_period_start"] = sub.periodStart.Unix()
		prev["current_period_end"] = sub.periodEnd.Unix()
		sub.anchor, sub.periods = at, 0
		sub.periodStart, sub.periodEnd = at, addInterval(at, sub.interval(), 1)
	}
	s.log.Info("sandbox stripe: invoice paid; active again", "subscription", sub.id, "invoice", inv.id)
	s.emitLocked("invoice.paid", func() any { return s.invoiceJSON(inv) }, nil)
	s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
}

// cancelNowLocked ends a subscription at time at and sends
// customer.subscription.deleted.
func (s *Stripe) cancelNowLocked(sub *subscription, at time.Time, reason string) {
	if sub.status == "canceled" {
		return
	}
	sub.status = "canceled"
	if sub.canceledAt.IsZero() {
		sub.canceledAt = at
	}
	sub.endedAt = at
	sub.cancelReason = reason
	sub.pastDueSince, sub.retries, sub.nextRetry = time.Time{}, 0, time.Time{}
	if inv := s.invoices[sub.latestInvoice]; inv != nil {
		inv.nextAttempt = time.Time{}
	}
	s.log.Info("sandbox stripe: subscription canceled", "subscription", sub.id, "customer", sub.customer, "reason", reason)
	s.emitLocked("customer.subscription.deleted", func() any { return s.subJSON(sub, nil) }, nil)
}

// newInvoiceLocked bills sub for the period starting at start (recurring
// items, zero-priced during a trial) plus extra one-time items.
func (s *Stripe) newInvoiceLocked(sub *subscription, reason string, at time.Time, extra []lineItem, charge bool) *invoice {
	cus := s.customers[sub.customer]
	inv := &invoice{
		id: newID("in_"), customer: sub.customer, subscription: sub.id, billingReason: reason,
		currency: sub.currency(), created: at, periodStart: sub.periodStart, periodEnd: sub.periodEnd,
		livemode: sub.livemode, subMetadata: metadataJSON(sub.metadata),
	}
	if cus != nil {
		cus.invoiceSeq++
		inv.number = fmt.Sprintf("%s-%04d", cus.invoicePrefix, cus.invoiceSeq)
	}
	for i := range sub.items {
		it := &sub.items[i]
		l := invoiceLine{
			id: newID("il_"), price: it.price, quantity: it.quantity, subItem: it.id,
			start: sub.periodStart, end: sub.periodEnd,
		}
		if m := s.meters[it.price.Meter]; m != nil {
			// Usage is billed in arrears: what the meter counted for the
			// customer since the item's last invoice.
			from := it.metered
			if from.IsZero() {
				from = it.created
			}
			l.quantity = int64(s.aggregateLocked(m, sub.customer, time.Time{}, at, from))
			l.amount = it.price.UnitAmount * l.quantity
			l.description = fmt.Sprintf("%d × %s (at %s / unit)", l.quantity, it.price.product.name,
				formatMoney(it.price.UnitAmount, it.price.Currency))
			it.metered = at
		} else if charge {
			l.amount = it.price.UnitAmount * it.quantity
			l.description = fmt.Sprintf("%d × %s (at %s / %s)", it.quantity, it.price.product.name,
				formatMoney(it.price.UnitAmount, it.price.Currency), it.price.Interval)
		} else {
			l.description = "Trial period for " + it.price.product.name
		}
		inv.lines = append(inv.lines, l)
	}
	for _, li := range extra {
		inv.lines = append(inv.lines, invoiceLine{
			id: newID("il_"), price: li.price, quantity: li.quantity, amount: li.price.UnitAmount * li.quantity,
			description: li.price.product.name, start: at, end: at,
		})
	}
	s.invoices[inv.id] = inv
	sub.latestInvoice = inv.id
	return inv
}

func (s *Stripe) payInvoiceLocked(inv *invoice, at time.Time) {
	if inv.attempts == 0 && inv.total() > 0 {
		inv.attempts = 1
	}
	inv.paid, inv.paidAt, inv.nextAttempt = true, at, time.Time{}
}

// addInterval is anchor plus n intervals, keeping the anchor's day of
// the month where the month is long enough (Jan 31 → Feb 28 → Mar 31).
func addInterval(anchor time.Time, interval string, n int) time.Time {
	switch interval {
	case "day":
		return anchor.AddDate(0, 0, n)
	case "week":
		return anchor.AddDate(0, 0, 7*n)
	case "year":
		n *= 12
	}
	y, m, d := anchor.Date()
	first := time.Date(y, m+time.Month(n), 1, anchor.Hour(), anchor.Minute(), anchor.Second(), anchor.Nanosecond(), anchor.Location())
	last := first.AddDate(0, 1, -1).Day()
	return first.AddDate(0, 0, min(d, last)-1)
}

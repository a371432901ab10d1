package proxy

// SubscriptionStatus is Stripe's subscription status, verbatim.
type SubscriptionStatus string

const (
	StatusActive            SubscriptionStatus = "active"
	StatusTrialing          SubscriptionStatus = "trialing"
	StatusPastDue           SubscriptionStatus = "past_due"
	StatusIncomplete        SubscriptionStatus = "incomplete"
	StatusIncompleteExpired SubscriptionStatus = "incomplete_expired"
	StatusUnpaid            SubscriptionStatus = "unpaid"
	StatusCanceled          SubscriptionStatus = "canceled"
	StatusPaused            SubscriptionStatus = "paused"
)

// Statuses lists every Stripe subscription status, the most telling first:
// a subscription that grants before one that may again, a past_due one
// (which explains a denial) before a long-canceled one. It is the one list
// of statuses (filters, pages) and the one order (Rank).
func Statuses() []SubscriptionStatus {
	return []SubscriptionStatus{StatusActive, StatusTrialing, StatusPastDue, StatusUnpaid, StatusIncomplete,
		StatusPaused, StatusIncompleteExpired, StatusCanceled}
}

// Rank orders statuses as Statuses does: the higher, the more the status
// tells; 0 for a status Stripe does not document (yet).
func (s SubscriptionStatus) Rank() int {
	all := Statuses()
	for i, st := range all {
		if st == s {
			return len(all) - i
		}
	}
	return 0
}

// Known reports whether s is one of Stripe's subscription statuses.
func (s SubscriptionStatus) Known() bool { return s.Rank() > 0 }

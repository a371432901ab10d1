package proxy

import "time"

// DirtyMark says a Stripe customer must be read again from Stripe: a
// webhook named it and its sync was deferred (a burst of events, or Stripe
// not answering). Many events for one customer fold into one mark, and so
// into one fetch.
type DirtyMark struct {
	CustomerID string
	// MarkedAt is when the oldest event the mark stands for arrived: what
	// the backlog's age is measured from.
	MarkedAt time.Time
	// Due is when the mark may be tried next (later after a failed sync).
	Due time.Time
	// Seq changes with every event folded into the mark: a sync clears
	// only the mark it read before it asked Stripe, so an event that
	// arrives during the fetch is not lost.
	Seq uint64
	// Attempts counts the syncs that failed since the customer was marked.
	Attempts int
}

// Backlog is the size of the deferred syncs: how many customers are marked
// and when the oldest mark was made (zero when none is).
type Backlog struct {
	Customers int
	Oldest    time.Time
}

// Age is how far behind the backlog is at now (0 when empty).
func (b Backlog) Age(now time.Time) time.Duration {
	if b.Customers == 0 || b.Oldest.IsZero() || now.Before(b.Oldest) {
		return 0
	}
	return now.Sub(b.Oldest)
}

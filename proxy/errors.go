package proxy

import (
	"errors"
	"time"
)

// The domain's errors, in one idiom: sentinel values made with errors.New,
// wrapped with %w by whoever adds context, tested with errors.Is; and error
// types where the caller needs data (errors.As). proxy/gateway maps them to
// HTTP answers in one place (respond.go and the billing pages).
var (
	// ErrNotFound is returned by stores for an unknown key.
	ErrNotFound = errors.New("not found")
	// ErrBadCursor is wrapped by a listing's error for a cursor it did not
	// hand out (or handed out for another filter or order).
	ErrBadCursor = errors.New("invalid listing cursor")
	// ErrRateLimited: an outside service's budget (Clerk's Backend API) is
	// spent for now.
	ErrRateLimited = errors.New("backend API rate limited")
	// ErrNotYours: a Checkout Session belongs to another subject.
	ErrNotYours = errors.New("checkout session belongs to someone else")
	// ErrNoCustomer: the subject has no Stripe customer yet.
	ErrNoCustomer = errors.New("no stripe customer for this subject")
	// ErrStripeUnavail: Stripe could not be asked now (network, 429, 5xx).
	ErrStripeUnavail = errors.New("stripe unavailable")
	// ErrBodyBudget: a request body could not be read because the bodies
	// being read at once on its endpoint hold too much (a webhook's:
	// docs/SECURITY.md, "Server limits"); not the sender's fault, try again later.
	ErrBodyBudget = errors.New("request bodies being read hold too many bytes; try again later")
)

// BusyError is Billing's answer when the share of the Stripe budget a
// request would draw on is spent for longer than it may wait: try again
// after RetryAfter. The billing pages answer it with 503 and Retry-After.
type BusyError struct {
	RetryAfter time.Duration
}

func (e *BusyError) Error() string {
	return "stripe budget spent; retry after " + e.RetryAfter.Round(time.Millisecond).String()
}

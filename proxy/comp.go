package proxy

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
	"time"
)

// Comp is a complimentary grant of a plan to a subject, made by an admin
// through the admin API (README "Operating tollgate"), until ExpiresAt. A
// revoked comp is kept for the record and grants nothing.
type Comp struct {
	ID           string
	Subject      Subject
	Plan         string // config key of the plan
	ExpiresAt    time.Time
	By, Reason   string // who granted it, and why
	CreatedAt    time.Time
	Revoked      bool
	RevokedAt    time.Time
	RevokedBy    string
	RevokeReason string
}

// Active reports whether the comp grants its plan at now: it is neither
// revoked nor expired.
func (c *Comp) Active(now time.Time) bool { return !c.Revoked && now.Before(c.ExpiresAt) }

// Subscription is the comp as the decision sees it: an active
// subscription to its plan that ends at the comp's expiry (Grants ends it
// there, to the instant).
func (c *Comp) Subscription() Subscription {
	return Subscription{ID: c.ID, Plan: c.Plan, Status: StatusActive, CurrentPeriodEnd: c.ExpiresAt, Comp: true}
}

// NewCompID returns a fresh random comp ID ("comp_" and 26 base32 letters).
func NewCompID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return "comp_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// All returns what the decision looks at: the Stripe subscriptions, then
// the comps active at now as comp subscriptions (Comp.Subscription). It
// returns e.Subscriptions itself when no comp is active, so the common
// case copies nothing; the caller must not change the slice.
func (e *Entitlements) All(now time.Time) []Subscription {
	if e == nil {
		return nil
	}
	n := 0
	for i := range e.Comps {
		if e.Comps[i].Active(now) {
			n++
		}
	}
	if n == 0 {
		return e.Subscriptions
	}
	out := make([]Subscription, 0, len(e.Subscriptions)+n)
	out = append(out, e.Subscriptions...)
	for i := range e.Comps {
		if e.Comps[i].Active(now) {
			out = append(out, e.Comps[i].Subscription())
		}
	}
	return out
}

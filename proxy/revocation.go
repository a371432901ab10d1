package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// RevocationKind says what a Revocation ends.
type RevocationKind string

// The kinds of revocation, one per Clerk event that ends access tollgate
// granted before it (README "Sessions").
const (
	// RevocationSession: one Clerk session ended (ID is the session ID);
	// its gateway session ends with it.
	RevocationSession RevocationKind = "session"
	// RevocationUser: a user was deleted (UserID); every gateway session
	// issued to them up to At ends.
	RevocationUser RevocationKind = "user"
	// RevocationMembership: a user's membership of an organisation changed
	// (OrgID, UserID): Role is the new role, with the org: prefix, or ""
	// when the membership was deleted. Identities issued up to At carry
	// the old one.
	RevocationMembership RevocationKind = "membership"
	// RevocationOrg: an organisation was deleted (OrgID); identities
	// issued up to At lose it.
	RevocationOrg RevocationKind = "org"
)

// Revocation is one such event, kept until Expires: by then every session
// cookie and Clerk token it ends has expired on its own, so it no longer
// changes any answer.
type Revocation struct {
	Kind                    RevocationKind
	ID, UserID, OrgID, Role string
	At                      time.Time // when Clerk ended it
	Expires                 time.Time // when it stops mattering
	// Happened is Clerk's time of a membership change (RevocationMembership):
	// it orders the changes of one membership on every replica and after
	// a restart, as the webhook ordered them. At, the change's cutoff, is
	// when it was applied, so a change delivered late would outrank a
	// later one delivered before it was. Zero: not known (a record kept
	// before it was).
	Happened time.Time
}

// ErrInvalidRevocation is wrapped by Revocation.Valid's errors.
var ErrInvalidRevocation = errors.New("invalid revocation")

// Valid reports what is missing from r for its kind, wrapping
// ErrInvalidRevocation; nil when nothing is.
func (r *Revocation) Valid() error {
	var missing string
	switch {
	case r.Kind == RevocationSession && r.ID == "":
		missing = "a session ID"
	case r.Kind == RevocationUser && r.UserID == "":
		missing = "a user ID"
	case r.Kind == RevocationMembership && (r.OrgID == "" || r.UserID == ""):
		missing = "an organisation ID and a user ID"
	case r.Kind == RevocationOrg && r.OrgID == "":
		missing = "an organisation ID"
	case r.Kind != RevocationSession && r.Kind != RevocationUser && r.Kind != RevocationMembership && r.Kind != RevocationOrg:
		return fmt.Errorf("%w: unknown kind %q", ErrInvalidRevocation, r.Kind)
	case r.At.IsZero():
		missing = "a time"
	case !r.Expires.After(r.At):
		missing = "an expiry after its time"
	}
	if missing != "" {
		return fmt.Errorf("%w: %s revocation without %s", ErrInvalidRevocation, r.Kind, missing)
	}
	return nil
}

// Expired reports whether r no longer matters at now.
func (r *Revocation) Expired(now time.Time) bool { return !now.Before(r.Expires) }

// RevocationStore keeps revocations across restarts (and, on a shared
// store, across replicas) until they expire, so a gateway that starts
// after Clerk's webhook still refuses what it ended.
type RevocationStore interface {
	// AddRevocation records r (valid: Revocation.Valid).
	AddRevocation(ctx context.Context, r Revocation) error
	// Revocations returns those not expired at now, in order of expiry,
	// then of addition (proxy/storetest); the expired ones may be pruned
	// meanwhile.
	Revocations(ctx context.Context, now time.Time) ([]Revocation, error)
}

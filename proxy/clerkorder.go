package proxy

import (
	"context"
	"fmt"
	"time"
)

// Clerk's webhooks are applied from their body (docs/SECURITY.md, "Trust
// boundaries"), and Svix neither orders deliveries nor stops an operator
// resending an old message days later. So every Clerk object a webhook
// writes (a user, an organisation, a membership) keeps the latest Clerk
// time applied to it, and a message is applied only if it is not older.
// The times are Clerk's own: the object's updated_at (Unix milliseconds,
// clerk-sdk-go v2's User, Organization and OrganizationMembership types)
// for created and updated messages, and for a deletion the later of that
// and the event envelope's timestamp (a deleted user or organisation is a
// DeletedObject, which carries no updated_at: Clerk's webhooks overview,
// "the event's timestamp").

// ClerkVersion is what a store keeps of one Clerk object for ordering:
// the latest Clerk time applied, and whether that was a deletion (a
// tombstone). The zero value is an object never heard of.
type ClerkVersion struct {
	At      time.Time
	Deleted bool
}

// ClerkUserKey, ClerkOrgKey and ClerkMembershipKey name a Clerk object's
// ClerkVersion in a store.
func ClerkUserKey(userID string) string { return "user:" + userID }
func ClerkOrgKey(orgID string) string   { return "org:" + orgID }
func ClerkMembershipKey(orgID, userID string) string {
	return "membership:" + orgID + ":" + userID
}

// Admit decides whether a Clerk message about the object, made at at
// (Clerk's time) and a deletion or not, is applied, and returns the version
// the store keeps after it.
//
//   - A deletion always applies (it takes away: fail closed), and leaves a
//     tombstone at the later of its time and the version's.
//   - A creation or update applies if it is not older than the version
//     (equal: the same message again, which is idempotent), and not older
//     than or as old as a tombstone: Clerk never reuses a user's or an
//     organisation's ID, and a member who rejoins gets a membership
//     created after the deletion.
func (v ClerkVersion) Admit(at time.Time, deleted bool) (ClerkVersion, bool) {
	if deleted {
		return ClerkVersion{At: later(v.At, at), Deleted: true}, true
	}
	if at.Before(v.At) || v.Deleted && !at.After(v.At) {
		return v, false
	}
	return ClerkVersion{At: at}, true
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// ClerkOrderLock holds one Clerk message between its ordering (Admit) and
// its writes, so that an older message admitted just before a newer one
// cannot write after it. A store shared by several replicas backs it with
// a lock they all share (proxy/postgres); within one process it is this.
// The zero value is not usable: NewClerkOrderLock.
type ClerkOrderLock chan struct{}

// NewClerkOrderLock returns an unlocked ClerkOrderLock.
func NewClerkOrderLock() ClerkOrderLock { return make(ClerkOrderLock, 1) }

// Lock waits for the lock, or for ctx to end (then it returns ctx's error
// and holds nothing). unlock releases it; it must be called once.
func (l ClerkOrderLock) Lock(ctx context.Context) (unlock func(), err error) {
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the Clerk order lock: %w", ctx.Err())
	}
}

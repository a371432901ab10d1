package clerk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Each Clerk object's messages are ordered by Clerk's time (updated_at,
// else the envelope's timestamp), however late one is delivered or
// resent (red team: a membership demoted to org:member, then an older
// organizationMembership.updated naming org:admin delivered late made the
// member admin again, on every identity issued up to now).
func TestWebhook_OlderMessagesOfAnObjectAreIgnored(t *testing.T) {
	e := newWebhookEnv(t, func(c *WebhookConfig) { c.MaxAge = 31 * 24 * time.Hour })
	t1, t2, t3, t4 := e.now.Add(-3*time.Hour), e.now.Add(-2*time.Hour), e.now.Add(-time.Hour), e.now.Add(-time.Minute)
	membership := func(role string, updated time.Time) string {
		return fmt.Sprintf(`{"id":"orgmem_1","role":"%s","organization":{"id":"org_1"},"public_user_data":{"user_id":"user_1"},"updated_at":%d}`, role, updated.UnixMilli())
	}
	// Demoted at t2 (delivered first), promoted at t1 (delivered late).
	e.check(t, e.post("demote", eventAt("organizationMembership.updated", membership("org:member", t2), t2)), http.StatusOK,
		fmt.Sprintf("UpdateMembership org_1 user_1 org:member at=%d", t2.UnixMilli()), "PutMembership org_1 user_1 org:member")
	e.check(t, e.post("promote", eventAt("organizationMembership.updated", membership("org:admin", t1), t1)), http.StatusOK)
	// updated_at orders, not the envelope: a resend whose envelope is new
	// but whose object is old changes nothing either.
	e.check(t, e.post("promote2", eventAt("organizationMembership.updated", membership("org:admin", t1), e.now)), http.StatusOK)
	// The same message again (another ID, one Clerk time): idempotent.
	e.check(t, e.post("demote2", eventAt("organizationMembership.updated", membership("org:member", t2), t2)), http.StatusOK,
		fmt.Sprintf("UpdateMembership org_1 user_1 org:member at=%d", t2.UnixMilli()), "PutMembership org_1 user_1 org:member")
	// Deleted at t3: a tombstone. An older creation cannot bring it back.
	e.check(t, e.post("leave", eventAt("organizationMembership.deleted", membership("org:member", t2), t3)), http.StatusOK,
		fmt.Sprintf("RevokeMembership org_1 user_1 at=%d", t3.UnixMilli()), "DeleteMembership org_1 user_1")
	e.check(t, e.post("created", eventAt("organizationMembership.created", membership("org:admin", t1), t1)), http.StatusOK)
	// Rejoined after the deletion: applies.
	e.check(t, e.post("rejoin", eventAt("organizationMembership.created", membership("org:member", t4), t4)), http.StatusOK,
		"PutMembership org_1 user_1 org:member")

	// Users and organisations alike; a deletion always applies.
	user := func(updated time.Time) string {
		return fmt.Sprintf(`{"id":"user_1","updated_at":%d}`, updated.UnixMilli())
	}
	e.check(t, e.post("u2", eventAt("user.updated", user(t2), t2)), http.StatusOK, "PutUser user_1 email= keeps-orgs=true")
	e.check(t, e.post("u1", eventAt("user.updated", user(t1), t1)), http.StatusOK)
	e.check(t, e.post("udel", eventAt("user.deleted", `{"id":"user_1","object":"user","deleted":true}`, t3)), http.StatusOK,
		"RevokeUser user_1", "DeleteUser user_1")
	e.check(t, e.post("u3", eventAt("user.updated", user(t3), t3)), http.StatusOK)
	org := func(updated time.Time) string {
		return fmt.Sprintf(`{"id":"org_1","slug":"acme","name":"Acme","updated_at":%d}`, updated.UnixMilli())
	}
	e.check(t, e.post("o1", eventAt("organization.updated", org(t1), t1)), http.StatusOK, "PutOrg org_1 slug=acme name=Acme")
	e.check(t, e.post("odel", eventAt("organization.deleted", `{"id":"org_1","object":"organization","deleted":true}`, t2)), http.StatusOK,
		fmt.Sprintf("RevokeOrganization org_1 at=%d", t2.UnixMilli()), "DeleteOrg org_1")
	e.check(t, e.post("o0", eventAt("organization.created", org(t1), t1)), http.StatusOK)
}

// A Clerk time ahead of the receiver's clock by more than Svix's own
// tolerance (five minutes) counts as no later than that: a message whose
// updated_at is years ahead (a clock glitch, a corrupted field) would
// otherwise freeze its object, every real demotion after it ignored as
// older (red team: a promotion stamped ten years ahead kept org:admin
// through the demotion that followed).
func TestWebhook_AFutureClerkTimeDoesNotFreezeTheObject(t *testing.T) {
	e := newWebhookEnv(t, nil)
	membership := func(role string, updated time.Time) string {
		return fmt.Sprintf(`{"id":"orgmem_1","role":"%s","organization":{"id":"org_1"},"public_user_data":{"user_id":"user_1"},"updated_at":%d}`, role, updated.UnixMilli())
	}
	future := e.now.AddDate(10, 0, 0)
	e.check(t, e.post("promote", eventAt("organizationMembership.updated", membership("org:admin", future), e.now)), http.StatusOK,
		fmt.Sprintf("UpdateMembership org_1 user_1 org:admin at=%d", e.now.Add(clerkTimeAhead).UnixMilli()), "PutMembership org_1 user_1 org:admin")
	e.now = e.now.Add(10 * time.Minute)
	e.check(t, e.post("demote", eventAt("organizationMembership.updated", membership("org:member", e.now), e.now)), http.StatusOK,
		fmt.Sprintf("UpdateMembership org_1 user_1 org:member at=%d", e.now.UnixMilli()), "PutMembership org_1 user_1 org:member")
}

// orderRecorder is an OrderStore that records its lock, its orderings and
// its unlock among the webhook's other calls; lockErr makes the lock fail.
type orderRecorder struct {
	rec      *webhookRecorder
	versions map[string]proxy.ClerkVersion
	lockErr  error
}

func (o *orderRecorder) LockClerkOrder(context.Context) (func(), error) {
	if o.lockErr != nil {
		return nil, o.lockErr
	}
	_ = o.rec.record("lock")
	return func() { _ = o.rec.record("unlock") }, nil
}

func (o *orderRecorder) OrderClerk(_ context.Context, key string, at time.Time, deleted bool) (bool, error) {
	next, ok := o.versions[key].Admit(at, deleted)
	if ok {
		o.versions[key] = next
	}
	_ = o.rec.record("order %s applied=%t", key, ok)
	return ok, nil
}

// newOrderEnv is a webhook whose order store is an orderRecorder writing
// into the webhook's own record of calls.
func newOrderEnv(t *testing.T) (*webhookEnv, *orderRecorder) {
	order := &orderRecorder{versions: map[string]proxy.ClerkVersion{}}
	e := newWebhookEnv(t, func(c *WebhookConfig) { c.Order = order })
	order.rec = e.rec
	return e, order
}

// A message holds the order store's lock from its ordering to its last
// write: two replicas' messages about one object cannot interleave, an
// older one admitted just before a newer one writing after it (red team: a
// late promotion's write landed after its demotion's, and the member stayed
// admin). The lock is the store's, so that every replica shares it. Without
// the lock, a message changes nothing and Svix delivers it again.
func TestWebhook_OrderingAndWritesHoldTheOrderLock(t *testing.T) {
	e, order := newOrderEnv(t)
	membership := fmt.Sprintf(`{"id":"orgmem_1","role":"org:member","organization":{"id":"org_1"},"public_user_data":{"user_id":"user_1"},"updated_at":%d}`, e.now.UnixMilli())
	e.check(t, e.post("demote", eventAt("organizationMembership.updated", membership, e.now)), http.StatusOK,
		"lock",
		"order membership:org_1:user_1 applied=true",
		fmt.Sprintf("UpdateMembership org_1 user_1 org:member at=%d", e.now.UnixMilli()),
		"PutMembership org_1 user_1 org:member",
		"unlock")
	e.check(t, e.post("user", eventAt("user.updated", fmt.Sprintf(`{"id":"user_1","updated_at":%d}`, e.now.UnixMilli()), e.now)), http.StatusOK,
		"lock", "order user:user_1 applied=true", "PutUser user_1 email= keeps-orgs=true", "unlock")
	// An ignored (older) message unlocks too.
	old := e.now.Add(-time.Hour)
	e.check(t, e.post("old", eventAt("user.updated", fmt.Sprintf(`{"id":"user_1","updated_at":%d}`, old.UnixMilli()), old)), http.StatusOK,
		"lock", "order user:user_1 applied=false", "unlock")

	order.lockErr = errors.New("database unreachable")
	later := e.now.Add(time.Minute)
	e.check(t, e.post("org", eventAt("organization.updated", fmt.Sprintf(`{"id":"org_1","slug":"acme","name":"Acme","updated_at":%d}`, later.UnixMilli()), later)), http.StatusInternalServerError)
	// Delivered again once the lock is back: applied, not skipped as seen.
	order.lockErr = nil
	e.check(t, e.post("org", eventAt("organization.updated", fmt.Sprintf(`{"id":"org_1","slug":"acme","name":"Acme","updated_at":%d}`, later.UnixMilli()), later)), http.StatusOK,
		"lock", "order org:org_1 applied=true", "PutOrg org_1 slug=acme name=Acme", "unlock")
}

// A deletion changes identities at once, before the order lock, whatever
// the lock does: a user's, an organisation's and a membership's alike.
// While a replica frozen holding the lock keeps it (until the database's
// idle_in_transaction_session_timeout), every other replica's wait for it
// ends in a 500 and Svix's next retry is minutes away; a membership's
// deletion waited under the lock, and the removed member kept the
// organisation, and its admin rights, until then (red team: two replicas,
// one SIGSTOPped holding the lock). The store's writes still wait for the
// lock, so Svix delivers the message again.
func TestWebhook_DeletionsReachIdentitiesWithoutTheOrderLock(t *testing.T) {
	e, order := newOrderEnv(t)
	order.lockErr = errors.New("wait for the Clerk order lock: context deadline exceeded")
	at := e.now.UnixMilli()
	e.check(t, e.post("membership", eventAt("organizationMembership.deleted",
		`{"id":"orgmem_1","role":"org:admin","organization":{"id":"org_1"},"public_user_data":{"user_id":"user_1"}}`, e.now)),
		http.StatusInternalServerError, fmt.Sprintf("RevokeMembership org_1 user_1 at=%d", at))
	e.check(t, e.post("org", eventAt("organization.deleted", `{"id":"org_2","deleted":true}`, e.now)),
		http.StatusInternalServerError, fmt.Sprintf("RevokeOrganization org_2 at=%d", at))
	e.check(t, e.post("user", eventAt("user.deleted", `{"id":"user_2","deleted":true}`, e.now)),
		http.StatusInternalServerError, "RevokeUser user_2")

	// The lock back, Svix's retry writes the store (the identities again:
	// idempotent).
	order.lockErr = nil
	e.check(t, e.post("membership", eventAt("organizationMembership.deleted",
		`{"id":"orgmem_1","role":"org:admin","organization":{"id":"org_1"},"public_user_data":{"user_id":"user_1"}}`, e.now)),
		http.StatusOK, fmt.Sprintf("RevokeMembership org_1 user_1 at=%d", at), "lock",
		"order membership:org_1:user_1 applied=true", "DeleteMembership org_1 user_1", "unlock")
}

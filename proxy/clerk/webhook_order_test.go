package clerk

import (
	"fmt"
	"net/http"
	"testing"
	"time"
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

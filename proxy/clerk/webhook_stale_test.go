package clerk

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// eventAt is event with Clerk's time of it set to at.
func eventAt(typ, data string, at time.Time) string {
	return `{"data":` + data + `,"object":"event","type":"` + typ + `","timestamp":` + strconv.FormatInt(at.UnixMilli(), 10) + `}`
}

// Svix message IDs are remembered for MaxAge (the store's 31 days), and a
// message Svix signs anew after that (an operator's resend) would be new
// again. One that gives or restores (a role, a membership, an
// organisation, a user) is stale by then: applied, its role would reach
// every identity issued up to now, the later change that undid it long
// forgotten. So it is acknowledged and ignored; one that takes away still
// applies (it fails closed).
func TestWebhook_StaleGrantPastMaxAgeIgnored(t *testing.T) {
	e := newWebhookEnv(t, func(c *WebhookConfig) { c.MaxAge = 31 * 24 * time.Hour })
	membership := `{"id":"orgmem_1","role":"%s","organization":{"id":"org_1"},"public_user_data":{"user_id":"user_1"}}`
	old := e.now.Add(-32 * 24 * time.Hour)
	recent := e.now.Add(-30 * 24 * time.Hour)
	for i, typ := range []string{"organizationMembership.updated", "organizationMembership.created"} {
		e.check(t, e.post(fmt.Sprintf("old_%d", i), eventAt(typ, fmt.Sprintf(membership, "org:admin"), old)), http.StatusOK)
	}
	e.check(t, e.post("old_org", eventAt("organization.created", `{"id":"org_1","slug":"acme","name":"Acme"}`, old)), http.StatusOK)
	e.check(t, e.post("old_user", eventAt("user.updated", `{"id":"user_1"}`, old)), http.StatusOK)
	// Ignored, and marked: a retry is a duplicate.
	e.check(t, e.post("old_0", eventAt("organizationMembership.updated", fmt.Sprintf(membership, "org:admin"), old)), http.StatusOK)

	e.check(t, e.post("recent", eventAt("organizationMembership.updated", fmt.Sprintf(membership, "org:admin"), recent)), http.StatusOK,
		fmt.Sprintf("UpdateMembership org_1 user_1 org:admin at=%d", recent.UnixMilli()), "PutMembership org_1 user_1 org:admin")
	e.check(t, e.post("old_del", eventAt("organizationMembership.deleted", fmt.Sprintf(membership, "org:admin"), old)), http.StatusOK,
		fmt.Sprintf("RevokeMembership org_1 user_1 at=%d", old.UnixMilli()), "DeleteMembership org_1 user_1")
	e.check(t, e.post("old_sess", eventAt("session.revoked", `{"id":"sess_1"}`, old)), http.StatusOK, "RevokeSession sess_1")
	// Without Clerk's time, or without MaxAge, it applies.
	e.check(t, e.post("no_time", `{"type":"user.updated","data":{"id":"user_1"}}`), http.StatusOK, "PutUser user_1 email= keeps-orgs=true")
	e = newWebhookEnv(t, nil)
	e.check(t, e.post("old_user", eventAt("user.updated", `{"id":"user_1"}`, old)), http.StatusOK, "PutUser user_1 email= keeps-orgs=true")
}

package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tollgate/tollgate/proxy"
)

// orgChanges are the organisation membership changes Clerk's webhooks
// reported (README "Sessions"). A Clerk token keeps its organisation claims
// for its minute, and the gateway cookie keeps them until the session check
// (or longer: that check does not name the role), so the changes apply at
// once to every identity issued before them: a deleted membership or
// organisation takes the organisation out, an updated role replaces the
// role. Identities issued later carry Clerk's own answer and are left alone.
type orgChanges struct {
	any     atomic.Bool                        // set by the first change: until then the request path looks nothing up
	mu      sync.Mutex                         // serialises the read-modify-write of members
	members *lru.Cache[string, []memberChange] // by user ID, one entry per organisation
	deleted *lru.Cache[string, time.Time]      // deleted organisations
}

type memberChange struct {
	orgID   string
	role    string // the new role, with the org: prefix; "" when removed
	removed bool
	at      time.Time // identities issued up to this moment are changed (changeTime)
	// happened is when Clerk made the change: it orders the changes of one
	// membership, so an older event delivered late (Svix retries for
	// hours) never overrides a newer one. Stored changes carry it
	// (proxy.Revocation.Happened); zero for one stored before they did.
	happened time.Time
}

func newOrgChanges() *orgChanges {
	members, _ := lru.New[string, []memberChange](100000)
	deleted, _ := lru.New[string, time.Time](10000)
	return &orgChanges{members: members, deleted: deleted}
}

// member records a change of userID's membership of orgID, unless a later
// change is already known. It reports whether it recorded ch.
//
// Changes are ordered by Clerk's time, whichever replica applied them and
// whether they came from the webhook, the change log or the store at a
// start; a cutoff is when a change was applied, not when Clerk made it,
// and is never compared with Clerk's time (red team: a stored promotion's
// cutoff, its late delivery, outranked its demotion's earlier Clerk time,
// and every replica made a demoted member, even in tokens Clerk issued
// after the demotion, an admin). Only a change stored without Clerk's time
// (before records carried it) is ordered by cutoffs.
func (o *orgChanges) member(orgID, userID string, ch memberChange) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	old, _ := o.members.Get(userID)
	out := make([]memberChange, 0, len(old)+1) // copied: readers may hold the old slice
	for _, c := range old {
		if c.orgID != orgID {
			out = append(out, c)
			continue
		}
		if !c.happened.IsZero() && !ch.happened.IsZero() && c.happened.After(ch.happened) ||
			(c.happened.IsZero() || ch.happened.IsZero()) && c.at.After(ch.at) {
			return false // a later change of this membership is already known
		}
		if c.at.After(ch.at) {
			ch.at = c.at // identities the earlier change reached stay reached
		}
	}
	ch.orgID = orgID
	o.members.Add(userID, append(out, ch))
	o.any.Store(true)
	return true
}

func (o *orgChanges) deleteOrg(orgID string, at time.Time) {
	if prev, ok := o.deleted.Get(orgID); !ok || at.After(prev) {
		o.deleted.Add(orgID, at)
	}
	o.any.Store(true)
}

// apply brings id's organisation up to the changes recorded after it was
// issued. It reports whether it changed id.
func (o *orgChanges) apply(id *proxy.Identity) bool {
	if id == nil || id.OrgID == "" || !o.any.Load() {
		return false
	}
	if at, ok := o.deleted.Get(id.OrgID); ok && !id.IssuedAt.After(at) {
		id.OrgID, id.OrgSlug, id.OrgRole = "", "", ""
		return true
	}
	changes, _ := o.members.Get(id.UserID)
	for _, c := range changes {
		if c.orgID != id.OrgID || id.IssuedAt.After(c.at) {
			continue
		}
		if c.removed {
			id.OrgID, id.OrgSlug, id.OrgRole = "", "", ""
			return true
		}
		if id.OrgRole != c.role {
			id.OrgRole = c.role
			return true
		}
	}
	return false
}

// changeReach is how long after Clerk's time of a change an identity may
// still carry what the change undid: a Clerk token issued before it lives
// a minute, and a gateway cookie made from one is stamped by tollgate's
// clock; the rest is for the clocks' skew.
const changeReach = 5 * time.Minute

// changeTime is when a change counts from: the later of Clerk's own time
// for the event and now, so that neither clock's lag lets an identity
// issued before the change escape it; but no more than changeReach after
// Clerk's time (a message delivered or resent late must not reach
// identities issued since, which carry Clerk's later answer: red team, a
// late role change applied to every identity issued up to now), and no
// more than changeReach ahead of now, so a clock far off cannot hold back
// identities issued after it.
func (s *Server) changeTime(at time.Time) time.Time {
	now := s.now()
	switch {
	case at.IsZero():
		return now
	case now.After(at.Add(changeReach)):
		return at.Add(changeReach)
	case now.After(at):
		return now
	case at.After(now.Add(changeReach)):
		return now.Add(changeReach)
	}
	return at
}

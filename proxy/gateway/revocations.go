package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// What Clerk ended (a session, a user, a membership, an organisation)
// applies at once in memory, and is written to the store so that a
// restart does not forget it while a cookie or token it ends could still
// be presented: each record expires session.ttl after it was made, when
// every gateway cookie issued before it has expired on its own (docs/
// ARCHITECTURE.md, "State and reloads"). The memory comes first and cannot
// fail; an error means only the record was not kept, and Clerk's webhook
// then answers 500 so that Svix delivers the event again.

// RevokeSession ends tollgate's own session for a Clerk session at once
// (Clerk's session.ended/revoked/removed webhooks and sign-out call this).
func (s *Server) RevokeSession(ctx context.Context, sessionID string) error {
	if sessionID == "" {
		return nil // no session to end (an API key's identity has none)
	}
	now := s.now()
	s.gw.revoke(sessionID, now)
	s.tunnels.closeWhere(func(t *tunnel) bool { return t.id.SessionID == sessionID }, tunnelRevoked)
	return s.keep(ctx, proxy.Revocation{Kind: proxy.RevocationSession, ID: sessionID, At: now})
}

// RevokeUser ends every gateway session of a user issued up to now
// (Clerk's user.deleted webhook). Sessions issued later are unaffected.
func (s *Server) RevokeUser(ctx context.Context, userID string) error {
	now := s.now()
	s.forgetKeysOf(proxy.Subject{Kind: proxy.SubjectUser, ID: userID})
	s.gw.revokeUser(userID, now)
	s.tunnels.closeWhere(func(t *tunnel) bool { return t.id.UserID == userID && !t.id.IssuedAt.After(now) }, tunnelRevoked)
	return s.keep(ctx, proxy.Revocation{Kind: proxy.RevocationUser, UserID: userID, At: now})
}

// RevokeMembership takes organisation orgID out of every identity of
// userID issued up to at (organizationMembership.deleted).
func (s *Server) RevokeMembership(ctx context.Context, orgID, userID string, at time.Time) error {
	return s.changeMembership(ctx, orgID, userID, memberChange{removed: true}, at)
}

// UpdateMembership gives userID's identities issued up to at the role
// ("org:admin", …) in orgID (organizationMembership.updated).
func (s *Server) UpdateMembership(ctx context.Context, orgID, userID, role string, at time.Time) error {
	if role == "" {
		return nil // a role is what an update names; without one it changes nothing
	}
	return s.changeMembership(ctx, orgID, userID, memberChange{role: role}, at)
}

// changeMembership applies a membership change Clerk made at happened (zero:
// the event did not say; now), unless a later one is already known: an
// older event delivered late is dropped, and not kept either.
func (s *Server) changeMembership(ctx context.Context, orgID, userID string, ch memberChange, happened time.Time) error {
	ch.at = s.changeTime(happened)
	ch.happened = happened
	if happened.IsZero() {
		ch.happened = s.now()
	}
	if !s.gw.orgs.member(orgID, userID, ch) {
		return nil
	}
	s.tunnels.changed(proxy.Subject{Kind: proxy.SubjectUser, ID: userID})
	// Kept with its cutoff and Clerk's time: every replica, and this one
	// after a restart, orders it by Clerk's time as this one did.
	return s.keep(ctx, proxy.Revocation{Kind: proxy.RevocationMembership, OrgID: orgID, UserID: userID, Role: ch.role, At: ch.at, Happened: ch.happened})
}

// RevokeOrganization takes a deleted organisation out of every identity
// issued up to at (organization.deleted).
func (s *Server) RevokeOrganization(ctx context.Context, orgID string, at time.Time) error {
	s.forgetKeysOf(proxy.Subject{Kind: proxy.SubjectOrg, ID: orgID})
	at = s.changeTime(at)
	s.gw.orgs.deleteOrg(orgID, at)
	s.tunnels.changed(proxy.Subject{Kind: proxy.SubjectOrg, ID: orgID})
	return s.keep(ctx, proxy.Revocation{Kind: proxy.RevocationOrg, OrgID: orgID, At: at})
}

// keep writes r, to expire when every gateway cookie it can end has
// expired on its own (a Clerk token lives a minute, far less).
func (s *Server) keep(ctx context.Context, r proxy.Revocation) error {
	r.Expires = r.At.Add(max(s.cfg.Session.TTL, time.Minute))
	if err := s.gw.store.AddRevocation(ctx, r); err != nil {
		return fmt.Errorf("keep %s revocation: %w", r.Kind, err)
	}
	return nil
}

// LoadRevocations applies the store's unexpired revocations, once at
// start, before the first request: a gateway that restarts still refuses
// what Clerk ended. It returns how many it applied.
func (st *State) LoadRevocations(ctx context.Context, now time.Time) (int, error) {
	rs, err := st.sessions.store.Revocations(ctx, now)
	if err != nil {
		return 0, fmt.Errorf("load revocations: %w", err)
	}
	for _, r := range rs {
		st.sessions.apply(r)
	}
	return len(rs), nil
}

// ApplyRevocation applies a revocation another replica stored, which
// this one heard of through the store (the PostgreSQL store's change
// log): its memory half, as LoadRevocations applies each at start, and
// this replica's open tunnels it ends, closed or judged again as the
// replica that took the revocation closed its own (red team, issue 16:
// they waited for the minute's recheck).
func (st *State) ApplyRevocation(r proxy.Revocation) {
	st.sessions.apply(r)
	switch r.Kind {
	case proxy.RevocationSession:
		st.tunnels.closeWhere(func(t *tunnel) bool { return t.id.SessionID == r.ID }, tunnelRevoked)
	case proxy.RevocationUser:
		st.tunnels.closeWhere(func(t *tunnel) bool { return t.id.UserID == r.UserID && !t.id.IssuedAt.After(r.At) }, tunnelRevoked)
	case proxy.RevocationMembership:
		st.tunnels.changed(proxy.Subject{Kind: proxy.SubjectUser, ID: r.UserID})
	case proxy.RevocationOrg:
		st.tunnels.changed(proxy.Subject{Kind: proxy.SubjectOrg, ID: r.OrgID})
	}
}

// apply is the memory half of a stored revocation.
func (ss *sessionState) apply(r proxy.Revocation) {
	switch r.Kind {
	case proxy.RevocationSession:
		ss.revoked.Add(r.ID, r.At)
		ss.checks.Remove(r.ID)
	case proxy.RevocationUser:
		ss.revokeUser(r.UserID, r.At)
	case proxy.RevocationMembership:
		ss.orgs.member(r.OrgID, r.UserID, memberChange{role: r.Role, removed: r.Role == "", at: r.At, happened: r.Happened})
	case proxy.RevocationOrg:
		ss.orgs.deleteOrg(r.OrgID, r.At)
	}
}

// revokeUser keeps the latest time a user's sessions were ended.
func (ss *sessionState) revokeUser(userID string, at time.Time) {
	if prev, ok := ss.revokedUsers.Get(userID); !ok || at.After(prev) {
		ss.revokedUsers.Add(userID, at)
	}
}

// memoryOnly is the RevocationStore of a gateway without a store: nothing
// is kept, so a restart forgets what Clerk ended (StateOptions).
type memoryOnly struct{}

func (memoryOnly) AddRevocation(context.Context, proxy.Revocation) error { return nil }
func (memoryOnly) Revocations(context.Context, time.Time) ([]proxy.Revocation, error) {
	return nil, nil
}

// forgetKeysOf drops a subject's keys from the key cache, when it has one:
// Clerk's deletion revokes them in the store directly (with the user or the
// organisation), and a cached record must not outlive that by its second.
func (s *Server) forgetKeysOf(subject proxy.Subject) {
	if c, ok := s.apiKeys.(interface{ ForgetSubject(proxy.Subject) }); ok {
		c.ForgetSubject(subject)
	}
}

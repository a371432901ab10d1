package main

import (
	"sync"
	"time"

	"github.com/tollgate/tollgate/proxy/gateway"
)

// lateRevoker forwards the Clerk webhook's revocations to the gateway
// server now serving. It is wiring, not policy: the webhook handler is
// built before the first server exists, and Reload swaps servers, so
// newApp and Reload point it at each new one.
type lateRevoker struct {
	mu  sync.Mutex
	srv *gateway.Server
}

func (l *lateRevoker) set(s *gateway.Server) { l.mu.Lock(); l.srv = s; l.mu.Unlock() }

func (l *lateRevoker) RevokeSession(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		l.srv.RevokeSession(id)
	}
}

func (l *lateRevoker) RevokeUser(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		l.srv.RevokeUser(id)
	}
}

func (l *lateRevoker) RevokeMembership(orgID, userID string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		l.srv.RevokeMembership(orgID, userID, at)
	}
}

func (l *lateRevoker) UpdateMembership(orgID, userID, role string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		l.srv.UpdateMembership(orgID, userID, role, at)
	}
}

func (l *lateRevoker) RevokeOrganization(orgID string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		l.srv.RevokeOrganization(orgID, at)
	}
}

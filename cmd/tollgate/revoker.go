package main

import (
	"context"
	"errors"
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

// errNoServer answers an event that arrives before the first server is
// set: Clerk's webhook then answers 500 and Svix delivers it again.
var errNoServer = errors.New("the gateway is not serving yet")

func (l *lateRevoker) set(s *gateway.Server) { l.mu.Lock(); l.srv = s; l.mu.Unlock() }

func (l *lateRevoker) server() (*gateway.Server, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv == nil {
		return nil, errNoServer
	}
	return l.srv, nil
}

func (l *lateRevoker) RevokeSession(ctx context.Context, id string) error {
	s, err := l.server()
	if err != nil {
		return err
	}
	return s.RevokeSession(ctx, id)
}

func (l *lateRevoker) RevokeUser(ctx context.Context, id string) error {
	s, err := l.server()
	if err != nil {
		return err
	}
	return s.RevokeUser(ctx, id)
}

func (l *lateRevoker) RevokeMembership(ctx context.Context, orgID, userID string, at time.Time) error {
	s, err := l.server()
	if err != nil {
		return err
	}
	return s.RevokeMembership(ctx, orgID, userID, at)
}

func (l *lateRevoker) UpdateMembership(ctx context.Context, orgID, userID, role string, at time.Time) error {
	s, err := l.server()
	if err != nil {
		return err
	}
	return s.UpdateMembership(ctx, orgID, userID, role, at)
}

func (l *lateRevoker) RevokeOrganization(ctx context.Context, orgID string, at time.Time) error {
	s, err := l.server()
	if err != nil {
		return err
	}
	return s.RevokeOrganization(ctx, orgID, at)
}

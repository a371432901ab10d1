package main

import (
	"context"
	"errors"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
	"github.com/tollgate/tollgate/proxy/clerk"
)

// The adapters below answer the gateway's and the Clerk webhook's small
// interfaces from *bolt.Store.

// clerkUsers records Clerk's users in the store.
type clerkUsers struct{ store *bolt.Store }

func (c clerkUsers) PutUser(ctx context.Context, u clerk.ClerkUser) error {
	rec := proxy.User{ID: u.ID, Email: u.Email}
	// Memberships arrive in their own events: keep the ones already known.
	if old, err := c.store.User(ctx, u.ID); err == nil {
		rec.OrgIDs = old.OrgIDs
	} else if !errors.Is(err, proxy.ErrNotFound) {
		return err
	}
	return c.store.PutUser(ctx, rec)
}

// clerkOrgs keeps Clerk's organisations and memberships in the store, for
// the admin listing of organisation plans.
type clerkOrgs struct{ store *bolt.Store }

func (c clerkOrgs) PutOrg(ctx context.Context, o clerk.ClerkOrg) error {
	return c.store.PutOrg(ctx, proxy.Org{ID: o.ID, Slug: o.Slug, Name: o.Name})
}
func (c clerkOrgs) DeleteOrg(ctx context.Context, id string) error { return c.store.DeleteOrg(ctx, id) }
func (c clerkOrgs) PutMembership(ctx context.Context, orgID, userID, role string) error {
	return c.store.PutMembership(ctx, orgID, userID, role)
}
func (c clerkOrgs) DeleteMembership(ctx context.Context, orgID, userID string) error {
	return c.store.DeleteMembership(ctx, orgID, userID)
}

func (c clerkUsers) DeleteUser(ctx context.Context, id string) error {
	return c.store.DeleteUser(ctx, id)
}

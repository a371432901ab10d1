//go:build !schema1

package main

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
)

// writeExtras adds what later tollgates of schema 2 added to a store: API
// keys and the dirty marks of deferred webhook syncs.
func writeExtras(ctx context.Context, s *bolt.Store) error {
	for i, subject := range []proxy.Subject{{Kind: proxy.SubjectUser, ID: "user_ada"}, {Kind: proxy.SubjectOrg, ID: "org_acme"}} {
		_, k, err := proxy.NewAPIKey(false, now.Add(-time.Duration(i+1)*time.Hour))
		if err != nil {
			return err
		}
		k.Subject, k.Name, k.Scopes, k.CreatedBy = subject, "ci", []string{proxy.ScopeAll}, "admin:grace"
		if err := s.CreateAPIKey(ctx, k, 0); err != nil {
			return err
		}
	}
	for _, c := range []string{"cus_bob", "cus_ada", "cus_bob"} {
		if err := s.MarkDirty(ctx, c, "evt_dirty_"+c); err != nil {
			return err
		}
	}
	return nil
}

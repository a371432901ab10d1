// Package storetest holds conformance suites that every store runs from
// its own tests (bbolt today, PostgreSQL later), so that both answer the
// domain's interfaces alike.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate/proxy"
)

// APIKeys runs the proxy.APIKeyStore suite against stores made fresh by
// open.
func APIKeys(t *testing.T, open func(t *testing.T) proxy.APIKeyStore) {
	ctx := context.Background()
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	acme := proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"}
	mk := func(t *testing.T, sub proxy.Subject, name string, created time.Time) (string, proxy.APIKey) {
		t.Helper()
		key, rec, err := proxy.NewAPIKey(false, created)
		if err != nil {
			t.Fatal(err)
		}
		rec.Subject, rec.Name, rec.Scopes, rec.CreatedBy = sub, name, []string{"*"}, "user_ada"
		return key, rec
	}
	opts := cmpopts.EquateEmpty()

	t.Run("create and read by hash and ID", func(t *testing.T) {
		s := open(t)
		key, rec := mk(t, ada, "ci", at)
		rec.ExpiresAt = at.Add(24 * time.Hour)
		if err := s.CreateAPIKey(ctx, rec, 0); err != nil {
			t.Fatal(err)
		}
		byHash, err := s.APIKeyByHash(ctx, proxy.HashAPIKey(key))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(rec, byHash, opts); d != "" {
			t.Errorf("by hash (-want +got):\n%s", d)
		}
		byID, err := s.APIKeyByID(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(rec, byID, opts); d != "" {
			t.Errorf("by ID (-want +got):\n%s", d)
		}
		if err := s.CreateAPIKey(ctx, rec, 0); err == nil {
			t.Error("creating the same key twice succeeded")
		}
	})

	t.Run("unknown", func(t *testing.T) {
		s := open(t)
		if _, err := s.APIKeyByHash(ctx, proxy.HashAPIKey("tg_test_nope")); !errors.Is(err, proxy.ErrAPIKeyNotFound) {
			t.Errorf("by hash on an empty store: %v", err)
		}
		if _, err := s.APIKeyByID(ctx, "key_0000000000000000"); !errors.Is(err, proxy.ErrAPIKeyNotFound) {
			t.Errorf("by ID on an empty store: %v", err)
		}
		if _, err := s.RevokeAPIKey(ctx, "key_0000000000000000", at); !errors.Is(err, proxy.ErrAPIKeyNotFound) {
			t.Errorf("revoke on an empty store: %v", err)
		}
		if keys, err := s.APIKeysOf(ctx, ada); err != nil || len(keys) != 0 {
			t.Errorf("keys of ada on an empty store: %v, %v", keys, err)
		}
	})

	t.Run("list per subject, oldest first", func(t *testing.T) {
		s := open(t)
		_, k2 := mk(t, ada, "second", at.Add(time.Minute))
		_, k1 := mk(t, ada, "first", at)
		_, ko := mk(t, acme, "org", at)
		for _, k := range []proxy.APIKey{k2, k1, ko} {
			if err := s.CreateAPIKey(ctx, k, 0); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			sub  proxy.Subject
			want []proxy.APIKey
		}{
			{ada, []proxy.APIKey{k1, k2}},
			{acme, []proxy.APIKey{ko}},
			{proxy.Subject{Kind: proxy.SubjectUser, ID: "user_bob"}, nil},
		} {
			got, err := s.APIKeysOf(ctx, tc.sub)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, opts); d != "" {
				t.Errorf("keys of %s (-want +got):\n%s", tc.sub, d)
			}
		}
	})

	t.Run("revoke once", func(t *testing.T) {
		s := open(t)
		key, rec := mk(t, ada, "ci", at)
		if err := s.CreateAPIKey(ctx, rec, 0); err != nil {
			t.Fatal(err)
		}
		got, err := s.RevokeAPIKey(ctx, rec.ID, at.Add(time.Hour))
		if err != nil || !got.RevokedAt.Equal(at.Add(time.Hour)) {
			t.Fatalf("revoke: %+v, %v", got, err)
		}
		if _, err := s.RevokeAPIKey(ctx, rec.ID, at.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		k, err := s.APIKeyByHash(ctx, proxy.HashAPIKey(key))
		if err != nil {
			t.Fatal(err)
		}
		if !k.RevokedAt.Equal(at.Add(time.Hour)) || !errors.Is(k.Usable(at.Add(3*time.Hour)), proxy.ErrAPIKeyRevoked) {
			t.Errorf("after two revocations: revoked at %v", k.RevokedAt)
		}
	})

	t.Run("last used only moves forward", func(t *testing.T) {
		s := open(t)
		_, rec := mk(t, ada, "ci", at)
		if err := s.CreateAPIKey(ctx, rec, 0); err != nil {
			t.Fatal(err)
		}
		for _, batch := range []map[string]time.Time{
			{rec.ID: at.Add(2 * time.Minute), "key_0000000000000000": at},
			{rec.ID: at.Add(time.Minute)},
		} {
			if err := s.RecordAPIKeysUsed(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		k, err := s.APIKeyByID(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !k.LastUsedAt.Equal(at.Add(2 * time.Minute)) {
			t.Errorf("last used %v, want %v", k.LastUsedAt, at.Add(2*time.Minute))
		}
	})

	// The cap is counted in the creation's own transaction: of many
	// creations at once, exactly enough to reach it succeed, and a
	// revoked or expired key does not count.
	t.Run("cap on usable keys holds under concurrent creations", func(t *testing.T) {
		s := open(t)
		_, revoked := mk(t, ada, "revoked", at)
		_, expired := mk(t, ada, "expired", at)
		expired.ExpiresAt = at.Add(time.Minute)
		_, kept := mk(t, ada, "kept", at)
		for _, k := range []proxy.APIKey{revoked, expired, kept} {
			if err := s.CreateAPIKey(ctx, k, 0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.RevokeAPIKey(ctx, revoked.ID, at); err != nil {
			t.Fatal(err)
		}
		const limit, tries = 5, 20
		errs := make(chan error, tries)
		var wg sync.WaitGroup
		for i := range tries {
			_, k := mk(t, ada, fmt.Sprint("race ", i), at.Add(time.Hour))
			wg.Go(func() { errs <- s.CreateAPIKey(ctx, k, limit) })
		}
		wg.Wait()
		close(errs)
		created, refused := 0, 0
		for err := range errs {
			switch {
			case err == nil:
				created++
			case errors.Is(err, proxy.ErrTooManyAPIKeys):
				refused++
			default:
				t.Errorf("creation: %v", err)
			}
		}
		if created != limit-1 || refused != tries-(limit-1) {
			t.Errorf("%d created and %d refused; want %d and %d (one usable key existed)", created, refused, limit-1, tries-(limit-1))
		}
		if _, other := mk(t, acme, "other subject", at.Add(time.Hour)); s.CreateAPIKey(ctx, other, limit) != nil {
			t.Error("another subject's key was refused by ada's cap")
		}
	})
}

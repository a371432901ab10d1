package bolt

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

func TestKeyUseBatcher(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	_, rec, err := proxy.NewAPIKey(false, at)
	if err != nil {
		t.Fatal(err)
	}
	rec.Subject, rec.Scopes = proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}, []string{"*"}
	if err := s.CreateAPIKey(ctx, rec, 0); err != nil {
		t.Fatal(err)
	}
	b := proxy.NewTimeBatcher(s.RecordAPIKeysUsed, time.Hour, "api key last used", nil)
	b.KeyUsed(rec.ID, at.Add(time.Minute))
	b.KeyUsed(rec.ID, at.Add(30*time.Second))
	if k, _ := s.APIKeyByID(ctx, rec.ID); !k.LastUsedAt.IsZero() {
		t.Fatalf("written before the flush: %v", k.LastUsedAt)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.APIKeyByID(ctx, rec.ID); !k.LastUsedAt.Equal(at.Add(time.Minute)) {
		t.Errorf("last used %v, want %v", k.LastUsedAt, at.Add(time.Minute))
	}
}

// A user or organisation Clerk deleted keeps no working key: their
// revocation records expire after session.ttl, the keys' own revocation
// does not (red team #5).
func TestAPIKeys_DeletedSubjectsKeysAreRevoked(t *testing.T) {
	s, _, _ := newClockStore(t)
	ctx := t.Context()
	mk := func(sub proxy.Subject) string {
		_, rec, err := proxy.NewAPIKey(false, t0())
		if err != nil {
			t.Fatal(err)
		}
		rec.Subject, rec.Name, rec.Scopes, rec.CreatedBy = sub, "k", []string{"*"}, "test"
		if err := s.CreateAPIKey(ctx, rec, 0); err != nil {
			t.Fatal(err)
		}
		return rec.ID
	}
	user, org, other := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_a"}, proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_x"}, proxy.Subject{Kind: proxy.SubjectUser, ID: "user_b"}
	userKey, orgKey, otherKey := mk(user), mk(org), mk(other)
	if err := s.PutUser(ctx, proxy.User{ID: "user_a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "user_a"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteOrg(ctx, "org_x"); err != nil {
		t.Fatal(err)
	}
	for id, revoked := range map[string]bool{userKey: true, orgKey: true, otherKey: false} {
		k, err := s.APIKeyByID(ctx, id)
		if err != nil || k.RevokedAt.IsZero() == revoked {
			t.Errorf("key %s of %s: revoked at %v (%v), want revoked %v", id, k.Subject, k.RevokedAt, err, revoked)
		}
	}
}

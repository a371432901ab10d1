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

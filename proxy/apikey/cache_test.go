package apikey

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// cacheTestStore is one key's store that counts its reads by hash; block,
// when set, holds each read until it is closed.
type cacheTestStore struct {
	proxy.APIKeyStore // nil: only the methods below are called
	mu                sync.Mutex
	rec               proxy.APIKey
	reads             int
	reading           chan struct{} // a read started (when block is set)
	block             chan struct{}
}

func (s *cacheTestStore) APIKeyByHash(_ context.Context, h [32]byte) (proxy.APIKey, error) {
	s.mu.Lock()
	s.reads++
	rec, block := s.rec, s.block
	s.mu.Unlock()
	if block != nil {
		s.reading <- struct{}{}
		<-block
	}
	if h != rec.Hash {
		return proxy.APIKey{}, proxy.ErrAPIKeyNotFound
	}
	return rec, nil
}

func (s *cacheTestStore) RevokeAPIKey(_ context.Context, id string, at time.Time) (proxy.APIKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != s.rec.ID {
		return proxy.APIKey{}, proxy.ErrAPIKeyNotFound
	}
	s.rec.RevokedAt = at
	return s.rec, nil
}

func (s *cacheTestStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

func cachedFixture(t *testing.T) (*CachedStore, *cacheTestStore, *Authenticator, string, *time.Time) {
	t.Helper()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	key, rec, err := proxy.NewAPIKey(false, now)
	if err != nil {
		t.Fatal(err)
	}
	rec.Subject, rec.Scopes = proxy.Subject{Kind: proxy.SubjectUser, ID: "user_a"}, []string{"*"}
	store := &cacheTestStore{rec: rec}
	clock := func() time.Time { return now }
	cs, err := NewCachedStore(store, 10, DefaultCacheTTL, clock)
	if err != nil {
		t.Fatal(err)
	}
	return cs, store, New(Options{Store: cs, Now: clock}), key, &now
}

func authWith(a *Authenticator, key string) proxy.AuthResult {
	r := httptest.NewRequest("GET", "/api/v1/x", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	return a.Authenticate(context.Background(), r)
}

// A key's record is read once per TTL, not once per request; a key not
// found is never cached.
func TestCachedStore_ReadsOncePerTTL(t *testing.T) {
	cs, store, a, key, now := cachedFixture(t)
	for range 5 {
		if res := authWith(a, key); res.State != proxy.SignedIn {
			t.Fatalf("the key: %+v", res)
		}
	}
	if n := store.count(); n != 1 {
		t.Errorf("5 requests read the store %d times, want 1", n)
	}
	*now = now.Add(DefaultCacheTTL)
	authWith(a, key)
	if n := store.count(); n != 2 {
		t.Errorf("after the TTL: %d reads, want 2", n)
	}
	other, _, _ := proxy.NewAPIKey(false, *now)
	for range 3 {
		if _, err := cs.APIKeyByHash(context.Background(), proxy.HashAPIKey(other)); !errors.Is(err, proxy.ErrAPIKeyNotFound) {
			t.Fatalf("unknown key: %v", err)
		}
	}
	if n := store.count(); n != 5 {
		t.Errorf("an unknown key was cached: %d reads, want 5", n)
	}
}

// A revocation through the cached store applies on the next request, and
// expiry is judged at each request's time, not when the record was cached.
func TestCachedStore_RevocationAppliesOnTheNextRequest(t *testing.T) {
	cs, store, a, key, now := cachedFixture(t)
	if res := authWith(a, key); res.State != proxy.SignedIn {
		t.Fatalf("the key: %+v", res)
	}
	if _, err := cs.RevokeAPIKey(context.Background(), store.rec.ID, *now); err != nil {
		t.Fatal(err)
	}
	if res := authWith(a, key); !errors.Is(res.APIKeyErr, proxy.ErrAPIKeyRevoked) {
		t.Errorf("the request after the revocation: %+v, want revoked", res)
	}

	_, store, a, key, now = cachedFixture(t)
	store.rec.ExpiresAt = now.Add(time.Second / 2)
	if res := authWith(a, key); res.State != proxy.SignedIn {
		t.Fatalf("the key: %+v", res)
	}
	*now = now.Add(time.Second / 2)
	if res := authWith(a, key); !errors.Is(res.APIKeyErr, proxy.ErrAPIKeyExpired) {
		t.Errorf("past its expiry, from the cache: %+v, want expired", res)
	}
}

// A lookup that read the record before a revocation does not cache it
// after: the request after the revocation reads the store again.
func TestCachedStore_LookupRacingARevocation(t *testing.T) {
	cs, store, a, key, now := cachedFixture(t)
	blk := make(chan struct{})
	store.reading, store.block = make(chan struct{}), blk
	done := make(chan proxy.AuthResult)
	go func() { done <- authWith(a, key) }()
	<-store.reading // the lookup has read the unrevoked record's store...
	if _, err := cs.RevokeAPIKey(context.Background(), store.rec.ID, *now); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.block = nil // ...the revocation lands, then the lookup returns
	store.mu.Unlock()
	close(blk)
	_ = <-done // what the store said before the revocation: a race it may win
	if res := authWith(a, key); !errors.Is(res.APIKeyErr, proxy.ErrAPIKeyRevoked) {
		t.Errorf("the request after the revocation: %+v, want revoked (no stale record cached)", res)
	}
	if diff := cmp.Diff(store.count(), 2); diff != "" {
		t.Errorf("store reads (-got +want):\n%s", diff)
	}
}

// Keys Clerk's deletion of their user or organisation revoked in the store
// directly are dropped from the cache at once (ForgetSubject), so the
// cached record does not outlive the deletion by its TTL.
func TestCachedStore_ForgetSubject(t *testing.T) {
	cs, store, a, key, now := cachedFixture(t)
	if res := authWith(a, key); res.State != proxy.SignedIn {
		t.Fatalf("the key: %+v", res)
	}
	store.rec.RevokedAt = *now // revoked behind the cache's back
	cs.ForgetSubject(proxy.Subject{Kind: proxy.SubjectUser, ID: "user_other"})
	if res := authWith(a, key); res.State != proxy.SignedIn {
		t.Errorf("another subject forgotten: the cached record should still serve: %+v", res)
	}
	cs.ForgetSubject(store.rec.Subject)
	if res := authWith(a, key); !errors.Is(res.APIKeyErr, proxy.ErrAPIKeyRevoked) {
		t.Errorf("after ForgetSubject: %+v, want revoked", res)
	}
}

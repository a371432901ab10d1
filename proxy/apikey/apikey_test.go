package apikey

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// countingStore is a key store that counts its reads.
type countingStore struct {
	proxy.APIKeyStore
	keys  map[[32]byte]proxy.APIKey
	reads int
}

func (s *countingStore) APIKeyByHash(_ context.Context, h [32]byte) (proxy.APIKey, error) {
	s.reads++
	k, ok := s.keys[h]
	if !ok {
		return proxy.APIKey{}, proxy.ErrAPIKeyNotFound
	}
	return k, nil
}

// clerkSession stands for Clerk's Authenticator: it signs in everyone.
type clerkSession struct{ calls int }

func (c *clerkSession) Authenticate(context.Context, *http.Request) proxy.AuthResult {
	c.calls++
	return proxy.AuthResult{State: proxy.SignedIn, Identity: &proxy.Identity{UserID: "user_session"}}
}

type usedLog map[string]time.Time

func (u usedLog) KeyUsed(id string, at time.Time) { u[id] = at }

func TestAuthenticate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	mk := func(live bool, sub proxy.Subject, mod func(*proxy.APIKey)) (string, proxy.APIKey) {
		key, rec, err := proxy.NewAPIKey(live, now)
		if err != nil {
			t.Fatal(err)
		}
		rec.Subject, rec.Scopes = sub, []string{"*"}
		if mod != nil {
			mod(&rec)
		}
		return key, rec
	}
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	acme := proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"}
	good, goodRec := mk(true, ada, nil)
	org, orgRec := mk(true, acme, nil)
	revoked, revokedRec := mk(true, ada, func(k *proxy.APIKey) { k.RevokedAt = now.Add(-time.Second) })
	expired, expiredRec := mk(true, ada, func(k *proxy.APIKey) { k.ExpiresAt = now })
	test, testRec := mk(false, ada, nil)
	unknown, _ := mk(true, ada, nil)
	broken := good[:len(good)-1] + map[bool]string{true: "b", false: "a"}[good[len(good)-1] == 'a']
	keys := map[[32]byte]proxy.APIKey{}
	for _, k := range []proxy.APIKey{goodRec, orgRec, revokedRec, expiredRec, testRec} {
		keys[k.Hash] = k
	}

	for _, tc := range []struct {
		name      string
		header    map[string]string
		wantID    *proxy.Identity
		wantErr   error
		wantReads int
		toClerk   bool
	}{
		{"user key", map[string]string{"Authorization": "Bearer " + good},
			&proxy.Identity{UserID: "user_ada", Source: "api_key", KeyID: goodRec.ID, KeyScopes: []string{"*"}}, nil, 1, false},
		{"key header", map[string]string{"X-Api-Key": good},
			&proxy.Identity{UserID: "user_ada", Source: "api_key", KeyID: goodRec.ID, KeyScopes: []string{"*"}}, nil, 1, false},
		{"organisation key", map[string]string{"Authorization": "Bearer " + org},
			&proxy.Identity{OrgID: "org_acme", Source: "api_key", KeyID: orgRec.ID, KeyScopes: []string{"*"}}, nil, 1, false},
		{"broken checksum: no store read", map[string]string{"Authorization": "Bearer " + broken}, nil, proxy.ErrAPIKeyMalformed, 0, false},
		{"test key on a live gateway: no store read", map[string]string{"Authorization": "Bearer " + test}, nil, proxy.ErrAPIKeyWrongMode, 0, false},
		{"garbage in the key header", map[string]string{"X-Api-Key": "hunter2"}, nil, proxy.ErrAPIKeyMalformed, 0, false},
		{"unknown", map[string]string{"Authorization": "Bearer " + unknown}, nil, proxy.ErrAPIKeyUnknown, 1, false},
		{"revoked", map[string]string{"Authorization": "Bearer " + revoked}, nil, proxy.ErrAPIKeyRevoked, 1, false},
		{"expired", map[string]string{"Authorization": "Bearer " + expired}, nil, proxy.ErrAPIKeyExpired, 1, false},
		{"a Clerk token goes to Clerk", map[string]string{"Authorization": "Bearer eyJhbGciOi.x.y"}, &proxy.Identity{UserID: "user_session"}, nil, 0, true},
		{"ak_ without clerk.api_keys goes to Clerk", map[string]string{"Authorization": "Bearer ak_123"}, &proxy.Identity{UserID: "user_session"}, nil, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &countingStore{keys: keys}
			next := &clerkSession{}
			used := usedLog{}
			a := New(Options{Store: store, Live: true, Header: "X-Api-Key", Next: next, Used: used, Now: func() time.Time { return now }})
			r := httptest.NewRequest("GET", "/api/v1/x", nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			res := a.Authenticate(context.Background(), r)
			if d := cmp.Diff(tc.wantID, res.Identity); d != "" {
				t.Errorf("identity (-want +got):\n%s", d)
			}
			if !errors.Is(res.APIKeyErr, tc.wantErr) || (tc.wantErr == nil) != (res.APIKeyErr == nil) {
				t.Errorf("APIKeyErr = %v, want %v", res.APIKeyErr, tc.wantErr)
			}
			if store.reads != tc.wantReads {
				t.Errorf("%d store reads, want %d", store.reads, tc.wantReads)
			}
			if (next.calls > 0) != tc.toClerk {
				t.Errorf("Clerk asked %d times, want it asked: %v", next.calls, tc.toClerk)
			}
			if tc.wantID != nil && tc.wantID.KeyID != "" && !used[tc.wantID.KeyID].Equal(now) {
				t.Errorf("use not recorded: %v", used)
			}
		})
	}
}

// TestAuthenticate_KeyHeaderTwiceIsRefused: with two key headers no key is
// guessed at, and no store or Clerk is asked.
func TestAuthenticate_KeyHeaderTwiceIsRefused(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	key, rec, err := proxy.NewAPIKey(true, now)
	if err != nil {
		t.Fatal(err)
	}
	rec.Subject, rec.Scopes = proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}, []string{"*"}
	store := &countingStore{keys: map[[32]byte]proxy.APIKey{rec.Hash: rec}}
	next := &clerkSession{}
	a := New(Options{Store: store, Live: true, Header: "X-Api-Key", Next: next, Now: func() time.Time { return now }})
	for _, second := range []string{key, "hunter2"} {
		r := httptest.NewRequest("GET", "/api/v1/x", nil)
		r.Header.Add("X-Api-Key", key)
		r.Header.Add("x-api-key", second)
		res := a.Authenticate(context.Background(), r)
		if res.Identity != nil || !errors.Is(res.APIKeyErr, proxy.ErrAPIKeyMalformed) {
			t.Errorf("second key %q: identity %v, APIKeyErr %v; want refused as malformed", second, res.Identity, res.APIKeyErr)
		}
	}
	if store.reads != 0 || next.calls != 0 {
		t.Errorf("%d store reads and %d Clerk calls, want none", store.reads, next.calls)
	}
}

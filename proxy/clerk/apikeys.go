package clerk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/tollgate/tollgate/proxy"
)

// Clerk's API keys (ak_…), verified with POST /v1/api_keys/verify
// {"secret": …}, as Clerk's JavaScript Backend SDK (@clerk/backend,
// apiKeys.verify) calls it: 200 with Clerk's APIKey object for a valid
// key; an error for an unknown, revoked or expired one, which the SDK's
// verifyAPIKey reads as 404 "API key not found" and 401 as "invalid secret
// key" (ours, not the caller's). Clerk bills each verification and rate-limits the
// Backend API, so answers are cached by the key's SHA-256 (never the key):
// a valid key for at most apiKeyPositiveTTL (and never past its
// expiration), a refused one for apiKeyNegativeTTL, and one verification
// per key is in flight at a time.
const (
	apiKeyPositiveTTL = 60 * time.Second
	apiKeyNegativeTTL = 10 * time.Second
	apiKeyCacheSize   = 10_000
)

type apiKeyVerdict struct {
	key     proxy.VerifiedAPIKey
	err     error // nil, or wrapping ErrAPIKeyUnknown/Revoked/Expired
	expires time.Time
}

type apiKeyCall struct {
	done    chan struct{}
	verdict apiKeyVerdict
}

type apiKeyCache struct {
	mu       sync.Mutex
	verdicts *simplelru.LRU[[32]byte, apiKeyVerdict]
	inFlight map[[32]byte]*apiKeyCall
	calls    int // verifications asked of Clerk: for tests and the docs' claim
}

func newAPIKeyCache() *apiKeyCache {
	l, err := simplelru.NewLRU[[32]byte, apiKeyVerdict](apiKeyCacheSize, nil)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return &apiKeyCache{verdicts: l, inFlight: map[[32]byte]*apiKeyCall{}}
}

// clerkAPIKey is the part of Clerk's APIKey object (the SDK's APIKeyJSON)
// tollgate reads: subject is a user_ or org_ ID, claims are the custom
// claims stored with the key (an object or null), expiration is in unix
// milliseconds (null: never). revoked and expired are read too although
// Clerk answers such a key with an error: a 200 saying so is still no
// licence to let it in.
type clerkAPIKey struct {
	clerk.APIResource
	Object     string         `json:"object"` // "api_key"
	ID         string         `json:"id"`
	Subject    string         `json:"subject"`
	Scopes     []string       `json:"scopes"`
	Claims     map[string]any `json:"claims"`
	Revoked    bool           `json:"revoked"`
	Expired    bool           `json:"expired"`
	Expiration *int64         `json:"expiration"`
}

type verifyAPIKeyParams struct {
	clerk.APIParams
	Secret string `json:"secret"`
}

// VerifyAPIKey implements proxy.APIKeyVerifier.
func (c *Client) VerifyAPIKey(ctx context.Context, secret string) (proxy.VerifiedAPIKey, error) {
	if !c.hasSecret {
		return proxy.VerifiedAPIKey{}, fmt.Errorf("%w: %w", proxy.ErrAPIKeyUnavailable, errNoSecretKey)
	}
	h := proxy.HashAPIKey(secret)
	kc := c.apiKeys
	for {
		now := c.now()
		kc.mu.Lock()
		if v, ok := kc.verdicts.Get(h); ok && now.Before(v.expires) {
			kc.mu.Unlock()
			return v.key, v.err
		}
		if call, ok := kc.inFlight[h]; ok {
			kc.mu.Unlock()
			select {
			case <-call.done:
				continue // its verdict is cached, unless it was an outage
			case <-ctx.Done():
				return proxy.VerifiedAPIKey{}, fmt.Errorf("%w: %w", proxy.ErrAPIKeyUnavailable, ctx.Err())
			}
		}
		call := &apiKeyCall{done: make(chan struct{})}
		kc.inFlight[h] = call
		kc.calls++
		kc.mu.Unlock()

		v, outage := c.verifyAPIKey(ctx, secret, now)
		kc.mu.Lock()
		delete(kc.inFlight, h)
		if outage == nil {
			kc.verdicts.Add(h, v)
		}
		kc.mu.Unlock()
		close(call.done)
		if outage != nil {
			return proxy.VerifiedAPIKey{}, outage
		}
		return v.key, v.err
	}
}

// APIKeyVerifications is how many times Clerk was asked to verify a key.
func (c *Client) APIKeyVerifications() int {
	c.apiKeys.mu.Lock()
	defer c.apiKeys.mu.Unlock()
	return c.apiKeys.calls
}

// verifyAPIKey asks Clerk once. outage is set when Clerk could not answer
// (not cached: the next request asks again).
func (c *Client) verifyAPIKey(ctx context.Context, secret string, now time.Time) (v apiKeyVerdict, outage error) {
	// Key checks keep within their own share of the budget, below the
	// session checks' (budget.go, apiKeyShare): made-up keys, each one
	// verified, must not starve the sessions.
	if err := c.budget.keyRoom(); err != nil {
		return v, fmt.Errorf("%w: %w", proxy.ErrAPIKeyUnavailable, err)
	}
	req := clerk.NewAPIRequest(http.MethodPost, "/api_keys/verify")
	req.SetParams(&verifyAPIKeyParams{Secret: secret})
	var out clerkAPIKey
	err := c.backend.Call(ctx, req, &out)
	var apiErr *clerk.APIErrorResponse
	if errors.As(err, &apiErr) && refusesKey(apiErr.HTTPStatusCode) {
		v.err, v.expires = proxy.ErrAPIKeyUnknown, now.Add(apiKeyNegativeTTL)
		return v, nil
	}
	if err != nil {
		return v, fmt.Errorf("%w: clerk: verify api key: %w", proxy.ErrAPIKeyUnavailable, apiError(err))
	}
	v.expires = now.Add(apiKeyPositiveTTL)
	sub, perr := proxy.ParseSubject(out.Subject)
	switch {
	case out.Revoked:
		v.err = proxy.ErrAPIKeyRevoked
	case out.Expired:
		v.err = proxy.ErrAPIKeyExpired
	case out.Object != "" && out.Object != "api_key":
		v.err = fmt.Errorf("%w: clerk answered a %q", proxy.ErrAPIKeyUnknown, out.Object)
	case perr != nil:
		v.err = fmt.Errorf("%w: clerk named subject %q", proxy.ErrAPIKeyUnknown, out.Subject)
	}
	if v.err != nil {
		v.expires = now.Add(apiKeyNegativeTTL)
		return v, nil
	}
	if out.Expiration != nil {
		exp := time.UnixMilli(*out.Expiration)
		if !now.Before(exp) {
			v.err, v.expires = proxy.ErrAPIKeyExpired, now.Add(apiKeyNegativeTTL)
			return v, nil
		}
		if exp.Before(v.expires) {
			v.expires = exp
		}
	}
	v.key = proxy.VerifiedAPIKey{ID: out.ID, Subject: sub, Scopes: out.Scopes, Claims: out.Claims}
	return v, nil
}

// refusesKey reports whether a Backend API error status is Clerk's verdict
// on the key rather than on the request. 404 is the one Clerk's SDK names
// for an unknown, revoked or expired key; 400 and 422 answer a secret Clerk
// cannot read, which is the caller's too. 401 and 403 are about tollgate's
// secret key or instance (the SDK's "invalid secret key"), and 429 and 5xx
// about Clerk: none of those says the key is bad, so they are outages, not
// cached, and the caller is not told their key is wrong.
func refusesKey(status int) bool {
	switch status {
	case http.StatusNotFound, http.StatusBadRequest, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

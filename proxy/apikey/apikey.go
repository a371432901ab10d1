// Package apikey is the identity source for API keys: tollgate's own
// (tg_live_…/tg_test_…, checked against a proxy.APIKeyStore) and,
// optionally, Clerk's (ak_…, checked by a proxy.APIKeyVerifier). It is a
// proxy.Authenticator composed in front of Clerk's: a request carrying a
// key is the key's; any other request goes to the next Authenticator.
package apikey

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Options configure an Authenticator.
type Options struct {
	Store proxy.APIKeyStore // tollgate's keys (nil: none are accepted)
	// Live is the Stripe mode: tg_live_ keys are accepted when true,
	// tg_test_ keys when false, never both.
	Live bool
	// Header is api_keys.header, read besides Authorization ("": none).
	Header string
	// Clerk verifies Clerk's ak_ keys (nil: clerk.api_keys is off, and an
	// ak_ bearer goes to Next like any other token).
	Clerk proxy.APIKeyVerifier
	// Used learns when each tollgate key is used (nil: not recorded).
	Used proxy.APIKeyUseRecorder
	// Next authenticates requests without a key (Clerk's). nil: signed out.
	Next proxy.Authenticator
	Now  func() time.Time // nil: time.Now
}

// Authenticator implements proxy.Authenticator for API keys.
type Authenticator struct{ o Options }

var _ proxy.Authenticator = (*Authenticator)(nil)

// New returns the Authenticator.
func New(o Options) *Authenticator {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Authenticator{o: o}
}

// Credential is the API key a request carries ("" when none): the
// configured header's value, else a Bearer token that is a tollgate key
// or, with Clerk keys on, a Clerk key.
func (a *Authenticator) Credential(r *http.Request) string {
	if a.o.Header != "" {
		if v := strings.TrimSpace(r.Header.Get(a.o.Header)); v != "" {
			return v
		}
	}
	auth := r.Header.Get("Authorization")
	if len(auth) < 7 || !strings.EqualFold(auth[:7], "bearer ") {
		return ""
	}
	tok := strings.TrimSpace(auth[7:])
	if proxy.LooksLikeAPIKey(tok) || a.o.Clerk != nil && strings.HasPrefix(tok, proxy.ClerkAPIKeyPrefix) {
		return tok
	}
	return ""
}

// Authenticate is the key's identity, a refusal (APIKeyErr), or, for a
// request without a key, Next's answer.
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request) proxy.AuthResult {
	if a.o.Header != "" && len(r.Header.Values(a.o.Header)) > 1 {
		// Two keys: which one is meant is a guess, and a guess is how a
		// parser differential starts (two Authorization lines are refused
		// before they get here, too).
		err := fmt.Errorf("%w: the key header sent more than once", proxy.ErrAPIKeyMalformed)
		return proxy.AuthResult{State: proxy.SignedOut, Reason: "api key refused: " + reason(err), APIKeyErr: err}
	}
	key := a.Credential(r)
	if key == "" {
		if a.o.Next == nil {
			return proxy.AuthResult{State: proxy.SignedOut, Reason: "no credentials"}
		}
		return a.o.Next.Authenticate(ctx, r)
	}
	var id *proxy.Identity
	var err error
	if strings.HasPrefix(key, proxy.ClerkAPIKeyPrefix) && a.o.Clerk != nil {
		id, err = a.clerkKey(ctx, key)
	} else {
		id, err = a.ownKey(ctx, key)
	}
	if err != nil {
		// The reason names the error, never the key.
		return proxy.AuthResult{State: proxy.SignedOut, Reason: "api key refused: " + reason(err), APIKeyErr: err}
	}
	return proxy.AuthResult{State: proxy.SignedIn, Identity: id, Reason: "api key"}
}

func reason(err error) string {
	for _, e := range []error{proxy.ErrAPIKeyMalformed, proxy.ErrAPIKeyWrongMode, proxy.ErrAPIKeyUnknown,
		proxy.ErrAPIKeyRevoked, proxy.ErrAPIKeyExpired, proxy.ErrAPIKeyUnavailable} {
		if errors.Is(err, e) {
			return strings.TrimPrefix(e.Error(), "api key: ")
		}
	}
	return "refused"
}

// ownKey checks a tollgate key: form, checksum and mode first, without a
// store read; then its record.
func (a *Authenticator) ownKey(ctx context.Context, key string) (*proxy.Identity, error) {
	if err := proxy.CheckAPIKey(key, a.o.Live); err != nil {
		return nil, err
	}
	if a.o.Store == nil {
		return nil, proxy.ErrAPIKeyUnknown
	}
	rec, err := a.o.Store.APIKeyByHash(ctx, proxy.HashAPIKey(key))
	switch {
	case errors.Is(err, proxy.ErrAPIKeyNotFound):
		return nil, proxy.ErrAPIKeyUnknown
	case err != nil:
		return nil, fmt.Errorf("%w: %w", proxy.ErrAPIKeyUnavailable, err)
	}
	now := a.o.Now()
	if err := rec.Usable(now); err != nil {
		return nil, err
	}
	if a.o.Used != nil {
		a.o.Used.KeyUsed(rec.ID, now)
	}
	return identity(rec.Subject, rec.ID, rec.Scopes, "api_key"), nil
}

func (a *Authenticator) clerkKey(ctx context.Context, key string) (*proxy.Identity, error) {
	v, err := a.o.Clerk.VerifyAPIKey(ctx, key)
	if err != nil {
		return nil, err
	}
	scopes := v.Scopes
	if len(scopes) == 0 {
		// Clerk's dashboard makes keys without scopes; such a key is
		// meant for the whole API.
		scopes = []string{proxy.ScopeAll}
	}
	return identity(v.Subject, v.ID, scopes, "clerk_api_key"), nil
}

func identity(sub proxy.Subject, keyID string, scopes []string, source string) *proxy.Identity {
	id := &proxy.Identity{Source: source, KeyID: keyID, KeyScopes: scopes}
	if sub.Kind == proxy.SubjectOrg {
		id.OrgID = sub.ID
	} else {
		id.UserID = sub.ID
	}
	return id
}

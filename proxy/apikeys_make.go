package proxy

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Making keys: the checks every way of making one shares (the account
// page, the admin console, the admin API), so none is laxer than another.

// Audit actions of API keys, shared by the account page, the admin console
// and the admin API.
const (
	ActionAPIKeyCreated = "api_key.created"
	ActionAPIKeyRevoked = "api_key.revoked"
)

const (
	maxKeyNameLen = 100
	maxKeyDays    = 3650
	// maxKeysPerSubject bounds the usable keys of one subject, so a form
	// in a loop cannot fill the store.
	maxKeysPerSubject = 50
)

// KeyRequest is a key to make, as a form or the admin API asks for it.
type KeyRequest struct {
	Subject Subject
	Name    string
	Scopes  []string
	Days    int // 0: never expires
	By      string
}

// ErrKeyRequest is a key request that is not valid; its message says why.
var ErrKeyRequest = errors.New("invalid key request")

// MakeAPIKey checks req and stores a new key for it, returning the key,
// shown once, and its record. routeIDs are the route IDs a scope may name
// (nil: any).
func MakeAPIKey(ctx context.Context, store APIKeyStore, live bool, now time.Time, routeIDs []string, req KeyRequest) (string, APIKey, error) {
	name := strings.TrimSpace(req.Name)
	switch {
	case name == "" || len(name) > maxKeyNameLen:
		return "", APIKey{}, errors.Join(ErrKeyRequest, errors.New("a name of 1 to 100 characters is needed"))
	case req.Days < 0 || req.Days > maxKeyDays:
		return "", APIKey{}, errors.Join(ErrKeyRequest, errors.New("expiry must be 1 to 3650 days, or none"))
	case len(req.Scopes) == 0:
		return "", APIKey{}, errors.Join(ErrKeyRequest, errors.New("choose all routes or at least one route"))
	}
	scopes := slices.Clone(req.Scopes)
	slices.Sort(scopes)
	scopes = slices.Compact(scopes)
	if slices.Contains(scopes, ScopeAll) {
		scopes = []string{ScopeAll}
	} else if routeIDs != nil {
		for _, sc := range scopes {
			if !slices.Contains(routeIDs, sc) {
				return "", APIKey{}, errors.Join(ErrKeyRequest, errors.New("unknown route ID "+strconv.Quote(sc)))
			}
		}
	}
	key, rec, err := NewAPIKey(live, now)
	if err != nil {
		return "", APIKey{}, err
	}
	rec.Subject, rec.Name, rec.Scopes, rec.CreatedBy = req.Subject, name, scopes, req.By
	if req.Days > 0 {
		rec.ExpiresAt = now.AddDate(0, 0, req.Days).UTC()
	}
	if err := store.CreateAPIKey(ctx, rec, maxKeysPerSubject); err != nil {
		if errors.Is(err, ErrTooManyAPIKeys) {
			return "", APIKey{}, errors.Join(ErrKeyRequest, errors.New("too many keys: revoke one first"))
		}
		return "", APIKey{}, err
	}
	return key, rec, nil
}

// KeyAuditDetail describes a key in the audit trail: its ID, name and
// scopes, never the key.
func KeyAuditDetail(k APIKey) string {
	return k.ID + " " + strconv.Quote(k.Name) + " scopes=" + strings.Join(k.Scopes, ",")
}

package clerksandbox

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Clerk's API keys (ak_…), as the Backend API serves them and Clerk's
// JavaScript Backend SDK (@clerk/backend, apiKeys) calls it:
//
//   - POST /v1/api_keys {name, subject, description, claims, scopes,
//     created_by, seconds_until_expiration} makes a key for a user_ or
//     org_ subject and answers the APIKey object with its secret, the only
//     time the secret is shown;
//   - POST /v1/api_keys/{id}/revoke {revocation_reason} revokes it at once;
//   - POST /v1/api_keys/verify {secret} answers the APIKey object (without
//     the secret) for a valid key, and 404 in Clerk's error shape for a
//     secret it does not know or a key that is revoked or expired: the SDK
//     documents that these throw, and reads 404 as "API key not found".
//
// Never kinder than Clerk: a revoked or expired key is refused at once
// (whatever a caller caches is the caller's business), and the secret is
// kept only as its SHA-256.

type apiKeyState struct {
	id, name, subject, createdBy, description string
	secretHash                                [32]byte
	scopes                                    []string
	claims                                    map[string]any
	revoked                                   bool
	revocationReason                          *string
	expiration                                *time.Time
	lastUsedAt, createdAt, updatedAt          time.Time
}

// wireAPIKey is Clerk's APIKey object.
type wireAPIKey struct {
	Object           string         `json:"object"`
	ID               string         `json:"id"`
	Type             string         `json:"type"`
	Name             string         `json:"name"`
	Secret           string         `json:"secret,omitempty"`
	Subject          string         `json:"subject"`
	Scopes           []string       `json:"scopes"`
	Claims           map[string]any `json:"claims"`
	Revoked          bool           `json:"revoked"`
	RevocationReason *string        `json:"revocation_reason"`
	Expired          bool           `json:"expired"`
	Expiration       *int64         `json:"expiration"`
	CreatedBy        *string        `json:"created_by"`
	Description      *string        `json:"description"`
	LastUsedAt       *int64         `json:"last_used_at"`
	CreatedAt        int64          `json:"created_at"`
	UpdatedAt        int64          `json:"updated_at"`
}

func (k *apiKeyState) expired(now time.Time) bool {
	return k.expiration != nil && !now.Before(*k.expiration)
}

func (k *apiKeyState) wire(now time.Time) wireAPIKey {
	w := wireAPIKey{Object: "api_key", ID: k.id, Type: "api_key", Name: k.name, Subject: k.subject,
		Scopes: k.scopes, Claims: k.claims, Revoked: k.revoked, RevocationReason: k.revocationReason,
		Expired: k.expired(now), CreatedAt: k.createdAt.UnixMilli(), UpdatedAt: k.updatedAt.UnixMilli()}
	if w.Scopes == nil {
		w.Scopes = []string{}
	}
	if k.expiration != nil {
		ms := k.expiration.UnixMilli()
		w.Expiration = &ms
	}
	if k.createdBy != "" {
		w.CreatedBy = &k.createdBy
	}
	if k.description != "" {
		w.Description = &k.description
	}
	if !k.lastUsedAt.IsZero() {
		ms := k.lastUsedAt.UnixMilli()
		w.LastUsedAt = &ms
	}
	return w
}

// createAPIKeyParams is the body of POST /v1/api_keys.
type createAPIKeyParams struct {
	Name                   string         `json:"name"`
	Subject                string         `json:"subject"`
	Description            *string        `json:"description"`
	Claims                 map[string]any `json:"claims"`
	Scopes                 []string       `json:"scopes"`
	CreatedBy              *string        `json:"created_by"`
	SecondsUntilExpiration *int64         `json:"seconds_until_expiration"`
}

// IssueAPIKey makes a Clerk API key for subject (a user_ or org_ ID the
// sandbox knows) that never expires, as POST /v1/api_keys does, and
// returns its secret and ID. It panics on a subject the sandbox does not
// know: a test's mistake.
func (c *Clerk) IssueAPIKey(subject, name string, scopes []string) (secret, id string) {
	k, secret, status, msg := c.createAPIKey(createAPIKeyParams{Name: name, Subject: subject, Scopes: scopes})
	if status != http.StatusOK {
		panic("sandbox: IssueAPIKey: " + msg)
	}
	return secret, k.ID
}

// RevokeAPIKey revokes the key with id, as POST /v1/api_keys/{id}/revoke
// does; false if there is no such key.
func (c *Clerk) RevokeAPIKey(id, reason string) bool {
	_, ok := c.revokeAPIKey(id, &reason)
	return ok
}

func (c *Clerk) createAPIKey(p createAPIKeyParams) (k wireAPIKey, secret string, status int, msg string) {
	switch {
	case strings.TrimSpace(p.Name) == "":
		return k, "", http.StatusUnprocessableEntity, "name is missing"
	case p.Subject == "":
		return k, "", http.StatusUnprocessableEntity, "subject is missing"
	case p.SecondsUntilExpiration != nil && *p.SecondsUntilExpiration <= 0:
		return k, "", http.StatusUnprocessableEntity, "seconds_until_expiration must be positive"
	}
	switch {
	case strings.HasPrefix(p.Subject, "user_"):
		if _, ok := c.user(p.Subject); !ok {
			return k, "", http.StatusNotFound, "no such user"
		}
	case strings.HasPrefix(p.Subject, "org_"):
		if c.orgs[p.Subject] == nil {
			return k, "", http.StatusNotFound, "no such organization"
		}
	default:
		return k, "", http.StatusUnprocessableEntity, "subject must be a user or organization ID"
	}
	now := c.now()
	secret = "ak_" + randomHex(24)
	st := &apiKeyState{id: "ak_" + randomHex(12), name: p.Name, subject: p.Subject,
		secretHash: sha256.Sum256([]byte(secret)), scopes: append([]string(nil), p.Scopes...),
		claims: p.Claims, createdAt: now, updatedAt: now}
	if p.Description != nil {
		st.description = *p.Description
	}
	if p.CreatedBy != nil {
		st.createdBy = *p.CreatedBy
	}
	if p.SecondsUntilExpiration != nil {
		exp := now.Add(time.Duration(*p.SecondsUntilExpiration) * time.Second)
		st.expiration = &exp
	}
	c.mu.Lock()
	if c.apiKeys == nil {
		c.apiKeys = map[string]*apiKeyState{}
	}
	c.apiKeys[st.id] = st
	k = st.wire(now)
	c.mu.Unlock()
	k.Secret = secret
	return k, secret, http.StatusOK, ""
}

func (c *Clerk) revokeAPIKey(id string, reason *string) (wireAPIKey, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.apiKeys[id]
	if k == nil {
		return wireAPIKey{}, false
	}
	if !k.revoked {
		k.revoked, k.revocationReason, k.updatedAt = true, reason, now
	}
	return k.wire(now), true
}

// verifyAPIKey finds the valid key whose secret this is, marking it used.
func (c *Clerk) verifyAPIKey(secret string) (wireAPIKey, bool) {
	h := sha256.Sum256([]byte(secret))
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.apiKeys {
		if subtle.ConstantTimeCompare(k.secretHash[:], h[:]) == 1 {
			if k.revoked || k.expired(now) {
				return wireAPIKey{}, false
			}
			k.lastUsedAt = now
			return k.wire(now), true
		}
	}
	return wireAPIKey{}, false
}

func (c *Clerk) handleCreateAPIKey(w http.ResponseWriter, r *http.Request) {
	var p createAPIKeyParams
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&p); err != nil {
		writeError(w, http.StatusBadRequest, "request_body_invalid", "Request body invalid",
			"The request body is invalid. Please consult the API documentation for more information.")
		return
	}
	k, _, status, msg := c.createAPIKey(p)
	switch status {
	case http.StatusOK:
		writeJSON(w, http.StatusOK, k)
	case http.StatusNotFound:
		writeError(w, status, "resource_not_found", "not found", msg)
	default:
		writeError(w, status, "form_param_value_invalid", "is invalid", msg)
	}
}

func (c *Clerk) handleRevokeAPIKey(w http.ResponseWriter, r *http.Request) {
	var p struct {
		RevocationReason *string `json:"revocation_reason"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&p); err != nil {
			writeError(w, http.StatusBadRequest, "request_body_invalid", "Request body invalid",
				"The request body is invalid. Please consult the API documentation for more information.")
			return
		}
	}
	k, ok := c.revokeAPIKey(r.PathValue("id"), p.RevocationReason)
	if !ok {
		writeError(w, http.StatusNotFound, "resource_not_found", "not found",
			"The requested resource was not found.")
		return
	}
	writeJSON(w, http.StatusOK, k)
}

func (c *Clerk) handleVerifyAPIKey(w http.ResponseWriter, r *http.Request) {
	var p struct {
		Secret string `json:"secret"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&p); err != nil {
		writeError(w, http.StatusBadRequest, "request_body_invalid", "Request body invalid",
			"The request body is invalid. Please consult the API documentation for more information.")
		return
	}
	if p.Secret == "" {
		writeError(w, http.StatusUnprocessableEntity, "form_param_missing", "missing data",
			"secret must be included.")
		return
	}
	k, ok := c.verifyAPIKey(p.Secret)
	if !ok {
		writeError(w, http.StatusNotFound, "resource_not_found", "not found",
			"The requested resource was not found.")
		return
	}
	writeJSON(w, http.StatusOK, k)
}

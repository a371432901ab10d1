package admin

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// API keys for any subject: list, make and revoke, each audited. The
// checks are the account page's (proxy.MakeAPIKey), so an admin makes no
// key a user could not, except for whom. A made key is in the answer
// once; it is never logged or audited.

// APIKey is a key's record as the API shows it: never the key or its hash.
type APIKey struct {
	ID         string    `json:"id"`
	Prefix     string    `json:"prefix"`
	Subject    string    `json:"subject"`
	Name       string    `json:"name"`
	Scopes     []string  `json:"scopes"`
	CreatedBy  string    `json:"created_by"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	Usable     bool      `json:"usable"`
}

// KeyRequest is the body of POST /api/users/{id}/keys.
type KeyRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"` // route IDs, or ["*"]
	Days   int      `json:"days,omitempty"`
}

// NewKey is the answer of POST /api/users/{id}/keys: the key, shown once.
type NewKey struct {
	Key    string `json:"key"`
	Record APIKey `json:"record"`
}

func keyOf(k *proxy.APIKey, now time.Time) APIKey {
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return APIKey{ID: k.ID, Prefix: k.Prefix, Subject: k.Subject.ID, Name: k.Name, Scopes: scopes, CreatedBy: k.CreatedBy,
		CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, Usable: k.Usable(now) == nil}
}

func (h *handler) needKeys(w http.ResponseWriter) bool {
	if h.cfg.Keys == nil || h.cfg.Store == nil {
		writeError(w, http.StatusServiceUnavailable, "no API keys: api_keys is off or there is no store")
		return false
	}
	return true
}

// GET /api/users/{id}/keys
func (h *handler) listKeys(w http.ResponseWriter, r *http.Request) {
	if !h.needKeys(w) {
		return
	}
	subject, ok := subjectOf(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusBadRequest, "want a Clerk user ID (user_…) or organisation ID (org_…)")
		return
	}
	keys, err := h.cfg.Keys.APIKeysOf(r.Context(), subject)
	if err != nil {
		h.internal(w, r, "listing keys", err)
		return
	}
	now := h.now()
	out := make([]APIKey, 0, len(keys))
	for i := range keys {
		out = append(out, keyOf(&keys[i], now))
	}
	writeJSON(w, http.StatusOK, out)
}

// POST /api/users/{id}/keys
func (h *handler) createKey(w http.ResponseWriter, r *http.Request) {
	if !h.needKeys(w) {
		return
	}
	subject, ok := subjectOf(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusBadRequest, "want a Clerk user ID (user_…) or organisation ID (org_…)")
		return
	}
	var req KeyRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	by := actor(r)
	now := h.now()
	ctx := r.Context()
	key, rec, err := proxy.MakeAPIKey(ctx, h.cfg.Keys, h.cfg.LiveKeys, now, nil,
		proxy.KeyRequest{Subject: subject, Name: req.Name, Scopes: req.Scopes, Days: req.Days, By: "admin:" + by})
	switch {
	case errors.Is(err, proxy.ErrKeyRequest):
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), proxy.ErrKeyRequest.Error()+"\n"))
		return
	case err != nil:
		h.internal(w, r, "storing the key", err)
		return
	}
	auditErr := h.cfg.Store.Audit(ctx, proxy.AuditEntry{At: now, Actor: by, Action: proxy.ActionAPIKeyCreated, Subject: subject, Detail: proxy.KeyAuditDetail(rec)})
	h.log.InfoContext(ctx, "admin: api key created", "key_id", rec.ID, "subject", subject.String(), "actor", by)
	if auditErr != nil {
		// The key exists; not answering it would leave a key nobody has.
		h.log.ErrorContext(ctx, "admin API: the key was made, but writing its audit entry failed", "err", auditErr, "key_id", rec.ID)
	}
	writeJSON(w, http.StatusCreated, NewKey{Key: key, Record: keyOf(&rec, now)})
}

// DELETE /api/keys/{id}
func (h *handler) revokeKey(w http.ResponseWriter, r *http.Request) {
	if !h.needKeys(w) {
		return
	}
	id := r.PathValue("id")
	if !proxy.ValidAPIKeyID(id) {
		writeError(w, http.StatusNotFound, "no such key")
		return
	}
	now := h.now()
	ctx := r.Context()
	rec, err := h.cfg.Keys.RevokeAPIKey(ctx, id, now)
	switch {
	case errors.Is(err, proxy.ErrAPIKeyNotFound):
		writeError(w, http.StatusNotFound, "no such key")
		return
	case err != nil:
		h.internal(w, r, "revoking the key", err)
		return
	}
	by := actor(r)
	auditErr := h.cfg.Store.Audit(ctx, proxy.AuditEntry{At: now, Actor: by, Action: proxy.ActionAPIKeyRevoked, Subject: rec.Subject, Detail: proxy.KeyAuditDetail(rec)})
	h.log.InfoContext(ctx, "admin: api key revoked", "key_id", rec.ID, "subject", rec.Subject.String(), "actor", by)
	if auditErr != nil {
		h.internal(w, r, "the key was revoked, but writing its audit entry failed", auditErr)
		return
	}
	writeJSON(w, http.StatusOK, keyOf(&rec, now))
}

package gateway

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// The account page's API keys section: a signed-in visitor makes, lists
// and revokes their own keys, and an organisation's admins its keys. Every
// action is a same-origin POST (billingRoutes' CrossOriginProtection) made
// with a browser session: an API key never manages keys, or a leaked one
// could mint its own successors. A new key is shown once, on the page the
// POST answers, and never again: only its hash is kept.

// accountKey is one key as the account page lists it.
type accountKey struct {
	ID, Prefix, Name  string
	Scope             string // "all routes" or the route IDs
	Org               bool   // the organisation's key
	Created, LastUsed string
	Expires, Revoked  string
	Usable            bool
	CreatedAt, UsedAt time.Time
}

// accountKeys is the section's data; nil when keys are off.
type accountKeys struct {
	Keys []accountKey
	// RouteIDs are the routes a key may be limited to.
	RouteIDs []string
	// OrgAdmin: the visitor may make and revoke the organisation's keys.
	OrgAdmin bool
	OrgName  string
	Done     string // a notice after an action ("revoked")
}

// keyCreatedPage shows a new key, once.
type keyCreatedPage struct {
	Key        string
	Name       string
	Scope      string
	Org        bool
	Expires    string
	AccountURL string
}

// keysOn reports whether the account page manages keys.
func (s *Server) keysOn() bool { return s.apiKeys != nil && s.cfg.APIKeys.Enabled }

// keyRouteIDs are the route IDs a key may be limited to: those the plans
// name, and the fixed IDs of paid rules, sorted.
func (s *Server) keyRouteIDs() []string {
	var ids []string
	for _, p := range s.cfg.Plans {
		for _, r := range p.Routes {
			if r != proxy.ScopeAll {
				ids = append(ids, r)
			}
		}
	}
	for _, r := range s.cfg.Routes.Rules {
		if r.ID != "" && r.Access == proxy.AccessPaid {
			ids = append(ids, r.ID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// keySubjects are whose keys the visitor manages: their own, and their
// active organisation's when they are its admin.
func keySubjects(id *proxy.Identity) []proxy.Subject {
	subs := []proxy.Subject{{Kind: proxy.SubjectUser, ID: id.UserID}}
	if id.IsOrgAdmin() {
		subs = append(subs, proxy.Subject{Kind: proxy.SubjectOrg, ID: id.OrgID})
	}
	return subs
}

// accountKeysFor lists the visitor's keys for the account page.
func (s *Server) accountKeysFor(ctx context.Context, id *proxy.Identity, done string) (*accountKeys, error) {
	if !s.keysOn() || id.IsAPIKey() {
		return nil, nil
	}
	out := &accountKeys{RouteIDs: s.keyRouteIDs(), OrgAdmin: id.IsOrgAdmin(), OrgName: s.orgName(ctx, id)}
	if done == "revoked" || done == "created" {
		out.Done = done
	}
	now := s.now()
	for _, sub := range keySubjects(id) {
		keys, err := s.apiKeys.APIKeysOf(ctx, sub)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			out.Keys = append(out.Keys, viewKey(k, now))
		}
	}
	sortKeys(out.Keys)
	return out, nil
}

// sortKeys puts usable keys first, newest first.
func sortKeys(keys []accountKey) {
	slices.SortStableFunc(keys, func(a, b accountKey) int {
		if a.Usable != b.Usable {
			if a.Usable {
				return -1
			}
			return 1
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
}

func viewKey(k proxy.APIKey, now time.Time) accountKey {
	v := accountKey{ID: k.ID, Prefix: k.Prefix, Name: k.Name, Scope: scopeWords(k.Scopes), Org: k.Subject.Kind == proxy.SubjectOrg,
		Created: day(k.CreatedAt), LastUsed: "never", Usable: k.Usable(now) == nil, CreatedAt: k.CreatedAt, UsedAt: k.LastUsedAt}
	if !k.LastUsedAt.IsZero() {
		v.LastUsed = day(k.LastUsedAt)
	}
	if !k.ExpiresAt.IsZero() {
		v.Expires = day(k.ExpiresAt)
	}
	if !k.RevokedAt.IsZero() {
		v.Revoked = day(k.RevokedAt)
	}
	return v
}

func day(t time.Time) string { return t.UTC().Format("2 January 2006") }

// scopeWords says what a key's scopes open.
func scopeWords(scopes []string) string {
	if slices.Contains(scopes, proxy.ScopeAll) {
		return "all routes"
	}
	return strings.Join(scopes, ", ")
}

// keyManager checks that the visitor may manage keys with this request:
// keys on, signed in with a browser session (never a key), and reads the
// form. It answers the request itself and returns nil otherwise.
func (s *Server) keyManager(w http.ResponseWriter, r *http.Request) *proxy.Identity {
	noStore(w)
	id := IdentityFromContext(r.Context())
	switch {
	case !s.keysOn():
		s.writeError(w, r, http.StatusNotFound)
		return nil
	case id == nil || id.IsAPIKey() || id.UserID == "":
		entryFrom(r.Context()).reason = "keys_need_a_session"
		s.writeError(w, r, http.StatusForbidden)
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, adminFormSize)
	if err := r.ParseForm(); err != nil {
		s.writeError(w, r, http.StatusBadRequest)
		return nil
	}
	return id
}

// auditKey writes a key's audit entry where there is an audit trail.
func (s *Server) auditKey(ctx context.Context, actor, action string, k proxy.APIKey) error {
	if s.adminStore == nil {
		return nil
	}
	return s.audit(ctx, proxy.AuditEntry{At: s.now(), Actor: actor, Action: action, Subject: k.Subject, Detail: proxy.KeyAuditDetail(k)})
}

// POST <prefix>/account/keys: name, days ("" for none), owner ("org" for
// the organisation's), scope ("*" or route IDs, repeated).
func (s *Server) handleCreateKey(w http.ResponseWriter, r *http.Request) {
	id := s.keyManager(w, r)
	if id == nil {
		return
	}
	f := r.PostForm
	sub := proxy.Subject{Kind: proxy.SubjectUser, ID: id.UserID}
	if f.Get("owner") == "org" {
		if !id.IsOrgAdmin() {
			entryFrom(r.Context()).reason = "not_org_admin"
			s.writeError(w, r, http.StatusForbidden)
			return
		}
		sub = proxy.Subject{Kind: proxy.SubjectOrg, ID: id.OrgID}
	}
	days := 0
	if d := strings.TrimSpace(f.Get("days")); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 {
			s.keyFormError(w, r)
			return
		}
		days = n
	}
	scopes := f["scope"]
	if f.Get("all") == "1" {
		scopes = []string{proxy.ScopeAll}
	}
	ctx := r.Context()
	key, rec, err := proxy.MakeAPIKey(ctx, s.apiKeys, s.cfg.LiveMode(), s.now(), s.keyRouteIDs(),
		proxy.KeyRequest{Subject: sub, Name: f.Get("name"), Scopes: scopes, Days: days, By: id.UserID})
	switch {
	case errors.Is(err, proxy.ErrKeyRequest):
		s.keyFormError(w, r)
		return
	case err != nil:
		s.log.ErrorContext(ctx, "account: create api key", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	if err := s.auditKey(ctx, "clerk:"+id.UserID, proxy.ActionAPIKeyCreated, rec); err != nil {
		s.log.ErrorContext(ctx, "account: create api key", "err", err, "key_id", rec.ID)
	}
	page := keyCreatedPage{Key: key, Name: rec.Name, Scope: scopeWords(rec.Scopes), Org: sub.Kind == proxy.SubjectOrg,
		AccountURL: s.prefix + "/account#keys"}
	if !rec.ExpiresAt.IsZero() {
		page.Expires = day(rec.ExpiresAt)
	}
	s.pages.render(w, r, http.StatusOK, "key_created", page)
}

func (s *Server) keyFormError(w http.ResponseWriter, r *http.Request) {
	entryFrom(r.Context()).reason = "invalid_key_request"
	s.writeError(w, r, http.StatusBadRequest)
}

// POST <prefix>/account/keys/{id}/revoke: the visitor's own key, or their
// organisation's when they are its admin; any other is not found.
func (s *Server) handleRevokeKey(w http.ResponseWriter, r *http.Request) {
	id := s.keyManager(w, r)
	if id == nil {
		return
	}
	ctx := r.Context()
	keyID := r.PathValue("id")
	var k proxy.APIKey
	var err error
	if proxy.ValidAPIKeyID(keyID) {
		k, err = s.apiKeys.APIKeyByID(ctx, keyID)
	} else {
		err = proxy.ErrAPIKeyNotFound
	}
	switch {
	case errors.Is(err, proxy.ErrAPIKeyNotFound) || err == nil && !slices.Contains(keySubjects(id), k.Subject):
		s.writeError(w, r, http.StatusNotFound)
		return
	case err != nil:
		s.log.ErrorContext(ctx, "account: revoke api key", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	if k, err = s.apiKeys.RevokeAPIKey(ctx, keyID, s.now()); err != nil {
		s.log.ErrorContext(ctx, "account: revoke api key", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	if err := s.auditKey(ctx, "clerk:"+id.UserID, proxy.ActionAPIKeyRevoked, k); err != nil {
		s.log.ErrorContext(ctx, "account: revoke api key", "err", err, "key_id", k.ID)
	}
	redirect(w, s.prefix+"/account?done=revoked#keys", http.StatusSeeOther)
}

package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// The admin console's actions. Each is a POST that
// http.CrossOriginProtection refuses from any other origin (mounted in
// mountAdmin), for admins only (Server.admin), and each writes an audit
// entry before it answers; after it, the browser is sent back to the
// user's page (303) with a fixed notice.

// Audit actions of the admin console (the admin API's are proxy/admin's).
const (
	ActionCompGranted     = "comp.granted"
	ActionCompRevoked     = "comp.revoked"
	ActionSyncRequested   = "sync.requested"
	ActionSessionsRevoked = "sessions.revoked"
	ActionUsersExported   = "users.exported"
)

const (
	maxCompDays   = 3650
	maxReasonLen  = 500
	adminFormSize = 16 << 10
	adminSyncWait = 30 * time.Second
)

// adminActor names an admin in the audit trail.
func adminActor(id *proxy.Identity) string { return "clerk:" + id.UserID }

// adminForm checks the admin and reads the form; it answers the request
// itself and returns nil when it cannot go on.
func (s *Server) adminForm(w http.ResponseWriter, r *http.Request) *proxy.Identity {
	id := s.admin(w, r)
	if id == nil {
		return nil
	}
	if s.adminStore == nil {
		s.writeError(w, r, http.StatusServiceUnavailable)
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, adminFormSize)
	if err := r.ParseForm(); err != nil {
		s.writeError(w, r, http.StatusBadRequest)
		return nil
	}
	return id
}

// pathSubject reads {id} as a bare user or organisation ID.
func pathSubject(r *http.Request) (proxy.Subject, bool) {
	id := r.PathValue("id")
	s, err := proxy.ParseSubject(id)
	return s, err == nil && !strings.Contains(id, ":")
}

// backToUser sends the browser to the user's page with a notice.
func (s *Server) backToUser(w http.ResponseWriter, subject proxy.Subject, done string) {
	redirect(w, s.prefix+"/admin/users/"+subject.ID+"?done="+done, http.StatusSeeOther)
}

// adminFailed answers a failed action with the error page, logging why.
func (s *Server) adminFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.ErrorContext(r.Context(), "admin: "+what, "err", err)
	s.writeError(w, r, http.StatusServiceUnavailable)
}

// audit writes one entry; the action is done already, so a failure is
// the answer (the admin sees it and the log says what was not recorded).
func (s *Server) audit(ctx context.Context, e proxy.AuditEntry) error {
	if err := s.adminStore.Audit(context.WithoutCancel(ctx), e); err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// POST <prefix>/admin/users/{id}/comps: plan, days, reason.
func (s *Server) handleAdminGrantComp(w http.ResponseWriter, r *http.Request) {
	id := s.adminForm(w, r)
	if id == nil {
		return
	}
	subject, ok := pathSubject(r)
	if !ok {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	plan, reason := r.PostForm.Get("plan"), strings.TrimSpace(r.PostForm.Get("reason"))
	days, err := strconv.Atoi(r.PostForm.Get("days"))
	var p *proxy.Plan
	for i := range s.cfg.Plans {
		if s.cfg.Plans[i].Key == plan {
			p = &s.cfg.Plans[i]
		}
	}
	if err != nil || days < 1 || days > maxCompDays || p == nil || reason == "" || len(reason) > maxReasonLen ||
		(p.Scope == proxy.SubjectOrg) != (subject.Kind == proxy.SubjectOrg) {
		entryFrom(r.Context()).reason = "invalid_comp"
		s.writeError(w, r, http.StatusBadRequest)
		return
	}
	now := s.now()
	c := proxy.Comp{ID: proxy.NewCompID(), Subject: subject, Plan: plan, ExpiresAt: now.AddDate(0, 0, days).UTC(), By: adminActor(id),
		Reason: reason, CreatedAt: now}
	ctx := r.Context()
	if err := s.adminStore.PutComp(ctx, c); err != nil {
		s.adminFailed(w, r, "grant comp", err)
		return
	}
	s.forget.Remove(subject)
	err = s.audit(ctx, proxy.AuditEntry{At: now, Actor: c.By, Action: ActionCompGranted, Subject: subject,
		Detail: fmt.Sprintf("%s: plan %s until %s: %s", c.ID, plan, c.ExpiresAt.Format(time.RFC3339), reason)})
	if err != nil {
		s.adminFailed(w, r, "the comp was granted", err)
		return
	}
	s.log.InfoContext(ctx, "admin: comp granted", "comp", c.ID, "subject", subject.String(), "plan", plan, "actor", c.By)
	s.backToUser(w, subject, "comp-granted")
}

// POST <prefix>/admin/comps/{id}/revoke: reason.
func (s *Server) handleAdminRevokeComp(w http.ResponseWriter, r *http.Request) {
	id := s.adminForm(w, r)
	if id == nil {
		return
	}
	ctx := r.Context()
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if len(reason) > maxReasonLen {
		s.writeError(w, r, http.StatusBadRequest)
		return
	}
	compID := r.PathValue("id")
	c, err := s.adminStore.Comp(ctx, compID)
	if errors.Is(err, proxy.ErrNotFound) {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	if err != nil {
		s.adminFailed(w, r, "read comp", err)
		return
	}
	if c.Revoked {
		s.backToUser(w, c.Subject, "comp-revoked") // done already: nothing to audit
		return
	}
	by := adminActor(id)
	if err := s.adminStore.RevokeComp(ctx, compID, by, reason); err != nil {
		s.adminFailed(w, r, "revoke comp", err)
		return
	}
	s.forget.Remove(c.Subject)
	err = s.audit(ctx, proxy.AuditEntry{At: s.now(), Actor: by, Action: ActionCompRevoked, Subject: c.Subject,
		Detail: strings.TrimSuffix(fmt.Sprintf("%s: plan %s: %s", compID, c.Plan, reason), ": ")})
	if err != nil {
		s.adminFailed(w, r, "the comp was revoked", err)
		return
	}
	s.log.InfoContext(ctx, "admin: comp revoked", "comp", compID, "subject", c.Subject.String(), "actor", by)
	s.backToUser(w, c.Subject, "comp-revoked")
}

// POST <prefix>/admin/users/{id}/sync: re-read the subject's customer
// from Stripe now.
func (s *Server) handleAdminSync(w http.ResponseWriter, r *http.Request) {
	id := s.adminForm(w, r)
	if id == nil {
		return
	}
	subject, ok := pathSubject(r)
	if !ok {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	if s.syncer == nil {
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	ctx := r.Context()
	cus, err := s.adminStore.CustomerOf(ctx, subject)
	if err != nil {
		s.adminFailed(w, r, "sync: customer", err)
		return
	}
	if cus == "" {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	// Audited before it runs: a sync that fails half-way was still asked.
	if err := s.audit(ctx, proxy.AuditEntry{At: s.now(), Actor: adminActor(id), Action: ActionSyncRequested, Subject: subject,
		Detail: "customer " + cus}); err != nil {
		s.adminFailed(w, r, "sync", err)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, adminSyncWait)
	defer cancel()
	if err := s.syncer.SyncCustomer(sctx, cus, ""); err != nil {
		s.log.WarnContext(ctx, "admin: sync failed", "customer", cus, "err", err)
		s.writeError(w, r, http.StatusBadGateway)
		return
	}
	s.backToUser(w, subject, "synced")
}

// POST <prefix>/admin/keys/{id}/revoke: any subject's API key, as the
// admin API's DELETE /api/keys/{id} does. A key revoked already goes back
// to its page with nothing more audited.
func (s *Server) handleAdminRevokeKey(w http.ResponseWriter, r *http.Request) {
	id := s.adminForm(w, r)
	if id == nil {
		return
	}
	keyID := r.PathValue("id")
	if s.apiKeys == nil || !proxy.ValidAPIKeyID(keyID) {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	ctx := r.Context()
	k, err := s.apiKeys.APIKeyByID(ctx, keyID)
	if errors.Is(err, proxy.ErrAPIKeyNotFound) {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	if err != nil {
		s.adminFailed(w, r, "read api key", err)
		return
	}
	if !k.RevokedAt.IsZero() {
		s.backToUser(w, k.Subject, "key-revoked")
		return
	}
	if k, err = s.apiKeys.RevokeAPIKey(ctx, keyID, s.now()); err != nil {
		s.adminFailed(w, r, "revoke api key", err)
		return
	}
	by := adminActor(id)
	if err := s.audit(ctx, proxy.AuditEntry{At: s.now(), Actor: by, Action: proxy.ActionAPIKeyRevoked, Subject: k.Subject,
		Detail: proxy.KeyAuditDetail(k)}); err != nil {
		s.adminFailed(w, r, "the key was revoked", err)
		return
	}
	s.log.InfoContext(ctx, "admin: api key revoked", "key_id", k.ID, "subject", k.Subject.String(), "actor", by)
	s.backToUser(w, k.Subject, "key-revoked")
}

// UserSessionsEnder ends every Clerk session of a user, so that no
// handshake mints the user a fresh token afterwards. Implemented by
// proxy/clerk.Client.
type UserSessionsEnder interface {
	EndUserSessions(ctx context.Context, userID string) (ended int, err error)
}

// POST <prefix>/admin/users/{id}/revoke-sessions: every tollgate session
// of the user issued until now is refused (RevokeUser) and its open
// WebSockets and streams close, and every active Clerk session of the user
// is revoked, so the next page load finds the user signed out rather than
// handshaking a fresh token. tollgate's part is done first: it applies at
// once even when Clerk cannot be reached, which the page then says.
func (s *Server) handleAdminRevokeSessions(w http.ResponseWriter, r *http.Request) {
	id := s.adminForm(w, r)
	if id == nil {
		return
	}
	subject, ok := pathSubject(r)
	if !ok || subject.Kind != proxy.SubjectUser {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	ctx := r.Context()
	if err := s.RevokeUser(ctx, subject.ID); err != nil {
		s.adminFailed(w, r, "revoke sessions", err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ended, clerkErr := s.userEnder.EndUserSessions(cctx, subject.ID)
	cancel()
	detail := fmt.Sprintf("%d Clerk sessions ended", ended)
	if clerkErr != nil {
		detail += "; Clerk failed: " + clerkErr.Error()
	}
	if err := s.audit(ctx, proxy.AuditEntry{At: s.now(), Actor: adminActor(id), Action: ActionSessionsRevoked, Subject: subject, Detail: detail}); err != nil {
		s.adminFailed(w, r, "the sessions were revoked", err)
		return
	}
	s.log.InfoContext(ctx, "admin: sessions revoked", "subject", subject.String(), "actor", adminActor(id), "clerk_sessions_ended", ended)
	if clerkErr != nil {
		s.adminFailed(w, r, "tollgate's sessions were revoked, but Clerk's could not all be ended", clerkErr)
		return
	}
	s.backToUser(w, subject, "sessions-revoked")
}

// adminNavigation admits to the console only what a browser sends when a
// person opens a page or presses a button: a top-level navigation
// (Sec-Fetch-Mode navigate, Sec-Fetch-Dest document) and, for an action,
// one the person started (Sec-Fetch-User ?1). The console shares
// public_url's origin with the app, so CrossOriginProtection alone would let
// a script on any of the app's pages fetch the export or post an action
// with the admin's cookies; a script cannot set these headers, and cannot
// read a page it did not fetch (frame-ancestors 'none'). Requests without
// Sec-Fetch-Mode come from no browser and pass on to the usual checks
// (docs/SECURITY.md, "Trust boundaries").
func (s *Server) adminNavigation(action bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header
		if h.Get("Sec-Fetch-Mode") != "" &&
			(h.Get("Sec-Fetch-Mode") != "navigate" || h.Get("Sec-Fetch-Dest") != "document" || action && h.Get("Sec-Fetch-User") != "?1") {
			entryFrom(r.Context()).reason = "admin_not_a_navigation"
			s.writeError(w, r, http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// mountAdmin mounts the console: pages for admins, actions as same-origin
// POSTs a person started.
func (s *Server) mountAdmin(mux *http.ServeMux) {
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entryFrom(r.Context()).reason = "cross_origin"
		s.writeError(w, r, http.StatusForbidden)
	}))
	page := func(pattern string, h http.HandlerFunc) {
		mux.Handle("GET "+s.prefix+pattern, s.adminNavigation(false, s.withIdentity(AuthRequired, h)))
	}
	action := func(pattern string, h http.HandlerFunc) {
		mux.Handle("POST "+s.prefix+pattern, csrf.Handler(s.adminNavigation(true, s.withIdentity(AuthRequired, h))))
	}
	page("/admin", s.handleAdminDashboard)
	page("/admin/users", s.handleAdminUsers)
	page("/admin/users.csv", s.handleAdminExport)
	page("/admin/users/{id}", s.handleAdminUser)
	action("/admin/users/{id}/comps", s.handleAdminGrantComp)
	action("/admin/comps/{id}/revoke", s.handleAdminRevokeComp)
	action("/admin/users/{id}/sync", s.handleAdminSync)
	action("/admin/users/{id}/revoke-sessions", s.handleAdminRevokeSessions)
	action("/admin/keys/{id}/revoke", s.handleAdminRevokeKey)
	mux.HandleFunc("GET "+s.prefix+"/assets/admin.css", s.pages.serveAdminCSS)
}

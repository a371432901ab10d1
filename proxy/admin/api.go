package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// User is one row of GET /api/users: a Clerk user, or an organisation that
// pays.
type User struct {
	ID         string    `json:"id"`   // user_… or org_…
	Kind       string    `json:"kind"` // "user" or "org"
	Email      string    `json:"email,omitempty"`
	OrgIDs     []string  `json:"org_ids,omitempty"`
	CustomerID string    `json:"customer_id,omitempty"`
	Plans      []string  `json:"plans"`            // the plans that grant access now
	Held       []string  `json:"held,omitempty"`   // plans held that grant nothing (none grants)
	Status     string    `json:"status,omitempty"` // best subscription status; "" with none
	PeriodEnd  time.Time `json:"period_end,omitzero"`
	Comp       bool      `json:"comp,omitempty"` // a comp is among what grants the plans
	FirstSeen  time.Time `json:"first_seen,omitzero"`
	LastSeen   time.Time `json:"last_seen,omitzero"`
}

// UsersPage is the answer of GET /api/users. Next, when set, is the after
// parameter of the following page.
type UsersPage struct {
	Users []User `json:"users"`
	Next  string `json:"next,omitempty"`
}

// Subscription is a Stripe subscription as tollgate last synced it.
type Subscription struct {
	ID                string    `json:"id"`
	CustomerID        string    `json:"customer_id,omitempty"`
	Status            string    `json:"status"`
	Plan              string    `json:"plan,omitempty"`
	PriceIDs          []string  `json:"price_ids,omitempty"`
	CurrentPeriodEnd  time.Time `json:"current_period_end,omitzero"`
	TrialEnd          time.Time `json:"trial_end,omitzero"`
	CancelAtPeriodEnd bool      `json:"cancel_at_period_end,omitempty"`
	PastDueSince      time.Time `json:"past_due_since,omitzero"`
	SyncedAt          time.Time `json:"synced_at,omitzero"`
}

// HistoryEntry is one change of a subscription.
type HistoryEntry struct {
	At                time.Time `json:"at"`
	SubscriptionID    string    `json:"subscription_id"`
	Plan              string    `json:"plan,omitempty"`
	Status            string    `json:"status"`
	PeriodEnd         time.Time `json:"period_end,omitzero"`
	CancelAtPeriodEnd bool      `json:"cancel_at_period_end,omitempty"`
}

// Comp is a complimentary grant.
type Comp struct {
	ID           string    `json:"id"`
	Subject      string    `json:"subject"` // user_… or org_…
	Plan         string    `json:"plan"`
	ExpiresAt    time.Time `json:"expires_at"`
	By           string    `json:"by,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
	Active       bool      `json:"active"` // neither revoked nor expired
	Revoked      bool      `json:"revoked,omitempty"`
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	RevokedBy    string    `json:"revoked_by,omitempty"`
	RevokeReason string    `json:"revoke_reason,omitempty"`
}

// AuditEntry is one admin action.
type AuditEntry struct {
	At      time.Time `json:"at"`
	Actor   string    `json:"actor,omitempty"`
	Action  string    `json:"action"`
	Subject string    `json:"subject,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// UserDetail is the answer of GET /api/users/{id}.
type UserDetail struct {
	User
	Subscriptions []Subscription `json:"subscriptions"`
	History       []HistoryEntry `json:"history"`
	Comps         []Comp         `json:"comps"`
	Audit         []AuditEntry   `json:"audit"`
}

// CompRequest is the body of POST /api/users/{id}/comps: a plan, an expiry
// (an RFC 3339 time, or a number of days from now) and why.
type CompRequest struct {
	Plan      string    `json:"plan"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Days      int       `json:"days,omitempty"`
	Reason    string    `json:"reason"`
}

// SyncResult is the answer of POST /api/sync.
type SyncResult struct {
	Status   string `json:"status"`             // "synced" (one customer) or "started" (all, in the background)
	Customer string `json:"customer,omitempty"` // the synced customer
}

func userOf(u *proxy.UserSummary) User {
	out := User{ID: u.ID, Kind: string(u.Kind), Email: u.Email, OrgIDs: u.OrgIDs, CustomerID: u.CustomerID, Plans: u.Plans, Held: u.Held,
		Status: string(u.Status), PeriodEnd: u.PeriodEnd, Comp: u.Comp, FirstSeen: u.FirstSeen, LastSeen: u.LastSeen}
	if out.Plans == nil {
		out.Plans = []string{}
	}
	return out
}

func compOf(c *proxy.Comp, now time.Time) Comp {
	return Comp{ID: c.ID, Subject: c.Subject.ID, Plan: c.Plan, ExpiresAt: c.ExpiresAt, By: c.By, Reason: c.Reason, CreatedAt: c.CreatedAt,
		Active: c.Active(now), Revoked: c.Revoked, RevokedAt: c.RevokedAt, RevokedBy: c.RevokedBy, RevokeReason: c.RevokeReason}
}

func auditOf(e *proxy.AuditEntry) AuditEntry {
	return AuditEntry{At: e.At, Actor: e.Actor, Action: e.Action, Subject: e.Subject.ID, Detail: e.Detail}
}

// subjectOf reads a bare Clerk user or organisation ID (user_…, org_…).
func subjectOf(id string) (proxy.Subject, bool) {
	s, err := proxy.ParseSubject(id)
	return s, err == nil && !strings.Contains(id, ":")
}

// needStore answers 503 when no store is configured.
func (h *handler) needStore(w http.ResponseWriter) bool {
	if h.cfg.Store == nil {
		writeError(w, http.StatusServiceUnavailable, "no store: billing (stripe) is not configured")
		return false
	}
	return true
}

// internal logs err and answers 500 with what failed.
func (h *handler) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	h.log.ErrorContext(r.Context(), "admin API: "+what, "err", err, "path", r.URL.Path)
	writeError(w, http.StatusInternalServerError, what+": "+err.Error())
}

// GET /api/users?status=&plan=&after=&limit=
func (h *handler) listUsers(w http.ResponseWriter, r *http.Request) {
	if !h.needStore(w) {
		return
	}
	q := r.URL.Query()
	f := proxy.UserFilter{Status: q.Get("status"), Plan: q.Get("plan"), After: q.Get("after"), Policy: h.cfg.Access()}
	if f.Status != "" && f.Status != proxy.StatusNone && !proxy.SubscriptionStatus(f.Status).Known() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown status %q: want a Stripe subscription status (active, trialing, past_due, canceled, …) or %q", f.Status, proxy.StatusNone))
		return
	}
	if f.Plan != "" && h.plan(f.Plan) == nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown plan %q: want one of %s", f.Plan, h.planKeys()))
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > proxy.MaxUsersPage {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be between 1 and %d", proxy.MaxUsersPage))
			return
		}
		f.Limit = n
	}
	users, next, err := h.cfg.Store.ListUsers(r.Context(), f)
	if errors.Is(err, proxy.ErrBadCursor) {
		writeError(w, http.StatusBadRequest, "after: not a cursor this listing handed out (the next of a previous page)")
		return
	}
	if err != nil {
		h.internal(w, r, "listing users", err)
		return
	}
	page := UsersPage{Users: make([]User, len(users)), Next: next}
	for i := range users {
		page.Users[i] = userOf(&users[i])
	}
	writeJSON(w, http.StatusOK, page)
}

// GET /api/users/{id}
func (h *handler) userDetail(w http.ResponseWriter, r *http.Request) {
	if !h.needStore(w) {
		return
	}
	subject, ok := subjectOf(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusBadRequest, "want a Clerk user ID (user_…) or organisation ID (org_…)")
		return
	}
	d, err := h.cfg.Store.UserDetail(r.Context(), subject, detailLimit)
	if errors.Is(err, proxy.ErrNotFound) {
		writeError(w, http.StatusNotFound, "tollgate knows nothing of "+subject.ID)
		return
	}
	if err != nil {
		h.internal(w, r, "reading "+subject.ID, err)
		return
	}
	now := h.now()
	sum := d.Summary(h.cfg.Access(), now)
	out := UserDetail{User: userOf(&sum), Subscriptions: []Subscription{}, History: []HistoryEntry{}, Comps: []Comp{}, Audit: []AuditEntry{}}
	for _, s := range d.Subscriptions {
		out.Subscriptions = append(out.Subscriptions, Subscription{ID: s.ID, CustomerID: s.CustomerID, Status: string(s.Status), Plan: s.Plan,
			PriceIDs: s.PriceIDs, CurrentPeriodEnd: s.CurrentPeriodEnd, TrialEnd: s.TrialEnd, CancelAtPeriodEnd: s.CancelAtPeriodEnd,
			PastDueSince: s.PastDueSince, SyncedAt: s.SyncedAt})
	}
	for _, e := range d.History {
		out.History = append(out.History, HistoryEntry{At: e.At, SubscriptionID: e.SubscriptionID, Plan: e.Plan, Status: string(e.Status),
			PeriodEnd: e.PeriodEnd, CancelAtPeriodEnd: e.CancelAtPeriodEnd})
	}
	for i := range d.Comps {
		out.Comps = append(out.Comps, compOf(&d.Comps[i], now))
	}
	for i := range d.Audit {
		out.Audit = append(out.Audit, auditOf(&d.Audit[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

// decodeJSON decodes a small JSON body strictly; an empty body leaves v as
// it is.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	return nil
}

// POST /api/users/{id}/comps
func (h *handler) grantComp(w http.ResponseWriter, r *http.Request) {
	if !h.needStore(w) {
		return
	}
	subject, ok := subjectOf(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusBadRequest, "want a Clerk user ID (user_…) or organisation ID (org_…)")
		return
	}
	var req CompRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := h.now()
	expires, msg := h.validateComp(subject, &req, now)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	by := actor(r)
	c := proxy.Comp{ID: proxy.NewCompID(), Subject: subject, Plan: req.Plan, ExpiresAt: expires, By: by, Reason: req.Reason, CreatedAt: now}
	ctx := r.Context()
	if err := h.cfg.Store.PutComp(ctx, c); err != nil {
		h.internal(w, r, "storing the comp", err)
		return
	}
	auditErr := h.cfg.Store.Audit(ctx, proxy.AuditEntry{At: now, Actor: by, Action: ActionCompGranted, Subject: subject,
		Detail: fmt.Sprintf("%s: plan %s until %s: %s", c.ID, c.Plan, expires.Format(time.RFC3339), c.Reason)})
	h.dropCached(subject)
	h.log.InfoContext(ctx, "admin: comp granted", "comp", c.ID, "subject", subject.String(), "plan", c.Plan, "expires_at", expires, "actor", by)
	if auditErr != nil {
		h.internal(w, r, "the comp was granted, but writing its audit entry failed", auditErr)
		return
	}
	w.Header().Set("Location", "/api/users/"+subject.ID)
	writeJSON(w, http.StatusCreated, compOf(&c, now))
}

// validateComp checks a comp request; msg is the client's error.
func (h *handler) validateComp(subject proxy.Subject, req *CompRequest, now time.Time) (expires time.Time, msg string) {
	plan := h.plan(req.Plan)
	switch {
	case req.Plan == "":
		return expires, "plan is required: want one of " + h.planKeys()
	case plan == nil:
		return expires, fmt.Sprintf("unknown plan %q: want one of %s", req.Plan, h.planKeys())
	case plan.Scope == proxy.SubjectOrg && subject.Kind != proxy.SubjectOrg:
		return expires, fmt.Sprintf("plan %q is billed to organisations: comp an org_… ID", req.Plan)
	case plan.Scope != proxy.SubjectOrg && subject.Kind == proxy.SubjectOrg:
		return expires, fmt.Sprintf("plan %q is billed to users: comp a user_… ID", req.Plan)
	case !req.ExpiresAt.IsZero() && req.Days != 0:
		return expires, "give expires_at or days, not both"
	case req.Days != 0 && (req.Days < 1 || req.Days > maxCompDays):
		return expires, fmt.Sprintf("days must be between 1 and %d", maxCompDays)
	case req.ExpiresAt.IsZero() && req.Days == 0:
		return expires, "an expiry is required: expires_at (RFC 3339) or days"
	case strings.TrimSpace(req.Reason) == "":
		return expires, "reason is required (it goes to the audit trail)"
	case len(req.Reason) > maxReasonLen:
		return expires, fmt.Sprintf("reason is longer than %d bytes", maxReasonLen)
	}
	expires = req.ExpiresAt
	if req.Days != 0 {
		expires = now.AddDate(0, 0, req.Days)
	}
	switch {
	case !expires.After(now):
		return expires, "expires_at is in the past"
	case expires.After(now.AddDate(0, 0, maxCompDays)):
		return expires, fmt.Sprintf("expires_at is more than %d days away", maxCompDays)
	}
	req.Reason = strings.TrimSpace(req.Reason)
	return expires.UTC(), ""
}

// plan returns the configured plan named key, or nil.
func (h *handler) plan(key string) *proxy.Plan {
	plans := h.cfg.Plans()
	for i := range plans {
		if plans[i].Key == key {
			return &plans[i]
		}
	}
	return nil
}

func (h *handler) planKeys() string {
	plans := h.cfg.Plans()
	keys := make([]string, len(plans))
	for i := range plans {
		keys[i] = plans[i].Key
	}
	if len(keys) == 0 {
		return "(no plans configured)"
	}
	return strings.Join(keys, ", ")
}

func (h *handler) dropCached(s proxy.Subject) {
	if h.cfg.Cache != nil {
		h.cfg.Cache.Remove(s)
	}
}

// DELETE /api/comps/{id}[?reason=…], or a JSON body {"reason": …}
func (h *handler) revokeComp(w http.ResponseWriter, r *http.Request) {
	if !h.needStore(w) {
		return
	}
	id := r.PathValue("id")
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	reason := strings.TrimSpace(body.Reason)
	if reason == "" {
		reason = strings.TrimSpace(r.URL.Query().Get("reason"))
	}
	if len(reason) > maxReasonLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reason is longer than %d bytes", maxReasonLen))
		return
	}
	ctx := r.Context()
	c, err := h.cfg.Store.Comp(ctx, id)
	if errors.Is(err, proxy.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no comp "+id)
		return
	}
	if err != nil {
		h.internal(w, r, "reading the comp", err)
		return
	}
	now := h.now()
	if c.Revoked {
		writeJSON(w, http.StatusOK, compOf(&c, now)) // already done: nothing to audit
		return
	}
	by := actor(r)
	if err := h.cfg.Store.RevokeComp(ctx, id, by, reason); err != nil {
		h.internal(w, r, "revoking the comp", err)
		return
	}
	auditErr := h.cfg.Store.Audit(ctx, proxy.AuditEntry{At: now, Actor: by, Action: ActionCompRevoked, Subject: c.Subject,
		Detail: strings.TrimSuffix(fmt.Sprintf("%s: plan %s: %s", id, c.Plan, reason), ": ")})
	h.dropCached(c.Subject)
	h.log.InfoContext(ctx, "admin: comp revoked", "comp", id, "subject", c.Subject.String(), "actor", by)
	if auditErr != nil {
		h.internal(w, r, "the comp was revoked, but writing its audit entry failed", auditErr)
		return
	}
	if c, err = h.cfg.Store.Comp(ctx, id); err != nil {
		h.internal(w, r, "reading the comp", err)
		return
	}
	writeJSON(w, http.StatusOK, compOf(&c, now))
}

// syncRequest is what POST /api/sync accepts, as a JSON body, a form or
// the query string.
type syncRequest struct {
	Customer string `json:"customer"`
	User     string `json:"user"` // user_… or org_…
}

// POST /api/sync: customer=cus_… or user=user_…|org_… syncs that customer
// now; neither starts a sync of all customers in the background (202).
func (h *handler) sync(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Billing == nil || h.cfg.Store == nil {
		writeError(w, http.StatusServiceUnavailable, "no billing: stripe is not configured")
		return
	}
	var req syncRequest
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		if err := decodeJSON(w, r, &req); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	} else {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := r.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, "invalid form: "+err.Error())
			return
		}
	}
	req.Customer = strings.TrimSpace(cmp.Or(req.Customer, r.FormValue("customer")))
	req.User = strings.TrimSpace(cmp.Or(req.User, r.FormValue("user"), r.FormValue("org")))
	ctx := r.Context()
	by := actor(r)
	audit := func(subject proxy.Subject, detail string) {
		if err := h.cfg.Store.Audit(ctx, proxy.AuditEntry{At: h.now(), Actor: by, Action: ActionSyncRequested, Subject: subject, Detail: detail}); err != nil {
			h.log.ErrorContext(ctx, "admin: audit of a sync request", "err", err)
		}
	}
	var subject proxy.Subject
	switch {
	case req.Customer != "" && req.User != "":
		writeError(w, http.StatusBadRequest, "give customer or user, not both")
		return
	case req.Customer != "":
		if !strings.HasPrefix(req.Customer, "cus_") || strings.ContainsAny(req.Customer, "/?#% ") {
			writeError(w, http.StatusBadRequest, "customer must be a Stripe customer ID (cus_…)")
			return
		}
	case req.User != "":
		var ok bool
		if subject, ok = subjectOf(req.User); !ok {
			writeError(w, http.StatusBadRequest, "user must be a Clerk user ID (user_…) or organisation ID (org_…)")
			return
		}
		cus, err := h.cfg.Store.CustomerOf(ctx, subject)
		if err != nil {
			h.internal(w, r, "finding the customer", err)
			return
		}
		if cus == "" {
			writeError(w, http.StatusNotFound, subject.ID+" has no Stripe customer")
			return
		}
		req.Customer = cus
	default:
		audit(proxy.Subject{}, "all customers")
		h.log.InfoContext(ctx, "admin: sync of all customers requested", "actor", by)
		h.cfg.Background(h.syncAll)
		writeJSON(w, http.StatusAccepted, SyncResult{Status: "started"})
		return
	}
	audit(subject, "customer "+req.Customer)
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if err := h.cfg.Billing.SyncCustomer(sctx, req.Customer, ""); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, proxy.ErrStripeUnavail) || errors.Is(err, context.DeadlineExceeded) {
			status = http.StatusBadGateway
		}
		h.log.WarnContext(ctx, "admin: sync failed", "customer", req.Customer, "err", err)
		writeError(w, status, "sync failed: "+err.Error())
		return
	}
	h.log.InfoContext(ctx, "admin: customer synced", "customer", req.Customer, "actor", by)
	writeJSON(w, http.StatusOK, SyncResult{Status: "synced", Customer: req.Customer})
}

// syncAll runs a sync of all customers, bounded by the handler's context
// (not the request's: it outlives it).
func (h *handler) syncAll() {
	start := h.now()
	n, err := h.cfg.Billing.SyncAll(h.ctx)
	if err != nil {
		h.log.Warn("admin: sync of all customers", "err", err, "customers", n)
		return
	}
	h.log.Info("admin: synced all customers", "customers", n, "took", h.now().Sub(start).Round(time.Millisecond))
}

// GET /api/backup streams a consistent snapshot of the store.
func (h *handler) backup(w http.ResponseWriter, r *http.Request) {
	if !h.needStore(w) {
		return
	}
	now := h.now().UTC()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="tollgate-%s.db"`, now.Format("20060102T150405Z")))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	n, err := h.cfg.Store.Backup(w)
	if err != nil {
		h.log.ErrorContext(r.Context(), "admin: backup", "err", err, "bytes", n)
		if n == 0 {
			w.Header().Del("Content-Disposition")
			writeError(w, http.StatusInternalServerError, "backup failed: "+err.Error())
			return
		}
		panic(http.ErrAbortHandler) // cut the transfer short: a truncated file must not look complete
	}
	by := actor(r)
	if err := h.cfg.Store.Audit(context.WithoutCancel(r.Context()), proxy.AuditEntry{At: now, Actor: by, Action: ActionBackup, Detail: fmt.Sprintf("%d bytes", n)}); err != nil {
		h.log.ErrorContext(r.Context(), "admin: audit of a backup", "err", err)
	}
	h.log.InfoContext(r.Context(), "admin: backup downloaded", "bytes", n, "actor", by)
}

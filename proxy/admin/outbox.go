package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// The usage outbox (README "Usage billing"): what waits to be sent to
// Stripe as meter events, and the rows flagged for an admin, who may send
// one again or mark it settled, each audited.

// Outbox is the store's usage outbox: proxy/bolt's outbox.go, proxy/postgres's usage.go.
type Outbox interface {
	OutboxStats(ctx context.Context) (proxy.OutboxStats, error)
	FlaggedUsage(ctx context.Context, limit int) ([]proxy.OutboxEntry, error)
	UsageEntry(ctx context.Context, seq uint64) (proxy.OutboxEntry, error)
	SetUsageState(ctx context.Context, seq uint64, st proxy.OutboxState) error
}

// Audit actions on the outbox.
const (
	ActionUsageRetried  = "usage.retried"
	ActionUsageResolved = "usage.resolved"
)

const flaggedLimit = 100

// OutboxSummary is GET /api/outbox.
type OutboxSummary struct {
	Pending       int          `json:"pending"`
	Flagged       int          `json:"flagged"`
	Sent          int          `json:"sent"`
	Oldest        time.Time    `json:"oldest,omitzero"`
	OldestSeconds float64      `json:"oldest_seconds"`
	FlaggedRows   []UsageEntry `json:"flagged_rows"` // the first 100
}

// UsageEntry is one outbox row as the API shows it.
type UsageEntry struct {
	Seq        uint64    `json:"seq"`
	Identifier string    `json:"identifier"`
	Subject    string    `json:"subject"`
	Customer   string    `json:"customer"`
	EventName  string    `json:"event_name"`
	At         time.Time `json:"at"`
	Value      int64     `json:"value"`
	Status     string    `json:"status"`
	Attempts   int       `json:"attempts"`
	Note       string    `json:"note,omitempty"`
}

// UsageEntryOf renders a row for the API (and the console).
func UsageEntryOf(e *proxy.OutboxEntry) UsageEntry {
	return UsageEntry{Seq: e.Row.Seq, Identifier: e.Row.Identifier(), Subject: e.Row.Subject.String(), Customer: e.Row.Customer,
		EventName: e.Row.EventName, At: e.Row.At, Value: e.Row.Value, Status: e.State.Status.String(),
		Attempts: e.State.Attempts, Note: e.State.Note}
}

func (h *handler) needOutbox(w http.ResponseWriter) bool {
	if h.cfg.Outbox == nil || h.cfg.Store == nil {
		writeError(w, http.StatusServiceUnavailable, "no usage outbox: there is no store")
		return false
	}
	return true
}

// GET /api/outbox
func (h *handler) outbox(w http.ResponseWriter, r *http.Request) {
	if !h.needOutbox(w) {
		return
	}
	ctx := r.Context()
	st, err := h.cfg.Outbox.OutboxStats(ctx)
	if err != nil {
		h.internal(w, r, "reading the outbox", err)
		return
	}
	flagged, err := h.cfg.Outbox.FlaggedUsage(ctx, flaggedLimit)
	if err != nil {
		h.internal(w, r, "reading the flagged rows", err)
		return
	}
	out := OutboxSummary{Pending: st.Pending, Flagged: st.Flagged, Sent: st.Sent, Oldest: st.Oldest, FlaggedRows: []UsageEntry{}}
	if !st.Oldest.IsZero() {
		out.OldestSeconds = max(h.now().Sub(st.Oldest), 0).Seconds()
	}
	for i := range flagged {
		out.FlaggedRows = append(out.FlaggedRows, UsageEntryOf(&flagged[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

// POST /api/outbox/{seq}: {"action": "retry"} sends a flagged row again
// (the admin checked Stripe does not hold it: its meter event summary, the
// dashboard); {"action": "resolve"} marks it settled, never to be sent
// (Stripe holds it, or it is not to be billed). A row already sent cannot
// change.
func (h *handler) outboxAction(w http.ResponseWriter, r *http.Request) {
	if !h.needOutbox(w) {
		return
	}
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		writeError(w, http.StatusNotFound, "no such usage row")
		return
	}
	var body struct {
		Action string `json:"action"`
		Reason string `json:"reason"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(body.Reason) > maxReasonLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reason is longer than %d bytes", maxReasonLen))
		return
	}
	ctx := r.Context()
	e, err := h.cfg.Outbox.UsageEntry(ctx, seq)
	if err != nil {
		writeError(w, http.StatusNotFound, "no such usage row")
		return
	}
	if e.State.Status != proxy.OutboxFlagged {
		writeError(w, http.StatusConflict, "the row is "+e.State.Status.String()+"; only a flagged row can be sent again or resolved")
		return
	}
	now := h.now()
	by := actor(r)
	st := e.State
	var action string
	switch body.Action {
	case "retry":
		// A new first attempt: the sender's day starts again.
		st = proxy.OutboxState{Status: proxy.OutboxPending, Attempts: e.State.Attempts, Note: "sent again by " + by}
		action = ActionUsageRetried
	case "resolve":
		st.Status, st.Done, st.Note = proxy.OutboxSent, now, "resolved by "+by
		action = ActionUsageResolved
	default:
		writeError(w, http.StatusBadRequest, `action: want "retry" or "resolve"`)
		return
	}
	if err := h.cfg.Outbox.SetUsageState(ctx, seq, st); err != nil {
		if errors.Is(err, context.Canceled) {
			return
		}
		h.internal(w, r, "changing the row", err)
		return
	}
	auditErr := h.cfg.Store.Audit(ctx, proxy.AuditEntry{At: now, Actor: by, Action: action, Subject: e.Row.Subject,
		Detail: fmt.Sprintf("%s: %d %s", e.Row.Identifier(), e.Row.Value, e.Row.EventName) + reasonSuffix(body.Reason)})
	h.log.InfoContext(ctx, "admin: usage row "+body.Action, "identifier", e.Row.Identifier(), "actor", by)
	if auditErr != nil {
		h.internal(w, r, "the row changed, but writing its audit entry failed", auditErr)
		return
	}
	e.State = st
	writeJSON(w, http.StatusOK, UsageEntryOf(&e))
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

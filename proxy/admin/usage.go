package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Usage reads a subject's quota counters this period, flushed or not.
// Implemented by *limits.Limiter.
type Usage interface {
	Usage(ctx context.Context, subject proxy.Subject) ([]proxy.QuotaCount, error)
}

// QuotaUse is one counter in GET /api/users/{id}/usage (README "Limits").
type QuotaUse struct {
	Plan  string    `json:"plan"`
	Route string    `json:"route"` // the limits: entry: a route ID or "*"
	Used  int64     `json:"used"`
	Quota int64     `json:"quota,omitempty"` // 0: the entry is no longer configured
	Start time.Time `json:"period_start"`
	End   time.Time `json:"period_end"`
}

// GET /api/users/{id}/usage
func (h *handler) usage(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Usage == nil {
		writeError(w, http.StatusServiceUnavailable, "no plan has limits")
		return
	}
	subject, ok := subjectOf(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusBadRequest, "want a Clerk user ID (user_…) or organisation ID (org_…)")
		return
	}
	counts, err := h.cfg.Usage.Usage(r.Context(), subject)
	if err != nil {
		h.internal(w, r, "reading usage", err)
		return
	}
	plans := h.cfg.Plans()
	var free *proxy.Plan
	if h.cfg.Free != nil {
		free = h.cfg.Free()
	}
	out := make([]QuotaUse, 0, len(counts))
	for _, c := range counts {
		u := QuotaUse{Plan: c.Key.Plan, Route: c.Key.Route, Used: c.Used, Start: c.Key.Start, End: c.Key.End}
		var p *proxy.Plan
		for i := range plans {
			if plans[i].Key == c.Key.Plan {
				p = &plans[i]
			}
		}
		if p == nil && free != nil && c.Key.Plan == free.Key {
			p = free
		}
		if p != nil {
			for _, e := range p.Limits {
				if e.Route == c.Key.Route {
					u.Quota = e.Limit.Quota
				}
			}
		}
		out = append(out, u)
	}
	writeJSON(w, http.StatusOK, out)
}

// Replicas lists the replicas sharing the store by their heartbeats.
// Implemented by *postgres.Replicas; nil on bbolt (one replica).
type Replicas interface {
	LiveReplicas() int
	List(ctx context.Context) ([]proxy.ReplicaHeartbeat, error)
}

// GET /api/replicas: the live count this replica enforces rates by, and
// every heartbeat row, live or stale (README "Limits").
func (h *handler) replicas(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Replicas == nil {
		writeError(w, http.StatusServiceUnavailable, "one replica: the store (bbolt) is not shared, so there are no heartbeats")
		return
	}
	rows, err := h.cfg.Replicas.List(r.Context())
	if err != nil {
		h.internal(w, r, "reading the replicas' heartbeats", err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Live     int                      `json:"live"`
		Replicas []proxy.ReplicaHeartbeat `json:"replicas"`
	}{h.cfg.Replicas.LiveReplicas(), rows})
}

package gateway

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// UserRow is one line of the public admin page's user list.
type UserRow struct {
	ID         string
	Email      string
	CustomerID string
	Plans      []string
	Status     proxy.SubscriptionStatus
	PeriodEnd  time.Time
	LastSeen   time.Time
}

// UserLister lists users for the admin page. Implemented over proxy/bolt by
// main.
type UserLister interface {
	UserRows(ctx context.Context, status, plan, after string, limit int) (rows []UserRow, next string, err error)
}

type adminPage struct {
	Rows           []UserRow
	Next           string
	Status, Plan   string
	Plans          []proxy.Plan
	Statuses       []proxy.SubscriptionStatus
	NextURL        string
	Unavailable    bool
	AdminListenSet bool
}

// handleAdminPage serves <prefix>/admin: the site owner's list of users and
// what they pay for, for the Clerk users in admin.users only. Everyone else
// gets 403, signed in or not (after signing in).
func (s *Server) handleAdminPage(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	id := IdentityFromContext(r.Context())
	if id == nil || !slices.Contains(s.cfg.Admin.Users, id.UserID) {
		entryFrom(r.Context()).reason = "not_an_admin"
		s.writeError(w, r, http.StatusForbidden)
		return
	}
	q := r.URL.Query()
	page := adminPage{Status: q.Get("status"), Plan: q.Get("plan"), Plans: s.cfg.Plans,
		Statuses: proxy.Statuses()}
	if s.users == nil {
		page.Unavailable = true
	} else {
		rows, next, err := s.users.UserRows(r.Context(), page.Status, page.Plan, q.Get("after"), 100)
		if err != nil {
			s.log.ErrorContext(r.Context(), "admin page: users", "err", err)
			s.writeError(w, r, http.StatusServiceUnavailable)
			return
		}
		page.Rows, page.Next = rows, next
		if next != "" {
			v := r.URL.Query()
			v.Set("after", next)
			page.NextURL = s.prefix + "/admin?" + v.Encode()
		}
	}
	s.pages.render(w, r, http.StatusOK, "admin", page)
}

package gateway

import (
	"context"
	"net/http"
	"slices"

	"github.com/tollgate/tollgate/proxy"
)

// UserLister lists users for the admin page. Implemented by
// proxy/bolt.Store.
type UserLister interface {
	ListUsers(ctx context.Context, f proxy.UserFilter) (users []proxy.UserSummary, next string, err error)
}

type adminPage struct {
	Rows           []proxy.UserSummary
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
		rows, next, err := s.users.ListUsers(r.Context(), proxy.UserFilter{Status: page.Status, Plan: page.Plan, After: q.Get("after"), Limit: 100,
			Policy: s.cfg.Stripe.Access()})
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

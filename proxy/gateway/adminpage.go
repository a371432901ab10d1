package gateway

import (
	"context"
	"encoding/csv"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// The admin console (<prefix>/admin) is for the Clerk users in admin.users
// only; everyone else gets 403, signed in or not (after signing in). It
// reads the store through AdminStore: a dashboard of counters the store
// keeps as it writes, a paged, sorted, filtered and searchable list of
// users read from the store's listing index, and one user's page, whose
// actions are same-origin POSTs (adminactions.go), each audited.

// AdminStore is what the admin console reads and writes. Implemented by
// proxy/bolt.Store.
type AdminStore interface {
	ListPage(ctx context.Context, f proxy.UserFilter) (proxy.UserPage, error)
	Dashboard(ctx context.Context) (proxy.Dashboard, error)
	UserDetail(ctx context.Context, subject proxy.Subject, limit int) (proxy.UserDetail, error)
	CustomerOf(ctx context.Context, subject proxy.Subject) (string, error)
	Comp(ctx context.Context, id string) (proxy.Comp, error)
	PutComp(ctx context.Context, c proxy.Comp) error
	RevokeComp(ctx context.Context, id, by, reason string) error
	Audit(ctx context.Context, e proxy.AuditEntry) error
}

// CustomerSyncer re-reads one Stripe customer now (the user page's "Sync
// from Stripe"). Implemented by proxy/stripe.Billing.
type CustomerSyncer interface {
	SyncCustomer(ctx context.Context, customerID, eventID string) error
}

// EntitlementsForgetter drops a subject's cached entitlements after a comp
// changes them. Implemented by proxy/cache.EntitlementCache.
type EntitlementsForgetter interface {
	Remove(s proxy.Subject)
}

const (
	adminPageSize    = 50
	adminDetailLimit = 100
)

// admin checks that the visitor is an admin; otherwise it answers 403 and
// returns nil.
func (s *Server) admin(w http.ResponseWriter, r *http.Request) *proxy.Identity {
	noStore(w)
	id := IdentityFromContext(r.Context())
	// An admin's API key is no admin: keys are for the app's API, and a
	// leaked one must not open the console.
	if id == nil || id.IsAPIKey() || !slices.Contains(s.cfg.Admin.Users, id.UserID) {
		entryFrom(r.Context()).reason = "not_an_admin"
		s.writeError(w, r, http.StatusForbidden)
		return nil
	}
	return id
}

// adminNav is what every admin page shows above its content.
type adminNav struct {
	Section     string // dashboard, users, user
	Unavailable bool   // no store: nothing to show
}

type dashboardPage struct {
	adminNav
	D                   proxy.Dashboard
	Days                int // the chart's window: 30 or 90
	New, Canceled       int64
	New30, Canceled30   int64
	DailyChart          template.HTML
	PlanChart           template.HTML
	TrialChart          template.HTML
	Rate, RecentRate    string
	Subscriptions       int64
	PlanNames           map[string]string
	TrialMRRIsEstimated bool
	// Outbox is the usage outbox (nil: no metered plan, no rows).
	Outbox *outboxPanel
}

// handleAdminDashboard serves <prefix>/admin.
func (s *Server) handleAdminDashboard(w http.ResponseWriter, r *http.Request) {
	if s.admin(w, r) == nil {
		return
	}
	page := dashboardPage{adminNav: adminNav{Section: "dashboard"}, Days: 30, PlanNames: s.planNames()}
	if r.URL.Query().Get("days") == "90" {
		page.Days = 90
	}
	if s.adminStore == nil {
		page.Unavailable = true
		s.pages.render(w, r, http.StatusOK, "admin", page)
		return
	}
	d, err := s.adminStore.Dashboard(r.Context())
	if err != nil {
		s.log.ErrorContext(r.Context(), "admin dashboard", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	page.D = d
	page.New, page.Canceled = d.Window(page.Days)
	page.New30, page.Canceled30 = d.Window(30)
	page.DailyChart = dailyChart(d.Days[max(len(d.Days)-page.Days, 0):])
	page.PlanChart = planChart(d.Plans, page.PlanNames)
	page.TrialChart = trialChart(d.Trials)
	page.Rate, page.RecentRate = percent(d.Trials.Rate()), percent(d.Trials.RecentRate())
	page.Subscriptions = d.Active + d.Trialing + d.PastDue + d.Canceled + d.Other
	if page.Outbox, err = s.outboxPanel(r.Context()); err != nil {
		s.log.ErrorContext(r.Context(), "admin dashboard: usage outbox", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	s.pages.render(w, r, http.StatusOK, "admin", page)
}

func percent(v float64, ok bool) string {
	if !ok {
		return "no trial has ended"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + "%"
}

// planNames maps plan keys to their names ("" : other prices).
func (s *Server) planNames() map[string]string {
	out := map[string]string{"": "Other prices"}
	for _, p := range s.cfg.Plans {
		out[p.Key] = p.Name
	}
	return out
}

// usersQuery is the users list's query string, read and checked.
type usersQuery struct {
	Q, Status, Plan string
	Sort            proxy.UserSort
	Desc            bool
	After, Before   string
	Last            bool
}

func (s *Server) readUsersQuery(r *http.Request) (usersQuery, bool) {
	v := r.URL.Query()
	q := usersQuery{Q: strings.TrimSpace(v.Get("q")), Status: v.Get("status"), Plan: v.Get("plan"), Sort: proxy.UserSort(v.Get("sort")),
		Desc: v.Get("dir") == "desc", After: v.Get("after"), Before: v.Get("before"), Last: v.Get("page") == "last"}
	if v.Get("sort") == "" {
		q.Sort, q.Desc = proxy.SortLastSeen, v.Get("dir") != "asc"
	}
	if v.Get("sort") == "id" {
		q.Sort = proxy.SortID
	}
	ok := q.Sort.Known() && len(q.Q) <= 200 &&
		(q.Status == "" || q.Status == proxy.StatusNone || proxy.SubscriptionStatus(q.Status).Known()) &&
		(q.Plan == "" || s.planNames()[q.Plan] != "" && q.Plan != "")
	return q, ok
}

// values is the query string that shows this list (cursors left out).
func (q usersQuery) values() url.Values {
	v := url.Values{}
	for k, x := range map[string]string{"q": q.Q, "status": q.Status, "plan": q.Plan} {
		if x != "" {
			v.Set(k, x)
		}
	}
	sort := string(q.Sort)
	if q.Sort == proxy.SortID {
		sort = "id"
	}
	v.Set("sort", sort)
	v.Set("dir", map[bool]string{false: "asc", true: "desc"}[q.Desc])
	return v
}

func (q usersQuery) filter(pol proxy.AccessPolicy, limit int) proxy.UserFilter {
	return proxy.UserFilter{Query: q.Q, Status: q.Status, Plan: q.Plan, Sort: q.Sort, Desc: q.Desc, After: q.After, Before: q.Before,
		Last: q.Last, Limit: limit, Policy: pol}
}

// sortLink is a column header that sorts by its column.
type sortLink struct {
	Label, URL string
	Active     bool
	Desc       bool
}

type usersPage struct {
	adminNav
	Q                          usersQuery
	Rows                       []proxy.UserSummary
	Total                      int64
	Sorts                      []sortLink
	First, Prev, Next, LastURL string
	ExportURL                  string
	Plans                      []proxy.Plan
	Statuses                   []proxy.SubscriptionStatus
	PlanNames                  map[string]string
	UserURL                    string // the user page's path, to which the ID is appended
}

// handleAdminUsers serves <prefix>/admin/users: the list of users.
func (s *Server) handleAdminUsers(w http.ResponseWriter, r *http.Request) {
	if s.admin(w, r) == nil {
		return
	}
	q, ok := s.readUsersQuery(r)
	if !ok {
		s.writeError(w, r, http.StatusBadRequest)
		return
	}
	base := s.prefix + "/admin/users"
	page := usersPage{adminNav: adminNav{Section: "users"}, Q: q, Plans: s.cfg.Plans, Statuses: proxy.Statuses(), PlanNames: s.planNames(),
		UserURL: base + "/", ExportURL: base + ".csv?" + q.values().Encode()}
	for _, c := range []struct {
		label string
		sort  proxy.UserSort
		desc  bool // first click sorts descending
	}{{"Email", proxy.SortEmail, false}, {"Status", proxy.SortStatus, false}, {"Last seen", proxy.SortLastSeen, true}, {"Joined", proxy.SortFirstSeen, true}, {"ID", proxy.SortID, false}} {
		next := q
		next.Sort, next.Desc = c.sort, c.desc
		active := q.Sort == c.sort
		if active {
			next.Desc = !q.Desc
		}
		page.Sorts = append(page.Sorts, sortLink{Label: c.label, URL: base + "?" + next.values().Encode(), Active: active, Desc: q.Desc})
	}
	if s.adminStore == nil {
		page.Unavailable = true
		s.pages.render(w, r, http.StatusOK, "admin_users", page)
		return
	}
	res, err := s.adminStore.ListPage(r.Context(), q.filter(s.cfg.Access(), adminPageSize))
	if err != nil {
		if errors.Is(err, proxy.ErrBadCursor) {
			s.writeError(w, r, http.StatusBadRequest)
			return
		}
		s.log.ErrorContext(r.Context(), "admin users", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	page.Rows, page.Total = res.Users, res.Total
	link := func(k, v string) string {
		vals := q.values()
		if k != "" {
			vals.Set(k, v)
		}
		return base + "?" + vals.Encode()
	}
	if res.Prev != "" {
		page.First, page.Prev = link("", ""), link("before", res.Prev)
	}
	if res.Next != "" {
		page.Next, page.LastURL = link("after", res.Next), link("page", "last")
	}
	s.pages.render(w, r, http.StatusOK, "admin_users", page)
}

// handleAdminExport streams the list as CSV, page by page from the store,
// so neither side holds it whole: each page is written and flushed before
// the next is read, and every flush moves the write deadline on, so an
// export of any length goes on while the client reads it.
func (s *Server) handleAdminExport(w http.ResponseWriter, r *http.Request) {
	id := s.admin(w, r)
	if id == nil {
		return
	}
	q, ok := s.readUsersQuery(r)
	if !ok || s.adminStore == nil {
		s.writeError(w, r, map[bool]int{false: http.StatusBadRequest, true: http.StatusServiceUnavailable}[ok])
		return
	}
	ctx := r.Context()
	f := q.filter(s.cfg.Access(), proxy.MaxUsersPage)
	f.Before, f.Last = "", false
	// The first page is read before anything is written or audited, so a
	// bad cursor is a 400 like the list's, not a cut connection.
	page, err := s.adminStore.ListPage(ctx, f)
	if err != nil {
		if errors.Is(err, proxy.ErrBadCursor) {
			s.writeError(w, r, http.StatusBadRequest)
			return
		}
		s.log.ErrorContext(ctx, "admin export: first page", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	if err := s.adminStore.Audit(ctx, proxy.AuditEntry{At: s.now(), Actor: adminActor(id), Action: ActionUsersExported,
		Detail: q.values().Encode()}); err != nil {
		s.log.ErrorContext(ctx, "admin export: audit", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="users-`+s.now().UTC().Format("20060102T150405Z")+`.csv"`)
	h.Set("X-Content-Type-Options", "nosniff")
	rc := http.NewResponseController(w)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"id", "kind", "email", "customer_id", "plans", "status", "period_end", "comp", "first_seen", "last_seen", "org_ids"})
	rows := 0
	for first := true; ; first = false {
		if !first {
			if page, err = s.adminStore.ListPage(ctx, f); err != nil {
				s.log.WarnContext(ctx, "admin export cut short", "rows", rows, "err", err)
				panic(http.ErrAbortHandler) // a truncated file must not look complete
			}
		}
		for i := range page.Users {
			u := &page.Users[i]
			_ = cw.Write([]string{u.ID, string(u.Kind), csvSafe(u.Email), u.CustomerID, strings.Join(u.Plans, ";"), string(u.Status),
				rfc3339(u.PeriodEnd), strconv.FormatBool(u.Comp), rfc3339(u.FirstSeen), rfc3339(u.LastSeen), strings.Join(u.OrgIDs, ";")})
		}
		rows += len(page.Users)
		cw.Flush()
		if err := cw.Error(); err != nil {
			return // the client went away
		}
		_ = rc.Flush()
		_ = rc.SetWriteDeadline(time.Now().Add(OwnWriteTimeout))
		if page.Next == "" {
			return
		}
		f.After = page.Next
	}
}

// csvSafe keeps a spreadsheet from reading a cell as a formula (an email
// is whatever the user typed).
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

type userPage struct {
	adminNav
	D          proxy.UserDetail
	Sum        proxy.UserSummary
	Subject    proxy.Subject
	Comps      []compRow
	Plans      []proxy.Plan // those a comp of this subject may name
	PlanNames  map[string]string
	CanSync    bool
	CanRevoke  bool // a user (organisations have no sessions of their own)
	Notice     string
	Prices     map[string]string // subscription ID → what it costs
	ActionBase string            // <prefix>/admin/users/<id>
	CompBase   string            // <prefix>/admin/comps/
	KeysOn     bool              // api_keys is on: the keys section shows
	Keys       []accountKey      // the subject's API keys, usable first, newest first
	KeyBase    string            // <prefix>/admin/keys/
	// UsageOn: some plan has limits; Usage is the subject's quotas this
	// period (README "Limits").
	UsageOn bool
	Usage   []usageView
	Now     time.Time
}

type compRow struct {
	proxy.Comp
	Active bool
}

// notices are the words the user page shows after an action (?done=…):
// fixed texts, never a query value echoed back.
var notices = map[string]string{
	"comp-granted":     "Comp granted.",
	"comp-revoked":     "Comp revoked.",
	"synced":           "Synced from Stripe.",
	"key-revoked":      "API key revoked: it is refused from the next request on.",
	"sessions-revoked": "Signed out everywhere: every active Clerk session ended, every tollgate session issued until now refused, and open WebSockets and streams closed.",
}

// handleAdminUser serves <prefix>/admin/users/{id}: one user or
// organisation.
func (s *Server) handleAdminUser(w http.ResponseWriter, r *http.Request) {
	if s.admin(w, r) == nil {
		return
	}
	subject, err := proxy.ParseSubject(r.PathValue("id"))
	if err != nil || strings.Contains(r.PathValue("id"), ":") {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	if s.adminStore == nil {
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	d, err := s.adminStore.UserDetail(r.Context(), subject, adminDetailLimit)
	if errors.Is(err, proxy.ErrNotFound) {
		s.writeError(w, r, http.StatusNotFound)
		return
	}
	if err != nil {
		s.log.ErrorContext(r.Context(), "admin user", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	now := s.now()
	page := userPage{adminNav: adminNav{Section: "user"}, D: d, Sum: d.Summary(s.cfg.Access(), now), Subject: subject,
		PlanNames: s.planNames(), CanSync: s.syncer != nil && d.CustomerID != "", CanRevoke: subject.Kind == proxy.SubjectUser,
		Notice: notices[r.URL.Query().Get("done")], Prices: map[string]string{}, ActionBase: s.prefix + "/admin/users/" + subject.ID,
		CompBase: s.prefix + "/admin/comps/", Now: now}
	for i := range d.Comps {
		page.Comps = append(page.Comps, compRow{Comp: d.Comps[i], Active: d.Comps[i].Active(now)})
	}
	slices.Reverse(page.Comps) // newest first, as history and audit are
	if s.keysOn() {
		keys, err := s.apiKeys.APIKeysOf(r.Context(), subject)
		if err != nil {
			s.log.ErrorContext(r.Context(), "admin user: api keys", "err", err)
			s.writeError(w, r, http.StatusServiceUnavailable)
			return
		}
		page.KeysOn, page.KeyBase = true, s.prefix+"/admin/keys/"
		for _, k := range keys {
			page.Keys = append(page.Keys, viewKey(k, now))
		}
		sortKeys(page.Keys)
	}
	for _, p := range s.cfg.Plans {
		if (p.Scope == proxy.SubjectOrg) == (subject.Kind == proxy.SubjectOrg) {
			page.Plans = append(page.Plans, p)
		}
	}
	if s.limiter != nil && hasLimits(s.cfg) {
		page.UsageOn = true
		if page.Usage, err = s.subjectUsage(r.Context(), subject, subject.Kind == proxy.SubjectUser); err != nil {
			s.log.ErrorContext(r.Context(), "admin user: quota usage", "err", err)
			s.writeError(w, r, http.StatusServiceUnavailable)
			return
		}
	}
	for _, sub := range d.Subscriptions {
		if sub.Amount != 0 && sub.Currency != "" {
			page.Prices[sub.ID] = proxy.Price{Amount: sub.Amount, Currency: sub.Currency, Interval: sub.Interval, IntervalCount: sub.IntervalCount}.Format() +
				" / " + proxy.Price{Interval: sub.Interval, IntervalCount: sub.IntervalCount}.Per()
		}
	}
	s.pages.render(w, r, http.StatusOK, "admin_user", page)
}

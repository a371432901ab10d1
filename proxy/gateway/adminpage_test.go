package gateway

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// fakeAdmin is an AdminStore in memory.
type fakeAdmin struct {
	mu      sync.Mutex
	users   []proxy.UserSummary
	filters []proxy.UserFilter
	comps   map[string]proxy.Comp
	audit   []proxy.AuditEntry
	dash    proxy.Dashboard
	keys    *memKeys // the gateway's API keys (adminFixture holds key_x of user_1)
}

func newFakeAdmin(users ...proxy.UserSummary) *fakeAdmin {
	return &fakeAdmin{users: users, comps: map[string]proxy.Comp{}}
}

// ListPage pages users by their index in the list: the cursor is it.
func (f *fakeAdmin) ListPage(_ context.Context, flt proxy.UserFilter) (proxy.UserPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, flt)
	from := 0
	if flt.After != "" {
		if _, err := fmt.Sscan(flt.After, &from); err != nil {
			return proxy.UserPage{}, fmt.Errorf("cursor %q: %w", flt.After, proxy.ErrBadCursor)
		}
	}
	limit := max(flt.Limit, 1)
	to := min(from+limit, len(f.users))
	p := proxy.UserPage{Users: f.users[from:to], Total: int64(len(f.users))}
	if to < len(f.users) {
		p.Next = fmt.Sprint(to)
	}
	return p, nil
}

func (f *fakeAdmin) Dashboard(context.Context) (proxy.Dashboard, error) { return f.dash, nil }

func (f *fakeAdmin) UserDetail(_ context.Context, s proxy.Subject, _ int) (proxy.UserDetail, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := proxy.UserDetail{Account: proxy.Account{Entitlements: proxy.Entitlements{Subject: s, CustomerID: "cus_" + s.ID}}}
	for _, c := range f.comps {
		if c.Subject == s {
			d.Comps = append(d.Comps, c)
		}
	}
	for _, e := range f.audit {
		if e.Subject == s {
			d.Audit = append(d.Audit, e)
		}
	}
	return d, nil
}

func (f *fakeAdmin) CustomerOf(_ context.Context, s proxy.Subject) (string, error) {
	return "cus_" + s.ID, nil
}

func (f *fakeAdmin) Comp(_ context.Context, id string) (proxy.Comp, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.comps[id]
	if !ok {
		return c, proxy.ErrNotFound
	}
	return c, nil
}

func (f *fakeAdmin) PutComp(_ context.Context, c proxy.Comp) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.comps[c.ID] = c
	return nil
}

func (f *fakeAdmin) RevokeComp(_ context.Context, id, by, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.comps[id]
	c.Revoked, c.RevokedBy, c.RevokeReason = true, by, reason
	f.comps[id] = c
	return nil
}

func (f *fakeAdmin) Audit(_ context.Context, e proxy.AuditEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audit = append(f.audit, e)
	return nil
}

func (f *fakeAdmin) actions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.audit {
		out = append(out, e.Action+" "+e.Subject.ID+" by "+e.Actor)
	}
	return out
}

// fakeSyncer records the customers it was asked to sync.
type fakeSyncer struct {
	mu     sync.Mutex
	synced []string
}

func (f *fakeSyncer) SyncCustomer(_ context.Context, id, _ string) error {
	f.mu.Lock()
	f.synced = append(f.synced, id)
	f.mu.Unlock()
	return nil
}

// adminKeyID is user_1's API key in adminFixture.
const adminKeyID = "key_x000000000000000"

func adminFixture(t *testing.T) (*gateFixture, *fakeAdmin, *fakeSyncer) {
	store, syncer := newFakeAdmin(), &fakeSyncer{}
	store.keys = &memKeys{keys: []proxy.APIKey{{ID: adminKeyID, Prefix: "tg_test_AbCd", Name: "CI", Scopes: []string{"*"},
		Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}, CreatedBy: "user_1"}}}
	fx := newGateFixtureWith(t, nil, func(c string) string { return c + "api_keys:\n  enabled: true\n" },
		func(o *Options) { o.APIKeys = store.keys })
	fx.srv.adminStore, fx.srv.syncer, fx.srv.userEnder = store, syncer, fx.ender
	return fx, store, syncer
}

// keyRevoked reports whether adminFixture's key stands revoked.
func (f *fakeAdmin) keyRevoked() bool {
	k, err := f.keys.APIKeyByID(context.Background(), adminKeyID)
	return err != nil || !k.RevokedAt.IsZero()
}

var (
	asAdmin    = with(navigation, "X-Test-User", "user_boss")
	asSomeone  = with(navigation, "X-Test-User", "user_1")
	sameOrigin = map[string]string{"X-Test-User": "user_boss", "Sec-Fetch-Site": "same-origin", "Content-Type": "application/x-www-form-urlencoded"}
)

// post sends a form the way a browser on the same origin does.
func (fx *gateFixture) postForm(target, form string, hdr map[string]string) *http.Response {
	fx.t.Helper()
	req, err := http.NewRequest("POST", fx.front.URL+target, strings.NewReader(form))
	if err != nil {
		fx.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Every page and every action of the console answers admins only: another
// signed-in user gets 403 and changes nothing, a signed-out visitor is
// sent to sign in (pages) or refused (actions).
func TestAdminConsole_AdminsOnly(t *testing.T) {
	fx, store, syncer := adminFixture(t)
	store.comps["comp_x"] = proxy.Comp{ID: "comp_x", Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}, Plan: "pro", ExpiresAt: fx.now.Add(time.Hour)}
	for _, p := range []string{"/.tollgate/admin", "/.tollgate/admin/users", "/.tollgate/admin/users.csv", "/.tollgate/admin/users/user_1"} {
		if resp := fx.do("GET", p, asAdmin); resp.StatusCode != 200 {
			t.Errorf("GET %s as an admin: %d", p, resp.StatusCode)
		}
		if resp := fx.do("GET", p, asSomeone); resp.StatusCode != 403 {
			t.Errorf("GET %s as another user: %d, want 403", p, resp.StatusCode)
		}
		if resp := fx.do("GET", p, navigation); resp.StatusCode != 307 {
			t.Errorf("GET %s signed out: %d, want the sign-in redirect", p, resp.StatusCode)
		}
	}
	for _, a := range adminActions {
		someone := with(sameOrigin, "X-Test-User", "user_1")
		if resp := fx.postForm(a.path, a.form, someone); resp.StatusCode != 403 {
			t.Errorf("POST %s as another user: %d, want 403", a.path, resp.StatusCode)
		}
		signedOut := with(sameOrigin, "X-Test-User", "")
		if resp := fx.postForm(a.path, a.form, signedOut); resp.StatusCode != 401 {
			t.Errorf("POST %s signed out: %d, want 401", a.path, resp.StatusCode)
		}
	}
	// Only the admin's GET of the export is in the audit trail.
	if diff := cmp.Diff([]string{"users.exported  by clerk:user_boss"}, store.actions()); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	if c := store.comps["comp_x"]; c.Revoked || len(store.comps) != 1 || len(syncer.synced) != 0 || fx.srv.gw.isRevoked(issuedBefore(fx, "user_1")) || store.keyRevoked() {
		t.Error("a refused action changed something")
	}
}

// adminActions are the console's actions, on user_1.
var adminActions = []struct {
	name, path, form, audit string
}{
	{"grant a comp", "/.tollgate/admin/users/user_1/comps", "plan=pro&days=30&reason=speaker", "comp.granted"},
	{"revoke a comp", "/.tollgate/admin/comps/comp_x/revoke", "reason=over", "comp.revoked"},
	{"sync from Stripe", "/.tollgate/admin/users/user_1/sync", "", "sync.requested"},
	{"revoke sessions", "/.tollgate/admin/users/user_1/revoke-sessions", "", "sessions.revoked"},
	{"revoke an API key", "/.tollgate/admin/keys/" + adminKeyID + "/revoke", "", "api_key.revoked"},
}

func issuedBefore(fx *gateFixture, userID string) *proxy.Identity {
	return &proxy.Identity{UserID: userID, SessionID: "sess_other", IssuedAt: fx.now.Add(-time.Minute)}
}

// Each action from another origin is refused before it runs: nothing
// changes and nothing is audited.
func TestAdminConsole_ActionsAreSameOriginPOSTs(t *testing.T) {
	fx, store, syncer := adminFixture(t)
	store.comps["comp_x"] = proxy.Comp{ID: "comp_x", Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}, Plan: "pro", ExpiresAt: fx.now.Add(time.Hour)}
	for _, a := range adminActions {
		for _, hdr := range []map[string]string{
			with(sameOrigin, "Sec-Fetch-Site", "cross-site"),
			with(sameOrigin, "Sec-Fetch-Site", "", "Origin", "https://evil.example"),
		} {
			if resp := fx.postForm(a.path, a.form, hdr); resp.StatusCode != 403 {
				t.Errorf("%s from another origin: %d, want 403", a.name, resp.StatusCode)
			}
		}
		if resp := fx.do("GET", a.path, asAdmin); resp.StatusCode != 404 && resp.StatusCode != 405 {
			t.Errorf("%s by GET: %d, want 404 or 405", a.name, resp.StatusCode)
		}
	}
	if got := store.actions(); len(got) != 0 || store.comps["comp_x"].Revoked || len(store.comps) != 1 || len(syncer.synced) != 0 ||
		fx.srv.gw.isRevoked(issuedBefore(fx, "user_1")) || store.keyRevoked() {
		t.Errorf("a cross-origin action changed something (audit %v, synced %v)", got, syncer.synced)
	}
}

// Each action, made by an admin from the console, does what it says,
// writes one audit entry naming the admin, and returns to the user's page.
func TestAdminConsole_ActionsAreAudited(t *testing.T) {
	for _, a := range adminActions {
		t.Run(a.name, func(t *testing.T) {
			fx, store, syncer := adminFixture(t)
			store.comps["comp_x"] = proxy.Comp{ID: "comp_x", Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}, Plan: "pro", ExpiresAt: fx.now.Add(time.Hour)}
			resp := fx.postForm(a.path, a.form, sameOrigin)
			if loc := resp.Header.Get("Location"); resp.StatusCode != 303 || !strings.HasPrefix(loc, "/.tollgate/admin/users/user_1?done=") {
				t.Fatalf("%d to %q, want 303 back to the user's page", resp.StatusCode, loc)
			}
			if diff := cmp.Diff([]string{a.audit + " user_1 by clerk:user_boss"}, store.actions()); diff != "" {
				t.Errorf("audit (-want +got):\n%s", diff)
			}
			switch a.audit {
			case "comp.granted":
				var granted proxy.Comp
				for _, c := range store.comps {
					if c.ID != "comp_x" {
						granted = c
					}
				}
				if granted.Plan != "pro" || !granted.ExpiresAt.Equal(fx.now.AddDate(0, 0, 30)) || granted.By != "clerk:user_boss" || granted.Reason != "speaker" {
					t.Errorf("granted %+v", granted)
				}
			case "comp.revoked":
				if c := store.comps["comp_x"]; !c.Revoked || c.RevokedBy != "clerk:user_boss" || c.RevokeReason != "over" {
					t.Errorf("revoked %+v", c)
				}
			case "sync.requested":
				if diff := cmp.Diff([]string{"cus_user_1"}, syncer.synced); diff != "" {
					t.Errorf("synced (-want +got):\n%s", diff)
				}
			case "api_key.revoked":
				if k, _ := store.keys.APIKeyByID(t.Context(), adminKeyID); !k.RevokedAt.Equal(fx.now) {
					t.Errorf("the key's RevokedAt = %v, want %v", k.RevokedAt, fx.now)
				}
				if diff := cmp.Diff(store.audit[0].Detail, adminKeyID+` "CI" scopes=*`); diff != "" {
					t.Errorf("audit detail (-got +want):\n%s", diff)
				}
			case "sessions.revoked":
				if !fx.srv.gw.isRevoked(issuedBefore(fx, "user_1")) || fx.srv.gw.isRevoked(issuedBefore(fx, "user_2")) {
					t.Error("user_1's earlier sessions are not refused, or someone else's are")
				}
				if diff := cmp.Diff([]string{"user_1"}, fx.ender.usersEnded); diff != "" {
					t.Errorf("Clerk sessions ended for (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestAdminConsole_GrantRefusesBadForms(t *testing.T) {
	fx, store, _ := adminFixture(t)
	for _, form := range []string{"plan=pro&days=0&reason=x", "plan=pro&days=30&reason=", "plan=nope&days=30&reason=x",
		"plan=team&days=30&reason=x", "plan=pro&days=4000&reason=x"} {
		if resp := fx.postForm("/.tollgate/admin/users/user_1/comps", form, sameOrigin); resp.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", form, resp.StatusCode)
		}
	}
	if len(store.comps) != 0 || len(store.actions()) != 0 {
		t.Error("a refused grant changed something")
	}
}

// The list passes its query to the store as a filter under the config's
// policy, and links the pages.
func TestAdminConsole_UsersListQuery(t *testing.T) {
	fx, store, _ := adminFixture(t)
	for i := range 60 {
		store.users = append(store.users, proxy.UserSummary{ID: fmt.Sprintf("user_%02d", i), Kind: proxy.SubjectUser, Email: fmt.Sprintf("u%d@example.com", i)})
	}
	resp := fx.do("GET", "/.tollgate/admin/users?q=u1&status=past_due&plan=pro&sort=email&dir=desc", asAdmin)
	b := body(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(b, "u49@example.com") || strings.Contains(b, "u50@example.com") {
		t.Fatalf("users: %d %.500s", resp.StatusCode, b)
	}
	want := proxy.UserFilter{Query: "u1", Status: "past_due", Plan: "pro", Sort: proxy.SortEmail, Desc: true, Limit: adminPageSize,
		Policy: fx.srv.cfg.Access()}
	if diff := cmp.Diff(want, store.filters[0]); diff != "" {
		t.Errorf("filter (-want +got):\n%s", diff)
	}
	if !strings.Contains(b, `after=50`) || !strings.Contains(b, `page=last`) {
		t.Errorf("no next and last page links")
	}
	for _, bad := range []string{"?status=nope", "?plan=nope", "?sort=nope"} {
		if resp := fx.do("GET", "/.tollgate/admin/users"+bad, asAdmin); resp.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", bad, resp.StatusCode)
		}
	}
}

// The export writes every page, one store page after another, and
// neutralises cells a spreadsheet would run.
func TestAdminConsole_ExportStreamsEveryPage(t *testing.T) {
	fx, store, _ := adminFixture(t)
	for i := range 2500 {
		store.users = append(store.users, proxy.UserSummary{ID: fmt.Sprintf("user_%04d", i), Kind: proxy.SubjectUser, Email: "=cmd()"})
	}
	resp := fx.do("GET", "/.tollgate/admin/users.csv?status=active", asAdmin)
	rows, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("export: %d %v", resp.StatusCode, err)
	}
	if len(rows) != 2501 || rows[2500][0] != "user_2499" || rows[1][2] != "'=cmd()" {
		t.Errorf("%d rows, last %v, first %v", len(rows), rows[len(rows)-1], rows[1])
	}
	if n := len(store.filters); n != 3 || store.filters[0].Limit != proxy.MaxUsersPage || store.filters[0].Status != "active" {
		t.Errorf("%d store pages of %+v, want 3 of %d", n, store.filters[0], proxy.MaxUsersPage)
	}
}

// The dashboard's charts are SVG with patterns and numbers, and the page
// carries nothing the strict CSP would refuse: no script, no inline style.
func TestAdminConsole_DashboardCharts(t *testing.T) {
	fx, store, _ := adminFixture(t)
	now := fx.now
	var counters []proxy.Counter
	for _, s := range []proxy.Subscription{
		{Status: proxy.StatusActive, Plan: "pro", Amount: 1200, Currency: "usd", Interval: "month", Created: now.AddDate(0, 0, -3)},
		{Status: proxy.StatusCanceled, Plan: "pro", Amount: 1200, Currency: "usd", Interval: "month", Created: now.AddDate(0, 0, -20),
			EndedAt: now.AddDate(0, 0, -2), TrialEnd: now.AddDate(0, 0, -13)},
	} {
		counters = append(counters, proxy.SubscriptionFacts(&s)...)
	}
	store.dash = proxy.BuildDashboard(counters, now)
	resp := fx.do("GET", "/.tollgate/admin?days=90", asAdmin)
	b := body(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("dashboard: %d", resp.StatusCode)
	}
	for _, want := range []string{"$12.00", `<svg class="chart"`, `url(#tg-hatch)`, `<title>`, "New and cancelled", "Trial conversion", "100.0%", ">pro</td>"} {
		if !strings.Contains(b, want) {
			t.Errorf("the dashboard lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?i)<script|\sstyle=|\son[a-z]+=`).MatchString(b) {
		t.Error("the dashboard has a script, an inline style or an event handler")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	if resp := fx.do("GET", "/.tollgate/assets/admin.css", nil); resp.StatusCode != 200 {
		t.Errorf("admin.css: %d", resp.StatusCode)
	}
}

// The list's filters offer every status the domain knows.
func TestAdminConsole_FilterOffersEveryStatus(t *testing.T) {
	fx, _, _ := adminFixture(t)
	b := body(t, fx.do("GET", "/.tollgate/admin/users?status=incomplete_expired", asAdmin))
	for _, st := range proxy.Statuses() {
		if !strings.Contains(b, `<option value="`+string(st)+`"`) {
			t.Errorf("no %s option in the status filter", st)
		}
	}
	if !strings.Contains(b, `<option value="incomplete_expired" selected>`) {
		t.Error("the chosen incomplete_expired filter is not selected")
	}
}

// An export with a cursor that is not one is a 400, like the list's, and is
// not audited: nothing was exported (red team #4).
func TestAdminConsole_ExportWithABadCursorIs400(t *testing.T) {
	fx, store, _ := adminFixture(t)
	store.users = append(store.users, proxy.UserSummary{ID: "user_1", Kind: proxy.SubjectUser})
	if resp := fx.do("GET", "/.tollgate/admin/users.csv?after=AAAA", asAdmin); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	if got := store.actions(); len(got) != 0 {
		t.Errorf("audited %v", got)
	}
}

// The console shares the app's origin: a script on one of the app's pages
// (an XSS, or HTML the app serves from its users) must not read the export
// or post an action with the admin's cookies. What a script can send —
// fetch (cors/same-origin mode, empty destination) or a form it submits
// itself (no user activation) — is refused (red team #4).
func TestAdminConsole_ScriptsOnTheAppsOriginAreRefused(t *testing.T) {
	fx, store, syncer := adminFixture(t)
	fetchLike := map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
	for _, p := range []string{"/.tollgate/admin/users.csv", "/.tollgate/admin/users", "/.tollgate/admin"} {
		if resp := fx.do("GET", p, with(with(asAdmin, "X-Test-User", "user_boss"), flatten(fetchLike)...)); resp.StatusCode != http.StatusForbidden {
			t.Errorf("fetch of %s: %d, want 403", p, resp.StatusCode)
		}
	}
	scriptSubmit := with(sameOrigin, "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document") // no Sec-Fetch-User
	for _, a := range adminActions {
		for _, hdr := range []map[string]string{with(sameOrigin, flatten(fetchLike)...), scriptSubmit} {
			if resp := fx.postForm(a.path, a.form, hdr); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s by a script: %d, want 403", a.name, resp.StatusCode)
			}
		}
	}
	if got := store.actions(); len(got) != 0 || len(syncer.synced) != 0 || store.keyRevoked() {
		t.Errorf("a script's request did something: audit %v, synced %v", got, syncer.synced)
	}
	// A person pressing the button passes.
	person := with(scriptSubmit, "Sec-Fetch-User", "?1")
	if resp := fx.postForm("/.tollgate/admin/users/user_1/sync", "", person); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a person's action: %d, want 303", resp.StatusCode)
	}
}

// The user's page lists the subject's API keys with a Revoke button for
// usable ones; after a revocation the key shows as revoked, without one.
func TestAdminConsole_UserPageListsKeys(t *testing.T) {
	fx, store, _ := adminFixture(t)
	page := body(t, fx.do("GET", "/.tollgate/admin/users/user_1", asAdmin))
	for _, want := range []string{`<h2 id="keys">API keys</h2>`, `data-key="` + adminKeyID + `"`, "<code>tg_test_AbCd…</code>", "all routes",
		`action="/.tollgate/admin/keys/` + adminKeyID + `/revoke"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the user's page lacks %q", want)
		}
	}
	if other := body(t, fx.do("GET", "/.tollgate/admin/users/user_2", asAdmin)); strings.Contains(other, adminKeyID) || !strings.Contains(other, "No API key.") {
		t.Error("user_2's page shows user_1's key, or no empty section")
	}
	if resp := fx.postForm("/.tollgate/admin/keys/"+adminKeyID+"/revoke", "", sameOrigin); resp.StatusCode != 303 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	page = body(t, fx.do("GET", "/.tollgate/admin/users/user_1?done=key-revoked", asAdmin))
	if strings.Contains(page, adminKeyID+`/revoke"`) || !strings.Contains(page, "API key revoked") || !strings.Contains(page, day(fx.now)) {
		t.Errorf("after revoking, the page still offers Revoke or says nothing")
	}
	// A second revocation, and an unknown key, change and audit nothing more.
	fx.postForm("/.tollgate/admin/keys/"+adminKeyID+"/revoke", "", sameOrigin)
	if resp := fx.postForm("/.tollgate/admin/keys/key_y000000000000000/revoke", "", sameOrigin); resp.StatusCode != 404 {
		t.Errorf("unknown key: %d, want 404", resp.StatusCode)
	}
	if n := len(store.actions()); n != 1 {
		t.Errorf("%d audit entries, want 1: %v", n, store.actions())
	}
}

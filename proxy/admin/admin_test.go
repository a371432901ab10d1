package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
)

const testToken = "test-admin-token-0123456789"

func t0() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

func plans() []proxy.Plan {
	return []proxy.Plan{
		{Key: "pro", Name: "Pro", Prices: []string{"price_pro"}, Routes: []string{"*"}, Scope: proxy.SubjectUser},
		{Key: "team", Name: "Team", Prices: []string{"price_team"}, Routes: []string{"*"}, Scope: proxy.SubjectOrg},
		{Key: "plus", Name: "Plus", Prices: []string{"price_plus"}, Routes: []string{"*"}, Scope: proxy.SubjectUser},
	}
}

func userA() proxy.Subject { return proxy.Subject{Kind: proxy.SubjectUser, ID: "user_a"} }

// fakeBilling records syncs; its funcs are optional.
type fakeBilling struct {
	mu        sync.Mutex
	customers []string
	err       error
	all       chan struct{} // receives one value per SyncAll
}

func (f *fakeBilling) SyncCustomer(_ context.Context, customerID, eventID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.customers = append(f.customers, customerID+"/"+eventID)
	return f.err
}

func (f *fakeBilling) SyncAll(context.Context) (int, error) {
	f.all <- struct{}{}
	return 3, nil
}

func (f *fakeBilling) synced() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.customers...)
}

// fakeCache records removals.
type fakeCache struct {
	mu      sync.Mutex
	removed []proxy.Subject
}

func (f *fakeCache) Remove(s proxy.Subject) {
	f.mu.Lock()
	f.removed = append(f.removed, s)
	f.mu.Unlock()
}

func (f *fakeCache) got() []proxy.Subject {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proxy.Subject(nil), f.removed...)
}

type env struct {
	srv     *httptest.Server
	store   *bolt.Store
	billing *fakeBilling
	cache   *fakeCache
}

// mustStore opens a store at t0 holding: user_a (pro, active, customer
// cus_a, seen), user_b (seen, nothing else), org_x (team, trialing).
func mustStore(t *testing.T) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "tollgate.db"), bolt.Options{Timeout: 100 * time.Millisecond, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	if err := s.RecordSeen(ctx, map[string]time.Time{"user_a": t0(), "user_b": t0().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutUser(ctx, proxy.User{ID: "user_a", Email: "ada@example.com", OrgIDs: []string{"org_x"}}); err != nil {
		t.Fatal(err)
	}
	for _, st := range []proxy.CustomerState{
		{CustomerID: "cus_a", Subject: userA(), SyncedAt: t0(), Subscriptions: []proxy.Subscription{
			{ID: "sub_a", CustomerID: "cus_a", Status: proxy.StatusActive, Plan: "pro", PriceIDs: []string{"price_pro"}, CurrentPeriodEnd: t0().Add(30 * 24 * time.Hour)}}},
		{CustomerID: "cus_x", Subject: proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_x"}, SyncedAt: t0(), Subscriptions: []proxy.Subscription{
			{ID: "sub_x", CustomerID: "cus_x", Status: proxy.StatusTrialing, Plan: "team", CurrentPeriodEnd: t0().Add(7 * 24 * time.Hour)}}},
	} {
		if _, _, err := s.CommitCustomer(ctx, st, ""); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	e := &env{store: mustStore(t), billing: &fakeBilling{all: make(chan struct{}, 1)}, cache: &fakeCache{}}
	cfg := Config{
		Token: testToken, Store: e.store, Billing: e.billing, Cache: e.cache, Plans: plans, Now: t0,
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "tollgate_up 1\n") }),
	}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// do sends a request with the test token (unless hdr sets Authorization)
// and returns the status and body.
func (e *env) do(t *testing.T, method, path, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func mustJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func errorOf(t *testing.T, b []byte) string {
	t.Helper()
	return mustJSON[map[string]string](t, b)["error"]
}

func TestAPI_Auth(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "Bearer nope", http.StatusUnauthorized},
		{"token as prefix", "Bearer " + testToken + "x", http.StatusUnauthorized},
		{"basic scheme", "Basic " + testToken, http.StatusUnauthorized},
		{"right token", "Bearer " + testToken, http.StatusOK},
		{"scheme in lower case", "bearer " + testToken, http.StatusOK},
	} {
		code, hdr, body := e.do(t, "GET", "/api/users", "", "Authorization", tc.auth)
		if code != tc.want {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, code, tc.want, body)
		}
		if code == http.StatusUnauthorized && (errorOf(t, body) == "" || hdr.Get("WWW-Authenticate") == "") {
			t.Errorf("%s: 401 without a JSON error or WWW-Authenticate: %s", tc.name, body)
		}
	}
	// Every API route is guarded, including the ones that write.
	for _, route := range []string{"GET /api/users/user_a", "POST /api/users/user_a/comps", "DELETE /api/comps/comp_1", "POST /api/sync", "GET /api/backup", "GET /api/nope"} {
		method, path, _ := strings.Cut(route, " ")
		if code, _, _ := e.do(t, method, path, "", "Authorization", ""); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", route, code)
		}
	}
	if got := e.billing.synced(); len(got) != 0 {
		t.Errorf("unauthorized requests synced %v", got)
	}
	// Health and metrics need no token: they are on the admin listener.
	if code, _, body := e.do(t, "GET", "/healthz", "", "Authorization", ""); code != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, _, body := e.do(t, "GET", "/metrics", "", "Authorization", ""); code != 200 || !strings.Contains(string(body), "tollgate_up") {
		t.Errorf("/metrics = %d %q", code, body)
	}
	// Unknown routes and wrong methods answer in JSON.
	if code, _, body := e.do(t, "GET", "/api/nope", ""); code != 404 || errorOf(t, body) == "" {
		t.Errorf("GET /api/nope = %d %s", code, body)
	}
	if code, hdr, body := e.do(t, "DELETE", "/api/users", ""); code != 405 || hdr.Get("Allow") != "GET" || errorOf(t, body) == "" {
		t.Errorf("DELETE /api/users = %d Allow %q %s", code, hdr.Get("Allow"), body)
	}
}

func TestAPI_DisabledWithoutToken(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Token = "" })
	for _, auth := range []string{"", "Bearer ", "Bearer " + testToken} {
		if code, _, body := e.do(t, "GET", "/api/users", "", "Authorization", auth); code != http.StatusNotFound {
			t.Errorf("Authorization %q: status %d, want 404 (%s)", auth, code, body)
		}
	}
	if code, _, _ := e.do(t, "POST", "/api/sync", ""); code != http.StatusNotFound {
		t.Errorf("POST /api/sync: %d, want 404", code)
	}
	if code, _, _ := e.do(t, "GET", "/healthz", ""); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
}

func TestReadyz(t *testing.T) {
	ok := Check{Name: "store", Run: func(context.Context) error { return nil }}
	bad := Check{Name: "stripe", Run: func(context.Context) error { return errors.New("stripe ready: connection refused") }}
	slow := Check{Name: "clerk", Run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}

	e := newEnv(t, func(c *Config) { c.Ready = []Check{ok} })
	if code, _, body := e.do(t, "GET", "/readyz", "", "Authorization", ""); code != 200 || mustJSON[map[string]any](t, body)["status"] != "ok" {
		t.Errorf("all ready: %d %s", code, body)
	}

	e = newEnv(t, func(c *Config) { c.Ready = []Check{ok, bad, slow}; c.ReadyTimeout = 50 * time.Millisecond })
	code, _, body := e.do(t, "GET", "/readyz", "", "Authorization", "")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("failing check: status %d, want 503 (%s)", code, body)
	}
	got := mustJSON[struct {
		Status  string         `json:"status"`
		Failing []readyFailure `json:"failing"`
	}](t, body)
	want := []readyFailure{{Name: "stripe", Error: "stripe ready: connection refused"}, {Name: "clerk", Error: "context deadline exceeded"}}
	if got.Status != "unavailable" || !cmp.Equal(got.Failing, want) {
		t.Errorf("readyz = %+v; want failing %+v", got, want)
	}
	behind := Check{Name: "webhook_backlog", Advisory: true, Run: func(context.Context) error { return errors.New("webhook backlog far behind") }}
	e = newEnv(t, func(c *Config) { c.Ready = []Check{ok, behind} })
	code, _, body = e.do(t, "GET", "/readyz", "", "Authorization", "")
	if code != http.StatusOK {
		t.Errorf("only an advisory check failing: status %d, want 200 (%s)", code, body)
	}
	if diff := cmp.Diff(readyAnswer{Status: "ok", Warnings: []readyFailure{{Name: "webhook_backlog", Error: "webhook backlog far behind"}}},
		mustJSON[readyAnswer](t, body)); diff != "" {
		t.Errorf("advisory failure (-want +got):\n%s", diff)
	}
	e = newEnv(t, func(c *Config) { c.Ready = []Check{bad, behind} })
	code, _, body = e.do(t, "GET", "/readyz", "", "Authorization", "")
	if diff := cmp.Diff(readyAnswer{Status: "unavailable", Failing: []readyFailure{{Name: "stripe", Error: "stripe ready: connection refused"}},
		Warnings: []readyFailure{{Name: "webhook_backlog", Error: "webhook backlog far behind"}}}, mustJSON[readyAnswer](t, body)); code != 503 || diff != "" {
		t.Errorf("a failing and an advisory check: %d (-want +got):\n%s", code, diff)
	}
	if _, err := New(Config{Ready: []Check{{Name: "nameless func"}}}); err == nil {
		t.Error("New accepted a check without a function")
	}
}

func TestAPI_Users(t *testing.T) {
	e := newEnv(t, nil)
	code, _, body := e.do(t, "GET", "/api/users", "")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	page := mustJSON[UsersPage](t, body)
	want := UsersPage{Users: []User{
		{ID: "org_x", Kind: "org", CustomerID: "cus_x", Plans: []string{"team"}, Status: "trialing", PeriodEnd: t0().Add(7 * 24 * time.Hour)},
		{ID: "user_a", Kind: "user", Email: "ada@example.com", OrgIDs: []string{"org_x"}, CustomerID: "cus_a", Plans: []string{"pro"}, Status: "active",
			PeriodEnd: t0().Add(30 * 24 * time.Hour), FirstSeen: t0(), LastSeen: t0()},
		{ID: "user_b", Kind: "user", Plans: []string{}, FirstSeen: t0().Add(time.Hour), LastSeen: t0().Add(time.Hour)},
	}}
	if diff := cmp.Diff(page, want); diff != "" {
		t.Errorf("users (-got +want):\n%s", diff)
	}

	// Filters and pages.
	ids := func(path string) ([]string, string) {
		t.Helper()
		code, _, body := e.do(t, "GET", path, "")
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		p := mustJSON[UsersPage](t, body)
		var out []string
		for _, u := range p.Users {
			out = append(out, u.ID)
		}
		return out, p.Next
	}
	if got, _ := ids("/api/users?status=active&plan=pro"); !cmp.Equal(got, []string{"user_a"}) {
		t.Errorf("active pro = %v", got)
	}
	if got, _ := ids("/api/users?status=none"); !cmp.Equal(got, []string{"user_b"}) {
		t.Errorf("status none = %v", got)
	}
	first, next := ids("/api/users?limit=2")
	rest, last := ids("/api/users?limit=2&after=" + next)
	if !cmp.Equal(append(first, rest...), []string{"org_x", "user_a", "user_b"}) || next == "" || last != "" {
		t.Errorf("pages %v then %v (next %q, then %q)", first, rest, next, last)
	}

	for _, st := range proxy.Statuses() { // every status filters, incomplete_expired too
		if code, _, body := e.do(t, "GET", "/api/users?status="+string(st), ""); code != 200 {
			t.Errorf("?status=%s: %d %s", st, code, body)
		}
	}
	for _, q := range []string{"status=bogus", "plan=nope", "limit=0", "limit=x", "limit=100000"} {
		if code, _, body := e.do(t, "GET", "/api/users?"+q, ""); code != 400 || errorOf(t, body) == "" {
			t.Errorf("?%s: %d %s; want 400 with an error", q, code, body)
		}
	}
}

// The listing says what grants as the gate decides it, under the config's
// stripe.past_due_grace and stripe.paused_collection: a plan whose
// subscription no longer lets its holder through is not among the plans
// that grant, so ?plan= does not find its holder.
func TestAPI_UsersGrantUnderTheConfigsPolicy(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		name    string
		access  proxy.AccessPolicy
		wantPro []string // who ?plan=pro lists
		wantP   []string // user_p's plans (past_due since four days, and a comp)
		wantQ   []string // user_q's plans (collection paused, and a comp)
	}{
		{"no policy", proxy.AccessPolicy{}, []string{"user_a", "user_p", "user_q"}, []string{"plus", "pro"}, []string{"plus", "pro"}},
		{"grace of three days", proxy.AccessPolicy{PastDueGrace: 3 * day}, []string{"user_a", "user_q"}, []string{"plus"}, []string{"plus", "pro"}},
		{"grace of five days", proxy.AccessPolicy{PastDueGrace: 5 * day}, []string{"user_a", "user_p", "user_q"}, []string{"plus", "pro"}, []string{"plus", "pro"}},
		{"paused collection revokes", proxy.AccessPolicy{PausedCollection: proxy.PausedCollectionRevoke}, []string{"user_a", "user_p"},
			[]string{"plus", "pro"}, []string{"plus"}},
		{"both", proxy.AccessPolicy{PastDueGrace: 3 * day, PausedCollection: proxy.PausedCollectionRevoke}, []string{"user_a"},
			[]string{"plus"}, []string{"plus"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Access = func() proxy.AccessPolicy { return tc.access } })
			ctx := t.Context()
			p := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_p"}
			q := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_q"}
			for _, st := range []proxy.CustomerState{
				{CustomerID: "cus_p", Subject: p, SyncedAt: t0(), Subscriptions: []proxy.Subscription{{ID: "sub_p", CustomerID: "cus_p",
					Status: proxy.StatusPastDue, Plan: "pro", PastDueSince: t0().Add(-4 * day), CurrentPeriodEnd: t0().Add(day)}}},
				{CustomerID: "cus_q", Subject: q, SyncedAt: t0(), Subscriptions: []proxy.Subscription{{ID: "sub_q", CustomerID: "cus_q",
					Status: proxy.StatusActive, Plan: "pro", PausedCollection: "void", CurrentPeriodEnd: t0().Add(day)}}},
			} {
				if _, _, err := e.store.CommitCustomer(ctx, st, ""); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range []proxy.Subject{p, q} {
				if err := e.store.PutComp(ctx, proxy.Comp{ID: "comp_" + s.ID, Subject: s, Plan: "plus", ExpiresAt: t0().Add(10 * day)}); err != nil {
					t.Fatal(err)
				}
			}

			code, _, body := e.do(t, "GET", "/api/users?plan=pro", "")
			if code != 200 {
				t.Fatalf("?plan=pro: %d %s", code, body)
			}
			var got []string
			for _, u := range mustJSON[UsersPage](t, body).Users {
				got = append(got, u.ID)
			}
			if diff := cmp.Diff(tc.wantPro, got); diff != "" {
				t.Errorf("?plan=pro lists (-want +got):\n%s", diff)
			}
			for id, want := range map[string][]string{"user_p": tc.wantP, "user_q": tc.wantQ} {
				code, _, body := e.do(t, "GET", "/api/users/"+id, "")
				if code != 200 {
					t.Fatalf("%s: %d %s", id, code, body)
				}
				if diff := cmp.Diff(want, mustJSON[UserDetail](t, body).Plans); diff != "" {
					t.Errorf("%s's plans (-want +got):\n%s", id, diff)
				}
			}
		})
	}
}

func TestAPI_UserDetail(t *testing.T) {
	e := newEnv(t, nil)
	code, _, body := e.do(t, "GET", "/api/users/user_a", "")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	d := mustJSON[UserDetail](t, body)
	if d.ID != "user_a" || d.Email != "ada@example.com" || d.CustomerID != "cus_a" {
		t.Errorf("summary = %+v", d.User)
	}
	wantSubs := []Subscription{{ID: "sub_a", CustomerID: "cus_a", Status: "active", Plan: "pro", PriceIDs: []string{"price_pro"},
		CurrentPeriodEnd: t0().Add(30 * 24 * time.Hour)}}
	if diff := cmp.Diff(d.Subscriptions, wantSubs); diff != "" {
		t.Errorf("subscriptions (-got +want):\n%s", diff)
	}
	wantHistory := []HistoryEntry{{At: t0(), SubscriptionID: "sub_a", Plan: "pro", Status: "active", PeriodEnd: t0().Add(30 * 24 * time.Hour)}}
	if diff := cmp.Diff(d.History, wantHistory); diff != "" {
		t.Errorf("history (-got +want):\n%s", diff)
	}
	if d.Comps == nil || d.Audit == nil || len(d.Comps)+len(d.Audit) != 0 {
		t.Errorf("comps %v, audit %v; want empty lists", d.Comps, d.Audit)
	}
	if code, _, _ := e.do(t, "GET", "/api/users/user_unknown", ""); code != 404 {
		t.Errorf("unknown user: %d, want 404", code)
	}
	for _, id := range []string{"cus_a", "user_", "user_a%00b", "user_a%2Fb", "org_x.y"} {
		if code, _, _ := e.do(t, "GET", "/api/users/"+id, ""); code != 400 {
			t.Errorf("%q is not a user ID: %d, want 400", id, code)
		}
	}
}

func TestAPI_CompRoundTrip(t *testing.T) {
	e := newEnv(t, nil)
	b := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_b"}
	grants := func() bool {
		t.Helper()
		ents, err := e.store.Entitlements(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		d := proxy.DecidePaid(proxy.PaidInput{Plans: plans(), Identity: &proxy.Identity{UserID: "user_b"}, User: ents, Now: t0().Add(time.Hour)})
		return d.Outcome == proxy.PaidAllow
	}
	if grants() {
		t.Fatal("user_b has access before any comp")
	}

	for name, body := range map[string]string{
		"unknown plan":        `{"plan":"gold","days":30,"reason":"x"}`,
		"org plan for a user": `{"plan":"team","days":30,"reason":"x"}`,
		"no expiry":           `{"plan":"pro","reason":"x"}`,
		"both expiries":       `{"plan":"pro","days":3,"expires_at":"2026-04-01T00:00:00Z","reason":"x"}`,
		"past expiry":         `{"plan":"pro","expires_at":"2026-01-01T00:00:00Z","reason":"x"}`,
		"too long":            `{"plan":"pro","days":100000,"reason":"x"}`,
		"no reason":           `{"plan":"pro","days":30}`,
		"unknown field":       `{"plan":"pro","days":30,"reason":"x","forever":true}`,
		"not JSON":            `plan=pro`,
	} {
		if code, _, resp := e.do(t, "POST", "/api/users/user_b/comps", body); code != 400 || errorOf(t, resp) == "" {
			t.Errorf("%s: %d %s; want 400 with an error", name, code, resp)
		}
	}
	if len(e.cache.got()) != 0 {
		t.Fatalf("rejected comps touched the cache: %v", e.cache.got())
	}

	code, hdr, body := e.do(t, "POST", "/api/users/user_b/comps", `{"plan":"pro","days":30,"reason":"beta tester"}`, "X-Admin-Actor", "ada")
	if code != http.StatusCreated {
		t.Fatalf("grant: %d %s", code, body)
	}
	comp := mustJSON[Comp](t, body)
	want := Comp{ID: comp.ID, Subject: "user_b", Plan: "pro", ExpiresAt: t0().AddDate(0, 0, 30), By: "ada", Reason: "beta tester", CreatedAt: t0(), Active: true}
	if diff := cmp.Diff(comp, want); diff != "" || !strings.HasPrefix(comp.ID, "comp_") || hdr.Get("Location") != "/api/users/user_b" {
		t.Errorf("granted comp (-got +want):\n%s (Location %q)", diff, hdr.Get("Location"))
	}
	if got := e.cache.got(); !cmp.Equal(got, []proxy.Subject{b}) {
		t.Errorf("cache removals after grant = %v; want [user_b]", got)
	}
	if !grants() {
		t.Error("the comp does not grant access")
	}

	// An org plan goes to an organisation, with an explicit expiry.
	if code, _, body := e.do(t, "POST", "/api/users/org_x/comps", `{"plan":"team","expires_at":"2026-06-01T00:00:00Z","reason":"partner"}`); code != 201 {
		t.Errorf("org comp: %d %s", code, body)
	}

	code, _, body = e.do(t, "GET", "/api/users/user_b", "")
	if code != 200 {
		t.Fatalf("detail: %d %s", code, body)
	}
	d := mustJSON[UserDetail](t, body)
	if !d.Comp || !cmp.Equal(d.Plans, []string{"pro"}) || len(d.Comps) != 1 || d.Comps[0].ID != comp.ID {
		t.Errorf("detail after grant: %+v", d)
	}
	if len(d.Audit) != 1 || d.Audit[0].Action != ActionCompGranted || d.Audit[0].Actor != "ada" || !strings.Contains(d.Audit[0].Detail, "beta tester") {
		t.Errorf("audit after grant: %+v", d.Audit)
	}

	// Revoke, with a reason, as the default actor.
	code, _, body = e.do(t, "DELETE", "/api/comps/"+comp.ID, `{"reason":"programme over"}`)
	if code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if got := mustJSON[Comp](t, body); !got.Revoked || got.Active || got.RevokedBy != DefaultActor || got.RevokeReason != "programme over" {
		t.Errorf("revoked comp = %+v", got)
	}
	if got := e.cache.got(); len(got) != 3 || got[2] != b {
		t.Errorf("cache removals after revoke = %v; want user_b last", got)
	}
	if grants() {
		t.Error("the revoked comp still grants access")
	}
	// Revoking again changes nothing and audits nothing; unknown comps are 404.
	if code, _, _ := e.do(t, "DELETE", "/api/comps/"+comp.ID, ""); code != 200 {
		t.Errorf("revoke again: %d", code)
	}
	if code, _, _ := e.do(t, "DELETE", "/api/comps/comp_nope", ""); code != 404 {
		t.Errorf("revoke unknown: %d, want 404", code)
	}
	_, _, body = e.do(t, "GET", "/api/users/user_b", "")
	d = mustJSON[UserDetail](t, body)
	var actions []string
	for _, a := range d.Audit {
		actions = append(actions, a.Action+" by "+a.Actor)
	}
	if want := []string{"comp.revoked by admin-token", "comp.granted by ada"}; !cmp.Equal(actions, want) {
		t.Errorf("audit = %v; want %v", actions, want)
	}
	if d.Comp || len(d.Comps) != 1 || !d.Comps[0].Revoked {
		t.Errorf("detail after revoke: %+v", d)
	}
}

func TestAPI_Sync(t *testing.T) {
	e := newEnv(t, nil)
	post := func(path, body string, hdr ...string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), "POST", e.srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	if code, body := post("/api/sync?customer=cus_a", ""); code != 200 || mustJSON[SyncResult](t, body) != (SyncResult{Status: "synced", Customer: "cus_a"}) {
		t.Errorf("customer in query: %d %s", code, body)
	}
	if code, body := post("/api/sync", "customer=cus_z", form...); code != 200 {
		t.Errorf("customer in form: %d %s", code, body)
	}
	if code, body := post("/api/sync", `{"user":"user_a"}`, "Content-Type", "application/json"); code != 200 {
		t.Errorf("user in JSON: %d %s", code, body)
	}
	if code, body := post("/api/sync?user=org_x", ""); code != 200 {
		t.Errorf("org in query: %d %s", code, body)
	}
	if diff := cmp.Diff(e.billing.synced(), []string{"cus_a/", "cus_z/", "cus_a/", "cus_x/"}); diff != "" {
		t.Errorf("SyncCustomer calls (-got +want):\n%s", diff)
	}
	for name, path := range map[string]string{
		"not a customer": "/api/sync?customer=sub_1",
		"not a user":     "/api/sync?user=cus_a",
		"both":           "/api/sync?user=user_a&customer=cus_a",
	} {
		if code, body := post(path, ""); code != 400 {
			t.Errorf("%s: %d %s; want 400", name, code, body)
		}
	}
	if code, body := post("/api/sync?user=user_b", ""); code != 404 || !strings.Contains(errorOf(t, body), "no Stripe customer") {
		t.Errorf("user without a customer: %d %s; want 404", code, body)
	}

	e.billing.mu.Lock()
	e.billing.err = proxy.ErrStripeUnavail
	e.billing.mu.Unlock()
	if code, body := post("/api/sync?customer=cus_a", ""); code != http.StatusBadGateway {
		t.Errorf("Stripe down: %d %s; want 502", code, body)
	}

	code, body := post("/api/sync", "", "X-Admin-Actor", "ops")
	if code != http.StatusAccepted || mustJSON[SyncResult](t, body).Status != "started" {
		t.Errorf("sync all: %d %s; want 202 started", code, body)
	}
	select {
	case <-e.billing.all:
	case <-time.After(5 * time.Second):
		t.Fatal("SyncAll was not called")
	}

	log, err := e.store.AuditLog(t.Context(), proxy.Subject{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 6 || log[0].Actor != "ops" || log[0].Detail != "all customers" || log[0].Action != ActionSyncRequested {
		t.Errorf("audit log = %+v; want six sync requests, the last by ops for all customers", log)
	}
	if a, _ := e.store.AuditLog(t.Context(), userA(), 0); len(a) != 1 || a[0].Detail != "customer cus_a" {
		t.Errorf("user_a's audit = %+v; want the sync requested by user", a)
	}

	noBilling := newEnv(t, func(c *Config) { c.Billing = nil })
	if code, _, _ := noBilling.do(t, "POST", "/api/sync", ""); code != http.StatusServiceUnavailable {
		t.Errorf("sync without billing: %d, want 503", code)
	}
}

func TestAPI_Backup(t *testing.T) {
	e := newEnv(t, nil)
	code, hdr, body := e.do(t, "GET", "/api/backup", "")
	if code != 200 {
		t.Fatalf("backup: %d %s", code, body)
	}
	if cd := hdr.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, "tollgate-20260301T120000Z.db") {
		t.Errorf("Content-Disposition = %q", cd)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	copied, err := bolt.Open(path, bolt.Options{Timeout: 100 * time.Millisecond, Now: t0})
	if err != nil {
		t.Fatalf("the backup does not open: %v", err)
	}
	defer copied.Close()
	got, _, err := copied.ListUsers(t.Context(), proxy.UserFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := e.store.ListUsers(t.Context(), proxy.UserFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("users in the backup (-got +want):\n%s", diff)
	}
	if log, _ := e.store.AuditLog(t.Context(), proxy.Subject{}, 0); len(log) != 1 || log[0].Action != ActionBackup {
		t.Errorf("audit after backup = %+v", log)
	}
}

func TestAPI_NoStore(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Store = nil })
	for _, p := range []string{"/api/users", "/api/users/user_a", "/api/backup"} {
		if code, _, body := e.do(t, "GET", p, ""); code != http.StatusServiceUnavailable || errorOf(t, body) == "" {
			t.Errorf("%s without a store: %d %s; want 503", p, code, body)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	"github.com/tollgate/tollgate/proxy/admin"
	"github.com/tollgate/tollgate/proxy/bolt"
	"github.com/tollgate/tollgate/proxy/config"
)

const admToken = "cli-test-token-0123456789"

func admT0() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

// admBilling records the syncs the admin API asks for.
type admBilling struct {
	mu    sync.Mutex
	calls []string
}

func (b *admBilling) SyncCustomer(_ context.Context, customerID, _ string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, customerID)
	return nil
}

func (b *admBilling) SyncAll(context.Context) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "all")
	return 0, nil
}

func (b *admBilling) got() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.calls...)
}

// admServer runs the admin API over a store holding user_a (pro, active),
// user_b (seen, nothing else) and org_x (team, trialing), and writes a
// config pointing at it. It returns the config's path.
func admServer(t *testing.T, token string) (string, *admBilling, *bolt.Store) {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "tollgate.db"), bolt.Options{Timeout: 100 * time.Millisecond, Now: admT0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ctx := t.Context()
	if err := store.RecordSeen(ctx, map[string]time.Time{"user_a": admT0(), "user_b": admT0().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := store.PutUser(ctx, proxy.User{ID: "user_a", Email: "ada@example.com", OrgIDs: []string{"org_x"}}); err != nil {
		t.Fatal(err)
	}
	for _, st := range []proxy.CustomerState{
		{CustomerID: "cus_a", Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_a"}, Subscriptions: []proxy.Subscription{
			{ID: "sub_a", Status: proxy.StatusActive, Plan: "pro", CurrentPeriodEnd: admT0().AddDate(0, 1, 0)}}},
		{CustomerID: "cus_x", Subject: proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_x"}, Email: "x@example.com", Subscriptions: []proxy.Subscription{
			{ID: "sub_x", Status: proxy.StatusTrialing, Plan: "team", CurrentPeriodEnd: admT0().AddDate(0, 0, 7)}}},
	} {
		if _, _, err := store.CommitCustomer(ctx, st, ""); err != nil {
			t.Fatal(err)
		}
	}
	billing := &admBilling{}
	plans := func() []proxy.Plan {
		return []proxy.Plan{{Key: "pro", Scope: proxy.SubjectUser}, {Key: "team", Scope: proxy.SubjectOrg}}
	}
	h, err := admin.New(admin.Config{Token: admToken, Store: store, Billing: billing, Plans: plans, Now: admT0,
		Background: func(fn func()) { fn() }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return admConfig(t, srv.Listener.Addr().String(), token), billing, store
}

// admConfig writes a minimal config whose admin listener is addr.
func admConfig(t *testing.T, addr, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	body := fmt.Sprintf("listen: \"127.0.0.1:1\"\npublic_url: \"https://app.example.com\"\nupstream: \"http://127.0.0.1:2\"\ndefault_access: public\nadmin:\n  listen: %q\n  token: %q\n", addr, token)
	if addr == "" {
		body = strings.Replace(body, "  listen: \"\"\n", "", 1)
	}
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func admRun(t *testing.T, fn func(context.Context, []string, io.Writer, io.Writer) error, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := fn(t.Context(), args, &out, &errb)
	return out.String(), err
}

func TestUsersCommand(t *testing.T) {
	cfg, _, _ := admServer(t, admToken)

	table, err := admRun(t, runUsers, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("table:\n%s", table)
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("table has %d lines, want a header, three users and a count:\n%s", len(lines), table)
	}
	for i, want := range [][]string{
		{"USER", "EMAIL", "CUSTOMER", "PLANS", "STATUS", "PERIOD END", "LAST SEEN"},
		{"org_x", "x@example.com", "cus_x", "team", "trialing", "2026-03-08", "-"},
		{"user_a", "ada@example.com", "cus_a", "pro", "active", "2026-04-01", "2026-03-01 12:00"},
		{"user_b", "-", "-", "-", "-", "-", "2026-03-01 13:00"},
		{"3 users"},
	} {
		if !containsInOrder(lines[i], want) {
			t.Errorf("line %d = %q; want %q in order", i, lines[i], want)
		}
	}

	js, err := admRun(t, runUsers, "-config", cfg, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var users []admin.User
	if err := json.Unmarshal([]byte(js), &users); err != nil {
		t.Fatalf("--json: %v\n%s", err, js)
	}
	if len(users) != 3 || users[1].ID != "user_a" || users[1].CustomerID != "cus_a" || users[1].Status != "active" || !cmp.Equal(users[1].Plans, []string{"pro"}) {
		t.Errorf("--json users = %+v", users)
	}

	out, err := admRun(t, runUsers, "-config", cfg, "--csv", "-status", "active")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("--csv: %v\n%s", err, out)
	}
	want := [][]string{
		{"id", "kind", "email", "org_ids", "customer_id", "plans", "status", "period_end", "comp", "first_seen", "last_seen"},
		{"user_a", "user", "ada@example.com", "org_x", "cus_a", "pro", "active", "2026-04-01T12:00:00Z", "false", "2026-03-01T12:00:00Z", "2026-03-01T12:00:00Z"},
	}
	if diff := cmp.Diff(rows, want); diff != "" {
		t.Errorf("--csv -status active (-got +want):\n%s", diff)
	}

	if out, err := admRun(t, runUsers, "-config", cfg, "--json", "-plan", "team"); err != nil || !strings.Contains(out, `"org_x"`) || strings.Contains(out, "user_a") {
		t.Errorf("-plan team: %v\n%s", err, out)
	}
	if out, err := admRun(t, runUsers, "-config", cfg, "--json", "-status", "paused"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("no match: %v %q; want []", err, out)
	}
	if _, err := admRun(t, runUsers, "-config", cfg, "-plan", "gold"); err == nil || !strings.Contains(err.Error(), "unknown plan") {
		t.Errorf("unknown plan: err = %v", err)
	}
	if _, err := admRun(t, runUsers, "-config", cfg, "--json", "--csv"); !errors.Is(err, errUsage) {
		t.Errorf("--json --csv: err = %v; want a usage error", err)
	}

	// The client pages through the API, handing over each page as it
	// arrives (a million users stream rather than wait in memory).
	c, err := newAdminClient(configSource{path: cfg})
	if err != nil {
		t.Fatal(err)
	}
	var pages [][]string
	err = c.users(t.Context(), "", "", 1, func(page []admin.User) error {
		var ids []string
		for _, u := range page {
			ids = append(ids, u.ID)
		}
		pages = append(pages, ids)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]string{{"org_x"}, {"user_a"}, {"user_b"}}, pages); diff != "" {
		t.Errorf("pages of one user (-want +got):\n%s", diff)
	}
}

// containsInOrder reports whether line holds every want, in order.
func containsInOrder(line string, want []string) bool {
	for _, w := range want {
		i := strings.Index(line, w)
		if i < 0 {
			return false
		}
		line = line[i+len(w):]
	}
	return true
}

func TestSyncCommand(t *testing.T) {
	cfg, billing, store := admServer(t, admToken)
	if out, err := admRun(t, runSync, "-config", cfg, "-customer", "cus_a"); err != nil || out != "synced cus_a\n" {
		t.Errorf("-customer: %v %q", err, out)
	}
	if out, err := admRun(t, runSync, "-config", cfg, "-user", "org_x"); err != nil || out != "synced cus_x\n" {
		t.Errorf("-user: %v %q", err, out)
	}
	if out, err := admRun(t, runSync, "-config", cfg); err != nil || !strings.Contains(out, "started") {
		t.Errorf("all: %v %q", err, out)
	}
	if diff := cmp.Diff(billing.got(), []string{"cus_a", "cus_x", "all"}); diff != "" {
		t.Errorf("syncs (-got +want):\n%s", diff)
	}
	if _, err := admRun(t, runSync, "-config", cfg, "-user", "user_b"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("user without a customer: err = %v; want the API's 404", err)
	}
	if _, err := admRun(t, runSync, "-config", cfg, "-user", "user_a", "-customer", "cus_a"); !errors.Is(err, errUsage) {
		t.Errorf("both flags: err = %v; want a usage error", err)
	}
	log, err := store.AuditLog(t.Context(), proxy.Subject{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 3 || !strings.HasPrefix(log[0].Actor, "cli") {
		t.Errorf("audit = %+v; want three syncs by the CLI", log)
	}
}

func TestBackupCommand(t *testing.T) {
	cfg, _, _ := admServer(t, admToken)
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.db")
	out, err := admRun(t, runBackup, "-config", cfg, "-o", path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "2 customers, 2 users") {
		t.Errorf("output %q", out)
	}
	s, err := bolt.Open(path, bolt.Options{Timeout: 100 * time.Millisecond, Now: admT0})
	if err != nil {
		t.Fatalf("the backup does not open: %v", err)
	}
	defer s.Close()
	ents, err := s.Entitlements(t.Context(), proxy.Subject{Kind: proxy.SubjectUser, ID: "user_a"})
	if err != nil || ents == nil || ents.CustomerID != "cus_a" {
		t.Errorf("user_a in the backup: %+v, %v", ents, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode: %v %v; want 0600", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the directory; want only the backup (no temporary left)", len(entries))
	}
	if _, err := admRun(t, runBackup, "-config", cfg); !errors.Is(err, errUsage) {
		t.Errorf("no -o: err = %v; want a usage error", err)
	}
}

// TestBackupCommand_BadDownload: what does not open as a store never
// replaces the file.
func TestBackupCommand_BadDownload(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "this is not a bbolt file")
	}))
	defer srv.Close()
	cfg := admConfig(t, srv.Listener.Addr().String(), admToken)
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(path, []byte("previous backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := admRun(t, runBackup, "-config", cfg, "-o", path); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Errorf("err = %v; want the copy rejected", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "previous backup" {
		t.Errorf("the previous backup was replaced by %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the directory; want the temporary removed", len(entries))
	}
}

func TestAdminCommands_ConfigAndToken(t *testing.T) {
	cfg, billing, _ := admServer(t, "wrong-token-0123456789")
	if _, err := admRun(t, runSync, "-config", cfg, "-customer", "cus_a"); err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "admin.token") {
		t.Errorf("wrong token: err = %v", err)
	}
	if len(billing.got()) != 0 {
		t.Errorf("a wrong token synced %v", billing.got())
	}
	noListen := admConfig(t, "", admToken)
	if _, err := admRun(t, runUsers, "-config", noListen); err == nil || !strings.Contains(err.Error(), "admin.listen") {
		t.Errorf("no admin.listen: err = %v", err)
	}
	noToken := admConfig(t, "127.0.0.1:9", "")
	if _, err := admRun(t, runUsers, "-config", noToken); err == nil || !strings.Contains(err.Error(), "admin.token") {
		t.Errorf("no admin.token: err = %v", err)
	}
}

// TestServeAdmin: a gateway's admin listener answers health and metrics
// without a token, guards its API, and stops cleanly.
func TestServeAdmin(t *testing.T) {
	ln := loopback(t)
	addr := ln.Addr().String()
	cfg, err := config.Load(admConfig(t, addr, admToken))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := newApp(cfg, appDeps{})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	stop, err := serveAdmin(t.Context(), ln, cfg, gw, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz", ""); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("/readyz", ""); code != 200 {
		t.Errorf("/readyz = %d %s", code, body)
	}
	if code, body := get("/metrics", ""); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d (%d bytes)", code, len(body))
	}
	if code, _ := get("/api/users", ""); code != 401 {
		t.Errorf("/api/users without a token = %d, want 401", code)
	}
	if code, _ := get("/api/users", admToken); code != 503 {
		t.Errorf("/api/users without a store = %d, want 503", code)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if err := stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the admin listener still accepts after stop")
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/admin"
	"github.com/tollgate/tollgate/proxy/bolt"
)

// keysServer runs the admin API with API keys on (test mode) over a fresh
// store, and writes a config pointing at it.
func keysServer(t *testing.T) (string, *bolt.Store) {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "tollgate.db"), bolt.Options{Timeout: 100 * time.Millisecond, Now: admT0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h, err := admin.New(admin.Config{Token: admToken, Store: store, Keys: store, Now: admT0,
		Plans: func() []proxy.Plan { return []proxy.Plan{{Key: "pro", Scope: proxy.SubjectUser}} }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return admConfig(t, srv.Listener.Addr().String(), admToken), store
}

var printedKey = regexp.MustCompile(`(?m)^  (tg_test_[0-9A-Za-z]+)$`)

// TestKeysCommand: create prints the key once (the store holds its hash),
// list shows it, revoke revokes it, and the audit names the CLI.
func TestKeysCommand(t *testing.T) {
	cfg, store := keysServer(t)
	ctx := t.Context()

	out, err := admRun(t, runKeys, "create", "-config", cfg, "-subject", "user_a", "-name", "CI", "-scope", "258AVO, 415VNA", "-expires", "90")
	if err != nil {
		t.Fatal(err)
	}
	m := printedKey.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "will not be shown again") || !strings.Contains(out, "expires 2026-05-30") {
		t.Fatalf("create printed:\n%s", out)
	}
	key := m[1]
	if err := proxy.CheckAPIKey(key, false); err != nil {
		t.Errorf("the printed key: %v", err)
	}
	rec, err := store.APIKeyByHash(ctx, proxy.HashAPIKey(key))
	if err != nil {
		t.Fatalf("the printed key is not the stored one: %v", err)
	}
	want := proxy.APIKey{ID: rec.ID, Hash: rec.Hash, Prefix: key[:proxy.APIKeyShownPrefix], Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_a"},
		Name: "CI", Scopes: []string{"258AVO", "415VNA"}, CreatedBy: "admin:" + cliActor(), CreatedAt: admT0(), ExpiresAt: admT0().AddDate(0, 0, 90)}
	if diff := cmp.Diff(rec, want); diff != "" {
		t.Errorf("stored record (-got +want):\n%s", diff)
	}

	// --json: the key and its record on stdout, the warning on stderr.
	var stdout, stderr bytes.Buffer
	if err := runKeys(ctx, []string{"create", "-config", cfg, "-subject", "org_x", "-name", "all", "-scope", "*", "--json"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	var nk admin.NewKey
	if err := json.Unmarshal(stdout.Bytes(), &nk); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout.String())
	}
	if proxy.CheckAPIKey(nk.Key, false) != nil || nk.Record.Subject != "org_x" || !cmp.Equal(nk.Record.Scopes, []string{"*"}) || !nk.Record.ExpiresAt.IsZero() {
		t.Errorf("--json = %+v", nk)
	}
	if !strings.Contains(stderr.String(), "will not be shown again") {
		t.Errorf("--json stderr = %q", stderr.String())
	}

	table, err := admRun(t, runKeys, "list", "-config", cfg, "-subject", "user_a")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) != 3 || !containsInOrder(lines[0], []string{"ID", "PREFIX", "NAME", "SCOPES", "CREATED", "LAST USED", "EXPIRES", "REVOKED"}) ||
		!containsInOrder(lines[1], []string{rec.ID, rec.Prefix + "…", "CI", "258AVO,415VNA", "2026-03-01 12:00", "-", "2026-05-30", "-"}) ||
		lines[2] != "1 keys, 1 usable" {
		t.Errorf("list:\n%s", table)
	}
	if strings.Contains(table, key) {
		t.Error("list shows the key")
	}

	out, err = admRun(t, runKeys, "revoke", "-config", cfg, "-id", rec.ID)
	if err != nil || !strings.Contains(out, "revoked "+rec.ID) {
		t.Errorf("revoke: %v %q", err, out)
	}
	if got, _ := store.APIKeyByID(ctx, rec.ID); got.Usable(admT0()) == nil {
		t.Error("the key is still usable after revoke")
	}
	js, err := admRun(t, runKeys, "-config", cfg, "-subject", "user_a", "--json", "list")
	if err != nil {
		t.Fatal(err)
	}
	var keys []admin.APIKey
	if err := json.Unmarshal([]byte(js), &keys); err != nil {
		t.Fatalf("list --json: %v\n%s", err, js)
	}
	if len(keys) != 1 || keys[0].ID != rec.ID || keys[0].Usable || keys[0].RevokedAt.IsZero() {
		t.Errorf("list --json after revoke = %+v", keys)
	}

	log, err := store.AuditLog(ctx, proxy.Subject{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range log {
		if !strings.HasPrefix(e.Actor, "cli") || strings.Contains(e.Detail, "tg_test_") {
			t.Errorf("audit entry %+v: want the CLI as actor and no key", e)
		}
		actions = append(actions, e.Action)
	}
	slices.Sort(actions)
	if diff := cmp.Diff(actions, []string{proxy.ActionAPIKeyCreated, proxy.ActionAPIKeyCreated, proxy.ActionAPIKeyRevoked}); diff != "" {
		t.Errorf("audit actions (-got +want):\n%s", diff)
	}
}

// TestKeysCommand_Mistakes: usage mistakes exit 2 before any request; the
// API's refusals come back with its message.
func TestKeysCommand_Mistakes(t *testing.T) {
	cfg, _ := keysServer(t)
	for _, args := range [][]string{
		{},
		{"rotate", "-config", cfg},
		{"list", "-config", cfg},
		{"list", "-config", cfg, "-subject", "cus_1"},
		{"list", "-config", cfg, "-subject", "user:user_a"},
		{"list", "-config", cfg, "-subject", "user_a", "-name", "x"},
		{"create", "-config", cfg, "-subject", "user_a", "-scope", "*"},
		{"create", "-config", cfg, "-subject", "user_a", "-name", "CI"},
		{"revoke", "-config", cfg},
		{"revoke", "-config", cfg, "-id", "tg_test_notanid"},
		{"list", "-config", cfg, "-subject", "user_a", "extra"},
	} {
		if _, err := admRun(t, runKeys, args...); !errors.Is(err, errUsage) {
			t.Errorf("%q: err = %v; want a usage error", args, err)
		}
	}
	if _, err := admRun(t, runKeys, "create", "-config", cfg, "-subject", "user_a", "-name", "CI", "-scope", "*", "-expires", "5000"); err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "3650") {
		t.Errorf("-expires 5000: err = %v; want the API's 400", err)
	}
	if _, err := admRun(t, runKeys, "revoke", "-config", cfg, "-id", "key_0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown ID: err = %v; want the API's 404", err)
	}

	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"keys", "-h"}, &out, &errb)
	if !errors.Is(err, flag.ErrHelp) || !strings.HasPrefix(errb.String(), "Usage: tollgate keys list|create|revoke [flags]\n\nLists, makes and revokes") {
		t.Errorf("keys -h: %v\n%s", err, errb.String())
	}
}

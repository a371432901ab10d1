package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/proxy/postgres"
	"github.com/tollgate/tollgate/proxy/postgres/pgtest"
)

// TestMigrateAndCheckOnline_PostgreSQL: against an empty database,
// `tollgate check -online` reports schema version 0 and what brings it up;
// `tollgate migrate` migrates it, and a second run finds it up to date;
// check -online then reports the current version; a database at a version
// newer than this tollgate's fails check -online and migrate, naming both
// versions.
func TestMigrateAndCheckOnline_PostgreSQL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	cluster := pgtest.Start(t, pgtest.Options{})
	dsn := cluster.NewDB(t)
	d, _ := mustRunDemo(t)
	for k, v := range d.env {
		t.Setenv(k, v)
	}
	t.Setenv("DEMO_DSN", dsn)
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, replicaConfig(), 0o600); err != nil {
		t.Fatal(err)
	}
	want := postgres.SchemaVersion()
	cmd := func(args ...string) (string, error) {
		t.Helper()
		var out, errb bytes.Buffer
		err := run(t.Context(), append(args, "-config", config), &out, &errb)
		return out.String() + errb.String(), err
	}

	out, err := cmd("check", "-online")
	if err != nil {
		t.Fatalf("check -online on an empty database: %v\n%s", err, out)
	}
	if line := fmt.Sprintf("store: PostgreSQL reachable, schema version 0; tollgate serve (or tollgate migrate) brings it to %d\n", want); !strings.Contains(out, line) {
		t.Errorf("check -online on an empty database printed\n%s\nwant the line %q", out, line)
	}

	out, err = cmd("migrate")
	if line := fmt.Sprintf("store: migrated to schema version %d\n", want); err != nil || out != line {
		t.Fatalf("first migrate: %v, printed %q, want %q", err, out, line)
	}
	out, err = cmd("migrate")
	if line := fmt.Sprintf("store: schema version %d, up to date\n", want); err != nil || out != line {
		t.Fatalf("second migrate: %v, printed %q, want %q", err, out, line)
	}
	out, err = cmd("check", "-online")
	if err != nil {
		t.Fatalf("check -online after migrate: %v\n%s", err, out)
	}
	if line := fmt.Sprintf("store: PostgreSQL reachable, schema version %d\n", want); !strings.Contains(out, line) {
		t.Errorf("check -online after migrate printed\n%s\nwant the line %q", out, line)
	}

	// A newer tollgate migrated the database.
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future.sql')`, want+1); err != nil {
		t.Fatal(err)
	}
	newer := fmt.Sprintf("the schema is at version %d, newer than this tollgate's %d", want+1, want)
	if out, err := cmd("check", "-online"); err == nil || !strings.Contains(err.Error(), newer) {
		t.Errorf("check -online on a newer schema: %v, want an error saying %q\n%s", err, newer, out)
	}
	if out, err := cmd("migrate"); err == nil || !strings.Contains(err.Error(), fmt.Sprint(want+1)) {
		t.Errorf("migrate on a newer schema: %v, want an error naming version %d\n%s", err, want+1, out)
	}
}

package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy/postgres/pgtest"
)

func TestMigrate_TwoReplicasAtOnceApplyEachMigrationOnce(t *testing.T) {
	dsn := pgtest.DB(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := Open(ctx, dsn, Options{Migrate: true})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
	s, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var rows int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(migrations()) {
		t.Errorf("schema_migrations has %d rows, want %d", rows, len(migrations()))
	}
	if n, err := s.Migrate(ctx); err != nil || n != 0 {
		t.Errorf("Migrate on an up-to-date database = %d, %v; want 0, nil", n, err)
	}
}

func TestOpen_RefusesAnotherSchema(t *testing.T) {
	dsn := pgtest.DB(t)
	ctx := context.Background()
	if _, err := Open(ctx, dsn, Options{}); !errors.Is(err, ErrSchema) {
		t.Errorf("Open of an empty database without Migrate: %v; want ErrSchema", err)
	}
	s, err := Open(ctx, dsn, Options{Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dsn, Options{Migrate: true}); !errors.Is(err, ErrSchema) {
		t.Errorf("Open of a newer database: %v; want ErrSchema", err)
	}
}

func TestOpen_ErrorsDoNotShowThePassword(t *testing.T) {
	pgtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, dsn := range []string{"postgres://u:hunter2@127.0.0.1:1/x?sslmode=disable&connect_timeout=1", "postgres://u:hunter2@[::1/x", "host=127.0.0.1 port=1 password=hunter2 connect_timeout=1"} {
		_, err := Open(ctx, dsn, Options{ConnectTimeout: time.Second})
		if err == nil {
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open's error shows the password: %v", err)
		}
	}
}

// Migrations are told apart by number: one numbered below the highest
// applied (two branches that took their numbers in one order and landed
// in the other) is applied when it comes, and until then Open refuses the
// database as not migrated; one this tollgate does not know is refused.
func TestMigrate_AppliesAMigrationNumberedBelowOneApplied(t *testing.T) {
	dsn := pgtest.DB(t)
	ctx := context.Background()
	s, err := Open(ctx, dsn, Options{Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	real := migrations()
	next := real[len(real)-1].version
	gapFour := migration{version: next + 2, name: "gap_four.sql", sql: `CREATE TABLE gap_four (x int)`}
	gapTwo := migration{version: next + 1, name: "gap_two.sql", sql: `CREATE TABLE gap_two (x int)`}
	if n, err := s.migrate(ctx, append(slices.Clone(real), gapFour)); err != nil || n != 1 {
		t.Fatalf("migrate with the later one = %d, %v; want 1", n, err)
	}
	have, err := applied(ctx, s.pool)
	if err != nil {
		t.Fatal(err)
	}
	if missing, unknown := pending(have, append(slices.Clone(real), gapTwo, gapFour)); len(missing) != 1 || missing[0].version != gapTwo.version || len(unknown) != 0 {
		t.Errorf("pending = %v, %v; want %s alone missing", missing, unknown, gapTwo.name)
	}
	if err := s.checkSchema(ctx, append(slices.Clone(real), gapTwo, gapFour)); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), gapTwo.name) {
		t.Errorf("the schema check of a tollgate with the earlier one: %v; want ErrSchema naming %s", err, gapTwo.name)
	}
	if n, err := s.migrate(ctx, append(slices.Clone(real), gapTwo, gapFour)); err != nil || n != 1 {
		t.Fatalf("migrate with the earlier one landed = %d, %v; want 1 (the gap)", n, err)
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('gap_two') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		t.Errorf("gap_two was not made: %v, %v", exists, err)
	}
	// This tollgate's own migrations do not know the two: Open refuses.
	if _, err := Open(ctx, dsn, Options{}); !errors.Is(err, ErrSchema) {
		t.Errorf("Open of a database with migrations this tollgate lacks: %v; want ErrSchema", err)
	}
	if _, err := s.Migrate(ctx); !errors.Is(err, ErrSchema) {
		t.Errorf("Migrate of a database with migrations this tollgate lacks: %v; want ErrSchema", err)
	}
}

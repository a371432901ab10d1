package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// The migrations are a small versioned runner rather than a library such
// as goose: they are SQL files embedded in the binary, numbered, applied
// in order, each in its own transaction with its row in
// schema_migrations, all under one session advisory lock, so replicas
// starting together apply each once. That is all tollgate needs, and a
// library would bring its own driver registry (database/sql) beside pgx,
// and its own table, for no more.

//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations reads the embedded files, named NNNN_what.sql.
func migrations() []migration {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		panic(err) // embedded: cannot fail
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			panic("postgres: migration " + e.Name() + " is not named NNNN_what.sql")
		}
		data, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			panic(err)
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(data)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	return out
}

// SchemaVersion is the schema this tollgate reads: its newest migration.
func SchemaVersion() int {
	ms := migrations()
	return ms[len(ms)-1].version
}

// migrateLock is the advisory lock key of the migrations ("tollgate" and
// 1, as two int4s: the leader's lock is ("tollgate", 2)).
const (
	lockSpace   = 0x746f6c6c // "toll"
	lockMigrate = 1
	lockLeader  = 2
)

// SchemaVersion reads the database's schema version (0: none yet).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return 0, nil
		}
		return 0, fmt.Errorf("postgres: schema version: %w", err)
	}
	return v, nil
}

// Migrate applies the migrations the database has not had, under
// pg_advisory_lock on one connection, and returns how many it applied. A
// database newer than this tollgate is refused.
func (s *Store) Migrate(ctx context.Context) (int, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, lockSpace, lockMigrate); err != nil {
		return 0, fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1, $2)`, lockSpace, lockMigrate)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return 0, fmt.Errorf("postgres: migrate: %w", err)
	}
	var have int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return 0, fmt.Errorf("postgres: migrate: %w", err)
	}
	if want := SchemaVersion(); have > want {
		return 0, fmt.Errorf("%w: the database is at %d, newer than this tollgate's %d", ErrSchema, have, want)
	}
	n := 0
	for _, m := range migrations() {
		if m.version <= have {
			continue
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return n, fmt.Errorf("postgres: migrate %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			_ = tx.Rollback(ctx)
			return n, fmt.Errorf("postgres: migrate %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			_ = tx.Rollback(ctx)
			return n, fmt.Errorf("postgres: migrate %s: %w", m.name, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return n, fmt.Errorf("postgres: migrate %s: %w", m.name, err)
		}
		n++
	}
	return n, nil
}

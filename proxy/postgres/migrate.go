package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The migrations are a small versioned runner rather than a library such
// as goose: they are SQL files embedded in the binary, numbered, applied
// in order, each in its own transaction with its row in
// schema_migrations, all under one session advisory lock, so replicas
// starting together apply each once. A database is compared migration by
// migration (pending), not by its highest number: a number taken below
// one already applied is still applied (README "Running several
// replicas"). That is all tollgate needs, and a
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
	ms, err := parseMigrations(migrationFiles)
	if err != nil {
		panic(err) // embedded: TestMigrations_EmbeddedAreDistinct fails first
	}
	return ms
}

// parseMigrations reads the migrations under migrations/ in files, in
// order of their numbers. Two of one number are refused: told apart by
// number (pending), the second would never run on a database that had
// the first, and a new database would fail on its row. Two branches that
// each add a migration may take one number, and their files do not
// conflict in git: the later to land renumbers its own.
func parseMigrations(files fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(files, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migration %s is not named NNNN_what.sql", e.Name())
		}
		data, err := fs.ReadFile(files, "migrations/"+e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(data)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(out); i++ {
		if out[i-1].version == out[i].version {
			return nil, fmt.Errorf("postgres: migrations %s and %s share the number %d: renumber the later one", out[i-1].name, out[i].name, out[i].version)
		}
	}
	return out, nil
}

// SchemaVersion is the schema this tollgate reads: its newest migration.
func SchemaVersion() int {
	ms := migrations()
	return ms[len(ms)-1].version
}

// The advisory locks' keys, as two int4s: "toll" and the lock's number.
// The migrations' (lockMigrate), the leader's lease (lockLeader) and the
// Clerk webhooks' ordering (lockClerkOrder, clerkorder.go).
const (
	lockSpace      = 0x746f6c6c // "toll"
	lockMigrate    = 1
	lockLeader     = 2
	lockClerkOrder = 3
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

// applied reads the versions schema_migrations records (none before the
// first migration).
func applied(ctx context.Context, q querier) (map[int]bool, error) {
	var versions []int
	rows, err := q.Query(ctx, `SELECT version FROM schema_migrations`)
	if err == nil {
		versions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	}
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return map[int]bool{}, nil
		}
		return nil, err
	}
	out := make(map[int]bool, len(versions))
	for _, v := range versions {
		out[v] = true
	}
	return out, nil
}

// pending compares the database's migrations with ms: those it lacks, in
// order, and those it has that ms does not know (a newer tollgate's).
// Migrations are told apart by number, not by the highest one applied: a
// migration numbered below one already applied (two branches that took
// their numbers in one order and landed in the other) is still pending.
func pending(have map[int]bool, ms []migration) (missing []migration, unknown []int) {
	known := make(map[int]bool, len(ms))
	for _, m := range ms {
		known[m.version] = true
		if !have[m.version] {
			missing = append(missing, m)
		}
	}
	for v := range have {
		if !known[v] {
			unknown = append(unknown, v)
		}
	}
	slices.Sort(unknown)
	return missing, unknown
}

// checkSchema is nil when the database has had exactly the migrations ms
// (this tollgate's), else an error wrapping ErrSchema that says what
// differs.
func (s *Store) checkSchema(ctx context.Context, ms []migration) error {
	have, err := applied(ctx, s.pool)
	if err != nil {
		return fmt.Errorf("postgres: schema version: %w", err)
	}
	missing, unknown := pending(have, ms)
	switch {
	case len(unknown) > 0:
		return fmt.Errorf("%w: the database has migrations %v, which this tollgate (schema %d) does not know: run the newer tollgate", ErrSchema, unknown, ms[len(ms)-1].version)
	case len(missing) > 0:
		return fmt.Errorf("%w: the database lacks %d of this tollgate's migrations (the first: %s); run tollgate migrate", ErrSchema, len(missing), missing[0].name)
	}
	return nil
}

// Migrate applies the migrations the database has not had, under
// pg_advisory_lock on one connection, and returns how many it applied. A
// database newer than this tollgate is refused.
func (s *Store) Migrate(ctx context.Context) (int, error) {
	return s.migrate(ctx, migrations())
}

func (s *Store) migrate(ctx context.Context, ms []migration) (int, error) {
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
	have, err := applied(ctx, conn)
	if err != nil {
		return 0, fmt.Errorf("postgres: migrate: %w", err)
	}
	missing, unknown := pending(have, ms)
	if len(unknown) > 0 {
		return 0, fmt.Errorf("%w: the database has migrations %v, newer than this tollgate's %d", ErrSchema, unknown, ms[len(ms)-1].version)
	}
	n := 0
	for _, m := range missing {
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

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
	"github.com/tollgate/tollgate/proxy/postgres"
	"github.com/tollgate/tollgate/proxy/postgres/pgtest"
	"github.com/tollgate/tollgate/proxy/stripe"
)

// loadStore is what the scenarios ask of either store.
type loadStore interface {
	stripe.Store
	proxy.EntitlementSource
	Close() error
}

// openLoadStore opens a fresh store of the kind named ("bolt" or
// "postgres"). PostgreSQL is dsn's database, or, without one, a throwaway
// cluster started here (fsync and synchronous_commit on, as in
// production) and removed by the returned cleanup.
func openLoadStore(ctx context.Context, kind, dsn string) (loadStore, string, func(), error) {
	switch kind {
	case "bolt":
		dir, err := os.MkdirTemp("", "tollgate-load-")
		if err != nil {
			return nil, "", nil, err
		}
		s, err := bolt.Open(filepath.Join(dir, "tollgate.db"), bolt.Options{})
		if err != nil {
			os.RemoveAll(dir)
			return nil, "", nil, err
		}
		return s, "bbolt", func() { s.Close(); os.RemoveAll(dir) }, nil
	case "postgres":
		desc := "PostgreSQL at -dsn"
		cleanup := func() {}
		if dsn == "" {
			c, err := pgtest.StartCluster(pgtest.Options{Durable: true})
			if err != nil {
				return nil, "", nil, err
			}
			if dsn, err = c.CreateDB(ctx, fmt.Sprintf("load_%d", time.Now().UnixNano())); err != nil {
				c.Remove()
				return nil, "", nil, err
			}
			desc, cleanup = "PostgreSQL (a throwaway local cluster, fsync and synchronous_commit on)", func() { c.Remove() }
		}
		s, err := postgres.Open(ctx, dsn, postgres.Options{Migrate: true, MaxConns: 16})
		if err != nil {
			cleanup()
			return nil, "", nil, err
		}
		return s, desc, func() { s.Close(); cleanup() }, nil
	}
	return nil, "", nil, fmt.Errorf("unknown store %q; want bolt or postgres", kind)
}

// copyToPostgres copies the bbolt store at path into PostgreSQL with
// `tollgate store copy` (README, "Running several replicas": moving up),
// as an operator would, and times it. The database is dsn's (empty), or
// a throwaway cluster's, removed by the returned cleanup.
func copyToPostgres(bin, path, dsn string, out io.Writer) (string, func(), error) {
	ctx := context.Background()
	desc, cleanup := "PostgreSQL at -dsn", func() {}
	if dsn == "" {
		c, err := pgtest.StartCluster(pgtest.Options{Durable: true})
		if err != nil {
			return "", nil, err
		}
		if dsn, err = c.CreateDB(ctx, "tollgate"); err != nil {
			c.Remove()
			return "", nil, err
		}
		desc, cleanup = "a throwaway local PostgreSQL cluster (fsync and synchronous_commit on)", func() { c.Remove() }
	}
	if held, err := pgAccounts(ctx, dsn); err != nil {
		cleanup()
		return "", nil, err
	} else if held > 0 {
		// -dsn's database holds a store already (a copy of -store's, kept
		// from an earlier run): served as it is.
		fmt.Fprintf(out, "%s holds a store of %d accounts already: no copy\n", desc, held)
		return dsn, cleanup, pgSize(dsn, "as found", out)
	}
	cp := exec.Command(bin, "store", "copy", "-from", "bolt:"+path, "-to", dsn)
	start := time.Now()
	b, err := cp.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("tollgate store copy: %w\n%s", err, b)
	}
	st := cp.ProcessState
	fmt.Fprintf(out, "tollgate store copy into %s: %s (%s of the copier's CPU); every count matches\n", desc,
		took.Round(100*time.Millisecond), (st.UserTime() + st.SystemTime()).Round(100*time.Millisecond))
	if err := pgSize(dsn, "after the copy", out); err != nil {
		cleanup()
		return "", nil, err
	}
	return dsn, cleanup, nil
}

// pgAccounts is how many accounts dsn's database holds (0 without the
// table: a database never migrated).
func pgAccounts(ctx context.Context, dsn string) (int64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('accounts') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	err = conn.QueryRow(ctx, `SELECT count(*) FROM accounts`).Scan(&n)
	return n, err
}

// pgSize prints the database's size, all of it (the catalogue and the
// write-ahead log's share excluded: pg_database_size) and its tables'
// with their indexes and TOAST, in total and per customer, the largest
// tables named.
func pgSize(dsn, when string, out io.Writer) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var db, customers, accounts int64
	if err := conn.QueryRow(ctx, `SELECT pg_database_size(current_database()), (SELECT count(*) FROM customers), (SELECT count(*) FROM accounts)`).
		Scan(&db, &customers, &accounts); err != nil {
		return fmt.Errorf("database size: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY 2 DESC`)
	if err != nil {
		return fmt.Errorf("table sizes: %w", err)
	}
	var (
		tables int64
		parts  []string
	)
	for rows.Next() {
		var (
			name        string
			total, heap int64
		)
		if err := rows.Scan(&name, &total, &heap); err != nil {
			return err
		}
		tables += total
		if len(parts) < 4 {
			parts = append(parts, fmt.Sprintf("%s %.0f (heap %.0f)", name, float64(total)/float64(max(customers, 1)), float64(heap)/float64(max(customers, 1))))
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	per := func(n int64) float64 { return float64(n) / float64(max(customers, 1)) }
	fmt.Fprintf(out, "PostgreSQL %s: %d customers, %d accounts; database %s (%.0f bytes per customer, %.2f of bbolt's 500), tables with indexes %s (%.0f per customer: %s)\n",
		when, customers, accounts, megabytes(db), per(db), per(db)/500, megabytes(tables), per(tables), strings.Join(parts, ", "))
	return nil
}

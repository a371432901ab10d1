package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

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

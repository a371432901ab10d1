package main

import (
	"context"
	"fmt"
	"io"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/postgres"
)

// runMigrate applies the PostgreSQL store's migrations (serve applies them
// at start too, under the same advisory lock).
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", "Applies the PostgreSQL store's schema migrations (store.driver: postgres).", stderr)
	src := configFlags(fs, "path to the YAML config")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := src.load()
	if err != nil {
		return err
	}
	if cfg.Store.Driver != proxy.StorePostgres {
		return fmt.Errorf("%s: store.driver is %s; tollgate migrate is for store.driver: postgres (a bbolt store migrates itself when it opens)", src.path, cfg.Store.Driver)
	}
	s, err := postgres.Open(ctx, cfg.Store.DSN, postgresOptions(cfg.Store, nil, false))
	if s != nil {
		s.Close()
	}
	if err == nil {
		fmt.Fprintf(stdout, "store: schema version %d, up to date\n", postgres.SchemaVersion())
		return nil
	}
	s, err = postgres.Open(ctx, cfg.Store.DSN, postgresOptions(cfg.Store, nil, true))
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(stdout, "store: migrated to schema version %d\n", postgres.SchemaVersion())
	return nil
}

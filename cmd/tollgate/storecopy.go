package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
	"github.com/tollgate/tollgate/proxy/postgres"
)

// runStore dispatches tollgate store's subcommands.
func runStore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		return runStoreCopy(ctx, args, stdout, stderr) // its only subcommand explains itself
	}
	if len(args) == 0 || args[0] != "copy" {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: tollgate store copy -from bolt:FILE -to DSN", errUsage)
	}
	return runStoreCopy(ctx, args[1:], stdout, stderr)
}

// runStoreCopy copies a bbolt store into an empty PostgreSQL database
// (README, "Running several replicas": moving up), then verifies the copy
// by counting each kind of record on both sides. The gateway on the bbolt
// file must be stopped first: bbolt's lock says so if it is not.
func runStoreCopy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("store copy", "Copies a bbolt store into an empty PostgreSQL database, verified by counts.", stderr)
	from := fs.String("from", "", "the bbolt store, as bolt:PATH (the gateway on it stopped)")
	to := fs.String("to", "", "the PostgreSQL database's connection string (postgres://… or key=value; e.g. \"$DATABASE_URL\")")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path, ok := strings.CutPrefix(*from, "bolt:")
	if !ok || path == "" || *to == "" {
		return fmt.Errorf("%w: want -from bolt:PATH -to DSN", errUsage)
	}
	src, err := bolt.Open(path, bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, *to, postgres.Options{Migrate: true})
	if err != nil {
		return err
	}
	defer dst.Close()
	im, err := dst.Import(ctx)
	if err != nil {
		return err
	}
	var want postgres.Counts
	count := func(n *int64) { *n++ }
	start := time.Now()
	err = src.Export(ctx, bolt.Export{
		Customer: func(st proxy.CustomerState, hadTrial bool) error {
			count(&want.Customers)
			return im.Customer(st, hadTrial)
		},
		User:  func(u proxy.User) error { count(&want.Users); return im.User(u) },
		Org:   func(o proxy.Org) error { count(&want.Orgs); return im.Org(o) },
		Comp:  func(c proxy.Comp) error { count(&want.Comps); return im.Comp(c) },
		Audit: func(e proxy.AuditEntry) error { count(&want.Audit); return im.Audit(e) },
		History: func(cus string, h proxy.HistoryEntry) error {
			count(&want.History)
			return im.History(cus, h)
		},
		Event:      func(id string, at time.Time) error { count(&want.Events); return im.Event(id, at) },
		Cursor:     func(name, value string) error { count(&want.Cursors); return im.Cursor(name, value) },
		Revocation: func(r proxy.Revocation) error { count(&want.Revocations); return im.Revocation(r) },
		APIKey:     func(k proxy.APIKey) error { count(&want.APIKeys); return im.APIKey(k) },
		Dirty:      func(m proxy.DirtyMark) error { count(&want.Dirty); return im.Dirty(m) },
		ClerkVersion: func(key string, v proxy.ClerkVersion) error {
			count(&want.ClerkVersions)
			return im.ClerkVersion(key, v)
		},
	})
	if err != nil {
		im.Abort()
		return fmt.Errorf("store copy: %w", err)
	}
	got, err := im.Finish()
	if err != nil {
		return fmt.Errorf("store copy: %w", err)
	}
	page, err := src.ListPage(ctx, proxy.UserFilter{Limit: 1})
	if err != nil {
		return fmt.Errorf("store copy: %w", err)
	}
	want.Listed = page.Total
	rows := []struct {
		what      string
		want, got int64
	}{
		{"customers", want.Customers, got.Customers}, {"users", want.Users, got.Users}, {"organisations", want.Orgs, got.Orgs},
		{"comps", want.Comps, got.Comps}, {"audit entries", want.Audit, got.Audit}, {"history entries", want.History, got.History},
		{"processed events", want.Events, got.Events}, {"cursors", want.Cursors, got.Cursors},
		{"revocations", want.Revocations, got.Revocations}, {"API keys", want.APIKeys, got.APIKeys},
		{"dirty marks", want.Dirty, got.Dirty}, {"Clerk versions", want.ClerkVersions, got.ClerkVersions},
		{"listed subjects", want.Listed, got.Listed},
	}
	var bad []string
	fmt.Fprintf(stdout, "%-18s %10s %10s\n", "", "bolt", "postgres")
	for _, r := range rows {
		mark := ""
		if r.want != r.got {
			mark = "  MISMATCH"
			bad = append(bad, r.what)
		}
		fmt.Fprintf(stdout, "%-18s %10d %10d%s\n", r.what, r.want, r.got, mark)
	}
	if len(bad) > 0 {
		return fmt.Errorf("store copy: the counts differ (%s); the PostgreSQL database holds a partial copy: drop it and copy again", strings.Join(bad, ", "))
	}
	fmt.Fprintf(stdout, "copied %s into PostgreSQL in %s; every count matches\n", path, time.Since(start).Round(time.Millisecond))
	return nil
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/admin"
	"github.com/tollgate/tollgate/proxy/bolt"
	"github.com/tollgate/tollgate/proxy/cache"
	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/gateway"
	"github.com/tollgate/tollgate/proxy/limits"
	"github.com/tollgate/tollgate/proxy/postgres"
	"github.com/tollgate/tollgate/proxy/stripe"
)

// appStore is what the gateway's parts and app.go ask of a store: every
// consumer's interface (docs/ARCHITECTURE.md, "Where to add… A store"),
// and what app.go and admin.go call themselves. *bolt.Store and
// *postgres.Store meet it.
type appStore interface {
	proxy.EntitlementSource
	proxy.RevocationStore
	proxy.Directory
	proxy.APIKeyStore
	stripe.Store
	admin.Store
	clerk.UserStore
	clerk.OrgStore
	clerk.OrderStore
	gateway.AdminStore
	gateway.Trials
	gateway.Orgs
	limits.Store      // the quota counters
	limits.MeterStore // with the meter counts and the rows they bill, in one transaction
	proxy.UsageOutbox // the sender's (stripe.MeterStore), the console's (gateway.OutboxReader, admin.Outbox)
	RecordSeen(ctx context.Context, seen map[string]time.Time) error
	Empty(ctx context.Context) (bool, error)
	Ping(ctx context.Context) error
	Close() error
}

var (
	_ appStore = (*bolt.Store)(nil)
	_ appStore = (*postgres.Store)(nil)
)

// openDB opens the store the config names: bbolt's file, or PostgreSQL
// (migrated first, under the advisory lock, when migrate is set).
func openDB(ctx context.Context, sc proxy.StoreConfig, now func() time.Time, migrate bool) (appStore, *postgres.Store, error) {
	if sc.Driver != proxy.StorePostgres {
		s, err := bolt.Open(sc.Path, bolt.Options{Timeout: time.Second, Now: now})
		if err != nil {
			return nil, nil, err
		}
		return s, nil, nil
	}
	s, err := postgres.Open(ctx, sc.DSN, postgresOptions(sc, now, migrate))
	if err != nil {
		return nil, nil, err
	}
	return s, s, nil
}

func postgresOptions(sc proxy.StoreConfig, now func() time.Time, migrate bool) postgres.Options {
	return postgres.Options{MaxConns: sc.MaxConns, MinConns: sc.MinConns, MaxConnLifetime: sc.MaxConnLifetime,
		MaxConnIdle: sc.MaxConnIdle, ConnectTimeout: sc.ConnectTimeout, Now: now, Migrate: migrate}
}

// freshEntitlements refuses a miss while the replica does not follow the
// change log (PostgreSQL): its answer could be cached after a change it
// would not hear of. Hits, in the LRU before it, keep their answers.
type freshEntitlements struct {
	proxy.EntitlementSource
	fresh func() error // nil: always fresh (set once the listener exists)
}

func (f *freshEntitlements) Entitlements(ctx context.Context, s proxy.Subject) (*proxy.Entitlements, error) {
	if f.fresh != nil {
		if err := f.fresh(); err != nil {
			return nil, err
		}
	}
	return f.EntitlementSource.Entitlements(ctx, s)
}

// applyChange applies what another replica committed (the PostgreSQL
// store's change log, its Listener's Apply): a subject's cached
// entitlements are dropped (the next request reads them again, and its
// open tunnels are judged again), a revocation is read and applied, a
// revoked key is dropped from the key cache, a dirty mark wakes the
// leader's worker. Every payload is only an ID.
func (g *app) applyChange(ctx context.Context, c postgres.Change, logger *slog.Logger) error {
	switch c.Kind {
	case postgres.ChangeSubject:
		if s, err := proxy.ParseSubject(c.ID); err == nil && g.Cache != nil {
			g.Cache.Remove(s)
		}
	case postgres.ChangeRevocation:
		if g.state == nil {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, ok, err := g.PG.Revocation(rctx, c.ID)
		if err != nil {
			// Not lost: the Listener reconnects and replays the change,
			// serving no miss until it has.
			logger.Warn("postgres: reading a revocation another replica stored", "err", err)
			return fmt.Errorf("read revocation %s: %w", c.ID, err)
		}
		if ok {
			g.state.ApplyRevocation(r)
		}
	case postgres.ChangeKey:
		if g.Keys != nil {
			g.Keys.Forget(c.ID)
		}
	case postgres.ChangeKeysOf:
		if s, err := proxy.ParseSubject(c.ID); err == nil && g.Keys != nil {
			g.Keys.ForgetSubject(s)
		}
	case postgres.ChangeDirty:
		if g.Billing != nil && g.leader != nil && g.leader.Leading() {
			g.Billing.KickDirty()
		}
	}
	return nil
}

// openCache puts the LRU in front of the store.
func (g *app) openCache(store proxy.EntitlementSource, size int) error {
	src := &freshEntitlements{EntitlementSource: store}
	g.fresh = src
	c, err := cache.NewEntitlementCache(src, size)
	if err != nil {
		return err
	}
	c.SetObserver(g.Metrics)
	g.Cache = c
	return nil
}

// checkStoreOnline connects to the PostgreSQL store and reports its
// schema version (tollgate check -online); bolt has nothing to reach.
func checkStoreOnline(ctx context.Context, sc proxy.StoreConfig) (string, error) {
	if sc.Driver != proxy.StorePostgres {
		return "", nil
	}
	v, err := postgres.Inspect(ctx, sc.DSN, postgresOptions(sc, nil, false))
	if err != nil {
		return "", fmt.Errorf("store.dsn: %w", err)
	}
	switch want := postgres.SchemaVersion(); {
	case v < want:
		return fmt.Sprintf("store: PostgreSQL reachable, schema version %d; tollgate serve (or tollgate migrate) brings it to %d", v, want), nil
	case v > want:
		return "", fmt.Errorf("store.dsn: the schema is at version %d, newer than this tollgate's %d: run the newer tollgate", v, want)
	default:
		return fmt.Sprintf("store: PostgreSQL reachable, schema version %d", v), nil
	}
}

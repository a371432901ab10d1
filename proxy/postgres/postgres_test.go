package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy/postgres/pgtest"
	"github.com/tollgate/tollgate/proxy/storetest"
)

func TestMain(m *testing.M) { pgtest.Exit(m) }

// open makes a store on a fresh database of the package's cluster, its
// schema migrated, closed when t ends.
func open(t *testing.T, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(context.Background(), pgtest.DB(t), Options{Now: now, Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the stores' shared suite (proxy/storetest), API
// keys included, against PostgreSQL: each store a fresh database.
func TestConformance(t *testing.T) {
	storetest.All(t, func(t *testing.T, now func() time.Time) storetest.Store { return open(t, now) })
}

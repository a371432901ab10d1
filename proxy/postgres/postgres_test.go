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

// TestConformance_ListingFiltersByTheSortIndex runs the listing's suites
// with every status or plan filter read by walking the sort's index (as a
// filter matching more than rareRows is), where TestConformance's small
// stores read each by the filter's index.
func TestConformance_ListingFiltersByTheSortIndex(t *testing.T) {
	never := int64(-1)
	open := func(t *testing.T, now func() time.Time) storetest.Store {
		s := open(t, now)
		s.listRareRows = &never
		return s
	}
	t.Run("ListUsers", func(t *testing.T) { storetest.ListUsers(t, open) })
	t.Run("ListPage", func(t *testing.T) { storetest.ListPage(t, open) })
}

// TestConformance runs the stores' shared suite (proxy/storetest), API
// keys included, against PostgreSQL: each store a fresh database.
func TestConformance(t *testing.T) {
	storetest.All(t, func(t *testing.T, now func() time.Time) storetest.Store { return open(t, now) })
}

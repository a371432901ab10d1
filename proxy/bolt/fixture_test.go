package bolt

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt/testdata/mkfixture/dump"
)

// The fixtures under testdata are stores written by the tollgate of each
// past schema (testdata/mkfixture says how), with what that tollgate
// answered about them, as package dump took it; the tests take it again,
// with the same code. Whatever the format becomes, a store of every past
// schema opens and answers the same.

// fixtureNow is the fixtures' clock (mkfixture's now).
var fixtureNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// openFixture opens a copy of a fixture at the fixture's now.
func openFixture(t *testing.T, name string) *Store {
	t.Helper()
	return openClock(t, copyFixture(t, name), &clock{now: fixtureNow})
}

// copyFixture copies a fixture into the test's directory.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	src, err := os.Open(filepath.Join("testdata", name+".db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(t.TempDir(), "tollgate.db")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// readGolden reads what the fixture's own tollgate answered.
func readGolden(t *testing.T, name string) *dump.Dump {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dump.Dump
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

// roundTrip passes a dump through JSON, as the golden one was, so both
// lose the same (unexported fields) and read back the same types.
func roundTrip(t *testing.T, d *dump.Dump) *dump.Dump {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var out dump.Dump
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// A store of every past schema opens and answers as the tollgate that
// wrote it; a schema 1 store, which had no listing, lists as the schema 2
// one of the same users does (its dashboard lacks the amounts schema 1
// did not keep).
func TestOpen_Fixtures(t *testing.T) {
	schema2 := readGolden(t, "schema2")
	for _, name := range []string{"schema1", "schema2", "schema3"} {
		t.Run(name, func(t *testing.T) {
			s := openFixture(t, name)
			got, err := dump.Take(t.Context(), s, fixtureNow)
			if err != nil {
				t.Fatal(err)
			}
			got = roundTrip(t, got)
			want := readGolden(t, name)
			listing := got.Listing
			if want.Listing == nil {
				got.Listing = nil
			}
			if want.Extras == nil {
				got.Extras = nil
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.IgnoreUnexported(proxy.PlanBreakdown{})); diff != "" {
				t.Errorf("answers after opening (-the old tollgate's +now):\n%s", diff)
			}
			if diff := cmp.Diff(schema2.Listing.Pages, listing.Pages, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("listing (-schema 2's +now):\n%s", diff)
			}
			if diff := cmp.Diff(schema2.Listing.Totals, listing.Totals); diff != "" {
				t.Errorf("listing totals (-schema 2's +now):\n%s", diff)
			}
		})
	}
}

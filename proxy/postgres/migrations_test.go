package postgres

import (
	"strings"
	"testing"
	"testing/fstest"
)

// Two branches that each add a migration may take the same number: their
// files (0002_a.sql, 0002_b.sql) do not conflict in git, so both land.
// Told apart by number, the second would then never run on a database
// that had the first (and a new database would fail on its row), so the
// set is refused as it is read, and every build's tests read it.
func TestParseMigrations_RefusesTwoOfOneNumber(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files fstest.MapFS
		want  string // "" for none
	}{
		{"distinct", fstest.MapFS{"migrations/0001_a.sql": {}, "migrations/0003_c.sql": {}, "migrations/0002_b.sql": {}}, ""},
		{"one number twice", fstest.MapFS{"migrations/0001_a.sql": {}, "migrations/0002_b.sql": {}, "migrations/0002_c.sql": {}}, "0002_b.sql and 0002_c.sql"},
		{"one number, two spellings", fstest.MapFS{"migrations/0002_b.sql": {}, "migrations/2_c.sql": {}}, "0002_b.sql and 2_c.sql"},
		{"no number", fstest.MapFS{"migrations/store.sql": {}}, "not named NNNN_what.sql"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := parseMigrations(tc.files)
			if tc.want == "" {
				if err != nil || len(ms) != len(tc.files) {
					t.Fatalf("parseMigrations = %d, %v; want %d, nil", len(ms), err, len(tc.files))
				}
				for i := 1; i < len(ms); i++ {
					if ms[i-1].version >= ms[i].version {
						t.Errorf("not in order: %s before %s", ms[i-1].name, ms[i].name)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseMigrations: %v; want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestMigrations_EmbeddedAreDistinct(t *testing.T) {
	if _, err := parseMigrations(migrationFiles); err != nil {
		t.Fatal(err)
	}
}

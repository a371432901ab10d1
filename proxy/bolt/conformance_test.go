package bolt

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy/storetest"
)

// TestConformance runs the stores' shared suite (proxy/storetest) against
// bbolt.
func TestConformance(t *testing.T) {
	storetest.All(t, func(t *testing.T, now func() time.Time) storetest.Store {
		s, err := Open(filepath.Join(t.TempDir(), "tollgate.db"), Options{Timeout: 100 * time.Millisecond, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

package bolt

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy/storetest"
)

// One process holds a store file: its Clerk order lock is the store's,
// shared by every webhook the process handles.
func TestClerkOrderLock(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "tollgate.db"), Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.ClerkOrderLock(t, s, s)
}

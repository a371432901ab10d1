package limits_test

import (
	"testing"

	"github.com/tollgate/tollgate/proxy/limits"
	"github.com/tollgate/tollgate/proxy/storetest"
)

func TestMemoryStore(t *testing.T) {
	storetest.QuotaCounters(t, func(t *testing.T) limits.Store { return limits.NewMemoryStore() })
}

package bolt

import (
	"testing"

	"github.com/tollgate/tollgate/proxy/limits"
	"github.com/tollgate/tollgate/proxy/storetest"
)

func TestQuotaCounterStore(t *testing.T) {
	storetest.QuotaCounters(t, func(t *testing.T) limits.Store {
		s, _ := newStore(t)
		return s
	})
}

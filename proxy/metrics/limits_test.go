package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy/limits"
)

var _ limits.Observer = (*Metrics)(nil)

func TestLimitSeries(t *testing.T) {
	m := New()
	m.Limited("pro", "258AVO", "quota")
	m.Limited("pro", "*", "rate")
	m.QuotaUsed("pro", "258AVO", 5)
	m.QuotaFlushed(2*time.Millisecond, nil)
	m.QuotaFlushed(time.Millisecond, errors.New("disk"))
	m.SetQuotaFlushLag(func() time.Duration { return 1500 * time.Millisecond })
	if out := scrape(t, m); !strings.Contains(out, "tollgate_replicas_live 1\n") || !strings.Contains(out, "tollgate_replica_heartbeat_age_seconds 0\n") {
		t.Errorf("one replica (bbolt): the replica gauges are not 1 and 0")
	}
	m.SetReplicas(func() int { return 3 }, func() time.Duration { return 2500 * time.Millisecond })
	out := scrape(t, m)
	for _, want := range []string{
		`tollgate_limited_requests_total{plan="pro",reason="quota",route="258AVO"} 1`,
		`tollgate_limited_requests_total{plan="pro",reason="rate",route="*"} 1`,
		`tollgate_quota_used_total{plan="pro",route="258AVO"} 5`,
		`tollgate_quota_flush_seconds_count{result="ok"} 1`,
		`tollgate_quota_flush_seconds_count{result="failed"} 1`,
		`tollgate_quota_flush_lag_seconds 1.5`,
		`tollgate_replicas_live 3`,
		`tollgate_replica_heartbeat_age_seconds 2.5`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

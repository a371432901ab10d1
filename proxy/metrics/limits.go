package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// limitMetrics are the series of plans' limits (README "Limits"); labels
// are plan keys and limits: entries (configured route IDs or "*"), so
// their number is bounded by the config.
type limitMetrics struct {
	limited   *prometheus.CounterVec
	quotaUsed *prometheus.CounterVec
	flushes   *prometheus.HistogramVec
	lagMu     sync.Mutex
	lag       func() time.Duration
	// The live replicas sharing the store, and the age of this replica's
	// last heartbeat (README "Limits"); nil: one replica.
	replicas func() int
	beatAge  func() time.Duration
	// usedSeries caches quotaUsed's series by plan and entry: every
	// limited request adds to one, and a WithLabelValues hashes and looks
	// its labels up each time.
	usedSeries sync.Map // [2]string → prometheus.Counter
}

func (m *Metrics) registerLimits() {
	l := &m.limits
	l.limited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_limited_requests_total",
		Help: "Requests refused (429) over a plan's limit, by plan, limits: entry (route ID or \"*\") and reason (rate, quota).",
	}, []string{"plan", "route", "reason"})
	l.quotaUsed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_quota_used_total",
		Help: "Quota units debited (each request's cost: 1 or the cost header's), by plan and limits: entry.",
	}, []string{"plan", "route"})
	l.flushes = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tollgate_quota_flush_seconds",
		Help:    "Time to write the quota counters to the store, by result (ok, failed).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10),
	}, []string{"result"})
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_quota_flush_lag_seconds",
		Help: "Time since the last successful flush of the quota counters began: about quota_flush while the store takes writes; what a crash now would lose, at most.",
	}, func() float64 {
		l.lagMu.Lock()
		f := l.lag
		l.lagMu.Unlock()
		if f == nil {
			return 0
		}
		return f().Seconds()
	})
	live := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_replicas_live",
		Help: "Live replicas sharing the store, by their heartbeats, as this replica last counted them: each enforces 1/n of a plan's rate (1 on bbolt).",
	}, func() float64 {
		l.lagMu.Lock()
		f := l.replicas
		l.lagMu.Unlock()
		if f == nil {
			return 1
		}
		return float64(f())
	})
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_replica_heartbeat_age_seconds",
		Help: "Time since this replica's last successful heartbeat: about 2 s while the store answers; past 6 s the others no longer count it (0 on bbolt).",
	}, func() float64 {
		l.lagMu.Lock()
		f := l.beatAge
		l.lagMu.Unlock()
		if f == nil {
			return 0
		}
		return f().Seconds()
	})
	m.reg.MustRegister(l.limited, l.quotaUsed, l.flushes, lag, live, age)
}

// SetReplicas gives the replica gauges their sources: the live count
// (limits.Replicas) and the age of the last heartbeat.
func (m *Metrics) SetReplicas(live func() int, age func() time.Duration) {
	m.limits.lagMu.Lock()
	m.limits.replicas, m.limits.beatAge = live, age
	m.limits.lagMu.Unlock()
}

// Limited counts a request refused over a limit (limits.Observer).
func (m *Metrics) Limited(plan, route, reason string) {
	m.limits.limited.WithLabelValues(plan, route, reason).Inc()
}

// QuotaUsed counts quota units debited (limits.Observer).
func (m *Metrics) QuotaUsed(plan, route string, units int64) {
	k := [2]string{plan, route}
	c, ok := m.limits.usedSeries.Load(k)
	if !ok {
		c, _ = m.limits.usedSeries.LoadOrStore(k, m.limits.quotaUsed.WithLabelValues(plan, route))
	}
	c.(prometheus.Counter).Add(float64(units))
}

// QuotaFlushed times a flush of the quota counters (limits.Observer).
func (m *Metrics) QuotaFlushed(took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.limits.flushes.WithLabelValues(result).Observe(took.Seconds())
}

// SetQuotaFlushLag gives the flush lag gauge its source (the limiter's
// FlushLag).
func (m *Metrics) SetQuotaFlushLag(f func() time.Duration) {
	m.limits.lagMu.Lock()
	m.limits.lag = f
	m.limits.lagMu.Unlock()
}

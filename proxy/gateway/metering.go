package gateway

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Metered plans (README "Usage billing"): the account page's usage so far
// and the admin console's view of the usage outbox.

// OutboxReader is the usage outbox as the admin console reads it. bbolt's
// is proxy/bolt (outbox.go), PostgreSQL's proxy/postgres (usage.go).
type OutboxReader interface {
	OutboxStats(ctx context.Context) (proxy.OutboxStats, error)
	FlaggedUsage(ctx context.Context, limit int) ([]proxy.OutboxEntry, error)
}

// accountUsage is a metered plan's usage this period on the account page.
type accountUsage struct {
	Value int64
	Unit  string // the meter's event_name
	Since *time.Time
}

// meteredUsage reads what the subject of a granting metered plan used
// since its period began. The period's start is its end less one of the
// price's intervals (the subscription's billing cycle; until the quota
// windows of README "Limits" give it). nil when the plan is not metered,
// does not grant, or the usage cannot be read (the page goes on without).
func (s *Server) meteredUsage(ctx context.Context, sj *subscriptionJSON) *accountUsage {
	pl := s.planByKey(sj.Plan)
	if s.usage == nil || pl == nil || pl.Meter == nil || !sj.Active || sj.CurrentPeriodEnd == nil {
		return nil
	}
	subject, err := proxy.ParseSubject(sj.Subject)
	if err != nil {
		return nil
	}
	pr, ok := s.prices.Price(sj.PriceID)
	if !ok || pr.Interval == "" {
		pr, ok = s.prices.Price(pl.Meter.Price)
	}
	if !ok || pr.Interval == "" {
		return nil
	}
	since := periodStart(*sj.CurrentPeriodEnd, pr.Interval, max(pr.IntervalCount, 1))
	n, err := s.usage.MeteredUsage(ctx, subject, pl.Meter.EventName, since)
	if err != nil {
		s.log.WarnContext(ctx, "account: metered usage", "err", err)
		return nil
	}
	return &accountUsage{Value: n, Unit: pl.Meter.EventName, Since: &since}
}

// periodStart is end less count intervals.
func periodStart(end time.Time, interval string, count int64) time.Time {
	n := int(count)
	switch interval {
	case "day":
		return end.AddDate(0, 0, -n)
	case "week":
		return end.AddDate(0, 0, -7*n)
	case "year":
		return end.AddDate(-n, 0, 0)
	}
	return end.AddDate(0, -n, 0)
}

// outboxPanel is the dashboard's view of the usage outbox.
type outboxPanel struct {
	proxy.OutboxStats
	OldestAge   time.Duration
	FlaggedRows []proxy.OutboxEntry // the first 20
}

const dashboardFlagged = 20

// outboxPanel reads the outbox for the dashboard: nil when there is no
// outbox, or no plan is metered and the outbox never held a row.
func (s *Server) outboxPanel(ctx context.Context) (*outboxPanel, error) {
	if s.outbox == nil {
		return nil, nil
	}
	st, err := s.outbox.OutboxStats(ctx)
	if err != nil {
		return nil, err
	}
	metered := false
	for _, p := range s.cfg.Plans {
		metered = metered || p.Meter != nil
	}
	if !metered && st == (proxy.OutboxStats{}) {
		return nil, nil
	}
	p := &outboxPanel{OutboxStats: st}
	if !st.Oldest.IsZero() {
		p.OldestAge = max(s.now().Sub(st.Oldest), 0).Truncate(time.Second)
	}
	if st.Flagged > 0 {
		if p.FlaggedRows, err = s.outbox.FlaggedUsage(ctx, dashboardFlagged); err != nil {
			return nil, err
		}
	}
	return p, nil
}

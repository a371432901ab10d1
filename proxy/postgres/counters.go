package postgres

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Listing tags counted in list_counts are proxy.Listing.Tags: every listed
// subject, and each status and plan it holds.

// countList adds delta to a listing tag, applied at commit (flush).
func (t *wtx) countList(tag string, delta int64) {
	if t.lists == nil {
		t.lists = map[string]int64{}
	}
	t.lists[tag] += delta
}

// countFacts adds (sign 1) or takes away (sign -1) the dashboard's facts
// of subs: what a fact counts is the domain's (proxy.SubscriptionFacts).
func (t *wtx) countFacts(subs []proxy.Subscription, sign int64) {
	if t.stats == nil {
		t.stats = map[string][2]int64{}
	}
	for i := range subs {
		for _, c := range proxy.SubscriptionFacts(&subs[i]) {
			v := t.stats[c.Key()]
			v[0] += sign * c.Count
			v[1] += sign * c.Amount
			t.stats[c.Key()] = v
		}
	}
}

// flushCounters writes the deltas in key order on the transaction's shard.
func (t *wtx) flushCounters(ctx context.Context) error {
	for _, k := range slices.Sorted(maps.Keys(t.stats)) {
		v := t.stats[k]
		if v == [2]int64{} {
			continue
		}
		_, err := t.Exec(ctx, `INSERT INTO stats (key, shard, count, amount) VALUES ($1, $2, $3, $4)
			ON CONFLICT (key, shard) DO UPDATE SET count = stats.count + $3, amount = stats.amount + $4`, []byte(k), t.shard, v[0], v[1])
		if err != nil {
			return fmt.Errorf("counter %q: %w", k, err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(t.lists)) {
		if t.lists[k] == 0 {
			continue
		}
		_, err := t.Exec(ctx, `INSERT INTO list_counts (tag, shard, n) VALUES ($1, $2, $3)
			ON CONFLICT (tag, shard) DO UPDATE SET n = list_counts.n + $3`, k, t.shard, t.lists[k])
		if err != nil {
			return fmt.Errorf("listing counter %q: %w", k, err)
		}
	}
	for status, n := range t.usage {
		if n == 0 {
			continue
		}
		_, err := t.Exec(ctx, `INSERT INTO usage_outbox_counts (status, shard, n) VALUES ($1, $2, $3)
			ON CONFLICT (status, shard) DO UPDATE SET n = usage_outbox_counts.n + $3`, int16(status), t.shard, n)
		if err != nil {
			return fmt.Errorf("usage outbox counter %d: %w", status, err)
		}
	}
	t.stats, t.lists, t.usage = nil, nil, [3]int64{}
	return nil
}

// tagCount reads one listing counter: its shards' sum.
func tagCount(ctx context.Context, q querier, tag string) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT coalesce(sum(n), 0)::bigint FROM list_counts WHERE tag = $1`, tag).Scan(&n)
	return n, err
}

// Dashboard answers the admin console's dashboard from the counters kept
// with the writes: the undated facts whole, the dated ones for the window
// (proxy.DashboardDays), as bolt's (proxy/bolt/stats.go).
func (s *Store) Dashboard(ctx context.Context) (proxy.Dashboard, error) {
	now := s.now()
	var counters []proxy.Counter
	read := func(from, prefix string) error {
		rows, err := s.pool.Query(ctx, `SELECT key, sum(count)::bigint, sum(amount)::bigint FROM stats
			WHERE key >= $1 AND key < $2 GROUP BY key HAVING sum(count) <> 0 OR sum(amount) <> 0 ORDER BY key`,
			[]byte(from), prefixEnd([]byte(prefix)))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				key           []byte
				count, amount int64
			)
			if err := rows.Scan(&key, &count, &amount); err != nil {
				return err
			}
			f, err := proxy.ParseFactKey(string(key))
			if err != nil {
				return err
			}
			counters = append(counters, proxy.Counter{Fact: f, Count: count, Amount: amount})
		}
		return rows.Err()
	}
	for _, kind := range []proxy.FactKind{proxy.FactStatus, proxy.FactRevenue, proxy.FactTrial} {
		p := string(kind) + "\x00"
		if err := read(p, p); err != nil {
			return proxy.Dashboard{}, fmt.Errorf("postgres: dashboard: %w", err)
		}
	}
	first := now.AddDate(0, 0, 1-proxy.DashboardDays)
	for _, kind := range proxy.DatedKinds() {
		if err := read(proxy.DatedKey(kind, first), string(kind)+"\x00"); err != nil {
			return proxy.Dashboard{}, fmt.Errorf("postgres: dashboard: %w", err)
		}
	}
	return proxy.BuildDashboard(counters, now), nil
}

// prefixEnd is the first key after every key starting with p (nil: none).
func prefixEnd(p []byte) []byte {
	end := slices.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0xff, 0xff, 0xff, 0xff}
}

// ts is a time for a nullable column: NULL for the zero time.
func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// tm reads a nullable timestamptz back, in UTC.
func tm(t *time.Time) time.Time {
	if t == nil || t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

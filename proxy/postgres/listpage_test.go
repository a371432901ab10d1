package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// TestListPage_ReadsByIndexNeverAFullScan: every order of the admin
// listing, both ways, from its start and from a cursor, with a status or a
// plan filter, and its searches, and the request path's entitlements
// read, can be answered by an index of accounts and customers, never only
// by reading either table whole. With sequential scans disabled, the
// planner still plans one when no index serves the query: so no
// "Seq Scan" on them means an index does. (On a small table the planner
// may rightly prefer a scan; at a million subjects it takes the index.)
func TestListPage_ReadsByIndexNeverAFullScan(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := open(t, func() time.Time { return now })
	ctx := context.Background()
	var users []proxy.User
	var states []proxy.CustomerState
	for i := range 3000 {
		id := fmt.Sprintf("user_%05d", i)
		users = append(users, proxy.User{ID: id, Email: fmt.Sprintf("u%05d@example.com", i), FirstSeen: now.Add(-time.Duration(i) * time.Minute), LastSeen: now})
		if i%3 == 0 {
			states = append(states, proxy.CustomerState{CustomerID: fmt.Sprintf("cus_%05d", i), Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: id},
				Subscriptions: []proxy.Subscription{{ID: fmt.Sprintf("sub_%05d", i), Status: []proxy.SubscriptionStatus{proxy.StatusActive, proxy.StatusTrialing, proxy.StatusCanceled}[i%9/3],
					Plan: []string{"pro", "team"}[i%2], CurrentPeriodEnd: now.Add(24 * time.Hour)}}})
		}
	}
	if err := s.PutUsers(ctx, users); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitCustomers(ctx, states); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	explain := func(t *testing.T, what, sql string, args ...any) {
		t.Helper()
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(ctx, "EXPLAIN "+sql, args...)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		rows.Close()
		if p := strings.Join(plan, "\n"); strings.Contains(p, "Seq Scan on accounts") || strings.Contains(p, "Seq Scan on customers") ||
			strings.Contains(p, "Seq Scan on list_counts") || strings.Contains(p, "Seq Scan on comps") {
			t.Errorf("%s is planned with a sequential scan:\n%s", what, p)
		}
	}
	cursor := &position{Rank: 200, N: now.Unix(), S: "u01000@example.com", ID: "user_01000"}
	for _, f := range []proxy.UserFilter{
		{Sort: proxy.SortID}, {Sort: proxy.SortFirstSeen}, {Sort: proxy.SortLastSeen}, {Sort: proxy.SortEmail}, {Sort: proxy.SortStatus},
		{Sort: proxy.SortLastSeen, Status: "active"}, {Sort: proxy.SortEmail, Plan: "team"}, {Sort: proxy.SortStatus, Status: "trialing", Plan: "pro"},
		{Query: "cus_001"}, {Query: "user_01"}, {Query: "U01"},
	} {
		p, err := s.planList(ctx, &f)
		if err != nil {
			t.Fatal(err)
		}
		if (f.Status != "" || f.Plan != "") && f.Status+f.Plan != "trialingpro" && !p.rare {
			t.Errorf("listing %+v: %d rows, not read as a rare filter", f, p.total)
		}
		// A filter is read either way, by the number of rows it matches
		// (rareRows): check both.
		for _, rare := range []bool{false, true} {
			if rare && !p.rare {
				continue
			}
			p.rare = rare
			for _, forward := range []bool{true, false} {
				for _, start := range []*position{nil, cursor} {
					sql, args := p.batchSQL(start, forward, 101)
					explain(t, fmt.Sprintf("listing %+v rare=%v forward=%v from=%v", f, rare, forward, start != nil), sql, args...)
				}
			}
		}
	}
	explain(t, "a listing total", `SELECT coalesce(sum(n), 0)::bigint FROM list_counts WHERE tag = $1`, "s:active")
	explain(t, "the entitlements read", `SELECT coalesce(a.customer_id, ''), coalesce(c.subject, ''), c.id IS NOT NULL, c.subscriptions, c.synced_at,
			(SELECT json_agg(m ORDER BY m.created_at) FROM comps m WHERE m.subject = $1)
		FROM (SELECT $1::text AS id) q LEFT JOIN accounts a ON a.id = q.id LEFT JOIN customers c ON c.id = a.customer_id`, "user_00003")
	page, err := s.ListPage(ctx, proxy.UserFilter{Sort: proxy.SortStatus, Limit: 50})
	if err != nil || len(page.Users) != 50 || page.Total != 3000 || page.Next == "" {
		t.Errorf("status-sorted first page: %d users, total %d, next %q, %v", len(page.Users), page.Total, page.Next, err)
	}
}

//go:build !schema1

package dump

import (
	"context"
	"fmt"

	"github.com/tollgate/tollgate/proxy"
)

// listingStore is the listing's API (schema 2 and later).
type listingStore interface {
	ListPage(ctx context.Context, f proxy.UserFilter) (proxy.UserPage, error)
	Dashboard(ctx context.Context) (proxy.Dashboard, error)
}

// takeListing pages every sort both ways, two at a time, and the filters
// and searches.
func takeListing(ctx context.Context, store Store) (*Listing, error) {
	s, ok := store.(listingStore)
	if !ok {
		return nil, fmt.Errorf("%T has no listing", store)
	}
	l := &Listing{Pages: map[string][]string{}, Totals: map[string]int64{}}
	filters := map[string]proxy.UserFilter{}
	for _, sort := range proxy.UserSorts() {
		for _, desc := range []bool{false, true} {
			filters[fmt.Sprintf("sort=%s desc=%v", sort, desc)] = proxy.UserFilter{Sort: sort, Desc: desc}
		}
	}
	for _, st := range []string{"active", "trialing", "past_due", "canceled", "incomplete", "unpaid", "none", "some_future_status"} {
		filters["status="+st] = proxy.UserFilter{Status: st, Sort: proxy.SortEmail}
	}
	for _, p := range []string{"pro", "team"} {
		filters["plan="+p] = proxy.UserFilter{Plan: p, Sort: proxy.SortStatus}
	}
	filters["status=active plan=team"] = proxy.UserFilter{Status: "active", Plan: "team", Sort: proxy.SortFirstSeen, Desc: true}
	for _, q := range []string{"ada", "BOB@", "user_", "user_g", "org_", "cus_", "cus_gus", "llll", "nobody"} {
		filters["query="+q] = proxy.UserFilter{Query: q}
	}
	for name, f := range filters {
		f.Limit = 2
		var ids []string
		for {
			p, err := s.ListPage(ctx, f)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			for _, u := range p.Users {
				ids = append(ids, u.ID)
			}
			l.Totals[name] = p.Total
			if p.Next == "" {
				break
			}
			f.After = p.Next
		}
		l.Pages[name] = ids
	}
	var err error
	l.Dashboard, err = s.Dashboard(ctx)
	return l, err
}

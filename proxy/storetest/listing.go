package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// userStore is a store with subjects in every state the admin API's
// listing must show.
func userStore(t *testing.T, open Open) Store {
	t.Helper()
	s, _ := fresh(t, open)
	ctx := t.Context()
	sub := func(id string, st proxy.SubscriptionStatus, plan string, end time.Time) proxy.Subscription {
		return proxy.Subscription{ID: id, Status: st, Plan: plan, CurrentPeriodEnd: end}
	}
	day := 24 * time.Hour
	must(t, s.RecordSeen(ctx, map[string]time.Time{"user_a": T0(), "user_b": T0(), "user_c": T0(), "user_d": T0()}))
	must(t, s.PutUser(ctx, proxy.User{ID: "user_a", Email: "a@example.com", OrgIDs: []string{"org_x"}}))
	for _, st := range []proxy.CustomerState{
		// user_a: pro, active; and an old canceled one.
		{CustomerID: "cus_a", Subject: userSubject("user_a"), Email: "billing-a@example.com", Subscriptions: []proxy.Subscription{
			sub("sub_a1", proxy.StatusCanceled, "team", T0().Add(-day)), sub("sub_a2", proxy.StatusActive, "pro", T0().Add(30*day))}},
		// user_b: canceled pro.
		{CustomerID: "cus_b", Subject: userSubject("user_b"), Email: "b@example.com", Subscriptions: []proxy.Subscription{
			sub("sub_b1", proxy.StatusCanceled, "pro", T0().Add(-day))}},
		// user_e: never seen signing in, but a Stripe customer, past due.
		{CustomerID: "cus_e", Subject: userSubject("user_e"), Email: "e@example.com", Subscriptions: []proxy.Subscription{
			sub("sub_e1", proxy.StatusPastDue, "pro", T0().Add(day))}},
		// org_x: team, trialing.
		{CustomerID: "cus_x", Subject: orgSubject("org_x"), Email: "x@example.com", Subscriptions: []proxy.Subscription{
			sub("sub_x1", proxy.StatusTrialing, "team", T0().Add(7*day))}},
		// A customer linked to nobody is nobody's row.
		{CustomerID: "cus_orphan", Subscriptions: []proxy.Subscription{sub("sub_o", proxy.StatusActive, "pro", T0().Add(day))}},
	} {
		mustCommit(t, s, st, "")
	}
	// user_c: a comp only; user_f: a comp only, never seen; user_d: nothing.
	mustPutComp(t, s, proxy.Comp{ID: "comp_c", Subject: userSubject("user_c"), Plan: "pro", ExpiresAt: T0().Add(10 * day)})
	mustPutComp(t, s, proxy.Comp{ID: "comp_f1", Subject: userSubject("user_f"), Plan: "team", ExpiresAt: T0().Add(2 * day)})
	mustPutComp(t, s, proxy.Comp{ID: "comp_f2", Subject: userSubject("user_f"), Plan: "pro", ExpiresAt: T0().Add(-day)}) // expired
	return s
}

// ListUsers runs the admin.Store listing suite (the admin API's):
// summaries, filters and paging in ID order.
func ListUsers(t *testing.T, open Open) {
	s := userStore(t, open)
	ctx := t.Context()
	list := func(f proxy.UserFilter) ([]proxy.UserSummary, string) {
		t.Helper()
		us, next, err := s.ListUsers(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return us, next
	}
	all, next := list(proxy.UserFilter{})
	if next != "" {
		t.Errorf("next = %q on a complete page", next)
	}
	day := 24 * time.Hour
	want := []proxy.UserSummary{
		{ID: "org_x", Kind: proxy.SubjectOrg, Email: "x@example.com", CustomerID: "cus_x", Plans: []string{"team"}, Status: proxy.StatusTrialing, PeriodEnd: T0().Add(7 * day)},
		{ID: "user_a", Kind: proxy.SubjectUser, Email: "a@example.com", OrgIDs: []string{"org_x"}, CustomerID: "cus_a", Plans: []string{"pro"},
			Status: proxy.StatusActive, PeriodEnd: T0().Add(30 * day), FirstSeen: T0(), LastSeen: T0()},
		{ID: "user_b", Kind: proxy.SubjectUser, Email: "b@example.com", CustomerID: "cus_b", Held: []string{"pro"}, Status: proxy.StatusCanceled,
			PeriodEnd: T0().Add(-day), FirstSeen: T0(), LastSeen: T0()},
		{ID: "user_c", Kind: proxy.SubjectUser, Plans: []string{"pro"}, Status: proxy.StatusActive, PeriodEnd: T0().Add(10 * day), Comp: true, FirstSeen: T0(), LastSeen: T0()},
		{ID: "user_d", Kind: proxy.SubjectUser, FirstSeen: T0(), LastSeen: T0()},
		{ID: "user_e", Kind: proxy.SubjectUser, Email: "e@example.com", CustomerID: "cus_e", Plans: []string{"pro"}, Status: proxy.StatusPastDue, PeriodEnd: T0().Add(day)},
		{ID: "user_f", Kind: proxy.SubjectUser, Plans: []string{"team"}, Status: proxy.StatusActive, PeriodEnd: T0().Add(2 * day), Comp: true},
	}
	if diff := cmp.Diff(want, all, equateEmpty()); diff != "" {
		t.Errorf("ListUsers (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name string
		f    proxy.UserFilter
		want []string
	}{
		{"active", proxy.UserFilter{Status: "active"}, []string{"user_a", "user_c", "user_f"}},
		{"canceled", proxy.UserFilter{Status: "canceled"}, []string{"user_b"}},
		{"none", proxy.UserFilter{Status: proxy.StatusNone}, []string{"user_d"}},
		{"pro (those it grants access now)", proxy.UserFilter{Plan: "pro"}, []string{"user_a", "user_c", "user_e"}},
		{"team", proxy.UserFilter{Plan: "team"}, []string{"org_x", "user_f"}},
		{"active pro", proxy.UserFilter{Status: "active", Plan: "pro"}, []string{"user_a", "user_c"}},
		{"nothing", proxy.UserFilter{Status: "paused"}, nil},
	} {
		got, next := list(tc.f)
		if diff := cmp.Diff(tc.want, summaryIDs(got), equateEmpty()); diff != "" || next != "" {
			t.Errorf("%s: IDs (-want +got):\n%s; next %q", tc.name, diff, next)
		}
	}

	// Paging visits everyone once, in order, whatever the page size.
	for _, size := range []int{1, 2, 3, 6, 7, 8} {
		var ids []string
		f := proxy.UserFilter{Limit: size}
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("page size %d: no end", size)
			}
			page, next := list(f)
			if len(page) > size || len(page) == 0 {
				t.Fatalf("page size %d: got %d", size, len(page))
			}
			ids = append(ids, summaryIDs(page)...)
			if next == "" {
				break
			}
			f.After = next
		}
		if diff := cmp.Diff(summaryIDs(want), ids); diff != "" {
			t.Errorf("page size %d: IDs (-want +got):\n%s", size, diff)
		}
	}
	// Filtered paging.
	page, next := list(proxy.UserFilter{Plan: "pro", Limit: 2})
	rest, last := list(proxy.UserFilter{Plan: "pro", Limit: 2, After: next})
	if ids := append(summaryIDs(page), summaryIDs(rest)...); !cmp.Equal(ids, []string{"user_a", "user_c", "user_e"}) || last != "" {
		t.Errorf("filtered pages = %v, next %q", ids, last)
	}

	t.Run("detail", func(t *testing.T) {
		a := userSubject("user_a")
		must(t, s.Audit(ctx, proxy.AuditEntry{Actor: "ada", Action: "sync.requested", Subject: a}))
		d := mustDetail(t, s, a)
		if d.Subject != a || d.CustomerID != "cus_a" || d.CustomerEmail != "billing-a@example.com" || d.User == nil || d.Email() != "a@example.com" ||
			len(d.Subscriptions) != 2 || len(d.History) != 2 || len(d.Audit) != 1 || len(d.Comps) != 0 {
			t.Errorf("UserDetail(user_a) = %+v", d)
		}
		if f := mustDetail(t, s, userSubject("user_f")); len(f.Comps) != 2 || len(f.Subscriptions) != 0 || f.CustomerID != "" || f.User != nil {
			t.Errorf("UserDetail(user_f) = %+v; want two comps, no customer and no user record", f)
		}
		for _, unknown := range []proxy.Subject{userSubject("user_zz"), {Kind: proxy.SubjectUser, ID: "org_x"}, {}} {
			if _, err := s.UserDetail(ctx, unknown, 10); !errors.Is(err, proxy.ErrNotFound) {
				t.Errorf("UserDetail(%+v) err = %v; want ErrNotFound", unknown, err)
			}
		}
	})
}

// listingStore holds five users and an organisation:
//
//	user_a  a@x.test   seen T0+5h  active pro     (cus_a)
//	user_b  B@y.test   seen T0+1h  trialing pro   (cus_b)
//	user_c  c@x.test   seen T0+3h  past_due team  (cus_c)
//	user_d  d@z.test   seen T0+4h  no subscription
//	user_e  e@x.test   seen T0+2h  a comp of team until T0+1h, and a canceled pro (cus_e)
//	org_o              an active team subscription (cus_o)
func listingStore(t *testing.T, open Open) (Store, *Clock) {
	s, clk := fresh(t, open)
	ctx := t.Context()
	for _, u := range []struct {
		id, email string
		seen      time.Duration
		subs      []proxy.Subscription
	}{
		{"user_a", "a@x.test", 5, []proxy.Subscription{priced("sub_a", proxy.StatusActive, "pro")}},
		{"user_b", "B@y.test", 1, []proxy.Subscription{priced("sub_b", proxy.StatusTrialing, "pro")}},
		{"user_c", "c@x.test", 3, []proxy.Subscription{priced("sub_c", proxy.StatusPastDue, "team")}},
		{"user_d", "d@z.test", 4, nil},
		{"user_e", "e@x.test", 2, []proxy.Subscription{priced("sub_e", proxy.StatusCanceled, "pro")}},
	} {
		must(t, s.PutUser(ctx, proxy.User{ID: u.id, Email: u.email, FirstSeen: T0().Add(-u.seen * time.Hour), LastSeen: T0().Add(u.seen * time.Hour)}))
		if u.subs != nil {
			mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_" + u.id[5:], Subject: userSubject(u.id), Subscriptions: u.subs}, "")
		}
	}
	mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_o", Subject: orgSubject("org_o"),
		Subscriptions: []proxy.Subscription{priced("sub_o", proxy.StatusActive, "team")}}, "")
	mustPutComp(t, s, proxy.Comp{ID: "comp_e", Subject: userSubject("user_e"), Plan: "team", ExpiresAt: T0().Add(time.Hour)})
	return s, clk
}

// priced is a $12 monthly subscription created a day before T0.
func priced(id string, st proxy.SubscriptionStatus, plan string) proxy.Subscription {
	return proxy.Subscription{ID: id, Status: st, Plan: plan, CurrentPeriodEnd: T0().Add(30 * 24 * time.Hour), Amount: 1200,
		Currency: "usd", Interval: "month", IntervalCount: 1, Created: T0().Add(-24 * time.Hour)}
}

func pageIDs(t *testing.T, s Store, f proxy.UserFilter) ([]string, proxy.UserPage) {
	t.Helper()
	p, err := s.ListPage(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	return summaryIDs(p.Users), p
}

// ListPage runs the gateway.AdminStore listing suite (the console's):
// every sort both ways, filters, search, paging forward, back and to the
// last page, totals.
func ListPage(t *testing.T, open Open) {
	t.Run("sorts, filters and search", func(t *testing.T) {
		s, _ := listingStore(t, open)
		for _, tc := range []struct {
			name string
			f    proxy.UserFilter
			want []string
		}{
			{"by ID", proxy.UserFilter{}, []string{"org_o", "user_a", "user_b", "user_c", "user_d", "user_e"}},
			{"by ID, reversed", proxy.UserFilter{Desc: true}, []string{"user_e", "user_d", "user_c", "user_b", "user_a", "org_o"}},
			{"last seen, newest first", proxy.UserFilter{Sort: proxy.SortLastSeen, Desc: true}, []string{"user_a", "user_d", "user_c", "user_e", "user_b", "org_o"}},
			{"last seen", proxy.UserFilter{Sort: proxy.SortLastSeen}, []string{"org_o", "user_b", "user_e", "user_c", "user_d", "user_a"}},
			{"first seen", proxy.UserFilter{Sort: proxy.SortFirstSeen}, []string{"org_o", "user_a", "user_d", "user_c", "user_e", "user_b"}},
			{"email, ignoring case", proxy.UserFilter{Sort: proxy.SortEmail}, []string{"org_o", "user_a", "user_b", "user_c", "user_d", "user_e"}},
			{"email, reversed", proxy.UserFilter{Sort: proxy.SortEmail, Desc: true}, []string{"user_e", "user_d", "user_c", "user_b", "user_a", "org_o"}},
			// Active first (by last seen), then trialing, past due, none.
			{"status", proxy.UserFilter{Sort: proxy.SortStatus}, []string{"org_o", "user_e", "user_a", "user_b", "user_c", "user_d"}},
			{"active", proxy.UserFilter{Status: "active", Sort: proxy.SortLastSeen}, []string{"org_o", "user_e", "user_a"}},
			{"no subscription", proxy.UserFilter{Status: proxy.StatusNone}, []string{"user_d"}},
			{"plan team", proxy.UserFilter{Plan: "team", Sort: proxy.SortEmail}, []string{"org_o", "user_c", "user_e"}},
			{"active pro", proxy.UserFilter{Status: "active", Plan: "pro"}, []string{"user_a"}},
			{"search an email, ignoring case", proxy.UserFilter{Query: "b@Y"}, []string{"user_b"}},
			{"search by an email's start", proxy.UserFilter{Query: "c@x"}, []string{"user_c"}},
			{"search a user ID", proxy.UserFilter{Query: "user_d"}, []string{"user_d"}},
			{"search a customer ID", proxy.UserFilter{Query: "cus_o"}, []string{"org_o"}},
			{"search with a filter", proxy.UserFilter{Query: "user_", Status: "past_due"}, []string{"user_c"}},
			{"search nothing", proxy.UserFilter{Query: "zz@"}, nil},
		} {
			got, _ := pageIDs(t, s, tc.f)
			if diff := cmp.Diff(tc.want, got, equateEmpty()); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.name, diff)
			}
		}
	})

	t.Run("an expired comp leaves the active list without a write", func(t *testing.T) {
		s, clk := listingStore(t, open)
		clk.Set(T0().Add(2 * time.Hour))
		if got, _ := pageIDs(t, s, proxy.UserFilter{Status: "active"}); !cmp.Equal([]string{"org_o", "user_a"}, got) {
			t.Errorf("active after the comp expired = %v; want [org_o user_a]", got)
		}
		if got, _ := pageIDs(t, s, proxy.UserFilter{Status: "canceled"}); !cmp.Equal([]string{"user_e"}, got) {
			t.Errorf("canceled after the comp expired = %v; want [user_e]", got)
		}
	})

	t.Run("a revoked comp leaves the active list", func(t *testing.T) {
		s, _ := listingStore(t, open)
		must(t, s.RevokeComp(t.Context(), "comp_e", "ada", "done"))
		if got, _ := pageIDs(t, s, proxy.UserFilter{Status: "active"}); !cmp.Equal([]string{"org_o", "user_a"}, got) {
			t.Errorf("active after the revocation = %v; want [org_o user_a]", got)
		}
		if _, p := pageIDs(t, s, proxy.UserFilter{Plan: "team"}); p.Total != 2 {
			t.Errorf("team total after the revocation: %d, want 2", p.Total)
		}
	})

	t.Run("paging both ways", func(t *testing.T) {
		s, _ := listingStore(t, open)
		for _, sort := range proxy.UserSorts() {
			for _, desc := range []bool{false, true} {
				for _, size := range []int{1, 2, 4, 5, 6} {
					checkPaging(t, s, proxy.UserFilter{Sort: sort, Desc: desc, Limit: size})
				}
			}
		}
		checkPaging(t, s, proxy.UserFilter{Sort: proxy.SortLastSeen, Status: "active", Limit: 1})
		if _, err := s.ListPage(t.Context(), proxy.UserFilter{After: "not a cursor!"}); !errors.Is(err, proxy.ErrBadCursor) {
			t.Errorf("a bad cursor: %v, want ErrBadCursor", err)
		}
	})

	t.Run("totals", func(t *testing.T) {
		s, _ := listingStore(t, open)
		for _, tc := range []struct {
			f    proxy.UserFilter
			want int64
		}{
			{proxy.UserFilter{}, 6},
			{proxy.UserFilter{Status: "active"}, 3},
			{proxy.UserFilter{Plan: "team"}, 3},
			{proxy.UserFilter{Status: proxy.StatusNone, Limit: 1}, 1},
		} {
			if _, p := pageIDs(t, s, tc.f); p.Total != tc.want {
				t.Errorf("%+v: total %d, want %d", tc.f, p.Total, tc.want)
			}
		}
		// Writes move the totals with them.
		must(t, s.DeleteUser(t.Context(), "user_d"))
		mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_a", Deleted: true}, "")
		if _, p := pageIDs(t, s, proxy.UserFilter{}); p.Total != 5 {
			t.Errorf("total after deleting user_d: %d, want 5", p.Total)
		}
		if _, p := pageIDs(t, s, proxy.UserFilter{Status: "active"}); p.Total != 2 {
			t.Errorf("active total after cus_a's deletion: %d, want 2", p.Total)
		}
	})

	// An e-mail holding a NUL (whatever was typed) cannot break the
	// e-mail sort or search for everyone.
	t.Run("control bytes in an email", func(t *testing.T) {
		s, _ := listingStore(t, open)
		must(t, s.PutUser(t.Context(), proxy.User{ID: "user_z", Email: "zz\x00evil@x.com"}))
		for _, f := range []proxy.UserFilter{{Sort: proxy.SortEmail}, {Sort: proxy.SortEmail, Desc: true}, {Query: "zz"}} {
			ids, _ := pageIDs(t, s, f)
			found := false
			for _, id := range ids {
				found = found || id == "user_z"
			}
			if !found {
				t.Errorf("%+v: user_z not listed: %v", f, ids)
			}
		}
	})
}

// checkPaging walks f's listing forward with Next, from the last page
// back with Prev, and checks both give every row once, in the order of one
// page as large as the listing.
func checkPaging(t *testing.T, s Store, f proxy.UserFilter) {
	t.Helper()
	whole := f
	whole.Limit = proxy.MaxUsersPage
	want, _ := pageIDs(t, s, whole)
	var forward []string
	var p proxy.UserPage
	for cur, pages := f, 0; ; pages++ {
		if pages > len(want)+1 {
			t.Fatalf("%+v: no end going forward", f)
		}
		var ids []string
		ids, p = pageIDs(t, s, cur)
		if len(ids) > f.Limit || len(ids) == 0 && len(want) > 0 {
			t.Fatalf("%+v: a page of %d", f, len(ids))
		}
		if pages == 0 && p.Prev != "" {
			t.Errorf("%+v: the first page has a Prev", f)
		}
		forward = append(forward, ids...)
		if p.Next == "" {
			break
		}
		cur.After = p.Next
	}
	if diff := cmp.Diff(want, forward, equateEmpty()); diff != "" {
		t.Errorf("%+v: forward (-whole +pages):\n%s", f, diff)
	}
	last := f
	last.Last = true
	ids, lp := pageIDs(t, s, last)
	if lp.Next != "" {
		t.Errorf("%+v: the last page has a Next", f)
	}
	back := ids
	for cur, pages := f, 0; lp.Prev != ""; pages++ {
		if pages > len(want)+1 {
			t.Fatalf("%+v: no end going back", f)
		}
		cur.Before = lp.Prev
		ids, lp = pageIDs(t, s, cur)
		if len(ids) > f.Limit || len(ids) == 0 {
			t.Fatalf("%+v: a page of %d going back", f, len(ids))
		}
		if lp.Next == "" {
			t.Errorf("%+v: a page reached going back has no Next", f)
		}
		back = append(ids, back...)
	}
	if diff := cmp.Diff(want, back, equateEmpty()); diff != "" {
		t.Errorf("%+v: back (-whole +pages):\n%s", f, diff)
	}
}

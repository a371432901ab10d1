package bolt

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// listingStore holds five users and an organisation:
//
//	user_a  a@x.test   seen t0+5h  active pro     (cus_a)
//	user_b  B@y.test   seen t0+1h  trialing pro   (cus_b)
//	user_c  c@x.test   seen t0+3h  past_due team  (cus_c)
//	user_d  d@z.test   seen t0+4h  no subscription
//	user_e  e@x.test   seen t0+2h  a comp of team, and a canceled pro (cus_e)
//	org_o              an active team subscription (cus_o)
func listingStore(t *testing.T) (*Store, *clock) {
	s, _, clk := newClockStore(t)
	ctx := t.Context()
	sub := func(id string, st proxy.SubscriptionStatus, plan string) proxy.Subscription {
		return proxy.Subscription{ID: id, Status: st, Plan: plan, CurrentPeriodEnd: t0().Add(30 * 24 * time.Hour), Amount: 1200,
			Currency: "usd", Interval: "month", IntervalCount: 1, Created: t0().Add(-24 * time.Hour)}
	}
	for _, u := range []struct {
		id, email string
		seen      time.Duration
		subs      []proxy.Subscription
	}{
		{"user_a", "a@x.test", 5, []proxy.Subscription{sub("sub_a", proxy.StatusActive, "pro")}},
		{"user_b", "B@y.test", 1, []proxy.Subscription{sub("sub_b", proxy.StatusTrialing, "pro")}},
		{"user_c", "c@x.test", 3, []proxy.Subscription{sub("sub_c", proxy.StatusPastDue, "team")}},
		{"user_d", "d@z.test", 4, nil},
		{"user_e", "e@x.test", 2, []proxy.Subscription{sub("sub_e", proxy.StatusCanceled, "pro")}},
	} {
		if err := s.PutUser(ctx, proxy.User{ID: u.id, Email: u.email, FirstSeen: t0().Add(-u.seen * time.Hour), LastSeen: t0().Add(u.seen * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if u.subs != nil {
			mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_" + u.id[5:], Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: u.id}, Subscriptions: u.subs}, "")
		}
	}
	mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_o", Subject: proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_o"},
		Subscriptions: []proxy.Subscription{sub("sub_o", proxy.StatusActive, "team")}}, "")
	mustPutComp(t, s, proxy.Comp{ID: "comp_e", Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_e"}, Plan: "team", ExpiresAt: t0().Add(time.Hour)})
	return s, clk
}

func pageIDs(t *testing.T, s *Store, f proxy.UserFilter) ([]string, proxy.UserPage) {
	t.Helper()
	p, err := s.ListPage(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	return summaryIDs(p.Users), p
}

func TestListPage_SortsAndFilters(t *testing.T) {
	s, _ := listingStore(t)
	for _, tc := range []struct {
		name string
		f    proxy.UserFilter
		want []string
	}{
		{"by ID", proxy.UserFilter{}, []string{"org_o", "user_a", "user_b", "user_c", "user_d", "user_e"}},
		{"last seen, newest first", proxy.UserFilter{Sort: proxy.SortLastSeen, Desc: true}, []string{"user_a", "user_d", "user_c", "user_e", "user_b", "org_o"}},
		{"first seen", proxy.UserFilter{Sort: proxy.SortFirstSeen}, []string{"org_o", "user_a", "user_d", "user_c", "user_e", "user_b"}},
		{"email, ignoring case", proxy.UserFilter{Sort: proxy.SortEmail}, []string{"org_o", "user_a", "user_b", "user_c", "user_d", "user_e"}},
		// Active first (by last seen), then trialing, past due, none.
		{"status", proxy.UserFilter{Sort: proxy.SortStatus}, []string{"org_o", "user_e", "user_a", "user_b", "user_c", "user_d"}},
		{"active", proxy.UserFilter{Status: "active", Sort: proxy.SortLastSeen}, []string{"org_o", "user_e", "user_a"}},
		{"no subscription", proxy.UserFilter{Status: proxy.StatusNone}, []string{"user_d"}},
		{"plan team", proxy.UserFilter{Plan: "team", Sort: proxy.SortEmail}, []string{"org_o", "user_c", "user_e"}},
		{"active pro", proxy.UserFilter{Status: "active", Plan: "pro"}, []string{"user_a"}},
		{"search an email", proxy.UserFilter{Query: "b@Y"}, []string{"user_b"}},
		{"search a domain's users by their start", proxy.UserFilter{Query: "c@x"}, []string{"user_c"}},
		{"search a user ID", proxy.UserFilter{Query: "user_d"}, []string{"user_d"}},
		{"search a customer ID", proxy.UserFilter{Query: "cus_o"}, []string{"org_o"}},
		{"search with a filter", proxy.UserFilter{Query: "user_", Status: "past_due"}, []string{"user_c"}},
	} {
		got, _ := pageIDs(t, s, tc.f)
		if diff := cmp.Diff(tc.want, got, equateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	// The comp expires: user_e is then only cancelled, without a write.
	got, _ := pageIDs(t, s, proxy.UserFilter{Status: "active", Sort: proxy.SortLastSeen})
	if len(got) != 3 {
		t.Fatalf("active: %v", got)
	}
}

func TestListPage_ExpiredCompLeavesTheActiveList(t *testing.T) {
	s, clk := listingStore(t)
	clk.Set(t0().Add(2 * time.Hour))
	got, _ := pageIDs(t, s, proxy.UserFilter{Status: "active"})
	if diff := cmp.Diff([]string{"org_o", "user_a"}, got); diff != "" {
		t.Errorf("active after the comp expired (-want +got):\n%s", diff)
	}
	got, _ = pageIDs(t, s, proxy.UserFilter{Status: "canceled"})
	if diff := cmp.Diff([]string{"user_e"}, got); diff != "" {
		t.Errorf("canceled after the comp expired (-want +got):\n%s", diff)
	}
}

// Next, Prev and Last walk the same pages in both directions.
func TestListPage_Paging(t *testing.T) {
	s, _ := listingStore(t)
	for _, desc := range []bool{false, true} {
		f := proxy.UserFilter{Sort: proxy.SortLastSeen, Desc: desc, Limit: 2}
		var forward [][]string
		var p proxy.UserPage
		for {
			var ids []string
			ids, p = pageIDs(t, s, f)
			forward = append(forward, ids)
			if p.Next == "" {
				break
			}
			f.After = p.Next
		}
		if len(forward) != 3 || p.Prev == "" {
			t.Fatalf("desc=%v: pages %v, last Prev %q", desc, forward, p.Prev)
		}
		last, lp := pageIDs(t, s, proxy.UserFilter{Sort: proxy.SortLastSeen, Desc: desc, Limit: 2, Last: true})
		if diff := cmp.Diff(forward[2], last); diff != "" || lp.Next != "" {
			t.Errorf("desc=%v: last page (-forward +last):\n%s (next %q)", desc, diff, lp.Next)
		}
		back := [][]string{last}
		for f := (proxy.UserFilter{Sort: proxy.SortLastSeen, Desc: desc, Limit: 2, Before: lp.Prev}); f.Before != ""; {
			ids, p := pageIDs(t, s, f)
			back = append([][]string{ids}, back...)
			f.Before = p.Prev
		}
		if diff := cmp.Diff(forward, back); diff != "" {
			t.Errorf("desc=%v: pages forward and back (-forward +back):\n%s", desc, diff)
		}
	}
	if _, err := s.ListPage(t.Context(), proxy.UserFilter{After: "not a cursor!"}); !errors.Is(err, proxy.ErrBadCursor) {
		t.Errorf("a bad cursor: %v, want ErrBadCursor", err)
	}
	_, p := pageIDs(t, s, proxy.UserFilter{Status: "active"})
	if p.Total != 3 {
		t.Errorf("active total %d, want 3 (the index's count)", p.Total)
	}
}

// derivedBuckets are what the writes derive from the records.
var derivedBuckets = []string{bucketListID, bucketListFirst, bucketListLast, bucketListEmail, bucketListCounts, bucketStats}

// dumpDerived is every key and value of the derived buckets, and every
// account record's listing.
func dumpDerived(t *testing.T, tx *bbolt.Tx) map[string]string {
	out := map[string]string{}
	for _, name := range derivedBuckets {
		if b := tx.Bucket([]byte(name)); b != nil {
			_ = b.ForEach(func(k, v []byte) error {
				out[name+"|"+string(k)] = string(v)
				return nil
			})
		}
	}
	_ = tx.Bucket([]byte(bucketAccounts)).ForEach(func(k, v []byte) error {
		a, err := decodeAccount(tx, v)
		if err != nil {
			t.Fatal(err)
		}
		out["account|"+string(k)] = fmt.Sprintf("%+v", a.List)
		return nil
	})
	return out
}

// rebuildDerived makes the derived buckets and the account records'
// listings anew from the records, as a migration does.
func rebuildDerived(tx *bbolt.Tx, now time.Time) error {
	for _, name := range derivedBuckets {
		if tx.Bucket([]byte(name)) != nil {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
		}
	}
	accounts := map[string]account{}
	if err := tx.Bucket([]byte(bucketAccounts)).ForEach(func(k, v []byte) error {
		a, err := decodeAccount(tx, v)
		a.List = nil
		accounts[string(k)] = a
		return err
	}); err != nil {
		return err
	}
	if b := tx.Bucket([]byte(bucketCompsBySubject)); b != nil {
		if err := b.ForEach(func(k, _ []byte) error {
			subject, _, _ := strings.Cut(string(k), "\x00")
			_, id, _ := strings.Cut(subject, ":")
			if _, ok := accounts[id]; !ok {
				accounts[id] = account{}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	m := &migration{now: now}
	for id, a := range accounts {
		if err := m.account(tx, id, &a); err != nil {
			return err
		}
	}
	return tx.Bucket([]byte(bucketCustomers)).ForEach(func(k, v []byte) error {
		rec, err := decodeCustomer(tx, string(k), v)
		if err == nil {
			err = countIn(tx, tagCustomers, 1)
		}
		if err == nil {
			err = countFacts(tx, rec.Subscriptions, 1)
		}
		return err
	})
}

// rebuilt is what the derived buckets would hold if built from scratch
// (the migration's way), without keeping it.
func rebuilt(t *testing.T, s *Store) (incremental, scratch map[string]string) {
	t.Helper()
	stop := errors.New("roll back")
	err := s.db.Update(func(tx *bbolt.Tx) error {
		incremental = dumpDerived(t, tx)
		if err := rebuildDerived(tx, s.now()); err != nil {
			return err
		}
		scratch = dumpDerived(t, tx)
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatal(err)
	}
	return incremental, scratch
}

// Whatever the writes, the index and the counters kept in their
// transactions equal those built from scratch.
func TestIndex_IncrementalEqualsRebuilt(t *testing.T) {
	s, clk := listingStore(t)
	ctx := t.Context()
	// Relink, resync, delete, comp, revoke, see, forget.
	mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_a", Subject: user2(), Subscriptions: []proxy.Subscription{{ID: "sub_a", Status: proxy.StatusCanceled, Plan: "pro",
		Amount: 1200, Currency: "usd", Interval: "month", Created: t0(), EndedAt: t0().Add(time.Hour)}}}, "")
	mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_b", Deleted: true}, "")
	mustPutComp(t, s, proxy.Comp{ID: "comp_d", Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_d"}, Plan: "pro", ExpiresAt: t0().Add(48 * time.Hour)})
	if err := s.RevokeComp(ctx, "comp_e", "ada", "done"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordSeen(ctx, map[string]time.Time{"user_c": t0().Add(9 * time.Hour), "user_new": t0()}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "user_d"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMembership(ctx, "org_o", "user_m", "org:member"); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0().Add(time.Minute))
	incremental, scratch := rebuilt(t, s)
	if diff := cmp.Diff(scratch, incremental); diff != "" {
		t.Errorf("derived buckets (-rebuilt +incremental):\n%s", diff)
	}
	if len(incremental) < 50 {
		t.Errorf("only %d derived keys: the check is vacuous", len(incremental))
	}
}

func TestDashboard_Counts(t *testing.T) {
	s, _ := listingStore(t)
	d, err := s.Dashboard(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("active %d trialing %d past_due %d canceled %d mrr %v trial %v", d.Active, d.Trialing, d.PastDue, d.Canceled, d.MRR, d.TrialMRR)
	// Active and past due: 3 × $12 (comps are not subscriptions).
	if want := "active 2 trialing 1 past_due 1 canceled 1 mrr [{usd 3600}] trial [{usd 1200}]"; got != want {
		t.Errorf("dashboard: %s\nwant       %s", got, want)
	}
	if added, _ := d.Window(7); added != 5 {
		t.Errorf("new in the last week: %d, want 5 (the cancelled one began too)", added)
	}
}

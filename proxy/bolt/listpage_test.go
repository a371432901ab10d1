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

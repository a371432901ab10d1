package bolt

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/tollgate/tollgate/proxy"
)

// TestCommitCustomer_StateAndEventInOneTransaction: when the commit fails
// after the event was written inside the transaction, neither lands.
func TestCommitCustomer_StateAndEventInOneTransaction(t *testing.T) {
	t.Run("encode fails", func(t *testing.T) {
		s, _ := newStore(t)
		_, before := mustCommit(t, s, twoSubs("cus_1", user1(), t0()), "evt_1")

		bad := twoSubs("cus_1", user1(), t0().Add(time.Hour))
		bad.Subscriptions[0].PriceIDs = []string{strings.Repeat("p", maxDictString+1)} // longer than the dictionary takes
		if _, _, err := s.CommitCustomer(t.Context(), bad, "evt_2"); err == nil {
			t.Fatal("CommitCustomer with an unencodable state succeeded")
		}
		if mustProcessed(t, s, "evt_2") {
			t.Error("event marked processed although its state was not stored")
		}
		if got := mustEntitlements(t, s, user1()); !cmp.Equal(got, before) {
			t.Errorf("state changed by a failed commit (-got +want):\n%s", cmp.Diff(got, before))
		}

		fresh := twoSubs("cus_2", user2(), t0())
		fresh.Subscriptions[1].Currency = strings.Repeat("c", maxDictString+1)
		if _, _, err := s.CommitCustomer(t.Context(), fresh, "evt_3"); err == nil {
			t.Fatal("CommitCustomer with an unencodable state succeeded")
		}
		if mustProcessed(t, s, "evt_3") {
			t.Error("event marked processed although its state was not stored")
		}
		if got := mustEntitlements(t, s, user2()); got != nil {
			t.Errorf("Entitlements(user_2) = %+v after a failed first commit; want nil", got)
		}
		if c, err := s.CustomerOf(t.Context(), user2()); err != nil || c != "" {
			t.Errorf("CustomerOf(user_2) = %q, %v; want no link", c, err)
		}
	})
	t.Run("closed store", func(t *testing.T) {
		s, path := newStore(t)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.CommitCustomer(t.Context(), twoSubs("cus_1", user1(), t0()), "evt_1")
		if !errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
			t.Fatalf("CommitCustomer on a closed store: err = %v; want ErrDatabaseNotOpen", err)
		}
		s = mustOpen(t, path)
		if mustProcessed(t, s, "evt_1") {
			t.Error("event marked by a commit on a closed store")
		}
		if got := mustEntitlements(t, s, user1()); got != nil {
			t.Errorf("Entitlements = %+v; want nil", got)
		}
	})
	t.Run("error names the customer", func(t *testing.T) {
		s, _ := newStore(t)
		_ = s.Close()
		_, _, err := s.CommitCustomer(t.Context(), twoSubs("cus_x", user1(), t0()), "")
		if want := "bolt: commit customer cus_x: "; err == nil || len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
			t.Errorf("err = %v; want prefix %q", err, want)
		}
	})
}

// A customer deleted in Stripe leaves a tombstone (HadTrial outlives it,
// storetest Customers); one never seen leaves nothing.
func TestCommitCustomer_DeletedLeavesOneTombstone(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	mustCommit(t, s, twoSubs("cus_1", user1(), t0()), "evt_1")
	mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_1", Deleted: true, SyncedAt: t0().Add(time.Hour)}, "evt_2")
	mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_ghost", Deleted: true}, "evt_3")
	if c, _ := s.Counts(ctx); c.Customers != 1 {
		t.Errorf("Counts = %+v; want only cus_1's tombstone", c)
	}
}

// A customer's email that is its user's is kept once, in the user's
// record; when Clerk's email changes or the user goes, the customer keeps
// the one Stripe has.
func TestCustomerEmail_SharedWithTheUser(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, twoSubs("cus_1", user1(), t0()), "") // Stripe's email: ada@example.com
	customerEmail := func() string {
		t.Helper()
		d, err := s.UserDetail(ctx, user1(), 1)
		if err != nil {
			t.Fatal(err)
		}
		return d.CustomerEmail
	}
	var stored []byte
	if err := s.db.View(func(tx *bbolt.Tx) error {
		stored = bytes.Clone(tx.Bucket([]byte(bucketCustomers)).Get([]byte("cus_1")))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, []byte("ada@example.com")) {
		t.Error("the customer's record holds the user's email again")
	}
	if got := customerEmail(); got != "ada@example.com" {
		t.Fatalf("customer email %q", got)
	}
	if err := s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@new.example"}); err != nil {
		t.Fatal(err)
	}
	if got := customerEmail(); got != "ada@example.com" {
		t.Errorf("after Clerk's email changed, the customer's is %q; want Stripe's, ada@example.com", got)
	}
	if err := s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "user_1"); err != nil {
		t.Fatal(err)
	}
	if got := customerEmail(); got != "ada@example.com" {
		t.Errorf("after the user was deleted, the customer's email is %q; want ada@example.com", got)
	}
	// The customer moves to another user, whose email is not Stripe's.
	if err := s.PutUser(ctx, proxy.User{ID: "user_2", Email: "grace@example.com"}); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_1", Subject: user2()}, "")
	d, err := s.UserDetail(ctx, user2(), 1)
	if err != nil || d.CustomerEmail != "ada@example.com" {
		t.Errorf("the customer's email with its new user: %q, %v", d.CustomerEmail, err)
	}
}

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

func TestCommitCustomer_ReturnsWhatItStored(t *testing.T) {
	s, _ := newStore(t)
	state := twoSubs("cus_1", user1(), t0())
	subj, ents := mustCommit(t, s, state, "evt_1")
	want := &proxy.Entitlements{Subject: user1(), CustomerID: "cus_1", Subscriptions: state.Subscriptions, SyncedAt: t0()}
	if subj != user1() {
		t.Errorf("subject = %v, want %v", subj, user1())
	}
	if diff := cmp.Diff(ents, want); diff != "" {
		t.Errorf("returned Entitlements (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(mustEntitlements(t, s, user1()), want); diff != "" {
		t.Errorf("stored Entitlements (-got +want):\n%s", diff)
	}
	// The returned value may live in an LRU: it must not alias the caller's state.
	state.Subscriptions[0].PriceIDs[0] = "changed"
	if ents.Subscriptions[0].PriceIDs[0] != "price_pro" {
		t.Error("returned Entitlements alias the committed state's slices")
	}
	if !mustProcessed(t, s, "evt_1") {
		t.Error("event not marked")
	}
}

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

func TestCommitCustomer_LinksBothWays(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	checkLink := func(t *testing.T, subject proxy.Subject, customerID string) {
		t.Helper()
		if c, err := s.CustomerOf(ctx, subject); err != nil || c != customerID {
			t.Errorf("CustomerOf(%v) = %q, %v; want %q", subject, c, err, customerID)
		}
		if customerID == "" {
			return
		}
		if got, ok, err := s.SubjectOf(ctx, customerID); err != nil || !ok || got != subject {
			t.Errorf("SubjectOf(%s) = %v, %v, %v; want %v", customerID, got, ok, err, subject)
		}
	}
	checkNoSubject := func(t *testing.T, customerID string) {
		t.Helper()
		if got, ok, err := s.SubjectOf(ctx, customerID); err != nil || ok {
			t.Errorf("SubjectOf(%s) = %v, %v, %v; want none", customerID, got, ok, err)
		}
	}

	// A customer synced before anyone claims it is kept by customer ID.
	noSubject := twoSubs("cus_1", proxy.Subject{}, t0())
	if subj, ents := mustCommit(t, s, noSubject, ""); subj != (proxy.Subject{}) || ents != nil {
		t.Errorf("commit without a subject returned %v, %+v; want zero, nil", subj, ents)
	}
	checkNoSubject(t, "cus_1")

	// The sync learns the subject.
	if subj, _ := mustCommit(t, s, twoSubs("cus_1", user1(), t0()), ""); subj != user1() {
		t.Errorf("subject = %v", subj)
	}
	checkLink(t, user1(), "cus_1")

	// A later sync without a subject keeps the link.
	if subj, ents := mustCommit(t, s, noSubject, ""); subj != user1() || ents == nil || ents.CustomerID != "cus_1" {
		t.Errorf("commit without a subject returned %v, %+v; want the stored link", subj, ents)
	}
	checkLink(t, user1(), "cus_1")

	// The subject moves to another customer: the old customer forgets it.
	if err := s.LinkCustomer(ctx, user1(), "cus_2"); err != nil {
		t.Fatal(err)
	}
	checkLink(t, user1(), "cus_2")
	checkNoSubject(t, "cus_1")
	if ents := mustEntitlements(t, s, user1()); ents == nil || ents.CustomerID != "cus_2" || len(ents.Subscriptions) != 0 {
		t.Errorf("Entitlements(user_1) = %+v; want cus_2 with no subscriptions yet", ents)
	}

	// The customer changes hands: the old subject loses it.
	mustCommit(t, s, twoSubs("cus_2", user2(), t0()), "")
	checkLink(t, user2(), "cus_2")
	checkLink(t, user1(), "")
	if ents := mustEntitlements(t, s, user1()); ents != nil {
		t.Errorf("Entitlements(user_1) = %+v; want nil after its customer moved", ents)
	}

	// Organisations are subjects of their own.
	mustCommit(t, s, twoSubs("cus_3", org1(), t0()), "")
	checkLink(t, org1(), "cus_3")
	if c, _ := s.CustomerOf(ctx, proxy.Subject{Kind: proxy.SubjectUser, ID: "org_1"}); c != "" {
		t.Errorf("a user with the org's ID sees customer %q", c)
	}

	for _, bad := range []proxy.Subject{{Kind: "team", ID: "x"}, {Kind: proxy.SubjectUser}} {
		if err := s.LinkCustomer(ctx, bad, "cus_9"); err == nil {
			t.Errorf("LinkCustomer(%+v) succeeded", bad)
		}
		if _, _, err := s.CommitCustomer(ctx, twoSubs("cus_9", bad, t0()), ""); err == nil {
			t.Errorf("CommitCustomer with subject %+v succeeded", bad)
		}
	}
	if _, _, err := s.CommitCustomer(ctx, proxy.CustomerState{}, ""); err == nil {
		t.Error("CommitCustomer without a customer ID succeeded")
	}
}

func TestCommitCustomer_DeletedDrops(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	mustCommit(t, s, twoSubs("cus_1", user1(), t0()), "evt_1")

	subj, ents := mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_1", Deleted: true, SyncedAt: t0().Add(time.Hour)}, "evt_2")
	if subj != user1() || ents != nil {
		t.Errorf("delete returned %v, %+v; want the subject that lost it and nil", subj, ents)
	}
	if got := mustEntitlements(t, s, user1()); got != nil {
		t.Errorf("Entitlements after delete = %+v; want nil", got)
	}
	if c, err := s.CustomerOf(ctx, user1()); err != nil || c != "" {
		t.Errorf("CustomerOf after delete = %q, %v", c, err)
	}
	if _, ok, err := s.SubjectOf(ctx, "cus_1"); err != nil || ok {
		t.Errorf("SubjectOf after delete = %v, %v", ok, err)
	}
	if !mustProcessed(t, s, "evt_2") {
		t.Error("delete event not marked")
	}
	if had, err := s.HadTrial(ctx, "cus_1"); err != nil || !had {
		t.Errorf("HadTrial after delete = %v, %v; want it kept", had, err)
	}
	if err := s.LinkCustomer(ctx, user1(), "cus_1"); err == nil {
		t.Error("LinkCustomer to a deleted customer succeeded")
	}

	// Deleting a customer never seen marks the event and stores nothing.
	mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_ghost", Deleted: true}, "evt_3")
	if !mustProcessed(t, s, "evt_3") {
		t.Error("event not marked")
	}
	if c, _ := s.Counts(ctx); c.Customers != 1 {
		t.Errorf("Counts = %+v; want only cus_1's tombstone", c)
	}
}

func TestCommitCustomer_KeepsPastDueSince(t *testing.T) {
	s, _ := newStore(t)
	sync := func(at time.Time, status proxy.SubscriptionStatus) time.Time {
		t.Helper()
		state := proxy.CustomerState{CustomerID: "cus_1", Subject: user1(), SyncedAt: at,
			Subscriptions: []proxy.Subscription{{ID: "sub_1", Status: status, Plan: "pro", SyncedAt: at}}}
		_, ents := mustCommit(t, s, state, "")
		stored := mustEntitlements(t, s, user1())
		if !cmp.Equal(ents, stored) {
			t.Fatalf("returned and stored differ (-returned +stored):\n%s", cmp.Diff(ents, stored))
		}
		return stored.Subscriptions[0].PastDueSince
	}
	if got := sync(t0(), proxy.StatusPastDue); !got.Equal(t0()) {
		t.Errorf("first past_due sync: PastDueSince = %v, want %v", got, t0())
	}
	if got := sync(t0().Add(24*time.Hour), proxy.StatusPastDue); !got.Equal(t0()) {
		t.Errorf("second past_due sync: PastDueSince = %v, want it kept at %v", got, t0())
	}
	if got := sync(t0().Add(48*time.Hour), proxy.StatusActive); !got.IsZero() {
		t.Errorf("after recovery: PastDueSince = %v, want zero", got)
	}
	later := t0().Add(72 * time.Hour)
	if got := sync(later, proxy.StatusPastDue); !got.Equal(later) {
		t.Errorf("past_due again: PastDueSince = %v, want %v", got, later)
	}
}

func TestHadTrial(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	had := func(customerID string) bool {
		t.Helper()
		ok, err := s.HadTrial(ctx, customerID)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if had("cus_unknown") {
		t.Error("unknown customer had a trial")
	}
	active := func(at time.Time, sub proxy.Subscription) proxy.CustomerState {
		return proxy.CustomerState{CustomerID: "cus_1", Subject: user1(), SyncedAt: at, Subscriptions: []proxy.Subscription{sub}}
	}
	mustCommit(t, s, active(t0(), proxy.Subscription{ID: "sub_1", Status: proxy.StatusActive}), "")
	if had("cus_1") {
		t.Error("a customer with no trial had one")
	}
	mustCommit(t, s, active(t0(), proxy.Subscription{ID: "sub_1", Status: proxy.StatusTrialing}), "")
	if !had("cus_1") {
		t.Error("trialing not recorded")
	}
	// The trial subscription is gone from Stripe's answer: the fact stays.
	mustCommit(t, s, active(t0().Add(time.Hour), proxy.Subscription{ID: "sub_2", Status: proxy.StatusActive}), "")
	if !had("cus_1") {
		t.Error("HadTrial lost by a later sync without trials")
	}
	// A canceled subscription that once had a trial counts too.
	mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_2", SyncedAt: t0(),
		Subscriptions: []proxy.Subscription{{ID: "sub_3", Status: proxy.StatusCanceled, TrialEnd: t0()}}}, "")
	if !had("cus_2") {
		t.Error("TrialEnd not recorded as a trial")
	}
}

func TestEntitlements_Unknown(t *testing.T) {
	s, _ := newStore(t)
	ents, err := s.Entitlements(t.Context(), user1())
	if ents != nil || err != nil {
		t.Errorf("Entitlements(unknown) = %+v, %v; want nil, nil", ents, err)
	}
	if err := s.LinkCustomer(t.Context(), user1(), "cus_1"); err != nil {
		t.Fatal(err)
	}
	want := &proxy.Entitlements{Subject: user1(), CustomerID: "cus_1"}
	if diff := cmp.Diff(mustEntitlements(t, s, user1()), want); diff != "" {
		t.Errorf("Entitlements(linked, never synced) (-got +want):\n%s", diff)
	}
}

func TestEvents(t *testing.T) {
	now := t0()
	s, err := Open(t.TempDir()+"/tollgate.db", Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	if mustProcessed(t, s, "evt_1") {
		t.Error("unknown event processed")
	}
	if err := s.MarkEvent(ctx, "evt_1"); err != nil {
		t.Fatal(err)
	}
	now = t0().Add(48 * time.Hour)
	if err := s.MarkEvent(ctx, "evt_2"); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, twoSubs("cus_1", user1(), now), "evt_3")
	// Marking again keeps the first processed-at, so evt_1 stays prunable.
	if err := s.MarkEvent(ctx, "evt_1"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkEvent(ctx, ""); err == nil {
		t.Error("MarkEvent(\"\") succeeded")
	}
	n, err := s.PruneEvents(ctx, t0().Add(24*time.Hour))
	if err != nil || n != 1 {
		t.Errorf("PruneEvents = %d, %v; want 1", n, err)
	}
	for id, want := range map[string]bool{"evt_1": false, "evt_2": true, "evt_3": true} {
		if got := mustProcessed(t, s, id); got != want {
			t.Errorf("EventProcessed(%s) = %v, want %v", id, got, want)
		}
	}
}

func TestCursors(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if v, err := s.Cursor(ctx, "sync_all"); err != nil || v != "" {
		t.Errorf("unset cursor = %q, %v", v, err)
	}
	for _, v := range []string{"sub_1", "sub_2", ""} {
		if err := s.SetCursor(ctx, "sync_all", v); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Cursor(ctx, "sync_all"); err != nil || got != v {
			t.Errorf("Cursor = %q, %v; want %q", got, err, v)
		}
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

package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// Entitlements runs the proxy.EntitlementSource suite: what the request
// path reads of a subject.
func Entitlements(t *testing.T, open Open) {
	t.Run("unknown and linked but never synced", func(t *testing.T) {
		s, _ := fresh(t, open)
		ents, err := s.Entitlements(t.Context(), user1())
		if ents != nil || err != nil {
			t.Errorf("Entitlements(unknown) = %+v, %v; want nil, nil", ents, err)
		}
		must(t, s.LinkCustomer(t.Context(), user1(), "cus_1"))
		want := &proxy.Entitlements{Subject: user1(), CustomerID: "cus_1"}
		if diff := cmp.Diff(want, mustEntitlements(t, s, user1()), equateEmpty()); diff != "" {
			t.Errorf("Entitlements(linked, never synced) (-want +got):\n%s", diff)
		}
	})

	t.Run("commit returns what it stored, unaliased", func(t *testing.T) {
		s, _ := fresh(t, open)
		state := twoSubs("cus_1", user1(), T0())
		subj, ents := mustCommit(t, s, state, "evt_1")
		want := &proxy.Entitlements{Subject: user1(), CustomerID: "cus_1", Subscriptions: twoSubs("cus_1", user1(), T0()).Subscriptions, SyncedAt: T0()}
		if subj != user1() {
			t.Errorf("subject = %v, want %v", subj, user1())
		}
		if diff := cmp.Diff(want, ents, equateEmpty()); diff != "" {
			t.Errorf("returned Entitlements (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want, mustEntitlements(t, s, user1()), equateEmpty()); diff != "" {
			t.Errorf("stored Entitlements (-want +got):\n%s", diff)
		}
		// The returned value may live in an LRU: it must not alias the caller's state.
		state.Subscriptions[0].PriceIDs[0] = "changed"
		if ents.Subscriptions[0].PriceIDs[0] != "price_pro" {
			t.Error("returned Entitlements alias the committed state's slices")
		}
		if got := mustEntitlements(t, s, user1()); got.Subscriptions[0].PriceIDs[0] != "price_pro" {
			t.Error("stored Entitlements alias the committed state's slices")
		}
	})

	t.Run("times read back in UTC", func(t *testing.T) {
		s, _ := fresh(t, open)
		zone := time.FixedZone("X", -5*3600)
		state := twoSubs("cus_1", user1(), T0().In(zone))
		_, ents := mustCommit(t, s, state, "")
		for _, got := range []*proxy.Entitlements{ents, mustEntitlements(t, s, user1())} {
			if got.SyncedAt.Location() != time.UTC || got.Subscriptions[0].CurrentPeriodEnd.Location() != time.UTC ||
				!got.Subscriptions[0].CurrentPeriodEnd.Equal(T0().Add(30*24*time.Hour)) {
				t.Errorf("times %v, %v; want the same instants in UTC", got.SyncedAt, got.Subscriptions[0].CurrentPeriodEnd)
			}
		}
	})

	t.Run("organisations are subjects of their own", func(t *testing.T) {
		s, _ := fresh(t, open)
		mustCommit(t, s, twoSubs("cus_3", org1(), T0()), "")
		if got := mustEntitlements(t, s, userSubject("org_1")); got != nil {
			t.Errorf("a user with the org's ID sees %+v", got)
		}
		if got := mustEntitlements(t, s, org1()); got == nil || got.CustomerID != "cus_3" {
			t.Errorf("org_1's entitlements = %+v", got)
		}
	})

	t.Run("past due since survives resyncs", func(t *testing.T) {
		s, _ := fresh(t, open)
		sync := func(at time.Time, status proxy.SubscriptionStatus) time.Time {
			t.Helper()
			state := proxy.CustomerState{CustomerID: "cus_1", Subject: user1(), SyncedAt: at,
				Subscriptions: []proxy.Subscription{{ID: "sub_1", Status: status, Plan: "pro", SyncedAt: at}}}
			_, ents := mustCommit(t, s, state, "")
			stored := mustEntitlements(t, s, user1())
			if diff := cmp.Diff(ents, stored, equateEmpty()); diff != "" {
				t.Fatalf("returned and stored differ (-returned +stored):\n%s", diff)
			}
			return stored.Subscriptions[0].PastDueSince
		}
		day := 24 * time.Hour
		if got := sync(T0(), proxy.StatusPastDue); !got.Equal(T0()) {
			t.Errorf("first past_due sync: PastDueSince = %v, want %v", got, T0())
		}
		if got := sync(T0().Add(day), proxy.StatusPastDue); !got.Equal(T0()) {
			t.Errorf("second past_due sync: PastDueSince = %v, want it kept at %v", got, T0())
		}
		if got := sync(T0().Add(2*day), proxy.StatusActive); !got.IsZero() {
			t.Errorf("after recovery: PastDueSince = %v, want zero", got)
		}
		if got := sync(T0().Add(3*day), proxy.StatusPastDue); !got.Equal(T0().Add(3 * day)) {
			t.Errorf("past_due again: PastDueSince = %v, want %v", got, T0().Add(3*day))
		}
	})

	t.Run("torn reads never show", func(t *testing.T) {
		s, _ := fresh(t, open)
		concurrentCommits(t, s)
	})
}

// concurrentCommits has writers commit three customers while readers read
// them: no read sees half a commit, every event lands and the links agree
// both ways.
func concurrentCommits(t *testing.T, s Store) {
	ctx := t.Context()
	const writers, commits, customers = 6, 10, 3
	var wg, readers sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, writers+4)
	for r := range 4 {
		readers.Go(func() {
			subj := userSubject(fmt.Sprintf("user_%d", r%customers))
			for {
				select {
				case <-done:
					return
				default:
				}
				ents, err := s.Entitlements(ctx, subj)
				if err == nil && ents != nil && len(ents.Subscriptions) != 2 {
					err = fmt.Errorf("torn read: %+v", ents)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for i := range commits {
				c := (w + i) % customers
				state := twoSubs(fmt.Sprintf("cus_%d", c), userSubject(fmt.Sprintf("user_%d", c)), T0().Add(time.Duration(i)*time.Minute))
				if _, _, err := s.CommitCustomer(ctx, state, fmt.Sprintf("evt_%d_%d", w, i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for w := range writers {
		for i := range commits {
			if id := fmt.Sprintf("evt_%d_%d", w, i); !mustProcessed(t, s, id) {
				t.Errorf("%s not processed", id)
			}
		}
	}
	for c := range customers {
		subj := userSubject(fmt.Sprintf("user_%d", c))
		cus, err := s.CustomerOf(ctx, subj)
		if err != nil {
			t.Fatal(err)
		}
		back, ok, err := s.SubjectOf(ctx, cus)
		if err != nil || !ok || back != subj {
			t.Errorf("%s → %s → %v, %v, %v", subj, cus, back, ok, err)
		}
	}
}

// Customers runs the customer half of the stripe.Store suite (and
// gateway.Trials): links both ways, deletions, trials.
func Customers(t *testing.T, open Open) {
	t.Run("links both ways", func(t *testing.T) {
		s, _ := fresh(t, open)
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
		checkNoSubject(t, "cus_unknown")

		// A customer synced before anyone claims it is kept by customer ID.
		noSubject := twoSubs("cus_1", proxy.Subject{}, T0())
		if subj, ents := mustCommit(t, s, noSubject, ""); subj != (proxy.Subject{}) || ents != nil {
			t.Errorf("commit without a subject returned %v, %+v; want zero, nil", subj, ents)
		}
		checkNoSubject(t, "cus_1")
		if got, ok, err := s.StoredCustomer(ctx, "cus_1"); err != nil || !ok || len(got.Subscriptions) != 2 {
			t.Errorf("StoredCustomer(cus_1) = %+v, %v, %v; want its two subscriptions", got, ok, err)
		}

		// The sync learns the subject.
		if subj, _ := mustCommit(t, s, twoSubs("cus_1", user1(), T0()), ""); subj != user1() {
			t.Errorf("subject = %v", subj)
		}
		checkLink(t, user1(), "cus_1")

		// A later sync without a subject keeps the link.
		if subj, ents := mustCommit(t, s, noSubject, ""); subj != user1() || ents == nil || ents.CustomerID != "cus_1" {
			t.Errorf("commit without a subject returned %v, %+v; want the stored link", subj, ents)
		}
		checkLink(t, user1(), "cus_1")

		// The subject moves to another customer: the old customer forgets it.
		must(t, s.LinkCustomer(ctx, user1(), "cus_2"))
		checkLink(t, user1(), "cus_2")
		checkNoSubject(t, "cus_1")
		if ents := mustEntitlements(t, s, user1()); ents == nil || ents.CustomerID != "cus_2" || len(ents.Subscriptions) != 0 {
			t.Errorf("Entitlements(user_1) = %+v; want cus_2 with no subscriptions yet", ents)
		}

		// The customer changes hands: the old subject loses it.
		mustCommit(t, s, twoSubs("cus_2", user2(), T0()), "")
		checkLink(t, user2(), "cus_2")
		checkLink(t, user1(), "")
		if ents := mustEntitlements(t, s, user1()); ents != nil {
			t.Errorf("Entitlements(user_1) = %+v; want nil after its customer moved", ents)
		}

		// Another subject claims the customer: the first loses it, in the
		// listing too.
		must(t, s.LinkCustomer(ctx, user1(), "cus_2"))
		checkLink(t, user1(), "cus_2")
		checkLink(t, user2(), "")
		p, err := s.ListPage(ctx, proxy.UserFilter{Query: "cus_2"})
		if err != nil || !cmp.Equal([]string{"user_1"}, summaryIDs(p.Users)) {
			t.Errorf("search for cus_2 after the relink: %v, %v; want user_1 only", summaryIDs(p.Users), err)
		}
		if ents := mustEntitlements(t, s, user2()); ents != nil {
			t.Errorf("user_2 after losing its customer: %+v; want nil", ents)
		}

		for _, bad := range []proxy.Subject{{Kind: "team", ID: "x"}, {Kind: proxy.SubjectUser}} {
			if err := s.LinkCustomer(ctx, bad, "cus_9"); err == nil {
				t.Errorf("LinkCustomer(%+v) succeeded", bad)
			}
			if _, _, err := s.CommitCustomer(ctx, twoSubs("cus_9", bad, T0()), ""); err == nil {
				t.Errorf("CommitCustomer with subject %+v succeeded", bad)
			}
		}
		if err := s.LinkCustomer(ctx, user1(), ""); err == nil {
			t.Error("LinkCustomer to an empty customer ID succeeded")
		}
		if _, _, err := s.CommitCustomer(ctx, proxy.CustomerState{}, "evt_x"); err == nil {
			t.Error("CommitCustomer without a customer ID succeeded")
		}
		if mustProcessed(t, s, "evt_x") {
			t.Error("a refused commit marked its event")
		}
	})

	t.Run("a customer claimed after its sync", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		mustCommit(t, s, twoSubs("cus_1", proxy.Subject{}, T0()), "")
		must(t, s.LinkCustomer(ctx, user1(), "cus_1"))
		if ents := mustEntitlements(t, s, user1()); ents == nil || len(ents.Subscriptions) != 2 {
			t.Errorf("Entitlements after the link = %+v; want the customer's two subscriptions", ents)
		}
		p, err := s.ListPage(ctx, proxy.UserFilter{Status: "active"})
		if err != nil || !cmp.Equal([]string{"user_1"}, summaryIDs(p.Users)) {
			t.Errorf("active after the link: %v, %v; want user_1", summaryIDs(p.Users), err)
		}
	})

	// Two subjects claim one customer at once (two checkouts, two
	// replicas): one wins, and both directions agree on which.
	t.Run("concurrent relinks agree both ways", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		mustCommit(t, s, twoSubs("cus_1", user1(), T0()), "")
		var wg sync.WaitGroup
		for i := range 20 {
			subject := userSubject(fmt.Sprintf("user_%d", 1+i%4))
			wg.Go(func() {
				var err error
				if i%3 == 0 {
					_, _, err = s.CommitCustomer(ctx, twoSubs("cus_1", subject, T0()), "")
				} else {
					err = s.LinkCustomer(ctx, subject, "cus_1")
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		owner, ok, err := s.SubjectOf(ctx, "cus_1")
		if err != nil || !ok {
			t.Fatalf("SubjectOf(cus_1) = %v, %v, %v", owner, ok, err)
		}
		var linked []string
		for i := 1; i <= 4; i++ {
			subject := userSubject(fmt.Sprintf("user_%d", i))
			c, err := s.CustomerOf(ctx, subject)
			if err != nil {
				t.Fatal(err)
			}
			ents := mustEntitlements(t, s, subject)
			if c == "cus_1" {
				linked = append(linked, subject.ID)
			}
			if (ents != nil) != (subject == owner) {
				t.Errorf("%s: entitlements %+v with cus_1 owned by %s", subject.ID, ents, owner.ID)
			}
		}
		if !cmp.Equal([]string{owner.ID}, linked) {
			t.Errorf("subjects linked to cus_1: %v; want its owner %s alone", linked, owner.ID)
		}
		if p, err := s.ListPage(ctx, proxy.UserFilter{Query: "cus_1"}); err != nil || !cmp.Equal([]string{owner.ID}, summaryIDs(p.Users)) {
			t.Errorf("search for cus_1: %v, %v; want %s", summaryIDs(p.Users), err, owner.ID)
		}
	})

	t.Run("a deleted customer drops its links, keeps its trial", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		mustCommit(t, s, twoSubs("cus_1", user1(), T0()), "evt_1")
		subj, ents := mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_1", Deleted: true, SyncedAt: T0().Add(time.Hour)}, "evt_2")
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
		// Deleting a customer never seen marks the event.
		if subj, ents := mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_ghost", Deleted: true}, "evt_3"); subj != (proxy.Subject{}) || ents != nil {
			t.Errorf("deleting an unknown customer returned %v, %+v", subj, ents)
		}
		if !mustProcessed(t, s, "evt_3") {
			t.Error("event not marked")
		}
	})

	t.Run("trials are remembered for good", func(t *testing.T) {
		s, _ := fresh(t, open)
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
		state := func(at time.Time, sub proxy.Subscription) proxy.CustomerState {
			return proxy.CustomerState{CustomerID: "cus_1", Subject: user1(), SyncedAt: at, Subscriptions: []proxy.Subscription{sub}}
		}
		mustCommit(t, s, state(T0(), proxy.Subscription{ID: "sub_1", Status: proxy.StatusActive}), "")
		if had("cus_1") {
			t.Error("a customer with no trial had one")
		}
		mustCommit(t, s, state(T0(), proxy.Subscription{ID: "sub_1", Status: proxy.StatusTrialing}), "")
		if !had("cus_1") {
			t.Error("trialing not recorded")
		}
		// The trial subscription is gone from Stripe's answer: the fact stays.
		mustCommit(t, s, state(T0().Add(time.Hour), proxy.Subscription{ID: "sub_2", Status: proxy.StatusActive}), "")
		if !had("cus_1") {
			t.Error("HadTrial lost by a later sync without trials")
		}
		// A canceled subscription that once had a trial counts too.
		mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_2", SyncedAt: T0(),
			Subscriptions: []proxy.Subscription{{ID: "sub_3", Status: proxy.StatusCanceled, TrialEnd: T0()}}}, "")
		if !had("cus_2") {
			t.Error("TrialEnd not recorded as a trial")
		}
	})

	t.Run("stored customer for the reconcile", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		if _, ok, err := s.StoredCustomer(ctx, "cus_1"); err != nil || ok {
			t.Errorf("StoredCustomer(unknown) ok = %v, %v", ok, err)
		}
		mustCommit(t, s, twoSubs("cus_1", user1(), T0()), "")
		got, ok, err := s.StoredCustomer(ctx, "cus_1")
		if err != nil || !ok {
			t.Fatalf("StoredCustomer = %v, %v", ok, err)
		}
		want := twoSubs("cus_1", user1(), T0())
		if got.CustomerID != "cus_1" || got.Subject != user1() || got.Deleted ||
			!cmp.Equal(want.Subscriptions, got.Subscriptions, equateEmpty()) {
			t.Errorf("StoredCustomer (-want +got):\n%s", cmp.Diff(want, got, equateEmpty()))
		}
		mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_1", Deleted: true}, "")
		if got, ok, err := s.StoredCustomer(ctx, "cus_1"); err != nil || ok && (!got.Deleted || len(got.Subscriptions) != 0) {
			t.Errorf("StoredCustomer after delete = %+v, %v, %v; want nothing, or a tombstone", got, ok, err)
		}
	})
}

// Events runs the event and cursor half of the stripe.Store suite.
func Events(t *testing.T, open Open) {
	t.Run("marked once, refused empty", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		if mustProcessed(t, s, "evt_1") {
			t.Error("unknown event processed")
		}
		must(t, s.MarkEvent(ctx, "evt_1"))
		must(t, s.MarkEvent(ctx, "evt_1")) // a retry of Stripe's
		mustCommit(t, s, twoSubs("cus_1", user1(), T0()), "evt_2")
		if err := s.MarkEvent(ctx, ""); err == nil {
			t.Error(`MarkEvent("") succeeded`)
		}
		for id, want := range map[string]bool{"evt_1": true, "evt_2": true, "evt_3": false, "evt_": false, "": false} {
			if got := mustProcessed(t, s, id); got != want {
				t.Errorf("EventProcessed(%q) = %v, want %v", id, got, want)
			}
		}
	})

	t.Run("a duplicate event still stores the state", func(t *testing.T) {
		s, _ := fresh(t, open)
		mustCommit(t, s, twoSubs("cus_1", user1(), T0()), "evt_1")
		later := twoSubs("cus_1", user1(), T0().Add(time.Hour))
		later.Subscriptions[0].Status = proxy.StatusCanceled
		_, ents := mustCommit(t, s, later, "evt_1")
		if ents.Subscriptions[0].Status != proxy.StatusCanceled || mustEntitlements(t, s, user1()).Subscriptions[0].Status != proxy.StatusCanceled {
			t.Errorf("a commit with a processed event ID did not store its fresh state: %+v", ents)
		}
	})

	// The same event delivered twice at once (two webhook deliveries, or
	// two replicas) commits once: one history entry per change, the
	// counters counted once. So do several events of one customer synced
	// at once (its subscription's update and its invoice's payment), and
	// syncs without an event (the reconcile's).
	for _, tc := range []struct {
		name  string
		event func(i int) string
	}{
		{"concurrent duplicates commit once", func(int) string { return "evt_1" }},
		{"concurrent events of one customer count once", func(i int) string {
			if i%4 == 3 {
				return ""
			}
			return fmt.Sprintf("evt_%d", 1+i)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { concurrentSameState(t, open, tc.event) })
	}

	// A request gone (a client away, a shutdown) starts no write.
	t.Run("a canceled context writes nothing", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, _, err := s.CommitCustomer(ctx, twoSubs("cus_1", user1(), T0()), "evt_1"); !errors.Is(err, context.Canceled) {
			t.Errorf("CommitCustomer err = %v; want context.Canceled", err)
		}
		if err := s.MarkDirty(ctx, "cus_2", "evt_2"); !errors.Is(err, context.Canceled) {
			t.Errorf("MarkDirty err = %v; want context.Canceled", err)
		}
		if _, err := s.Entitlements(ctx, user1()); !errors.Is(err, context.Canceled) {
			t.Errorf("Entitlements err = %v; want context.Canceled", err)
		}
		for _, id := range []string{"evt_1", "evt_2"} {
			if mustProcessed(t, s, id) {
				t.Errorf("%s marked by a canceled write", id)
			}
		}
		if got := mustEntitlements(t, s, user1()); got != nil {
			t.Errorf("a canceled commit stored %+v", got)
		}
		if b, _ := s.DirtyBacklog(t.Context()); b.Customers != 0 {
			t.Errorf("a canceled mark stored: %+v", b)
		}
	})

	t.Run("pruned oldest first, in batches", func(t *testing.T) { eventPruning(t, open) })

	t.Run("cursors", func(t *testing.T) {
		s, _ := fresh(t, open)
		ctx := t.Context()
		if v, err := s.Cursor(ctx, "sync_all"); err != nil || v != "" {
			t.Errorf("unset cursor = %q, %v", v, err)
		}
		for _, v := range []string{"sub_1", "sub_2", ""} {
			must(t, s.SetCursor(ctx, "sync_all", v))
			must(t, s.SetCursor(ctx, "events", "evt_"+v))
			if got, err := s.Cursor(ctx, "sync_all"); err != nil || got != v {
				t.Errorf("Cursor = %q, %v; want %q", got, err, v)
			}
		}
		if got, _ := s.Cursor(ctx, "events"); got != "evt_" {
			t.Errorf("another cursor = %q; want its own value", got)
		}
	})

}

// concurrentSameState commits one state of cus_1 from several goroutines
// at once, with event(i) as their event IDs, and checks it counted once.
func concurrentSameState(t *testing.T, open Open, event func(i int) string) {
	s, _ := fresh(t, open)
	ctx := t.Context()
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if _, _, err := s.CommitCustomer(ctx, twoSubs("cus_1", user1(), T0()), event(i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if h := mustDetail(t, s, user1()).History; len(h) != 2 {
		t.Errorf("history after %d concurrent commits of one state: %d entries, want 2 (one per subscription)", n, len(h))
	}
	d, err := s.Dashboard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Active != 1 || d.Trialing != 1 {
		t.Errorf("dashboard after %d concurrent commits of one state: active %d trialing %d; want 1 and 1", n, d.Active, d.Trialing)
	}
	p, err := s.ListPage(ctx, proxy.UserFilter{})
	if err != nil || p.Total != 1 || len(p.Users) != 1 {
		t.Errorf("listing: %d users, total %d, %v; want user_1 once", len(p.Users), p.Total, err)
	}
	for i := range n {
		if id := event(i); id != "" && !mustProcessed(t, s, id) {
			t.Errorf("%s not processed", id)
		}
	}
}

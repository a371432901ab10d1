package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// Comps runs the comps' part of the admin.Store suite: a comp grants
// until it expires or is revoked, beside the customer's subscriptions.
func Comps(t *testing.T, open Open) {
	t.Run("grant until expiry and revocation", func(t *testing.T) {
		s, clk := fresh(t, open)
		ctx := t.Context()
		comp := proxy.Comp{ID: "comp_1", Subject: user1(), Plan: "pro", ExpiresAt: T0().Add(24 * time.Hour), By: "ada", Reason: "conference speaker"}
		mustPutComp(t, s, comp)
		stored := comp
		stored.CreatedAt = T0() // the store's now
		ents := mustEntitlements(t, s, user1())
		want := &proxy.Entitlements{Subject: user1(), Comps: []proxy.Comp{stored}}
		if diff := cmp.Diff(want, ents, equateEmpty()); diff != "" {
			t.Errorf("Entitlements with only a comp (-want +got):\n%s", diff)
		}
		if !grants(ents, "pro", T0().Add(time.Hour)) || grants(ents, "pro", T0().Add(24*time.Hour)) {
			t.Error("the comp does not grant pro exactly until its expiry")
		}
		if got := mustEntitlements(t, s, user2()); got != nil {
			t.Errorf("user_2 got user_1's comp: %+v", got)
		}
		if got, err := s.Comp(ctx, "comp_1"); err != nil || !cmp.Equal(stored, got) {
			t.Errorf("Comp(comp_1) = %+v, %v; want %+v", got, err, stored)
		}

		// Alongside a customer's subscriptions, and written through by commits.
		_, committed := mustCommit(t, s, twoSubs("cus_1", user1(), T0()), "")
		if len(committed.Subscriptions) != 2 || !cmp.Equal(committed.Comps, []proxy.Comp{stored}) {
			t.Errorf("CommitCustomer returned %+v; want the two subscriptions and the comp", committed)
		}
		// The customer is deleted in Stripe: the comp still stands.
		_, afterDelete := mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_1", Deleted: true}, "")
		if !grants(afterDelete, "pro", T0()) || len(afterDelete.Subscriptions) != 0 || len(afterDelete.Comps) != 1 {
			t.Errorf("CommitCustomer(deleted) returned %+v; want the comp alone", afterDelete)
		}

		// An expired comp stays on record: it is the domain that says it
		// grants nothing any more, whatever the store's clock.
		clk.Set(T0().Add(25 * time.Hour))
		if got := mustEntitlements(t, s, user1()); got == nil || len(got.Comps) != 1 || grants(got, "pro", clk.Now()) {
			t.Errorf("Entitlements after the comp expired = %+v; want the comp on record, granting nothing", got)
		}
		clk.Set(T0().Add(time.Hour))

		// Revocation removes it at once, once, and is kept for the record.
		must(t, s.RevokeComp(ctx, "comp_1", "grace", "left the programme"))
		if got := mustEntitlements(t, s, user1()); grants(got, "pro", clk.Now()) {
			t.Errorf("Entitlements after revocation = %+v; want no comp granting", got)
		}
		clk.Set(T0().Add(2 * time.Hour))
		must(t, s.RevokeComp(ctx, "comp_1", "someone", "again"))
		revoked := stored
		revoked.Revoked, revoked.RevokedAt, revoked.RevokedBy, revoked.RevokeReason = true, T0().Add(time.Hour), "grace", "left the programme"
		if got, err := s.Comp(ctx, "comp_1"); err != nil || !cmp.Equal(revoked, got) {
			t.Errorf("Comp after two revocations (-want +got):\n%s (%v)", cmp.Diff(revoked, got), err)
		}
		if d := mustDetail(t, s, user1()); !cmp.Equal([]proxy.Comp{revoked}, d.Comps) {
			t.Errorf("the detail's comps (-want +got):\n%s", cmp.Diff([]proxy.Comp{revoked}, d.Comps))
		}
		if err := s.RevokeComp(ctx, "comp_nope", "x", "y"); !errors.Is(err, proxy.ErrNotFound) {
			t.Errorf("RevokeComp(unknown) err = %v; want ErrNotFound", err)
		}
		if _, err := s.Comp(ctx, "comp_nope"); !errors.Is(err, proxy.ErrNotFound) {
			t.Errorf("Comp(unknown) err = %v; want ErrNotFound", err)
		}
	})

	t.Run("oldest first, per subject", func(t *testing.T) {
		s, clk := fresh(t, open)
		mustPutComp(t, s, proxy.Comp{ID: "comp_b", Subject: org1(), Plan: "team", ExpiresAt: T0().Add(time.Hour)})
		clk.Set(T0().Add(time.Minute))
		mustPutComp(t, s, proxy.Comp{ID: "comp_a", Subject: org1(), Plan: "pro", ExpiresAt: T0().Add(time.Hour)})
		mustPutComp(t, s, proxy.Comp{ID: "comp_c", Subject: user1(), Plan: "pro", ExpiresAt: T0().Add(time.Hour)})
		var ids []string
		for _, c := range mustEntitlements(t, s, org1()).Comps {
			ids = append(ids, c.ID)
		}
		if !cmp.Equal([]string{"comp_b", "comp_a"}, ids) {
			t.Errorf("org_1's comps = %v; want [comp_b comp_a], oldest first", ids)
		}
	})

	t.Run("validates", func(t *testing.T) {
		s, _ := fresh(t, open)
		mustPutComp(t, s, proxy.Comp{ID: "comp_1", Subject: org1(), Plan: "team", ExpiresAt: T0()})
		for name, c := range map[string]proxy.Comp{
			"no id":         {Subject: user1(), Plan: "pro", ExpiresAt: T0()},
			"no plan":       {ID: "comp_2", Subject: user1(), ExpiresAt: T0()},
			"no expiry":     {ID: "comp_2", Subject: user1(), Plan: "pro"},
			"no subject":    {ID: "comp_2", Plan: "pro", ExpiresAt: T0()},
			"other subject": {ID: "comp_1", Subject: user1(), Plan: "team", ExpiresAt: T0()},
		} {
			if err := s.PutComp(t.Context(), c); err == nil {
				t.Errorf("PutComp(%s) succeeded", name)
			}
		}
		if got := mustEntitlements(t, s, user1()); got != nil {
			t.Errorf("a refused comp was stored: %+v", got)
		}
	})
}

// Audit runs the audit trail's part of the admin.Store suite.
func Audit(t *testing.T, open Open) {
	s, clk := fresh(t, open)
	ctx := t.Context()
	must(t, s.PutUser(ctx, proxy.User{ID: "user_1"}))
	if d := mustDetail(t, s, user1()); len(d.Audit) != 0 {
		t.Fatalf("audit of a new store: %+v", d.Audit)
	}
	entries := []proxy.AuditEntry{
		{At: T0(), Actor: "ada", Action: "comp.granted", Subject: user1(), Detail: "pro"},
		{At: T0().Add(time.Minute), Actor: "admin-token", Action: "sync.requested", Detail: "all"},
		{At: T0().Add(2 * time.Minute), Actor: "ada", Action: "comp.revoked", Subject: user1(), Detail: "comp_1"},
		{At: T0().Add(2 * time.Minute), Actor: "ada", Action: "sync.requested", Subject: org1(), Detail: "cus_9"},
		{At: T0().Add(2 * time.Minute), Actor: "bob", Action: "sync.requested", Subject: user1(), Detail: "same instant, later"},
	}
	for _, e := range entries {
		must(t, s.Audit(ctx, e))
	}
	clk.Set(T0().Add(time.Hour))
	must(t, s.Audit(ctx, proxy.AuditEntry{Actor: "cy", Action: "backup.downloaded", Subject: user1()})) // no time: the store's now
	if err := s.Audit(ctx, proxy.AuditEntry{Actor: "x", Subject: user1()}); err == nil {
		t.Error("Audit without an action succeeded")
	}
	if err := s.Audit(ctx, proxy.AuditEntry{Actor: "x", Action: "comp.granted", Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "org_1"}}); err == nil {
		t.Error("Audit about an invalid subject succeeded")
	}
	mustPutComp(t, s, proxy.Comp{ID: "comp_o", Subject: org1(), Plan: "team", ExpiresAt: T0().Add(time.Hour)}) // lists org_1
	now := proxy.AuditEntry{At: T0().Add(time.Hour), Actor: "cy", Action: "backup.downloaded", Subject: user1()}
	detail := func(subject proxy.Subject, limit int) []proxy.AuditEntry {
		t.Helper()
		d, err := s.UserDetail(ctx, subject, limit)
		if err != nil {
			t.Fatal(err)
		}
		return d.Audit
	}
	// Newest first; at one instant, the later written first.
	if diff := cmp.Diff([]proxy.AuditEntry{now, entries[4], entries[2], entries[0]}, detail(user1(), 10)); diff != "" {
		t.Errorf("user_1's audit (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]proxy.AuditEntry{now, entries[4]}, detail(user1(), 2)); diff != "" {
		t.Errorf("user_1's audit, limit 2 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]proxy.AuditEntry{entries[3]}, detail(org1(), 10)); diff != "" {
		t.Errorf("org_1's audit (-want +got):\n%s", diff)
	}
}

// History runs the subscription history's part of the admin.Store suite
// (UserDetail.History): an entry per change, newest first.
func History(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	must(t, s.PutUser(t.Context(), proxy.User{ID: "user_1"}))
	if d := mustDetail(t, s, user1()); len(d.History) != 0 {
		t.Fatalf("History before any commit = %+v", d.History)
	}
	state := twoSubs("cus_1", user1(), T0())
	mustCommit(t, s, state, "")
	// The same state again: nothing changed, nothing recorded.
	again := twoSubs("cus_1", user1(), T0())
	again.SyncedAt = T0().Add(time.Hour)
	mustCommit(t, s, again, "")
	// The active one goes past due; the trial converts and renews.
	t2 := T0().Add(2 * time.Hour)
	changed := twoSubs("cus_1", user1(), T0())
	changed.SyncedAt = t2
	changed.Subscriptions[0].Status = proxy.StatusPastDue
	changed.Subscriptions[1].Status = proxy.StatusActive
	changed.Subscriptions[1].CurrentPeriodEnd = t2.Add(30 * 24 * time.Hour)
	mustCommit(t, s, changed, "")
	// The first is no longer set to cancel at period end: a change too.
	t3 := T0().Add(3 * time.Hour)
	cancel := twoSubs("cus_1", user1(), T0())
	cancel.SyncedAt = t3
	cancel.Subscriptions = cancel.Subscriptions[:1]
	cancel.Subscriptions[0].Status = proxy.StatusPastDue
	cancel.Subscriptions[0].CancelAtPeriodEnd = false
	mustCommit(t, s, cancel, "")

	sa, sb := state.Subscriptions[0], state.Subscriptions[1]
	want := []proxy.HistoryEntry{
		{At: t3, SubscriptionID: sa.ID, Plan: "pro", Status: proxy.StatusPastDue, PeriodEnd: sa.CurrentPeriodEnd},
		{At: t2, SubscriptionID: sb.ID, Plan: "team", Status: proxy.StatusActive, PeriodEnd: t2.Add(30 * 24 * time.Hour)},
		{At: t2, SubscriptionID: sa.ID, Plan: "pro", Status: proxy.StatusPastDue, PeriodEnd: sa.CurrentPeriodEnd, CancelAtPeriodEnd: true},
		{At: T0(), SubscriptionID: sb.ID, Plan: "team", Status: proxy.StatusTrialing, PeriodEnd: sb.CurrentPeriodEnd},
		{At: T0(), SubscriptionID: sa.ID, Plan: "pro", Status: proxy.StatusActive, PeriodEnd: sa.CurrentPeriodEnd, CancelAtPeriodEnd: true},
	}
	if diff := cmp.Diff(want, mustDetail(t, s, user1()).History); diff != "" {
		t.Errorf("History (-want +got):\n%s", diff)
	}
	d, err := s.UserDetail(t.Context(), user1(), 2)
	if err != nil || !cmp.Equal(want[:2], d.History) {
		t.Errorf("History, limit 2 = %+v, %v; want the newest two", d.History, err)
	}
	// Another customer's history is its own, even with a prefix in common.
	mustCommit(t, s, twoSubs("cus_10", user2(), T0()), "")
	mustCommit(t, s, twoSubs("cus_0", userSubject("user_3"), T0()), "")
	if got := mustDetail(t, s, user1()).History; len(got) != len(want) {
		t.Errorf("cus_1's history has %d entries after other customers' commits; want %d", len(got), len(want))
	}
	if got := mustDetail(t, s, user2()).History; len(got) != 2 {
		t.Errorf("cus_10's history has %d entries; want 2", len(got))
	}
}

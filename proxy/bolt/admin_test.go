package bolt

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// newClockStore opens a fresh store whose clock is the returned one (at t0).
func newClockStore(tb testing.TB) (*Store, string, *clock) {
	tb.Helper()
	clk := &clock{now: t0()}
	path := filepath.Join(tb.TempDir(), "tollgate.db")
	return openClock(tb, path, clk), path, clk
}

func openClock(tb testing.TB, path string, clk *clock) *Store {
	tb.Helper()
	s, err := Open(path, Options{Timeout: 100 * time.Millisecond, Now: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func mustPutComp(tb testing.TB, s *Store, c proxy.Comp) {
	tb.Helper()
	if err := s.PutComp(tb.Context(), c); err != nil {
		tb.Fatal(err)
	}
}

// grants reports whether anything ents holds grants plan at now, as the
// decision sees it (proxy.Entitlements.All).
func grants(ents *proxy.Entitlements, plan string, now time.Time) bool {
	subs := ents.All(now)
	for i := range subs {
		if subs[i].Plan == plan && proxy.Grants(&subs[i], proxy.AccessPolicy{}, now) {
			return true
		}
	}
	return false
}

func TestComps_GrantUntilExpiryAndRevocation(t *testing.T) {
	s, path, clk := newClockStore(t)
	ctx := t.Context()
	if got := mustEntitlements(t, s, user1()); got != nil {
		t.Fatalf("Entitlements before any comp = %+v; want nil", got)
	}
	comp := proxy.Comp{ID: "comp_1", Subject: user1(), Plan: "pro", ExpiresAt: t0().Add(24 * time.Hour), By: "ada", Reason: "conference speaker"}
	mustPutComp(t, s, comp)

	stored := comp
	stored.CreatedAt = t0()
	ents := mustEntitlements(t, s, user1())
	want := &proxy.Entitlements{Subject: user1(), Comps: []proxy.Comp{stored}}
	if diff := cmp.Diff(ents, want); diff != "" {
		t.Errorf("Entitlements with only a comp (-got +want):\n%s", diff)
	}
	if !grants(ents, "pro", t0().Add(time.Hour)) {
		t.Error("the comp does not grant pro before its expiry")
	}
	if grants(ents, "pro", t0().Add(24*time.Hour)) {
		t.Error("the comp still grants pro at its expiry")
	}
	if got := mustEntitlements(t, s, user2()); got != nil {
		t.Errorf("user_2 got user_1's comp: %+v", got)
	}

	// Alongside a customer's subscriptions, and written through by commits.
	state := twoSubs("cus_1", user1(), t0())
	_, committed := mustCommit(t, s, state, "")
	if len(committed.Subscriptions) != 2 || !cmp.Equal(committed.Comps, []proxy.Comp{stored}) {
		t.Errorf("CommitCustomer returned %+v; want the two subscriptions from Stripe and the comp", committed)
	}
	if diff := cmp.Diff(mustEntitlements(t, s, user1()), committed); diff != "" {
		t.Errorf("stored and returned Entitlements differ (-stored +returned):\n%s", diff)
	}
	// The customer is deleted in Stripe: the comp still stands.
	_, afterDelete := mustCommit(t, s, proxy.CustomerState{CustomerID: "cus_1", Deleted: true}, "")
	if !grants(afterDelete, "pro", t0()) || len(afterDelete.Subscriptions) != 0 || len(afterDelete.Comps) != 1 {
		t.Errorf("CommitCustomer(deleted) returned %+v; want the comp alone", afterDelete)
	}

	// An expired comp stays on record and in the Entitlements; it is the
	// domain that says it grants nothing any more, whatever the store's
	// clock (a cached copy expires on time too).
	clk.Set(t0().Add(25 * time.Hour))
	if got := mustEntitlements(t, s, user1()); got == nil || len(got.Comps) != 1 || grants(got, "pro", t0().Add(25*time.Hour)) {
		t.Errorf("Entitlements after the comp expired = %+v; want the comp on record, granting nothing", got)
	}
	clk.Set(t0().Add(time.Hour))

	// Revocation removes it at once, and is kept for the record.
	if err := s.RevokeComp(ctx, "comp_1", "grace", "left the programme"); err != nil {
		t.Fatal(err)
	}
	if got := mustEntitlements(t, s, user1()); grants(got, "pro", t0().Add(time.Hour)) {
		t.Errorf("Entitlements after revocation = %+v; want no comp", got)
	}
	if err := s.RevokeComp(ctx, "comp_1", "someone", "again"); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	if err := s.RevokeComp(ctx, "comp_nope", "x", "y"); !errors.Is(err, proxy.ErrNotFound) {
		t.Errorf("RevokeComp(unknown) err = %v; want ErrNotFound", err)
	}
	if _, err := s.Comp(ctx, "comp_nope"); !errors.Is(err, proxy.ErrNotFound) {
		t.Errorf("Comp(unknown) err = %v; want ErrNotFound", err)
	}

	// Everything survives a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openClock(t, path, clk)
	comps, err := s.Comps(ctx, user1())
	if err != nil {
		t.Fatal(err)
	}
	wantComp := stored
	wantComp.Revoked, wantComp.RevokedAt, wantComp.RevokedBy, wantComp.RevokeReason = true, t0().Add(time.Hour), "grace", "left the programme"
	if diff := cmp.Diff(comps, []proxy.Comp{wantComp}); diff != "" {
		t.Errorf("Comps after reopen (-got +want):\n%s", diff)
	}
	if got, err := s.Comp(ctx, "comp_1"); err != nil || !cmp.Equal(got, wantComp) {
		t.Errorf("Comp(comp_1) = %+v, %v; want %+v", got, err, wantComp)
	}
}

func TestAudit(t *testing.T) {
	s, path, _ := newClockStore(t)
	ctx := t.Context()
	entries := []proxy.AuditEntry{
		{At: t0(), Actor: "ada", Action: "comp.granted", Subject: user1(), Detail: "pro"},
		{At: t0().Add(time.Minute), Actor: "admin-token", Action: "sync.requested", Detail: "all"},
		{At: t0().Add(2 * time.Minute), Actor: "ada", Action: "comp.revoked", Subject: user1(), Detail: "comp_1"},
		{At: t0().Add(2 * time.Minute), Actor: "ada", Action: "sync.requested", Subject: org1(), Detail: "cus_9"},
	}
	for _, e := range entries {
		if err := s.Audit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Audit(ctx, proxy.AuditEntry{Actor: "x"}); err == nil {
		t.Error("Audit without an action succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path)
	log := func(subject proxy.Subject, limit int) []proxy.AuditEntry {
		t.Helper()
		got, err := s.AuditLog(ctx, subject, limit)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if diff := cmp.Diff(log(user1(), 0), []proxy.AuditEntry{entries[2], entries[0]}); diff != "" {
		t.Errorf("AuditLog(user_1) (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(log(proxy.Subject{}, 3), []proxy.AuditEntry{entries[3], entries[2], entries[1]}); diff != "" {
		t.Errorf("AuditLog(all, 3) (-got +want):\n%s", diff)
	}
	if got := log(user2(), 0); len(got) != 0 {
		t.Errorf("AuditLog(user_2) = %+v; want none", got)
	}
}

func TestHistory_OnChange(t *testing.T) {
	s, path, _ := newClockStore(t)
	ctx := t.Context()
	if h, err := s.History(ctx, "cus_1", 0); err != nil || len(h) != 0 {
		t.Fatalf("History before any commit = %+v, %v", h, err)
	}
	state := twoSubs("cus_1", user1(), t0())
	mustCommit(t, s, state, "")
	// The same state again: nothing changed, nothing recorded.
	again := twoSubs("cus_1", user1(), t0())
	again.SyncedAt = t0().Add(time.Hour)
	mustCommit(t, s, again, "")
	// The active one goes past due; the trial converts and renews.
	t2 := t0().Add(2 * time.Hour)
	changed := twoSubs("cus_1", user1(), t0())
	changed.SyncedAt = t2
	changed.Subscriptions[0].Status = proxy.StatusPastDue
	changed.Subscriptions[1].Status = proxy.StatusActive
	changed.Subscriptions[1].CurrentPeriodEnd = t2.Add(30 * 24 * time.Hour)
	mustCommit(t, s, changed, "")
	// The first one is no longer set to cancel at period end: a change too.
	t3 := t0().Add(3 * time.Hour)
	cancel := twoSubs("cus_1", user1(), t0())
	cancel.SyncedAt = t3
	cancel.Subscriptions = cancel.Subscriptions[:1]
	cancel.Subscriptions[0].Status = proxy.StatusPastDue
	cancel.Subscriptions[0].CancelAtPeriodEnd = false
	mustCommit(t, s, cancel, "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path)

	sa, sb := state.Subscriptions[0], state.Subscriptions[1]
	want := []proxy.HistoryEntry{
		{At: t3, SubscriptionID: sa.ID, Plan: "pro", Status: proxy.StatusPastDue, PeriodEnd: sa.CurrentPeriodEnd},
		{At: t2, SubscriptionID: sb.ID, Plan: "team", Status: proxy.StatusActive, PeriodEnd: t2.Add(30 * 24 * time.Hour)},
		{At: t2, SubscriptionID: sa.ID, Plan: "pro", Status: proxy.StatusPastDue, PeriodEnd: sa.CurrentPeriodEnd, CancelAtPeriodEnd: true},
		{At: t0(), SubscriptionID: sb.ID, Plan: "team", Status: proxy.StatusTrialing, PeriodEnd: sb.CurrentPeriodEnd},
		{At: t0(), SubscriptionID: sa.ID, Plan: "pro", Status: proxy.StatusActive, PeriodEnd: sa.CurrentPeriodEnd, CancelAtPeriodEnd: true},
	}
	got, err := s.History(ctx, "cus_1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("History (-got +want):\n%s", diff)
	}
	if got, _ := s.History(ctx, "cus_1", 2); !cmp.Equal(got, want[:2]) {
		t.Errorf("History(limit 2) = %+v; want the newest two", got)
	}
	// Another customer's history is its own, even with a prefix in common.
	mustCommit(t, s, twoSubs("cus_10", user2(), t0()), "")
	mustCommit(t, s, twoSubs("cus_0", proxy.Subject{Kind: proxy.SubjectUser, ID: "user_3"}, t0()), "")
	if got, _ := s.History(ctx, "cus_1", 0); len(got) != len(want) {
		t.Errorf("History(cus_1) has %d entries after other customers' commits; want %d", len(got), len(want))
	}
	if got, _ := s.History(ctx, "cus_10", 0); len(got) != 2 {
		t.Errorf("History(cus_10) has %d entries; want 2", len(got))
	}
}

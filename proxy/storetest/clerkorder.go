package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// ClerkOrder checks that a store orders each Clerk object's webhook
// messages by Clerk's time (proxy.ClerkVersion.Admit), keeps the version
// per object, and keeps a deletion's tombstone.
func ClerkOrder(t *testing.T, open Open) {
	s := open(t, T0)
	ctx := t.Context()
	at := func(ms int) time.Time { return time.UnixMilli(1_760_000_000_000 + int64(ms)) }
	member := proxy.ClerkMembershipKey("org_1", "user_1")
	steps := []struct {
		key     string
		at      time.Time
		deleted bool
		want    bool
	}{
		{member, at(10), false, true},                                     // created
		{member, at(20), false, true},                                     // demoted
		{member, at(10), false, false},                                    // the old promotion, resent
		{member, at(20), false, true},                                     // the demotion again: idempotent
		{proxy.ClerkMembershipKey("org_1", "user_2"), at(5), false, true}, // another object
		{member, at(30), true, true},                                      // deleted
		{member, at(20), false, false},                                    // an older update cannot resurrect it
		{member, at(30), false, false},                                    // nor one as old
		{member, at(25), true, true},                                      // a deletion always applies
		{member, at(29), false, false},                                    // the tombstone kept its later time
		{member, at(40), false, true},                                     // rejoined
		{proxy.ClerkUserKey("user_1"), at(1), false, true},
		{proxy.ClerkOrgKey("user_1"), at(0), false, true}, // kinds do not share versions
		{proxy.ClerkUserKey("user_1"), time.Time{}, false, false},
	}
	for i, st := range steps {
		got, err := s.OrderClerk(ctx, st.key, st.at, st.deleted)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got != st.want {
			t.Errorf("step %d: OrderClerk(%s, %d, deleted %v) = %v, want %v", i, st.key, st.at.UnixMilli(), st.deleted, got, st.want)
		}
	}
}

// ClerkOrderLocker is what ClerkOrderLock checks (clerk.OrderStore's lock).
type ClerkOrderLocker interface {
	LockClerkOrder(ctx context.Context) (unlock func(), err error)
}

// ClerkOrderLock checks that a and b, two handles on one store (the same
// store twice for a store one process holds, two replicas' stores on one
// database for a shared one), share LockClerkOrder: while a holds it, b
// waits; a waiter whose context ends holds nothing; once a unlocks, b gets
// it.
func ClerkOrderLock(t *testing.T, a, b ClerkOrderLocker) {
	ctx := t.Context()
	unlockA, err := a.LockClerkOrder(ctx)
	if err != nil {
		t.Fatalf("a: %v", err)
	}
	// While a holds it, b cannot get it. (Had b got it, the lock would
	// not be shared: the bound only makes the test end.)
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	unlockB, err := b.LockClerkOrder(wctx)
	cancel()
	if err == nil {
		unlockB()
		t.Fatal("b got the lock while a held it")
	}
	got := make(chan error, 1)
	go func() {
		unlock, err := b.LockClerkOrder(ctx)
		if err == nil {
			unlock()
		}
		got <- err
	}()
	unlockA()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("b, after a unlocked: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b still waits 10 s after a unlocked")
	}
	// Free again for a: b's unlock and the timed-out wait hold nothing.
	unlockA, err = a.LockClerkOrder(ctx)
	if err != nil {
		t.Fatalf("a again: %v", err)
	}
	unlockA()
}

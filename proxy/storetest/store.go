package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/admin"
	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/gateway"
	"github.com/tollgate/tollgate/proxy/stripe"
)

// Store is every interface a store meets for its consumers
// (docs/ARCHITECTURE.md, "Where to add… A store"), and RecordSeen, what
// the last-seen batcher (proxy.SeenRecorder) writes with. A new store
// runs All against it.
type Store interface {
	proxy.EntitlementSource
	proxy.RevocationStore
	proxy.Directory
	proxy.APIKeyStore
	stripe.Store
	admin.Store
	clerk.UserStore
	clerk.OrgStore
	clerk.OrderStore
	gateway.AdminStore
	gateway.Trials
	gateway.Orgs
	// RecordSeen records a batch of sightings (user ID → when): first
	// seen is the earliest, last seen only moves forward; IDs that are
	// not user IDs are ignored.
	RecordSeen(ctx context.Context, seen map[string]time.Time) error
}

// Open returns a fresh, empty store whose clock is now (the suite moves
// it): every "now" the store takes for itself (processed-at, marked-at,
// a comp's creation, the listing's and the dashboard's present) must be
// read from it. The store is closed when t ends.
type Open func(t *testing.T, now func() time.Time) Store

// All runs every suite of the package against stores made by open.
func All(t *testing.T, open Open) {
	t.Run("APIKeys", func(t *testing.T) {
		APIKeys(t, func(t *testing.T) proxy.APIKeyStore { return open(t, T0) })
	})
	t.Run("Entitlements", func(t *testing.T) { Entitlements(t, open) })
	t.Run("Customers", func(t *testing.T) { Customers(t, open) })
	t.Run("Events", func(t *testing.T) { Events(t, open) })
	t.Run("Dirty", func(t *testing.T) { Dirty(t, open) })
	t.Run("Revocations", func(t *testing.T) { Revocations(t, open) })
	t.Run("Users", func(t *testing.T) { Users(t, open) })
	t.Run("Orgs", func(t *testing.T) { Orgs(t, open) })
	t.Run("ClerkOrder", func(t *testing.T) { ClerkOrder(t, open) })
	t.Run("Comps", func(t *testing.T) { Comps(t, open) })
	t.Run("Audit", func(t *testing.T) { Audit(t, open) })
	t.Run("History", func(t *testing.T) { History(t, open) })
	t.Run("ListUsers", func(t *testing.T) { ListUsers(t, open) })
	t.Run("ListPage", func(t *testing.T) { ListPage(t, open) })
	t.Run("Dashboard", func(t *testing.T) { Dashboard(t, open) })
}

// T0 is the suite's epoch, the clock's start.
func T0() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// fresh opens an empty store on a clock at T0.
func fresh(t *testing.T, open Open) (Store, *Clock) {
	t.Helper()
	clk := &Clock{t: T0()}
	return open(t, clk.Now), clk
}

func userSubject(id string) proxy.Subject { return proxy.Subject{Kind: proxy.SubjectUser, ID: id} }
func orgSubject(id string) proxy.Subject  { return proxy.Subject{Kind: proxy.SubjectOrg, ID: id} }

func user1() proxy.Subject { return userSubject("user_1") }
func user2() proxy.Subject { return userSubject("user_2") }
func org1() proxy.Subject  { return orgSubject("org_1") }

// equateEmpty: a nil and an empty slice read back the same.
func equateEmpty() cmp.Option { return cmpopts.EquateEmpty() }

// twoSubs is a customer with an active and a trialing subscription.
func twoSubs(customerID string, subject proxy.Subject, at time.Time) proxy.CustomerState {
	return proxy.CustomerState{
		CustomerID: customerID,
		Subject:    subject,
		Email:      "ada@example.com",
		SyncedAt:   at,
		Subscriptions: []proxy.Subscription{
			{ID: "sub_a_" + customerID, CustomerID: customerID, Status: proxy.StatusActive, PriceIDs: []string{"price_pro", "price_seat"},
				Plan: "pro", CurrentPeriodEnd: at.Add(30 * 24 * time.Hour), CancelAtPeriodEnd: true, SyncedAt: at,
				// Monthly quotas reset on its day (README "Limits"): kept as given.
				BillingCycleAnchor: at.Add(-335 * 24 * time.Hour)},
			{ID: "sub_b_" + customerID, CustomerID: customerID, Status: proxy.StatusTrialing, PriceIDs: []string{"price_team"},
				Plan: "team", CurrentPeriodEnd: at.Add(7 * 24 * time.Hour), TrialEnd: at.Add(7 * 24 * time.Hour), SyncedAt: at},
		},
	}
}

func mustCommit(t *testing.T, s Store, state proxy.CustomerState, eventID string) (proxy.Subject, *proxy.Entitlements) {
	t.Helper()
	subj, ents, err := s.CommitCustomer(t.Context(), state, eventID)
	if err != nil {
		t.Fatal(err)
	}
	return subj, ents
}

func mustEntitlements(t *testing.T, s Store, subject proxy.Subject) *proxy.Entitlements {
	t.Helper()
	ents, err := s.Entitlements(t.Context(), subject)
	if err != nil {
		t.Fatal(err)
	}
	return ents
}

func mustProcessed(t *testing.T, s Store, eventID string) bool {
	t.Helper()
	ok, err := s.EventProcessed(t.Context(), eventID)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func mustDetail(t *testing.T, s Store, subject proxy.Subject) proxy.UserDetail {
	t.Helper()
	d, err := s.UserDetail(t.Context(), subject, proxy.MaxAuditPage)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustPutComp(t *testing.T, s Store, c proxy.Comp) {
	t.Helper()
	if err := s.PutComp(t.Context(), c); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// grants reports whether anything ents holds grants plan at now, as the
// decision sees it (proxy.Entitlements.All).
func grants(ents *proxy.Entitlements, plan string, now time.Time) bool {
	if ents == nil {
		return false
	}
	subs := ents.All(now)
	for i := range subs {
		if subs[i].Plan == plan && proxy.Grants(&subs[i], proxy.AccessPolicy{}, now) {
			return true
		}
	}
	return false
}

func summaryIDs(us []proxy.UserSummary) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

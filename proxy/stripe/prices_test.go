package stripe

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// TestSharedPrices_AnotherReplicaReadsThemFromTheStore: one replica loads
// the prices from Stripe and publishes them; another on the same store
// takes them from the store with no call to Stripe, and reports the
// stamp and the configured prices the catalogue lacks.
func TestSharedPrices_AnotherReplicaReadsThemFromTheStore(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	follower := h.billing(t, h.cfg)
	if at, missing, err := follower.SharedPrices(ctx); err != nil || !at.IsZero() || missing != len(follower.configuredPrices()) {
		t.Fatalf("before any publish: %v %d %v, want no stamp and every price missing", at, missing, err)
	}
	if err := h.b.RefreshPrices(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.b.PublishPrices(ctx); err != nil {
		t.Fatal(err)
	}
	calls := len(h.calls.to("GET", "/v1/prices"))
	at, missing, err := follower.SharedPrices(ctx)
	if err != nil || !at.Equal(h.clock.Now()) || missing != 0 {
		t.Fatalf("after the publish: %v %d %v, want the stamp %v and none missing", at, missing, err, h.clock.Now())
	}
	for _, id := range h.b.configuredPrices() {
		want, _ := h.b.Price(id)
		got, ok := follower.Price(id)
		if d := cmp.Diff(want, got); !ok || d != "" {
			t.Errorf("%s on the follower (-leader +follower, %v):\n%s", id, ok, d)
		}
	}
	if p, _ := follower.Price("price_pro"); p.Amount != 1200 {
		t.Errorf("price_pro on the follower: %+v", p)
	}
	if n := len(h.calls.to("GET", "/v1/prices")) - calls; n != 0 {
		t.Errorf("the follower called Stripe %d times for prices", n)
	}

	// A replica whose config names a price the catalogue lacks keeps the
	// others and counts it.
	cfg := h.cfg
	cfg.Plans = append(append([]proxy.Plan(nil), cfg.Plans...), proxy.Plan{Key: "new", Prices: []string{"price_new"}})
	other := h.billing(t, cfg)
	if _, missing, err := other.SharedPrices(ctx); err != nil || missing != 1 {
		t.Errorf("a config with a price the catalogue lacks: %d missing, %v; want 1", missing, err)
	}
	if _, ok := other.Price("price_pro"); !ok {
		t.Error("the catalogue's prices were not taken beside the missing one")
	}
}

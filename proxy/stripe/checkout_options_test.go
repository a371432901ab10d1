package stripe

import (
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// Checkout subscribes to the price the visitor chose (monthly or yearly),
// only ever one of the plan's, and passes the config's Checkout options:
// promotion codes, and automatic tax with the billing address it needs,
// saved on the customer (which has none yet, so Stripe would refuse
// automatic tax without it).
func TestCheckout_PriceAndOptions(t *testing.T) {
	tests := []struct {
		name string
		req  proxy.CheckoutRequest
		want url.Values // the session's form fields checked
	}{
		{"the first price", proxy.CheckoutRequest{},
			url.Values{"line_items[0][price]": {"price_pro"}}},
		{"the yearly price", proxy.CheckoutRequest{Price: "price_pro_yearly"},
			url.Values{"line_items[0][price]": {"price_pro_yearly"}}},
		{"promotion codes", proxy.CheckoutRequest{AllowPromotionCodes: true},
			url.Values{"line_items[0][price]": {"price_pro"}, "allow_promotion_codes": {"true"}}},
		{"automatic tax", proxy.CheckoutRequest{Price: "price_pro_yearly", AutomaticTax: true},
			url.Values{"line_items[0][price]": {"price_pro_yearly"}, "automatic_tax[enabled]": {"true"},
				"billing_address_collection": {"required"}, "customer_update[address]": {"auto"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			req := tt.req
			req.Identity, req.Subject, req.Plan = idAda(), userAda(), planByKey("pro")
			if _, err := h.b.Checkout(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			form := sessionForm(t, h)
			got := url.Values{}
			for _, k := range []string{"line_items[0][price]", "allow_promotion_codes", "automatic_tax[enabled]",
				"billing_address_collection", "customer_update[address]"} {
				if form.Has(k) {
					got[k] = form[k]
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("session form (-want +got):\n%s", diff)
			}
		})
	}
}

// A changed choice is a different request: the open session for monthly is
// not handed out for yearly.
func TestCheckout_AnotherPriceIsAnotherSession(t *testing.T) {
	h := newHarness(t)
	req := proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro")}
	monthly, err := h.b.Checkout(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	req.Price = "price_pro_yearly"
	yearly, err := h.b.Checkout(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if monthly.URL == yearly.URL {
		t.Errorf("the yearly choice got the monthly session %s", yearly.URL)
	}
}

// A price that is not the plan's is refused before any Stripe call.
func TestCheckout_RefusesAPriceOfAnotherPlan(t *testing.T) {
	h := newHarness(t)
	for _, price := range []string{"price_other", "price_fee", "price_unknown"} {
		if _, err := h.b.Checkout(t.Context(), proxy.CheckoutRequest{Identity: idAda(), Subject: userAda(), Plan: planByKey("pro"), Price: price}); err == nil {
			t.Errorf("%s: no error", price)
		}
	}
	if n := len(h.calls.all()); n != 0 {
		t.Errorf("%d Stripe calls", n)
	}
}

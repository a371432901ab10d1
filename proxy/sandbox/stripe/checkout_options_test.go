package stripesandbox

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stripe/stripe-go/v76"
)

// Checkout's options are refused where Stripe refuses them: a billing
// address collection Stripe does not know, customer_update without a
// customer, automatic tax on an account without Stripe Tax, or for a
// customer Stripe Tax cannot place unless Checkout may save the address it
// collects.
func TestCheckoutOptions_RefusedAsStripeRefusesThem(t *testing.T) {
	tests := []struct {
		name      string
		stripeTax bool
		address   bool // the customer has an address already
		edit      func(p *stripe.CheckoutSessionParams)
		wantCode  string // "" for no error
		wantParam string
		wantMsg   string
	}{
		{name: "no options", edit: func(*stripe.CheckoutSessionParams) {}},
		{name: "billing address required", edit: func(p *stripe.CheckoutSessionParams) {
			p.BillingAddressCollection = stripe.String("required")
		}},
		{name: "billing address collection unknown", edit: func(p *stripe.CheckoutSessionParams) {
			p.BillingAddressCollection = stripe.String("always")
		}, wantCode: "parameter_invalid", wantParam: "billing_address_collection"},
		{name: "customer_update without a customer", edit: func(p *stripe.CheckoutSessionParams) {
			p.Customer = nil
			p.CustomerUpdate = &stripe.CheckoutSessionCustomerUpdateParams{Address: stripe.String("auto")}
		}, wantCode: "parameter_invalid", wantParam: "customer_update"},
		{name: "customer_update of another value", edit: func(p *stripe.CheckoutSessionParams) {
			p.CustomerUpdate = &stripe.CheckoutSessionCustomerUpdateParams{Address: stripe.String("always")}
		}, wantCode: "parameter_invalid", wantParam: "customer_update[address]"},
		{name: "customer_update of the shipping address, never collected", edit: func(p *stripe.CheckoutSessionParams) {
			p.CustomerUpdate = &stripe.CheckoutSessionCustomerUpdateParams{Shipping: stripe.String("auto")}
		}, wantCode: "parameter_invalid", wantParam: "customer_update[shipping]"},
		{name: "automatic tax without Stripe Tax", address: true, edit: func(p *stripe.CheckoutSessionParams) {
			p.AutomaticTax = &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}
		}, wantMsg: "Stripe Tax has not been activated on your account"},
		{name: "automatic tax, a customer without an address", stripeTax: true, edit: func(p *stripe.CheckoutSessionParams) {
			p.AutomaticTax = &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}
		}, wantCode: "customer_tax_location_invalid"},
		{name: "automatic tax, the address never saved", stripeTax: true, edit: func(p *stripe.CheckoutSessionParams) {
			p.AutomaticTax = &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}
			p.CustomerUpdate = &stripe.CheckoutSessionCustomerUpdateParams{Address: stripe.String("never")}
		}, wantCode: "customer_tax_location_invalid"},
		{name: "automatic tax, the address saved from Checkout", stripeTax: true, edit: func(p *stripe.CheckoutSessionParams) {
			p.AutomaticTax = &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}
			p.CustomerUpdate = &stripe.CheckoutSessionCustomerUpdateParams{Address: stripe.String("auto")}
		}},
		{name: "automatic tax, a customer with an address", stripeTax: true, address: true, edit: func(p *stripe.CheckoutSessionParams) {
			p.AutomaticTax = &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newSBFixture(t, Options{StripeTax: tt.stripeTax})
			cp := &stripe.CustomerParams{Email: stripe.String("ada@example.com")}
			if tt.address {
				cp.Address = &stripe.AddressParams{Country: stripe.String("GB"), PostalCode: stripe.String("SW1A 1AA")}
			}
			c, err := f.sc.Customers.New(cp)
			if err != nil {
				t.Fatal(err)
			}
			p := checkoutParams(c.ID, "price_demo_pro_monthly", 0, "")
			tt.edit(p)
			_, err = f.sc.CheckoutSessions.New(p)
			switch {
			case tt.wantCode == "" && tt.wantMsg == "":
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			case err == nil:
				t.Fatal("accepted")
			}
			se := asStripeError(t, err)
			if se.HTTPStatusCode != http.StatusBadRequest || string(se.Code) != tt.wantCode || se.Param != tt.wantParam ||
				!strings.Contains(se.Msg, tt.wantMsg) {
				t.Errorf("error %d %q %q %q, want 400 %q %q …%q…", se.HTTPStatusCode, se.Code, se.Param, se.Msg, tt.wantCode, tt.wantParam, tt.wantMsg)
			}
		})
	}
}

// With automatic tax and a required billing address the hosted page asks
// for the address, works out the tax (nothing: the account is registered
// nowhere), and saves the address on the customer, which Stripe Tax needs
// at every renewal.
func TestCheckoutOptions_AddressAndTaxOnThePage(t *testing.T) {
	f := newSBFixture(t, Options{StripeTax: true})
	c := f.customer(t, "ada@example.com", "user_ada")
	p := checkoutParams(c.ID, "price_demo_pro_monthly", 0, "")
	p.AutomaticTax = &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}
	p.BillingAddressCollection = stripe.String("required")
	p.CustomerUpdate = &stripe.CheckoutSessionCustomerUpdateParams{Address: stripe.String("auto")}
	cs := f.checkout(t, p)
	if cs.AutomaticTax == nil || !cs.AutomaticTax.Enabled || cs.AutomaticTax.Status != "requires_location_inputs" ||
		cs.BillingAddressCollection != "required" {
		t.Errorf("session: automatic_tax %+v, billing_address_collection %q", cs.AutomaticTax, cs.BillingAddressCollection)
	}
	_, page := f.getPage(t, cs.URL)
	for _, want := range []string{`name="line1"`, `name="city"`, `name="postal_code"`, `name="country"`, "Billing address", "Tax"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}

	card := url.Values{"card_number": {"4242 4242 4242 4242"}}
	steps := []struct {
		form     url.Values
		wantCode int
		wantSay  string
	}{
		{url.Values{}, http.StatusPaymentRequired, "Choose your country."},
		{url.Values{"country": {"GB"}}, http.StatusPaymentRequired, "Enter your postal code."},
		{url.Values{"country": {"GB"}, "postal_code": {"SW1A 1AA"}}, http.StatusPaymentRequired, "street and city"},
		{url.Values{"country": {"GB"}, "postal_code": {"SW1A 1AA"}, "line1": {"1 Horse Guards"}, "city": {"London"}}, http.StatusSeeOther, ""},
	}
	for _, st := range steps {
		form := url.Values{}
		for k, v := range card {
			form[k] = v
		}
		for k, v := range st.form {
			form[k] = v
		}
		res, body := f.postForm(t, cs.URL, form)
		if res.StatusCode != st.wantCode || !strings.Contains(body, st.wantSay) {
			t.Errorf("pay with %v: %d, want %d saying %q\n%.600s", st.form, res.StatusCode, st.wantCode, st.wantSay, body)
		}
	}
	f.wait(t)
	got, err := f.sc.Customers.Get(c.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &stripe.Address{Country: "GB", PostalCode: "SW1A 1AA", Line1: "1 Horse Guards", City: "London"}
	if diff := cmp.Diff(want, got.Address); diff != "" {
		t.Errorf("the customer's address (-want +got):\n%s", diff)
	}
	sp := &stripe.CheckoutSessionParams{}
	sp.AddExpand("subscription")
	done, err := f.sc.CheckoutSessions.Get(cs.ID, sp)
	if err != nil {
		t.Fatal(err)
	}
	if done.AutomaticTax.Status != "complete" || done.TotalDetails.AmountTax != 0 || !done.Subscription.AutomaticTax.Enabled {
		t.Errorf("paid session: automatic_tax %+v, tax %d, subscription's automatic tax %+v", done.AutomaticTax, done.TotalDetails.AmountTax, done.Subscription.AutomaticTax)
	}
	if types := f.hook.types(); !strings.Contains(strings.Join(types, " "), "customer.updated") {
		t.Errorf("events %v, want customer.updated for the address", types)
	}
}

// A promotion code field appears only with allow_promotion_codes, and the
// sandbox account has no promotion codes, so a code typed there is one
// Stripe would not know. Without the option a code sent anyway is not read.
func TestCheckoutOptions_PromotionCodes(t *testing.T) {
	f := newSBFixture(t, Options{})
	c := f.customer(t, "ada@example.com", "user_ada")
	for _, allow := range []bool{true, false} {
		p := checkoutParams(c.ID, "price_demo_pro_monthly", 0, "")
		if allow {
			p.AllowPromotionCodes = stripe.Bool(true)
		}
		cs := f.checkout(t, p)
		if cs.AllowPromotionCodes != allow {
			t.Errorf("allow %v: the session says %v", allow, cs.AllowPromotionCodes)
		}
		_, page := f.getPage(t, cs.URL)
		if got := strings.Contains(page, `name="promotion_code"`); got != allow {
			t.Errorf("allow %v: the page has a promotion code field: %v", allow, got)
		}
		res, body := f.postForm(t, cs.URL, url.Values{"card_number": {"4242 4242 4242 4242"}, "promotion_code": {"FRIENDS"}})
		if allow && (res.StatusCode != http.StatusPaymentRequired || !strings.Contains(body, "This code is invalid.")) {
			t.Errorf("a code nobody made: %d\n%.600s", res.StatusCode, body)
		}
		if !allow && res.StatusCode != http.StatusSeeOther {
			t.Errorf("a code without the field: %d\n%.600s", res.StatusCode, body)
		}
	}
}

package stripesandbox

import (
	"net/http"
	"net/url"
	"strings"
)

// Checkout's options beyond the line items: promotion codes, the billing
// address, saving it on the customer, and Stripe Tax. Each is refused or
// required where Stripe refuses or requires it, never more kindly: a
// gateway that passes here passes at Stripe.

// address is a billing address as Checkout collects it and a customer
// keeps it.
type address struct {
	Line1, Line2, City, PostalCode, State, Country string
}

// taxLocation reports whether Stripe Tax could place the address. Stripe
// needs the country, and in most countries the postal code; the sandbox
// asks for both everywhere.
func (a *address) taxLocation() bool {
	return a != nil && a.Country != "" && a.PostalCode != ""
}

func (a *address) json() any {
	if a == nil {
		return nil
	}
	return map[string]any{"city": nullString(a.City), "country": nullString(a.Country), "line1": nullString(a.Line1),
		"line2": nullString(a.Line2), "postal_code": nullString(a.PostalCode), "state": nullString(a.State)}
}

// formAddress reads address[line1]… (the API's names), or nil when none is
// given.
func formAddress(f url.Values, name string) *address {
	m, ok := formMap(f, name)
	if !ok {
		return nil
	}
	a := &address{Line1: m["line1"], Line2: m["line2"], City: m["city"], PostalCode: m["postal_code"], State: m["state"],
		Country: strings.ToUpper(m["country"])}
	if *a == (address{}) {
		return nil
	}
	return a
}

// checkoutOptionsLocked reads billing_address_collection, customer_update
// and automatic_tax into cs, whose customer is already known.
func (s *Stripe) checkoutOptionsLocked(f url.Values, cs *checkoutSession) *apiError {
	switch v := f.Get("billing_address_collection"); v {
	case "", "auto", "required":
		cs.billingAddress = v
	default:
		return errInvalid("billing_address_collection", "Invalid billing_address_collection: must be one of auto or required")
	}
	if upd, has := formMap(f, "customer_update"); has {
		if cs.customer == "" {
			return errInvalid("customer_update", "`customer_update` can only be used with `customer`.")
		}
		for k, v := range upd {
			switch k {
			case "address", "name", "shipping":
			default:
				return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "parameter_unknown",
					Param: "customer_update[" + k + "]", Message: "Received unknown parameter: customer_update[" + k + "]"}
			}
			if v != "auto" && v != "never" {
				return errInvalid("customer_update["+k+"]", "Invalid customer_update["+k+"]: must be one of auto or never")
			}
		}
		if upd["shipping"] == "auto" {
			return errInvalid("customer_update[shipping]", "`customer_update[shipping]` can only be `auto` when `shipping_address_collection` is set "+
				"(the tollgate sandbox collects no shipping address).")
		}
		cs.customerUpdate = upd
	}
	tax, _, e := formBool(f, "automatic_tax[enabled]")
	if e != nil {
		return e
	}
	if !tax {
		return nil
	}
	if !s.stripeTax {
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error",
			Message: "Stripe Tax has not been activated on your account. Please visit https://stripe.com/docs/tax/set-up to get started."}
	}
	if c := s.customers[cs.customer]; c != nil && cs.customerUpdate["address"] != "auto" && !c.address.taxLocation() {
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "customer_tax_location_invalid",
			Message: "Automatic tax calculation in Checkout requires a valid address on the Customer. Add a valid address to the Customer " +
				"or set either `customer_update[address]` to 'auto' or `customer_update[shipping]` to 'auto' to save the address entered in Checkout to the Customer."}
	}
	cs.automaticTax = true
	return nil
}

// addressNeeded says what the hosted page asks of the address: all of it
// (billing_address_collection required), the country and postal code Stripe
// Tax needs, or nothing.
func (cs *checkoutSession) addressNeeded() (full, forTax bool) {
	return cs.billingAddress == "required", cs.automaticTax
}

// country is one choice of the page's country list.
type country struct{ Code, Name string }

// countries are the page's choices: a few, enough to try an address.
var countries = []country{{"AU", "Australia"}, {"AT", "Austria"}, {"CA", "Canada"}, {"FR", "France"}, {"DE", "Germany"},
	{"IE", "Ireland"}, {"NL", "Netherlands"}, {"CH", "Switzerland"}, {"GB", "United Kingdom"}, {"US", "United States"}}

// addressForm reads the page's address fields and says what is missing.
func (cs *checkoutSession) addressForm(f url.Values) (*address, string) {
	full, forTax := cs.addressNeeded()
	if !full && !forTax {
		return nil, ""
	}
	a := &address{Line1: strings.TrimSpace(f.Get("line1")), City: strings.TrimSpace(f.Get("city")),
		PostalCode: strings.TrimSpace(f.Get("postal_code")), Country: strings.ToUpper(strings.TrimSpace(f.Get("country")))}
	known := false
	for _, c := range countries {
		known = known || c.Code == a.Country
	}
	switch {
	case !known:
		return nil, "Choose your country."
	case a.PostalCode == "":
		return nil, "Enter your postal code."
	case full && (a.Line1 == "" || a.City == ""):
		return nil, "Enter your billing address: street and city."
	}
	return a, ""
}

// promoForm checks a promotion code typed into the page. The sandbox
// account has none, so any code is one Stripe would not know.
func (cs *checkoutSession) promoForm(f url.Values) string {
	if code := strings.TrimSpace(f.Get("promotion_code")); cs.allowPromo && code != "" {
		return "This code is invalid."
	}
	return ""
}

// saveAddressLocked keeps the address the visitor paid with on the
// session's customer_details, and on the existing customer when
// customer_update[address] is auto (with customer.updated, as Stripe sends).
// A customer Checkout makes gets it when it is made.
func (s *Stripe) saveAddressLocked(cs *checkoutSession, c *customer, a *address) {
	if a == nil {
		return
	}
	cs.address = a
	if cs.customerUpdate["address"] != "auto" || (c.address != nil && *c.address == *a) {
		return
	}
	prev := map[string]any{"address": c.address.json()}
	c.address = a
	s.emitLocked("customer.updated", func() any { return s.customerJSON(c) }, prev)
}

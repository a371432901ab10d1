package stripesandbox

import (
	"strconv"
	"strings"
)

// Wire shapes of Checkout Sessions and billing portal sessions, in the
// answer's API version (how versions differ is told in wire.go).

type checkoutLineJSON struct {
	ID             string    `json:"id"`
	Object         string    `json:"object"`
	AmountDiscount int64     `json:"amount_discount"`
	AmountSubtotal int64     `json:"amount_subtotal"`
	AmountTax      int64     `json:"amount_tax"`
	AmountTotal    int64     `json:"amount_total"`
	Currency       string    `json:"currency"`
	Description    string    `json:"description"`
	Price          priceJSON `json:"price"`
	Quantity       int64     `json:"quantity"`
}

type checkoutJSON struct {
	ID                        string            `json:"id"`
	Object                    string            `json:"object"`
	AfterExpiration           any               `json:"after_expiration"`
	AllowPromotionCodes       *bool             `json:"allow_promotion_codes"`
	AmountSubtotal            int64             `json:"amount_subtotal"`
	AmountTotal               int64             `json:"amount_total"`
	AutomaticTax              map[string]any    `json:"automatic_tax"`
	BillingAddressCollection  *string           `json:"billing_address_collection"`
	CancelURL                 *string           `json:"cancel_url"`
	ClientReferenceID         *string           `json:"client_reference_id"`
	ClientSecret              *string           `json:"client_secret"`
	Consent                   any               `json:"consent"`
	ConsentCollection         any               `json:"consent_collection"`
	Created                   int64             `json:"created"`
	Currency                  string            `json:"currency"`
	CustomFields              []any             `json:"custom_fields"`
	CustomText                map[string]any    `json:"custom_text"`
	Customer                  any               `json:"customer"`
	CustomerCreation          *string           `json:"customer_creation"`
	CustomerDetails           map[string]any    `json:"customer_details"`
	CustomerEmail             *string           `json:"customer_email"`
	ExpiresAt                 int64             `json:"expires_at"`
	Invoice                   any               `json:"invoice"`
	InvoiceCreation           any               `json:"invoice_creation"`
	LineItems                 *listJSON         `json:"line_items,omitempty"`
	Livemode                  bool              `json:"livemode"`
	Locale                    *string           `json:"locale"`
	Metadata                  map[string]string `json:"metadata"`
	Mode                      string            `json:"mode"`
	PaymentIntent             any               `json:"payment_intent"`
	PaymentLink               any               `json:"payment_link"`
	PaymentMethodCollection   string            `json:"payment_method_collection"`
	PaymentMethodOptions      map[string]any    `json:"payment_method_options"`
	PaymentMethodTypes        []string          `json:"payment_method_types"`
	PaymentStatus             string            `json:"payment_status"`
	PhoneNumberCollection     map[string]any    `json:"phone_number_collection"`
	RecoveredFrom             *string           `json:"recovered_from"`
	SetupIntent               any               `json:"setup_intent"`
	ShippingAddressCollection any               `json:"shipping_address_collection"`
	ShippingCost              any               `json:"shipping_cost"`
	ShippingDetails           field[any]        `json:"shipping_details,omitzero"` // gone in basil
	ShippingOptions           []any             `json:"shipping_options"`
	Status                    string            `json:"status"`
	SubmitType                *string           `json:"submit_type"`
	Subscription              any               `json:"subscription"`
	SuccessURL                string            `json:"success_url"`
	TotalDetails              map[string]any    `json:"total_details"`
	UIMode                    string            `json:"ui_mode"`
	URL                       *string           `json:"url"`
}

// checkoutJSON renders a Checkout Session. exp may ask for subscription
// (and paths under it), customer and line_items.
func (s *Stripe) checkoutJSON(cs *checkoutSession, exp expand) checkoutJSON {
	today := cs.dueToday()
	w := checkoutJSON{
		ID: cs.id, Object: "checkout.session", AmountSubtotal: today, AmountTotal: today,
		AutomaticTax:      map[string]any{"enabled": false, "liability": nil, "status": nil},
		CancelURL:         nullString(cs.cancelURL),
		ClientReferenceID: nullString(cs.clientReferenceID),
		Created:           cs.created.Unix(), Currency: cs.currency(), CustomFields: []any{},
		CustomText: map[string]any{
			"after_submit": nil, "shipping_address": nil, "submit": nil, "terms_of_service_acceptance": nil,
		},
		CustomerEmail: nullString(cs.customerEmail), ExpiresAt: cs.expiresAt.Unix(),
		Metadata: metadataJSON(cs.metadata), Mode: cs.mode, PaymentMethodCollection: "always",
		PaymentMethodOptions: map[string]any{}, PaymentMethodTypes: []string{"card"},
		PaymentStatus:         cs.paymentStatus,
		PhoneNumberCollection: map[string]any{"enabled": false},
		ShippingOptions:       []any{}, Status: cs.status, SuccessURL: cs.successURL,
		TotalDetails: map[string]any{"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
		UIMode:       "hosted", Livemode: cs.livemode,
	}
	if !s.view.basil() {
		w.ShippingDetails = hasNull[any]()
	}
	if s.view.dahlia() {
		// docs.stripe.com/changelog/dahlia/2026-03-25/updates-available-checkout-session-ui-modes
		w.UIMode = "hosted_page"
	}
	if cs.allowPromo {
		w.AllowPromotionCodes = &cs.allowPromo
	}
	if cs.billingAddress != "" {
		w.BillingAddressCollection = &cs.billingAddress
	}
	if cs.automaticTax {
		// No tax registration in the sandbox account: Stripe Tax works out
		// nothing to collect, once it knows where the customer is.
		status := "requires_location_inputs"
		if cs.address != nil || cs.status == "complete" {
			status = "complete"
		}
		w.AutomaticTax = map[string]any{"enabled": true, "liability": map[string]any{"type": "self"}, "status": status}
	}
	if cs.customer != "" {
		w.Customer = cs.customer
		if c := s.customers[cs.customer]; c != nil && exp.has("customer") {
			w.Customer = s.customerJSON(c)
		}
	} else {
		always := "always"
		w.CustomerCreation = &always
	}
	if cs.email != "" {
		w.CustomerDetails = map[string]any{
			"address": cs.address.json(), "email": cs.email, "name": nil, "phone": nil, "tax_exempt": "none", "tax_ids": []any{},
		}
	}
	if cs.subscription != "" {
		w.Subscription = cs.subscription
		if sub := s.subs[cs.subscription]; sub != nil && exp.has("subscription") {
			w.Subscription = s.subJSON(sub, exp.sub("subscription"))
		}
	}
	if cs.status == "open" {
		u := s.baseURL + "/checkout/pay/" + cs.id
		w.URL = &u
	}
	if exp.has("line_items") {
		l := s.checkoutLines(cs, exp.sub("line_items.data"))
		w.LineItems = &l
	}
	return w
}

func (s *Stripe) checkoutLines(cs *checkoutSession, exp expand) listJSON {
	lines := make([]checkoutLineJSON, 0, len(cs.items))
	for i, li := range cs.items {
		amt := li.price.UnitAmount * li.quantity
		lines = append(lines, checkoutLineJSON{
			ID: "li_" + strconv.Itoa(i) + strings.TrimPrefix(cs.id, "cs_test_"), Object: "item",
			AmountSubtotal: amt, AmountTotal: amt, Currency: li.price.Currency,
			Description: li.price.product.name, Price: s.priceJSON(li.price, exp.sub("price")), Quantity: li.quantity,
		})
	}
	return listJSON{Object: "list", Data: lines, URL: "/v1/checkout/sessions/" + cs.id + "/line_items"}
}

type portalJSON struct {
	ID            string  `json:"id"`
	Object        string  `json:"object"`
	Configuration string  `json:"configuration"`
	Created       int64   `json:"created"`
	Customer      string  `json:"customer"`
	Flow          any     `json:"flow"`
	Livemode      bool    `json:"livemode"`
	Locale        *string `json:"locale"`
	OnBehalfOf    *string `json:"on_behalf_of"`
	ReturnURL     *string `json:"return_url"`
	URL           string  `json:"url"`
}

func (s *Stripe) portalJSON(p *portalSession) portalJSON {
	return portalJSON{
		ID: p.id, Object: "billing_portal.session", Configuration: "bpc_sandbox_default", Livemode: p.livemode,
		Created: p.created.Unix(), Customer: p.customer, ReturnURL: nullString(p.returnURL),
		URL: s.baseURL + "/portal/" + p.id,
	}
}

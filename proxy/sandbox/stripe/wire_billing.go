package stripesandbox

import (
	"strconv"
	"strings"
)

// Wire shapes of subscriptions and invoices, in the answer's API version
// (how versions differ is told in wire.go).

type subItemJSON struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	BillingThresholds  any               `json:"billing_thresholds"`
	Created            int64             `json:"created"`
	CurrentPeriodEnd   field[int64]      `json:"current_period_end,omitzero"`   // basil and later
	CurrentPeriodStart field[int64]      `json:"current_period_start,omitzero"` // basil and later
	Discounts          []string          `json:"discounts"`
	Metadata           map[string]string `json:"metadata"`
	Plan               *planJSON         `json:"plan"`
	Price              priceJSON         `json:"price"`
	Quantity           int64             `json:"quantity"`
	Subscription       string            `json:"subscription"`
	TaxRates           []any             `json:"tax_rates"`
}

type cancellationJSON struct {
	Comment  *string `json:"comment"`
	Feedback *string `json:"feedback"`
	Reason   *string `json:"reason"`
}

type subscriptionJSON struct {
	ID                            string            `json:"id"`
	Object                        string            `json:"object"`
	Application                   any               `json:"application"`
	ApplicationFeePercent         any               `json:"application_fee_percent"`
	AutomaticTax                  map[string]any    `json:"automatic_tax"`
	BillingCycleAnchor            int64             `json:"billing_cycle_anchor"`
	BillingCycleAnchorConfig      any               `json:"billing_cycle_anchor_config"`
	BillingThresholds             any               `json:"billing_thresholds"`
	CancelAt                      *int64            `json:"cancel_at"`
	CancelAtPeriodEnd             bool              `json:"cancel_at_period_end"`
	CanceledAt                    *int64            `json:"canceled_at"`
	CancellationDetails           cancellationJSON  `json:"cancellation_details"`
	CollectionMethod              string            `json:"collection_method"`
	Created                       int64             `json:"created"`
	Currency                      string            `json:"currency"`
	CurrentPeriodEnd              field[int64]      `json:"current_period_end,omitzero"`   // gone in basil
	CurrentPeriodStart            field[int64]      `json:"current_period_start,omitzero"` // gone in basil
	Customer                      any               `json:"customer"`
	DaysUntilDue                  *int64            `json:"days_until_due"`
	DefaultPaymentMethod          *string           `json:"default_payment_method"`
	DefaultSource                 any               `json:"default_source"`
	DefaultTaxRates               []any             `json:"default_tax_rates"`
	Description                   *string           `json:"description"`
	Discount                      any               `json:"discount"`
	Discounts                     []string          `json:"discounts"`
	EndedAt                       *int64            `json:"ended_at"`
	Items                         listJSON          `json:"items"`
	LatestInvoice                 any               `json:"latest_invoice"`
	Livemode                      bool              `json:"livemode"`
	Metadata                      map[string]string `json:"metadata"`
	NextPendingInvoiceItemInvoice *int64            `json:"next_pending_invoice_item_invoice"`
	OnBehalfOf                    any               `json:"on_behalf_of"`
	PauseCollection               any               `json:"pause_collection"`
	PaymentSettings               map[string]any    `json:"payment_settings"`
	PendingInvoiceItemInterval    any               `json:"pending_invoice_item_interval"`
	PendingSetupIntent            any               `json:"pending_setup_intent"`
	PendingUpdate                 any               `json:"pending_update"`
	Schedule                      any               `json:"schedule"`
	StartDate                     int64             `json:"start_date"`
	Status                        string            `json:"status"`
	TestClock                     any               `json:"test_clock"`
	TransferData                  any               `json:"transfer_data"`
	TrialEnd                      *int64            `json:"trial_end"`
	TrialSettings                 map[string]any    `json:"trial_settings"`
	TrialStart                    *int64            `json:"trial_start"`
}

// subJSON renders a subscription. exp may ask for customer,
// latest_invoice and items.data.price.product.
func (s *Stripe) subJSON(sub *subscription, exp expand) subscriptionJSON {
	items := make([]subItemJSON, 0, len(sub.items))
	itemExp := exp.sub("items.data")
	basil := s.view.basil()
	for _, it := range sub.items {
		iw := subItemJSON{
			ID: it.id, Object: "subscription_item", Created: it.created.Unix(),
			Discounts: []string{}, Metadata: map[string]string{}, Plan: s.planJSON(it.price),
			Price: s.priceJSON(it.price, itemExp.sub("price")), Quantity: it.quantity,
			Subscription: sub.id, TaxRates: []any{},
		}
		if basil {
			// Billing periods live on the items from 2025-03-31.basil on.
			iw.CurrentPeriodEnd, iw.CurrentPeriodStart = has(sub.periodEnd.Unix()), has(sub.periodStart.Unix())
		}
		items = append(items, iw)
	}
	w := subscriptionJSON{
		ID: sub.id, Object: "subscription",
		AutomaticTax:       map[string]any{"enabled": false, "liability": nil},
		BillingCycleAnchor: sub.anchor.Unix(),
		CancelAtPeriodEnd:  sub.cancelAtPeriodEnd,
		CanceledAt:         unixOrNull(sub.canceledAt),
		CancellationDetails: cancellationJSON{
			Reason: nullString(sub.cancelReason),
		},
		CollectionMethod:     "charge_automatically",
		Created:              sub.created.Unix(),
		Currency:             sub.currency(),
		Customer:             sub.customer,
		DefaultPaymentMethod: nullString(sub.defaultPaymentMeth),
		DefaultTaxRates:      []any{},
		Discounts:            []string{},
		EndedAt:              unixOrNull(sub.endedAt),
		Items: listJSON{Object: "list", Data: items, HasMore: false,
			URL: "/v1/subscription_items?subscription=" + sub.id},
		LatestInvoice: sub.latestInvoice,
		Metadata:      metadataJSON(sub.metadata),
		PaymentSettings: map[string]any{
			"payment_method_options": nil, "payment_method_types": nil,
			"save_default_payment_method": "off",
		},
		Livemode:        sub.livemode,
		PauseCollection: pauseJSON(sub),
		StartDate:       sub.created.Unix(),
		Status:          sub.status,
		TrialEnd:        unixOrNull(sub.trialEnd),
		TrialStart:      unixOrNull(sub.trialStart),
		TrialSettings: map[string]any{
			"end_behavior": map[string]any{"missing_payment_method": "create_invoice"},
		},
	}
	if !basil {
		w.CurrentPeriodEnd, w.CurrentPeriodStart = has(sub.periodEnd.Unix()), has(sub.periodStart.Unix())
	}
	if sub.automaticTax {
		w.AutomaticTax = map[string]any{"enabled": true, "liability": map[string]any{"type": "self"}}
	}
	if sub.cancelAtPeriodEnd {
		w.CancelAt = unixOrNull(sub.periodEnd)
	}
	if sub.latestInvoice == "" {
		w.LatestInvoice = nil
	}
	if exp.has("customer") {
		if c := s.customers[sub.customer]; c != nil {
			w.Customer = s.customerJSON(c)
		}
	}
	if exp.has("latest_invoice") {
		if inv := s.invoices[sub.latestInvoice]; inv != nil {
			w.LatestInvoice = s.invoiceJSON(inv)
		}
	}
	return w
}

type pauseCollectionJSON struct {
	Behavior  string `json:"behavior"`
	ResumesAt *int64 `json:"resumes_at"`
}

// pauseJSON is a subscription's pause_collection: null unless payment
// collection is paused.
func pauseJSON(sub *subscription) *pauseCollectionJSON {
	if sub.pauseBehavior == "" {
		return nil
	}
	return &pauseCollectionJSON{Behavior: sub.pauseBehavior, ResumesAt: unixOrNull(sub.pauseResumes)}
}

type periodJSON struct {
	End   int64 `json:"end"`
	Start int64 `json:"start"`
}

// invoiceLineJSON is an invoice line item. 2025-03-31.basil moved what
// generated it under parent and its price under pricing, and dropped the
// top-level fields they replace (docs.stripe.com/changelog/basil/
// 2025-03-31/adds-new-parent-field-to-invoicing-objects).
type invoiceLineJSON struct {
	ID                     string                `json:"id"`
	Object                 string                `json:"object"`
	Amount                 int64                 `json:"amount"`
	AmountExcludingTax     field[int64]          `json:"amount_excluding_tax,omitzero"`
	Currency               string                `json:"currency"`
	Description            string                `json:"description"`
	DiscountAmounts        []any                 `json:"discount_amounts"`
	Discountable           bool                  `json:"discountable"`
	Discounts              []string              `json:"discounts"`
	Invoice                string                `json:"invoice"`
	InvoiceItem            *string               `json:"invoice_item,omitempty"`
	Livemode               bool                  `json:"livemode"`
	Metadata               map[string]string     `json:"metadata"`
	Parent                 field[map[string]any] `json:"parent,omitzero"`
	Period                 periodJSON            `json:"period"`
	Plan                   field[planJSON]       `json:"plan,omitzero"`
	Price                  field[priceJSON]      `json:"price,omitzero"`
	Pricing                field[map[string]any] `json:"pricing,omitzero"`
	Proration              field[bool]           `json:"proration,omitzero"`
	ProrationDetails       field[map[string]any] `json:"proration_details,omitzero"`
	Quantity               int64                 `json:"quantity"`
	Subscription           field[string]         `json:"subscription,omitzero"`
	SubscriptionItem       *string               `json:"subscription_item,omitempty"`
	TaxAmounts             field[[]any]          `json:"tax_amounts,omitzero"`
	TaxRates               field[[]any]          `json:"tax_rates,omitzero"`
	Taxes                  field[[]any]          `json:"taxes,omitzero"`
	Type                   field[string]         `json:"type,omitzero"`
	UnitAmountExcludingTax field[string]         `json:"unit_amount_excluding_tax,omitzero"`
}

// invoiceJSON is an invoice. 2025-03-31.basil replaced subscription (and
// subscription_details) with parent, and paid with the invoice's
// payments.
type invoiceJSON struct {
	ID                   string                `json:"id"`
	Object               string                `json:"object"`
	AccountCountry       string                `json:"account_country"`
	AccountName          string                `json:"account_name"`
	AmountDue            int64                 `json:"amount_due"`
	AmountPaid           int64                 `json:"amount_paid"`
	AmountRemaining      int64                 `json:"amount_remaining"`
	AttemptCount         int64                 `json:"attempt_count"`
	Attempted            bool                  `json:"attempted"`
	AutoAdvance          bool                  `json:"auto_advance"`
	BillingReason        string                `json:"billing_reason"`
	CollectionMethod     string                `json:"collection_method"`
	Created              int64                 `json:"created"`
	Currency             string                `json:"currency"`
	Customer             string                `json:"customer"`
	CustomerEmail        *string               `json:"customer_email"`
	HostedInvoiceURL     *string               `json:"hosted_invoice_url"`
	Lines                listJSON              `json:"lines"`
	Livemode             bool                  `json:"livemode"`
	Metadata             map[string]string     `json:"metadata"`
	NextPaymentAttempt   *int64                `json:"next_payment_attempt"`
	Number               *string               `json:"number"`
	Paid                 field[bool]           `json:"paid,omitzero"`
	PaidOutOfBand        field[bool]           `json:"paid_out_of_band,omitzero"`
	Parent               field[map[string]any] `json:"parent,omitzero"`
	PeriodEnd            int64                 `json:"period_end"`
	PeriodStart          int64                 `json:"period_start"`
	Status               string                `json:"status"`
	StatusTransitions    map[string]any        `json:"status_transitions"`
	Subscription         field[string]         `json:"subscription,omitzero"`
	Subtotal             int64                 `json:"subtotal"`
	SubtotalExcludingTax int64                 `json:"subtotal_excluding_tax"`
	Tax                  field[int64]          `json:"tax,omitzero"`
	Total                int64                 `json:"total"`
	TotalExcludingTax    int64                 `json:"total_excluding_tax"`
}

func (s *Stripe) invoiceJSON(in *invoice) invoiceJSON {
	basil := s.view.basil()
	total := in.total()
	lines := make([]invoiceLineJSON, 0, len(in.lines))
	for _, l := range in.lines {
		lw := invoiceLineJSON{
			ID: l.id, Object: "line_item", Amount: l.amount,
			Currency: in.currency, Description: l.description, DiscountAmounts: []any{},
			Discountable: true, Discounts: []string{}, Invoice: in.id, Livemode: in.livemode,
			Metadata: map[string]string{}, Period: periodJSON{Start: l.start.Unix(), End: l.end.Unix()},
			Quantity: l.quantity,
		}
		var ii string
		if l.subItem == "" {
			ii = "ii_" + strings.TrimPrefix(l.id, "il_")
		}
		if basil {
			parent := map[string]any{"type": "subscription_item_details", "invoice_item_details": nil,
				"subscription_item_details": map[string]any{"invoice_item": nil, "proration": false,
					"proration_details": map[string]any{"credited_items": nil},
					"subscription":      in.subscription, "subscription_item": l.subItem}}
			if l.subItem == "" {
				parent = map[string]any{"type": "invoice_item_details", "subscription_item_details": nil,
					"invoice_item_details": map[string]any{"invoice_item": ii, "proration": false,
						"proration_details": map[string]any{"credited_items": nil}, "subscription": in.subscription}}
			}
			lw.Parent = has(parent)
			lw.Pricing = has(map[string]any{"type": "price_details",
				"price_details":       map[string]any{"price": l.price.ID, "product": l.price.product.id},
				"unit_amount_decimal": strconv.FormatInt(l.price.UnitAmount, 10)})
			lw.Taxes = has([]any{})
		} else {
			unit := strconv.FormatInt(l.price.UnitAmount, 10)
			if l.amount == 0 && l.price.UnitAmount != 0 {
				unit = "0"
			}
			lw.AmountExcludingTax, lw.UnitAmountExcludingTax = has(l.amount), has(unit)
			lw.Price = has(s.priceJSON(l.price, nil))
			if pl := s.planJSON(l.price); pl != nil {
				lw.Plan = has(*pl)
			} else {
				lw.Plan = hasNull[planJSON]()
			}
			lw.Proration = has(false)
			lw.ProrationDetails = has(map[string]any{"credited_items": nil})
			lw.Subscription = hasPtr(nullString(in.subscription))
			lw.TaxAmounts, lw.TaxRates = has([]any{}), has([]any{})
			lw.Type = has("subscription")
			if l.subItem != "" {
				lw.SubscriptionItem = &l.subItem
			} else {
				lw.Type = has("invoiceitem")
				lw.InvoiceItem = &ii
			}
		}
		lines = append(lines, lw)
	}
	w := invoiceJSON{
		ID: in.id, Object: "invoice", AccountCountry: "US", AccountName: "tollgate sandbox",
		AmountDue: total, AttemptCount: in.attempts, Attempted: in.attempts > 0 || in.paid,
		AutoAdvance: !in.paid && in.state == "", BillingReason: in.billingReason, CollectionMethod: "charge_automatically",
		Created: in.created.Unix(), Currency: in.currency, Customer: in.customer, Livemode: in.livemode,
		Lines:    listJSON{Object: "list", Data: lines, URL: "/v1/invoices/" + in.id + "/lines"},
		Metadata: map[string]string{}, NextPaymentAttempt: unixOrNull(in.nextAttempt), Number: nullString(in.number),
		PeriodEnd: in.periodEnd.Unix(), PeriodStart: in.periodStart.Unix(),
		Status: "open", Subtotal: total,
		SubtotalExcludingTax: total, Total: total, TotalExcludingTax: total,
		StatusTransitions: map[string]any{
			"finalized_at": in.created.Unix(), "marked_uncollectible_at": nil, "paid_at": nil, "voided_at": nil,
		},
	}
	if basil {
		w.Parent = has(map[string]any{"type": "subscription_details", "quote_details": nil,
			"subscription_details": map[string]any{"metadata": metadataJSON(in.subMetadata), "subscription": in.subscription}})
	} else {
		w.Paid, w.PaidOutOfBand = has(in.paid), has(false)
		w.Subscription = hasPtr(nullString(in.subscription))
		w.Tax = hasNull[int64]()
	}
	if c := s.customers[in.customer]; c != nil {
		w.CustomerEmail = nullString(c.email)
	}
	switch {
	case in.paid:
		w.Status, w.AmountPaid = "paid", total
		w.StatusTransitions["paid_at"] = in.paidAt.Unix()
	case in.state == "draft":
		// Made while collection was paused with keep_as_draft: not
		// finalized, not collected.
		w.Status, w.AmountRemaining = "draft", total
		w.StatusTransitions["finalized_at"] = nil
	case in.state == "uncollectible":
		w.Status, w.AmountRemaining = "uncollectible", total
		w.StatusTransitions["marked_uncollectible_at"] = in.created.Unix()
	case in.state == "void":
		w.Status = "void"
		w.StatusTransitions["voided_at"] = in.created.Unix()
	default:
		w.AmountRemaining = total
	}
	return w
}

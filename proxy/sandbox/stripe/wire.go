package stripesandbox

import (
	"encoding/json"
	"maps"
	"strconv"
	"strings"
	"time"
)

// Wire shapes of Stripe's API objects, rendered as the answer's API version
// (Stripe.view) renders them: 2023-10-16, the version stripe-go v76 pins,
// or 2025-03-31.basil and later (see APIVersionLatest). Field names
// are as in Stripe's API reference, null where Stripe sends null, and a
// field one version lacks is left out (field). Expandable fields are
// `any`: an ID string, or the object when expanded.

// field is a field that some API versions have, possibly null, and
// others do not: left out when not present.
type field[T any] struct {
	v       *T
	present bool
}

func (f field[T]) IsZero() bool { return !f.present }

func (f field[T]) MarshalJSON() ([]byte, error) {
	if f.v == nil {
		return []byte("null"), nil
	}
	return json.Marshal(*f.v)
}

// has is a present field with value v.
func has[T any](v T) field[T] { return field[T]{v: &v, present: true} }

// hasNull is a present field that is null.
func hasNull[T any]() field[T] { return field[T]{present: true} }

// hasPtr is a present field, null when v is nil.
func hasPtr[T any](v *T) field[T] { return field[T]{v: v, present: true} }

// expand is a request's expand[] paths, relative to the object rendered.
type expand []string

func (e expand) has(path string) bool {
	for _, p := range e {
		if p == path || strings.HasPrefix(p, path+".") {
			return true
		}
	}
	return false
}

// sub is the paths under prefix, relative to it ("data" turns
// "data.customer" into "customer").
func (e expand) sub(prefix string) expand {
	var out expand
	for _, p := range e {
		if rest, ok := strings.CutPrefix(p, prefix+"."); ok {
			out = append(out, rest)
		}
	}
	return out
}

func unixOrNull(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.Unix()
	return &v
}

func nullString(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

func metadataJSON(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}

type listJSON struct {
	Object  string `json:"object"`
	Data    any    `json:"data"`
	HasMore bool   `json:"has_more"`
	URL     string `json:"url"`
}

type productJSON struct {
	ID                  string            `json:"id"`
	Object              string            `json:"object"`
	Active              bool              `json:"active"`
	Created             int64             `json:"created"`
	DefaultPrice        *string           `json:"default_price"`
	Description         *string           `json:"description"`
	Features            []any             `json:"features"`
	Images              []string          `json:"images"`
	Livemode            bool              `json:"livemode"`
	Metadata            map[string]string `json:"metadata"`
	Name                string            `json:"name"`
	PackageDimensions   any               `json:"package_dimensions"`
	Shippable           *bool             `json:"shippable"`
	StatementDescriptor *string           `json:"statement_descriptor"`
	TaxCode             *string           `json:"tax_code"`
	Type                string            `json:"type"`
	UnitLabel           *string           `json:"unit_label"`
	Updated             int64             `json:"updated"`
	URL                 *string           `json:"url"`
}

func (s *Stripe) productJSON(p *product) productJSON {
	t := s.createdAt.Unix()
	return productJSON{
		ID: p.id, Object: "product", Active: true, Created: t, Features: []any{}, Images: []string{},
		Livemode: p.livemode, Metadata: map[string]string{}, Name: p.name, Type: "service", Updated: t,
	}
}

type recurringJSON struct {
	// Legacy usage-based billing's; gone in 2025-03-31.basil.
	AggregateUsage  field[string] `json:"aggregate_usage,omitzero"`
	Interval        string        `json:"interval"`
	IntervalCount   int64         `json:"interval_count"`
	TrialPeriodDays *int64        `json:"trial_period_days"`
	UsageType       string        `json:"usage_type"`
}

type priceJSON struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	Active            bool              `json:"active"`
	BillingScheme     string            `json:"billing_scheme"`
	Created           int64             `json:"created"`
	Currency          string            `json:"currency"`
	CustomUnitAmount  any               `json:"custom_unit_amount"`
	Livemode          bool              `json:"livemode"`
	LookupKey         *string           `json:"lookup_key"`
	Metadata          map[string]string `json:"metadata"`
	Nickname          *string           `json:"nickname"`
	Product           any               `json:"product"`
	Recurring         *recurringJSON    `json:"recurring"`
	TaxBehavior       string            `json:"tax_behavior"`
	TiersMode         *string           `json:"tiers_mode"`
	TransformQuantity any               `json:"transform_quantity"`
	Type              string            `json:"type"`
	UnitAmount        int64             `json:"unit_amount"`
	UnitAmountDecimal string            `json:"unit_amount_decimal"`
}

func (s *Stripe) priceJSON(p *price, exp expand) priceJSON {
	w := priceJSON{
		ID: p.ID, Object: "price", Active: true, BillingScheme: "per_unit", Created: s.createdAt.Unix(),
		Currency: p.Currency, Metadata: map[string]string{}, Nickname: nullString(p.Nickname),
		Product: p.product.id, TaxBehavior: "unspecified", Type: "one_time", Livemode: p.livemode,
		UnitAmount: p.UnitAmount, UnitAmountDecimal: strconv.FormatInt(p.UnitAmount, 10),
	}
	if exp.has("product") {
		w.Product = s.productJSON(p.product)
	}
	if p.recurring() {
		w.Type = "recurring"
		w.Recurring = &recurringJSON{Interval: p.Interval, IntervalCount: 1, UsageType: "licensed"}
		if !s.view.basil() {
			w.Recurring.AggregateUsage = hasNull[string]()
		}
	}
	return w
}

type planJSON struct {
	ID              string            `json:"id"`
	Object          string            `json:"object"`
	Active          bool              `json:"active"`
	AggregateUsage  field[string]     `json:"aggregate_usage,omitzero"` // gone in basil
	Amount          int64             `json:"amount"`
	AmountDecimal   string            `json:"amount_decimal"`
	BillingScheme   string            `json:"billing_scheme"`
	Created         int64             `json:"created"`
	Currency        string            `json:"currency"`
	Interval        string            `json:"interval"`
	IntervalCount   int64             `json:"interval_count"`
	Livemode        bool              `json:"livemode"`
	Metadata        map[string]string `json:"metadata"`
	Nickname        *string           `json:"nickname"`
	Product         any               `json:"product"`
	TiersMode       *string           `json:"tiers_mode"`
	TransformUsage  any               `json:"transform_usage"`
	TrialPeriodDays *int64            `json:"trial_period_days"`
	UsageType       string            `json:"usage_type"`
}

func (s *Stripe) planJSON(p *price) *planJSON {
	if !p.recurring() {
		return nil
	}
	w := &planJSON{
		ID: p.ID, Object: "plan", Active: true, Amount: p.UnitAmount, Livemode: p.livemode,
		AmountDecimal: strconv.FormatInt(p.UnitAmount, 10), BillingScheme: "per_unit",
		Created: s.createdAt.Unix(), Currency: p.Currency, Interval: p.Interval, IntervalCount: 1,
		Metadata: map[string]string{}, Nickname: nullString(p.Nickname), Product: p.product.id,
		UsageType: "licensed",
	}
	if !s.view.basil() {
		w.AggregateUsage = hasNull[string]()
	}
	return w
}

type invoiceSettingsJSON struct {
	CustomFields         any `json:"custom_fields"`
	DefaultPaymentMethod any `json:"default_payment_method"`
	Footer               any `json:"footer"`
	RenderingOptions     any `json:"rendering_options"`
}

type customerJSON struct {
	ID                  string              `json:"id"`
	Object              string              `json:"object"`
	Address             any                 `json:"address"`
	Balance             int64               `json:"balance"`
	Created             int64               `json:"created"`
	Currency            *string             `json:"currency"`
	DefaultSource       any                 `json:"default_source"`
	Delinquent          bool                `json:"delinquent"`
	Description         *string             `json:"description"`
	Discount            any                 `json:"discount"`
	Email               *string             `json:"email"`
	InvoicePrefix       string              `json:"invoice_prefix"`
	InvoiceSettings     invoiceSettingsJSON `json:"invoice_settings"`
	Livemode            bool                `json:"livemode"`
	Metadata            map[string]string   `json:"metadata"`
	Name                *string             `json:"name"`
	NextInvoiceSequence int64               `json:"next_invoice_sequence"`
	Phone               *string             `json:"phone"`
	PreferredLocales    []string            `json:"preferred_locales"`
	Shipping            any                 `json:"shipping"`
	TaxExempt           string              `json:"tax_exempt"`
	TestClock           any                 `json:"test_clock"`
}

type deletedJSON struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Deleted bool   `json:"deleted"`
}

// customerJSON renders a customer; a deleted one as Stripe does, as a stub.
func (s *Stripe) customerJSON(c *customer) any {
	if c.deleted {
		return deletedJSON{ID: c.id, Object: "customer", Deleted: true}
	}
	delinquent := false
	for _, sub := range s.subs {
		if sub.customer == c.id && (sub.status == "past_due" || sub.status == "unpaid") {
			delinquent = true
		}
	}
	return customerJSON{
		ID: c.id, Object: "customer", Created: c.created.Unix(), Currency: nullString(c.currency),
		Delinquent: delinquent, Email: nullString(c.email), InvoicePrefix: c.invoicePrefix,
		Metadata: metadataJSON(c.metadata), Name: nullString(c.name), NextInvoiceSequence: c.invoiceSeq + 1,
		PreferredLocales: []string{}, TaxExempt: "none", Livemode: c.livemode,
	}
}

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
			"address": nil, "email": cs.email, "name": nil, "phone": nil, "tax_exempt": "none", "tax_ids": []any{},
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

type eventDataJSON struct {
	Object             any            `json:"object"`
	PreviousAttributes map[string]any `json:"previous_attributes,omitempty"`
}

type eventRequestJSON struct {
	ID             *string `json:"id"`
	IdempotencyKey *string `json:"idempotency_key"`
}

type eventJSON struct {
	ID              string           `json:"id"`
	Object          string           `json:"object"`
	APIVersion      string           `json:"api_version"`
	Created         int64            `json:"created"`
	Data            eventDataJSON    `json:"data"`
	Livemode        bool             `json:"livemode"`
	PendingWebhooks int64            `json:"pending_webhooks"`
	Request         eventRequestJSON `json:"request"`
	Type            string           `json:"type"`
}

type errorJSON struct {
	Error apiError `json:"error"`
}

type accountJSON struct {
	ID               string         `json:"id"`
	Object           string         `json:"object"`
	BusinessProfile  map[string]any `json:"business_profile"`
	BusinessType     *string        `json:"business_type"`
	Capabilities     map[string]any `json:"capabilities"`
	ChargesEnabled   bool           `json:"charges_enabled"`
	Country          string         `json:"country"`
	Created          int64          `json:"created"`
	DefaultCurrency  string         `json:"default_currency"`
	DetailsSubmitted bool           `json:"details_submitted"`
	Email            *string        `json:"email"`
	Metadata         map[string]any `json:"metadata"`
	PayoutsEnabled   bool           `json:"payouts_enabled"`
	Settings         map[string]any `json:"settings"`
	Type             string         `json:"type"`
}

// accountID is the sandbox account's ID, the same for both modes (as a
// Stripe account's is).
const accountID = "acct_1TollgateSandbox0"

func (s *Stripe) accountJSON() accountJSON {
	return accountJSON{
		ID: accountID, Object: "account",
		BusinessProfile: map[string]any{"name": "tollgate sandbox", "url": nil, "support_email": nil},
		Capabilities:    map[string]any{"card_payments": "active"}, ChargesEnabled: true, Country: "US",
		Created: s.createdAt.Unix(), DefaultCurrency: "usd", DetailsSubmitted: true,
		Metadata: map[string]any{}, PayoutsEnabled: true,
		Settings: map[string]any{"dashboard": map[string]any{"display_name": "tollgate sandbox", "timezone": "Etc/UTC"}},
		Type:     "standard",
	}
}

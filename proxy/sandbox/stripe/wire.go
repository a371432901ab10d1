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
	Meter           *string       `json:"meter"`
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
		if p.Meter != "" {
			// A meter-backed price: usage_type metered, recurring.meter its
			// meter (stripe-go v76.25 price.go, PriceRecurring.Meter).
			w.Recurring.UsageType, w.Recurring.Meter = "metered", &p.Meter
			if !s.view.basil() {
				w.Recurring.AggregateUsage = has("sum")
			}
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
		ID: c.id, Object: "customer", Address: c.address.json(), Created: c.created.Unix(), Currency: nullString(c.currency),
		Delinquent: delinquent, Email: nullString(c.email), InvoicePrefix: c.invoicePrefix,
		Metadata: metadataJSON(c.metadata), Name: nullString(c.name), NextInvoiceSequence: c.invoiceSeq + 1,
		PreferredLocales: []string{}, TaxExempt: "none", Livemode: c.livemode,
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

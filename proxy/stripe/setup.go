package stripe

import (
	"context"
	"fmt"
	"slices"
	"strings"

	stripe "github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
)

// Setup: what `tollgate init` asks of Stripe, once, before a gateway runs.
// A gateway never makes these calls, so they are not in Endpoints (the
// metrics' allow-list).

// WebhookPath is where the gateway serves Stripe's webhook, under the
// internal prefix.
const WebhookPath = "/webhooks/stripe"

// RecurringPrice is an active recurring price a plan can be made of.
type RecurringPrice struct {
	proxy.Price        // ID, amount, currency and interval
	Nickname    string // the price's own name, often empty
	ProductID   string
	ProductName string
}

// ListRecurringPrices lists the active recurring prices of the key's mode
// whose product is active too (Checkout sells no other), newest first,
// with their products' names: GET /v1/prices?active=true&type=recurring
// with expand[]=data.product, every page. cfg needs SecretKey and
// PublicURL (and APIURL for a stand-in).
func ListRecurringPrices(ctx context.Context, cfg Config) ([]RecurringPrice, error) {
	cfg.Store, cfg.Cache = nil, nil
	b, err := newBilling(cfg)
	if err != nil {
		return nil, err
	}
	var out []RecurringPrice
	after := ""
	for {
		var page []*stripe.Price
		var more bool
		err := b.call(ctx, b.backgroundBudget(b.retries), func() error {
			p := &stripe.PriceListParams{Active: stripe.Bool(true), Type: stripe.String(string(stripe.PriceTypeRecurring))}
			p.Context = ctx
			p.Limit = stripe.Int64(100)
			p.Single = true
			p.AddExpand("data.product")
			if after != "" {
				p.StartingAfter = stripe.String(after)
			}
			page, more = nil, false
			it := b.api.Prices.List(p)
			for it.Next() {
				page = append(page, it.Price())
			}
			if err := it.Err(); err != nil {
				return err
			}
			more = it.Meta() != nil && it.Meta().HasMore
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("stripe: list prices: %w", stripeFailure(err))
		}
		for _, sp := range page {
			if sp.Product == nil || !sp.Product.Active || sp.Recurring == nil {
				continue
			}
			out = append(out, RecurringPrice{
				Price: proxy.Price{ID: sp.ID, Amount: sp.UnitAmount, Currency: string(sp.Currency),
					Interval: string(sp.Recurring.Interval), IntervalCount: sp.Recurring.IntervalCount},
				Nickname: sp.Nickname, ProductID: sp.Product.ID, ProductName: sp.Product.Name,
			})
		}
		if !more || len(page) == 0 {
			return out, nil
		}
		after = page[len(page)-1].ID
	}
}

// WebhookEndpoint is what EnsureWebhookEndpoint found or made.
type WebhookEndpoint struct {
	ID, URL string
	// Created: no endpoint had the URL, so this one was made, and Secret is
	// its signing secret (whsec_…), which Stripe shows only now.
	Created bool
	Secret  string
	// Updated: the endpoint existed and its events, or its disabled
	// status, were changed to what tollgate handles.
	Updated bool
	// Others are further endpoints with the same URL (made by hand): each
	// delivers the same events, signed with its own secret.
	Others []string
}

// EnsureWebhookEndpoint makes sure the key's mode has a webhook endpoint
// at <public URL><internal prefix>/webhooks/stripe, enabled and subscribed
// to exactly HandledEvents. An endpoint already there (found by its URL,
// GET /v1/webhook_endpoints, every page) is updated when it differs
// rather than a second one made, and then Stripe does not say its secret;
// otherwise one is made (POST /v1/webhook_endpoints) and its secret
// returned.
func EnsureWebhookEndpoint(ctx context.Context, cfg Config) (WebhookEndpoint, error) {
	cfg.Store, cfg.Cache = nil, nil
	b, err := newBilling(cfg)
	if err != nil {
		return WebhookEndpoint{}, err
	}
	out := WebhookEndpoint{URL: b.public + b.prefix + WebhookPath}
	all, err := b.webhookEndpoints(ctx)
	if err != nil {
		return out, err
	}
	// Stripe lists the newest first; the oldest endpoint at the URL is the
	// one a first run made, or the one longest in use.
	slices.Reverse(all)
	var found *stripe.WebhookEndpoint
	for _, we := range all {
		switch {
		case we.URL != out.URL:
		case found == nil:
			found = we
		default:
			out.Others = append(out.Others, we.ID)
		}
	}
	if found == nil {
		we, err := b.createWebhookEndpoint(ctx, out.URL)
		if err != nil {
			return out, err
		}
		out.ID, out.Created, out.Secret = we.ID, true, we.Secret
		return out, nil
	}
	out.ID = found.ID
	if found.Status == "disabled" || !sameEvents(found.EnabledEvents, handledEvents) {
		if _, err := b.updateWebhookEndpoint(ctx, found.ID, found.Status == "disabled"); err != nil {
			return out, err
		}
		out.Updated = true
	}
	return out, nil
}

// sameEvents reports whether two lists name the same event types, in any
// order.
func sameEvents(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// webhookEndpoints lists the key's mode's webhook endpoints, every page.
func (b *Billing) webhookEndpoints(ctx context.Context) ([]*stripe.WebhookEndpoint, error) {
	var out []*stripe.WebhookEndpoint
	after := ""
	for {
		var page []*stripe.WebhookEndpoint
		var more bool
		err := b.call(ctx, b.backgroundBudget(b.retries), func() error {
			p := &stripe.WebhookEndpointListParams{}
			p.Context = ctx
			p.Limit = stripe.Int64(100)
			p.Single = true
			if after != "" {
				p.StartingAfter = stripe.String(after)
			}
			page, more = nil, false
			it := b.api.WebhookEndpoints.List(p)
			for it.Next() {
				page = append(page, it.WebhookEndpoint())
			}
			if err := it.Err(); err != nil {
				return err
			}
			more = it.Meta() != nil && it.Meta().HasMore
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("stripe: list webhook endpoints: %w", stripeFailure(err))
		}
		out = append(out, page...)
		if !more || len(page) == 0 {
			return out, nil
		}
		after = page[len(page)-1].ID
	}
}

// createWebhookEndpoint makes an endpoint at url for HandledEvents, in
// the account's default API version: the webhook reads only IDs from an
// event, whatever its version.
func (b *Billing) createWebhookEndpoint(ctx context.Context, url string) (*stripe.WebhookEndpoint, error) {
	var we *stripe.WebhookEndpoint
	err := b.call(ctx, b.backgroundBudget(b.retries), func() (err error) {
		p := &stripe.WebhookEndpointParams{
			URL:           stripe.String(url),
			EnabledEvents: stripe.StringSlice(handledEvents),
			Description:   stripe.String("tollgate"),
		}
		p.Context = ctx
		we, err = b.api.WebhookEndpoints.New(p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("stripe: create webhook endpoint: %w", stripeFailure(err))
	}
	if !strings.HasPrefix(we.Secret, "whsec_") {
		return nil, fmt.Errorf("stripe: create webhook endpoint %s: the answer has no signing secret", we.ID)
	}
	return we, nil
}

// updateWebhookEndpoint subscribes endpoint id to exactly HandledEvents,
// and enables it if enable.
func (b *Billing) updateWebhookEndpoint(ctx context.Context, id string, enable bool) (*stripe.WebhookEndpoint, error) {
	var we *stripe.WebhookEndpoint
	err := b.call(ctx, b.backgroundBudget(b.retries), func() (err error) {
		p := &stripe.WebhookEndpointParams{EnabledEvents: stripe.StringSlice(handledEvents)}
		if enable {
			p.Disabled = stripe.Bool(false)
		}
		p.Context = ctx
		we, err = b.api.WebhookEndpoints.Update(id, p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("stripe: update webhook endpoint %s: %w", id, stripeFailure(err))
	}
	return we, nil
}

// DeleteWebhookEndpoint deletes endpoint id (DELETE
// /v1/webhook_endpoints/{id}): what `tollgate init` does with an endpoint it
// made when it could not keep the endpoint's secret, which Stripe shows
// only once, so that a later run makes a new one with a secret it keeps.
func DeleteWebhookEndpoint(ctx context.Context, cfg Config, id string) error {
	cfg.Store, cfg.Cache = nil, nil
	b, err := newBilling(cfg)
	if err != nil {
		return err
	}
	err = b.call(ctx, b.backgroundBudget(b.retries), func() error {
		p := &stripe.WebhookEndpointParams{}
		p.Context = ctx
		_, err := b.api.WebhookEndpoints.Del(id, p)
		return err
	})
	if err != nil {
		return fmt.Errorf("stripe: delete webhook endpoint %s: %w", id, stripeFailure(err))
	}
	return nil
}

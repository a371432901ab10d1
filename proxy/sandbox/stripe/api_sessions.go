package stripesandbox

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Checkout Sessions and billing portal sessions: the API that opens the
// hosted pages (pages.go serves them).

// Checkout Sessions.

func (s *Stripe) apiCreateCheckout(r *http.Request) (any, *apiError) {
	f := r.Form
	now := s.billingNowLocked()
	mode := f.Get("mode")
	switch mode {
	case "":
		return nil, errMissing("mode")
	case "subscription":
	case "payment", "setup":
		return nil, errInvalid("mode", "The tollgate sandbox supports only mode=subscription.")
	default:
		return nil, errInvalid("mode", "Invalid mode: must be one of payment, setup, or subscription")
	}
	prefix := "cs_test_"
	if s.view.live {
		prefix = "cs_live_"
	}
	cs := &checkoutSession{
		id: newID(prefix), livemode: s.view.live, mode: mode, status: "open", paymentStatus: "unpaid",
		created: now, expiresAt: now.Add(checkoutTTL), seq: s.nextSeqLocked(),
		clientReferenceID: f.Get("client_reference_id"), customerEmail: f.Get("customer_email"),
		successURL: f.Get("success_url"), cancelURL: f.Get("cancel_url"),
	}
	if id := f.Get("customer"); id != "" {
		if cs.customerEmail != "" {
			return nil, errInvalid("customer_email", "You may only specify one of these parameters: customer, customer_email.")
		}
		if _, e := s.liveCustomerLocked(id, "customer"); e != nil {
			return nil, e
		}
		cs.customer = id
	}
	if len(cs.clientReferenceID) > 200 {
		return nil, errInvalid("client_reference_id", "client_reference_id must be at most 200 characters.")
	}
	if cs.successURL == "" {
		return nil, errMissing("success_url")
	}
	if e := checkURL("success_url", cs.successURL); e != nil {
		return nil, e
	}
	if cs.cancelURL != "" {
		if e := checkURL("cancel_url", cs.cancelURL); e != nil {
			return nil, e
		}
	}
	idx, items := formItems(f, "line_items")
	if len(items) == 0 {
		return nil, errMissing("line_items")
	}
	var interval string
	for j, it := range items {
		param := fmt.Sprintf("line_items[%d]", idx[j])
		id := it["price"]
		if id == "" {
			for k := range it {
				if strings.HasPrefix(k, "price_data") {
					return nil, errInvalid(param+"[price_data]", "The tollgate sandbox supports only prices it knows; use line_items[][price].")
				}
			}
			return nil, errMissing(param + "[price]")
		}
		p, e := visible(s, s.priceIdx, "price", id, param+"[price]")
		if e != nil {
			return nil, e
		}
		qty := int64(1)
		if p.Meter != "" {
			// Stripe bills a metered price by usage and refuses a quantity
			// on its Checkout line item (docs.stripe.com/api/checkout/sessions/create,
			// line_items.quantity); the message is the sandbox's wording.
			if _, ok := it["quantity"]; ok {
				return nil, errInvalid(param+"[quantity]", fmt.Sprintf(
					"Quantity should not be specified where usage_type is `metered`. Remove quantity from `%s`.", param))
			}
			qty = 0
		} else if q, ok := it["quantity"]; ok {
			n, err := strconv.ParseInt(q, 10, 64)
			if err != nil || n < 1 {
				return nil, errInvalid(param+"[quantity]", "Quantity must be a positive integer.")
			}
			qty = n
		}
		if len(cs.items) > 0 && p.Currency != cs.items[0].price.Currency {
			return nil, errInvalid(param+"[price]", "All prices must be in the same currency.")
		}
		if p.recurring() {
			if interval != "" && p.Interval != interval {
				return nil, errInvalid(param+"[price]", "Checkout does not support multiple prices with different billing intervals.")
			}
			interval = p.Interval
		}
		cs.items = append(cs.items, lineItem{price: p, quantity: qty})
	}
	if interval == "" {
		return nil, errInvalid("line_items", "You must provide at least one recurring price in `subscription` mode when using prices.")
	}
	days, hasDays, e := formInt(f, "subscription_data[trial_period_days]")
	if e != nil {
		return nil, e
	}
	if hasDays && (days < 1 || days > 730) {
		return nil, errInvalid("subscription_data[trial_period_days]", "trial_period_days must be between 1 and 730.")
	}
	trialEnd, hasEnd, e := formInt(f, "subscription_data[trial_end]")
	if e != nil {
		return nil, e
	}
	if hasDays && hasEnd {
		return nil, errInvalid("subscription_data[trial_end]", "You may only specify one of trial_end and trial_period_days.")
	}
	if hasEnd {
		end := time.Unix(trialEnd, 0)
		if end.Before(now.Add(48 * time.Hour)) {
			return nil, errInvalid("subscription_data[trial_end]", "trial_end must be at least 48 hours in the future.")
		}
		cs.trialEnd = end
	}
	cs.trialDays = days
	if exp, has, e := formInt(f, "expires_at"); e != nil {
		return nil, e
	} else if has {
		at := time.Unix(exp, 0)
		if at.Before(now.Add(30*time.Minute)) || at.After(now.Add(checkoutTTL)) {
			return nil, errInvalid("expires_at", "expires_at must be between 30 minutes and 24 hours from now.")
		}
		cs.expiresAt = at
	}
	promo, _, e := formBool(f, "allow_promotion_codes")
	if e != nil {
		return nil, e
	}
	cs.allowPromo = promo
	if e := s.checkoutOptionsLocked(f, cs); e != nil {
		return nil, e
	}
	cs.metadata, _ = formMap(f, "metadata")
	cs.subMetadata, _ = formMap(f, "subscription_data[metadata]")
	s.sessions[cs.id] = cs
	s.log.Info("sandbox stripe: checkout session created", "session", cs.id, "customer", cs.customer)
	return s.checkoutJSON(cs, expandOf(r)), nil
}

func (s *Stripe) apiGetCheckout(r *http.Request) (any, *apiError) {
	cs, e := visible(s, s.sessions, "checkout.session", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	return s.checkoutJSON(cs, expandOf(r)), nil
}

func (s *Stripe) apiCheckoutLines(r *http.Request) (any, *apiError) {
	cs, e := visible(s, s.sessions, "checkout.session", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	return s.checkoutLines(cs, expandOf(r).sub("data")), nil
}

// apiListCheckouts lists Checkout Sessions newest first, filtered by
// customer, status (open, complete, expired) and subscription.
func (s *Stripe) apiListCheckouts(r *http.Request) (any, *apiError) {
	f := r.Form
	status, customer, sub := f.Get("status"), f.Get("customer"), f.Get("subscription")
	switch status {
	case "", "open", "complete", "expired":
	default:
		return nil, errInvalid("status", "Invalid status: must be one of complete, expired, or open")
	}
	var all []*checkoutSession
	for _, cs := range s.sessions {
		switch {
		case cs.livemode != s.view.live, status != "" && cs.status != status,
			customer != "" && cs.customer != customer, sub != "" && cs.subscription != sub:
			continue
		}
		all = append(all, cs)
	}
	slices.SortFunc(all, func(a, b *checkoutSession) int { return cmpDesc(a.seq, b.seq) })
	page, more, e := paginate(f, all, func(cs *checkoutSession) int64 { return cs.seq }, func(id string) (int64, bool) {
		if cs := s.sessions[id]; cs != nil && cs.livemode == s.view.live {
			return cs.seq, true
		}
		return 0, false
	}, "checkout.session")
	if e != nil {
		return nil, e
	}
	exp := expandOf(r).sub("data")
	data := make([]checkoutJSON, 0, len(page))
	for _, cs := range page {
		data = append(data, s.checkoutJSON(cs, exp))
	}
	return listOf(data, more, "/v1/checkout/sessions"), nil
}

// apiExpireCheckout expires an open session: it can no longer be paid,
// its url is gone, and checkout.session.expired is sent.
func (s *Stripe) apiExpireCheckout(r *http.Request) (any, *apiError) {
	cs, e := visible(s, s.sessions, "checkout.session", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	if cs.status != "open" {
		return nil, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error",
			Message: `Only Checkout Sessions with a status in ["open"] can be expired. ` +
				"This Checkout Session has a status of `" + cs.status + "`."}
	}
	cs.status = "expired"
	s.emitLocked("checkout.session.expired", func() any { return s.checkoutJSON(cs, nil) }, nil)
	return s.checkoutJSON(cs, expandOf(r)), nil
}

// Billing portal.

func (s *Stripe) apiCreatePortal(r *http.Request) (any, *apiError) {
	id := r.Form.Get("customer")
	if id == "" {
		return nil, errMissing("customer")
	}
	if _, e := s.liveCustomerLocked(id, "customer"); e != nil {
		return nil, e
	}
	ret := r.Form.Get("return_url")
	if ret != "" {
		if e := checkURL("return_url", ret); e != nil {
			return nil, e
		}
	}
	p := &portalSession{id: newID("bps_"), customer: id, returnURL: ret, created: s.billingNowLocked(), livemode: s.view.live}
	s.portals[p.id] = p
	return s.portalJSON(p), nil
}

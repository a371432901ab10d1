package stripesandbox

import (
	"net/http"
	"slices"
)

// The catalog (prices and products) and the account.

// apiGetAccount is the account the key belongs to (GET /v1/account).
func (s *Stripe) apiGetAccount(*http.Request) (any, *apiError) {
	return s.accountJSON(), nil
}

// Prices and products.

func (s *Stripe) apiListPrices(r *http.Request) (any, *apiError) {
	f := r.Form
	active, hasActive, e := formBool(f, "active")
	if e != nil {
		return nil, e
	}
	lookup := formList(f, "lookup_keys")
	typ, productParam, currency, interval := f.Get("type"), f.Get("product"), f.Get("currency"), f.Get("recurring[interval]")
	if typ != "" && typ != "recurring" && typ != "one_time" {
		return nil, errInvalid("type", "Invalid type: must be one of one_time or recurring")
	}
	var all []*price
	for _, p := range s.prices {
		switch {
		case p.livemode != s.view.live, hasActive && !active, len(lookup) > 0, // no price has a lookup key
			typ == "recurring" && !p.recurring(), typ == "one_time" && p.recurring(),
			productParam != "" && p.product.id != productParam, currency != "" && p.Currency != currency,
			interval != "" && p.Interval != interval:
			continue
		}
		all = append(all, p)
	}
	page, more, e := paginate(f, all, s.priceKey, func(id string) (int64, bool) {
		if p := s.priceIdx[id]; p != nil && p.livemode == s.view.live {
			return s.priceKey(p), true
		}
		return 0, false
	}, "price")
	if e != nil {
		return nil, e
	}
	exp := expandOf(r).sub("data")
	data := make([]priceJSON, 0, len(page))
	for _, p := range page {
		data = append(data, s.priceJSON(p, exp))
	}
	return listOf(data, more, "/v1/prices"), nil
}

// priceKey orders prices as configured (the list's "newest first").
func (s *Stripe) priceKey(p *price) int64 {
	return int64(len(s.prices) - slices.Index(s.prices, p))
}

func (s *Stripe) apiGetPrice(r *http.Request) (any, *apiError) {
	p, e := visible(s, s.priceIdx, "price", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	return s.priceJSON(p, expandOf(r)), nil
}

func (s *Stripe) apiListProducts(r *http.Request) (any, *apiError) {
	key := func(p *product) int64 { return int64(len(s.products) - slices.Index(s.products, p)) }
	var mine []*product
	for _, p := range s.products {
		if p.livemode == s.view.live {
			mine = append(mine, p)
		}
	}
	page, more, e := paginate(r.Form, mine, key, func(id string) (int64, bool) {
		if p := s.productIdx[modeKey(s.view.live, id)]; p != nil {
			return key(p), true
		}
		return 0, false
	}, "product")
	if e != nil {
		return nil, e
	}
	data := make([]productJSON, 0, len(page))
	for _, p := range page {
		data = append(data, s.productJSON(p))
	}
	return listOf(data, more, "/v1/products"), nil
}

func (s *Stripe) apiGetProduct(r *http.Request) (any, *apiError) {
	id := r.PathValue("id")
	p := s.productIdx[modeKey(s.view.live, id)]
	if p == nil {
		if s.productIdx[modeKey(!s.view.live, id)] != nil {
			return nil, s.errOtherMode("product", id, "id")
		}
		return nil, errNoSuch("product", id, "id")
	}
	return s.productJSON(p), nil
}

package stripesandbox

import (
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The Customers API: create, retrieve, update, delete, list and search.

func (s *Stripe) newCustomerLocked(live bool, email, name string, metadata map[string]string, addr *address) *customer {
	c := &customer{
		id: newID("cus_"), email: email, name: name, metadata: metadata, address: addr,
		created: s.billingNowLocked(), seq: s.nextSeqLocked(),
		invoicePrefix: strings.ToUpper(newID("")[:8]), livemode: live,
	}
	s.customers[c.id] = c
	s.emitLocked("customer.created", func() any { return s.customerJSON(c) }, nil)
	return c
}

func (s *Stripe) apiCreateCustomer(r *http.Request) (any, *apiError) {
	md, _ := formMap(r.Form, "metadata")
	for k := range md {
		if md[k] == "" {
			delete(md, k)
		}
	}
	c := s.newCustomerLocked(s.view.live, r.Form.Get("email"), r.Form.Get("name"), md, formAddress(r.Form, "address"))
	s.log.Info("sandbox stripe: customer created", "customer", c.id)
	return s.customerJSON(c), nil
}

// liveCustomerLocked is the request's customer that is not deleted (a
// deleted one can still be retrieved, as a stub, but not used).
func (s *Stripe) liveCustomerLocked(id, param string) (*customer, *apiError) {
	c, e := visible(s, s.customers, "customer", id, param)
	if e != nil {
		return nil, e
	}
	if c.deleted {
		return nil, errNoSuch("customer", id, param)
	}
	return c, nil
}

func (s *Stripe) apiGetCustomer(r *http.Request) (any, *apiError) {
	c, e := visible(s, s.customers, "customer", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	return s.customerJSON(c), nil
}

func (s *Stripe) apiUpdateCustomer(r *http.Request) (any, *apiError) {
	c, e := s.liveCustomerLocked(r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	prev := map[string]any{}
	if r.Form.Has("email") && r.Form.Get("email") != c.email {
		prev["email"] = nullString(c.email)
		c.email = r.Form.Get("email")
	}
	if r.Form.Has("name") && r.Form.Get("name") != c.name {
		prev["name"] = nullString(c.name)
		c.name = r.Form.Get("name")
	}
	if md, ok := formMap(r.Form, "metadata"); ok {
		c.metadata = updateMetadata(c.metadata, md, prev)
	}
	if a := formAddress(r.Form, "address"); a != nil && (c.address == nil || *a != *c.address) {
		prev["address"] = c.address.json()
		c.address = a
	}
	if len(prev) > 0 {
		s.emitLocked("customer.updated", func() any { return s.customerJSON(c) }, prev)
	}
	return s.customerJSON(c), nil
}

// apiDeleteCustomer cancels the customer's subscriptions (each with
// customer.subscription.deleted), then deletes it (customer.deleted).
func (s *Stripe) apiDeleteCustomer(r *http.Request) (any, *apiError) {
	c, e := s.liveCustomerLocked(r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	now := s.billingNowLocked()
	for _, sub := range s.customerSubsLocked(c.id) {
		if sub.status != "canceled" && sub.status != "incomplete_expired" {
			s.cancelNowLocked(sub, now, "cancellation_requested")
		}
	}
	was := *c
	c.deleted = true
	delete(s.failing, c.id)
	s.log.Info("sandbox stripe: customer deleted", "customer", c.id)
	s.emitLocked("customer.deleted", func() any { return s.customerJSON(&was) }, nil)
	return s.customerJSON(c), nil
}

func (s *Stripe) sortedCustomersLocked(keep func(*customer) bool) []*customer {
	var out []*customer
	for _, c := range s.customers {
		if !c.deleted && c.livemode == s.view.live && keep(c) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *customer) int { return cmpDesc(a.seq, b.seq) })
	return out
}

func (s *Stripe) customerKey(id string) (int64, bool) {
	if c := s.customers[id]; c != nil && c.livemode == s.view.live {
		return c.seq, true
	}
	return 0, false
}

func (s *Stripe) apiListCustomers(r *http.Request) (any, *apiError) {
	email, byEmail := r.Form.Get("email"), r.Form.Has("email")
	all := s.sortedCustomersLocked(func(c *customer) bool { return !byEmail || c.email == email })
	page, more, e := paginate(r.Form, all, func(c *customer) int64 { return c.seq }, s.customerKey, "customer")
	if e != nil {
		return nil, e
	}
	data := make([]any, 0, len(page))
	for _, c := range page {
		data = append(data, s.customerJSON(c))
	}
	return listOf(data, more, "/v1/customers"), nil
}

func (s *Stripe) apiSearchCustomers(r *http.Request) (any, *apiError) {
	q := strings.TrimSpace(r.Form.Get("query"))
	if q == "" {
		return nil, errMissing("query")
	}
	// The subset of Stripe's search query language the sandbox supports:
	// email:'…', name:'…' and metadata['key']:'…', joined by AND.
	clauseRE := regexp.MustCompile(`^(email|name|metadata\[(?:'([^']*)'|"([^"]*)")\])\s*:\s*(?:'([^']*)'|"([^"]*)")$`)
	type clause struct{ field, key, value string }
	var clauses []clause
	for _, part := range regexp.MustCompile(`\s+(?i:AND)\s+`).Split(q, -1) {
		m := clauseRE.FindStringSubmatch(strings.TrimSpace(part))
		if m == nil {
			return nil, errInvalid("query", "The tollgate sandbox supports only email:'…', name:'…' and "+
				"metadata['key']:'…' clauses joined by AND; got "+strconv.Quote(part)+".")
		}
		cl := clause{field: m[1], key: m[2] + m[3], value: m[4] + m[5]}
		if strings.HasPrefix(cl.field, "metadata") {
			cl.field = "metadata"
		}
		clauses = append(clauses, cl)
	}
	all := s.sortedCustomersLocked(func(c *customer) bool {
		for _, cl := range clauses {
			switch cl.field {
			case "email":
				if !strings.EqualFold(c.email, cl.value) {
					return false
				}
			case "name":
				if !strings.EqualFold(c.name, cl.value) {
					return false
				}
			case "metadata":
				if c.metadata[cl.key] != cl.value {
					return false
				}
			}
		}
		return true
	})
	limit, has, e := formInt(r.Form, "limit")
	if e != nil {
		return nil, e
	}
	if !has {
		limit = 10
	}
	if limit < 1 || limit > 100 {
		return nil, errInvalid("limit", "This value must be greater than or equal to 1 and less than or equal to 100.")
	}
	offset := 0
	if p := r.Form.Get("page"); p != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(p, "page_"))
		if err != nil || n < 0 || !strings.HasPrefix(p, "page_") {
			return nil, errInvalid("page", "Invalid page token.")
		}
		offset = min(n, len(all))
	}
	all = all[offset:]
	more := int64(len(all)) > limit
	if more {
		all = all[:limit]
	}
	data := make([]any, 0, len(all))
	for _, c := range all {
		data = append(data, s.customerJSON(c))
	}
	var next *string
	if more {
		p := "page_" + strconv.Itoa(offset+len(all))
		next = &p
	}
	return struct {
		Object   string  `json:"object"`
		Data     []any   `json:"data"`
		HasMore  bool    `json:"has_more"`
		NextPage *string `json:"next_page"`
		URL      string  `json:"url"`
	}{"search_result", data, more, next, "/v1/customers/search"}, nil
}

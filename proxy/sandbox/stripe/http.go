package stripesandbox

import (
	"crypto/subtle"
	"embed"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed templates
var templateFS embed.FS

func (s *Stripe) routes() http.Handler {
	mux := http.NewServeMux()

	// API (Authorization: Bearer <secret key>).
	mux.HandleFunc("POST /v1/customers", s.api(s.apiCreateCustomer))
	mux.HandleFunc("GET /v1/customers", s.api(s.apiListCustomers))
	mux.HandleFunc("GET /v1/customers/search", s.api(s.apiSearchCustomers))
	mux.HandleFunc("GET /v1/customers/{id}", s.api(s.apiGetCustomer))
	mux.HandleFunc("POST /v1/customers/{id}", s.api(s.apiUpdateCustomer))
	mux.HandleFunc("DELETE /v1/customers/{id}", s.api(s.apiDeleteCustomer))
	mux.HandleFunc("GET /v1/subscriptions", s.api(s.apiListSubscriptions))
	mux.HandleFunc("GET /v1/subscriptions/{id}", s.api(s.apiGetSubscription))
	mux.HandleFunc("POST /v1/subscriptions/{id}", s.api(s.apiUpdateSubscription))
	mux.HandleFunc("DELETE /v1/subscriptions/{id}", s.api(s.apiCancelSubscription))
	mux.HandleFunc("POST /v1/checkout/sessions", s.api(s.apiCreateCheckout))
	mux.HandleFunc("GET /v1/checkout/sessions", s.api(s.apiListCheckouts))
	mux.HandleFunc("GET /v1/account", s.api(s.apiGetAccount))
	mux.HandleFunc("GET /v1/checkout/sessions/{id}", s.api(s.apiGetCheckout))
	mux.HandleFunc("GET /v1/checkout/sessions/{id}/line_items", s.api(s.apiCheckoutLines))
	mux.HandleFunc("POST /v1/checkout/sessions/{id}/expire", s.api(s.apiExpireCheckout))
	mux.HandleFunc("POST /v1/billing_portal/sessions", s.api(s.apiCreatePortal))
	mux.HandleFunc("GET /v1/prices", s.api(s.apiListPrices))
	mux.HandleFunc("GET /v1/prices/{id}", s.api(s.apiGetPrice))
	mux.HandleFunc("GET /v1/products", s.api(s.apiListProducts))
	mux.HandleFunc("GET /v1/products/{id}", s.api(s.apiGetProduct))
	mux.HandleFunc("GET /v1/invoices/{id}", s.api(s.apiGetInvoice))
	mux.HandleFunc("GET /v1/events", s.api(s.apiListEvents))
	mux.HandleFunc("GET /v1/events/{id}", s.api(s.apiGetEvent))
	mux.HandleFunc("/v1/", s.api(func(r *http.Request) (any, *apiError) {
		return nil, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error",
			Message: fmt.Sprintf("Unrecognized request URL (%s: %s).", r.Method, r.URL.Path)}
	}))

	// Hosted pages.
	cop := http.NewCrossOriginProtection()
	mux.HandleFunc("GET /checkout/pay/{id}", s.handleCheckoutPage)
	mux.Handle("POST /checkout/pay/{id}", cop.Handler(http.HandlerFunc(s.handleCheckoutPay)))
	mux.HandleFunc("GET /portal/{id}", s.handlePortalPage)
	mux.Handle("POST /portal/{id}", cop.Handler(http.HandlerFunc(s.handlePortalAction)))
	mux.HandleFunc("GET /{$}", s.handleHome)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.renderError(w, http.StatusNotFound, "Not found", "The tollgate sandbox has no page at this address.", "")
	})
	return mux
}

// apiError is Stripe's error object, answered as {"error": {...}}.
type apiError struct {
	Status  int    `json:"-"`
	Type    string `json:"type"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
}

func errMissing(param string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "parameter_missing",
		Param: param, Message: fmt.Sprintf("Missing required param: %s.", param)}
}

func errInvalid(param, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "parameter_invalid",
		Param: param, Message: msg}
}

// errNoSuch is resource_missing: 404 for the object in the URL (param
// "id"), 400 for one named by a parameter.
func errNoSuch(what, id, param string) *apiError {
	status := http.StatusBadRequest
	if param == "id" {
		status = http.StatusNotFound
	}
	return &apiError{Status: status, Type: "invalid_request_error", Code: "resource_missing", Param: param,
		Message: fmt.Sprintf("No such %s: '%s'", what, id)}
}

// visible finds the object id in m for the key that asks. An object the key
// cannot see (it is of the other mode) is resource_missing, as if it did
// not exist, with the hint Stripe adds: "No such customer: 'cus_…'; a
// similar object exists in live mode, but a test mode key was used to make
// this request."
func visible[T object](s *Stripe, m map[string]T, what, id, param string) (T, *apiError) {
	var zero T
	o, ok := m[id]
	if !ok {
		return zero, errNoSuch(what, id, param)
	}
	if o.isLive() != s.view.live {
		return zero, s.errOtherMode(what, id, param)
	}
	return o, nil
}

// errOtherMode is resource_missing for an object that exists in the other
// mode than the key's.
func (s *Stripe) errOtherMode(what, id, param string) *apiError {
	e := errNoSuch(what, id, param)
	e.Message += fmt.Sprintf("; a similar object exists in %s mode, but a %s mode key was used to make this request.",
		modeName(!s.view.live), modeName(s.view.live))
	return e
}

func modeName(live bool) string {
	if live {
		return "live"
	}
	return "test"
}

// idemEntry is a remembered Idempotency-Key: the request it was used with
// and the answer to replay.
type idemEntry struct {
	fingerprint string
	status      int
	body        []byte
	at          time.Time // wall clock
}

type apiFunc func(r *http.Request) (any, *apiError)

// api wraps an API handler: it checks the secret key, parses the form,
// runs the billing that is due, honours Idempotency-Key on POSTs (the same
// key and parameters replay the first answer; other parameters are an
// idempotency_error), and writes JSON. The handler runs under s.mu.
func (s *Stripe) api(h apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.apiCalls[r.Pattern]++
		if len(s.apiLog) < apiLogMax {
			s.apiLog = append(s.apiLog, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
				Version: r.Header.Get("Stripe-Version")})
		}
		s.mu.Unlock()
		w.Header().Set("Request-Id", newID("req_"))
		live, e := s.authorize(r)
		if e != nil {
			writeJSON(w, e.Status, errorJSON{*e})
			return
		}
		// The answer is rendered in the version the request names, else
		// in the account's default (docs.stripe.com/api/versioning).
		version := s.apiVersion
		if v := strings.TrimSpace(r.Header.Get("Stripe-Version")); v != "" {
			if !validVersion(v) {
				writeJSON(w, http.StatusBadRequest, errorJSON{apiError{Type: "invalid_request_error",
					Message: "Invalid Stripe API version: " + v}})
				return
			}
			version = v
		}
		w.Header().Set("Stripe-Version", version)
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := r.ParseForm(); err != nil {
			writeJSON(w, http.StatusBadRequest, errorJSON{apiError{Type: "invalid_request_error",
				Message: "Invalid request: the form body could not be parsed."}})
			return
		}
		key := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
		if r.Method != http.MethodPost {
			key = ""
		}
		fingerprint := r.Method + " " + r.URL.Path + "?" + r.Form.Encode()
		idemKey := key
		if live && key != "" {
			idemKey = "live:" + key // each mode has its own idempotency keys
		}

		s.mu.Lock()
		s.view = view{version: version, live: live}
		s.runDueLocked()
		if key != "" {
			if prev := s.idem[idemKey]; prev != nil {
				s.mu.Unlock()
				if prev.fingerprint != fingerprint {
					writeJSON(w, http.StatusBadRequest, errorJSON{apiError{Type: "idempotency_error",
						Message: "Keys for idempotent requests can only be used with the same parameters they were first used with. " +
							"Try using a key other than '" + key + "' if you meant to execute a different request."}})
					return
				}
				w.Header().Set("Idempotent-Replayed", "true")
				w.Header().Set("Idempotency-Key", key)
				writeRaw(w, prev.status, prev.body)
				return
			}
		}
		v, apiErr := h(r)
		status := http.StatusOK
		if apiErr != nil {
			status, v = apiErr.Status, errorJSON{*apiErr}
		}
		body, err := json.Marshal(v)
		if err != nil {
			s.log.Error("sandbox stripe: marshal response", "path", r.URL.Path, "err", err)
			status, body = http.StatusInternalServerError, []byte(`{"error":{"type":"api_error","message":"internal error"}}`)
		}
		if key != "" && status < 300 {
			now := s.now()
			for k, e := range s.idem {
				if now.Sub(e.at) > idemTTL {
					delete(s.idem, k)
				}
			}
			s.idem[idemKey] = &idemEntry{fingerprint: fingerprint, status: status, body: body, at: now}
		}
		s.mu.Unlock()
		if key != "" {
			w.Header().Set("Idempotency-Key", key)
		}
		s.log.Debug("sandbox stripe: api", "method", r.Method, "path", r.URL.Path, "status", status)
		writeRaw(w, status, body)
	}
}

// authorize accepts a secret key as a bearer token (what stripe-go
// sends) or as the basic-auth user name (curl -u sk_test_…:), and says
// whether it is the live-mode one.
func (s *Stripe) authorize(r *http.Request) (live bool, _ *apiError) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		got, _, ok = r.BasicAuth()
	}
	if !ok || got == "" {
		return false, &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error",
			Message: "You did not provide an API key. You need to provide your API key in the Authorization header, " +
				"using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."}
	}
	switch {
	case subtle.ConstantTimeCompare([]byte(got), []byte(s.secret)) == 1:
		return false, nil
	case subtle.ConstantTimeCompare([]byte(got), []byte(s.liveSecret)) == 1:
		return true, nil
	}
	masked := got
	if len(masked) > 8 {
		masked = masked[:8] + strings.Repeat("*", 4) + masked[len(masked)-4:]
	}
	return false, &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "api_key_invalid",
		Message: "Invalid API Key provided: " + masked}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"type":"api_error","message":"internal error"}}`)
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte("\n"))
}

// Form decoding, for the bracketed keys stripe-go's form encoder writes:
// metadata[k]=v, line_items[0][price]=…, expand[0]=… (or expand[]=…).

// formMap collects name[k]=v for keys k without further brackets.
func formMap(f url.Values, name string) (map[string]string, bool) {
	out := map[string]string{}
	present := f.Has(name) // "metadata=" clears all keys
	for k, vs := range f {
		rest, ok := strings.CutPrefix(k, name+"[")
		if !ok || !strings.HasSuffix(rest, "]") || strings.ContainsAny(rest[:len(rest)-1], "[]") {
			continue
		}
		out[rest[:len(rest)-1]] = vs[len(vs)-1]
		present = true
	}
	return out, present
}

// formList collects name, name[] and name[i] values, in index order.
func formList(f url.Values, name string) []string {
	var out []string
	out = append(out, f[name]...)
	out = append(out, f[name+"[]"]...)
	type iv struct {
		i int
		v []string
	}
	var idx []iv
	for k, vs := range f {
		rest, ok := strings.CutPrefix(k, name+"[")
		if !ok || !strings.HasSuffix(rest, "]") {
			continue
		}
		if i, err := strconv.Atoi(rest[:len(rest)-1]); err == nil {
			idx = append(idx, iv{i, vs})
		}
	}
	slices.SortFunc(idx, func(a, b iv) int { return a.i - b.i })
	for _, x := range idx {
		out = append(out, x.v...)
	}
	return out
}

// formItems collects name[i][field]=v into one map per index, in index
// order, with each map's index.
func formItems(f url.Values, name string) ([]int, []map[string]string) {
	byIdx := map[int]map[string]string{}
	for k, vs := range f {
		rest, ok := strings.CutPrefix(k, name+"[")
		if !ok {
			continue
		}
		// field is "price", or "price_data][currency" for nested keys.
		istr, field, ok := strings.Cut(rest, "][")
		i, err := strconv.Atoi(istr)
		if !ok || err != nil || i < 0 || !strings.HasSuffix(field, "]") {
			continue
		}
		if byIdx[i] == nil {
			byIdx[i] = map[string]string{}
		}
		byIdx[i][field[:len(field)-1]] = vs[len(vs)-1]
	}
	keys := slices.Sorted(maps.Keys(byIdx))
	out := make([]map[string]string, len(keys))
	for j, k := range keys {
		out[j] = byIdx[k]
	}
	return keys, out
}

func formInt(f url.Values, key string) (int64, bool, *apiError) {
	if !f.Has(key) {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(f.Get(key), 10, 64)
	if err != nil {
		return 0, true, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error",
			Code: "parameter_invalid_integer", Param: key, Message: "Invalid integer: " + f.Get(key)}
	}
	return n, true, nil
}

func formBool(f url.Values, key string) (bool, bool, *apiError) {
	if !f.Has(key) {
		return false, false, nil
	}
	switch f.Get(key) {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, true, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error",
		Code: "parameter_invalid_boolean", Param: key, Message: "Invalid boolean: " + f.Get(key)}
}

func expandOf(r *http.Request) expand { return formList(r.Form, "expand") }

// checkURL validates a URL parameter as Stripe does: absolute http(s).
func checkURL(param, raw string) *apiError {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errInvalid(param, "Not a valid URL")
	}
	return nil
}

// paginate pages through all, which is sorted by key, descending (newest
// first), with limit (default 10, 1 to 100), starting_after and
// ending_before. lookup gives the key of the object a cursor names.
func paginate[T any](f url.Values, all []T, key func(T) int64, lookup func(id string) (int64, bool), what string) ([]T, bool, *apiError) {
	limit, has, e := formInt(f, "limit")
	if e != nil {
		return nil, false, e
	}
	if !has {
		limit = 10
	}
	if limit < 1 || limit > 100 {
		return nil, false, errInvalid("limit", "This value must be greater than or equal to 1 and less than or equal to 100.")
	}
	if id := f.Get("starting_after"); id != "" {
		k, ok := lookup(id)
		if !ok {
			return nil, false, errNoSuch(what, id, "starting_after")
		}
		i := 0
		for i < len(all) && key(all[i]) >= k {
			i++
		}
		all = all[i:]
	} else if id := f.Get("ending_before"); id != "" {
		k, ok := lookup(id)
		if !ok {
			return nil, false, errNoSuch(what, id, "ending_before")
		}
		i := 0
		for i < len(all) && key(all[i]) > k {
			i++
		}
		before := all[:i]
		if int64(len(before)) > limit {
			return before[int64(len(before))-limit:], true, nil
		}
		return before, false, nil
	}
	if int64(len(all)) > limit {
		return all[:limit], true, nil
	}
	return all, false, nil
}

func cmpDesc(a, b int64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

func listOf[T any](data []T, hasMore bool, url string) listJSON {
	if data == nil {
		data = []T{}
	}
	return listJSON{Object: "list", Data: data, HasMore: hasMore, URL: url}
}

// Customers.

func (s *Stripe) newCustomerLocked(live bool, email, name string, metadata map[string]string) *customer {
	c := &customer{
		id: newID("cus_"), email: email, name: name, metadata: metadata,
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
	c := s.newCustomerLocked(s.view.live, r.Form.Get("email"), r.Form.Get("name"), md)
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

// Subscriptions.

func (s *Stripe) customerSubsLocked(customer string) []*subscription {
	var out []*subscription
	for _, sub := range s.subs {
		if sub.customer == customer {
			out = append(out, sub)
		}
	}
	slices.SortFunc(out, func(a, b *subscription) int { return cmpDesc(a.seq, b.seq) })
	return out
}

func (s *Stripe) apiListSubscriptions(r *http.Request) (any, *apiError) {
	status := r.Form.Get("status")
	keepStatus := func(st string) bool { return st != "canceled" }
	switch status {
	case "":
	case "all":
		keepStatus = func(string) bool { return true }
	case "ended":
		keepStatus = func(st string) bool { return st == "canceled" || st == "incomplete_expired" }
	default:
		if !validStatus(status) {
			return nil, errInvalid("status", "Invalid status: must be one of active, past_due, unpaid, canceled, "+
				"incomplete, incomplete_expired, trialing, paused, all, or ended")
		}
		keepStatus = func(st string) bool { return st == status }
	}
	customer, price := r.Form.Get("customer"), r.Form.Get("price")
	if customer != "" {
		if _, e := visible(s, s.customers, "customer", customer, "customer"); e != nil {
			return nil, e
		}
	}
	var all []*subscription
	for _, sub := range s.subs {
		if sub.livemode != s.view.live || customer != "" && sub.customer != customer || !keepStatus(sub.status) {
			continue
		}
		if price != "" && !slices.ContainsFunc(sub.items, func(it subItem) bool { return it.price.ID == price }) {
			continue
		}
		all = append(all, sub)
	}
	slices.SortFunc(all, func(a, b *subscription) int { return cmpDesc(a.seq, b.seq) })
	page, more, e := paginate(r.Form, all, func(s *subscription) int64 { return s.seq }, func(id string) (int64, bool) {
		if sub := s.subs[id]; sub != nil && sub.livemode == s.view.live {
			return sub.seq, true
		}
		return 0, false
	}, "subscription")
	if e != nil {
		return nil, e
	}
	exp := expandOf(r).sub("data")
	data := make([]subscriptionJSON, 0, len(page))
	for _, sub := range page {
		data = append(data, s.subJSON(sub, exp))
	}
	return listOf(data, more, "/v1/subscriptions"), nil
}

func (s *Stripe) apiGetSubscription(r *http.Request) (any, *apiError) {
	sub, e := visible(s, s.subs, "subscription", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	return s.subJSON(sub, expandOf(r)), nil
}

// apiUpdateSubscription supports cancel_at_period_end, pause_collection
// and metadata.
func (s *Stripe) apiUpdateSubscription(r *http.Request) (any, *apiError) {
	sub, e := visible(s, s.subs, "subscription", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	for k := range r.Form {
		if strings.HasPrefix(k, "items") || k == "price" || k == "plan" {
			return nil, errInvalid(k, "The tollgate sandbox cannot change a subscription's items; "+
				"cancel it and check out again.")
		}
	}
	cape, hasCape, e := formBool(r.Form, "cancel_at_period_end")
	if e != nil {
		return nil, e
	}
	if hasCape && sub.status == "canceled" {
		return nil, errInvalid("cancel_at_period_end",
			"A canceled subscription can only update its cancellation_details and metadata.")
	}
	pause, hasPause, e := s.pauseCollectionParam(r.Form)
	if e != nil {
		return nil, e
	}
	if hasPause && sub.status == "canceled" {
		return nil, errInvalid("pause_collection",
			"A canceled subscription can only update its cancellation_details and metadata.")
	}
	prev := map[string]any{}
	if hasCape && cape != sub.cancelAtPeriodEnd {
		s.setCancelAtPeriodEndLocked(sub, cape, prev)
	}
	if hasPause && (pause.behavior != sub.pauseBehavior || !pause.resumes.Equal(sub.pauseResumes)) {
		prev["pause_collection"] = pauseJSON(sub)
		sub.pauseBehavior, sub.pauseResumes = pause.behavior, pause.resumes
		s.log.Info("sandbox stripe: payment collection", "subscription", sub.id, "pause", pause.behavior, "resumes_at", pause.resumes)
	}
	if md, ok := formMap(r.Form, "metadata"); ok {
		sub.metadata = updateMetadata(sub.metadata, md, prev)
	}
	if len(prev) > 0 {
		s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
	}
	return s.subJSON(sub, expandOf(r)), nil
}

type pauseParam struct {
	behavior string // "": not paused
	resumes  time.Time
}

// pauseCollectionParam reads pause_collection[behavior] and
// pause_collection[resumes_at], or pause_collection="" (resume now), as
// the Update Subscription endpoint takes them.
func (s *Stripe) pauseCollectionParam(f url.Values) (pauseParam, bool, *apiError) {
	if f.Has("pause_collection") {
		if f.Get("pause_collection") != "" {
			return pauseParam{}, true, errInvalid("pause_collection", "Invalid pause_collection: must be an object or an empty string.")
		}
		return pauseParam{}, true, nil
	}
	md, ok := formMap(f, "pause_collection")
	if !ok {
		return pauseParam{}, false, nil
	}
	p := pauseParam{behavior: md["behavior"]}
	switch p.behavior {
	case "keep_as_draft", "mark_uncollectible", "void":
	case "":
		return pauseParam{}, true, errMissing("pause_collection[behavior]")
	default:
		return pauseParam{}, true, errInvalid("pause_collection[behavior]",
			"Invalid pause_collection[behavior]: must be one of keep_as_draft, mark_uncollectible, or void")
	}
	if v, ok := md["resumes_at"]; ok && v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return pauseParam{}, true, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error",
				Code: "parameter_invalid_integer", Param: "pause_collection[resumes_at]", Message: "Invalid integer: " + v}
		}
		p.resumes = time.Unix(sec, 0)
		if !p.resumes.After(s.billingNowLocked()) {
			return pauseParam{}, true, errInvalid("pause_collection[resumes_at]", "resumes_at must be in the future.")
		}
	}
	return p, true, nil
}

// setCancelAtPeriodEndLocked sets or clears cancel_at_period_end, noting
// the previous values in prev.
func (s *Stripe) setCancelAtPeriodEndLocked(sub *subscription, on bool, prev map[string]any) {
	prev["cancel_at_period_end"] = sub.cancelAtPeriodEnd
	prev["canceled_at"] = unixOrNull(sub.canceledAt)
	if sub.cancelAtPeriodEnd {
		prev["cancel_at"] = sub.periodEnd.Unix()
	} else {
		prev["cancel_at"] = nil
	}
	sub.cancelAtPeriodEnd = on
	if on {
		sub.canceledAt = s.billingNowLocked()
		sub.cancelReason = "cancellation_requested"
	} else {
		sub.canceledAt, sub.cancelReason = time.Time{}, ""
	}
}

func (s *Stripe) apiCancelSubscription(r *http.Request) (any, *apiError) {
	sub, e := visible(s, s.subs, "subscription", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	if sub.status == "canceled" {
		return nil, errInvalid("id", "This subscription is already canceled.")
	}
	s.cancelNowLocked(sub, s.billingNowLocked(), "cancellation_requested")
	return s.subJSON(sub, expandOf(r)), nil
}

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
		if q, ok := it["quantity"]; ok {
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

// apiGetAccount is the account the key belongs to (GET /v1/account).
func (s *Stripe) apiGetAccount(*http.Request) (any, *apiError) {
	return s.accountJSON(), nil
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

// Prices and products.

func (s *Stripe) apiListPrices(r *http.Request) (any, *apiError) {
	f := r.Form
	active, hasActive, e := formBool(f, "active")
	if e != nil {
		return nil, e
	}
	lookup := formList(f, "lookup_keys")
	typ, product, currency, interval := f.Get("type"), f.Get("product"), f.Get("currency"), f.Get("recurring[interval]")
	var all []*price
	for _, p := range s.prices {
		switch {
		case p.livemode != s.view.live, hasActive && !active, len(lookup) > 0, // no price has a lookup key
			typ == "recurring" && !p.recurring(), typ == "one_time" && p.recurring(),
			product != "" && p.product.id != product, currency != "" && p.Currency != currency,
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

func (s *Stripe) apiGetInvoice(r *http.Request) (any, *apiError) {
	in, e := visible(s, s.invoices, "invoice", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	return s.invoiceJSON(in), nil
}

// Events.

// apiListEvents lists events newest first, filtered by type (a trailing
// ".*" matches a family), types[], created (exact or [gt|gte|lt|lte]) and
// delivery_success (false: events whose webhook delivery is pending or
// failed).
func (s *Stripe) apiListEvents(r *http.Request) (any, *apiError) {
	f := r.Form
	types := formList(f, "types")
	if len(types) > 20 {
		return nil, errInvalid("types", "types may contain at most 20 event types.")
	}
	if t := f.Get("type"); t != "" {
		if len(types) > 0 {
			return nil, errInvalid("types", "You may pass either type or types, but not both.")
		}
		types = append(types, t)
	}
	var bounds [4]int64 // gt, gte, lt, lte; 0 = unset
	var has [4]bool
	for i, op := range []string{"gt", "gte", "lt", "lte"} {
		n, ok, e := formInt(f, "created["+op+"]")
		if e != nil {
			return nil, e
		}
		bounds[i], has[i] = n, ok
	}
	exact, hasExact, e := formInt(f, "created")
	if e != nil {
		return nil, e
	}
	ds, hasDS, e := formBool(f, "delivery_success")
	if e != nil {
		return nil, e
	}
	matchType := func(t string) bool {
		if len(types) == 0 {
			return true
		}
		for _, want := range types {
			if want == t {
				return true
			}
			if fam, ok := strings.CutSuffix(want, "*"); ok && strings.HasPrefix(t, fam) {
				return true
			}
		}
		return false
	}
	var all []*event
	for i := len(s.events) - 1; i >= 0; i-- {
		ev := s.events[i]
		c := ev.created
		switch {
		case ev.live != s.view.live, !matchType(ev.typ),
			hasExact && c != exact,
			has[0] && c <= bounds[0], has[1] && c < bounds[1],
			has[2] && c >= bounds[2], has[3] && c > bounds[3],
			hasDS && ds && ev.queued && !ev.delivered,
			hasDS && !ds && (!ev.queued || ev.delivered):
			continue
		}
		all = append(all, ev)
	}
	page, more, e := paginate(f, all, func(ev *event) int64 { return ev.seq }, func(id string) (int64, bool) {
		if ev := s.eventIdx[id]; ev != nil && ev.live == s.view.live {
			return ev.seq, true
		}
		return 0, false
	}, "event")
	if e != nil {
		return nil, e
	}
	data := make([]eventJSON, 0, len(page))
	for _, ev := range page {
		data = append(data, ev.json())
	}
	return listOf(data, more, "/v1/events"), nil
}

func (s *Stripe) apiGetEvent(r *http.Request) (any, *apiError) {
	ev, e := visible(s, s.eventIdx, "event", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	return ev.json(), nil
}

// updateMetadata applies a metadata update as Stripe does: an empty value
// deletes its key, an empty map clears everything. The old metadata goes
// into prev (the event's previous_attributes) when anything changed.
func updateMetadata(cur, md map[string]string, prev map[string]any) map[string]string {
	old := metadataJSON(cur)
	next := metadataJSON(cur)
	if len(md) == 0 {
		next = map[string]string{}
	}
	for k, v := range md {
		if v == "" {
			delete(next, k)
		} else {
			next[k] = v
		}
	}
	if maps.Equal(old, next) {
		return cur
	}
	prev["metadata"] = old
	return next
}

package stripesandbox

import (
	"crypto/subtle"
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
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
	mux.HandleFunc("POST /v1/webhook_endpoints", s.api(s.apiCreateWebhookEndpoint))
	mux.HandleFunc("GET /v1/webhook_endpoints", s.api(s.apiListWebhookEndpoints))
	mux.HandleFunc("GET /v1/webhook_endpoints/{id}", s.api(s.apiGetWebhookEndpoint))
	mux.HandleFunc("POST /v1/webhook_endpoints/{id}", s.api(s.apiUpdateWebhookEndpoint))
	mux.HandleFunc("DELETE /v1/webhook_endpoints/{id}", s.api(s.apiDeleteWebhookEndpoint))
	mux.HandleFunc("POST /v1/billing/meters", s.api(s.apiCreateMeter))
	mux.HandleFunc("GET /v1/billing/meters", s.api(s.apiListMeters))
	mux.HandleFunc("GET /v1/billing/meters/{id}", s.api(s.apiGetMeter))
	mux.HandleFunc("GET /v1/billing/meters/{id}/event_summaries", s.api(s.apiMeterSummaries))
	mux.HandleFunc("POST /v1/billing/meter_events", s.api(s.apiCreateMeterEvent))
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
	// shouldRetry is the Stripe-Should-Retry header of the answer ("":
	// none).
	shouldRetry string
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
		s.wait(r)
		if r.Context().Err() != nil {
			return // held until the client gave up
		}
		s.mu.Lock()
		if n := s.pageSize; n > 0 && r.Method == http.MethodGet {
			l, err := strconv.Atoi(r.Form.Get("limit"))
			if err != nil {
				l = 10 // paginate's default
			}
			if l > n {
				r.Form.Set("limit", strconv.Itoa(n))
			}
		}
		s.mu.Unlock()
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
		var v any
		var apiErr *apiError
		if s.apiFailures[r.Pattern] > 0 {
			s.apiFailures[r.Pattern]--
			apiErr = &apiError{Status: http.StatusInternalServerError, Type: "api_error",
				Message: "An unknown error occurred while processing your request."}
			switch st := s.apiFailStatus[r.Pattern]; {
			case st == http.StatusTooManyRequests:
				apiErr = &apiError{Status: st, Type: "invalid_request_error", Code: "rate_limit",
					Message: "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."}
			case st > 500:
				apiErr.Status = st
			}
		} else {
			v, apiErr = h(r)
		}
		status := http.StatusOK
		if apiErr != nil {
			status, v = apiErr.Status, errorJSON{*apiErr}
			if apiErr.shouldRetry != "" {
				w.Header().Set("Stripe-Should-Retry", apiErr.shouldRetry)
			}
		}
		body, err := json.Marshal(v)
		if err != nil {
			s.log.Error("sandbox stripe: marshal response", "path", r.URL.Path, "err", err)
			status, body = http.StatusInternalServerError, []byte(`{"error":{"type":"api_error","message":"internal error"}}`)
		}
		// Stripe saves the result of a request whose endpoint began to run,
		// "including 500 errors", and not a request refused before that
		// (a 4xx: parameters failed validation) (docs.stripe.com/api/idempotent_requests).
		if key != "" && (status < 300 || status >= 500) {
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

package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
)

// isNavigation reports whether r is a browser page load (as opposed to an
// API call, XHR or fetch), which is what earns a redirect instead of a JSON
// status. Mirrors Clerk's handshake eligibility and oauth2-proxy's isAjax.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	if dest := r.Header.Get("Sec-Fetch-Dest"); dest != "" {
		return dest == "document" || dest == "iframe"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// noStore marks a tollgate answer that must never be cached: redirects that
// depend on cookies, 401s and 402s. Chrome caches 307s in background tabs.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
}

func addSetCookies(w http.ResponseWriter, cookies []string) {
	for _, c := range cookies {
		w.Header().Add("Set-Cookie", c)
	}
}

// redirect answers with code and a Location that tollgate built itself
// (never one taken from the request without validation).
func redirect(w http.ResponseWriter, location string, code int) {
	noStore(w)
	w.Header().Set("Location", location)
	w.WriteHeader(code)
}

// writeJSON answers with v as JSON. Tollgate's JSON errors always carry an
// "error" code that clients can switch on.
func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// errorBody is the JSON shape of every tollgate error.
type errorBody struct {
	Error      string     `json:"error"`
	Message    string     `json:"message,omitempty"`
	Route      string     `json:"route,omitempty"`
	UpgradeURL string     `json:"upgrade_url,omitempty"`
	SignInURL  string     `json:"sign_in_url,omitempty"`
	Plans      []planJSON `json:"plans,omitempty"`
}

type planJSON struct {
	Key  string `json:"key"`
	Name string `json:"name"`
}

// statusWords is the fixed, client-facing wording per status: the JSON
// error code, the page title and its message. Details go to the log only,
// never to the visitor.
func statusWords(status int) (code, title, message string) {
	switch status {
	case http.StatusBadRequest:
		return "bad_request", "Bad request", "The request could not be understood."
	case http.StatusUnauthorized:
		return "unauthorized", "Sign in required", "You need to sign in to see this page."
	case http.StatusForbidden:
		return "forbidden", "Access denied", "This page is not available."
	case http.StatusNotFound:
		return "not_found", "Page not found", "There is nothing at this address."
	case http.StatusMethodNotAllowed:
		return "method_not_allowed", "Method not allowed", "This address does not accept that kind of request."
	case http.StatusTooManyRequests:
		return "too_many_requests", "Too many requests", "You have tried this too often in a short time. Please wait a moment and try again."
	case http.StatusRequestTimeout:
		return "request_timeout", "Request timed out", "The request stopped arriving before it was complete."
	case http.StatusBadGateway:
		return "bad_gateway", "The site is not answering", "We could not reach the application behind this page. Please try again in a moment."
	case http.StatusServiceUnavailable:
		return "unavailable", "Temporarily unavailable", "Something this page needs is not answering right now. Please try again in a moment."
	case http.StatusGatewayTimeout:
		return "gateway_timeout", "The site took too long", "The application behind this page did not answer in time. Please try again in a moment."
	}
	return "error", http.StatusText(status), ""
}

// wantsHTML decides between the HTML page and the JSON body for an error.
// A browser's form POST is a navigation too (Sec-Fetch-Dest: document).
func wantsHTML(r *http.Request) bool {
	dest := r.Header.Get("Sec-Fetch-Dest")
	return isNavigation(r) || dest == "document" || (dest == "" && strings.Contains(r.Header.Get("Accept"), "text/html"))
}

// writeError is the one place an error status becomes a response: an HTML
// page for people, JSON for programs.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, code int) {
	if code == http.StatusUnauthorized || code >= 500 {
		noStore(w)
	}
	errCode, title, msg := statusWords(code)
	if wantsHTML(r) {
		page := errorPage{Code: code, Title: title, Message: msg}
		switch code {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			// It may pass: the way forward is this address again. A form's
			// POST cannot be repeated by a link, so it gets the home page.
			page.Retry = r.Method == http.MethodGet || r.Method == http.MethodHead
		}
		s.pages.render(w, r, code, "error", page)
		return
	}
	writeJSON(w, code, errorBody{Error: errCode, Message: msg})
}

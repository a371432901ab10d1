package gateway

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/tollgate/tollgate/proxy"
)

// API keys at the gate: what a refused key is answered, the per-address
// limit on refused keys, the scope check, and keeping keys from the
// upstream. Which key a request carries and what it names is the
// Authenticator's (proxy/apikey); the gate judges the Identity it gets.

const (
	// keyFailureWindow is the window api_keys.max_failures counts in.
	keyFailureWindow = time.Minute
	// keyFailureAddrs bounds the addresses remembered; the least recently
	// failing are forgotten first.
	keyFailureAddrs = 100_000
	// keyBudgetRetryAfter is the Retry-After of a key that could not be
	// verified for Clerk's spent budget: its window's length, in seconds.
	keyBudgetRetryAfter = "10"
)

// keyFailures counts refused keys per client address in fixed windows. It
// is asked only after a key was refused, so a valid key is never refused
// for its address's failures: behind an untrusted proxy every client
// shares one address.
type keyFailures struct {
	mu    sync.Mutex
	addrs *simplelru.LRU[string, *failureWindow]
}

type failureWindow struct {
	start time.Time
	n     int
}

func newKeyFailures() *keyFailures {
	addrs, err := simplelru.NewLRU[string, *failureWindow](keyFailureAddrs, nil)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return &keyFailures{addrs: addrs}
}

// fail counts one refused key from addr and reports how long addr must
// wait when it is over max in the current window (0: not limited).
func (l *keyFailures) fail(addr string, max int, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.addrs.Get(addr)
	if !ok || now.Sub(w.start) >= keyFailureWindow || now.Before(w.start) {
		w = &failureWindow{start: now}
		l.addrs.Add(addr, w)
	}
	w.n++
	if w.n > max {
		return w.start.Add(keyFailureWindow).Sub(now)
	}
	return 0
}

// keyRefused answers a request whose API key was refused: 401
// invalid_api_key, 429 once its address refused too many in a minute, or
// 503 when the key could not be checked (that is not the client's fault,
// and is not counted), with Retry-After when Clerk's budget is the cause.
func (s *Server) keyRefused(w http.ResponseWriter, r *http.Request, e *logEntry, res *proxy.AuthResult) {
	noStore(w)
	if errors.Is(res.APIKeyErr, proxy.ErrAPIKeyUnavailable) {
		e.decision, e.reason = "error", "api_key_unavailable"
		if errors.Is(res.APIKeyErr, proxy.ErrRateLimited) {
			// Clerk's Backend API budget, or the key verifications' share
			// of it, is spent: it is counted over a sliding 10 s window
			// (README, "The Backend API budget"), so a client that waits
			// that long finds room again.
			w.Header().Set("Retry-After", keyBudgetRetryAfter)
		}
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "unavailable", Message: "The API key could not be checked; try again."})
		return
	}
	if wait := s.keyFails.fail(ClientAddr(r, s.cfg.TrustedProxies), s.cfg.APIKeys.MaxFailures, s.now()); wait > 0 {
		e.decision = "api_key_rate_limited"
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		writeJSON(w, http.StatusTooManyRequests, errorBody{Error: "rate_limited", Message: "Too many invalid API keys from this address; try again later."})
		return
	}
	e.decision = "invalid_api_key"
	w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate", error="invalid_token"`)
	writeJSON(w, http.StatusUnauthorized, errorBody{Error: "invalid_api_key", Message: "The API key is not valid."})
}

// keyAllowed checks a key's identity against the rule: its scopes must
// name the route (or be "*"; a rule without a route ID needs "*"), and an
// organisation's key, which no person holds, does not open signed_in
// routes, which promise the upstream a user. It answers 403
// insufficient_scope itself and reports false otherwise.
func (s *Server) keyAllowed(w http.ResponseWriter, e *logEntry, id *proxy.Identity, m proxy.RouteMatch) bool {
	if !id.IsAPIKey() {
		return true
	}
	msg := ""
	switch {
	case !proxy.ScopesAllow(id.KeyScopes, m.RouteID):
		msg = "The API key's scopes do not include this route."
	case id.UserID == "" && m.Access != proxy.AccessPaid:
		msg = "An organisation's API key opens only the organisation's paid routes."
	default:
		return true
	}
	e.decision = "insufficient_scope"
	noStore(w)
	writeJSON(w, http.StatusForbidden, errorBody{Error: "insufficient_scope", Message: msg, Route: m.RouteID})
	return false
}

// stripAPIKeys removes API keys from a request for the upstream: the
// configured key header always, and Authorization when it carries a key
// (a Clerk session token there is the app's to read, as before).
func stripAPIKeys(h http.Header, header string, clerkKeys bool) {
	// The key header in any spelling an app's framework may read as it
	// (X_API_Key is X-API-Key to CGI and WSGI), and any Authorization value
	// holding a key, whatever its scheme: a key never reaches the app.
	if header != "" {
		lower := strings.ToLower(header)
		for k := range h {
			if foldedEqual(k, lower) {
				delete(h, k)
			}
		}
	}
	for _, v := range h.Values("Authorization") {
		if strings.Contains(v, "tg_live_") || strings.Contains(v, "tg_test_") || clerkKeys && strings.Contains(v, proxy.ClerkAPIKeyPrefix) {
			h.Del("Authorization")
			return
		}
	}
}

// bearerToken is the token of an "Authorization: Bearer …" value.
func bearerToken(v string) (string, bool) {
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(v[7:]), true
}

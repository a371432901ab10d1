package clerksandbox

import (
	"crypto/subtle"
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy/sandbox"
)

//go:embed templates
var templateFS embed.FS

func (c *Clerk) routes() http.Handler {
	mux := http.NewServeMux()

	// Backend API (Authorization: Bearer <secret key>).
	mux.HandleFunc("GET /v1/jwks", c.bapi(c.handleJWKS))
	mux.HandleFunc("GET /v1/users/{id}", c.bapi(c.handleUser))
	mux.HandleFunc("GET /v1/sessions", c.bapi(c.handleSessions))
	mux.HandleFunc("GET /v1/sessions/{id}", c.bapi(c.handleSession))
	mux.HandleFunc("POST /v1/sessions/{id}/revoke", c.bapi(c.handleRevoke))
	mux.HandleFunc("GET /v1/organizations/{id}", c.bapi(c.handleOrganization))
	mux.HandleFunc("GET /v1/clients/handshake_payload", c.bapi(c.handleHandshakePayload))
	mux.HandleFunc("POST /v1/api_keys", c.bapi(c.handleCreateAPIKey))
	mux.HandleFunc("POST /v1/api_keys/{id}/revoke", c.bapi(c.handleRevokeAPIKey))
	mux.HandleFunc("POST /v1/api_keys/verify", c.bapi(c.handleVerifyAPIKey))
	mux.HandleFunc("/v1/", c.bapi(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "resource_not_found", "not found",
			"The requested resource was not found.")
	}))

	// Frontend API.
	mux.HandleFunc("GET /v1/client/handshake", c.handleHandshake)
	mux.HandleFunc("GET /.well-known/jwks.json", c.handleJWKS)

	// Account Portal.
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/sign-in", http.StatusFound)
	})
	mux.HandleFunc("GET /sign-in", c.handleSignInPage)
	mux.Handle("POST /sign-in", http.NewCrossOriginProtection().Handler(http.HandlerFunc(c.handleSignIn)))
	mux.HandleFunc("GET /organization", c.handleOrganizationPage)
	mux.HandleFunc("GET /sign-up", func(w http.ResponseWriter, r *http.Request) {
		u := "/sign-in"
		if r.URL.RawQuery != "" {
			u += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, u, http.StatusFound)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.renderError(w, http.StatusNotFound, "Not found", "The tollgate sandbox has no page at this address.")
	})
	return mux
}

// bapi guards a Backend API handler with the secret key, answering 401 with
// Clerk's error body otherwise. Every call is counted (BackendCalls).
//
// Over the instance's rate limit it answers 429 with Retry-After, the
// seconds until the block ends, as Clerk does ("Requests that have been
// rate limited will receive the Retry-After response header, which
// contains the number of seconds after which the block expires").
func (c *Clerk) bapi(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.calls[r.Pattern]++
		held := c.holds[r.Pattern]
		c.mu.Unlock()
		if held != nil {
			select {
			case held.arrived <- struct{}{}:
			default:
			}
			select {
			case <-held.release:
			case <-r.Context().Done():
				return
			}
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(c.sk)) != 1 {
			writeError(w, http.StatusUnauthorized, "authentication_invalid",
				"Invalid authentication",
				"Unable to authenticate the request, you need to supply an active API key")
			return
		}
		if wait := c.overLimit(r.Pattern); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
			writeError(w, http.StatusTooManyRequests, "too_many_requests", "Too Many Requests",
				"You have exceeded the maximum allowed rate limit, please try again later.")
			return
		}
		h(w, r)
	}
}

func (c *Clerk) handleJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(c.jwks)
}

func (c *Clerk) handleUser(w http.ResponseWriter, r *http.Request) {
	u, ok := c.user(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "resource_not_found", "not found",
			"The requested resource was not found.")
		return
	}
	writeJSON(w, http.StatusOK, c.wireUser(u))
}

func (c *Clerk) handleSession(w http.ResponseWriter, r *http.Request) {
	s, ok := c.sessionCopy(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "resource_not_found", "not found",
			"The requested resource was not found.")
		return
	}
	writeJSON(w, http.StatusOK, c.wireSession(s))
}

// handleSessions lists sessions as Clerk's Backend API does (GET
// /v1/sessions): a client_id or a user_id is required, status filters,
// newest first, limit (1 to 500, default 10) and offset page it, and
// paginated=true wraps the page as {data, total_count}.
func (c *Clerk) handleSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	userID, clientID, status := q.Get("user_id"), q.Get("client_id"), q.Get("status")
	if userID == "" && clientID == "" {
		writeError(w, http.StatusBadRequest, "form_param_missing", "missing parameter",
			"At least one of client_id or user_id must be provided.")
		return
	}
	limit, offset := 10, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			writeError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "invalid limit", "limit must be between 1 and 500.")
			return
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "invalid offset", "offset must be 0 or more.")
			return
		}
		offset = n
	}
	c.mu.Lock()
	var all []sessionState
	for _, s := range c.sessions {
		cp := *s
		cp.status = s.statusAt(c.now())
		if (userID == "" || cp.userID == userID) && (clientID == "" || cp.clientID == clientID) && (status == "" || cp.status == status) {
			all = append(all, cp)
		}
	}
	c.mu.Unlock()
	sort.Slice(all, func(i, j int) bool {
		if !all[i].createdAt.Equal(all[j].createdAt) {
			return all[i].createdAt.After(all[j].createdAt)
		}
		return all[i].id > all[j].id
	})
	total := len(all)
	page := []sessionJSON{}
	for i := offset; i < total && len(page) < limit; i++ {
		page = append(page, c.wireSession(all[i]))
	}
	if q.Get("paginated") == "true" {
		writeJSON(w, http.StatusOK, map[string]any{"data": page, "total_count": total})
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (c *Clerk) handleRevoke(w http.ResponseWriter, r *http.Request) {
	c.RevokeSession(r.PathValue("id"))
	c.handleSession(w, r)
}

func (c *Clerk) handleOrganization(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	org := c.orgs[id]
	if org == nil { // Clerk accepts the slug too
		for _, o := range c.orgs {
			if o.slug == id {
				org = o
			}
		}
	}
	if org == nil {
		writeError(w, http.StatusNotFound, "resource_not_found", "not found",
			"The requested resource was not found.")
		return
	}
	writeJSON(w, http.StatusOK, c.wireOrganization(org))
}

func (c *Clerk) handleHandshakePayload(w http.ResponseWriter, r *http.Request) {
	d, ok := c.nonce(r.URL.Query().Get("nonce"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_nonce", "invalid nonce",
			"The handshake nonce is unknown or has expired.")
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Directives []string `json:"directives"`
	}{d})
}

// handleHandshake is the Frontend API's GET /v1/client/handshake: it reads
// the sandbox client cookie, builds the Set-Cookie directives for the
// client's state, and sends the browser back to redirect_url carrying them
// in a signed __clerk_handshake cookie (or a __clerk_handshake_nonce). Like
// a production instance's, never in the URL: "In production, the handshake
// token is being transferred as a cookie", as Clerk's backend SDK puts it.
func (c *Clerk) handleHandshake(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	c.mu.Lock()
	c.apiVersions[q.Get("__clerk_api_version")]++
	c.mu.Unlock()
	raw := q.Get("redirect_url")
	if raw == "" {
		writeError(w, http.StatusBadRequest, "form_param_missing", "redirect_url is missing",
			"The redirect_url query parameter is required.")
		return
	}
	target, err := c.checkRedirect(raw)
	if err != nil {
		c.log.Warn("sandbox clerk: handshake refused", "redirect_url", raw, "err", err)
		writeError(w, http.StatusBadRequest, "invalid_redirect_url", "invalid redirect_url", err.Error())
		return
	}
	nonce := c.nonceMode && q.Get("format") == "nonce"
	if c.nonceMode && !nonce {
		c.log.Warn("sandbox clerk: nonce handshakes are on but the request lacks format=nonce; sending the token")
	}
	// The client: its cookie on the Frontend API host; on a development
	// instance, the dev browser the SDK names in the URL (a new one, signed
	// out, when it names none Clerk knows).
	client := cookieValue(r, ClientCookie)
	if c.dev {
		if client = q.Get("__clerk_db_jwt"); !c.knownClient(client) {
			client = c.newDevBrowser()
		}
	}
	directives, userID, err := c.handshakeDirectives(client, target.Scheme == "https", nonce, c.proxyURL(r))
	if err != nil {
		c.log.Error("sandbox clerk: handshake", "err", err)
		writeError(w, http.StatusInternalServerError, "internal_clerk_error", "internal error", err.Error())
		return
	}
	name, value := "__clerk_handshake_nonce", ""
	if nonce {
		value = c.storeNonce(directives)
	} else {
		tok, err := c.signHandshake(directives)
		if err != nil {
			c.log.Error("sandbox clerk: sign handshake", "err", err)
			writeError(w, http.StatusInternalServerError, "internal_clerk_error", "internal error", err.Error())
			return
		}
		name, value = "__clerk_handshake", tok
	}
	c.log.Info("sandbox clerk: handshake", "user", userID, "signed_in", userID != "",
		"reason", q.Get("__clerk_hs_reason"), "nonce", nonce, "development", c.dev, "redirect_url", target.String())
	w.Header().Set("Cache-Control", "no-store")
	if c.dev {
		// "In development, the handshake token is being transferred in the
		// URL as a query parameter", as Clerk's backend SDK puts it.
		http.Redirect(w, r, withQueryParam(target, name, value), http.StatusTemporaryRedirect)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	http.Redirect(w, r, target.String(), http.StatusTemporaryRedirect)
}

// proxyURL is the Frontend API proxy a request came through: its
// Clerk-Proxy-Url header, believed only beside the instance's secret key
// in Clerk-Secret-Key, as Clerk's Frontend API requires of a proxy
// (https://clerk.com/docs/guides/dashboard/dns-domains/proxy-fapi). Tokens
// minted for such a request name the proxy as their issuer.
func (c *Clerk) proxyURL(r *http.Request) string {
	p := strings.TrimSuffix(r.Header.Get("Clerk-Proxy-Url"), "/")
	if p == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get("Clerk-Secret-Key")), []byte(c.sk)) != 1 {
		return ""
	}
	if u, err := url.Parse(p); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return p
}

// FrontendProxy is a Clerk Frontend API proxy as Clerk documents one
// (https://clerk.com/docs/guides/dashboard/dns-domains/proxy-fapi), for
// tests and demos: requests under proxyURL's path are forwarded to the
// Frontend API at target with that prefix removed, carrying
// Clerk-Proxy-Url (proxyURL), Clerk-Secret-Key and X-Forwarded-For.
func FrontendProxy(target, proxyURL *url.URL, secretKey string) http.Handler {
	prefix := strings.TrimSuffix(proxyURL.Path, "/")
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.URL.Path = strings.TrimSuffix(target.Path, "/") + strings.TrimPrefix(pr.In.URL.Path, prefix)
		pr.Out.URL.RawPath = ""
		pr.SetXForwarded()
		pr.Out.Header.Set("Clerk-Proxy-Url", strings.TrimSuffix(proxyURL.String(), "/"))
		pr.Out.Header.Set("Clerk-Secret-Key", secretKey)
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != prefix && !strings.HasPrefix(r.URL.Path, prefix+"/") {
			http.NotFound(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	})
}

// withQueryParam is u with name=value added to its query, the rest of the
// query kept as it was written.
func withQueryParam(u *url.URL, name, value string) string {
	out := *u
	p := url.QueryEscape(name) + "=" + url.QueryEscape(value)
	if out.RawQuery == "" {
		out.RawQuery = p
	} else {
		out.RawQuery += "&" + p
	}
	return out.String()
}

type userView struct {
	ID, Name, Email, Detail string
	Org                     string // the organisation's name ("" without one)
}

func (c *Clerk) userView(u User) userView {
	detail := "No organisation"
	if u.OrgID != "" {
		role := "member"
		if u.OrgRole == "admin" {
			role = "admin"
		}
		detail = fmt.Sprintf("%s of %s (%s)", role, u.OrgName, u.OrgSlug)
	}
	return userView{ID: u.ID, Name: u.Name(), Email: u.Email, Detail: detail, Org: u.OrgName}
}

type pageData struct {
	Title       string
	FAPIHost    string
	BaseURL     string
	RedirectURL string
	// ContinueURL is where "Continue as" goes: RedirectURL, with the dev
	// browser token on a development instance.
	ContinueURL string
	DevBrowser  string // the form's dev browser token (development)
	Users       []userView
	Current     *userView
	SessionID   string
	Error       string
	Message     string
}

func (c *Clerk) page(title string) pageData {
	return pageData{Title: title, FAPIHost: c.fapiHost, BaseURL: c.base()}
}

func (c *Clerk) handleSignInPage(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("redirect_url")
	if raw != "" {
		if _, err := c.checkRedirect(raw); err != nil {
			c.renderError(w, http.StatusBadRequest, "Invalid redirect", err.Error())
			return
		}
	}
	client := c.clientOf(r, r.URL.Query().Get("__clerk_db_jwt"))
	if c.dev {
		// The Account Portal's clerk-js adopts the dev browser the app
		// named, or starts one, and remembers it on its own site.
		if !c.knownClient(client) {
			client = c.newDevBrowser()
		}
		http.SetCookie(w, &http.Cookie{Name: DevBrowserCookie, Value: client, Path: "/", MaxAge: uatMaxAge,
			HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	}
	d := c.signInData(client, raw)
	if d.Current != nil && raw != "" {
		// Already signed in: the Account Portal sends the browser straight
		// back, as Clerk's does for a signed-in visitor.
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, d.ContinueURL, http.StatusFound)
		return
	}
	c.render(w, http.StatusOK, "sign_in", d)
}

// clientOf is the client a sign-in page request belongs to: its client
// cookie; on a development instance, the dev browser token the app named
// (named), else the one the portal remembers.
func (c *Clerk) clientOf(r *http.Request, named string) string {
	if !c.dev {
		return cookieValue(r, ClientCookie)
	}
	if named != "" && c.knownClient(named) {
		return named
	}
	return cookieValue(r, DevBrowserCookie)
}

// backToApp is where the Account Portal sends the browser after sign-in:
// redirectURL, with __clerk_db_jwt on a development instance, as Clerk's
// does (clerk-js buildUrlWithAuth).
func (c *Clerk) backToApp(redirectURL, client string) string {
	if !c.dev || redirectURL == "" {
		return redirectURL
	}
	u, err := url.Parse(redirectURL)
	if err != nil {
		return redirectURL
	}
	return withQueryParam(u, "__clerk_db_jwt", client)
}

func (c *Clerk) signInData(client, redirectURL string) pageData {
	d := c.page("Sign in")
	d.RedirectURL = redirectURL
	d.ContinueURL = c.backToApp(redirectURL, client)
	if c.dev {
		d.DevBrowser = client
	}
	for _, u := range c.Users() {
		d.Users = append(d.Users, c.userView(u))
	}
	if s, _, ok := c.activeSession(client); ok {
		if u, ok := c.user(s.userID); ok {
			v := c.userView(u)
			d.Current, d.SessionID = &v, s.id
		}
	}
	return d
}

// handleOrganizationPage stands in for the Account Portal's organisation
// page. The sandbox's users each belong to at most one organisation, always
// the active one, so choosing another organisation means signing in as one
// of its members: the page offers that, and the way back. Signed out, it
// sends the browser to sign in first, as the Account Portal does.
func (c *Clerk) handleOrganizationPage(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("redirect_url")
	if raw != "" {
		if _, err := c.checkRedirect(raw); err != nil {
			c.renderError(w, http.StatusBadRequest, "Invalid redirect", err.Error())
			return
		}
	}
	client := c.clientOf(r, r.URL.Query().Get("__clerk_db_jwt"))
	d := c.signInData(client, raw)
	if d.Current == nil {
		u := "/sign-in"
		if r.URL.RawQuery != "" {
			u += "?" + r.URL.RawQuery
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, u, http.StatusFound)
		return
	}
	d.Title = "Organisation"
	members := d.Users[:0]
	for _, u := range d.Users {
		if u.Org != "" && u.ID != d.Current.ID {
			members = append(members, u)
		}
	}
	d.Users = members
	c.render(w, http.StatusOK, "organization", d)
}

func (c *Clerk) handleSignIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		c.renderError(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	raw := r.PostForm.Get("redirect_url")
	if raw != "" {
		if _, err := c.checkRedirect(raw); err != nil {
			c.renderError(w, http.StatusBadRequest, "Invalid redirect", err.Error())
			return
		}
	}
	userID := r.PostForm.Get("user_id")
	client := c.clientOf(r, r.PostForm.Get("dev_browser"))
	if _, ok := c.user(userID); !ok {
		d := c.signInData(client, raw)
		d.Error = "Choose one of the demo users below."
		c.render(w, http.StatusBadRequest, "sign_in", d)
		return
	}
	res, err := c.signIn(client, userID)
	if err != nil {
		c.log.Error("sandbox clerk: sign in", "user", userID, "err", err)
		c.renderError(w, http.StatusInternalServerError, "Sign-in failed", "The sandbox could not sign you in.")
		return
	}
	for _, ck := range c.signInCookies(res, r.TLS != nil) {
		http.SetCookie(w, ck)
	}
	if raw != "" {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, c.backToApp(raw, res.clientCookie), http.StatusSeeOther)
		return
	}
	d := c.signInData(res.clientCookie, "")
	u, _ := c.user(userID)
	v := c.userView(u)
	d.Title, d.Current, d.SessionID = "Signed in", &v, res.sessionID
	c.render(w, http.StatusOK, "signed_in", d)
}

func (c *Clerk) renderError(w http.ResponseWriter, status int, title, msg string) {
	d := c.page(title)
	d.Message = msg
	c.render(w, status, "error", d)
}

func (c *Clerk) render(w http.ResponseWriter, status int, name string, data pageData) {
	sandbox.RenderPage(w, c.log, c.pages, status, name, data)
}

func cookieValue(r *http.Request, name string) string {
	if ck, err := r.Cookie(name); err == nil {
		return ck.Value
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"errors":[{"code":"internal_clerk_error","message":"internal error"}]}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError writes Clerk's error body:
// {"errors":[{"message","long_message","code"}],"clerk_trace_id"}.
func writeError(w http.ResponseWriter, status int, code, msg, long string) {
	type apiError struct {
		Message     string `json:"message"`
		LongMessage string `json:"long_message"`
		Code        string `json:"code"`
	}
	writeJSON(w, status, struct {
		Errors  []apiError `json:"errors"`
		TraceID string     `json:"clerk_trace_id"`
	}{[]apiError{{msg, long, code}}, randomHex(16)})
}

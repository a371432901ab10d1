// Package admin is tollgate's admin listener: liveness, readiness,
// Prometheus metrics and the admin API (users and their subscriptions,
// syncs from Stripe, comps with an audit trail, backups).
//
// It is served on admin.listen only, never on the public listener.
// /healthz, /readyz and /metrics need no token: whoever can reach the admin
// listener can read them (bind it to loopback or a private network). The
// /api/ routes need "Authorization: Bearer <admin.token>"; without a
// configured token they do not exist (404).
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Store is what the admin API reads and writes, in the domain's terms.
// Implemented by proxy/bolt.Store.
type Store interface {
	ListUsers(ctx context.Context, f proxy.UserFilter) ([]proxy.UserSummary, string, error)
	UserDetail(ctx context.Context, subject proxy.Subject, limit int) (proxy.UserDetail, error)
	CustomerOf(ctx context.Context, subject proxy.Subject) (string, error)
	Comp(ctx context.Context, id string) (proxy.Comp, error)
	PutComp(ctx context.Context, c proxy.Comp) error
	RevokeComp(ctx context.Context, id, by, reason string) error
	Audit(ctx context.Context, e proxy.AuditEntry) error
	Backup(w io.Writer) (int64, error)
}

// Billing syncs from Stripe. Implemented by *stripe.Billing.
type Billing interface {
	SyncCustomer(ctx context.Context, customerID, eventID string) error
	SyncAll(ctx context.Context) (int, error)
}

// Cache is the entitlement LRU. Implemented by *cache.EntitlementCache.
type Cache interface {
	Remove(s proxy.Subject)
}

// Check is one readiness check.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
	// Advisory checks are reported in /readyz's body ("warnings") and
	// logged, but never make it fail: a condition every replica shares,
	// which taking replicas out of the load balancer cannot mend (the
	// webhook backlog: README, "Admin listener").
	Advisory bool
}

// Config configures the admin handler. Everything is optional.
type Config struct {
	Token   string  // admin.token: bearer token of the /api/ routes ("" : no API)
	Store   Store   // nil: the user, comp and backup routes answer 503
	Billing Billing // nil: the sync route answers 503
	Cache   Cache   // nil: nothing to drop after a comp changes
	// Keys is the API key store (nil: api_keys is off; the key routes
	// answer 503); LiveKeys makes tg_live_ keys (Stripe live mode).
	Keys     proxy.APIKeyStore
	LiveKeys bool
	// Outbox is the usage outbox (nil: its routes answer 503).
	Outbox Outbox
	Plans  func() []proxy.Plan // the configured plans, read per request (a reload may change them): comps must name one
	// Access is stripe.past_due_grace and stripe.paused_collection, read
	// per request like Plans: what the listing says grants is what the
	// gate would let through (proxy.Grants). nil: the zero policy.
	Access func() proxy.AccessPolicy
	// Usage is the quota counters (nil: no plan has limits; the usage
	// route answers 503); Free is free:, read per request like Plans.
	Usage Usage
	Free  func() *proxy.Plan
	// Replicas are the heartbeats of a shared store (nil: one replica;
	// GET /api/replicas answers 503).
	Replicas Replicas
	Ready    []Check // /readyz: store, Clerk keys, Stripe, …
	// ReadyTimeout bounds the readiness checks together. Default 5s.
	ReadyTimeout time.Duration
	Metrics      http.Handler     // served at /metrics (nil: 404)
	Logger       *slog.Logger     // nil: discard
	Now          func() time.Time // nil: time.Now
	// Context bounds work that outlives a request (a sync of all customers
	// started by POST /api/sync). Default context.Background().
	Context context.Context
	// Background runs such work. Default: a new goroutine. The gateway
	// passes one it waits for before closing the store.
	Background func(fn func())
}

// Audit actions.
const (
	ActionCompGranted   = "comp.granted"
	ActionCompRevoked   = "comp.revoked"
	ActionSyncRequested = "sync.requested"
	ActionBackup        = "backup.downloaded"
)

// ActorHeader names who acts through the admin API, for the audit trail.
// Without it the actor is DefaultActor.
const (
	ActorHeader  = "X-Admin-Actor"
	DefaultActor = "admin-token"
)

const (
	maxBody       = 64 << 10
	detailLimit   = 100
	syncTimeout   = 2 * time.Minute
	maxCompDays   = 3650
	maxReasonLen  = 500
	maxActorLen   = 64
	readyErrorLen = 300
)

type handler struct {
	cfg       Config
	tokenHash [sha256.Size]byte
	log       *slog.Logger
	now       func() time.Time
	ctx       context.Context
}

// New returns the admin listener's handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 5 * time.Second
	}
	h := &handler{cfg: cfg, log: cfg.Logger, now: cfg.Now, ctx: cfg.Context}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.ctx == nil {
		h.ctx = context.Background()
	}
	if h.cfg.Background == nil {
		h.cfg.Background = func(fn func()) { go fn() }
	}
	if h.cfg.Plans == nil {
		h.cfg.Plans = func() []proxy.Plan { return nil }
	}
	if h.cfg.Access == nil {
		h.cfg.Access = func() proxy.AccessPolicy { return proxy.AccessPolicy{} }
	}
	for _, c := range cfg.Ready {
		if c.Name == "" || c.Run == nil {
			return nil, errors.New("admin: a readiness check needs a name and a function")
		}
	}
	h.tokenHash = sha256.Sum256([]byte(cfg.Token))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", h.readyz)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	if cfg.Token == "" {
		mux.HandleFunc("/api/", func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusNotFound, "the admin API is off: set admin.token to enable it")
		})
		return mux, nil
	}
	api := http.NewServeMux()
	r := router{mux: api, allow: map[string][]string{}}
	r.handle("GET", "/api/users", h.listUsers)
	r.handle("GET", "/api/users/{id}", h.userDetail)
	r.handle("POST", "/api/users/{id}/comps", h.grantComp)
	r.handle("DELETE", "/api/comps/{id}", h.revokeComp)
	r.handle("POST", "/api/sync", h.sync)
	r.handle("GET", "/api/backup", h.backup)
	r.handle("GET", "/api/users/{id}/keys", h.listKeys)
	r.handle("POST", "/api/users/{id}/keys", h.createKey)
	r.handle("DELETE", "/api/keys/{id}", h.revokeKey)
	r.handle("GET", "/api/users/{id}/usage", h.usage)
	r.handle("GET", "/api/replicas", h.replicas)
	r.handle("GET", "/api/outbox", h.outbox)
	r.handle("POST", "/api/outbox/{seq}", h.outboxAction)
	api.HandleFunc("/api/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "no such admin API route")
	})
	mux.Handle("/api/", h.auth(api))
	return mux, nil
}

// router registers "METHOD path" routes and, per path, a JSON 405 for the
// other methods.
type router struct {
	mux   *http.ServeMux
	allow map[string][]string
}

func (r *router) handle(method, path string, fn http.HandlerFunc) {
	r.mux.HandleFunc(method+" "+path, fn)
	if _, ok := r.allow[path]; !ok {
		r.mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", strings.Join(r.allow[path], ", "))
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		})
	}
	r.allow[path] = append(r.allow[path], method)
}

// auth lets through requests bearing the admin token (compared in
// constant time, by hash, so not even its length leaks).
func (h *handler) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], h.tokenHash[:]) != 1 {
			h.log.WarnContext(r.Context(), "admin API: unauthorized request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
				"authorization_present", r.Header.Get("Authorization") != "")
			w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized: send Authorization: Bearer <admin.token>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readyFailure is one failing readiness check.
type readyFailure struct {
	Name  string `json:"name"`
	Error string `json:"error"`
}

// readyz runs every check at once, bounded by ReadyTimeout.
func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.ReadyTimeout)
	defer cancel()
	errs := make([]error, len(h.cfg.Ready))
	var wg sync.WaitGroup
	for i, c := range h.cfg.Ready {
		wg.Go(func() { errs[i] = runCheck(ctx, c) })
	}
	wg.Wait()
	var failing, warnings []readyFailure
	for i, err := range errs {
		if err == nil {
			continue
		}
		msg := err.Error()
		if len(msg) > readyErrorLen {
			msg = msg[:readyErrorLen] + "…"
		}
		f := readyFailure{Name: h.cfg.Ready[i].Name, Error: msg}
		if h.cfg.Ready[i].Advisory {
			warnings = append(warnings, f)
		} else {
			failing = append(failing, f)
		}
	}
	if len(warnings) > 0 {
		h.log.WarnContext(r.Context(), "readiness warnings", "warnings", warnings)
	}
	if len(failing) > 0 {
		h.log.WarnContext(r.Context(), "not ready", "failing", failing)
		writeJSON(w, http.StatusServiceUnavailable, readyAnswer{Status: "unavailable", Failing: failing, Warnings: warnings})
		return
	}
	writeJSON(w, http.StatusOK, readyAnswer{Status: "ok", Warnings: warnings})
}

// readyAnswer is /readyz's body.
type readyAnswer struct {
	Status   string         `json:"status"`
	Failing  []readyFailure `json:"failing,omitempty"`
	Warnings []readyFailure `json:"warnings,omitempty"`
}

// runCheck runs one check; a check still running at the deadline fails
// with the context's error (its goroutine ends when it honours ctx).
func runCheck(ctx context.Context, c Check) (err error) {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- errors.New("check panicked")
			}
		}()
		done <- c.Run(ctx)
	}()
	select {
	case err = <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeJSON writes v as JSON with status; admin answers are never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError writes {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// actor is who acts, for the audit trail: the X-Admin-Actor header,
// printable and short, else DefaultActor.
func actor(r *http.Request) string {
	a := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, strings.TrimSpace(r.Header.Get(ActorHeader)))
	if a == "" {
		return DefaultActor
	}
	if rs := []rune(a); len(rs) > maxActorLen {
		a = string(rs[:maxActorLen])
	}
	return a
}

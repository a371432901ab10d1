package demoapp

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

//go:embed templates
var templateFS embed.FS

// The identity headers the gateway sets on every forwarded request.
const (
	headerUser   = "X-Tollgate-User"
	headerOrg    = "X-Tollgate-Org"
	headerPlan   = "X-Tollgate-Plan"
	headerStatus = "X-Tollgate-Status"
	headerRoute  = "X-Tollgate-Route"
	headerKey    = "X-Tollgate-Key" // an API key's ID, on a request made with one
)

// Route is one route of the demo app, served at /routes/{ID}/.
type Route struct {
	ID          string
	Title       string
	Description string
}

// DefaultRoutes are the demo app's routes unless configured: 415VNA and
// 258AVO, the paid routes of the example configuration, and TIDES, the
// API plan's metered route.
func DefaultRoutes() []Route {
	return []Route{
		{ID: "415VNA", Title: "Harbour charts", Description: "A paid route: the Pro plan unlocks it."},
		{ID: "258AVO", Title: "Tide tables", Description: "A paid route, unlocked by Pro too; the API shares its ID."},
		{ID: "TIDES", Title: "Tide API", Description: "A metered route: the API plan's quota, Pro's larger one, a few calls a day free."},
	}
}

// CostHeader is the response header in which the demo app says what a
// call cost (?cost=N on a route page), as an app behind tollgate may.
const CostHeader = "X-Tollgate-Cost"

// Options configures New. The zero value is usable.
type Options struct {
	// Title is the app's name (default "Lighthouse").
	Title string
	// Routes are listed on the home page (default DefaultRoutes()). Any
	// /routes/{id}/ is served; these just get a title and description.
	Routes []Route
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger (default: discard).
	Logger *slog.Logger
	// TickInterval is the gap between /events ticks (default 1s).
	TickInterval time.Duration
	// Ticks is how many ticks /events sends before it ends (default 10).
	Ticks int
	// PollInterval is how often /app/ calls /api/v1/whoami (default 15s).
	PollInterval time.Duration
	// InternalPrefix is the gateway's prefix, for links to its account and
	// sign-out pages (default "/.tollgate").
	InternalPrefix string
}

type app struct {
	title  string
	routes []Route
	now    func() time.Time
	log    *slog.Logger
	tick   time.Duration
	ticks  int
	poll   time.Duration
	prefix string
	pages  *template.Template
	css    []byte
	js     []byte
}

// New is a small upstream web app for `tollgate demo` and the end-to-end
// tests. It knows nothing of Clerk or Stripe; it shows the X-Tollgate-*
// identity headers it receives:
//
//	/                 home (public), links to everything below
//	/assets/app.css   style sheet (also /assets/app.js)
//	/routes/{id}/     a route page (e.g. the paid routes 415VNA, 258AVO)
//	/settings/        a page for signed-in users
//	/app/             a page whose script calls /api/v1/whoami every
//	                  PollInterval, and tries /events and /ws
//	/api/v1/whoami    JSON echo of the identity headers
//	/api/v1/time      JSON clock
//	/api/v1/upload    POST: reads the whole body, answers its size and SHA-256
//	/events           Server-Sent Events: Ticks ticks, one per TickInterval
//	/ws               WebSocket echo; so is any other GET that asks for a
//	                  WebSocket upgrade (/routes/415VNA/ws behind a paid rule)
func New(opts Options) http.Handler {
	d := &app{
		title: opts.Title, routes: slices.Clone(opts.Routes), now: opts.Now, log: opts.Logger,
		tick: opts.TickInterval, ticks: opts.Ticks, poll: opts.PollInterval, prefix: opts.InternalPrefix,
	}
	if d.title == "" {
		d.title = "Lighthouse"
	}
	if len(d.routes) == 0 {
		d.routes = DefaultRoutes()
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.tick <= 0 {
		d.tick = time.Second
	}
	if d.ticks <= 0 {
		d.ticks = 10
	}
	if d.poll <= 0 {
		d.poll = 15 * time.Second
	}
	if d.prefix == "" {
		d.prefix = "/.tollgate"
	}
	d.prefix = "/" + strings.Trim(d.prefix, "/")
	// The files are embedded: failing to read or parse them is a build bug.
	d.pages = template.Must(template.New("demo").ParseFS(templateFS, "templates/*.html"))
	d.css = mustRead(templateFS, "templates/app.css")
	d.js = mustRead(templateFS, "templates/app.js")

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.page("home", "Home"))
	mux.HandleFunc("GET /assets/app.css", d.asset("text/css; charset=utf-8", d.css))
	mux.HandleFunc("GET /assets/app.js", d.asset("text/javascript; charset=utf-8", d.js))
	mux.HandleFunc("GET /routes/{id}/", d.page("route", "Route"))
	mux.HandleFunc("GET /settings/", d.page("settings", "Settings"))
	mux.HandleFunc("GET /app/", d.page("app", "Live app"))
	mux.HandleFunc("/api/v1/whoami", d.whoami)
	mux.HandleFunc("GET /api/v1/time", d.time)
	mux.HandleFunc("POST /api/v1/upload", d.upload)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "path": r.URL.Path})
	})
	mux.HandleFunc("GET /events", d.events)
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) { serveWebSocketEcho(w, r, d.log) })
	mux.HandleFunc("/", d.page("not_found", "Not found"))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && wsHeaderHasToken(r.Header, "Upgrade", "websocket") {
			serveWebSocketEcho(w, r, d.log)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// upload reads the request body to its end and says what arrived, so that
// tests can send large and slow uploads through the gateway.
func (d *app) upload(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body", "bytes": n})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
}

func mustRead(fsys fs.FS, name string) []byte {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		panic(fmt.Sprintf("sandbox: embedded %s: %v", name, err))
	}
	return b
}

// identity is what the gateway told the app about the visitor.
type identity struct {
	User, Org, Plan, Status, Route, Key string
}

func readIdentity(r *http.Request) identity {
	return identity{
		User: r.Header.Get(headerUser), Org: r.Header.Get(headerOrg), Plan: r.Header.Get(headerPlan),
		Status: r.Header.Get(headerStatus), Route: r.Header.Get(headerRoute), Key: r.Header.Get(headerKey),
	}
}

type header struct{ Name, Value string }

func (id identity) Headers() []header {
	return []header{
		{headerUser, id.User}, {headerOrg, id.Org}, {headerPlan, id.Plan},
		{headerStatus, id.Status}, {headerRoute, id.Route}, {headerKey, id.Key},
	}
}

type pageData struct {
	AppTitle   string
	Title      string
	Path       string
	Identity   identity
	Routes     []Route
	Route      Route
	RouteKnown bool
	Prefix     string
	PollMillis int64
	Ticks      int
	Now        string
}

func (d *app) page(name, title string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data := pageData{
			AppTitle: d.title, Title: title, Path: r.URL.Path, Identity: readIdentity(r),
			Routes: d.routes, Prefix: d.prefix, PollMillis: d.poll.Milliseconds(), Ticks: d.ticks,
			Now: d.now().UTC().Format(time.RFC1123),
		}
		status := http.StatusOK
		switch name {
		case "route":
			id := r.PathValue("id")
			data.Route = Route{ID: id, Title: "Route " + id}
			for _, rt := range d.routes {
				if rt.ID == id {
					data.Route, data.RouteKnown = rt, true
				}
			}
			data.Title = data.Route.Title
			if c := r.URL.Query().Get("cost"); c != "" && len(c) < 10 && strings.Trim(c, "0123456789") == "" {
				// What this call cost, for the gateway's quota (its
				// cost_header; README "Limits"): ?cost=N says N.
				w.Header().Set(CostHeader, c)
			}
		case "not_found":
			status = http.StatusNotFound
		}
		var buf bytes.Buffer
		if err := d.pages.ExecuteTemplate(&buf, name, data); err != nil {
			d.log.Error("demo app: render", "page", name, "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(status)
		_, _ = w.Write(buf.Bytes())
	}
}

func (d *app) asset(contentType string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(body)
	}
}

// whoamiBody is the body of /api/v1/whoami.
type whoamiBody struct {
	SignedIn bool   `json:"signed_in"`
	User     string `json:"user"`
	Org      string `json:"org"`
	Plan     string `json:"plan"`
	Status   string `json:"status"`
	Route    string `json:"route"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	Time     string `json:"time"`
}

func (d *app) whoami(w http.ResponseWriter, r *http.Request) {
	id := readIdentity(r)
	writeJSON(w, http.StatusOK, whoamiBody{
		SignedIn: id.User != "", User: id.User, Org: id.Org, Plan: id.Plan, Status: id.Status, Route: id.Route,
		Method: r.Method, Path: r.URL.Path, Time: d.now().UTC().Format(time.RFC3339),
	})
}

func (d *app) time(w http.ResponseWriter, r *http.Request) {
	now := d.now().UTC()
	writeJSON(w, http.StatusOK, map[string]any{"now": now.Format(time.RFC3339Nano), "unix": now.Unix()})
}

// events streams Ticks "tick" events, one per TickInterval (the first at
// once), each flushed, then a "done" event, and ends.
func (d *app) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	t := time.NewTicker(d.tick)
	defer t.Stop()
	for i := 1; i <= d.ticks; i++ {
		if i > 1 {
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
		}
		data, _ := json.Marshal(map[string]any{"n": i, "of": d.ticks, "time": d.now().UTC().Format(time.RFC3339)})
		fmt.Fprintf(w, "id: %d\nevent: tick\ndata: %s\n\n", i, data)
		if err := rc.Flush(); err != nil {
			return
		}
	}
	fmt.Fprint(w, "event: done\ndata: {}\n\n")
	_ = rc.Flush()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"internal"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

package gateway

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

//go:embed pages/*.html pages/*.css pages/*.js
var pageFiles embed.FS

// pages renders tollgate's built-in pages: one shared layout, one template
// per page, branded from the pages: section, optionally overridden file by
// file from pages.templates_dir.
type pages struct {
	tmpl   *template.Template
	brand  proxy.PagesConfig
	prefix string // internal_prefix, for links to tollgate's own pages
	css    []byte
	js     []byte
	keysJS []byte // the account page's copy button
	// adminCSS is the admin console's own stylesheet, apart from the
	// visitors' pages' (style.css), which it does not load.
	adminCSS []byte
}

// layoutData is what every page template receives.
type layoutData struct {
	Brand   proxy.PagesConfig
	Prefix  string
	Title   string
	Refresh string // a URL to reload after a few seconds (finishing page, no JS needed)
	// SignedIn: the visitor is signed in, and the header offers their
	// account and signing out. Name says which page this is.
	SignedIn bool
	Name     string
	Page     any
}

type errorPage struct {
	Code    int
	Title   string
	Message string
	HomeURL string
	// ActionURL, with ActionLabel, replaces the home page link with the
	// one way forward.
	ActionURL, ActionLabel string
	// Retry offers to load the same address again (the problem may pass),
	// instead of the home page.
	Retry bool
}

func newPages(brand proxy.PagesConfig, prefix string) (*pages, error) {
	var files fs.FS = pageFiles
	tmpl, err := template.New("").Funcs(pageFuncs).Funcs(adminFuncs).ParseFS(files, "pages/*.html")
	if err != nil {
		return nil, fmt.Errorf("built-in pages: %w", err)
	}
	css, err := fs.ReadFile(files, "pages/style.css")
	if err != nil {
		return nil, fmt.Errorf("built-in pages: %w", err)
	}
	if brand.TemplatesDir != "" {
		overrides, err := filepath.Glob(filepath.Join(brand.TemplatesDir, "*.html"))
		if err != nil {
			return nil, fmt.Errorf("pages.templates_dir: %w", err)
		}
		if len(overrides) > 0 {
			if tmpl, err = tmpl.ParseFiles(overrides...); err != nil {
				return nil, fmt.Errorf("pages.templates_dir: %w", err)
			}
		}
		if b, err := os.ReadFile(filepath.Join(brand.TemplatesDir, "style.css")); err == nil {
			css = b
		}
	}
	// The accent colour is validated as #rrggbb by the config, so it is safe
	// to put into the stylesheet, which keeps the pages free of inline CSS
	// and their Content-Security-Policy strict. It goes last, so that it
	// wins over the stylesheet's own default.
	if brand.AccentColor != "" {
		css = append(css[:len(css):len(css)], "\n:root { --accent: "+brand.AccentColor+"; }\n"...)
	}
	js, err := fs.ReadFile(files, "pages/finishing.js")
	if err != nil {
		return nil, fmt.Errorf("built-in pages: %w", err)
	}
	keysJS, err := fs.ReadFile(files, "pages/keys.js")
	if err != nil {
		return nil, fmt.Errorf("built-in pages: %w", err)
	}
	adminCSS, err := fs.ReadFile(files, "pages/admin.css")
	if err != nil {
		return nil, fmt.Errorf("built-in pages: %w", err)
	}
	return &pages{tmpl: tmpl, brand: brand, prefix: prefix, css: css, js: js, keysJS: keysJS, adminCSS: adminCSS}, nil
}

// render executes page name into a buffer first, so a template error becomes
// a clean 500 rather than half a page.
func (p *pages) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	title := pageTitles[name]
	if ep, ok := data.(errorPage); ok {
		title = ep.Title
	}
	ld := layoutData{Brand: p.brand, Prefix: p.prefix, Title: title, Name: name, Page: data,
		SignedIn: IdentityFromContext(r.Context()) != nil || entryFrom(r.Context()).userID != ""}
	if fp, ok := data.(finishingPage); ok {
		ld.Refresh = fp.RetryURL
	}
	var buf bytes.Buffer
	err := p.tmpl.ExecuteTemplate(&buf, name+".html", ld)
	h := w.Header()
	if err != nil {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("internal error\n"))
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", pagesCSP)
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// pagesCSP is the Content-Security-Policy of every built-in page: no inline
// script or style. Browsers apply form-action to the redirects a form
// submission follows too, so it must allow where checkout and the billing
// portal send the visitor: Stripe (https) or, in `tollgate demo` and local
// development, the Stripe sandbox on a loopback port.
const pagesCSP = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src https: data:; " +
	"form-action 'self' https: http://127.0.0.1:* http://localhost:*; frame-ancestors 'none'; base-uri 'none'"

func (p *pages) serveAdminCSS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(p.adminCSS)
}

func (p *pages) serveCSS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(p.css)
}

// pageFuncs are the helpers templates may use.
var pageFuncs = template.FuncMap{
	"hasPrefix": strings.HasPrefix,
	"date": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format("2 January 2006")
	},
	"statusWords": func(s string) string {
		switch proxy.SubscriptionStatus(s) {
		case proxy.StatusActive:
			return "Active"
		case proxy.StatusTrialing:
			return "Trial"
		case proxy.StatusPastDue:
			return "Payment failed, retrying"
		case proxy.StatusUnpaid:
			return "Unpaid"
		case proxy.StatusIncomplete:
			return "Waiting for the first payment"
		case proxy.StatusIncompleteExpired:
			return "First payment failed"
		case proxy.StatusCanceled:
			return "Cancelled"
		case proxy.StatusPaused:
			return "Paused"
		}
		return s
	},
}

// pageTitles are the <title>s of the pages that have no title of their own.
var pageTitles = map[string]string{
	"upgrade":     "Choose a plan",
	"account":     "Your account",
	"finishing":   "Finishing up",
	"admin":       "Dashboard",
	"admin_users": "Users",
	"admin_user":  "User",
	"signout":     "Sign out",
	"key_created": "Your new API key",
	"overquota":   "Limit reached",
}

func (p *pages) serveFinishingJS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(p.js)
}

func (p *pages) serveKeysJS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(p.keysJS)
}

package sandbox

import (
	"bytes"
	"html/template"
	"log/slog"
	"net/http"
)

// RenderPage writes one of the fakes' hosted pages (Clerk's sign-in,
// Stripe's Checkout and portal): the template is executed into a buffer
// first, so an error is a clean 500, and the page is sent with the headers
// every sandbox page carries (no caching, a strict CSP, no sniffing).
func RenderPage(w http.ResponseWriter, log *slog.Logger, pages *template.Template, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		log.Error("sandbox: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

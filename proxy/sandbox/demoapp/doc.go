// Package demoapp is a small upstream web app for `tollgate demo` and the
// end-to-end tests (New). It knows nothing of Clerk or Stripe and shows the
// identity headers the gateway hands it, with an SSE stream, a WebSocket
// echo and a page that keeps calling an API.
package demoapp

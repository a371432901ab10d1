// Package sandbox holds local stand-ins for the services tollgate talks to,
// so that `tollgate demo` and the end-to-end tests run the gateway's real
// code paths with no network and no accounts. Each stand-in is its own
// package:
//
//   - clerk (clerksandbox): Clerk's Backend API, Frontend API handshake
//     and a hosted sign-in page.
//   - stripe (stripesandbox): a Stripe account with the API tollgate
//     uses, hosted Checkout and billing portal pages, a billing engine on
//     a test clock and signed webhooks.
//   - demoapp: a small upstream web app that knows nothing of Clerk or
//     Stripe.
//
// This package keeps what the stand-ins share: RenderPage, which serves
// their hosted pages with the same safety headers.
//
// Everything in the stand-ins keeps its state in memory, takes its clock
// and logger from its options, and is safe for concurrent use.
package sandbox

// Package sandbox holds local stand-ins for the services tollgate talks to,
// so that `tollgate demo` and the end-to-end tests run the gateway's real
// code paths with no network and no accounts:
//
//   - Clerk (NewClerk): the Backend API (JWKS, users, sessions,
//     organisations, handshake payloads, session revocation), the Frontend
//     API handshake and a hosted sign-in page where you pick a demo user.
//     Like Clerk's Account Portal it has no sign-out page: a session ends
//     through the Backend API's revoke, and sign-in leaves the app's host
//     only __client_uat (the first page load must handshake). It runs as
//     a production instance (pk_live_: handshake payloads in cookies) or,
//     with Development, a development one (pk_test_: the dev browser,
//     __clerk_db_jwt and handshake payloads in URLs), on its own clock,
//     which may disagree with the gateway's. Tokens are real RS256
//     session JWTs in Clerk's v2 format, and every JSON body decodes into
//     clerk-sdk-go v2 types as the real service's would.
//   - Stripe (NewStripe): an account with the API tollgate uses
//     (customers, Checkout Sessions, subscriptions, billing portal
//     sessions, prices, products, invoices, events), a hosted Checkout
//     page and billing portal, a billing engine driven by a test clock
//     (Advance: trials end, renewals, failed payments retried after 1, 3
//     and 7 days and then unpaid, cancellations at period end), and
//     webhook delivery signed with real Stripe-Signature headers. Every
//     JSON body decodes into stripe-go v76 types as the real API's would
//     (API version 2023-10-16, which stripe-go sends in Stripe-Version);
//     the account's default version may be the newest instead, in whose
//     shapes events arrive. A test-mode and a live-mode key each see only
//     their own mode's objects: the other's are resource_missing.
//   - DemoApp: a small upstream web app that knows nothing of Clerk or
//     Stripe and shows the identity headers the gateway hands it, with an
//     SSE stream, a WebSocket echo and a page that keeps calling an API.
//
// Everything here keeps its state in memory, takes its clock and logger from
// its options, and is safe for concurrent use.
package sandbox

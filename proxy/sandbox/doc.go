// Package sandbox holds local stand-ins for the services tollgate talks to,
// so that `tollgate demo` and the end-to-end tests run the gateway's real
// code paths with no network and no accounts:
//
//   - Clerk (NewClerk): the Backend API (JWKS, users, sessions,
//     organisations, handshake payloads), the Frontend API handshake and a
//     hosted sign-in page where you pick a demo user. Tokens are real RS256
//     session JWTs in Clerk's v2 format, and every JSON body decodes into
//     clerk-sdk-go v2 types as the real service's would.
//   - DemoApp: a small upstream web app that knows nothing of Clerk or
//     Stripe and shows the identity headers the gateway hands it, with an
//     SSE stream, a WebSocket echo and a page that keeps calling an API.
//
// Everything here keeps its state in memory, takes its clock and logger from
// its options, and is safe for concurrent use.
package sandbox

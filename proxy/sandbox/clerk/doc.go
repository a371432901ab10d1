// Package clerksandbox is a local stand-in for Clerk (New): the Backend API
// (JWKS, users, sessions, organisations, handshake payloads, session
// revocation), the Frontend API handshake and a hosted sign-in page where
// you pick a demo user.
//
// Like Clerk's Account Portal it has no sign-out page: a session ends
// through the Backend API's revoke, and sign-in leaves the app's host only
// __client_uat (the first page load must handshake). It runs as a
// production instance (pk_live_: handshake payloads in cookies) or, with
// Development, a development one (pk_test_: the dev browser,
// __clerk_db_jwt and handshake payloads in URLs), on its own clock, which
// may disagree with the gateway's. Tokens are real RS256 session JWTs in
// Clerk's v2 format, and every JSON body decodes into clerk-sdk-go v2
// types as the real service's would.
package clerksandbox

// Package stripesandbox is a local stand-in for a Stripe account (New):
// the API tollgate uses (customers, Checkout Sessions, subscriptions,
// billing portal sessions, prices, products, invoices, events, webhook
// endpoints), a hosted Checkout page and billing portal, a billing engine
// driven by a test clock (Advance: trials end, renewals, failed payments
// retried after 1, 3 and 7 days and then unpaid, cancellations at period
// end), and webhook delivery signed with real Stripe-Signature headers, to
// the endpoint a test sets (SetWebhook) and to those made through the API.
//
// Every JSON body decodes into stripe-go v76 types as the real API's would
// (API version 2023-10-16, which stripe-go sends in Stripe-Version); the
// account's default version may be the newest instead, in whose shapes
// events arrive. A test-mode and a live-mode key each see only their own
// mode's objects: the other's are resource_missing.
package stripesandbox

package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// The features a Server can be built without. Each absent one is an
// explicit no-op, set once in New, so nothing on the request path asks
// whether a dependency is there.

// signedOut is the Authenticator without Clerk: nobody is signed in.
type signedOut struct{}

func (signedOut) Authenticate(context.Context, *http.Request) proxy.AuthResult {
	return proxy.AuthResult{State: proxy.SignedOut, Reason: "no authenticator"}
}

// noPortal has no hosted sign-in page: signed-out visitors get 401s.
type noPortal struct{}

func (noPortal) SignInURL(string, string) string       { return "" }
func (noPortal) SignUpURL(string, string) string       { return "" }
func (noPortal) OrganizationURL(string, string) string { return "" }

// noEntitlements knows of no subscription: paid routes stay closed.
type noEntitlements struct{}

func (noEntitlements) Entitlements(context.Context, proxy.Subject) (*proxy.Entitlements, error) {
	return nil, nil
}

// noPrices shows plans without amounts.
type noPrices struct{}

func (noPrices) Price(string) (proxy.Price, bool) { return proxy.Price{}, false }

// noDirectory knows no e-mail.
type noDirectory struct{}

func (noDirectory) Email(context.Context, string) (string, error) { return "", nil }

// noTrials cannot tell whether a customer has had a trial, and says so:
// the upgrade page then hedges ("if you have had one before…") instead of
// promising one.
type noTrials struct{}

var errNoTrials = errors.New("no store to ask about past trials")

func (noTrials) CustomerOf(context.Context, proxy.Subject) (string, error) { return "", errNoTrials }
func (noTrials) HadTrial(context.Context, string) (bool, error)            { return false, errNoTrials }

// noOrgs knows no organisation's name: pages fall back to its slug.
type noOrgs struct{}

func (noOrgs) Org(context.Context, string) (proxy.Org, error) { return proxy.Org{}, proxy.ErrNotFound }

type nopSeen struct{}

func (nopSeen) Seen(string, time.Time) {}

type nopStale struct{}

func (nopStale) Stale(string) {}

type nopObserver struct{}

func (nopObserver) Decision(string, string, string, time.Duration) {}
func (nopObserver) Upstream(int, time.Duration)                    {}

// noEnder cannot end a Clerk session, and says so (sign-out tells the
// visitor they are still signed in).
type noEnder struct{}

func (noEnder) EndSession(context.Context, string) ([]string, error) {
	return nil, errors.New("no Clerk Backend API to end the session with")
}

func (noEnder) EndUserSessions(context.Context, string) (int, error) {
	return 0, errors.New("no Clerk Backend API to end the sessions with")
}

// noBilling has no Checkout and no portal; the pages offer neither
// (Server.billingOn is false).
type noBilling struct{}

var errNoBilling = errors.New("billing is not configured")

func (noBilling) Checkout(context.Context, proxy.CheckoutRequest) (proxy.CheckoutResult, error) {
	return proxy.CheckoutResult{}, errNoBilling
}
func (noBilling) CompleteCheckout(context.Context, string, *proxy.Identity) (proxy.CheckoutReturn, error) {
	return proxy.CheckoutReturn{}, errNoBilling
}
func (noBilling) Portal(context.Context, proxy.Subject, string) (string, error) {
	return "", errNoBilling
}

// nopForget is the EntitlementsForgetter of a gateway without a cache.
type nopForget struct{}

func (nopForget) Remove(proxy.Subject) {}

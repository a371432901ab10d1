package main

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"testing"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
)

// TestStripe_ForeignCheckoutLinksNobody: a Checkout Session tollgate did not
// make (a Payment Link's, whose client_reference_id anyone sets in its URL)
// names user_grace and is paid by Mallory. Neither its webhook nor its
// return page links Grace to Mallory's customer, so Grace gets no access
// and her "Manage billing" never opens Mallory's portal (red team #3).
func TestStripe_ForeignCheckoutLinksNobody(t *testing.T) {
	d, _ := mustRunDemo(t)
	sc := stripeAPI(d, d.Stripe.SecretKey())
	cs, err := sc.CheckoutSessions.New(&stripego.CheckoutSessionParams{
		Mode:              stripego.String("subscription"),
		ClientReferenceID: stripego.String("user_grace"),
		CustomerEmail:     stripego.String("mallory@evil.example"),
		SuccessURL:        stripego.String(d.URL + "/.tollgate/checkout/done?session_id={CHECKOUT_SESSION_ID}"),
		LineItems:         []*stripego.CheckoutSessionLineItemParams{{Price: stripego.String("price_demo_pro_monthly"), Quantity: stripego.Int64(1)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp := form(t, noRedirects(nil), cs.URL, url.Values{"email": {"mallory@evil.example"}, "card_number": {"4242 4242 4242 4242"}, "exp": {"12 / 34"}, "cvc": {"123"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay: %d", resp.StatusCode)
	}
	waitWebhooks(t, d)

	grace, _ := cookiejar.New(nil)
	gc := noRedirects(grace)
	signIn(t, d, grace, "user_grace")
	// Grace is lured to the return page of Mallory's session.
	get(t, gc, d.URL+"/.tollgate/checkout/done?session_id="+cs.ID, page)
	if cus, err := d.gateway.Store.CustomerOf(t.Context(), proxy.Subject{Kind: proxy.SubjectUser, ID: "user_grace"}); err == nil && cus != "" {
		t.Errorf("Grace is linked to customer %s", cus)
	}
	if r := get(t, gc, d.URL+"/routes/415VNA/", api); r.StatusCode != http.StatusPaymentRequired {
		t.Errorf("Grace on the paid route: %d, want 402", r.StatusCode)
	}
}

// TestClerk_EndUserSessionsRevokesEveryActiveSession: the admin console's
// "revoke sessions" ends the user's Clerk sessions too (through the Backend
// API's session list and revoke), so no handshake mints a fresh token; other
// users' sessions stay.
func TestClerk_EndUserSessionsRevokesEveryActiveSession(t *testing.T) {
	d, _ := mustRunDemo(t)
	ada1, _ := d.Clerk.SignIn("user_ada")
	ada2, _ := d.Clerk.SignIn("user_ada")
	grace, _ := d.Clerk.SignIn("user_grace")
	ended, err := d.gateway.Clerk.EndUserSessions(t.Context(), "user_ada")
	if err != nil || ended != 2 {
		t.Fatalf("ended %d, %v; want 2", ended, err)
	}
	for sid, want := range map[string]bool{ada1: false, ada2: false, grace: true} {
		st, err := d.gateway.Clerk.CheckSession(t.Context(), sid)
		if err != nil || st.Active != want {
			t.Errorf("session %s: active %v (%v), want %v", sid, st.Active, err, want)
		}
	}
	if ended, err := d.gateway.Clerk.EndUserSessions(t.Context(), "user_ada"); err != nil || ended != 0 {
		t.Errorf("again: ended %d, %v; want 0", ended, err)
	}
}

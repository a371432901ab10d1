package stripesandbox

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy/sandbox"
)

// Test card numbers the hosted Checkout page understands, as in Stripe's
// test mode: one that is declined, and one that pays at checkout but fails
// every later payment (it turns FailNextPayments on for the customer).
const (
	cardOK          = "4242424242424242"
	cardDeclined    = "4000000000000002"
	cardFailsLater  = "4000000000000341"
	cardPlaceholder = "4242 4242 4242 4242"
)

type pageData struct {
	Title      string
	BaseURL    string
	BillingNow string
	Error      string
	Message    string
	Link       string
	LinkText   string
	Checkout   *checkoutView
	Portal     *portalView
	Prices     []priceView
}

type lineView struct {
	Name, Price, Quantity, Amount string
}

type checkoutView struct {
	ID        string
	Headline  string
	Lines     []lineView
	Summary   string
	DueToday  string
	Tax       string // the tax line when Stripe Tax works it out ("" without)
	Button    string
	CancelURL string
	Email     string
	NeedEmail bool
	Card      string
	// FullAddress asks for the whole billing address, TaxAddress for the
	// country and postal code Stripe Tax needs; Address fills them in.
	FullAddress, TaxAddress bool
	Address                 address
	Countries               []country
	Promo                   bool   // a field for a promotion code
	PromoCode               string // as typed
}

type subView struct {
	ID, Plan, Price, Status, When string
	CanCancelAtEnd, CanResume     bool
	CanCancelNow                  bool
}

type portalView struct {
	ID           string
	Customer     string
	Email        string
	ReturnURL    string
	Subs         []subView
	Failing      bool
	NeedsPayment bool
	Deleted      bool
}

type priceView struct {
	ID, Product, Price string
}

func (s *Stripe) pageLocked(title string) pageData {
	return pageData{Title: title, BaseURL: s.baseURL, BillingNow: formatDate(s.billingNowLocked())}
}

// perInterval is "/month" for a recurring price, "" for a one-time one.
func perInterval(p *price) string {
	if p.recurring() {
		return "/" + p.Interval
	}
	return ""
}

func (s *Stripe) checkoutViewLocked(cs *checkoutSession) *checkoutView {
	now := s.billingNowLocked()
	v := &checkoutView{ID: cs.id, CancelURL: cs.cancelURL, Card: cardPlaceholder}
	var recurring int64
	var per, names []string
	for _, li := range cs.items {
		amt := li.price.UnitAmount * li.quantity
		v.Lines = append(v.Lines, lineView{
			Name:     li.price.product.name,
			Price:    formatMoney(li.price.UnitAmount, li.price.Currency) + perInterval(li.price),
			Quantity: fmt.Sprint(li.quantity),
			Amount:   formatMoney(amt, li.price.Currency) + perInterval(li.price),
		})
		if li.price.Meter != "" {
			// A metered line has no quantity: it is billed by usage at
			// the end of each period.
			v.Lines[len(v.Lines)-1].Price = formatMoney(li.price.UnitAmount, li.price.Currency) + " per unit"
			v.Lines[len(v.Lines)-1].Quantity = "by usage"
			v.Lines[len(v.Lines)-1].Amount = "billed at the end of each period"
		}
		if li.price.recurring() {
			recurring += amt
			per = append(per, perInterval(li.price))
			names = append(names, li.price.product.name)
		} else {
			v.Lines[len(v.Lines)-1].Price += " one-time"
			v.Lines[len(v.Lines)-1].Amount += " one-time"
		}
	}
	v.Headline = "Subscribe to " + strings.Join(names, " and ")
	cur := cs.currency()
	then := formatMoney(recurring, cur) + per[0]
	today := cs.dueToday()
	charged := "nothing charged today"
	if today > 0 {
		charged = formatMoney(today, cur) + " charged today"
	}
	v.DueToday = formatMoney(today, cur)
	if cs.automaticTax {
		v.Tax = formatMoney(0, cur)
	}
	v.FullAddress, v.TaxAddress = cs.addressNeeded()
	if v.FullAddress || v.TaxAddress {
		v.Countries = countries
		if c := s.customers[cs.customer]; c != nil && c.address != nil {
			v.Address = *c.address // Checkout fills in what the customer has
		}
	}
	v.Promo = cs.allowPromo
	switch end, trial := cs.trial(now); {
	case trial && cs.trialDays > 0:
		v.Summary = fmt.Sprintf("%d-day trial, then %s; %s", cs.trialDays, then, charged)
		v.Button = "Start trial"
	case trial:
		v.Summary = fmt.Sprintf("Trial until %s, then %s; %s", formatDate(end), then, charged)
		v.Button = "Start trial"
	default:
		v.Summary = fmt.Sprintf("%s, starting today; %s", then, charged)
		v.Button = "Pay " + v.DueToday
	}
	if cs.customer != "" {
		if c := s.customers[cs.customer]; c != nil {
			v.Email = c.email
		}
	} else {
		v.Email, v.NeedEmail = cs.customerEmail, true
	}
	return v
}

func (s *Stripe) handleCheckoutPage(w http.ResponseWriter, r *http.Request) {
	cs := s.lockOpenCheckout(w, r)
	if cs == nil {
		return
	}
	d := s.pageLocked("Checkout")
	d.Checkout = s.checkoutViewLocked(cs)
	s.mu.Unlock()
	s.render(w, http.StatusOK, "checkout", d)
}

// lockOpenCheckout takes the lock and returns the request's Checkout Session
// if it can still be paid; otherwise it answers (404, or why it is closed),
// releases the lock and returns nil.
func (s *Stripe) lockOpenCheckout(w http.ResponseWriter, r *http.Request) *checkoutSession {
	s.mu.Lock()
	s.runDueLocked()
	cs := s.sessions[r.PathValue("id")]
	if cs == nil {
		s.mu.Unlock()
		s.renderError(w, http.StatusNotFound, "Checkout not found", "There is no Checkout Session at this address.", "")
		return nil
	}
	if st, d := s.checkoutClosedLocked(cs); st != 0 {
		s.mu.Unlock()
		s.render(w, st, "error", d)
		return nil
	}
	return cs
}

// checkoutClosedLocked is the page for a session that cannot be paid.
func (s *Stripe) checkoutClosedLocked(cs *checkoutSession) (int, pageData) {
	switch cs.status {
	case "complete":
		d := s.pageLocked("Already paid")
		d.Message = "This Checkout Session has already been paid. It cannot be paid twice."
		d.Link, d.LinkText = filledSuccessURL(cs), "Go back to the site"
		return http.StatusConflict, d
	case "expired":
		d := s.pageLocked("Checkout expired")
		d.Message = "This Checkout Session has expired. Start again from the site."
		d.Link, d.LinkText = cs.cancelURL, "Go back to the site"
		return http.StatusGone, d
	}
	return 0, pageData{}
}

// filledSuccessURL is where paying sends the browser: the success_url with
// the {CHECKOUT_SESSION_ID} template variable filled in, as Stripe does.
func filledSuccessURL(cs *checkoutSession) string {
	return strings.ReplaceAll(cs.successURL, "{CHECKOUT_SESSION_ID}", cs.id)
}

func (s *Stripe) handleCheckoutPay(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, http.StatusBadRequest, "Bad request", "The form could not be read.", "")
		return
	}
	card := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, r.PostForm.Get("card_number"))
	email := strings.TrimSpace(r.PostForm.Get("email"))

	cs := s.lockOpenCheckout(w, r)
	if cs == nil {
		return
	}
	addr, msg := cs.addressForm(r.PostForm)
	switch {
	case msg != "":
	case card == cardDeclined:
		msg = "Your card was declined (this is the sandbox's declining test card). Try 4242 4242 4242 4242."
	case card != cardOK && card != cardFailsLater:
		msg = "Use a test card: 4242 4242 4242 4242 pays; 4000 0000 0000 0341 pays now and fails later; 4000 0000 0000 0002 is declined."
	case cs.customer == "" && cs.customerEmail == "" && !strings.Contains(email, "@"):
		msg = "Enter an email address."
	default:
		msg = cs.promoForm(r.PostForm)
	}
	if msg == "" {
		if err := s.payLocked(cs, card == cardFailsLater, email, addr); err != nil {
			msg = err.Error()
		}
	}
	if msg != "" {
		d := s.pageLocked("Checkout")
		d.Checkout = s.checkoutViewLocked(cs)
		d.Checkout.Card, d.Error = r.PostForm.Get("card_number"), msg
		d.Checkout.PromoCode = r.PostForm.Get("promotion_code")
		if d.Checkout.FullAddress || d.Checkout.TaxAddress {
			d.Checkout.Address = address{Line1: r.PostForm.Get("line1"), City: r.PostForm.Get("city"),
				PostalCode: r.PostForm.Get("postal_code"), Country: r.PostForm.Get("country")}
		}
		if d.Checkout.NeedEmail {
			d.Checkout.Email = email
		}
		s.mu.Unlock()
		s.render(w, http.StatusPaymentRequired, "checkout", d)
		return
	}
	target := filledSuccessURL(cs)
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// payLocked completes an open Checkout Session: it creates the customer
// if there is none, starts the subscription (trialing or active) with its
// first invoice paid (one-time items on it), and sends
// checkout.session.completed, customer.subscription.created and
// invoice.paid, in that order. addr is the billing address the page
// collected (nil when it asked for none).
func (s *Stripe) payLocked(cs *checkoutSession, failLater bool, email string, addr *address) error {
	now := s.billingNowLocked()
	var c *customer
	if cs.customer == "" {
		if cs.customerEmail != "" {
			email = cs.customerEmail
		}
		c = s.newCustomerLocked(cs.livemode, email, "", nil, addr)
		cs.customer = c.id
		cs.address = addr
	} else if c = s.customers[cs.customer]; c == nil || c.deleted {
		return errors.New("this customer has been deleted")
	} else {
		s.saveAddressLocked(cs, c, addr)
	}
	var oneTime []lineItem
	sub := &subscription{
		id: newID("sub_"), customer: c.id, created: now, seq: s.nextSeqLocked(),
		metadata: metadataJSON(cs.subMetadata), defaultPaymentMeth: newID("pm_"), livemode: cs.livemode,
		automaticTax: cs.automaticTax,
	}
	for _, li := range cs.items {
		if !li.price.recurring() {
			oneTime = append(oneTime, li)
			continue
		}
		sub.items = append(sub.items, subItem{id: newID("si_"), price: li.price, quantity: li.quantity, created: now})
	}
	trialEnd, trial := cs.trial(now)
	if trial {
		sub.status = "trialing"
		sub.trialStart, sub.trialEnd = now, trialEnd
		sub.anchor, sub.periods = trialEnd, -1
		sub.periodStart, sub.periodEnd = now, trialEnd
	} else {
		sub.status = "active"
		sub.anchor, sub.periods = now, 0
		sub.periodStart, sub.periodEnd = now, addInterval(now, sub.interval(), 1)
	}
	s.subs[sub.id] = sub
	inv := s.newInvoiceLocked(sub, "subscription_create", now, oneTime, !trial)
	s.payInvoiceLocked(inv, now)
	if c.currency == "" {
		c.currency = sub.currency()
	}
	if failLater {
		s.failing[c.id] = true
	}
	cs.status, cs.paymentStatus, cs.subscription = "complete", "paid", sub.id
	cs.email = c.email
	s.log.Info("sandbox stripe: checkout paid", "session", cs.id, "customer", c.id, "subscription", sub.id, "status", sub.status)
	s.emitLocked("checkout.session.completed", func() any { return s.checkoutJSON(cs, nil) }, nil)
	s.emitLocked("customer.subscription.created", func() any { return s.subJSON(sub, nil) }, nil)
	s.emitLocked("invoice.paid", func() any { return s.invoiceJSON(inv) }, nil)
	return nil
}

func (s *Stripe) portalViewLocked(p *portalSession) *portalView {
	v := &portalView{ID: p.id, Customer: p.customer, ReturnURL: p.returnURL, Failing: s.failing[p.customer]}
	c := s.customers[p.customer]
	if c == nil || c.deleted {
		v.Deleted = true
		return v
	}
	v.Email = c.email
	for _, sub := range s.customerSubsLocked(c.id) {
		var names []string
		for _, it := range sub.items {
			names = append(names, it.price.product.name)
		}
		sv := subView{
			ID: sub.id, Plan: strings.Join(names, " + "),
			Price: formatMoney(sub.amount(), sub.currency()) + "/" + sub.interval(),
		}
		end := formatDate(sub.periodEnd)
		switch sub.status {
		case "trialing":
			sv.Status, sv.When = "Trial", "Trial ends on "+formatDate(sub.trialEnd)
		case "active":
			sv.Status, sv.When = "Active", "Renews on "+end
		case "past_due":
			sv.Status, sv.When = "Past due", "The last payment failed; next retry on "+formatDate(sub.nextRetry)
			v.NeedsPayment = true
		case "unpaid":
			sv.Status, sv.When = "Unpaid", "Every retry failed. Update the payment method to reactivate it."
			v.NeedsPayment = true
		case "canceled":
			sv.Status, sv.When = "Cancelled", "Ended on "+formatDate(sub.endedAt)
		default:
			sv.Status, sv.When = sub.status, ""
		}
		if sub.cancelAtPeriodEnd && sub.live() {
			sv.Status += ", ends with the period"
			sv.When = "Cancels on " + end
		}
		sv.CanCancelAtEnd = sub.live() && !sub.cancelAtPeriodEnd
		sv.CanResume = sub.live() && sub.cancelAtPeriodEnd
		sv.CanCancelNow = sub.status != "canceled" && sub.status != "incomplete_expired"
		v.Subs = append(v.Subs, sv)
	}
	return v
}

func (s *Stripe) portalDone(action string) string {
	switch action {
	case "cancel_at_period_end":
		return "The subscription will be cancelled at the end of its period."
	case "resume":
		return "The subscription will renew as before."
	case "cancel_now":
		return "The subscription was cancelled."
	case "update_payment":
		return "The payment method was updated; open invoices were paid."
	case "fail_payments":
		return "This customer's payments will now fail."
	case "advance":
		return "The test clock moved forward."
	}
	return ""
}

func (s *Stripe) handlePortalPage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.runDueLocked()
	p := s.portals[r.PathValue("id")]
	if p == nil {
		s.mu.Unlock()
		s.renderError(w, http.StatusNotFound, "Portal session not found", "There is no billing portal session at this address.", "")
		return
	}
	d := s.pageLocked("Billing")
	d.Portal = s.portalViewLocked(p)
	d.Message = s.portalDone(r.URL.Query().Get("done"))
	s.mu.Unlock()
	s.render(w, http.StatusOK, "portal", d)
}

// handlePortalAction runs a portal button and redirects back to the
// portal page (POST-redirect-GET).
func (s *Stripe) handlePortalAction(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, http.StatusBadRequest, "Bad request", "The form could not be read.", "")
		return
	}
	action := r.PostForm.Get("action")
	s.mu.Lock()
	s.runDueLocked()
	p := s.portals[r.PathValue("id")]
	if p == nil {
		s.mu.Unlock()
		s.renderError(w, http.StatusNotFound, "Portal session not found", "There is no billing portal session at this address.", "")
		return
	}
	back := "/portal/" + p.id
	if c := s.customers[p.customer]; c == nil || c.deleted {
		s.mu.Unlock()
		s.renderError(w, http.StatusGone, "Customer deleted", "This customer has been deleted.", back)
		return
	}
	var sub *subscription
	switch action {
	case "cancel_at_period_end", "resume", "cancel_now":
		sub = s.subs[r.PostForm.Get("subscription")]
		if sub == nil || sub.customer != p.customer {
			s.mu.Unlock()
			s.renderError(w, http.StatusNotFound, "Subscription not found", "This customer has no such subscription.", back)
			return
		}
	}
	now := s.billingNowLocked()
	bad := ""
	switch action {
	case "cancel_at_period_end", "resume":
		on := action == "cancel_at_period_end"
		if !sub.live() || sub.cancelAtPeriodEnd == on {
			bad = "That subscription cannot be changed that way now."
			break
		}
		prev := map[string]any{}
		s.setCancelAtPeriodEndLocked(sub, on, prev)
		s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
	case "cancel_now":
		if sub.status == "canceled" {
			bad = "That subscription has already ended."
			break
		}
		s.cancelNowLocked(sub, now, "cancellation_requested")
	case "update_payment":
		delete(s.failing, p.customer)
		subs := s.customerSubsLocked(p.customer)
		slices.Reverse(subs) // oldest first
		for _, sub := range subs {
			if sub.status != "past_due" && sub.status != "unpaid" {
				continue
			}
			if inv := s.invoices[sub.latestInvoice]; inv != nil && !inv.paid {
				inv.attempts++
				s.recoverLocked(sub, inv, now)
			} else {
				prev := map[string]any{"status": sub.status}
				sub.status, sub.pastDueSince, sub.retries, sub.nextRetry = "active", time.Time{}, 0, time.Time{}
				s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
			}
		}
	case "fail_payments":
		s.failing[p.customer] = true
	case "advance":
		var d time.Duration
		switch r.PostForm.Get("by") {
		case "1d":
			d = 24 * time.Hour
		case "8d":
			d = 8 * 24 * time.Hour
		case "1m":
			d = now.AddDate(0, 1, 0).Sub(now)
		default:
			bad = "Choose how far to move the clock."
		}
		if d > 0 {
			s.offset += d
			s.log.Info("sandbox stripe: test clock advanced from the portal", "by", d)
			s.runDueLocked()
		}
	default:
		bad = "Unknown action."
	}
	s.mu.Unlock()
	if bad != "" {
		s.renderError(w, http.StatusBadRequest, "Cannot do that", bad, back)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, back+"?done="+action, http.StatusSeeOther)
}

func (s *Stripe) handleHome(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	d := s.pageLocked("Stripe sandbox")
	for _, p := range s.prices {
		d.Prices = append(d.Prices, priceView{ID: p.ID, Product: p.product.name,
			Price: formatMoney(p.UnitAmount, p.Currency) + perInterval(p)})
	}
	s.mu.Unlock()
	s.render(w, http.StatusOK, "home", d)
}

func (s *Stripe) renderError(w http.ResponseWriter, status int, title, msg, back string) {
	s.mu.Lock()
	d := s.pageLocked(title)
	s.mu.Unlock()
	d.Message = msg
	if back != "" {
		d.Link, d.LinkText = back, "Back"
	}
	s.render(w, status, "error", d)
}

func (s *Stripe) render(w http.ResponseWriter, status int, name string, data pageData) {
	sandbox.RenderPage(w, s.log, s.pages, status, name, data)
}

// formatMoney formats an amount in minor units: "$12.00", "€4.50", "12.00 CHF".
func formatMoney(amount int64, currency string) string {
	sign := ""
	if amount < 0 {
		sign, amount = "-", -amount
	}
	num := fmt.Sprintf("%d.%02d", amount/100, amount%100)
	switch strings.ToLower(currency) {
	case "usd":
		return sign + "$" + num
	case "eur":
		return sign + "€" + num
	case "gbp":
		return sign + "£" + num
	}
	return sign + num + " " + strings.ToUpper(currency)
}

func formatDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2 January 2006, 15:04 UTC")
}

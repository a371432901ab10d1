package stripe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	stripe "github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/proxy"
)

// live reports a subscription status that must not get a second
// subscription next to it: the subject pays, will pay, or has to fix a
// payment, all of which happen in the Billing Portal.
func live(st proxy.SubscriptionStatus) bool {
	switch st {
	case proxy.StatusActive, proxy.StatusTrialing, proxy.StatusPastDue,
		proxy.StatusUnpaid, proxy.StatusIncomplete, proxy.StatusPaused:
		return true
	}
	return false
}

// Checkout starts a Stripe Checkout for req.Plan, billed to req.Subject.
// Under the subject's and then the customer's lock it ensures the customer
// exists, syncs it, and sends a subject that already holds a live
// subscription to the Billing Portal instead. A subject has at most one
// open Checkout Session of tollgate's at a time (README "Billing": one
// subscription): the same request again gets the open session back, and a
// different one (another plan, another return path, another admin of the
// organisation) expires it before a new session opens, so two tabs can
// never pay for two subscriptions.
//
// It is paid from the visitors' lane of the Stripe budget: five calls
// (create the customer, get it, list its subscriptions, list its open
// sessions, create the session or a portal session) taken before any
// lock, and the rare others (expiring a session, checking a replayed one)
// as debt under it.
func (b *Billing) Checkout(ctx context.Context, req proxy.CheckoutRequest) (proxy.CheckoutResult, error) {
	if err := b.checkRequest(req); err != nil {
		return proxy.CheckoutResult{}, err
	}
	var res proxy.CheckoutResult
	err := b.underLocks(ctx, b.visitorBudget(), 5, func(bud *budget) (err error) {
		res, err = b.checkoutLocked(ctx, bud, req)
		return err
	})
	return res, err
}

// checkoutLocked is Checkout's body: it takes the subject's and the
// customer's locks and pays its calls from bud.
func (b *Billing) checkoutLocked(ctx context.Context, bud *budget, req proxy.CheckoutRequest) (proxy.CheckoutResult, error) {
	subject, plan := req.Subject, req.Plan
	unlockSubject, err := b.locks.lock(ctx, subjectKey(subject.String()))
	if err != nil {
		return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: %w", err)
	}
	defer unlockSubject()

	cus, err := b.store.CustomerOf(ctx, subject)
	if err != nil {
		return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: customer of %s: %w", subject, err)
	}
	var state proxy.CustomerState
	var unlock func()
	for replaced := ""; ; {
		if cus == "" {
			if cus, err = b.createCustomer(ctx, bud, req.Identity, subject, replaced); err != nil {
				return proxy.CheckoutResult{}, err
			}
		}
		if unlock, err = b.locks.lock(ctx, customerKey(cus)); err != nil {
			return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: %w", err)
		}
		if state, _, err = b.syncLocked(ctx, bud, cus, ""); err != nil {
			unlock()
			return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: %w", err)
		}
		if !state.Deleted || replaced != "" {
			break
		}
		// The customer was deleted in Stripe: start over with a new one.
		unlock()
		b.log.InfoContext(ctx, "stripe: customer deleted in Stripe, creating a new one", "customer", cus, "subject", subject.String())
		replaced, cus = cus, ""
	}
	defer unlock()
	if state.Deleted {
		return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: customer %s is deleted in Stripe", cus)
	}

	ret := req.ReturnPath
	if ret == "" {
		ret = "/"
	}
	for _, s := range state.Subscriptions {
		if live(s.Status) {
			u, err := b.portalSession(ctx, bud, cus, b.public+ret)
			if err != nil {
				return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: %w", err)
			}
			b.log.InfoContext(ctx, "stripe: live subscription, portal instead of checkout",
				"customer", cus, "subject", subject.String(), "subscription", s.ID, "status", string(s.Status))
			return proxy.CheckoutResult{URL: u, Portal: true}, nil
		}
	}

	trial := plan.TrialDays > 0
	if trial {
		for _, s := range state.Subscriptions {
			if !s.TrialEnd.IsZero() {
				trial = false
			}
		}
	}
	if trial {
		had, err := b.store.HadTrial(ctx, cus)
		if err != nil {
			return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: had trial %s: %w", cus, err)
		}
		trial = !had
	}

	price := req.PriceID()
	metered := ""
	if plan.Meter != nil {
		metered = plan.Meter.Price
	}
	terms := idempotencyKey("terms", subject.String(), cus, req.Identity.UserID, plan.Key, price, metered,
		plan.TrialFeePrice, strconv.FormatBool(trial), strconv.Itoa(plan.TrialDays), ret,
		strconv.FormatBool(req.AllowPromotionCodes), strconv.FormatBool(req.AutomaticTax))
	open, err := b.openSessions(ctx, bud, cus)
	if err != nil {
		return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: %w", err)
	}
	var stale []string
	for _, cs := range open {
		if cs.Metadata[MetaTerms] == terms && cs.ClientReferenceID == req.Identity.UserID && cs.URL != "" &&
			time.Unix(cs.ExpiresAt, 0).Sub(b.now()) > minSessionLife {
			b.log.InfoContext(ctx, "stripe: checkout session reused", "session", cs.ID, "customer", cus,
				"subject", subject.String(), "plan", plan.Key)
			return proxy.CheckoutResult{URL: cs.URL}, nil
		}
		if err := b.expireSession(ctx, bud, cs.ID); err != nil {
			return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: %w", err)
		}
		stale = append(stale, cs.ID)
	}

	p := &stripe.CheckoutSessionParams{
		Mode:              stripe.String(string(stripe.CheckoutSessionModeSubscription)),
		Customer:          stripe.String(cus),
		ClientReferenceID: stripe.String(req.Identity.UserID),
		LineItems:         lineItems(plan, price),
		SuccessURL:        stripe.String(b.public + b.prefix + "/checkout/done?session_id={CHECKOUT_SESSION_ID}"),
		CancelURL: stripe.String(b.public + b.prefix + "/subscribe/" + url.PathEscape(plan.Key) + "?" +
			url.Values{"return": {ret}}.Encode()),
		SubscriptionData: &stripe.CheckoutSessionSubscriptionDataParams{
			Metadata: map[string]string{subjectMetadataKey(subject): subject.ID},
		},
		Metadata: map[string]string{
			MetaReturnPath: ret,
			MetaUserID:     req.Identity.UserID,
			MetaSubject:    subject.String(),
			MetaPlan:       plan.Key,
			MetaTerms:      terms,
		},
	}
	p.Context = ctx
	if req.AllowPromotionCodes {
		p.AllowPromotionCodes = stripe.Bool(true)
	}
	if req.AutomaticTax {
		// Stripe Tax needs to know where the customer is: Checkout asks
		// for the billing address and saves it on the customer, where the
		// renewals' invoices find it. Without customer_update Stripe
		// refuses a customer that has no address yet.
		p.AutomaticTax = &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}
		p.BillingAddressCollection = stripe.String(string(stripe.CheckoutSessionBillingAddressCollectionRequired))
		p.CustomerUpdate = &stripe.CheckoutSessionCustomerUpdateParams{Address: stripe.String("auto")}
	}
	if trial {
		// A paid trial: the one-time fee is a line item of its own, which
		// Checkout puts on the initial invoice only and charges now; the
		// recurring price is first charged when the trial ends.
		p.SubscriptionData.TrialPeriodDays = stripe.Int64(int64(plan.TrialDays))
		if plan.TrialFeePrice != "" {
			p.LineItems = append(p.LineItems, &stripe.CheckoutSessionLineItemParams{
				Price: stripe.String(plan.TrialFeePrice), Quantity: stripe.Int64(1)})
		}
	}
	// The key names the request and the state it was made in (the
	// customer's subscriptions, the sessions it replaces), so a retry, or a
	// second replica racing this one, gets the same session, and a request
	// made after a session was paid or expired does not: Stripe would
	// replay the old answer, whose URL leads to a closed session. A replay
	// is checked all the same, and a closed one is never handed out.
	keyParts := []string{terms}
	for _, s := range state.Subscriptions {
		keyParts = append(keyParts, s.ID)
	}
	var cs *stripe.CheckoutSession
	for attempt := 0; ; attempt++ {
		key := idempotencyKey("checkout", append(keyParts, stale...)...)
		if n, ok := b.failedKeys.Get(key); ok {
			key = idempotencyKey("checkout", key, strconv.Itoa(n))
		}
		p.SetIdempotencyKey(key)
		err = b.call(ctx, bud, func() (err error) {
			cs, err = b.api.CheckoutSessions.New(p)
			return err
		})
		if err != nil {
			if stripeStatus(err) >= 500 {
				// Stripe saved this failure under the key and would replay
				// it to this visitor for a day: the next try takes another.
				base := idempotencyKey("checkout", append(keyParts, stale...)...)
				n, _ := b.failedKeys.Get(base)
				b.failedKeys.Add(base, n+1)
			}
			return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: create session: %w", stripeFailure(err))
		}
		if !maybeReplayed(cs, b.now()) {
			break
		}
		if attempt == maxReplays {
			return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: session %s: Stripe keeps replaying closed sessions", cs.ID)
		}
		status, err := b.sessionStatus(ctx, bud, cs.ID)
		if err != nil {
			return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: %w", err)
		}
		if status == stripe.CheckoutSessionStatusOpen {
			break
		}
		b.log.InfoContext(ctx, "stripe: replayed checkout session is closed; opening another", "session", cs.ID, "status", string(status))
		stale = append(stale, cs.ID)
	}
	if cs.URL == "" {
		return proxy.CheckoutResult{}, fmt.Errorf("stripe checkout: session %s has no URL", cs.ID)
	}
	b.log.InfoContext(ctx, "stripe: checkout session created", "session", cs.ID, "customer", cus,
		"subject", subject.String(), "plan", plan.Key, "price", price, "trial", trial)
	return proxy.CheckoutResult{URL: cs.URL}, nil
}

// lineItems are a Checkout's subscription items: the chosen price, one of
// it, and a metered plan's metered price without a quantity, which Stripe
// requires of a metered line item (it refuses one with a quantity); a pure
// pay-as-you-go plan's chosen price is its metered price, listed once.
func lineItems(plan *proxy.Plan, price string) []*stripe.CheckoutSessionLineItemParams {
	var items []*stripe.CheckoutSessionLineItemParams
	if plan.Meter == nil || price != plan.Meter.Price {
		items = append(items, &stripe.CheckoutSessionLineItemParams{Price: stripe.String(price), Quantity: stripe.Int64(1)})
	}
	if plan.Meter != nil {
		items = append(items, &stripe.CheckoutSessionLineItemParams{Price: stripe.String(plan.Meter.Price)})
	}
	return items
}

func (b *Billing) checkRequest(req proxy.CheckoutRequest) error {
	id, s, p := req.Identity, req.Subject, req.Plan
	switch {
	case id == nil || id.UserID == "":
		return errors.New("stripe checkout: no identity")
	case p == nil || len(p.Prices) == 0 || p.Prices[0] == "":
		return errors.New("stripe checkout: plan has no price")
	case !p.HasPrice(req.PriceID()):
		return fmt.Errorf("stripe checkout: %q is not a price of plan %s", req.Price, p.Key)
	case (p.Scope == proxy.SubjectOrg) != (s.Kind == proxy.SubjectOrg):
		return fmt.Errorf("stripe checkout: plan %s is for a %s, subject is %s", p.Key, p.Scope, s)
	case s.Kind == proxy.SubjectUser && s.ID != id.UserID:
		return fmt.Errorf("stripe checkout: subject %s is not the visitor", s)
	case s.Kind == proxy.SubjectOrg && (s.ID == "" || s.ID != id.OrgID):
		return fmt.Errorf("stripe checkout: subject %s is not the visitor's active organisation", s)
	case s.Kind != proxy.SubjectUser && s.Kind != proxy.SubjectOrg:
		return fmt.Errorf("stripe checkout: bad subject %q", s)
	}
	return nil
}

// createCustomer creates the subject's Stripe customer, with the visitor's
// primary email and the subject in its metadata, and links the two. The
// idempotency key is derived from the subject, so a retry (or a lost link)
// within Stripe's idempotency window gets the same customer; replaced is
// the deleted customer this one replaces, if any.
func (b *Billing) createCustomer(ctx context.Context, bud *budget, id *proxy.Identity, subject proxy.Subject, replaced string) (string, error) {
	email := ""
	if b.dir != nil {
		var err error
		if email, err = b.dir.Email(ctx, id.UserID); err != nil {
			return "", fmt.Errorf("stripe checkout: primary email of %s: %w", id.UserID, err)
		}
	}
	p := &stripe.CustomerParams{Metadata: map[string]string{subjectMetadataKey(subject): subject.ID}}
	p.Context = ctx
	if email != "" {
		p.Email = stripe.String(email)
	}
	p.SetIdempotencyKey(idempotencyKey("customer", subject.String(), email, replaced))
	var c *stripe.Customer
	err := b.call(ctx, bud, func() (err error) {
		c, err = b.api.Customers.New(p)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("stripe checkout: create customer: %w", stripeFailure(err))
	}
	if err := b.store.LinkCustomer(ctx, subject, c.ID); err != nil {
		return "", fmt.Errorf("stripe checkout: link %s to %s: %w", c.ID, subject, err)
	}
	b.log.InfoContext(ctx, "stripe: customer created", "customer", c.ID, "subject", subject.String())
	return c.ID, nil
}

// minSessionLife is how long an open Checkout Session must still have
// before it expires to be handed out again (Stripe's default life is 24
// hours).
const minSessionLife = time.Hour

// maxReplays bounds how many replayed, closed sessions Checkout steps over.
const maxReplays = 3

// maybeReplayed reports whether Stripe may have answered a session
// creation with an earlier answer to the same idempotency key: it says so
// in the Idempotent-Replayed header, and the session is older than the
// request. A false alarm costs one call (the session's status is asked).
func maybeReplayed(cs *stripe.CheckoutSession, now time.Time) bool {
	if cs.LastResponse != nil && cs.LastResponse.Header.Get("Idempotent-Replayed") == "true" {
		return true
	}
	return cs.Created > 0 && now.Sub(time.Unix(cs.Created, 0)) > replayAge
}

// replayAge is how old a just-created session may look (clocks disagree)
// before it is taken for a replay.
const replayAge = 10 * time.Minute

// openSessions lists the customer's open Checkout Sessions that tollgate
// made (its metadata subject, subscription mode): the newest 100, which is
// every one in practice (Checkout lets a session live 24 hours).
func (b *Billing) openSessions(ctx context.Context, bud *budget, cus string) ([]*stripe.CheckoutSession, error) {
	var out []*stripe.CheckoutSession
	err := b.call(ctx, bud, func() error {
		p := &stripe.CheckoutSessionListParams{Customer: stripe.String(cus), Status: stripe.String(string(stripe.CheckoutSessionStatusOpen))}
		p.Context = ctx
		p.Limit = stripe.Int64(100)
		p.Single = true
		out = out[:0]
		it := b.api.CheckoutSessions.List(p)
		for it.Next() {
			cs := it.CheckoutSession()
			if cs.Status == stripe.CheckoutSessionStatusOpen && cs.Mode == stripe.CheckoutSessionModeSubscription && cs.Metadata[MetaSubject] != "" {
				out = append(out, cs)
			}
		}
		return it.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list open checkout sessions of %s: %w", cus, stripeFailure(err))
	}
	return out, nil
}

// expireSession expires an open Checkout Session so that it can no longer
// be paid. One that is no longer open (paid or expired meanwhile) is not
// an error: the caller's sync sees what became of it.
func (b *Billing) expireSession(ctx context.Context, bud *budget, id string) error {
	err := b.call(ctx, bud, func() error {
		p := &stripe.CheckoutSessionExpireParams{}
		p.Context = ctx
		_, err := b.api.CheckoutSessions.Expire(id, p)
		return err
	})
	switch {
	case err == nil:
		b.log.InfoContext(ctx, "stripe: checkout session expired", "session", id)
		return nil
	case stripeStatus(err) == http.StatusBadRequest:
		b.log.WarnContext(ctx, "stripe: checkout session could not be expired; it is no longer open", "session", id, "err", err)
		return nil
	}
	return fmt.Errorf("expire checkout session %s: %w", id, stripeFailure(err))
}

// sessionStatus is a Checkout Session's status now.
func (b *Billing) sessionStatus(ctx context.Context, bud *budget, id string) (stripe.CheckoutSessionStatus, error) {
	var cs *stripe.CheckoutSession
	err := b.call(ctx, bud, func() (err error) {
		p := &stripe.CheckoutSessionParams{}
		p.Context = ctx
		cs, err = b.api.CheckoutSessions.Get(id, p)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("get checkout session %s: %w", id, stripeFailure(err))
	}
	return cs.Status, nil
}

// expireOthers expires the customer's open Checkout Sessions of tollgate's
// but keep, once keep has completed: a subject holds one subscription made
// through tollgate's Checkout (README "Billing").
func (b *Billing) expireOthers(ctx context.Context, bud *budget, cus, keep string) error {
	open, err := b.openSessions(ctx, bud, cus)
	if err != nil {
		return err
	}
	for _, cs := range open {
		if cs.ID == keep {
			continue
		}
		if err := b.expireSession(ctx, bud, cs.ID); err != nil {
			return err
		}
	}
	return nil
}

// idempotencyKey derives a Stripe Idempotency-Key from the request's
// parameters, so a different request never collides with an earlier one.
func idempotencyKey(kind string, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return "tollgate-" + kind + "-" + hex.EncodeToString(h[:20])
}

// CompleteCheckout handles Checkout's success URL: it checks that the
// session belongs to the visitor (proxy.ErrNotYours otherwise), links its
// customer if needed, syncs the customer under its lock, and says whether
// the subject is entitled already.
//
// Only an ID of the form proxy.ValidCheckoutSessionID accepts is looked
// up, and whom a session belongs to (or that Stripe does not know it) is
// remembered: asking again about an ID that is not the visitor's costs no
// Stripe call. Its calls are paid from the visitors' lane; the sync's two
// before any lock.
func (b *Billing) CompleteCheckout(ctx context.Context, sessionID string, id *proxy.Identity) (proxy.CheckoutReturn, error) {
	if id == nil || id.UserID == "" || !proxy.ValidCheckoutSessionID(sessionID) {
		return proxy.CheckoutReturn{}, proxy.ErrNotYours
	}
	if f, ok := b.sessions.get(sessionID, b.now()); ok && f.owner != id.UserID {
		return proxy.CheckoutReturn{}, fmt.Errorf("stripe checkout return: session unknown or someone else's (remembered): %w", proxy.ErrNotYours)
	}
	var cs *stripe.CheckoutSession
	err := b.call(ctx, b.visitorBudget(), func() (err error) {
		p := &stripe.CheckoutSessionParams{}
		p.Context = ctx
		p.AddExpand("subscription")
		cs, err = b.api.CheckoutSessions.Get(sessionID, p)
		return err
	})
	if isResourceMissing(err) {
		b.sessions.put(sessionID, "", b.now())
		return proxy.CheckoutReturn{}, fmt.Errorf("stripe checkout return: session not found: %w", proxy.ErrNotYours)
	}
	if err != nil {
		return proxy.CheckoutReturn{}, fmt.Errorf("stripe checkout return: get session: %w", stripeFailure(err))
	}
	b.sessions.put(sessionID, cs.ClientReferenceID, b.now())
	if cs.ClientReferenceID == "" || cs.ClientReferenceID != id.UserID {
		b.log.WarnContext(ctx, "stripe: checkout session of someone else", "session", cs.ID, "user", id.UserID)
		return proxy.CheckoutReturn{}, proxy.ErrNotYours
	}
	ret := proxy.CheckoutReturn{ReturnPath: cs.Metadata[MetaReturnPath]}
	if cs.Customer == nil || cs.Customer.ID == "" {
		return ret, nil // not paid yet: nothing to sync
	}
	cus := cs.Customer.ID
	subject, perr := proxy.ParseSubject(cs.Metadata[MetaSubject])
	if perr != nil {
		// Not a session tollgate made (a Payment Link's, whose
		// client_reference_id anyone can set in its URL): nothing is
		// linked from it, and the webhook's sync settles whoever it was.
		return ret, nil
	}
	complete := cs.Status == stripe.CheckoutSessionStatusComplete && cs.Mode == stripe.CheckoutSessionModeSubscription
	err = b.underLocks(ctx, b.visitorBudget(), 2, func(bud *budget) error {
		settled, err := b.completeLocked(ctx, bud, subject, cus)
		ret.Settled = settled
		if err == nil && complete {
			// The subject's other open sessions can no longer be paid.
			// The webhook does the same and retries; the visitor's return
			// is not held up by it.
			if xerr := b.expireOthers(ctx, bud, cus, cs.ID); xerr != nil {
				b.log.WarnContext(ctx, "stripe: expiring the other open checkout sessions", "customer", cus, "err", xerr)
			}
		}
		return err
	})
	if err != nil {
		return ret, fmt.Errorf("stripe checkout return: %w", err)
	}
	return ret, nil
}

// completeLocked links and syncs the customer a Checkout Session paid
// with, under the subject's and the customer's locks, and says whether the
// subject is entitled now.
func (b *Billing) completeLocked(ctx context.Context, bud *budget, subject proxy.Subject, cus string) (bool, error) {
	unlockSubject, err := b.locks.lock(ctx, subjectKey(subject.String()))
	if err != nil {
		return false, err
	}
	defer unlockSubject()
	unlock, err := b.locks.lock(ctx, customerKey(cus))
	if err != nil {
		return false, err
	}
	defer unlock()
	if err := b.linkIfUnlinked(ctx, subject, cus); err != nil {
		return false, err
	}
	_, ents, err := b.syncLocked(ctx, bud, cus, "")
	if err != nil {
		return false, err
	}
	if ents != nil && ents.Subject == subject {
		now := b.now()
		subs := ents.All(now)
		for i := range subs {
			if proxy.Grants(&subs[i], *b.access.Load(), now) {
				return true, nil
			}
		}
	}
	return false, nil
}

// linkIfUnlinked links subject ↔ customer when neither is linked yet. A
// customer already linked (to anyone) keeps its link, and a subject linked
// to another customer keeps that one. The caller holds both locks.
func (b *Billing) linkIfUnlinked(ctx context.Context, subject proxy.Subject, cus string) error {
	owner, ok, err := b.store.SubjectOf(ctx, cus)
	if err != nil {
		return fmt.Errorf("subject of %s: %w", cus, err)
	}
	if ok {
		if owner != subject {
			b.log.WarnContext(ctx, "stripe: customer is linked to another subject; keeping it",
				"customer", cus, "subject", subject.String(), "linked_subject", owner.String())
		}
		return nil
	}
	cur, err := b.store.CustomerOf(ctx, subject)
	if err != nil {
		return fmt.Errorf("customer of %s: %w", subject, err)
	}
	if cur != "" && cur != cus {
		b.log.WarnContext(ctx, "stripe: subject already has another customer; not linking",
			"customer", cus, "subject", subject.String(), "linked_customer", cur)
		return nil
	}
	if err := b.store.LinkCustomer(ctx, subject, cus); err != nil {
		return fmt.Errorf("link %s to %s: %w", cus, subject, err)
	}
	return nil
}

// Portal opens a Billing Portal session for the subject's customer;
// proxy.ErrNoCustomer when it has none. One call, from the visitors' lane.
func (b *Billing) Portal(ctx context.Context, subject proxy.Subject, returnURL string) (string, error) {
	cus, err := b.store.CustomerOf(ctx, subject)
	if err != nil {
		return "", fmt.Errorf("stripe portal: customer of %s: %w", subject, err)
	}
	if cus == "" {
		return "", proxy.ErrNoCustomer
	}
	return b.portalSession(ctx, b.visitorBudget(), cus, returnURL)
}

func (b *Billing) portalSession(ctx context.Context, bud *budget, cus, returnURL string) (string, error) {
	var ps *stripe.BillingPortalSession
	err := b.call(ctx, bud, func() (err error) {
		p := &stripe.BillingPortalSessionParams{Customer: stripe.String(cus)}
		p.Context = ctx
		if returnURL != "" {
			p.ReturnURL = stripe.String(returnURL)
		}
		ps, err = b.api.BillingPortalSessions.New(p)
		return err
	})
	if err != nil {
		var se *stripe.Error
		if errors.As(err, &se) && se.Code == stripe.ErrorCodeResourceMissing {
			// The key cannot see the customer (400 for a parameter).
			b.anomaly(AnomalyCustomerUnseen)
			b.log.ErrorContext(ctx, "stripe: the key cannot see a customer (resource_missing) for the portal", "customer", cus, "err", err)
			return "", fmt.Errorf("stripe portal session for %s: %w", cus, ErrCustomerUnseen)
		}
		if stripeStatus(err) == http.StatusBadRequest {
			// Most often: no portal configuration saved in this mode yet
			// (Dashboard → Settings → Billing → Customer portal).
			return "", fmt.Errorf("stripe portal session for %s (is the customer portal configured in the Stripe Dashboard?): %w", cus, err)
		}
		return "", fmt.Errorf("stripe portal session for %s: %w", cus, stripeFailure(err))
	}
	return ps.URL, nil
}

package stripe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/tollgate/tollgate/proxy"
)

// handledEvents are the event types that make tollgate re-sync the
// customer they name: what a webhook endpoint should be subscribed to
// (README "Deploy"), and what the catch-up asks the Events API for. At
// most 20, the most the Events API's types[] takes. Anything else is
// acknowledged and marked processed.
var handledEvents = []string{
	"checkout.session.completed",
	"checkout.session.async_payment_succeeded",
	"checkout.session.async_payment_failed",
	"customer.created",
	"customer.updated",
	"customer.deleted",
	"customer.subscription.created",
	"customer.subscription.updated",
	"customer.subscription.deleted",
	"customer.subscription.paused",
	"customer.subscription.resumed",
	"customer.subscription.trial_will_end",
	"customer.subscription.pending_update_applied",
	"customer.subscription.pending_update_expired",
	"invoice.paid",
	"invoice.payment_succeeded",
	"invoice.payment_failed",
	"invoice.payment_action_required",
	"invoice.marked_uncollectible",
	"entitlements.active_entitlement_summary.updated",
}

// HandledEvents lists the event types tollgate acts on.
func HandledEvents() []string { return append([]string(nil), handledEvents...) }

// syncsCustomer reports the event types that make tollgate re-sync the
// customer they name.
func syncsCustomer(typ string) bool { return slices.Contains(handledEvents, typ) }

// linksCheckout reports the events that link the checkout session's
// subject to its customer before the sync.
func linksCheckout(typ string) bool {
	return typ == "checkout.session.completed" || typ == "checkout.session.async_payment_succeeded"
}

// WebhookHandler serves Stripe's webhook (POST, mounted by the caller at
// <prefix>/webhooks/stripe). It verifies the signature on the size-capped
// raw body against every configured secret, acknowledges duplicates with no
// work, reads only IDs from the payload (which may be in any API version),
// re-syncs the customer the event names and commits that state with the
// event ID before answering 200. Bad input gets 4xx and changes nothing; a
// Stripe or storage failure gets 5xx, so Stripe retries the event.
func (b *Billing) WebhookHandler() http.Handler {
	return http.HandlerFunc(b.serveWebhook)
}

func (b *Billing) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		webhookReply(w, http.StatusMethodNotAllowed)
		return
	}
	ctx := r.Context()
	if len(b.secrets) == 0 {
		b.log.ErrorContext(ctx, "stripe webhook: no webhook secret configured")
		webhookReply(w, http.StatusServiceUnavailable)
		return
	}
	if r.Header.Get("Stripe-Signature") == "" {
		// Refused before the body is read: a delivery without the
		// header cannot verify, and must not hold a reader's slot.
		b.observe("unverified", "rejected", 0)
		w.Header().Set("Connection", "close")
		webhookReply(w, http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, b.maxBody))
	if err != nil {
		if errors.Is(err, proxy.ErrBodyBudget) {
			w.Header().Set("Retry-After", "10")
			webhookReply(w, http.StatusServiceUnavailable)
			return
		}
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			b.log.WarnContext(ctx, "stripe webhook: body too large", "limit", b.maxBody)
			webhookReply(w, http.StatusRequestEntityTooLarge)
			return
		}
		webhookReply(w, http.StatusBadRequest)
		return
	}
	ev, err := b.verify(body, r.Header.Get("Stripe-Signature"))
	if err != nil {
		// Never log the body or the signature.
		b.log.WarnContext(ctx, "stripe webhook: rejected", "reason", err.Error())
		b.observe("unverified", "rejected", 0)
		webhookReply(w, http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, webhookDeadline)
	defer cancel()
	code, deferred := b.handleEvent(ctx, &ev)
	switch {
	case code < 300 && deferred:
		b.observe(string(ev.Type), "deferred", 0)
	case code < 300:
		b.observe(string(ev.Type), "processed", b.now().Sub(time.Unix(ev.Created, 0)))
	default:
		b.observe(string(ev.Type), "failed", 0)
	}
	webhookReply(w, code)
}

func (b *Billing) observe(eventType, result string, lag time.Duration) {
	if b.obs != nil {
		b.obs.WebhookEvent("stripe", eventType, result, lag)
	}
}

func webhookReply(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, http.StatusText(code)+"\n")
}

// verify checks the Stripe-Signature header against each secret (any may
// match: rotation) and the timestamp against the injected clock, and parses
// the event whatever its API version.
func (b *Billing) verify(body []byte, header string) (stripe.Event, error) {
	if header == "" {
		return stripe.Event{}, webhook.ErrNotSigned
	}
	ts, ok := signatureTime(header)
	if !ok {
		return stripe.Event{}, webhook.ErrInvalidHeader
	}
	if b.now().Sub(ts) > webhookTolerance {
		return stripe.Event{}, webhook.ErrTooOld
	}
	err := webhook.ErrNoValidSignature
	for _, secret := range b.secrets {
		var ev stripe.Event
		ev, err = webhook.ConstructEventWithOptions(body, header, secret, webhook.ConstructEventOptions{
			IgnoreTolerance:          true, // checked above, on our clock
			IgnoreAPIVersionMismatch: true, // only IDs are read from the payload
		})
		if err == nil {
			if ev.ID == "" || ev.Type == "" {
				return stripe.Event{}, errors.New("event without id or type")
			}
			return ev, nil
		}
		if !errors.Is(err, webhook.ErrNoValidSignature) {
			break // a malformed header or body: no other secret helps
		}
	}
	if errors.Is(err, webhook.ErrNoValidSignature) || errors.Is(err, webhook.ErrInvalidHeader) || errors.Is(err, webhook.ErrNotSigned) {
		return stripe.Event{}, err
	}
	return stripe.Event{}, errors.New("signed body is not a Stripe event")
}

// signatureTime is the t= of a Stripe-Signature header (the last one, as
// stripe-go reads it).
func signatureTime(header string) (time.Time, bool) {
	var t time.Time
	found := false
	for _, pair := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k != "t" {
			continue
		}
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		t, found = time.Unix(sec, 0), true
	}
	return t, found
}

// handleEvent processes a verified event and returns the status to
// answer, and whether the customer's sync was deferred to the dirty worker
// (dirty.go) rather than made before the answer.
func (b *Billing) handleEvent(ctx context.Context, ev *stripe.Event) (int, bool) {
	typ := string(ev.Type)
	log := b.log.With("event_id", ev.ID, "event_type", typ)
	if ev.APIVersion != "" && ev.APIVersion != stripe.APIVersion {
		log.DebugContext(ctx, "stripe webhook: event in another API version; reading IDs only",
			"api_version", ev.APIVersion, "sdk_api_version", stripe.APIVersion)
	}
	if ev.Livemode != b.livemode {
		// A test-mode endpoint pointed at a live gateway (or the other way
		// round), its secret listed: acknowledged, so Stripe stops
		// retrying, and ignored; its objects are not this key's.
		b.anomaly(AnomalyLivemodeMismatch)
		log.WarnContext(ctx, "stripe webhook: event of the other mode than the key's; ignored",
			"event_livemode", ev.Livemode, "key_mode", modeName(b.livemode))
		return http.StatusOK, false
	}
	done, err := b.store.EventProcessed(ctx, ev.ID)
	if err != nil {
		log.ErrorContext(ctx, "stripe webhook: event lookup", "err", err)
		return http.StatusServiceUnavailable, false
	}
	if done {
		log.DebugContext(ctx, "stripe webhook: duplicate")
		return http.StatusOK, false
	}
	var obj eventObject
	if ev.Data != nil {
		obj = parseEventObject(ev.Data.Raw)
	}
	cus := obj.customerID()
	if !syncsCustomer(typ) || cus == "" {
		if syncsCustomer(typ) {
			log.InfoContext(ctx, "stripe webhook: event names no customer; nothing to sync", "object", obj.Object)
		}
		if err := b.store.MarkEvent(ctx, ev.ID); err != nil {
			log.ErrorContext(ctx, "stripe webhook: mark event", "err", err)
			return http.StatusServiceUnavailable, false
		}
		return http.StatusOK, false
	}
	log = log.With("customer", cus)
	if !linksCheckout(typ) {
		return b.syncOrDefer(ctx, log, cus, ev.ID)
	}
	// A completed Checkout links its subject and expires the subject's
	// other sessions before the answer, always: such events are few, and
	// the visitor who paid is waiting for them.
	subject, link := obj.checkoutSubject()
	completed := ""
	if obj.Mode == string(stripe.CheckoutSessionModeSubscription) {
		completed = obj.ID
	}
	// Two calls (the customer, its subscriptions), paid from the background
	// lane before any lock is taken.
	var state proxy.CustomerState
	err = b.underLocks(ctx, b.backgroundBudget(b.retries), 2, func(bud *budget) (err error) {
		state, err = b.eventLocked(ctx, bud, subject, link, cus, completed, ev.ID)
		return err
	})
	if err != nil {
		log.ErrorContext(ctx, "stripe webhook: sync", "err", err)
		return webhookFailure(err), false
	}
	// (An unseen customer is a 503 too: nothing was committed, and Stripe
	// retries the event until the key is put right.)
	log.InfoContext(ctx, "stripe webhook: customer synced", "subscriptions", len(state.Subscriptions), "deleted", state.Deleted)
	return http.StatusOK, false
}

// eagerWait is how long a webhook may wait for the background lane to
// sync before its answer, while nothing waits in the backlog: a trickle
// of events is synced as it comes, as before.
const eagerWait = time.Second

// eagerRoom takes the two calls of a sync before the answer from the
// background lane, leaving its room: at once, or after at most eagerWait
// when the backlog is empty. It reports false, having taken nothing, when
// the event should be deferred instead.
func (b *Billing) eagerRoom(ctx context.Context) bool {
	d, ok := b.background.reserveAbove(2)
	if ok {
		return true
	}
	if d > eagerWait {
		return false
	}
	if bl, err := b.store.DirtyBacklog(ctx); err != nil || bl.Customers > 0 {
		return false // a backlog: this event joins it rather than wait
	}
	d, ok = b.background.reserveAboveWithin(2, eagerWait)
	if !ok {
		return false
	}
	if err := b.sleep(ctx, d); err != nil {
		b.background.cancel(2)
		return false
	}
	return true
}

// syncOrDefer syncs the customer an event names before the answer while
// the background lane has room for its two calls beyond what is kept for
// eager syncs (eagerRoom), as before; otherwise (a burst: the lane is spent), or when
// that sync fails for want of Stripe, it commits the event ID and a
// durable dirty mark for the customer in one group commit and answers 200
// at once: the dirty worker reads the customer from Stripe later, at the
// lane's pace, many events in one fetch. So a renewal storm is
// acknowledged as fast as the disk commits, and no event waits on the
// pacer until Stripe gives up on it.
func (b *Billing) syncOrDefer(ctx context.Context, log *slog.Logger, cus, eventID string) (int, bool) {
	if b.eagerRoom(ctx) {
		bud := b.backgroundBudget(b.retries)
		bud.prepaid = 2
		var state proxy.CustomerState
		err := b.underLocks(ctx, bud, 2, func(lb *budget) (err error) {
			state, err = b.eventLocked(ctx, lb, proxy.Subject{}, false, cus, "", eventID)
			return err
		})
		switch {
		case err == nil:
			log.InfoContext(ctx, "stripe webhook: customer synced", "subscriptions", len(state.Subscriptions), "deleted", state.Deleted)
			return http.StatusOK, false
		case errors.Is(err, ErrCustomerUnseen):
			// Nothing committed, and Stripe retries the event until the
			// key is put right.
			log.ErrorContext(ctx, "stripe webhook: sync", "err", err)
			return http.StatusServiceUnavailable, false
		case !errors.Is(err, proxy.ErrStripeUnavail) && stripeStatus(err) == 0:
			// Not Stripe's failure (the store, the deadline): marking
			// would fail the same way.
			log.ErrorContext(ctx, "stripe webhook: sync", "err", err)
			return webhookFailure(err), false
		}
		log.WarnContext(ctx, "stripe webhook: sync failed; deferred to the dirty worker", "err", err)
	}
	if err := b.store.MarkDirty(ctx, cus, eventID); err != nil {
		log.ErrorContext(ctx, "stripe webhook: mark customer dirty", "err", err)
		return http.StatusServiceUnavailable, false
	}
	b.kickDirty()
	log.DebugContext(ctx, "stripe webhook: customer marked dirty")
	return http.StatusOK, true
}

// eventLocked takes the customer's lock (and first the subject's, when
// link is set: the lock order everywhere is subject, then customer), links
// a checkout's subject to its customer if neither is linked yet, expires
// the customer's other open Checkout Sessions of tollgate's when completed
// names a subscription session that completed, and syncs the customer,
// committing eventID with its state.
func (b *Billing) eventLocked(ctx context.Context, bud *budget, subject proxy.Subject, link bool, cus, completed, eventID string) (proxy.CustomerState, error) {
	if link {
		unlockSubject, err := b.locks.lock(ctx, subjectKey(subject.String()))
		if err != nil {
			return proxy.CustomerState{}, fmt.Errorf("lock: %w", err)
		}
		defer unlockSubject()
	}
	unlock, err := b.locks.lock(ctx, customerKey(cus))
	if err != nil {
		return proxy.CustomerState{}, fmt.Errorf("lock: %w", err)
	}
	defer unlock()
	if link {
		if err := b.linkIfUnlinked(ctx, subject, cus); err != nil {
			return proxy.CustomerState{}, fmt.Errorf("link checkout subject: %w", err)
		}
	}
	if completed != "" {
		// Before the commit: if this fails, Stripe retries the event.
		if err := b.expireOthers(ctx, bud, cus, completed); err != nil {
			return proxy.CustomerState{}, err
		}
	}
	state, _, err := b.syncLocked(ctx, bud, cus, eventID)
	return state, err
}

// webhookFailure is what Stripe is answered for an event that failed: 503
// when Stripe failed or time ran out (waiting for a lock or the pacer), so
// Stripe retries; 500 for storage failures.
func webhookFailure(err error) int {
	if errors.Is(err, proxy.ErrStripeUnavail) || errors.Is(err, ErrCustomerUnseen) || stripeStatus(err) != 0 ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// eventObject is all tollgate reads of an event's data.object: IDs, in a
// shape every API version shares.
type eventObject struct {
	ID                string
	Object            string
	Mode              string // a checkout session's
	Customer          string
	ClientReferenceID string
	Metadata          map[string]string
}

// parseEventObject reads the IDs leniently: a field of an unexpected type
// is left empty rather than failing the whole object.
func parseEventObject(raw json.RawMessage) eventObject {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return eventObject{}
	}
	str := func(k string) string {
		var s string
		if json.Unmarshal(m[k], &s) != nil {
			return ""
		}
		return s
	}
	o := eventObject{ID: str("id"), Object: str("object"), Customer: str("customer"), ClientReferenceID: str("client_reference_id")}
	if o.Object == "checkout.session" {
		o.Mode = str("mode")
	}
	if o.Customer == "" { // an expanded customer
		var c struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(m["customer"], &c) == nil {
			o.Customer = c.ID
		}
	}
	var md map[string]any
	if json.Unmarshal(m["metadata"], &md) == nil {
		o.Metadata = map[string]string{}
		for k, v := range md {
			if s, ok := v.(string); ok {
				o.Metadata[k] = s
			}
		}
	}
	return o
}

// customerID is the customer an object belongs to: itself for a customer,
// its customer field for subscriptions, invoices and checkout sessions.
func (o eventObject) customerID() string {
	if o.Object == "customer" {
		return o.ID
	}
	return o.Customer
}

// checkoutSubject is who a checkout session was for: tollgate's own
// metadata subject, else a Clerk user ID in client_reference_id.
func (o eventObject) checkoutSubject() (proxy.Subject, bool) {
	// Only the metadata tollgate writes on its own sessions. A
	// client_reference_id alone is not enough: a Payment Link takes it from
	// its URL (?client_reference_id=) and a pricing table from the page, so
	// anyone could name someone else and have their customer linked to
	// that person (docs/SECURITY.md, "Trust boundaries").
	if s, err := proxy.ParseSubject(o.Metadata[MetaSubject]); err == nil {
		return s, true
	}
	return proxy.Subject{}, false
}

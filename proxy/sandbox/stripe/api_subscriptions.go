package stripesandbox

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The Subscriptions API (list, retrieve, update, cancel) and invoice
// retrieval.

func (s *Stripe) customerSubsLocked(customer string) []*subscription {
	var out []*subscription
	for _, sub := range s.subs {
		if sub.customer == customer {
			out = append(out, sub)
		}
	}
	slices.SortFunc(out, func(a, b *subscription) int { return cmpDesc(a.seq, b.seq) })
	return out
}

func (s *Stripe) apiListSubscriptions(r *http.Request) (any, *apiError) {
	status := r.Form.Get("status")
	keepStatus := func(st string) bool { return st != "canceled" }
	switch status {
	case "":
	case "all":
		keepStatus = func(string) bool { return true }
	case "ended":
		keepStatus = func(st string) bool { return st == "canceled" || st == "incomplete_expired" }
	default:
		if !validStatus(status) {
			return nil, errInvalid("status", "Invalid status: must be one of active, past_due, unpaid, canceled, "+
				"incomplete, incomplete_expired, trialing, paused, all, or ended")
		}
		keepStatus = func(st string) bool { return st == status }
	}
	customer, priceParam := r.Form.Get("customer"), r.Form.Get("price")
	if customer != "" {
		if _, e := visible(s, s.customers, "customer", customer, "customer"); e != nil {
			return nil, e
		}
	}
	var all []*subscription
	for _, sub := range s.subs {
		if sub.livemode != s.view.live || customer != "" && sub.customer != customer || !keepStatus(sub.status) {
			continue
		}
		if priceParam != "" && !slices.ContainsFunc(sub.items, func(it subItem) bool { return it.price.ID == priceParam }) {
			continue
		}
		all = append(all, sub)
	}
	slices.SortFunc(all, func(a, b *subscription) int { return cmpDesc(a.seq, b.seq) })
	page, more, e := paginate(r.Form, all, func(s *subscription) int64 { return s.seq }, func(id string) (int64, bool) {
		if sub := s.subs[id]; sub != nil && sub.livemode == s.view.live {
			return sub.seq, true
		}
		return 0, false
	}, "subscription")
	if e != nil {
		return nil, e
	}
	exp := expandOf(r).sub("data")
	data := make([]subscriptionJSON, 0, len(page))
	for _, sub := range page {
		data = append(data, s.subJSON(sub, exp))
	}
	return listOf(data, more, "/v1/subscriptions"), nil
}

func (s *Stripe) apiGetSubscription(r *http.Request) (any, *apiError) {
	sub, e := visible(s, s.subs, "subscription", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	return s.subJSON(sub, expandOf(r)), nil
}

// apiUpdateSubscription supports cancel_at_period_end, pause_collection
// and metadata.
func (s *Stripe) apiUpdateSubscription(r *http.Request) (any, *apiError) {
	sub, e := visible(s, s.subs, "subscription", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	for k := range r.Form {
		if strings.HasPrefix(k, "items") || k == "price" || k == "plan" {
			return nil, errInvalid(k, "The tollgate sandbox cannot change a subscription's items; "+
				"cancel it and check out again.")
		}
	}
	cape, hasCape, e := formBool(r.Form, "cancel_at_period_end")
	if e != nil {
		return nil, e
	}
	if hasCape && sub.status == "canceled" {
		return nil, errInvalid("cancel_at_period_end",
			"A canceled subscription can only update its cancellation_details and metadata.")
	}
	pause, hasPause, e := s.pauseCollectionParam(r.Form)
	if e != nil {
		return nil, e
	}
	if hasPause && sub.status == "canceled" {
		return nil, errInvalid("pause_collection",
			"A canceled subscription can only update its cancellation_details and metadata.")
	}
	prev := map[string]any{}
	if hasCape && cape != sub.cancelAtPeriodEnd {
		s.setCancelAtPeriodEndLocked(sub, cape, prev)
	}
	if hasPause && (pause.behavior != sub.pauseBehavior || !pause.resumes.Equal(sub.pauseResumes)) {
		prev["pause_collection"] = pauseJSON(sub)
		sub.pauseBehavior, sub.pauseResumes = pause.behavior, pause.resumes
		s.log.Info("sandbox stripe: payment collection", "subscription", sub.id, "pause", pause.behavior, "resumes_at", pause.resumes)
	}
	if md, ok := formMap(r.Form, "metadata"); ok {
		sub.metadata = updateMetadata(sub.metadata, md, prev)
	}
	if len(prev) > 0 {
		s.emitLocked("customer.subscription.updated", func() any { return s.subJSON(sub, nil) }, prev)
	}
	return s.subJSON(sub, expandOf(r)), nil
}

type pauseParam struct {
	behavior string // "": not paused
	resumes  time.Time
}

// pauseCollectionParam reads pause_collection[behavior] and
// pause_collection[resumes_at], or pause_collection="" (resume now), as
// the Update Subscription endpoint takes them.
func (s *Stripe) pauseCollectionParam(f url.Values) (pauseParam, bool, *apiError) {
	if f.Has("pause_collection") {
		if f.Get("pause_collection") != "" {
			return pauseParam{}, true, errInvalid("pause_collection", "Invalid pause_collection: must be an object or an empty string.")
		}
		return pauseParam{}, true, nil
	}
	md, ok := formMap(f, "pause_collection")
	if !ok {
		return pauseParam{}, false, nil
	}
	p := pauseParam{behavior: md["behavior"]}
	switch p.behavior {
	case "keep_as_draft", "mark_uncollectible", "void":
	case "":
		return pauseParam{}, true, errMissing("pause_collection[behavior]")
	default:
		return pauseParam{}, true, errInvalid("pause_collection[behavior]",
			"Invalid pause_collection[behavior]: must be one of keep_as_draft, mark_uncollectible, or void")
	}
	if v, ok := md["resumes_at"]; ok && v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return pauseParam{}, true, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error",
				Code: "parameter_invalid_integer", Param: "pause_collection[resumes_at]", Message: "Invalid integer: " + v}
		}
		p.resumes = time.Unix(sec, 0)
		if !p.resumes.After(s.billingNowLocked()) {
			return pauseParam{}, true, errInvalid("pause_collection[resumes_at]", "resumes_at must be in the future.")
		}
	}
	return p, true, nil
}

// setCancelAtPeriodEndLocked sets or clears cancel_at_period_end, noting
// the previous values in prev.
func (s *Stripe) setCancelAtPeriodEndLocked(sub *subscription, on bool, prev map[string]any) {
	prev["cancel_at_period_end"] = sub.cancelAtPeriodEnd
	prev["canceled_at"] = unixOrNull(sub.canceledAt)
	if sub.cancelAtPeriodEnd {
		prev["cancel_at"] = sub.periodEnd.Unix()
	} else {
		prev["cancel_at"] = nil
	}
	sub.cancelAtPeriodEnd = on
	if on {
		sub.canceledAt = s.billingNowLocked()
		sub.cancelReason = "cancellation_requested"
	} else {
		sub.canceledAt, sub.cancelReason = time.Time{}, ""
	}
}

func (s *Stripe) apiCancelSubscription(r *http.Request) (any, *apiError) {
	sub, e := visible(s, s.subs, "subscription", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	if sub.status == "canceled" {
		return nil, errInvalid("id", "This subscription is already canceled.")
	}
	s.cancelNowLocked(sub, s.billingNowLocked(), "cancellation_requested")
	return s.subJSON(sub, expandOf(r)), nil
}

func (s *Stripe) apiGetInvoice(r *http.Request) (any, *apiError) {
	in, e := visible(s, s.invoices, "invoice", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	return s.invoiceJSON(in), nil
}

package stripesandbox

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
)

// event is an event the sandbox generated, with its webhook deliveries:
// one per endpoint of its mode that wanted it when it happened (none when
// no endpoint did).
type event struct {
	id, typ    string
	created    int64 // wall clock, unix seconds
	seq        int64
	apiVersion string // the account's default when it happened: what object is rendered in
	live       bool   // its object's mode
	object     json.RawMessage
	prev       map[string]any

	deliveries []*delivery
}

// delivery is one event's delivery to one endpoint.
type delivery struct {
	ev         *event
	endpointID string // "" for the endpoint SetWebhook sets
	url        string
	secret     string
	body       []byte // the payload as delivered, the same for every attempt
	status     int
	attempts   int
	delivered  bool
}

func (ev *event) isLive() bool { return ev.live }

// pending counts the endpoints the event has not yet reached (its
// pending_webhooks): those still retrying and those given up on.
func (ev *event) pending() int64 {
	var n int64
	for _, d := range ev.deliveries {
		if !d.delivered {
			n++
		}
	}
	return n
}

func (ev *event) json() eventJSON {
	return eventJSON{
		ID: ev.id, Object: "event", APIVersion: ev.apiVersion, Created: ev.created,
		Data: eventDataJSON{Object: ev.object, PreviousAttributes: ev.prev}, Livemode: ev.live,
		PendingWebhooks: ev.pending(), Type: ev.typ,
	}
}

// renderLocked renders an event's object and previous attributes in
// version, for the mode of the request being answered. prev is given in
// 2023-10-16's names and moved where version keeps them.
func (s *Stripe) renderLocked(version string, render func() any, prev map[string]any) (json.RawMessage, map[string]any, error) {
	saved := s.view
	s.view = view{version: version, live: saved.live}
	obj := render()
	s.view = saved
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, nil, err
	}
	var head struct {
		Object string `json:"object"`
	}
	_ = json.Unmarshal(raw, &head)
	if (view{version: version}).basil() && head.Object == "subscription" {
		prev = basilPrev(raw, prev)
	}
	return raw, prev, nil
}

// emitLocked records an event about the object render returns (a wire
// object, snapshotted now) and queues its delivery to every endpoint of
// the object's mode that wants its type. As at Stripe, the event is
// rendered in the account's default API version of the moment (for the
// Events API and for endpoints without a version of their own), whatever
// version the request that caused it asked for; an endpoint created with
// an api_version gets it rendered in that one.
func (s *Stripe) emitLocked(typ string, render func() any, prev map[string]any) {
	raw, evPrev, err := s.renderLocked(s.apiVersion, render, prev)
	if err != nil {
		s.log.Error("sandbox stripe: marshal event object", "type", typ, "err", err)
		return
	}
	var head struct {
		Livemode bool `json:"livemode"`
	}
	_ = json.Unmarshal(raw, &head)
	ev := &event{id: newID("evt_"), typ: typ, created: s.now().Unix(), seq: s.nextSeqLocked(),
		apiVersion: s.apiVersion, live: head.Livemode, object: raw, prev: evPrev}
	s.events = append(s.events, ev)
	s.eventIdx[ev.id] = ev
	s.log.Info("sandbox stripe: event", "event_id", ev.id, "type", typ, "livemode", ev.live)
	if s.closed {
		return
	}
	targets := s.targetsLocked(ev.live, typ)
	bodies := map[string][]byte{} // by API version
	for _, t := range targets {
		version := cmp.Or(t.apiVersion, s.apiVersion)
		body, ok := bodies[version]
		if !ok {
			w := ev.json()
			w.APIVersion, w.PendingWebhooks = version, int64(len(targets))
			if version != ev.apiVersion {
				obj, p, err := s.renderLocked(version, render, prev)
				if err != nil {
					s.log.Error("sandbox stripe: marshal event object", "type", typ, "err", err)
					continue
				}
				w.Data = eventDataJSON{Object: obj, PreviousAttributes: p}
			}
			if body, err = json.Marshal(w); err != nil {
				s.log.Error("sandbox stripe: marshal event", "type", typ, "err", err)
				continue
			}
			bodies[version] = body
		}
		d := &delivery{ev: ev, endpointID: t.id, url: t.url, secret: t.secret, body: body}
		ev.deliveries = append(ev.deliveries, d)
		s.queue = append(s.queue, d)
	}
	if len(s.queue) > 0 && !s.delivering {
		s.delivering = true
		s.idle = make(chan struct{})
		go s.deliverLoop(s.idle)
	}
}

// target is an endpoint an event is to be delivered to.
type target struct {
	id, url, secret, apiVersion string
}

// targetsLocked lists the endpoints of one mode that want events of type
// typ: the one SetWebhook sets (every type), then the enabled endpoints
// made through the API whose enabled_events name it, oldest first.
func (s *Stripe) targetsLocked(live bool, typ string) []target {
	var out []target
	if hook := s.hooks[modeIndex(live)]; hook.url != "" {
		out = append(out, target{url: hook.url, secret: hook.secret})
	}
	for _, w := range s.webhookEndpointsLocked(live) {
		if w.wants(typ) {
			out = append(out, target{id: w.id, url: w.url, secret: w.secret, apiVersion: w.apiVersion})
		}
	}
	return out
}

// deliverLoop makes the queued deliveries one at a time, in order, until
// the queue is empty (or Close), then closes idle.
func (s *Stripe) deliverLoop(idle chan struct{}) {
	for {
		s.mu.Lock()
		if len(s.queue) == 0 || s.closed {
			s.queue = nil
			s.delivering = false
			close(idle)
			s.mu.Unlock()
			return
		}
		d := s.queue[0]
		s.mu.Unlock()

		s.deliver(d)

		s.mu.Lock()
		s.queue = s.queue[1:]
		s.mu.Unlock()
	}
}

// deliver POSTs one event to one endpoint until it answers 2xx, retrying
// with backoff, and records the outcome.
func (s *Stripe) deliver(d *delivery) {
	ev := d.ev
	for attempt := 1; ; attempt++ {
		status, err := s.post(d)
		ok := err == nil && status >= 200 && status < 300
		s.mu.Lock()
		delays := s.retryDelays
		final := ok || attempt >= max(deliverLimit, len(delays)+1)
		d.attempts, d.status, d.delivered = attempt, status, ok
		stopped := s.closed
		s.mu.Unlock()
		if ok {
			s.log.Debug("sandbox stripe: webhook delivered", "event_id", ev.id, "type", ev.typ, "status", status, "attempt", attempt)
			return
		}
		s.log.Warn("sandbox stripe: webhook delivery failed", "event_id", ev.id, "type", ev.typ,
			"status", status, "attempt", attempt, "err", err)
		if final || stopped {
			return
		}
		// Back off before the next attempt (later deliveries wait: delivery
		// is in order).
		t := time.NewTimer(delays[min(attempt-1, len(delays)-1)])
		select {
		case <-t.C:
		case <-s.stopCtx.Done():
			t.Stop()
			return
		}
	}
}

// post makes one delivery attempt, signed with the wall clock as Stripe
// signs: Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>.
func (s *Stripe) post(d *delivery) (int, error) {
	ctx, cancel := context.WithTimeout(s.stopCtx, deliverTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	req.Header.Set("Stripe-Signature", signature(d.secret, s.now(), d.body))
	res, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	return res.StatusCode, nil
}

// signature is the Stripe-Signature header for body at time t.
func signature(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Deliveries reports every webhook delivery so far, in event order and,
// for each event, in the order of its endpoints (the one SetWebhook sets
// first).
func (s *Stripe) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Delivery
	for _, ev := range s.events {
		for _, d := range ev.deliveries {
			out = append(out, Delivery{EventID: ev.id, Type: ev.typ, Endpoint: d.endpointID, Status: d.status, Attempts: d.attempts})
		}
	}
	return out
}

// WaitIdle waits until every queued delivery has been made or given up
// on, or ctx ends.
func (s *Stripe) WaitIdle(ctx context.Context) error {
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	for {
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
		if !s.delivering {
			s.mu.Unlock()
			return nil
		}
		idle = s.idle
		s.mu.Unlock()
	}
}

// Close stops webhook delivery: pending deliveries are abandoned (and
// reported by /v1/events?delivery_success=false) and no new ones start. It
// waits for the delivery goroutine to end. The API keeps working.
func (s *Stripe) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.stop()
	}
	idle := s.idle
	s.mu.Unlock()
	<-idle
	return nil
}

// basilPrev moves a subscription's former billing period, which
// 2023-10-16 reports as previous_attributes current_period_start and
// current_period_end, to where 2025-03-31.basil reports it: the items, as
// they were (docs.stripe.com/changelog/basil/2025-03-31/
// deprecate-subscription-current-period-start-and-end).
func basilPrev(sub json.RawMessage, prev map[string]any) map[string]any {
	start, hasStart := prev["current_period_start"]
	end, hasEnd := prev["current_period_end"]
	if !hasStart && !hasEnd {
		return prev
	}
	out := map[string]any{}
	for k, v := range prev {
		if k != "current_period_start" && k != "current_period_end" {
			out[k] = v
		}
	}
	var obj struct {
		Items struct {
			Object  string           `json:"object"`
			Data    []map[string]any `json:"data"`
			HasMore bool             `json:"has_more"`
			URL     string           `json:"url"`
		} `json:"items"`
	}
	if json.Unmarshal(sub, &obj) != nil {
		return out
	}
	for _, it := range obj.Items.Data {
		if hasStart {
			it["current_period_start"] = start
		}
		if hasEnd {
			it["current_period_end"] = end
		}
	}
	out["items"] = obj.Items
	return out
}

package stripesandbox

import (
	"bytes"
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

// event is an event the sandbox generated, with the state of its
// webhook delivery (queued is false when no endpoint was set).
type event struct {
	id, typ    string
	created    int64 // wall clock, unix seconds
	seq        int64
	apiVersion string // the account's default when it happened: what object is rendered in
	live       bool   // its object's mode
	object     json.RawMessage
	prev       map[string]any

	queued    bool
	url       string
	secret    string
	body      []byte // the payload as delivered, the same for every attempt
	status    int
	attempts  int
	delivered bool
	failed    bool
}

func (ev *event) isLive() bool { return ev.live }

func (ev *event) json() eventJSON {
	var pending int64
	if ev.queued && !ev.delivered {
		pending = 1
	}
	return eventJSON{
		ID: ev.id, Object: "event", APIVersion: ev.apiVersion, Created: ev.created,
		Data: eventDataJSON{Object: ev.object, PreviousAttributes: ev.prev}, Livemode: ev.live,
		PendingWebhooks: pending, Type: ev.typ,
	}
}

// emitLocked records an event about the object render returns (a wire
// object, snapshotted now) and queues its delivery to the webhook endpoint
// of the object's mode, if one is set. As at Stripe, the event is
// rendered once, in the account's default API version of the moment (for
// webhooks and the Events API alike), whatever version the request that
// caused it asked for; prev, the previous_attributes, is given in
// 2023-10-16's names and moved where that version keeps them.
func (s *Stripe) emitLocked(typ string, render func() any, prev map[string]any) {
	saved := s.view
	s.view = view{version: s.apiVersion, live: saved.live}
	obj := render()
	s.view = saved
	raw, err := json.Marshal(obj)
	if err != nil {
		s.log.Error("sandbox stripe: marshal event object", "type", typ, "err", err)
		return
	}
	var head struct {
		Object   string `json:"object"`
		Livemode bool   `json:"livemode"`
	}
	_ = json.Unmarshal(raw, &head)
	if (view{version: s.apiVersion}).basil() && head.Object == "subscription" {
		prev = basilPrev(raw, prev)
	}
	ev := &event{id: newID("evt_"), typ: typ, created: s.now().Unix(), seq: s.nextSeqLocked(),
		apiVersion: s.apiVersion, live: head.Livemode, object: raw, prev: prev}
	s.events = append(s.events, ev)
	s.eventIdx[ev.id] = ev
	s.log.Info("sandbox stripe: event", "event_id", ev.id, "type", typ, "livemode", ev.live)
	hook := s.hooks[modeIndex(ev.live)]
	if hook.url == "" || s.closed {
		return
	}
	ev.queued, ev.url, ev.secret = true, hook.url, hook.secret
	body := ev.json()
	body.PendingWebhooks = 1
	if ev.body, err = json.Marshal(body); err != nil {
		s.log.Error("sandbox stripe: marshal event", "type", typ, "err", err)
		ev.queued = false
		return
	}
	s.queue = append(s.queue, ev)
	if !s.delivering {
		s.delivering = true
		s.idle = make(chan struct{})
		go s.deliverLoop(s.idle)
	}
}

// deliverLoop delivers queued events one at a time, in order, until the
// queue is empty (or Close), then closes idle.
func (s *Stripe) deliverLoop(idle chan struct{}) {
	for {
		s.mu.Lock()
		if len(s.queue) == 0 || s.closed {
			for _, ev := range s.queue {
				ev.failed = true
			}
			s.queue = nil
			s.delivering = false
			close(idle)
			s.mu.Unlock()
			return
		}
		ev := s.queue[0]
		s.mu.Unlock()

		s.deliver(ev)

		s.mu.Lock()
		s.queue = s.queue[1:]
		s.mu.Unlock()
	}
}

// deliver POSTs one event until the endpoint answers 2xx, retrying with
// backoff, and records the outcome.
func (s *Stripe) deliver(ev *event) {
	for attempt := 1; ; attempt++ {
		status, err := s.post(ev)
		ok := err == nil && status >= 200 && status < 300
		final := ok || attempt >= deliverLimit
		s.mu.Lock()
		ev.attempts, ev.status, ev.delivered = attempt, status, ok
		ev.failed = final && !ok
		stopped := s.closed
		s.mu.Unlock()
		if ok {
			s.log.Debug("sandbox stripe: webhook delivered", "event_id", ev.id, "type", ev.typ, "status", status, "attempt", attempt)
			return
		}
		s.log.Warn("sandbox stripe: webhook delivery failed", "event_id", ev.id, "type", ev.typ,
			"status", status, "attempt", attempt, "err", err)
		if final || stopped {
			s.mu.Lock()
			ev.failed = true
			s.mu.Unlock()
			return
		}
		// Back off before the next attempt (later events wait: delivery
		// is in order).
		t := time.NewTimer(s.retryDelays[min(attempt-1, len(s.retryDelays)-1)])
		select {
		case <-t.C:
		case <-s.stopCtx.Done():
			t.Stop()
			s.mu.Lock()
			ev.failed = true
			s.mu.Unlock()
			return
		}
	}
}

// post makes one delivery attempt, signed with the wall clock as Stripe
// signs: Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>.
func (s *Stripe) post(ev *event) (int, error) {
	ctx, cancel := context.WithTimeout(s.stopCtx, deliverTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ev.url, bytes.NewReader(ev.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	req.Header.Set("Stripe-Signature", signature(ev.secret, s.now(), ev.body))
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

// Deliveries reports every webhook delivery so far, in event order.
func (s *Stripe) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Delivery
	for _, ev := range s.events {
		if ev.queued {
			out = append(out, Delivery{EventID: ev.id, Type: ev.typ, Status: ev.status, Attempts: ev.attempts})
		}
	}
	return out
}

// WaitIdle waits until every queued event has been delivered or given up
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

package stripesandbox

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Billing Meters, meter events and meter event summaries
// (docs.stripe.com/api/billing/meter, /meter-event, /meter-event-summary;
// field names, required parameters and lengths as in stripe-mock's
// OpenAPI spec v0.203.0 and stripe-go v76.25's billing_meter*.go). The
// sandbox is never kinder than Stripe: what Stripe refuses at once it
// refuses, and what Stripe accepts and then drops while processing (an
// event for a customer or meter it does not know) it accepts and drops.

// Meter is a Billing Meter the sandbox starts with (Options.Meters), summing
// payload[value] by payload[stripe_customer_id], Stripe's defaults.
type Meter struct {
	ID, EventName, DisplayName string
}

// meterEventTTL is how long an identifier is refused again: Stripe
// "enforces uniqueness within a rolling period of at least 24 hours"
// (stripe-mock's spec, identifier). The sandbox holds it exactly 24 hours
// of wall time and then takes the identifier as new, which is what Stripe
// may do and the harsher for the caller: an event sent again after a day is
// counted twice.
const meterEventTTL = 24 * time.Hour

// Meter events' timestamps: "within the past 35 calendar days or up to 5
// minutes in the future" (stripe-mock's spec, timestamp).
const (
	meterEventMaxAge    = 35 * 24 * time.Hour
	meterEventMaxFuture = 5 * time.Minute
)

type meter struct {
	id, eventName, displayName string
	formula                    string // sum, count or last
	customerKey, valueKey      string // payload keys
	timeWindow                 string // event_time_window: "", day or hour
	active                     bool
	created, updated           time.Time
	livemode                   bool
}

func (m *meter) isLive() bool { return m.livemode }

// meterEvent is one accepted meter event.
type meterEvent struct {
	eventName, identifier string
	customer              string
	value                 int64
	timestamp             time.Time // the event's, as sent
	created               time.Time // wall clock: the identifier's window
	billed                time.Time // billing time when received: which invoice bills it
	livemode              bool
	dropped               string // why processing dropped it ("" counted)
}

func (s *Stripe) addMeter(m Meter, live bool) {
	if !strings.HasPrefix(m.ID, "mtr_") || m.EventName == "" {
		panic(fmt.Sprintf("sandbox: stripe meter %q: want an ID mtr_… and an event name", m.ID))
	}
	if _, dup := s.meters[m.ID]; dup {
		panic(fmt.Sprintf("sandbox: stripe meter %q listed twice", m.ID))
	}
	name := m.DisplayName
	if name == "" {
		name = m.EventName
	}
	s.meters[m.ID] = &meter{id: m.ID, eventName: m.EventName, displayName: name, formula: "sum",
		customerKey: "stripe_customer_id", valueKey: "value", active: true, created: s.createdAt, updated: s.createdAt, livemode: live}
	s.meterOrder = append(s.meterOrder, m.ID)
}

type meterJSON struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	Created            int64             `json:"created"`
	CustomerMapping    map[string]string `json:"customer_mapping"`
	DefaultAggregation map[string]string `json:"default_aggregation"`
	DisplayName        string            `json:"display_name"`
	EventName          string            `json:"event_name"`
	EventTimeWindow    *string           `json:"event_time_window"`
	Livemode           bool              `json:"livemode"`
	Status             string            `json:"status"`
	StatusTransitions  map[string]*int64 `json:"status_transitions"`
	Updated            int64             `json:"updated"`
	ValueSettings      map[string]string `json:"value_settings"`
}

func (s *Stripe) meterJSON(m *meter) meterJSON {
	w := meterJSON{
		ID: m.id, Object: "billing.meter", Created: m.created.Unix(),
		CustomerMapping:    map[string]string{"event_payload_key": m.customerKey, "type": "by_id"},
		DefaultAggregation: map[string]string{"formula": m.formula},
		DisplayName:        m.displayName, EventName: m.eventName, Livemode: m.livemode,
		Status: "active", StatusTransitions: map[string]*int64{"deactivated_at": nil}, Updated: m.updated.Unix(),
		ValueSettings: map[string]string{"event_payload_key": m.valueKey},
	}
	if m.timeWindow != "" {
		w.EventTimeWindow = &m.timeWindow
	}
	if !m.active {
		w.Status = "inactive"
	}
	return w
}

// apiCreateMeter is POST /v1/billing/meters: default_aggregation[formula],
// display_name and event_name required (stripe-mock's spec).
func (s *Stripe) apiCreateMeter(r *http.Request) (any, *apiError) {
	f := r.Form
	for _, k := range []string{"default_aggregation[formula]", "display_name", "event_name"} {
		if f.Get(k) == "" {
			return nil, errMissing(k)
		}
	}
	m := &meter{id: newID("mtr_"), eventName: f.Get("event_name"), displayName: f.Get("display_name"),
		formula: f.Get("default_aggregation[formula]"), customerKey: "stripe_customer_id", valueKey: "value",
		timeWindow: f.Get("event_time_window"), active: true, livemode: s.view.live}
	m.created, m.updated = s.now(), s.now()
	switch {
	case len(m.eventName) > 100:
		return nil, errInvalid("event_name", "event_name must be at most 100 characters.")
	case len(m.displayName) > 250:
		return nil, errInvalid("display_name", "display_name must be at most 250 characters.")
	case !slices.Contains([]string{"count", "last", "sum"}, m.formula):
		return nil, errInvalid("default_aggregation[formula]", "Invalid default_aggregation[formula]: must be one of count, last or sum")
	case m.timeWindow != "" && m.timeWindow != "day" && m.timeWindow != "hour":
		return nil, errInvalid("event_time_window", "Invalid event_time_window: must be one of day or hour")
	}
	if k := f.Get("customer_mapping[event_payload_key]"); k != "" {
		if t := f.Get("customer_mapping[type]"); t != "by_id" {
			return nil, errInvalid("customer_mapping[type]", "Invalid customer_mapping[type]: must be by_id")
		}
		m.customerKey = k
	}
	if k := f.Get("value_settings[event_payload_key]"); k != "" {
		m.valueKey = k
	}
	// An event name belongs to one active meter: events are routed by it.
	// (The wording is the sandbox's; Stripe refuses the second meter.)
	for _, o := range s.meters {
		if o.active && o.livemode == m.livemode && o.eventName == m.eventName {
			return nil, errInvalid("event_name", fmt.Sprintf("An active meter with event_name %q already exists (%s).", m.eventName, o.id))
		}
	}
	s.meters[m.id] = m
	s.meterOrder = append(s.meterOrder, m.id)
	return s.meterJSON(m), nil
}

func (s *Stripe) apiListMeters(r *http.Request) (any, *apiError) {
	status := r.Form.Get("status")
	if status != "" && status != "active" && status != "inactive" {
		return nil, errInvalid("status", "Invalid status: must be one of active or inactive")
	}
	key := func(m *meter) int64 { return int64(slices.Index(s.meterOrder, m.id)) }
	var all []*meter
	for i := len(s.meterOrder) - 1; i >= 0; i-- { // newest first
		m := s.meters[s.meterOrder[i]]
		if m.livemode != s.view.live || (status == "active" && !m.active) || (status == "inactive" && m.active) {
			continue
		}
		all = append(all, m)
	}
	page, more, e := paginate(r.Form, all, key, func(id string) (int64, bool) {
		if m := s.meters[id]; m != nil && m.livemode == s.view.live {
			return key(m), true
		}
		return 0, false
	}, "billing.meter")
	if e != nil {
		return nil, e
	}
	data := make([]meterJSON, 0, len(page))
	for _, m := range page {
		data = append(data, s.meterJSON(m))
	}
	return listOf(data, more, "/v1/billing/meters"), nil
}

func (s *Stripe) apiGetMeter(r *http.Request) (any, *apiError) {
	m, e := visible(s, s.meters, "billing.meter", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	return s.meterJSON(m), nil
}

// apiCreateMeterEvent is POST /v1/billing/meter_events.
func (s *Stripe) apiCreateMeterEvent(r *http.Request) (any, *apiError) {
	f := r.Form
	now := s.now()
	name := f.Get("event_name")
	if name == "" {
		return nil, errMissing("event_name")
	}
	payload := map[string]string{}
	for k, vs := range f {
		if key, ok := strings.CutPrefix(k, "payload["); ok && strings.HasSuffix(key, "]") {
			payload[strings.TrimSuffix(key, "]")] = vs[len(vs)-1]
		}
	}
	if len(payload) == 0 {
		return nil, errMissing("payload")
	}
	// Lengths from stripe-mock's spec: event_name and identifier at most
	// 100, each payload value at most 100.
	if len(name) > 100 {
		return nil, errInvalid("event_name", "event_name must be at most 100 characters.")
	}
	id := f.Get("identifier")
	if len(id) > 100 {
		return nil, errInvalid("identifier", "identifier must be at most 100 characters.")
	}
	for k, v := range payload {
		if len(v) > 100 {
			return nil, errInvalid("payload["+k+"]", "payload values must be at most 100 characters.")
		}
	}
	ts := now
	if n, has, e := formInt(f, "timestamp"); e != nil {
		return nil, e
	} else if has {
		ts = time.Unix(n, 0)
		switch {
		case now.Sub(ts) > meterEventMaxAge:
			return nil, errInvalid("timestamp", "timestamp must be within the past 35 calendar days.")
		case ts.Sub(now) > meterEventMaxFuture:
			return nil, errInvalid("timestamp", "timestamp must not be more than 5 minutes in the future.")
		}
	}
	if id == "" {
		id = newID("")
	}
	idKey := modeKey(s.view.live, id)
	if prev := s.meterIdents[idKey]; prev != nil && now.Sub(prev.created) < meterEventTTL {
		// Stripe's answer to a seen identifier: 400 invalid_request_error
		// with no code of its own and Stripe-Should-Retry: false
		// (langfuse/langfuse#16292 quotes it).
		return nil, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", shouldRetry: "false",
			Message: fmt.Sprintf("An event already exists with identifier %s.", id)}
	}
	ev := &meterEvent{eventName: name, identifier: id, timestamp: ts, created: now, billed: s.billingNowLocked(), livemode: s.view.live}
	// What follows Stripe does while processing the event, after answering
	// 200: an event it cannot use is dropped (and reported to the
	// dashboard), never refused here.
	m := s.meterByEventLocked(name)
	switch {
	case m == nil:
		ev.dropped = "no active meter with this event_name"
	default:
		ev.customer = payload[m.customerKey]
		v, err := strconv.ParseInt(payload[m.valueKey], 10, 64)
		switch c := s.customers[ev.customer]; {
		case payload[m.valueKey] == "" || err != nil:
			// Values "only accept whole number values" (docs.stripe.com/billing/subscriptions/usage-based/recording-usage-api).
			ev.dropped = "value missing or not a whole number"
		case c == nil || c.deleted || c.livemode != s.view.live:
			ev.dropped = "no such customer"
		default:
			ev.value = v
		}
	}
	s.meterIdents[idKey] = ev
	s.meterEvents = append(s.meterEvents, ev)
	for k, e := range s.meterIdents {
		if now.Sub(e.created) >= meterEventTTL {
			delete(s.meterIdents, k)
		}
	}
	return map[string]any{
		"object": "billing.meter_event", "created": now.Unix(), "event_name": name, "identifier": id,
		"livemode": s.view.live, "payload": payload, "timestamp": ts.Unix(),
	}, nil
}

func (s *Stripe) meterByEventLocked(name string) *meter {
	for _, id := range s.meterOrder {
		if m := s.meters[id]; m.active && m.livemode == s.view.live && m.eventName == name {
			return m
		}
	}
	return nil
}

// apiMeterSummaries is GET /v1/billing/meters/{id}/event_summaries:
// customer, start_time (inclusive) and end_time (exclusive) required
// (stripe-mock's spec); one summary for the range, or one per hour or day
// with value_grouping_window.
func (s *Stripe) apiMeterSummaries(r *http.Request) (any, *apiError) {
	m, e := visible(s, s.meters, "billing.meter", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	f := r.Form
	cus := f.Get("customer")
	if cus == "" {
		return nil, errMissing("customer")
	}
	start, hasStart, e := formInt(f, "start_time")
	if e != nil {
		return nil, e
	}
	end, hasEnd, e := formInt(f, "end_time")
	if e != nil {
		return nil, e
	}
	switch {
	case !hasStart:
		return nil, errMissing("start_time")
	case !hasEnd:
		return nil, errMissing("end_time")
	case end <= start:
		return nil, errInvalid("end_time", "end_time must be after start_time.")
	}
	step := end - start
	switch w := f.Get("value_grouping_window"); w {
	case "":
	case "hour":
		step = 3600
	case "day":
		step = 86400
	default:
		return nil, errInvalid("value_grouping_window", "Invalid value_grouping_window: must be one of day or hour")
	}
	type summaryJSON struct {
		ID              string  `json:"id"`
		Object          string  `json:"object"`
		AggregatedValue float64 `json:"aggregated_value"`
		EndTime         int64   `json:"end_time"`
		Livemode        bool    `json:"livemode"`
		Meter           string  `json:"meter"`
		StartTime       int64   `json:"start_time"`
	}
	var data []summaryJSON
	for from := start; from < end; from += step {
		to := min(from+step, end)
		data = append(data, summaryJSON{ID: newID("mtrusg_"), Object: "billing.meter_event_summary",
			AggregatedValue: s.aggregateLocked(m, cus, time.Unix(from, 0), time.Unix(to, 0), time.Time{}),
			EndTime:         to, Livemode: m.livemode, Meter: m.id, StartTime: from})
	}
	return listOf(data, false, "/v1/billing/meters/"+m.id+"/event_summaries"), nil
}

// aggregateLocked applies m's formula to customer's counted events with
// timestamps in [from, to), or, with billedFrom set, received (in billing
// time) in [billedFrom, to).
func (s *Stripe) aggregateLocked(m *meter, customer string, from, to, billedFrom time.Time) float64 {
	var sum, n, last int64
	for _, ev := range s.meterEvents {
		if ev.dropped != "" || ev.eventName != m.eventName || ev.customer != customer || ev.livemode != m.livemode {
			continue
		}
		at, lo := ev.timestamp, from
		if !billedFrom.IsZero() {
			at, lo = ev.billed, billedFrom
		}
		if at.Before(lo) || !at.Before(to) {
			continue
		}
		sum, n, last = sum+ev.value, n+1, ev.value
	}
	switch m.formula {
	case "count":
		return float64(n)
	case "last":
		return float64(last)
	}
	return float64(sum)
}

// MeterEvent is a meter event the sandbox accepted: Dropped says why
// processing did not count it ("" when counted).
type MeterEvent struct {
	EventName, Identifier, Customer string
	Value                           int64
	Timestamp                       time.Time
	Dropped                         string
}

// MeterEvents lists the meter events accepted so far, in order.
func (s *Stripe) MeterEvents() []MeterEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]MeterEvent, 0, len(s.meterEvents))
	for _, ev := range s.meterEvents {
		out = append(out, MeterEvent{EventName: ev.eventName, Identifier: ev.identifier, Customer: ev.customer,
			Value: ev.value, Timestamp: ev.timestamp, Dropped: ev.dropped})
	}
	return out
}

package stripesandbox

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Webhook endpoints (/v1/webhook_endpoints): where the events of one mode
// are delivered, each endpoint getting the types its enabled_events name.
// The signing secret is in the answer to the create only, as at Stripe.

// maxWebhookEndpoints is Stripe's limit on an account's endpoints, per
// mode.
const maxWebhookEndpoints = 16

type webhookEndpoint struct {
	id, url     string
	description string
	events      []string // enabled_events: types, or "*" for all
	disabled    bool
	connect     bool   // for connected accounts' events, which the sandbox has none of
	secret      string // whsec_…
	apiVersion  string // "" for the account's default
	metadata    map[string]string
	created     int64 // wall clock, unix seconds
	seq         int64
	livemode    bool
}

func (w *webhookEndpoint) isLive() bool { return w.livemode }

// wants reports whether an event of type typ from the account itself is
// delivered to w.
func (w *webhookEndpoint) wants(typ string) bool {
	return !w.disabled && !w.connect && (slices.Contains(w.events, "*") || slices.Contains(w.events, typ))
}

// webhookEndpointsLocked lists one mode's endpoints, oldest first.
func (s *Stripe) webhookEndpointsLocked(live bool) []*webhookEndpoint {
	var out []*webhookEndpoint
	for _, w := range s.webhookEndpoints {
		if w.livemode == live {
			out = append(out, w)
		}
	}
	slices.SortFunc(out, func(a, b *webhookEndpoint) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

type webhookEndpointJSON struct {
	ID            string            `json:"id"`
	Object        string            `json:"object"`
	APIVersion    *string           `json:"api_version"`
	Application   *string           `json:"application"`
	Created       int64             `json:"created"`
	Description   *string           `json:"description"`
	EnabledEvents []string          `json:"enabled_events"`
	Livemode      bool              `json:"livemode"`
	Metadata      map[string]string `json:"metadata"`
	Secret        string            `json:"secret,omitempty"` // on create only
	Status        string            `json:"status"`
	URL           string            `json:"url"`
}

func webhookEndpointJSONOf(w *webhookEndpoint) webhookEndpointJSON {
	status := "enabled"
	if w.disabled {
		status = "disabled"
	}
	return webhookEndpointJSON{
		ID: w.id, Object: "webhook_endpoint", APIVersion: nullString(w.apiVersion), Created: w.created,
		Description: nullString(w.description), EnabledEvents: slices.Clone(w.events), Livemode: w.livemode,
		Metadata: metadataJSON(w.metadata), Status: status, URL: w.url,
	}
}

// errUnknownParams refuses any parameter but allowed, as Stripe does
// ("Received unknown parameter: …"), naming the first in order.
func errUnknownParams(f url.Values, allowed ...string) *apiError {
	for _, k := range slices.Sorted(maps.Keys(f)) {
		base, _, _ := strings.Cut(k, "[")
		if !slices.Contains(allowed, base) {
			return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "parameter_unknown",
				Param: k, Message: "Received unknown parameter: " + k}
		}
	}
	return nil
}

// enabledEvents reads and checks enabled_events: at least one, each an
// event type Stripe sends or "*". present is false when the request does
// not set it.
func enabledEvents(f url.Values) (events []string, present bool, _ *apiError) {
	for k := range f {
		if k == "enabled_events" || strings.HasPrefix(k, "enabled_events[") {
			present = true
		}
	}
	if !present {
		return nil, false, nil
	}
	got := formList(f, "enabled_events")
	if len(got) == 0 || len(got) == 1 && got[0] == "" {
		return nil, true, errMissing("enabled_events")
	}
	for i, e := range got {
		if e != "*" && !eventTypes[e] {
			param := fmt.Sprintf("enabled_events[%d]", i)
			return nil, true, errInvalid(param, fmt.Sprintf("Invalid %s: must be \"*\" or an event type Stripe sends, such as customer.created; %q is not one.", param, e))
		}
		if !slices.Contains(events, e) {
			events = append(events, e)
		}
	}
	return events, true, nil
}

// checkWebhookURL checks an endpoint's url: absolute http(s), and https in
// live mode, where Stripe delivers to nothing else.
func (s *Stripe) checkWebhookURL(raw string) *apiError {
	if e := checkURL("url", raw); e != nil {
		return e
	}
	if s.view.live && !strings.HasPrefix(raw, "https://") {
		return errInvalid("url", "Invalid URL: live mode webhook endpoints must use HTTPS.")
	}
	return nil
}

func (s *Stripe) apiCreateWebhookEndpoint(r *http.Request) (any, *apiError) {
	f := r.Form
	if e := errUnknownParams(f, "url", "enabled_events", "description", "metadata", "api_version", "connect", "expand"); e != nil {
		return nil, e
	}
	raw := f.Get("url")
	if raw == "" {
		return nil, errMissing("url")
	}
	if e := s.checkWebhookURL(raw); e != nil {
		return nil, e
	}
	events, present, e := enabledEvents(f)
	if e != nil {
		return nil, e
	}
	if !present {
		return nil, errMissing("enabled_events")
	}
	version := f.Get("api_version")
	if version != "" && !validVersion(version) {
		return nil, errInvalid("api_version", "Invalid api_version: "+version)
	}
	connect, _, e := formBool(f, "connect")
	if e != nil {
		return nil, e
	}
	if n := len(s.webhookEndpointsLocked(s.view.live)); n >= maxWebhookEndpoints {
		return nil, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error",
			Message: fmt.Sprintf("You have reached the maximum of %d webhook endpoints in %s mode on this account.", maxWebhookEndpoints, modeName(s.view.live))}
	}
	md, _ := formMap(f, "metadata")
	for k, v := range md {
		if v == "" {
			delete(md, k)
		}
	}
	w := &webhookEndpoint{
		id: newID("we_"), url: raw, description: f.Get("description"), events: events, connect: connect,
		secret: newID("whsec_") + newID("")[:8], apiVersion: version, metadata: md,
		created: s.now().Unix(), seq: s.nextSeqLocked(), livemode: s.view.live,
	}
	s.webhookEndpoints[w.id] = w
	s.log.Info("sandbox stripe: webhook endpoint created", "endpoint", w.id, "url", w.url, "livemode", w.livemode)
	out := webhookEndpointJSONOf(w)
	out.Secret = w.secret
	return out, nil
}

func (s *Stripe) apiListWebhookEndpoints(r *http.Request) (any, *apiError) {
	mine := s.webhookEndpointsLocked(s.view.live)
	slices.Reverse(mine) // newest first
	page, more, e := paginate(r.Form, mine, func(w *webhookEndpoint) int64 { return w.seq }, func(id string) (int64, bool) {
		if w := s.webhookEndpoints[id]; w != nil && w.livemode == s.view.live {
			return w.seq, true
		}
		return 0, false
	}, "webhook endpoint")
	if e != nil {
		return nil, e
	}
	data := make([]webhookEndpointJSON, 0, len(page))
	for _, w := range page {
		data = append(data, webhookEndpointJSONOf(w))
	}
	return listOf(data, more, "/v1/webhook_endpoints"), nil
}

func (s *Stripe) apiGetWebhookEndpoint(r *http.Request) (any, *apiError) {
	w, e := visible(s, s.webhookEndpoints, "webhook endpoint", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	return webhookEndpointJSONOf(w), nil
}

// apiUpdateWebhookEndpoint changes url, enabled_events (replaced as a
// whole), disabled, description and metadata. The secret is not in the
// answer.
func (s *Stripe) apiUpdateWebhookEndpoint(r *http.Request) (any, *apiError) {
	w, e := visible(s, s.webhookEndpoints, "webhook endpoint", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	f := r.Form
	if e := errUnknownParams(f, "url", "enabled_events", "description", "metadata", "disabled", "expand"); e != nil {
		return nil, e
	}
	if f.Has("url") {
		if e := s.checkWebhookURL(f.Get("url")); e != nil {
			return nil, e
		}
	}
	events, setEvents, e := enabledEvents(f)
	if e != nil {
		return nil, e
	}
	disabled, setDisabled, e := formBool(f, "disabled")
	if e != nil {
		return nil, e
	}
	// Checked in full before anything changes: a refused update changes
	// nothing.
	if f.Has("url") {
		w.url = f.Get("url")
	}
	if setEvents {
		w.events = events
	}
	if setDisabled {
		w.disabled = disabled
	}
	if f.Has("description") {
		w.description = f.Get("description")
	}
	if md, ok := formMap(f, "metadata"); ok {
		w.metadata = updateMetadata(w.metadata, md, map[string]any{})
	}
	return webhookEndpointJSONOf(w), nil
}

func (s *Stripe) apiDeleteWebhookEndpoint(r *http.Request) (any, *apiError) {
	w, e := visible(s, s.webhookEndpoints, "webhook endpoint", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	delete(s.webhookEndpoints, w.id)
	return deletedJSON{ID: w.id, Object: "webhook_endpoint", Deleted: true}, nil
}

package stripesandbox

import (
	"net/http"
	"strings"
)

// The Events API: what happened, in the version each event was rendered in.

// apiListEvents lists events newest first, filtered by type (a trailing
// ".*" matches a family), types[], created (exact or [gt|gte|lt|lte]) and
// delivery_success (false: events whose webhook delivery is pending or
// failed).
func (s *Stripe) apiListEvents(r *http.Request) (any, *apiError) {
	f := r.Form
	types := formList(f, "types")
	if len(types) > 20 {
		return nil, errInvalid("types", "types may contain at most 20 event types.")
	}
	if t := f.Get("type"); t != "" {
		if len(types) > 0 {
			return nil, errInvalid("types", "You may pass either type or types, but not both.")
		}
		types = append(types, t)
	}
	var bounds [4]int64 // gt, gte, lt, lte; 0 = unset
	var has [4]bool
	for i, op := range []string{"gt", "gte", "lt", "lte"} {
		n, ok, e := formInt(f, "created["+op+"]")
		if e != nil {
			return nil, e
		}
		bounds[i], has[i] = n, ok
	}
	exact, hasExact, e := formInt(f, "created")
	if e != nil {
		return nil, e
	}
	ds, hasDS, e := formBool(f, "delivery_success")
	if e != nil {
		return nil, e
	}
	matchType := func(t string) bool {
		if len(types) == 0 {
			return true
		}
		for _, want := range types {
			if want == t {
				return true
			}
			if fam, ok := strings.CutSuffix(want, "*"); ok && strings.HasPrefix(t, fam) {
				return true
			}
		}
		return false
	}
	var all []*event
	for i := len(s.events) - 1; i >= 0; i-- {
		ev := s.events[i]
		c := ev.created
		switch {
		case ev.live != s.view.live, !matchType(ev.typ),
			hasExact && c != exact,
			has[0] && c <= bounds[0], has[1] && c < bounds[1],
			has[2] && c >= bounds[2], has[3] && c > bounds[3],
			hasDS && ds && ev.pending() > 0,
			hasDS && !ds && ev.pending() == 0:
			continue
		}
		all = append(all, ev)
	}
	page, more, e := paginate(f, all, func(ev *event) int64 { return ev.seq }, func(id string) (int64, bool) {
		if ev := s.eventIdx[id]; ev != nil && ev.live == s.view.live {
			return ev.seq, true
		}
		return 0, false
	}, "event")
	if e != nil {
		return nil, e
	}
	data := make([]eventJSON, 0, len(page))
	for _, ev := range page {
		data = append(data, ev.json())
	}
	return listOf(data, more, "/v1/events"), nil
}

func (s *Stripe) apiGetEvent(r *http.Request) (any, *apiError) {
	ev, e := visible(s, s.eventIdx, "event", r.PathValue("id"), "id")
	if e != nil {
		return nil, e
	}
	return ev.json(), nil
}

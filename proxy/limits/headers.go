package limits

import (
	"net/http"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// The fields of draft-ietf-httpapi-ratelimit-headers-10: RateLimit-Policy
// lists the policies ("name";q=quota;w=window seconds), RateLimit their
// state ("name";r=remaining;t=seconds until it resets), each a Structured
// Field List of Strings with parameters (RFC 9651). A GCRA rate is the
// policy q=burst, w=burst/rate; a quota, q=quota, w=its window.
// The names are in Go's canonical form (header names are case-insensitive;
// the draft spells them RateLimit-Policy and RateLimit).
const (
	HeaderPolicy = "Ratelimit-Policy"
	HeaderState  = "Ratelimit"
)

// WriteHeaders sets RateLimit-Policy and RateLimit on h for a, and
// Retry-After when a refused the request. Policy names are the plan's key
// and "rate" or "quota" ("pro-rate"). The remaining counts are after this
// request.
func (a *Admission) WriteHeaders(h http.Header, now time.Time) {
	lim := a.lim
	if lim == nil {
		return
	}
	// One buffer and one string for the state, one array for both
	// values: two allocations per response (the policy is made once per
	// window, by Admit).
	pol := a.policy
	if pol == "" {
		pol = policyField(a.Plan, lim, a.QuotaStart, a.QuotaReset)
	}
	b := make([]byte, 0, 96)
	if lim.Rate > 0 {
		r, t := int64(a.RateRemain), proxy.CeilSeconds(a.RateReset)
		if a.Reason == RateLimited {
			r, t = 0, proxy.CeilSeconds(a.RateRetry)
		}
		b = appendItem(b, a.Plan, "-rate", "r", r, "t", t)
	}
	if lim.Quota > 0 {
		if lim.Rate > 0 {
			b = append(b, ", "...)
		}
		r := lim.Quota - a.Used
		if a.Reason == Allowed {
			r--
		}
		b = appendItem(b, a.Plan, "-quota", "r", max(r, 0), "t", proxy.CeilSeconds(a.QuotaReset.Sub(now)))
	}
	vals := make([]string, 2)
	vals[0], vals[1] = pol, string(b)
	h[HeaderPolicy] = vals[0:1:1]
	h[HeaderState] = vals[1:2:2]
	if a.Reason != Allowed {
		h["Retry-After"] = []string{strconv.FormatInt(max(proxy.CeilSeconds(a.RetryAfter(now)), 1), 10)}
	}
}

// policyField is RateLimit-Policy for lim in the quota window [start, end).
func policyField(plan string, lim *proxy.Limit, start, end time.Time) string {
	b := make([]byte, 0, 80)
	if lim.Rate > 0 {
		w := max(proxy.CeilSeconds(time.Duration(lim.Burst)*lim.Interval()), 1)
		b = appendItem(b, plan, "-rate", "q", int64(lim.Burst), "w", w)
	}
	if lim.Quota > 0 {
		if lim.Rate > 0 {
			b = append(b, ", "...)
		}
		b = appendItem(b, plan, "-quota", "q", lim.Quota, "w", proxy.CeilSeconds(end.Sub(start)))
	}
	return string(b)
}

// appendItem appends one list member: a String name (plan keys are
// letters, digits, _ and -, nothing to escape) and two integer parameters.
func appendItem(b []byte, plan, suffix, k1 string, v1 int64, k2 string, v2 int64) []byte {
	b = append(b, '"')
	b = append(b, plan...)
	b = append(b, suffix...)
	b = append(b, `";`...)
	b = append(b, k1...)
	b = append(b, '=')
	b = strconv.AppendInt(b, v1, 10)
	b = append(b, ';')
	b = append(b, k2...)
	b = append(b, '=')
	b = strconv.AppendInt(b, v2, 10)
	return b
}

package config

import (
	"net/http"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/proxy"
)

// DefaultQuotaFlush is quota_flush unless set: how often quota counters
// reach the store, and so the most a crash can lose (README "Limits").
const DefaultQuotaFlush = 1_000_000_000 // 1s

// limits reads a plan's (or free:'s) limits: mapping of route IDs or "*"
// to { rate, burst, quota } (README "Limits").
func (p *configParser) limits(s *configSection, pl *proxy.Plan) {
	n := p.node(s.vals["limits"])
	if n == nil || isYAMLNull(n) {
		return
	}
	path := s.key("limits")
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, path, "is %s; want a mapping of route IDs (or \"*\") to limits, such as \"*\": { rate: 10/s, quota: 10000/month }", yamlKind(n))
		return
	}
	for _, kv := range p.pairs(n, path) {
		key := joinConfigKey(path, kv.name)
		route := kv.name
		switch {
		case route == "*":
		case !proxy.ValidRouteID(route):
			p.errorf(kv.key.Line, key, "%q is not a route ID; want a route ID of this plan's routes, or \"*\"", route)
			continue
		case !pl.UnlocksRoute(route) || pl.Key == proxy.FreePlanKey && !pl.UnlocksRouteFree(route):
			p.errorf(kv.key.Line, key, "%q is not among this plan's routes; a limit applies only to a route the plan unlocks", route)
			continue
		}
		e := p.limitSection(p.section(kv.val, key, configKeys("limits.*"), kv.key.Line), kv.key.Line, key)
		if e == nil {
			continue
		}
		for _, have := range pl.Limits {
			if strings.EqualFold(have.Route, route) {
				p.errorf(kv.key.Line, key, "%q is already limited above (route IDs compare without regard to case)", route)
			}
		}
		pl.Limits = append(pl.Limits, proxy.LimitEntry{Route: route, Limit: *e})
	}
}

func (p *configParser) limitSection(s *configSection, line int, key string) *proxy.Limit {
	if !s.ok {
		return nil
	}
	var l proxy.Limit
	ok := true
	if r := s.str("rate"); r.s != "" && !r.bad {
		n, per, err := proxy.ParseRate(r.s)
		if err != nil {
			p.invalid(r, "%s", limitMsg(err))
			ok = false
		}
		l.Rate, l.Per = n, per
	}
	if q := s.str("quota"); q.s != "" && !q.bad {
		n, period, err := proxy.ParseQuota(q.s)
		if err != nil {
			p.invalid(q, "%s", limitMsg(err))
			ok = false
		}
		l.Quota, l.Period = n, period
	}
	if b := s.str("burst"); b.set {
		switch {
		case l.Rate == 0 && ok:
			p.invalid(b, "is set without rate; a burst is part of a rate (add rate: N/s)")
			ok = false
		default:
			l.Burst = p.integer(b, 0, 1, 1_000_000)
		}
	}
	if l.Burst == 0 {
		l.Burst = l.Rate // a unit's worth at once
	}
	if ok && l.Rate == 0 && l.Quota == 0 {
		p.errorf(line, key, "limits nothing; want rate (N/s, N/m or N/h), quota (N/hour, N/day or N/month) or both")
		return nil
	}
	if !ok {
		return nil
	}
	return &l
}

// limitMsg is ParseRate's or ParseQuota's error without its sentinel.
func limitMsg(err error) string {
	return strings.TrimSuffix(err.Error(), ": "+proxy.ErrLimitSyntax.Error())
}

// free reads free: what signed-in visitors with no granting plan get.
func (p *configParser) free(top *configSection, plans []proxy.Plan) *proxy.Plan {
	s := top.sub("free")
	if !s.set || !s.ok {
		return nil
	}
	pl := &proxy.Plan{Key: proxy.FreePlanKey, Name: "Free", Scope: proxy.SubjectUser}
	for _, other := range plans {
		if other.Key == proxy.FreePlanKey {
			p.errorf(s.line, "free", "is set, and plans has a plan called free too; rename that plan (free: goes by free)")
		}
	}
	routes := s.list("routes")
	rvals, _ := routes.values()
	if len(rvals) == 0 && !routes.bad {
		p.errorf(routes.line, routes.key, "missing or empty; want the route IDs signed-in visitors without a plan may use, such as [258AVO]")
	}
	for _, v := range rvals {
		if v.s != "*" && !proxy.ValidRouteID(v.s) {
			p.invalid(v, "%q is not a route ID; want letters, digits, \".\", \"_\", \"~\" or \"-\", or \"*\" for all routes with an ID", v.s)
			continue
		}
		pl.Routes = append(pl.Routes, v.s)
	}
	p.limits(s, pl)
	return pl
}

// costHeader reads cost_header.
func (p *configParser) costHeader(v configValue) string {
	if v.s == "" || v.bad {
		return ""
	}
	name := http.CanonicalHeaderKey(v.s)
	switch {
	case !validHeaderName(name):
		p.invalid(v, "%q is not a header name; want e.g. X-Tollgate-Cost", v.s)
	case limitHeader(name):
		p.invalid(v, "%q is a header tollgate reads or sets itself; want another, e.g. X-Tollgate-Cost", v.s)
	default:
		return name
	}
	return ""
}

func limitHeader(name string) bool {
	switch name {
	case "Retry-After", "Ratelimit", "Ratelimit-Policy", "Content-Length", "Content-Type", "Set-Cookie", "Cache-Control",
		"Transfer-Encoding", "Connection", "Location":
		return true
	}
	return false
}

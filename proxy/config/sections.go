package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/proxy"
)

// plans reads plans:, in file order.
func (p *configParser) plans(top *configSection) []proxy.Plan {
	n := p.node(top.vals["plans"])
	if n == nil || isYAMLNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "plans", "is %s; want a mapping of plan keys, such as pro: {prices: [price_123], routes: [\"*\"]}", yamlKind(n))
		return nil
	}
	var plans []proxy.Plan
	priceOwner := map[string]string{} // price → "plans.pro (line 40)"
	var trialFees []configValue
	for _, kv := range p.pairs(n, "plans") {
		key := "plans." + kv.name
		if !planKeyPattern.MatchString(kv.name) {
			p.errorf(kv.key.Line, key, "%q is not a valid plan key; want letters, digits, _ or - (it appears in /.tollgate/subscribe/{plan} URLs)", kv.name)
		}
		s := p.section(kv.val, key, configKeys("plans.*"), kv.key.Line)
		pl := proxy.Plan{Key: kv.name, Scope: proxy.SubjectUser}
		if name := s.str("name"); name.s != "" {
			pl.Name = name.s
		} else {
			pl.Name = kv.name
		}
		p.planText(s, &pl)

		meter := p.planMeter(s, key, priceOwner)
		pl.Meter = meter
		prices := s.list("prices")
		vals, empty := prices.values()
		if len(vals) == 0 && !prices.bad && meter != nil && !prices.set {
			// Pure pay-as-you-go: the metered price is the plan's price.
			pl.Prices = []string{meter.Price}
		} else if len(vals) == 0 && !prices.bad {
			switch {
			case len(empty) > 0:
				p.errorf(prices.line, prices.key, "empty because %s; want the Stripe price IDs of this plan, such as [price_123]", unsetVarsText(empty))
			default:
				p.errorf(prices.line, prices.key, "missing or empty; want the Stripe price IDs of this plan, such as [price_123]")
			}
		}
		for _, v := range vals {
			if p.productID(v) {
				continue
			}
			if meter != nil && v.s == meter.Price {
				p.invalid(v, "%q is the plan's metered price (meter.price); list only the base fee's prices here, or omit prices: for a pay-as-you-go plan", v.s)
				continue
			}
			if owner, dup := priceOwner[v.s]; dup {
				p.invalid(v, "%q is already a price of %s; a price can belong to one plan only", v.s, owner)
				continue
			}
			priceOwner[v.s] = fmt.Sprintf("%s (line %d)", key, v.line)
			pl.Prices = append(pl.Prices, v.s)
		}

		routes := s.list("routes")
		rvals, _ := routes.values()
		if len(rvals) == 0 && !routes.bad {
			p.errorf(routes.line, routes.key, "missing or empty; want the route IDs this plan unlocks, such as [415VNA] or [\"*\"] for all")
		}
		for _, v := range rvals {
			if v.s != "*" && !proxy.ValidRouteID(v.s) {
				p.invalid(v, "%q is not a route ID; want letters, digits, \".\", \"_\", \"~\" or \"-\", or \"*\" for all routes", v.s)
				continue
			}
			pl.Routes = append(pl.Routes, v.s)
			if v.s != "*" {
				p.planRouteIDs = append(p.planRouteIDs, v)
			}
		}

		trial := s.str("trial_days")
		pl.TrialDays = p.integer(trial, 0, 0, 730) // Stripe's own limit on trials

		if fee := s.str("trial_fee_price"); fee.s != "" && !p.productID(fee) {
			pl.TrialFeePrice = fee.s
			trialFees = append(trialFees, fee)
			if pl.TrialDays == 0 && !trial.bad {
				p.invalid(fee, "is set, but trial_days is 0; a trial fee needs a trial (set trial_days or remove trial_fee_price)")
			}
		}

		switch scope := s.str("scope"); scope.s {
		case "", "user":
		case "organization":
			pl.Scope = proxy.SubjectOrg
		default:
			if !scope.bad {
				p.invalid(scope, "%q is not valid; want user or organization", scope.s)
			}
		}
		p.limits(s, &pl)
		plans = append(plans, pl)
	}
	for _, fee := range trialFees {
		if owner, ok := priceOwner[fee.s]; ok {
			p.invalid(fee, "%q is a recurring price of %s; want a one-time price", fee.s, owner)
		}
	}
	return plans
}

// planMeter reads a plan's meter: { event_name: …, price: price_… }
// (README "Usage billing"): nil when absent or wrong. Its price is
// recorded in priceOwner, as every price belongs to one plan.
func (p *configParser) planMeter(s *configSection, key string, priceOwner map[string]string) *proxy.PlanMeter {
	n := p.node(s.vals["meter"])
	if n == nil || isYAMLNull(n) {
		return nil
	}
	ms := p.section(n, key+".meter", []string{"event_name", "price"}, s.line)
	if !ms.ok {
		return nil
	}
	ev, price := ms.str("event_name"), ms.str("price")
	ok := p.require(ev, "", "the event_name of the Stripe Billing Meter, such as api_requests")
	if ok && !proxy.ValidMeterEventName(ev.s) {
		p.invalid(ev, "%q is not a meter event name; want 1 to %d printable characters without spaces, as the meter's event_name in Stripe",
			ev.s, proxy.MaxMeterEventName)
		ok = false
	}
	if p.require(price, "", "the ID of the metered Stripe price backed by the meter, such as price_123") {
		switch {
		case p.productID(price):
			ok = false
		case !strings.HasPrefix(price.s, "price_") && !strings.HasPrefix(price.s, "plan_"):
			p.invalid(price, "%q is not a Stripe price ID; want price_…", price.s)
			ok = false
		default:
			if owner, dup := priceOwner[price.s]; dup {
				p.invalid(price, "%q is already a price of %s; a price can belong to one plan only", price.s, owner)
				ok = false
			} else {
				priceOwner[price.s] = fmt.Sprintf("%s (line %d)", key, price.line)
			}
		}
	} else {
		ok = false
	}
	if !ok {
		return nil
	}
	return &proxy.PlanMeter{EventName: ev.s, Price: price.s}
}

// Limits on a plan's words, so that a card on the upgrade page stays a card.
const (
	maxDescription = 300
	maxFeatures    = 12
	maxFeature     = 120
	maxHighlight   = 30
)

// planText reads what the upgrade page says about a plan beyond its name:
// description, features and highlight.
func (p *configParser) planText(s *configSection, pl *proxy.Plan) {
	if d := s.str("description"); utf8.RuneCountInString(d.s) > maxDescription {
		p.invalid(d, "is %d characters; want at most %d (a sentence or two; the features list says the rest)", utf8.RuneCountInString(d.s), maxDescription)
	} else {
		pl.Description = d.s
	}
	features := s.list("features")
	vals, _ := features.values()
	if len(vals) > maxFeatures {
		p.errorf(features.line, features.key, "has %d items; want at most %d", len(vals), maxFeatures)
		vals = nil
	}
	for _, v := range vals {
		if n := utf8.RuneCountInString(v.s); n > maxFeature {
			p.invalid(v, "is %d characters; want at most %d (one line)", n, maxFeature)
			continue
		}
		pl.Features = append(pl.Features, v.s)
	}
	// highlight: true gives the plan the usual label; a string is the label.
	switch h := s.str("highlight"); {
	case h.s == "" || h.s == "false":
	case h.s == "true":
		pl.Highlight = "Recommended"
	case utf8.RuneCountInString(h.s) > maxHighlight:
		p.invalid(h, "is %d characters; want a short label such as \"Most popular\" (at most %d), or true", utf8.RuneCountInString(h.s), maxHighlight)
	default:
		pl.Highlight = h.s
	}
}

// productID reports a Stripe product ID where a price ID belongs: the
// product is what the dashboard lists first, and its ID is easy to copy by
// mistake.
func (p *configParser) productID(v configValue) bool {
	if !strings.HasPrefix(v.s, "prod_") {
		return false
	}
	p.invalid(v, "%q is a product ID; want a price ID (price_…), shown in the Stripe dashboard under Product catalogue → the product → Pricing", v.s)
	return true
}

// routes reads routes: into rules checked field by field, so that each
// problem gets its own line. idLines maps a rule index to its id's line.
func (p *configParser) routes(top *configSection, cfg *proxy.Config) (rules []*proxy.Rule, idLines map[int]int) {
	idLines = map[int]int{}
	n := p.node(top.vals["routes"])
	if n == nil || isYAMLNull(n) {
		return nil, idLines
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, "routes", "is %s; want a list of rules such as - { path: \"/*\", access: public }", yamlKind(n))
		return nil, idLines
	}
	hosts := map[string]bool{}
	if cfg.PublicURL != nil {
		hosts[strings.ToLower(cfg.PublicURL.Hostname())] = true
	}
	for _, o := range cfg.ExtraOrigins {
		hosts[strings.ToLower(o.Hostname())] = true
	}
	for i, item := range n.Content {
		key := fmt.Sprintf("routes[%d]", i)
		s := p.section(item, key, configKeys("routes[]"), n.Line)
		if !s.ok {
			continue
		}
		if len(s.vals) == 0 {
			p.errorf(s.line, key, "empty rule; want at least path and access, such as { path: \"/*\", access: public }")
			continue
		}
		nerr := len(p.errs)
		r := &proxy.Rule{Index: i, Line: s.line}

		pathV := s.str("path")
		captures := false
		if !pathV.bad && p.require(pathV, "", "a path pattern such as /settings/* or /routes/{route}/*") {
			var err error
			if captures, err = proxy.CheckPathPattern(pathV.s); err != nil {
				p.invalid(pathV, "%v", err)
			}
			r.Path = pathV.s
		}

		access := s.str("access")
		if !access.bad {
			if a := proxy.Access(access.s); a.Valid() {
				r.Access = a
			} else if len(access.vars) > 0 && access.s == "" {
				p.errorf(access.line, access.key, "empty because %s; want one of public, signed_in, paid, deny", unsetVarsText(access.vars))
			} else {
				p.invalid(access, "%s", proxy.InvalidAccess(a))
			}
		}

		if id := s.str("id"); id.s != "" {
			idLines[i] = id.line
			switch {
			case !proxy.ValidRouteID(id.s):
				p.invalid(id, "%q: want letters, digits, \".\", \"_\", \"~\" or \"-\" (at most 128)", id.s)
			case captures:
				p.invalid(id, "%q: the path already captures the route ID with {route}; remove one of the two", id.s)
			default:
				r.ID = id.s
			}
		}

		if host := s.str("host"); host.s != "" {
			h, err := proxy.NormalizeRuleHost(host.s)
			switch {
			case err != nil:
				p.invalid(host, "%v", err)
			case len(hosts) > 0 && !hosts[h]:
				p.invalid(host, "%q is not served here; want public_url's host or one of extra_origins' hosts (%s)", h, strings.Join(slices.Sorted(maps.Keys(hosts)), ", "))
			default:
				r.Host = h
			}
		}

		if ml := s.list("methods"); ml.set && !ml.bad {
			vals, _ := ml.values()
			if len(vals) == 0 {
				p.errorf(ml.line, ml.key, "empty; omit methods to match every method, or list some such as [GET, POST]")
			}
			ms := make([]string, len(vals))
			for j, v := range vals {
				ms[j] = v.s
			}
			if out, bad, err := proxy.NormalizeMethods(ms); err != nil {
				p.errorf(vals[bad].line, vals[bad].key, "%v", err)
			} else {
				r.Methods = out
			}
		}
		if len(p.errs) == nerr {
			rules = append(rules, r)
		}
	}
	return rules, idLines
}

// compile turns the checked rules into the RuleSet and records lint warnings.
func (p *configParser) compile(cfg *proxy.Config, rules []*proxy.Rule) *proxy.RuleSet {
	rs, err := proxy.CompileRules(cfg.DefaultAccess, rules)
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, err := range joined.Unwrap() {
			var ce *proxy.ConfigError
			if errors.As(err, &ce) {
				ce.File = p.file
				p.errs = append(p.errs, ce)
			}
		}
	}
	for _, w := range rs.Lint(cfg.InternalPrefix) {
		p.warnf(w.Rule.Line, fmt.Sprintf("routes[%d]", w.Rule.Index), "%s", w.Msg)
	}
	return rs
}

// needs works out which services the routes can reach, for the error
// messages of the keys that then become required.
func (p *configParser) needs(cfg *proxy.Config, defaultSet bool) serviceNeeds {
	var n serviceNeeds
	for _, r := range cfg.Routes.Rules {
		why := fmt.Sprintf(" because routes[%d] (line %d) is %s", r.Index, r.Line, r.Access)
		if n.clerk == "" && (r.Access == proxy.AccessSignedIn || r.Access == proxy.AccessPaid) {
			n.clerk = why
		}
		if n.stripe == "" && r.Access == proxy.AccessPaid {
			n.stripe = why
		}
	}
	if cfg.Routes.DefaultReachable() {
		why := fmt.Sprintf(" because default_access is %s", cfg.DefaultAccess)
		if !defaultSet {
			why += " (the default; no rule matches every request)"
		}
		if n.clerk == "" && (cfg.DefaultAccess == proxy.AccessSignedIn || cfg.DefaultAccess == proxy.AccessPaid) {
			n.clerk = why
		}
		if n.stripe == "" && cfg.DefaultAccess == proxy.AccessPaid {
			n.stripe = why
		}
	}
	return n
}

func (p *configParser) clerk(s *configSection, cfg *proxy.Config, n serviceNeeds) proxy.ClerkConfig {
	var c proxy.ClerkConfig
	pk := s.str("publishable_key")
	if n.clerk != "" {
		p.require(pk, n.clerk, "the publishable key from the Clerk dashboard (pk_live_… or pk_test_…)")
	}
	if pk.s != "" {
		if _, err := proxy.ParsePublishableKey(pk.s); err != nil {
			p.invalid(pk, "%v", err)
		} else {
			c.PublishableKey = pk.s
		}
	}

	sk := s.str("secret_key")
	if n.clerk != "" {
		// Without the Backend API, gateway sessions cannot be renewed (every
		// XHR after session.refresh would be a 503), nonce handshakes and
		// sign-out fail, and Checkout has no e-mail: a jwt_key alone only
		// verifies tokens.
		p.require(sk, n.clerk, "the secret key from the Clerk dashboard (sk_live_… or sk_test_…); session checks, sign-out, handshakes and Checkout need the Backend API")
	}
	c.SecretKey = sk.s
	if pkLive, skLive := strings.HasPrefix(pk.s, "pk_live_"), strings.HasPrefix(sk.s, "sk_live_"); sk.s != "" && strings.HasPrefix(pk.s, "pk_") &&
		strings.HasPrefix(sk.s, "sk_") && pkLive != skLive {
		p.invalid(sk, "is a %s key but publishable_key is a %s key; both must come from the same Clerk instance", liveOrTestKey(skLive), liveOrTestKey(pkLive))
	}

	jwt := s.str("jwt_key")
	if jwt.s != "" {
		// Env files and orchestrators often cannot hold newlines.
		key := strings.TrimSpace(strings.ReplaceAll(jwt.s, `\n`, "\n"))
		if err := proxy.CheckJWTKey(key); err != nil {
			p.invalid(jwt, "%v", err)
		} else {
			c.JWTKey = key + "\n"
		}
	}

	parties := s.list("authorized_parties")
	for _, v := range nonEmptyValues(parties) {
		if u := p.httpURL(v, true); u != nil {
			c.AuthorizedParties = append(c.AuthorizedParties, originOf(u))
		}
	}
	if len(c.AuthorizedParties) == 0 && cfg.PublicURL != nil {
		// Tokens minted for any origin this gateway serves are ours.
		c.AuthorizedParties = append(c.AuthorizedParties, originOf(cfg.PublicURL))
		for _, o := range cfg.ExtraOrigins {
			c.AuthorizedParties = append(c.AuthorizedParties, originOf(o))
		}
	}

	c.WebhookSecrets, _ = p.webhookSecrets(s.strOrList("webhook_secret"), "a Clerk webhook signing secret; want whsec_… from the Clerk dashboard (Webhooks → the endpoint → Signing Secret)")
	c.ForwardCookies = p.boolean(s.str("forward_cookies"))
	c.APIKeys = p.boolean(s.str("api_keys"))
	c.APIURL = p.serviceURL(s.str("api_url"), proxy.DefaultClerkAPIURL)
	fapi := s.str("frontend_api_url")
	c.FrontendAPIURL = p.serviceURL(fapi, "")
	c.SignInURL = p.serviceURL(s.str("sign_in_url"), "")
	if proxyURL := s.str("proxy_url"); proxyURL.s != "" {
		c.ProxyURL = p.clerkProxyURL(proxyURL, cfg)
		switch {
		case c.ProxyURL == "":
		case strings.HasPrefix(pk.s, "pk_test_"):
			p.warnf(proxyURL.line, proxyURL.key, "Clerk's Frontend API proxy works for production instances only (pk_live_), and publishable_key is a development one: handshakes through %s will fail", c.ProxyURL)
		case c.FrontendAPIURL != "":
			p.warnf(fapi.line, fapi.key, "is not used: handshakes go through proxy_url")
		}
	}
	return c
}

// webhookSecrets checks that each signing secret has the whsec_ prefix that
// Stripe's and Svix's (Clerk's) secrets carry: anything else, often the API
// secret key pasted by mistake, would fail every delivery's signature. want
// says what the secret should be. Secrets are not echoed. refused reports
// a value that was there but refused, so that the caller does not also call
// it missing.
func (p *configParser) webhookSecrets(l configList, want string) (out []string, refused bool) {
	for _, v := range nonEmptyValues(l) {
		if !strings.HasPrefix(v.s, "whsec_") {
			p.invalid(v, "is not %s", want)
			refused = true
			continue
		}
		out = append(out, v.s)
	}
	return out, refused
}

// clerkProxyURL checks clerk.proxy_url: the URL at which Clerk's Frontend
// API is proxied, absolute or a path on public_url (as Clerk's SDKs accept
// "/__clerk"). Tokens minted through the proxy carry it as their issuer.
func (p *configParser) clerkProxyURL(v configValue, cfg *proxy.Config) string {
	if v.bad {
		return ""
	}
	if strings.HasPrefix(v.s, "/") && !strings.HasPrefix(v.s, "//") {
		if cfg.PublicURL == nil {
			return ""
		}
		if strings.ContainsAny(v.s, "?#") {
			p.invalid(v, "%q: want a path such as /__clerk, without ? or #", v.s)
			return ""
		}
		return strings.TrimSuffix(strings.TrimSuffix(cfg.PublicURL.String(), "/")+v.s, "/")
	}
	u := p.httpURL(v, false)
	if u == nil {
		return ""
	}
	return strings.TrimSuffix(u.String(), "/")
}

func nonEmptyValues(l configList) []configValue {
	vals, _ := l.values()
	return vals
}

func liveOrTestKey(live bool) string {
	if live {
		return "live"
	}
	return "test"
}

// serviceURL checks an optional override URL; it may have a path.
func (p *configParser) serviceURL(v configValue, def string) string {
	if v.s == "" {
		return def
	}
	if u := p.httpURL(v, false); u != nil {
		return strings.TrimSuffix(u.String(), "/")
	}
	return def
}

func (p *configParser) session(s *configSection, n serviceNeeds) proxy.SessionConfig {
	sc := proxy.SessionConfig{
		TTL:     p.duration(s.str("ttl"), DefaultSessionTTL),
		Refresh: p.duration(s.str("refresh"), DefaultSessionRefresh),
	}
	secret := s.str("secret")
	if n.clerk != "" {
		p.require(secret, n.clerk, "32 or more random bytes, e.g. from openssl rand -base64 48")
	}
	if secret.s != "" {
		if len(secret.s) < 32 {
			p.invalid(secret, "is %d bytes; want 32 or more random bytes, e.g. from openssl rand -base64 48", len(secret.s))
		} else {
			sc.Secret = secret.s
		}
	}
	return sc
}

func (p *configParser) stripe(s *configSection, n serviceNeeds) proxy.StripeConfig {
	sc := proxy.StripeConfig{PastDueGrace: p.duration(s.str("past_due_grace"), 0),
		ReconcileInterval: p.duration(s.str("reconcile_interval"), DefaultReconcileInterval)}
	sk := s.str("secret_key")
	if n.stripe != "" {
		p.require(sk, n.stripe, "a Stripe secret key (sk_live_…, sk_test_… or a restricted rk_… key)")
	}
	if sk.s != "" {
		if !strings.HasPrefix(sk.s, "sk_") && !strings.HasPrefix(sk.s, "rk_") {
			p.invalid(sk, "is not a Stripe secret key; want sk_live_…, sk_test_… or a restricted rk_… key from the Stripe dashboard")
		} else {
			sc.SecretKey = sk.s
		}
	}
	wh := s.strOrList("webhook_secret")
	var refused bool
	sc.WebhookSecrets, refused = p.webhookSecrets(wh, "a Stripe webhook signing secret; want whsec_… from the Stripe dashboard (Webhooks → the endpoint → Signing secret)")
	if n.stripe != "" && len(sc.WebhookSecrets) == 0 && !wh.bad && !refused {
		_, empty := wh.values()
		v := configValue{key: wh.key, line: wh.line, vars: empty, set: wh.set}
		p.require(v, n.stripe, "the endpoint's signing secret (whsec_…), or a list of them while rotating")
	}
	sc.APIURL = p.serviceURL(s.str("api_url"), proxy.DefaultStripeAPIURL)
	sc.PausedCollection = proxy.PausedCollectionKeep
	switch pc := s.str("paused_collection"); proxy.PausedCollectionPolicy(pc.s) {
	case "", proxy.PausedCollectionKeep:
	case proxy.PausedCollectionRevoke:
		sc.PausedCollection = proxy.PausedCollectionRevoke
	default:
		if !pc.bad {
			p.invalid(pc, "%q is not valid; want keep (access as Stripe's status says) or revoke (no access while Stripe does not collect)", pc.s)
		}
	}
	sc.AllowPromotionCodes = p.boolean(s.str("allow_promotion_codes"))
	sc.AutomaticTax = p.boolean(s.str("automatic_tax"))
	return sc
}

// timeouts reads the timeouts: section. A key left out gets its default; 0
// written out means no limit.
func (p *configParser) timeouts(s *configSection) proxy.TimeoutsConfig {
	return proxy.TimeoutsConfig{
		BodyIdle:          p.duration(s.str("body_idle"), DefaultBodyIdle),
		TunnelMaxLifetime: p.duration(s.str("tunnel_max_lifetime"), DefaultTunnelMaxLifetime),
	}
}

// DefaultAPIKeyMaxFailures is api_keys.max_failures unless set.
const DefaultAPIKeyMaxFailures = 20

// apiKeys reads the api_keys: section.
func (p *configParser) apiKeys(s *configSection) proxy.APIKeysConfig {
	c := proxy.APIKeysConfig{Enabled: p.boolean(s.str("enabled")),
		MaxFailures: p.integer(s.str("max_failures"), DefaultAPIKeyMaxFailures, 1, 1_000_000)}
	h := s.str("header")
	if h.s != "" {
		name := http.CanonicalHeaderKey(h.s)
		switch {
		case !validHeaderName(name):
			p.invalid(h, "%q is not a header name; want e.g. X-API-Key", h.s)
		case name == "Authorization" || name == "Cookie" || strings.HasPrefix(name, "X-Tollgate-") || strings.HasPrefix(name, "X-Forwarded-"):
			p.invalid(h, "%q is a header tollgate reads or sets itself; want another, e.g. X-API-Key", h.s)
		default:
			c.Header = name
		}
	}
	return c
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

func (p *configParser) store(s *configSection) proxy.StoreConfig {
	sc := proxy.StoreConfig{Driver: proxy.StoreBolt, Path: s.str("path").s, CacheSize: p.integer(s.str("cache_size"), DefaultCacheSize, 1, 1<<24)}
	if sc.Path == "" {
		sc.Path = DefaultStorePath
	}
	driver := s.str("driver")
	switch d := proxy.StoreDriver(driver.s); {
	case driver.bad, d == "":
	case d == proxy.StoreBolt || d == proxy.StorePostgres:
		sc.Driver = d
	default:
		p.invalid(driver, "%q is not a store driver; want bolt (one gateway, the default) or postgres (several replicas)", driver.s)
	}
	// The other driver's keys are read by nothing: a config may carry
	// both, ready for `tollgate store copy` and the switch.
	if sc.Driver != proxy.StorePostgres {
		return sc
	}
	dsn := s.str("dsn")
	if p.require(dsn, " with store.driver: postgres", "a PostgreSQL connection string such as ${DATABASE_URL} or postgres://tollgate@db:5432/tollgate") {
		if why := checkDSN(dsn.s); why != "" {
			// Never the string itself: it may hold a password, and an
			// unparsable one cannot be redacted reliably (red team,
			// issue 16: a "%" in a password printed it whole).
			p.invalid(dsn, "is not a PostgreSQL connection string (not shown: it may hold a password): %s; want postgres://user@host:5432/db or host=… dbname=…", why)
		} else {
			sc.DSN = dsn.s
		}
	}
	sc.MaxConns = p.integer(s.str("max_conns"), DefaultMaxConns, 1, 1000)
	minConns := s.str("min_conns")
	sc.MinConns = p.integer(minConns, DefaultMinConns, 0, 1000)
	if sc.MinConns > sc.MaxConns {
		p.invalid(minConns, "%d is more than store.max_conns (%d); want at most that", sc.MinConns, sc.MaxConns)
		sc.MinConns = sc.MaxConns
	}
	sc.MaxConnLifetime = p.positiveDuration(s.str("max_conn_lifetime"), DefaultMaxConnLifetime)
	sc.MaxConnIdle = p.positiveDuration(s.str("max_conn_idle"), DefaultMaxConnIdle)
	sc.ConnectTimeout = p.positiveDuration(s.str("connect_timeout"), DefaultConnectTimeout)
	return sc
}

// positiveDuration is duration, refusing 0.
func (p *configParser) positiveDuration(v configValue, def time.Duration) time.Duration {
	d := p.duration(v, def)
	if d == 0 && !v.bad && v.s != "" {
		p.invalid(v, "%q is zero; want a positive duration such as 5s", v.s)
		return def
	}
	return d
}

// checkDSN says what is wrong with a PostgreSQL connection string ("":
// nothing this parser can see; pgx parses it fully when it connects, and
// `tollgate check -online` does). It takes the URL form
// (postgres:// or postgresql://) and the key=value form, as libpq does.
func checkDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		switch {
		case err != nil:
			return "it does not parse as a URL (percent-encode a password's special characters, such as % as %25)"
		case u.Host == "" && u.Query().Get("host") == "":
			return "it names no host"
		}
		return ""
	}
	if strings.Contains(dsn, "://") {
		return "the scheme must be postgres:// or postgresql://"
	}
	if !strings.Contains(dsn, "=") {
		return "it is neither a postgres:// URL nor key=value pairs"
	}
	return ""
}

func (p *configParser) admin(s *configSection, listen string) proxy.AdminConfig {
	ac := proxy.AdminConfig{Token: s.str("token").s}
	lv := s.str("listen")
	ac.Listen = p.hostPort(lv)
	if ac.Listen != "" && ac.Listen == listen {
		p.invalid(lv, "%q is also listen; the admin listener must never be the public one", ac.Listen)
	}
	if ac.Token != "" && len(ac.Token) < 16 {
		p.warnf(s.line, "admin.token", "is only %d characters; use a long random token, e.g. from openssl rand -hex 32", len(ac.Token))
	}
	for _, v := range nonEmptyValues(s.list("users")) {
		if !(proxy.Subject{Kind: proxy.SubjectUser, ID: v.s}).Valid() {
			p.invalid(v, "%q is not a Clerk user ID; want an ID such as user_2abc (Clerk dashboard → Users)", v.s)
			continue
		}
		ac.Users = append(ac.Users, v.s)
	}
	return ac
}

func (p *configParser) pages(s *configSection) proxy.PagesConfig {
	pc := proxy.PagesConfig{
		ProductName:  cmp.Or(s.str("product_name").s, DefaultProductName),
		AccentColor:  DefaultAccentColor,
		TemplatesDir: s.str("templates_dir").s,
	}
	if v := s.str("accent_color"); v.s != "" {
		if accentColorPattern.MatchString(v.s) {
			pc.AccentColor = v.s
		} else {
			p.invalid(v, "%q is not valid; want a #rrggbb colour such as #4f46e5", v.s)
		}
	}
	if v := s.str("logo_url"); v.s != "" {
		if u := p.httpURL(v, false); u != nil {
			pc.LogoURL = u.String()
		}
	}
	if v := s.str("support_url"); v.s != "" {
		if strings.HasPrefix(v.s, "mailto:") && len(v.s) > len("mailto:") {
			pc.SupportURL = v.s
		} else if !strings.HasPrefix(v.s, "http://") && !strings.HasPrefix(v.s, "https://") {
			p.invalid(v, "%q: want an absolute http(s) URL or a mailto: address", v.s)
		} else if u := p.httpURL(v, false); u != nil {
			pc.SupportURL = u.String()
		}
	}
	return pc
}

// crossCheck warns about route IDs that no plan unlocks and plan route IDs
// that no rule can produce.
func (p *configParser) crossCheck(cfg *proxy.Config, idLines map[int]int) {
	captures := false
	ids := map[string]bool{}
	for _, r := range cfg.Routes.Rules {
		if r.CapturesRoute() {
			captures = true
		}
		if r.ID != "" {
			ids[strings.ToLower(r.ID)] = true
		}
		if r.Access != proxy.AccessPaid || r.ID == "" || len(cfg.Plans) == 0 {
			continue
		}
		if !slices.ContainsFunc(cfg.Plans, func(pl proxy.Plan) bool { return pl.UnlocksRoute(r.ID) }) && (cfg.Free == nil || !cfg.Free.UnlocksRouteFree(r.ID)) {
			p.warnf(idLines[r.Index], fmt.Sprintf("routes[%d].id", r.Index), "%q is paid, but no plan lists it in routes; nobody can get in (add it to a plan, or \"*\")", r.ID)
		}
	}
	if captures {
		return // any ID may come from a {route} capture
	}
	for _, v := range p.planRouteIDs {
		if !ids[strings.ToLower(v.s)] {
			p.warnf(v.line, v.key, "%q: no route has this id and none captures {route}; it unlocks nothing", v.s)
		}
	}
}

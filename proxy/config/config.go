package config

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/proxy"
)

// Defaults for keys left out or left empty.
const (
	DefaultListen         = ":8080"
	DefaultInternalPrefix = "/.tollgate"
	DefaultSessionTTL     = 12 * time.Hour
	DefaultSessionRefresh = 60 * time.Second
	DefaultStorePath      = "tollgate.db"
	DefaultCacheSize      = 10000
	// The PostgreSQL pool's defaults (store.max_conns, …): ten connections
	// serve a replica's misses and webhooks; the LISTEN connection and the
	// leader's lock connection are outside the pool.
	DefaultMaxConns        = 10
	DefaultMinConns        = 1
	DefaultMaxConnLifetime = time.Hour
	DefaultMaxConnIdle     = 10 * time.Minute
	DefaultConnectTimeout  = 5 * time.Second
	DefaultProductName     = "tollgate"
	DefaultAccentColor     = "#4f46e5"
	// DefaultReconcileInterval is how often the whole Stripe account is
	// re-listed: webhooks carry the news, this catches what they missed.
	DefaultReconcileInterval = 6 * time.Hour
	// DefaultBodyIdle is how long a forwarded request body may send
	// nothing before it is cut.
	DefaultBodyIdle = 60 * time.Second
	// DefaultTunnelMaxLifetime is how long a WebSocket on a gated route
	// stays open, however busy: then the client reconnects, through the
	// gate.
	DefaultTunnelMaxLifetime = time.Hour
)

// maxConfigNodes bounds the walk of the YAML tree. Aliases are followed, so
// without a bound a small file of nested aliases could make it exponential.
const maxConfigNodes = 200_000

var (
	yamlErrorLine  = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	envRefPattern  = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	planKeyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	// accentColorPattern is strict because the colour is written into CSS.
	accentColorPattern = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
)

// Load reads the file at path and parses it with Parse, taking
// ${VAR}s from the process environment.
func Load(path string) (*proxy.Config, error) { return LoadWith(path, os.Getenv) }

// LoadWith reads the file at path and parses it with Parse, taking ${VAR}s
// from getenv.
func LoadWith(path string, getenv func(string) string) (*proxy.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(path, data, getenv)
}

// Parse parses and validates a YAML config. name is used in error
// messages ("config.yaml:12: ..."). getenv expands ${VAR} per scalar value
// AFTER parsing (so a multi-line PEM in an env var survives and line numbers
// are the file's own). nil getenv means os.Getenv.
//
// The error joins one *ConfigError per problem found. Non-fatal findings are
// in Config.Warnings.
func Parse(name string, data []byte, getenv func(string) string) (*proxy.Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	p := &configParser{file: name, getenv: getenv}
	root, ok := p.document(data)
	if !ok {
		return nil, p.err()
	}
	cfg := p.config(root)
	if p.exhausted {
		// What was skipped would only produce misleading "missing" errors.
		return nil, &proxy.ConfigError{File: name, Msg: fmt.Sprintf("too many YAML nodes (over %d, counting alias expansions)", maxConfigNodes)}
	}
	if len(p.errs) > 0 {
		return nil, p.err()
	}
	slices.SortStableFunc(p.warns, func(a, b *proxy.ConfigError) int { return cmp.Compare(a.Line, b.Line) })
	for _, w := range p.warns {
		cfg.Warnings = append(cfg.Warnings, w.Error())
	}
	return cfg, nil
}

// configKeys lists the keys each part of the config accepts, in the order the
// example config documents them.
func configKeys(section string) []string {
	switch section {
	case "":
		return []string{"listen", "public_url", "upstream", "trusted_proxies", "extra_origins", "hosts", "internal_prefix",
			"default_access", "clerk", "session", "stripe", "plans", "routes", "store", "admin", "pages", "timeouts", "api_keys",
			"free", "cost_header", "quota_flush", "meter_window"}
	case "api_keys":
		return []string{"enabled", "header", "max_failures"}
	case "clerk":
		return []string{"publishable_key", "secret_key", "jwt_key", "authorized_parties", "webhook_secret",
			"forward_cookies", "proxy_url", "api_url", "frontend_api_url", "sign_in_url", "api_keys"}
	case "session":
		return []string{"secret", "ttl", "refresh"}
	case "stripe":
		return []string{"secret_key", "webhook_secret", "past_due_grace", "paused_collection", "reconcile_interval",
			"allow_promotion_codes", "automatic_tax", "api_url"}
	case "plans.*":
		return []string{"name", "description", "features", "highlight", "prices", "routes", "trial_days", "trial_fee_price", "scope", "limits", "meter"}
	case "free":
		return []string{"routes", "limits"}
	case "limits.*":
		return []string{"rate", "burst", "quota"}
	case "routes[]":
		return []string{"id", "host", "path", "methods", "access"}
	case "store":
		return []string{"driver", "path", "cache_size", "dsn", "max_conns", "min_conns", "max_conn_lifetime", "max_conn_idle", "connect_timeout"}
	case "admin":
		return []string{"listen", "token", "users"}
	case "pages":
		return []string{"product_name", "logo_url", "accent_color", "support_url", "templates_dir"}
	case "timeouts":
		return []string{"body_idle", "tunnel_max_lifetime"}
	}
	return nil
}

func (p *configParser) config(root *yaml.Node) *proxy.Config {
	top := p.section(root, "", configKeys(""), 1)
	cfg := &proxy.Config{}
	if !top.ok {
		return cfg // every key would be reported missing: say it once
	}

	cfg.Listen = p.hostPort(top.str("listen"))
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	publicURL := top.str("public_url")
	if p.require(publicURL, "", "the origin visitors use, such as https://app.example.com") {
		cfg.PublicURL = p.httpURL(publicURL, true)
	}
	upstream := top.str("upstream")
	if p.require(upstream, "", "the URL of the app to protect, such as http://app:3000") {
		cfg.Upstream = p.httpURL(upstream, false)
	}
	cfg.TrustedProxies = p.trustedProxies(top.list("trusted_proxies"))
	cfg.ExtraOrigins = p.extraOrigins(top.list("extra_origins"), cfg.PublicURL)
	cfg.Hosts = p.hosts(top.list("hosts"), cfg)
	cfg.InternalPrefix = p.internalPrefix(top.str("internal_prefix"))

	defAccess := top.str("default_access")
	cfg.DefaultAccess = proxy.AccessPaid
	if defAccess.s != "" && !defAccess.bad {
		if a := proxy.Access(defAccess.s); a.Valid() {
			cfg.DefaultAccess = a
		} else {
			p.invalid(defAccess, "%s", proxy.InvalidAccess(a))
		}
	}

	cfg.Plans = p.plans(top)
	cfg.Free = p.free(top, cfg.Plans)
	cfg.CostHeader = p.costHeader(top.str("cost_header"))
	cfg.QuotaFlush = p.duration(top.str("quota_flush"), DefaultQuotaFlush)
	if cfg.QuotaFlush <= 0 || cfg.QuotaFlush > time.Minute {
		v := top.str("quota_flush")
		p.invalid(v, "is %s; want from 1ms to 1m (a crash loses at most one interval of counts)", cfg.QuotaFlush)
		cfg.QuotaFlush = DefaultQuotaFlush
	}
	cfg.MeterWindow = p.duration(top.str("meter_window"), proxy.MeterWindowLength)
	if w := cfg.MeterWindow; w < time.Second || w > proxy.MeterWindowLength || proxy.MeterWindowLength%w != 0 || w%time.Second != 0 {
		p.invalid(top.str("meter_window"), "is %s; want whole seconds from 1s to 1h that divide an hour (one meter event a subject and window)", w)
		cfg.MeterWindow = proxy.MeterWindowLength
	}
	rules, idLines := p.routes(top, cfg)
	cfg.Routes = p.compile(cfg, rules)
	if defAccess.set && !cfg.Routes.DefaultReachable() {
		p.warnf(defAccess.line, defAccess.key, "never applies: a rule matches every request")
	}
	if len(cfg.Plans) > 0 {
		if why := cfg.Routes.PaidUnreachable(); why != "" {
			p.warnf(top.lineOf("plans"), "plans", "unlock nothing: %s", why)
		}
	}
	// Which keys are required depends on the access levels the routes can
	// reach, so these sections are read after the routes.
	n := p.needs(cfg, defAccess.set)

	cfg.Clerk = p.clerk(top.sub("clerk"), cfg, n)
	cfg.Session = p.session(top.sub("session"), n)
	cfg.Stripe = p.stripe(top.sub("stripe"), n)
	if n.stripe != "" && len(cfg.Plans) == 0 {
		p.errorf(top.lineOf("plans"), "plans", "missing; at least one plan is required%s; want e.g. pro: { prices: [price_123], routes: [\"*\"] }", n.stripe)
	}
	cfg.Store = p.store(top.sub("store"))
	cfg.Admin = p.admin(top.sub("admin"), cfg.Listen)
	cfg.Pages = p.pages(top.sub("pages"))
	cfg.Timeouts = p.timeouts(top.sub("timeouts"))
	cfg.APIKeys = p.apiKeys(top.sub("api_keys"))

	p.crossCheck(cfg, idLines)
	return cfg
}

func (p *configParser) trustedProxies(l configList) []netip.Prefix {
	var out []netip.Prefix
	vals, _ := l.values()
	for _, v := range vals {
		pfx, err := parsePrefixOrAddr(v.s)
		if err != nil {
			p.invalid(v, "%q is not an IP address or CIDR; want e.g. 10.0.0.0/8, 192.168.1.10 or fd00::/8", v.s)
			continue
		}
		out = append(out, pfx)
	}
	return out
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return pfx.Masked(), nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if addr.Zone() != "" {
		return netip.Prefix{}, errors.New("zoned address")
	}
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}

func (p *configParser) extraOrigins(l configList, public *url.URL) []*url.URL {
	var out []*url.URL
	vals, _ := l.values()
	for _, v := range vals {
		u := p.httpURL(v, true)
		if u == nil {
			continue
		}
		if public != nil && originOf(u) == originOf(public) {
			p.invalid(v, "%q is public_url's origin; list only other origins", v.s)
			continue
		}
		if slices.ContainsFunc(out, func(o *url.URL) bool { return originOf(o) == originOf(u) }) {
			p.invalid(v, "%q is listed twice", v.s)
			continue
		}
		out = append(out, u)
	}
	return out
}

// hosts reads hosts:, the Host allow-list. When it is set, public_url's and
// extra_origins' hosts are on it too, so it never locks out the origins
// tollgate builds its own URLs from.
func (p *configParser) hosts(l configList, cfg *proxy.Config) []string {
	vals, _ := l.values()
	if len(vals) == 0 {
		return nil
	}
	var out []string
	add := func(h string) {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	for _, v := range vals {
		h, err := proxy.NormalizeRuleHost(v.s)
		if err != nil {
			p.invalid(v, "%v", err)
			continue
		}
		add(h)
	}
	if cfg.PublicURL != nil {
		add(proxy.RequestHost(cfg.PublicURL.Host))
	}
	for _, o := range cfg.ExtraOrigins {
		add(proxy.RequestHost(o.Host))
	}
	return out
}

// boolean reads true or false.
func (p *configParser) boolean(v configValue) bool {
	if v.bad || v.s == "" {
		return false
	}
	b, err := strconv.ParseBool(v.s)
	if err != nil || (v.s != "true" && v.s != "false") {
		p.invalid(v, "%q is not valid; want true or false", v.s)
		return false
	}
	return b
}

func (p *configParser) internalPrefix(v configValue) string {
	if v.bad || v.s == "" {
		return DefaultInternalPrefix
	}
	s := v.s
	want := "want a clean absolute path such as /.tollgate, without a trailing slash"
	switch {
	case s == "/":
		p.invalid(v, `"/" would take every path from the app; %s`, want)
	case !strings.HasPrefix(s, "/"), strings.HasSuffix(s, "/"), path.Clean(s) != s:
		p.invalid(v, "%q is not valid; %s", s, want)
	case strings.ContainsAny(s, "%?#*{}\\") || strings.ContainsFunc(s, proxy.IsControlRune):
		p.invalid(v, "%q has characters a prefix cannot have (%%?#*{}\\ or control characters); %s", s, want)
	default:
		return s
	}
	return DefaultInternalPrefix
}

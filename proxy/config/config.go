package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/stripe"
	"io"
	"maps"
	"net"
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
)

// Defaults for keys left out or left empty.
const (
	DefaultListen         = ":8080"
	DefaultInternalPrefix = "/.tollgate"
	DefaultSessionTTL     = 12 * time.Hour
	DefaultSessionRefresh = 60 * time.Second
	DefaultStorePath      = "tollgate.db"
	DefaultCacheSize      = 10000
	DefaultProductName    = "tollgate"
	DefaultAccentColor    = "#4f46e5"
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
	planKeyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	// accentColorPattern is strict because the colour is written into CSS.
	accentColorPattern = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
)

// Load reads the file at path and parses it with Parse, taking
// ${VAR}s from the process environment.
func Load(path string) (*proxy.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(path, data, os.Getenv)
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
			"default_access", "clerk", "session", "stripe", "plans", "routes", "store", "admin", "pages", "timeouts"}
	case "clerk":
		return []string{"publishable_key", "secret_key", "jwt_key", "authorized_parties", "webhook_secret",
			"forward_cookies", "proxy_url", "api_url", "frontend_api_url", "sign_in_url"}
	case "session":
		return []string{"secret", "ttl", "refresh"}
	case "stripe":
		return []string{"secret_key", "webhook_secret", "past_due_grace", "paused_collection", "reconcile_interval", "api_url"}
	case "plans.*":
		return []string{"name", "prices", "routes", "trial_days", "trial_fee_price", "scope"}
	case "routes[]":
		return []string{"id", "host", "path", "methods", "access"}
	case "store":
		return []string{"path", "cache_size"}
	case "admin":
		return []string{"listen", "token", "users"}
	case "pages":
		return []string{"product_name", "logo_url", "accent_color", "support_url", "templates_dir"}
	case "timeouts":
		return []string{"body_idle", "tunnel_max_lifetime"}
	}
	return nil
}

// configParser walks the yaml.Node tree itself: yaml.v3's KnownFields is lost
// inside custom unmarshalers, and only the node tree knows every line.
type configParser struct {
	file      string
	getenv    func(string) string
	errs      []*proxy.ConfigError
	warns     []*proxy.ConfigError
	nodes     int
	exhausted bool

	planRouteIDs []configValue // plans.*.routes entries other than "*", for crossCheck
}

// err joins the errors found, in line order.
func (p *configParser) err() error {
	slices.SortStableFunc(p.errs, func(a, b *proxy.ConfigError) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// invalid reports a wrong value, adding which variables expanded to nothing:
// "http://${HOST}:3000" with HOST unset is wrong because of HOST.
func (p *configParser) invalid(v configValue, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(v.vars) > 0 {
		msg += " (" + unsetVarsText(v.vars) + ")"
	}
	p.errorf(v.line, v.key, "%s", msg)
}

func (p *configParser) errorf(line int, key, format string, args ...any) {
	p.errs = append(p.errs, &proxy.ConfigError{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (p *configParser) warnf(line int, key, format string, args ...any) {
	p.warns = append(p.warns, &proxy.ConfigError{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// document parses data into its single YAML document's root node. An empty
// file gives a nil root, which reads as an empty mapping.
func (p *configParser) document(data []byte) (root *yaml.Node, ok bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := p.decode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		p.yamlError(err)
		return nil, false
	}
	var extra yaml.Node
	if err := p.decode(dec, &extra); !errors.Is(err, io.EOF) {
		if err != nil {
			p.yamlError(err)
		} else {
			p.errorf(extra.Line, "", "a second YAML document (after \"---\"); want a single document")
		}
		return nil, false
	}
	if len(doc.Content) == 0 {
		return nil, true
	}
	return doc.Content[0], true
}

// decode guards against a panic inside yaml.v3 on hostile input: a config
// file, however broken, must give an error, never a crash.
func (p *configParser) decode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

func (p *configParser) yamlError(err error) {
	msg := err.Error()
	if m := yamlErrorLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errorf(line, "", "invalid YAML: %s", m[2])
		return
	}
	p.errorf(0, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// node resolves aliases and counts visits against maxConfigNodes.
func (p *configParser) node(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > 100 {
			return nil
		}
		n = n.Alias
	}
	if n == nil || p.exhausted {
		return nil
	}
	p.nodes++
	if p.nodes > maxConfigNodes {
		p.exhausted = true
		return nil
	}
	return n
}

func isYAMLNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func yamlKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		}
		return "a string"
	}
	return "something else"
}

func joinConfigKey(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

type yamlPair struct {
	name     string
	key, val *yaml.Node
}

// pairs lists a mapping's entries in file order, applying "<<" merge keys
// (explicit keys win) and reporting duplicate and non-string keys.
func (p *configParser) pairs(n *yaml.Node, path string) []yamlPair {
	var out, merged []yamlPair
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := p.node(n.Content[i]), n.Content[i+1]
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			p.errorf(k.Line, path, "a key is %s; want plain string keys", yamlKind(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			merged = append(merged, p.mergePairs(v, path)...)
			continue
		}
		if line, dup := seen[k.Value]; dup {
			p.errorf(k.Line, joinConfigKey(path, k.Value), "duplicate key; first set on line %d", line)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, yamlPair{k.Value, k, v})
	}
	for _, m := range merged {
		if _, dup := seen[m.name]; !dup {
			seen[m.name] = m.key.Line
			out = append(out, m)
		}
	}
	return out
}

func (p *configParser) mergePairs(v *yaml.Node, path string) []yamlPair {
	v = p.node(v)
	if v == nil {
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		return p.pairs(v, path)
	case yaml.SequenceNode:
		var out []yamlPair
		for _, item := range v.Content {
			if item = p.node(item); item != nil && item.Kind == yaml.MappingNode {
				out = append(out, p.pairs(item, path)...)
			} else if item != nil {
				p.errorf(item.Line, joinConfigKey(path, "<<"), "merges %s; want a mapping or a list of mappings", yamlKind(item))
			}
		}
		return out
	}
	p.errorf(v.Line, joinConfigKey(path, "<<"), "merges %s; want a mapping or a list of mappings", yamlKind(v))
	return nil
}

// configSection is one mapping of known keys.
type configSection struct {
	p    *configParser
	path string // dotted key path; "" at the top
	line int    // of the mapping, or of its parent when it is absent
	vals map[string]*yaml.Node
	set  bool // present in the file
	ok   bool // absent, empty or a mapping: not already reported as wrong
}

// section reads the mapping n (nil: absent) whose keys must be among keys.
func (p *configParser) section(n *yaml.Node, path string, keys []string, line int) *configSection {
	s := &configSection{p: p, path: path, line: line, vals: map[string]*yaml.Node{}, ok: true}
	if n = p.node(n); n == nil {
		return s
	}
	s.line, s.set = n.Line, true
	switch {
	case isYAMLNull(n):
		return s
	case n.Kind != yaml.MappingNode:
		s.ok = false
		what := "is"
		if path == "" {
			what = "the config is"
		}
		p.errorf(n.Line, path, "%s %s; want a mapping with keys %s", what, yamlKind(n), strings.Join(keys, ", "))
		return s
	}
	for _, kv := range p.pairs(n, path) {
		if !slices.Contains(keys, kv.name) {
			p.errorf(kv.key.Line, joinConfigKey(path, kv.name), "unknown key%s; want one of %s", suggestKey(kv.name, keys), strings.Join(keys, ", "))
			continue
		}
		s.vals[kv.name] = kv.val
	}
	return s
}

// suggestKey names the closest known key, for typos.
func suggestKey(name string, keys []string) string {
	best, bestD := "", 3
	for _, k := range keys {
		if d := editDistance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (s *configSection) key(name string) string { return joinConfigKey(s.path, name) }

// lineOf is the line of a key's value, or of the section when it is absent.
func (s *configSection) lineOf(name string) int {
	if n := s.vals[name]; n != nil {
		return n.Line
	}
	return s.line
}

func (s *configSection) str(name string) configValue {
	return s.p.scalar(s.vals[name], s.key(name), s.line)
}

func (s *configSection) list(name string) configList {
	return s.p.list(s.vals[name], s.key(name), s.line, false)
}

// strOrList reads a key that takes one string or a list of strings.
func (s *configSection) strOrList(name string) configList {
	return s.p.list(s.vals[name], s.key(name), s.line, true)
}

func (s *configSection) sub(name string) *configSection {
	return s.p.section(s.vals[name], s.key(name), configKeys(s.key(name)), s.line)
}

// configValue is one string value after ${VAR} expansion, and where it came from.
type configValue struct {
	s    string
	key  string
	line int      // of the value, or of the enclosing mapping when absent
	vars []string // the ${VAR}s it referenced that were unset or empty
	set  bool     // present in the file (possibly empty)
	bad  bool     // already reported as wrong: skip further checks
}

// scalar reads a string value. Numbers and booleans are taken as written, so
// "listen: 8080"-style values and "${VAR}" in typed keys both work.
// Surrounding white space is dropped: env files and mounted secrets often end
// in a newline, and no value here means anything by it.
func (p *configParser) scalar(n *yaml.Node, key string, line int) configValue {
	v := configValue{key: key, line: line}
	if n = p.node(n); n == nil {
		return v
	}
	v.line, v.set = n.Line, true
	switch {
	case n.Kind != yaml.ScalarNode:
		p.errorf(n.Line, key, "is %s; want a string", yamlKind(n))
		v.bad = true
		return v
	case isYAMLNull(n):
		return v
	}
	s, vars, err := expandEnv(n.Value, p.getenv)
	if err != nil {
		p.errorf(n.Line, key, "%v", err)
		v.bad = true
		return v
	}
	v.s, v.vars = strings.TrimSpace(s), vars
	return v
}

// expandEnv replaces each ${NAME} in s by getenv(NAME), and lists the names
// that were unset or empty. A "$" not followed by "{" is literal, so values
// containing "$" need no escaping.
func expandEnv(s string, getenv func(string) string) (string, []string, error) {
	if !strings.Contains(s, "${") {
		return s, nil, nil
	}
	var b strings.Builder
	var vars []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), vars, nil
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", nil, errors.New(`has "${" without a closing "}"; want ${NAME}`)
		}
		name := s[i+2 : i+2+end]
		if !envNamePattern.MatchString(name) {
			return "", nil, fmt.Errorf("${%.40s}: want an environment variable name of letters, digits and _", name)
		}
		val := getenv(name)
		b.WriteString(val)
		if val == "" && !slices.Contains(vars, name) {
			vars = append(vars, name)
		}
		s = s[i+3+end:]
	}
}

// unsetVarsText says which unset variables left a value empty.
func unsetVarsText(vars []string) string {
	refs := make([]string, len(vars))
	for i, v := range vars {
		refs[i] = "${" + v + "}"
	}
	if len(refs) == 1 {
		return refs[0] + " is unset or empty"
	}
	return strings.Join(refs, " and ") + " are unset or empty"
}

// configList is a list of strings.
type configList struct {
	items []configValue
	key   string
	line  int
	set   bool
	bad   bool
}

func (p *configParser) list(n *yaml.Node, key string, line int, oneOK bool) configList {
	l := configList{key: key, line: line}
	if n = p.node(n); n == nil {
		return l
	}
	l.line, l.set = n.Line, true
	switch {
	case isYAMLNull(n):
	case n.Kind == yaml.ScalarNode && oneOK:
		l.items = []configValue{p.scalar(n, key, n.Line)}
	case n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			l.items = append(l.items, p.scalar(item, fmt.Sprintf("%s[%d]", key, i), n.Line))
		}
	default:
		want := "a list of strings"
		if oneOK {
			want = "a string or a list of strings"
		}
		p.errorf(n.Line, key, "is %s; want %s", yamlKind(n), want)
		l.bad = true
	}
	return l
}

// values returns the non-empty items, and the variables that left any empty.
func (l configList) values() (vals []configValue, emptyVars []string) {
	for _, it := range l.items {
		switch {
		case it.bad:
		case it.s != "":
			vals = append(vals, it)
		default:
			emptyVars = append(emptyVars, it.vars...)
		}
	}
	return vals, emptyVars
}

func (l configList) strings() []string {
	vals, _ := l.values()
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = v.s
	}
	return out
}

// require reports v as missing or empty; why says what needs it (e.g.
// "routes[2] (line 31) is paid") and want what a valid value looks like.
func (p *configParser) require(v configValue, why, want string) bool {
	if v.s != "" || v.bad {
		return true
	}
	switch {
	case len(v.vars) > 0:
		p.errorf(v.line, v.key, "empty because %s; it is required%s", unsetVarsText(v.vars), why)
	case v.set:
		p.errorf(v.line, v.key, "empty; it is required%s; want %s", why, want)
	default:
		p.errorf(v.line, v.key, "missing; it is required%s; want %s", why, want)
	}
	return false
}

func (p *configParser) duration(v configValue, def time.Duration) time.Duration {
	if v.bad || v.s == "" {
		return def
	}
	d, err := time.ParseDuration(v.s)
	if err != nil {
		p.invalid(v, "%q is not a duration; want a Go duration such as 60s, 5m or 12h", v.s)
		return def
	}
	if d < 0 {
		p.invalid(v, "%q is negative; want 0 or more", v.s)
		return def
	}
	return d
}

func (p *configParser) integer(v configValue, def, lo, hi int) int {
	if v.bad || v.s == "" {
		return def
	}
	n, err := strconv.Atoi(v.s)
	if err != nil || n < lo || n > hi {
		p.invalid(v, "%q is not valid; want a whole number from %d to %d", v.s, lo, hi)
		return def
	}
	return n
}

// httpURL checks an absolute http(s) URL. originOnly also refuses a path
// (other than "/"), and returns the URL reduced to its origin.
func (p *configParser) httpURL(v configValue, originOnly bool) *url.URL {
	if v.bad || v.s == "" {
		return nil
	}
	want := "an absolute http(s) URL such as https://app.example.com"
	u, err := url.Parse(v.s)
	switch {
	case err != nil:
		p.invalid(v, "%s is not a URL; want %s", redactURL(v.s), want)
		return nil
	case u.Scheme != "http" && u.Scheme != "https", u.Opaque != "":
		p.invalid(v, "%s: want %s", redactURL(v.s), want)
		return nil
	case u.Host == "" || u.Hostname() == "":
		p.invalid(v, "%s has no host; want %s", redactURL(v.s), want)
		return nil
	case u.User != nil:
		p.invalid(v, "%s carries credentials; want %s without user:password@", redactURL(v.s), want)
		return nil
	case u.Fragment != "" || strings.Contains(v.s, "#"):
		p.invalid(v, "%s has a fragment; want %s without #…", redactURL(v.s), want)
		return nil
	case u.RawQuery != "" || u.ForceQuery:
		p.invalid(v, "%s has a query; want %s without ?…", redactURL(v.s), want)
		return nil
	case u.Port() != "" && !validPortNumber(u.Port()):
		p.invalid(v, "%s has an invalid port; want a number from 1 to 65535", redactURL(v.s))
		return nil
	}
	u.Host = strings.ToLower(u.Host)
	if originOnly {
		if u.Path != "" && u.Path != "/" {
			p.invalid(v, "%s has a path; want an origin only, such as https://app.example.com", redactURL(v.s))
			return nil
		}
		u.Path, u.RawPath = "", ""
		// Browsers never write the default port in an Origin (nor Clerk in azp).
		if u.Scheme == "https" && u.Port() == "443" || u.Scheme == "http" && u.Port() == "80" {
			u.Host = u.Hostname()
			if strings.Contains(u.Host, ":") {
				u.Host = "[" + u.Host + "]"
			}
		}
	}
	return u
}

func validPortNumber(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

// redactURL quotes a URL for an error message without its password.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return strconv.Quote(u.Redacted())
	}
	return strconv.Quote(s)
}

// originOf is the scheme://host[:port] form used for Clerk's azp claim.
func originOf(u *url.URL) string { return u.Scheme + "://" + u.Host }

func (p *configParser) hostPort(v configValue) string {
	if v.bad || v.s == "" {
		return v.s
	}
	host, port, err := net.SplitHostPort(v.s)
	if err != nil || !validPortNumber(port) && port != "0" || strings.ContainsAny(host, "/ ") {
		p.invalid(v, "%q: want host:port such as :8080 or 127.0.0.1:9090", v.s)
		return ""
	}
	return v.s
}

// serviceNeeds records why the config needs Clerk (any rule signed_in or paid) and
// Stripe (any rule paid); an empty reason means it does not.
type serviceNeeds struct {
	clerk, stripe string
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
	rules, idLines := p.routes(top, cfg)
	cfg.Routes = p.compile(cfg, rules)
	if defAccess.set && !cfg.Routes.DefaultReachable() {
		p.warnf(defAccess.line, defAccess.key, "never applies: a rule matches every request")
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

		prices := s.list("prices")
		vals, empty := prices.values()
		if len(vals) == 0 && !prices.bad {
			switch {
			case len(empty) > 0:
				p.errorf(prices.line, prices.key, "empty because %s; want the Stripe price IDs of this plan, such as [price_123]", unsetVarsText(empty))
			default:
				p.errorf(prices.line, prices.key, "missing or empty; want the Stripe price IDs of this plan, such as [price_123]")
			}
		}
		for _, v := range vals {
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

		if fee := s.str("trial_fee_price"); fee.s != "" {
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
		plans = append(plans, pl)
	}
	for _, fee := range trialFees {
		if owner, ok := priceOwner[fee.s]; ok {
			p.invalid(fee, "%q is a recurring price of %s; want a one-time price", fee.s, owner)
		}
	}
	return plans
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
		if p.require(pathV, "", "a path pattern such as /settings/* or /routes/{route}/*") {
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
		if _, err := clerk.ParsePublishableKey(pk.s); err != nil {
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
	if pkLive, skLive := strings.HasPrefix(pk.s, "pk_live_"), strings.HasPrefix(sk.s, "sk_live_"); sk.s != "" && pk.s != "" &&
		strings.HasPrefix(sk.s, "sk_") && pkLive != skLive {
		p.invalid(sk, "is a %s key but publishable_key is a %s key; both must come from the same Clerk instance", liveOrTestKey(skLive), liveOrTestKey(pkLive))
	}

	jwt := s.str("jwt_key")
	if jwt.s != "" {
		// Env files and orchestrators often cannot hold newlines.
		key := strings.TrimSpace(strings.ReplaceAll(jwt.s, `\n`, "\n"))
		if err := clerk.CheckJWTKey(key); err != nil {
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

	c.WebhookSecrets = s.strOrList("webhook_secret").strings()
	c.ForwardCookies = p.boolean(s.str("forward_cookies"))
	c.APIURL = p.serviceURL(s.str("api_url"), clerk.DefaultAPIURL)
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
	sc.WebhookSecrets = wh.strings()
	if n.stripe != "" && len(sc.WebhookSecrets) == 0 && !wh.bad {
		_, empty := wh.values()
		v := configValue{key: wh.key, line: wh.line, vars: empty, set: wh.set}
		p.require(v, n.stripe, "the endpoint's signing secret (whsec_…), or a list of them while rotating")
	}
	sc.APIURL = p.serviceURL(s.str("api_url"), stripe.DefaultAPIURL)
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

func (p *configParser) store(s *configSection) proxy.StoreConfig {
	sc := proxy.StoreConfig{Path: s.str("path").s, CacheSize: p.integer(s.str("cache_size"), DefaultCacheSize, 1, 1<<24)}
	if sc.Path == "" {
		sc.Path = DefaultStorePath
	}
	return sc
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
		if !strings.HasPrefix(v.s, "user_") {
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
		if !slices.ContainsFunc(cfg.Plans, func(pl proxy.Plan) bool { return pl.UnlocksRoute(r.ID) }) {
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

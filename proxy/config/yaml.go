package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/proxy"
)

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
		p.yamlError(data, err)
		return nil, false
	}
	var extra yaml.Node
	if err := p.decode(dec, &extra); !errors.Is(err, io.EOF) {
		if err != nil {
			p.yamlError(data, err)
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
	if inlineComment.MatchString(s) && !freeTextKey(key) {
		p.inlineCommentError(n, key)
		v.bad = true
		return v
	}
	v.s, v.vars = strings.TrimSpace(s), vars
	return v
}

// inlineComment finds a " # comment" in a value. YAML drops such comments
// from plain values, but docker's --env-file keeps everything after "=", so
// STRIPE_SECRET_KEY=sk_live_x # prod expands to the key and the comment.
var inlineComment = regexp.MustCompile(`[ \t]#`)

// freeTextKey reports whether key holds free text or a file path, where
// " #" may be meant; every other value is a key, secret, URL, ID, address or
// setting in which it cannot be.
func freeTextKey(key string) bool {
	switch key {
	case "pages.product_name", "pages.templates_dir", "store.path":
		return true
	}
	if !strings.HasPrefix(key, "plans.") {
		return false
	}
	return strings.HasSuffix(key, ".name") || strings.HasSuffix(key, ".description") || strings.HasSuffix(key, ".highlight") ||
		strings.Contains(key, ".features[")
}

// inlineCommentError reports a value holding a " # comment", naming the
// variable it came from. The value itself is not shown: it may be a secret.
func (p *configParser) inlineCommentError(n *yaml.Node, key string) {
	for _, m := range envRefPattern.FindAllStringSubmatch(n.Value, -1) {
		if inlineComment.MatchString(p.getenv(m[1])) {
			p.errorf(n.Line, key, `the value of ${%s} holds an inline comment (" #…"); docker's --env-file keeps everything after "=", comments too: remove the inline comment from the env file`, m[1])
			return
		}
	}
	p.errorf(n.Line, key, `holds an inline comment (" #…") inside the quotes; remove it, or move it after the closing quote`)
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
		it := p.scalar(n, key, n.Line)
		l.items, l.bad = []configValue{it}, it.bad
	case n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			it := p.scalar(item, fmt.Sprintf("%s[%d]", key, i), n.Line)
			// An item already reported must not also make the list
			// "missing or empty".
			l.bad = l.bad || it.bad
			l.items = append(l.items, it)
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
	u, err := url.Parse(s)
	if err == nil {
		if u.User != nil {
			return strconv.Quote(u.Redacted())
		}
		return strconv.Quote(s)
	}
	// Unparsable: hide whatever could be userinfo, everything between the
	// scheme and the last "@" (red team, issue 16).
	if i, j := strings.Index(s, "://"), strings.LastIndex(s, "@"); i >= 0 && j > i {
		return strconv.Quote(s[:i+3] + "xxxxx" + s[j:])
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

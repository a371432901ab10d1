package proxy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxRouteIDLen is the longest route ID a rule, a plan or a {route} capture
// may carry.
const MaxRouteIDLen = 128

// ValidRouteID reports whether id is a route ID: 1 to 128 URL-unreserved
// characters (letters, digits, ".", "_", "~", "-"), because IDs travel in
// query strings (/upgrade?route=…), in X-Tollgate-Route and in page markup.
// The config and the gate both ask this one function.
func ValidRouteID(id string) bool {
	if id == "" || len(id) > MaxRouteIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return false
		}
	}
	return true
}

// CanonicalPath normalises a request path. escapedPath is r.URL.EscapedPath().
// It returns the canonical decoded path (what rules match and what the
// upstream gets), its escaped form, and whether the request's path was already
// canonical (if not, the gate answers 308 to the escaped canonical form).
//
// The path is percent-decoded exactly once (an invalid escape keeps its "%"
// literally), so "%2F" splits a segment like "/" does and "%252e" stays the
// literal "%2e"; then empty and "." segments are dropped and ".." removes the
// previous segment, never climbing above the root. A trailing slash survives.
//
// The escaped form escapes everything outside RFC 3986's pchar set, so "%",
// "\", "?", "#", control characters and non-ASCII bytes are always escaped;
// unlike net/url's EscapedPath it leaves the sub-delimiters !'()* alone, which
// browsers send unescaped: "/wiki/Go_(language)" is canonical, not redirected.
// It is a valid URL.RawPath for URL.Path == decoded. Because empty segments
// are gone, neither form can start with "//", so the escaped form is always a
// same-origin Location.
func CanonicalPath(escapedPath string) (decoded, escaped string, canonical bool) {
	if isPlainCanonical(escapedPath) {
		return escapedPath, escapedPath, true
	}
	decoded = cleanDecodedPath(unescapeOnce(escapedPath))
	escaped = escapePath(decoded)
	return decoded, escaped, escaped == escapedPath
}

// isPlainCanonical is the allocation-free fast path for the common request:
// a path of plain characters that needs no decoding and no cleaning.
func isPlainCanonical(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if !isPathByte(p[i]) {
				return false
			}
			continue
		}
		// p[segStart:i] is one segment; only the last may be empty (a
		// trailing slash), and "/" alone is the root.
		switch seg := p[segStart:i]; seg {
		case ".", "..":
			return false
		case "":
			if i != len(p) {
				return false
			}
		}
		segStart = i + 1
	}
	return true
}

// isPathByte reports whether c may appear unescaped in a canonical path
// segment: RFC 3986 unreserved and sub-delims, ":" and "@".
func isPathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@':
		return true
	}
	return false
}

// unescapeOnce decodes %XX escapes once. A "%" that does not start a valid
// escape is kept as a literal "%": it is re-escaped as "%25", which makes the
// request non-canonical rather than an error.
func unescapeOnce(s string) string { return decodePercent(s, false) }

// decodePercent decodes s's %XX escapes once, and with aspNet also
// HttpUtility.UrlDecode's "%uXXXX" (a surrogate pair as the one letter it
// makes, a lone surrogate as U+FFFD) and "+" as a space (unescapeWithU).
func decodePercent(s string, aspNet bool) string {
	if !strings.Contains(s, "%") && !(aspNet && strings.Contains(s, "+")) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if aspNet {
			if r, n := percentU(s[i:]); n > 0 {
				if utf16.IsSurrogate(r) {
					if r2, n2 := percentU(s[i+n:]); n2 > 0 {
						if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
							r, n = pair, n+n2
						}
					}
				}
				b.WriteRune(r)
				i += n - 1
				continue
			}
			if s[i] == '+' {
				b.WriteByte(' ')
				continue
			}
		}
		if s[i] == '%' && i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]) {
			b.WriteByte(unhexDigit(s[i+1])<<4 | unhexDigit(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// percentU reads a "%uXXXX" escape at the start of s: the code unit and
// the escape's length, or 0 when s does not start with one.
func percentU(s string) (rune, int) {
	if len(s) < 6 || s[0] != '%' || s[1] != 'u' && s[1] != 'U' {
		return 0, 0
	}
	var r rune
	for _, c := range []byte(s[2:6]) {
		if !isHexDigit(c) {
			return 0, 0
		}
		r = r<<4 | rune(unhexDigit(c))
	}
	return r, 6
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhexDigit(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// cleanDecodedPath resolves dot segments and collapses slashes in a decoded
// path, keeping one trailing slash when it had one (as net/http's ServeMux
// does).
func cleanDecodedPath(p string) string {
	segs := make([]string, 0, strings.Count(p, "/")+1)
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, seg)
		}
	}
	if len(segs) == 0 {
		return "/"
	}
	out := "/" + strings.Join(segs, "/")
	if strings.HasSuffix(p, "/") {
		out += "/"
	}
	return out
}

// escapePath escapes every byte of a decoded path outside pchar and "/".
func escapePath(p string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] != '/' && !isPathByte(p[i]) {
			n++
		}
	}
	if n == 0 {
		return p
	}
	b := make([]byte, 0, len(p)+2*n)
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '/' || isPathByte(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

// pathPattern is a compiled route path: literal segments (compared without regard
// to case), at most one {route} capture, and an optional final "/*".
type pathPattern struct {
	segs     []string // literal segments; segs[capture] is "{route}"
	capture  int      // index of the {route} segment, or -1
	wildcard bool     // ends in "/*": zero or more further segments
}

// parsePattern compiles a routes[].path. Its errors say what would be valid.
func parsePattern(p string) (*pathPattern, error) {
	switch {
	case p == "":
		return nil, errors.New("empty; want a path pattern such as /settings/* or /routes/{route}/*")
	case p[0] != '/':
		return nil, fmt.Errorf("%q must start with \"/\"", p)
	case strings.ContainsAny(p, "?#"):
		return nil, fmt.Errorf("%q: a pattern matches the path only; drop the query or fragment", p)
	case strings.Contains(p, "%"):
		return nil, fmt.Errorf("%q: write the path decoded, without %%-escapes (patterns match the decoded path)", p)
	case strings.ContainsFunc(p, IsControlRune):
		return nil, fmt.Errorf("%q contains a control character", p)
	}
	pt := &pathPattern{capture: -1}
	// A trailing slash is ignored in requests, so it is in patterns too.
	body := strings.TrimSuffix(p[1:], "/")
	if body == "" {
		return pt, nil
	}
	segs := strings.Split(body, "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		switch {
		case seg == "":
			return nil, fmt.Errorf("%q has an empty segment (\"//\"), which never matches a canonical path", p)
		case seg == "." || seg == "..":
			return nil, fmt.Errorf("%q has a %q segment, which never matches a canonical path", p, seg)
		case seg == "*" && last:
			pt.wildcard = true
		case strings.Contains(seg, "*"):
			return nil, fmt.Errorf("%q: \"*\" is allowed only as the whole last segment, as in /docs/* or /*", p)
		case seg == "{route}":
			if pt.capture >= 0 {
				return nil, fmt.Errorf("%q: {route} may appear only once", p)
			}
			pt.capture = i
			pt.segs = append(pt.segs, seg)
		case strings.ContainsAny(seg, "{}"):
			return nil, fmt.Errorf("%q: the only placeholder is {route}, as a whole segment", p)
		case mayReadDifferently(seg):
			// Every request such a literal matches reads differently under
			// some upstream's reading (judge.go), so each would be refused.
			return nil, fmt.Errorf("%q: segment %q is read differently by some upstreams (%q starts Tomcat's path parameters, %q is IIS's separator, %q is a space to ASP.NET, and IIS drops a segment's trailing dots and spaces), so requests to it would be refused; route the app without it", p, seg, ";", `\`, "+")
		default:
			pt.segs = append(pt.segs, seg)
		}
	}
	return pt, nil
}

func IsControlRune(r rune) bool { return r < 0x20 || r == 0x7f }

// caseMode is how a literal segment is compared with a request's: the ways
// upstreams read letter case.
type caseMode uint8

const (
	// foldUnicode ignores case as strings.EqualFold does, the widest any
	// upstream reads (IIS upper-cases with the Windows table, so "ſ" is "s").
	foldUnicode caseMode = iota
	// foldASCII ignores the case of ASCII letters only.
	foldASCII
	// exactCase compares bytes, as Go's ServeMux, Express, Flask, Django and
	// Rails route.
	exactCase
	// foldUpper compares upper-cased forms, as Windows' file names do
	// (dotless "ı" is "I" there, which simple folding leaves apart).
	foldUpper
	// foldLower compares lower-cased forms, as an upstream that lower-cases
	// paths does (.NET, Java: dotted "İ" is "i" there).
	foldLower
	// foldUpperLower compares letter by letter as Java's
	// String.equalsIgnoreCase does (Spring's AntPathMatcher with
	// setCaseSensitive(false)): two letters are equal when their upper-case
	// forms are, or the lower-case forms of those, so one segment may mix
	// "İ" (lower: i) with "ı" (upper: I), or "ſ" (upper: S) with "K" (the
	// Kelvin sign, lower: k), which no whole-string reading above joins
	// (red team, issue 15). The same as comparing lower(upper(r)) per rune.
	foldUpperLower
	// foldFullUpper compares full upper-case forms (Unicode's
	// SpecialCasing: "ß" is "SS", "ﬁ" is "FI"), as Java's
	// String.toUpperCase, JavaScript's toUpperCase and Python's upper() and
	// casefold() read them; Go's and .NET's simple mapping leave those
	// letters alone.
	foldFullUpper
)

// caseModes are every caseMode but foldUnicode, which decides.
var caseModes = []caseMode{foldASCII, exactCase, foldUpper, foldLower, foldUpperLower, foldFullUpper}

// upperThenLower is Java's equalsIgnoreCase per letter (foldUpperLower).
func upperThenLower(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }

// fullUpperSpecial are the unconditional upper-case mappings of Unicode's
// SpecialCasing.txt that turn one letter into several: the ones that give
// ASCII letters a rule's literal may hold, and the rest of the Latin block.
// The capital sharp s "ẞ" upper-cases to itself, but full case folding
// (Python's casefold) reads it as "ss", as it reads "ß": it is read as "SS"
// here too, so that this reading also stands for casefold.
var fullUpperSpecial = map[rune]string{
	'ß': "SS", 'ẞ': "SS", 'ﬀ': "FF", 'ﬁ': "FI", 'ﬂ': "FL", 'ﬃ': "FFI", 'ﬄ': "FFL", 'ﬅ': "ST", 'ﬆ': "ST",
	'ŉ': "ʼN", 'ǰ': "J\u030C", 'ẖ': "H\u0331", 'ẗ': "T\u0308", 'ẘ': "W\u030A", 'ẙ': "Y\u030A", 'ẚ': "Aʾ",
}

// fullUpperEqual reports whether a and b have the same full upper-case
// form (foldFullUpper), making neither unless one holds a letter of
// fullUpperSpecial.
func fullUpperEqual(a, b string) bool {
	if !hasFullUpperSpecial(a) && !hasFullUpperSpecial(b) {
		return mappedEqual(a, b, unicode.ToUpper)
	}
	return fullUpper(a) == fullUpper(b)
}

func hasFullUpperSpecial(s string) bool {
	for i, r := range s {
		if s[i] < utf8.RuneSelf {
			continue
		}
		if _, ok := fullUpperSpecial[r]; ok {
			return true
		}
	}
	return false
}

// fullUpper is s's full upper-case form.
func fullUpper(s string) string {
	var b strings.Builder
	for _, r := range s {
		if u, ok := fullUpperSpecial[r]; ok {
			b.WriteString(u)
		} else {
			b.WriteRune(unicode.ToUpper(r))
		}
	}
	return b.String()
}

// match reports whether the canonical path p matches, and the {route} capture.
func (pt *pathPattern) match(p string, mode caseMode) (capture string, ok bool) {
	p = strings.TrimPrefix(p, "/")
	p = strings.TrimSuffix(p, "/")
	rest, more := p, p != ""
	for i, lit := range pt.segs {
		if !more {
			return "", false
		}
		seg, tail, found := strings.Cut(rest, "/")
		rest, more = tail, found
		if i == pt.capture {
			if seg == "" {
				return "", false
			}
			capture = seg
			continue
		}
		if !segmentEqual(lit, seg, mode) {
			return "", false
		}
	}
	if more && !pt.wildcard {
		return "", false
	}
	return capture, true
}

// segmentEqual compares a pattern literal with a request segment as mode
// says. Invalid UTF-8 in the request never matches: EqualFold would read it
// as U+FFFD.
func segmentEqual(lit, seg string, mode caseMode) bool {
	switch mode {
	case exactCase:
		return lit == seg
	case foldASCII:
		return len(lit) == len(seg) && asciiCase(lit, 'A', 'Z', 'a'-'A') == asciiCase(seg, 'A', 'Z', 'a'-'A')
	case foldUpper:
		return mappedEqual(lit, seg, unicode.ToUpper) && utf8.ValidString(seg)
	case foldLower:
		return mappedEqual(lit, seg, unicode.ToLower) && utf8.ValidString(seg)
	case foldUpperLower:
		return mappedEqual(lit, seg, upperThenLower) && utf8.ValidString(seg)
	case foldFullUpper:
		return utf8.ValidString(seg) && fullUpperEqual(lit, seg)
	}
	return strings.EqualFold(lit, seg) && utf8.ValidString(seg)
}

// mappedEqual reports whether strings.Map(m, a) == strings.Map(m, b),
// without making either: rune by rune, an invalid byte read as
// utf8.RuneError as strings.Map reads it. (strings.ToUpper and ToLower are
// strings.Map with unicode.ToUpper and ToLower.)
func mappedEqual(a, b string, m func(rune) rune) bool {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb && m(ra) != m(rb) {
			return false
		}
		a, b = a[na:], b[nb:]
	}
	return a == "" && b == ""
}

// segCovers reports whether pattern segment a matches every segment b does.
func (pt *pathPattern) segCovers(i int, b *pathPattern, j int) bool {
	if i == pt.capture {
		return true // any non-empty segment, and b's segments are never empty
	}
	return j != b.capture && strings.EqualFold(pt.segs[i], b.segs[j])
}

// segOverlaps reports whether some segment matches both a's i-th and b's j-th.
func (pt *pathPattern) segOverlaps(i int, b *pathPattern, j int) bool {
	return i == pt.capture || j == b.capture || strings.EqualFold(pt.segs[i], b.segs[j])
}

// covers reports whether pt matches every path that b matches.
func (pt *pathPattern) covers(b *pathPattern) bool {
	n, m := len(pt.segs), len(b.segs)
	if pt.wildcard {
		if m < n {
			return false
		}
	} else if b.wildcard || m != n {
		return false
	}
	for i := range n {
		if !pt.segCovers(i, b, i) {
			return false
		}
	}
	return true
}

// overlaps reports whether some path matches both pt and b.
func (pt *pathPattern) overlaps(b *pathPattern) bool {
	n, m := len(pt.segs), len(b.segs)
	switch {
	case n < m && !pt.wildcard, m < n && !b.wildcard:
		return false
	}
	for i := range min(n, m) {
		if !pt.segOverlaps(i, b, i) {
			return false
		}
	}
	return true
}

// CanonicalMethod upper-cases an HTTP method and checks it is a token
// (RFC 9110 §5.6.2).
func CanonicalMethod(m string) (string, error) {
	if m == "" {
		return "", errors.New("empty; want an HTTP method such as GET or POST")
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return "", fmt.Errorf("%q is not an HTTP method; want a token such as GET, POST or DELETE", m)
		}
	}
	return strings.ToUpper(m), nil
}

// NormalizeMethods upper-cases and de-duplicates methods. HEAD is matched as
// GET, so it may be listed only next to GET (and is then dropped); a rule for
// HEAD alone could never match. The error names the offending position.
func NormalizeMethods(methods []string) (out []string, badIndex int, err error) {
	hasGet := false
	for _, m := range methods {
		if strings.EqualFold(m, "GET") {
			hasGet = true
		}
	}
	for i, m := range methods {
		cm, err := CanonicalMethod(m)
		if err != nil {
			return nil, i, err
		}
		if cm == "HEAD" {
			if !hasGet {
				return nil, i, errors.New("HEAD is matched as GET (HEAD requests follow GET's rule); list GET instead")
			}
			continue
		}
		if !slices.Contains(out, cm) {
			out = append(out, cm)
		}
	}
	return out, -1, nil
}

// NormalizeRuleHost checks a routes[].host: a lower-cased host name or IP
// address, without port.
func NormalizeRuleHost(h string) (string, error) {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1] // an IPv6 literal as url.URL.Hostname gives it
	}
	if h == "" {
		return "", errors.New("empty; want a host name such as app.example.com")
	}
	if strings.ContainsAny(h, ":/") && !isIPv6Literal(h) {
		return "", fmt.Errorf("%q: want a host name without scheme, port or path, such as app.example.com", h)
	}
	for _, r := range h {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(`"#%<>?@[\]^{|}`+"`", r) {
			return "", fmt.Errorf("%q is not a host name; want e.g. app.example.com", h)
		}
	}
	return h, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func isIPv6Literal(h string) bool {
	return strings.Count(h, ":") >= 2 && strings.Trim(h, "0123456789abcdef:.") == ""
}

// RequestHost reduces a request's Host to what rules compare: no port, lower
// case, no trailing dot (which DNS ignores, so it must not dodge a rule).
func RequestHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		h = h[:i]
	}
	return asciiCase(strings.TrimSuffix(h, "."), 'A', 'Z', 'a'-'A')
}

// requestMethod is the method rules compare: upper case, HEAD as GET.
// Methods and host names are ASCII tokens, so only ASCII letters change case:
// no Unicode folding can turn some other token into "POST".
func requestMethod(m string) string {
	m = asciiCase(m, 'a', 'z', 'A'-'a')
	if m == "HEAD" || m == "" {
		return "GET"
	}
	return m
}

// asciiCase shifts the bytes in [lo, hi] by delta, allocating only when
// there is one.
func asciiCase(s string, lo, hi byte, delta int) string {
	for i := 0; i < len(s); i++ {
		if lo <= s[i] && s[i] <= hi {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if lo <= b[j] && b[j] <= hi {
					b[j] = byte(int(b[j]) + delta)
				}
			}
			return string(b)
		}
	}
	return s
}

// Match returns the first rule matching the request, or default_access.
// method is the request method (HEAD counts as GET, case is ignored), host the
// request's Host (port ignored) and canonicalPath the decoded path from
// CanonicalPath: matching a path that was not canonicalised is a bypass.
//
// Literal segments are compared without regard to case (Unicode simple
// folding); Judge also compares them as case-sensitive upstreams would.
func (rs *RuleSet) Match(method, host, canonicalPath string) RouteMatch {
	return rs.match(method, host, canonicalPath, foldUnicode)
}

func (rs *RuleSet) match(method, host, canonicalPath string, mode caseMode) RouteMatch {
	if rs == nil {
		return RouteMatch{Access: AccessPaid}
	}
	method = requestMethod(method)
	host = RequestHost(host)
	for _, r := range rs.Rules {
		if r.Host != "" && r.Host != host {
			continue
		}
		if len(r.Methods) > 0 && !slices.Contains(r.Methods, method) {
			continue
		}
		pt := r.pat
		if pt == nil {
			var err error
			if pt, err = parsePattern(r.Path); err != nil {
				continue
			}
		}
		capture, ok := pt.match(canonicalPath, mode)
		if !ok {
			continue
		}
		id := r.ID
		if id == "" {
			id = capture
		}
		return RouteMatch{Rule: r, Access: r.Access, RouteID: id}
	}
	return RouteMatch{Access: rs.defaultAccess()}
}

func (rs *RuleSet) defaultAccess() Access {
	if rs.Default == "" {
		return AccessPaid
	}
	return rs.Default
}

// CompileRules checks rules and returns them, copied, normalised (lower-case
// host, upper-case methods) and compiled, as a RuleSet whose Default is def
// ("" means paid). Each rule's Index is set to its position. The error joins
// one *ConfigError per problem, keyed "routes[i].field" with the rule's Line;
// the RuleSet is returned even then, holding the rules that compiled.
func CompileRules(def Access, rules []*Rule) (*RuleSet, error) {
	rs, errs := compileRules(def, rules)
	return rs, errors.Join(errs...)
}

// CheckPathPattern checks a routes[].path as CompileRules will, and
// reports whether it captures the route ID with {route}.
func CheckPathPattern(p string) (capturesRoute bool, err error) {
	pt, err := parsePattern(p)
	if err != nil {
		return false, err
	}
	return pt.capture >= 0, nil
}

// Compiled reports whether the rule went through CompileRules.
func (r *Rule) Compiled() bool { return r.pat != nil }

// CapturesRoute reports whether the rule's path captures the route ID.
func (r *Rule) CapturesRoute() bool { return r.pat != nil && r.pat.capture >= 0 }

func compileRules(def Access, rules []*Rule) (*RuleSet, []error) {
	var errs []error
	fail := func(r *Rule, i int, field string, err error) {
		errs = append(errs, &ConfigError{Line: r.Line, Key: fmt.Sprintf("routes[%d].%s", i, field), Msg: err.Error()})
	}
	if def == "" {
		def = AccessPaid
	}
	if !def.Valid() {
		errs = append(errs, &ConfigError{Key: "default_access", Msg: InvalidAccess(def)})
	}
	rs := &RuleSet{Default: def, Rules: make([]*Rule, 0, len(rules))}
	for i, in := range rules {
		r := *in
		r.Index = i
		pt, err := parsePattern(r.Path)
		if err != nil {
			fail(&r, i, "path", err)
		}
		r.pat = pt
		if pt != nil {
			for _, lit := range pt.segs {
				upper, nonASCII := letterKinds(lit)
				rs.caseSensitiveLiterals = rs.caseSensitiveLiterals || upper || nonASCII
				rs.nonASCIILiterals = rs.nonASCIILiterals || nonASCII
			}
		}
		if pt != nil && pt.capture >= 0 && r.ID != "" {
			fail(&r, i, "id", fmt.Errorf("%q: the path captures the route ID with {route}; remove one of the two", r.ID))
		}
		if r.ID != "" && !ValidRouteID(r.ID) {
			fail(&r, i, "id", fmt.Errorf("%q: want letters, digits, \".\", \"_\", \"~\" or \"-\" (at most 128)", r.ID))
		}
		if r.Host != "" {
			if r.Host, err = NormalizeRuleHost(r.Host); err != nil {
				fail(&r, i, "host", err)
			}
		}
		if len(r.Methods) > 0 {
			ms, bad, err := NormalizeMethods(r.Methods)
			if err != nil {
				fail(&r, i, fmt.Sprintf("methods[%d]", bad), err)
			}
			r.Methods = ms
		} else {
			r.Methods = nil
		}
		if !r.Access.Valid() {
			fail(&r, i, "access", errors.New(InvalidAccess(r.Access)))
		}
		rs.Rules = append(rs.Rules, &r)
	}
	return rs, errs
}

func InvalidAccess(a Access) string {
	if a == "" {
		return "missing; want one of public, signed_in, paid, deny"
	}
	return fmt.Sprintf("%q is not valid; want one of public, signed_in, paid, deny", string(a))
}

// accessRank orders access levels from weakest to strongest, so that a
// fall-through from a stronger rule to a weaker one can be spotted.
func accessRank(a Access) int {
	switch a {
	case AccessPublic:
		return 0
	case AccessSignedIn:
		return 1
	case AccessPaid:
		return 2
	}
	return 3 // deny, and anything unknown: fail closed
}

package proxy

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestCanonicalPath(t *testing.T) {
	type result struct {
		Decoded, Escaped string
		Canonical        bool
	}
	tests := []struct {
		name, in string
		want     result
	}{
		{"root", "/", result{"/", "/", true}},
		{"empty path becomes the root", "", result{"/", "/", false}},
		{"plain path", "/a/b", result{"/a/b", "/a/b", true}},
		{"trailing slash is kept", "/a/b/", result{"/a/b/", "/a/b/", true}},
		{"double slash collapses", "/a//b", result{"/a/b", "/a/b", false}},
		{"leading double slash collapses", "//admin", result{"/admin", "/admin", false}},
		{"many slashes collapse, trailing one kept", "///a///b///", result{"/a/b/", "/a/b/", false}},
		{"dot-dot removes a segment", "/a/../b", result{"/b", "/b", false}},
		{"dot-dot never climbs above the root", "/../../etc/passwd", result{"/etc/passwd", "/etc/passwd", false}},
		{"dot segments go", "/a/./b/.", result{"/a/b", "/a/b", false}},
		{"dot-dot at the end", "/a/b/..", result{"/a", "/a", false}},
		{"dot then slash keeps the slash", "/a/b/./", result{"/a/b/", "/a/b/", false}},
		{"three dots are a name", "/.../x", result{"/.../x", "/.../x", true}},
		{"dot files are names", "/.well-known/x", result{"/.well-known/x", "/.well-known/x", true}},
		{"encoded dot-dot is a dot-dot", "/%2e%2e/b", result{"/b", "/b", false}},
		{"encoded dot-dot in any case", "/public/%2E%2e/admin", result{"/admin", "/admin", false}},
		{"encoded dot", "/a/%2e", result{"/a", "/a", false}},
		{"encoded slash splits the segment", "/a%2Fb", result{"/a/b", "/a/b", false}},
		{"encoded slashes and dots", "/public%2F..%2Fadmin", result{"/admin", "/admin", false}},
		{"encoded double slash never starts the path", "/%2F%2Fevil.test", result{"/evil.test", "/evil.test", false}},
		{"encoded backslash stays escaped", "/%5Cevil.test", result{`/\evil.test`, "/%5Cevil.test", true}},
		{"raw backslash gets escaped", `/\evil.test`, result{`/\evil.test`, "/%5Cevil.test", false}},
		{"encoded backslash after a slash", "/%2F%5Cevil.test", result{`/\evil.test`, "/%5Cevil.test", false}},
		{"double encoding is decoded once", "/%252e%252e/x", result{"/%2e%2e/x", "/%252e%252e/x", true}},
		{"NUL stays escaped", "/a%00b", result{"/a\x00b", "/a%00b", true}},
		{"raw control characters get escaped", "/a\nb\x7f", result{"/a\nb\x7f", "/a%0Ab%7F", false}},
		{"invalid escape keeps a literal percent", "/%zz", result{"/%zz", "/%25zz", false}},
		{"truncated escape keeps a literal percent", "/100%", result{"/100%", "/100%25", false}},
		{"truncated escape of one digit", "/a%2", result{"/a%2", "/a%252", false}},
		{"UTF-8 stays escaped", "/caf%C3%A9", result{"/café", "/caf%C3%A9", true}},
		{"lower-case hex is not canonical", "/caf%c3%a9", result{"/café", "/caf%C3%A9", false}},
		{"needlessly escaped letters are decoded", "/adm%69n", result{"/admin", "/admin", false}},
		{"sub-delimiters need no escaping", "/wiki/Go_(language)!*'", result{"/wiki/Go_(language)!*'", "/wiki/Go_(language)!*'", true}},
		{"escaped sub-delimiters are decoded", "/a%28b%29", result{"/a(b)", "/a(b)", false}},
		{"reserved path characters stay", "/a:b@c;d=e,f+g&h$", result{"/a:b@c;d=e,f+g&h$", "/a:b@c;d=e,f+g&h$", true}},
		{"space is escaped", "/a b", result{"/a b", "/a%20b", false}},
		{"escaped question mark stays escaped", "/a%3Fb", result{"/a?b", "/a%3Fb", true}},
		{"escaped hash stays escaped", "/a%23b", result{"/a#b", "/a%23b", true}},
		{"relative path gets its leading slash", "a/b", result{"/a/b", "/a/b", false}},
		{"asterisk form", "*", result{"/*", "/*", false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got result
			got.Decoded, got.Escaped, got.Canonical = CanonicalPath(tt.in)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("CanonicalPath(%q) (-got +want):\n%s", tt.in, diff)
			}
		})
	}
}

// checkCanonical asserts the properties every CanonicalPath result has.
func checkCanonical(t *testing.T, in, decoded, escaped string, canonical bool) {
	t.Helper()
	if !strings.HasPrefix(decoded, "/") || strings.HasPrefix(decoded, "//") {
		t.Fatalf("CanonicalPath(%q): decoded %q does not start with a single slash", in, decoded)
	}
	if !strings.HasPrefix(escaped, "/") || strings.HasPrefix(escaped, "//") || strings.HasPrefix(escaped, `/\`) {
		t.Fatalf("CanonicalPath(%q): escaped %q is not a same-origin path", in, escaped)
	}
	for _, seg := range strings.Split(decoded, "/") {
		if seg == "." || seg == ".." {
			t.Fatalf("CanonicalPath(%q): decoded %q has a dot segment", in, decoded)
		}
	}
	if strings.Contains(decoded[1:], "//") {
		t.Fatalf("CanonicalPath(%q): decoded %q has an empty segment", in, decoded)
	}
	for i := 0; i < len(escaped); i++ {
		if c := escaped[i]; c != '/' && c != '%' && !isPathByte(c) {
			t.Fatalf("CanonicalPath(%q): escaped %q has unescaped %q", in, escaped, c)
		}
	}
	if canonical != (in == escaped) {
		t.Fatalf("CanonicalPath(%q): canonical = %v, but escaped is %q", in, canonical, escaped)
	}
	// Idempotent: the escaped form is canonical and decodes to the same path.
	d2, e2, c2 := CanonicalPath(escaped)
	if d2 != decoded || e2 != escaped || !c2 {
		t.Fatalf("CanonicalPath(%q) = %q, %q, %v; want %q, %q, true (from %q)", escaped, d2, e2, c2, decoded, escaped, in)
	}
	// The fast path agrees with the general one.
	if d3 := cleanDecodedPath(unescapeOnce(in)); d3 != decoded || escapePath(d3) != escaped {
		t.Fatalf("CanonicalPath(%q): fast path gave %q, %q; general path %q, %q", in, decoded, escaped, d3, escapePath(d3))
	}
	// net/url agrees on what the escaped form means, so the gate may hand
	// it on as RawPath.
	u := &url.URL{Path: decoded, RawPath: escaped}
	if u.EscapedPath() != escaped {
		t.Fatalf("CanonicalPath(%q): url.URL.EscapedPath() = %q, want %q", in, u.EscapedPath(), escaped)
	}
	if p, err := url.PathUnescape(escaped); err != nil || p != decoded {
		t.Fatalf("CanonicalPath(%q): url.PathUnescape(%q) = %q, %v; want %q", in, escaped, p, err, decoded)
	}
}

func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/", "", "//", "/a/../b", "/%2e%2e/b", "/a%2Fb", "/%5Cevil.test", `/\x`, "/%252e",
		"/%00", "/%zz", "/100%", "/a/b/", "/./", "/..%2F..", "/%2F/", "/a%20b", "/café", "/a?b", "/%ff%fe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		decoded, escaped, canonical := CanonicalPath(in)
		checkCanonical(t, in, decoded, escaped, canonical)
	})
}

// testRuleSet is the rule set of the matching tests and FuzzMatch.
func testRuleSet(tb testing.TB) *RuleSet {
	tb.Helper()
	rs, err := CompileRules(AccessPaid, []*Rule{
		{Path: "/", Access: AccessPublic},                                                       // 0
		{Path: "/assets/*", Access: AccessPublic},                                               // 1
		{Path: "/public/*", Access: AccessPublic},                                               // 2
		{Path: "/routes/{route}/*", Access: AccessPaid},                                         // 3
		{ID: "258AVO", Path: "/api/v1/*", Methods: []string{"GET", "POST"}, Access: AccessPaid}, // 4
		{Path: "/api/*", Access: AccessSignedIn},                                                // 5
		{Path: "/settings/*", Access: AccessSignedIn},                                           // 6
		{Path: "/admin/*", Access: AccessDeny},                                                  // 7
		{Host: "internal.example.com", Path: "/*", Access: AccessDeny},                          // 8
		{Path: "/exact", Access: AccessPublic},                                                  // 9
		{Path: "/docs/{route}", Access: AccessPublic},                                           // 10
	})
	if err != nil {
		tb.Fatal(err)
	}
	return rs
}

func TestRuleSet_Match(t *testing.T) {
	rs := testRuleSet(t)
	type result struct {
		Rule    int // -1: default_access
		Access  Access
		RouteID string
	}
	tests := []struct {
		name, method, host, path string
		want                     result
	}{
		{"root is public", "GET", "app.example.com", "/", result{0, AccessPublic, ""}},
		{"a rule without * matches exactly", "GET", "app.example.com", "/x", result{-1, AccessPaid, ""}},
		{"wildcard matches zero further segments", "GET", "app.example.com", "/assets", result{1, AccessPublic, ""}},
		{"wildcard matches a trailing slash", "GET", "app.example.com", "/assets/", result{1, AccessPublic, ""}},
		{"wildcard matches deeper segments", "GET", "app.example.com", "/assets/a/b.css", result{1, AccessPublic, ""}},
		{"literal segments ignore case", "GET", "app.example.com", "/ASSETS/x", result{1, AccessPublic, ""}},
		{"a segment prefix is not a match", "GET", "app.example.com", "/assetsx", result{-1, AccessPaid, ""}},
		{"capture becomes the route ID", "GET", "app.example.com", "/routes/415VNA/chart", result{3, AccessPaid, "415VNA"}},
		{"capture keeps its case", "GET", "app.example.com", "/ROUTES/415vna", result{3, AccessPaid, "415vna"}},
		{"capture needs a segment", "GET", "app.example.com", "/routes", result{-1, AccessPaid, ""}},
		{"capture needs a non-empty segment", "GET", "app.example.com", "/routes/", result{-1, AccessPaid, ""}},
		{"capture without wildcard takes one segment", "GET", "app.example.com", "/docs/intro", result{10, AccessPublic, "intro"}},
		{"capture without wildcard and more segments", "GET", "app.example.com", "/docs/intro/more", result{-1, AccessPaid, ""}},
		{"fixed id", "GET", "app.example.com", "/api/v1/x", result{4, AccessPaid, "258AVO"}},
		{"HEAD is matched as GET", "HEAD", "app.example.com", "/api/v1/x", result{4, AccessPaid, "258AVO"}},
		{"methods ignore case", "post", "app.example.com", "/api/v1/x", result{4, AccessPaid, "258AVO"}},
		{"empty method is GET", "", "app.example.com", "/api/v1/x", result{4, AccessPaid, "258AVO"}},
		{"other methods go on to later rules", "PUT", "app.example.com", "/api/v1/x", result{5, AccessSignedIn, ""}},
		{"wildcard rule", "GET", "app.example.com", "/settings", result{6, AccessSignedIn, ""}},
		{"deny", "GET", "app.example.com", "/admin/users", result{7, AccessDeny, ""}},
		{"host rule", "GET", "internal.example.com", "/x", result{8, AccessDeny, ""}},
		{"host ignores port and case", "GET", "INTERNAL.example.com:8443", "/x", result{8, AccessDeny, ""}},
		{"host ignores a trailing dot", "GET", "internal.example.com.", "/x", result{8, AccessDeny, ""}},
		{"other hosts skip the host rule", "GET", "[::1]:8080", "/x", result{-1, AccessPaid, ""}},
		{"trailing slash is ignored for exact rules", "GET", "app.example.com", "/exact/", result{9, AccessPublic, ""}},
		{"exact rule does not match deeper", "GET", "app.example.com", "/exact/more", result{-1, AccessPaid, ""}},
		{"invalid UTF-8 never equals a literal", "GET", "app.example.com", "/\xffssets/x", result{-1, AccessPaid, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := rs.Match(tt.method, tt.host, tt.path)
			got := result{-1, m.Access, m.RouteID}
			if m.Rule != nil {
				got.Rule = m.Rule.Index
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Match(%q, %q, %q) (-got +want):\n%s", tt.method, tt.host, tt.path, diff)
			}
		})
	}
}

func TestRuleSet_MatchWithoutCompiling(t *testing.T) {
	var nilSet *RuleSet
	if m := nilSet.Match("GET", "h", "/"); m.Access != AccessPaid || m.Rule != nil {
		t.Errorf("nil RuleSet: got %+v, want default paid", m)
	}
	if m := (&RuleSet{}).Match("GET", "h", "/"); m.Access != AccessPaid {
		t.Errorf("empty RuleSet: got %+v, want default paid", m)
	}
	hand := &RuleSet{Default: AccessDeny, Rules: []*Rule{
		{Path: "/a*", Access: AccessPublic}, // invalid: never matches
		{Path: "/r/{route}/*", Access: AccessPaid},
	}}
	if m := hand.Match("GET", "h", "/r/X1/y"); m.Access != AccessPaid || m.RouteID != "X1" {
		t.Errorf("hand-built rule: got %+v", m)
	}
	if m := hand.Match("GET", "h", "/a"); m.Access != AccessDeny {
		t.Errorf("invalid hand-built rule matched: %+v", m)
	}
}

func TestCompileRules(t *testing.T) {
	in := []*Rule{
		{Index: 7, Line: 3, Host: "App.Example.COM.", Path: "/a/*", Methods: []string{"get", "head", "Post", "GET"}, Access: AccessPaid},
	}
	rs, err := CompileRules("", in)
	if err != nil {
		t.Fatal(err)
	}
	want := &RuleSet{Default: AccessPaid, Rules: []*Rule{
		{Index: 0, Line: 3, Host: "app.example.com", Path: "/a/*", Methods: []string{"GET", "POST"}, Access: AccessPaid},
	}}
	if diff := cmp.Diff(rs, want, cmpopts.IgnoreUnexported(Rule{}, RuleSet{})); diff != "" {
		t.Errorf("compiled (-got +want):\n%s", diff)
	}
	if in[0].Host != "App.Example.COM." || in[0].Index != 7 {
		t.Errorf("CompileRules changed its input: %+v", in[0])
	}

	_, err = CompileRules("sometimes", []*Rule{
		{Line: 4, Path: "x", Access: "paied"},
		{Line: 5, Path: "/r/{route}", ID: "R1", Methods: []string{"HEAD"}, Access: AccessPaid},
		{Line: 6, Path: "/h", Host: "h:80", ID: "a b", Access: AccessPublic},
	})
	wantErrs := []string{
		`default_access: "sometimes" is not valid; want one of public, signed_in, paid, deny`,
		`line 4: routes[0].path: "x" must start with "/"`,
		`line 4: routes[0].access: "paied" is not valid; want one of public, signed_in, paid, deny`,
		`line 5: routes[1].id: "R1": the path captures the route ID with {route}; remove one of the two`,
		`line 5: routes[1].methods[0]: HEAD is matched as GET (HEAD requests follow GET's rule); list GET instead`,
		`line 6: routes[2].id: "a b": want letters, digits, ".", "_", "~" or "-" (at most 128)`,
		`line 6: routes[2].host: "h:80": want a host name without scheme, port or path, such as app.example.com`,
	}
	if diff := cmp.Diff(errorLines(err), wantErrs); diff != "" {
		t.Errorf("errors (-got +want):\n%s", diff)
	}
}

func TestRuleSet_Lint(t *testing.T) {
	r := func(path string, access Access, opts ...string) *Rule {
		rule := &Rule{Path: path, Access: access}
		for _, o := range opts {
			if h, ok := strings.CutPrefix(o, "host="); ok {
				rule.Host = h
			} else {
				rule.Methods = append(rule.Methods, o)
			}
		}
		return rule
	}
	shadowed := func(i, by int) string {
		return fmt.Sprintf("%d: never matches: routes[%d] (line %d) comes first", i, by, by+1)
	}
	tests := []struct {
		name  string
		def   Access
		rules []*Rule
		want  []string // "INDEX: message prefix"
	}{
		{"a repeated rule is shadowed", AccessPaid,
			[]*Rule{r("/a", AccessPublic), r("/a", AccessDeny)}, []string{shadowed(1, 0)}},
		{"a wildcard shadows deeper paths", AccessPaid,
			[]*Rule{r("/a/*", AccessPublic), r("/a/b/c", AccessDeny)}, []string{shadowed(1, 0)}},
		{"a wildcard shadows its own prefix", AccessPaid,
			[]*Rule{r("/a/*", AccessPublic), r("/a", AccessDeny), r("/a/*", AccessDeny)}, []string{shadowed(1, 0), shadowed(2, 0)}},
		{"an exact rule does not shadow a wildcard", AccessPaid,
			[]*Rule{r("/a", AccessPublic), r("/a/*", AccessDeny)}, nil},
		{"a capture shadows a literal", AccessPaid,
			[]*Rule{r("/{route}/x", AccessPaid), r("/foo/x", AccessPublic)}, []string{shadowed(1, 0)}},
		{"a literal does not shadow a capture", AccessPaid,
			[]*Rule{r("/foo/x", AccessPublic), r("/{route}/x", AccessPaid)}, nil},
		{"literals compare without case", AccessPaid,
			[]*Rule{r("/Docs/*", AccessPublic), r("/docs/a", AccessDeny)}, []string{shadowed(1, 0)}},
		{"a catch-all shadows everything after it", AccessPaid,
			[]*Rule{r("/*", AccessPublic), r("/", AccessDeny)}, []string{shadowed(1, 0)}},
		{"fewer methods do not shadow more", AccessPaid,
			[]*Rule{r("/a", AccessPaid, "GET"), r("/a", AccessPaid)}, nil},
		{"every method shadows some", AccessPaid,
			[]*Rule{r("/a", AccessPaid), r("/a", AccessPaid, "GET")}, []string{shadowed(1, 0)}},
		{"a superset of methods shadows", AccessPaid,
			[]*Rule{r("/a", AccessPaid, "GET", "POST"), r("/a", AccessPaid, "POST")}, []string{shadowed(1, 0)}},
		{"a host rule does not shadow every host", AccessPaid,
			[]*Rule{r("/a/*", AccessPublic, "host=a.example.com"), r("/a/*", AccessDeny)}, nil},
		{"every host shadows one host", AccessPaid,
			[]*Rule{r("/a", AccessPublic), r("/a", AccessDeny, "host=a.example.com")}, []string{shadowed(1, 0)}},
		{"other methods falling to a weaker rule", AccessPaid,
			[]*Rule{r("/api/*", AccessPaid, "GET", "POST"), r("/*", AccessPublic)},
			[]string{"0: methods GET, POST are paid, but other methods on these paths fall through to routes[1] (line 2), which is public"}},
		{"other methods falling to a stronger rule", AccessPublic,
			[]*Rule{r("/api/*", AccessPaid, "GET"), r("/api/*", AccessDeny)}, nil},
		{"one other method falling to a weaker rule", AccessPaid,
			[]*Rule{r("/api/*", AccessPaid, "GET"), r("/api/*", AccessPublic, "GET", "POST")},
			[]string{"0: method GET is paid, but POST on these paths fall through to routes[1] (line 2), which is public"}},
		{"the same methods again is a shadow, not a fall-through", AccessPaid,
			[]*Rule{r("/api/*", AccessPaid, "GET"), r("/api/*", AccessPublic, "GET")}, []string{shadowed(1, 0)}},
		{"a public method-filtered rule has nothing weaker", AccessPaid,
			[]*Rule{r("/a", AccessPublic, "GET"), r("/*", AccessPublic)}, nil},
		{"falling through to a weaker default", AccessSignedIn,
			[]*Rule{r("/a/*", AccessDeny, "DELETE")},
			[]string{"0: method DELETE is deny, but other methods on these paths fall through to default_access, which is signed_in"}},
		{"the paths under an exact rule falling to a weaker default", AccessPublic,
			[]*Rule{r("/reports", AccessPaid)},
			[]string{"0: is paid for /reports only; the paths under it fall through to default_access, which is public; write /reports/* to cover them too"}},
		{"the paths under an exact rule falling to a weaker rule", AccessPaid,
			[]*Rule{r("/", AccessPublic), r("/docs/{route}", AccessSignedIn), r("/*", AccessPublic)},
			[]string{"1: is signed_in for /docs/{route} only; the paths under it fall through to routes[2] (line 3), which is public"}},
		{"the paths under an exact rule covered by its wildcard", AccessPublic,
			[]*Rule{r("/reports", AccessPaid), r("/reports/*", AccessPaid)}, nil},
		{"the paths under an exact rule partly covered: the rest still fall", AccessPublic,
			[]*Rule{r("/reports", AccessPaid), r("/reports/public", AccessPublic)},
			[]string{"0: is paid for /reports only; some of the paths under it fall through to default_access, which is public"}},
		{"the paths under an exact rule covered by a capture", AccessPublic,
			[]*Rule{r("/reports", AccessPaid), r("/reports/{route}/*", AccessPaid)}, nil},
		{"the paths under an exact rule covered by a catch-all", AccessPublic,
			[]*Rule{r("/reports", AccessPaid), r("/*", AccessSignedIn)},
			[]string{"0: is paid for /reports only; the paths under it fall through to routes[1] (line 2), which is signed_in"}},
		{"the paths under an exact rule going somewhere stronger", AccessDeny,
			[]*Rule{r("/reports", AccessPaid)}, nil},
		{"falling through to an equal default", AccessPaid,
			[]*Rule{r("/a", AccessPaid, "GET")}, nil},
		{"a weaker rule over part of the paths", AccessPaid,
			[]*Rule{r("/api/*", AccessPaid, "GET"), r("/api/open/*", AccessPublic)},
			[]string{"0: method GET is paid, but other methods on some of these paths fall through to routes[1] (line 2), which is public"}},
		{"a stronger rule over part of the paths ends the search", AccessPaid,
			[]*Rule{r("/api/*", AccessPaid, "GET"), r("/api/x/*", AccessDeny), r("/*", AccessPublic)}, nil},
		{"a rule for another host is skipped", AccessPaid,
			[]*Rule{r("/api/*", AccessPaid, "GET", "host=a.example.com"), r("/*", AccessPublic, "host=b.example.com"), r("/*", AccessSignedIn)},
			[]string{"0: method GET is paid, but other methods on these paths fall through to routes[2] (line 3), which is signed_in"}},
		{"rules under internal_prefix never apply", AccessPaid,
			[]*Rule{r("/.tollgate/*", AccessPublic), r("/.TOLLGATE/x", AccessPublic), r("/.tollgate-not", AccessPublic)},
			[]string{"0: is under internal_prefix (/.tollgate): tollgate serves those paths itself", "1: is under internal_prefix"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, rule := range tt.rules {
				rule.Line = i + 1
			}
			rs, err := CompileRules(tt.def, tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range rs.Lint("/.tollgate") {
				got = append(got, fmt.Sprintf("%d: %s", w.Rule.Index, w.Msg))
			}
			if diff := cmp.Diff(matchExpectations(got, tt.want), tt.want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("warnings (-got +want):\n%s\nall: %q", diff, got)
			}
		})
	}
}

func TestRuleSet_PaidUnreachable(t *testing.T) {
	r := func(path string, access Access, methods ...string) *Rule {
		return &Rule{Path: path, Access: access, Methods: methods}
	}
	tests := []struct {
		name  string
		def   Access
		rules []*Rule
		want  string
	}{
		{"a public catch-all above every paid rule", AccessPaid,
			[]*Rule{r("/*", AccessPublic), r("/app/*", AccessPaid)},
			"routes[0] (line 1) is public and matches every request, so no request is ever paid; put paid rules above it, or narrow its path"},
		{"a public catch-all hides a paid default_access", AccessPaid,
			[]*Rule{r("/", AccessPublic), r("/*", AccessPublic)},
			"routes[1] (line 2) is public and matches every request, so no request is ever paid; put paid rules above it, or narrow its path"},
		{"a signed_in catch-all", AccessPublic,
			[]*Rule{r("/*", AccessSignedIn), r("/app", AccessPaid)},
			"routes[0] (line 1) is signed_in and matches every request, so no request is ever paid; put paid rules above it, or narrow its path"},
		{"every paid rule shadowed, without a catch-all", AccessPublic,
			[]*Rule{r("/app/*", AccessPublic), r("/app/x", AccessPaid)},
			"every paid rule comes after one that matches everything it does, and default_access is public, so no request is ever paid"},
		{"nothing paid at all", AccessSignedIn,
			[]*Rule{r("/docs/*", AccessPublic)},
			"no rule is paid and default_access is signed_in, so no request is ever paid"},
		{"a paid rule above the catch-all", AccessPaid,
			[]*Rule{r("/app/*", AccessPaid), r("/*", AccessPublic)}, ""},
		{"a paid catch-all", AccessPublic,
			[]*Rule{r("/*", AccessPaid)}, ""},
		{"a method-filtered public /* leaves other methods paid", AccessPaid,
			[]*Rule{r("/*", AccessPublic, "GET")}, ""},
		{"a paid default_access reached by some paths", AccessPaid,
			[]*Rule{r("/docs/*", AccessPublic)}, ""},
		{"no rules: default_access decides", AccessPaid, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, rule := range tt.rules {
				rule.Line = i + 1
			}
			rs, err := CompileRules(tt.def, tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(rs.PaidUnreachable(), tt.want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

func TestRuleSet_DefaultReachable(t *testing.T) {
	tests := []struct {
		rule *Rule
		want bool
	}{
		{&Rule{Path: "/*", Access: AccessPublic}, false},
		{&Rule{Path: "/*", Access: AccessPublic, Methods: []string{"GET"}}, true},
		{&Rule{Path: "/*", Access: AccessPublic, Host: "a.example.com"}, true},
		{&Rule{Path: "/a/*", Access: AccessPublic}, true},
		{&Rule{Path: "/", Access: AccessPublic}, true},
	}
	for _, tt := range tests {
		rs, err := CompileRules(AccessPaid, []*Rule{tt.rule})
		if err != nil {
			t.Fatal(err)
		}
		if got := rs.DefaultReachable(); got != tt.want {
			t.Errorf("%+v: DefaultReachable() = %v, want %v", tt.rule, got, tt.want)
		}
	}
}

// protectedPrefixes are the paths (by segments, lower case) under which
// testRuleSet must never give weaker access than min, whatever the spelling.
func protectedPrefixes() []struct {
	prefix string
	min    Access
} {
	return []struct {
		prefix string
		min    Access
	}{
		{"/admin", AccessDeny},
		{"/settings", AccessSignedIn},
		{"/api", AccessSignedIn},
		{"/routes", AccessPaid},
	}
}

func underPrefix(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// pathVariants spells the canonical escaped path p in ways that must
// canonicalise back to it (or, for case variants, match the same rule).
func pathVariants(p string) (same, caseOnly []string) {
	flip := func(s string) string { // ASCII letters, escapes' hex digits included
		b := []byte(s)
		for i, c := range b {
			if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
				b[i] = c ^ 0x20
			}
		}
		return string(b)
	}
	encodeAll := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if s[i] == '%' {
				b.WriteString(s[i : i+3])
				i += 2
				continue
			}
			fmt.Fprintf(&b, "%%%02x", s[i])
		}
		return b.String()
	}
	body := strings.TrimPrefix(p, "/")
	same = []string{
		"/" + strings.ReplaceAll(body, "/", "//"),
		"//" + body,
		"/./" + body,
		"/x/../" + body,
		"/x/%2e%2e/" + body,
		"/x%2F..%2F" + body,
		"/" + encodeAll(body),
		"/" + strings.ReplaceAll(body, "/", "/./"),
		"/" + strings.ReplaceAll(body, "/", "%2F"),
	}
	if !strings.HasSuffix(p, "/") {
		same = append(same, p+"/.", p+"/x/..", p+"/%2e")
	}
	caseOnly = []string{flip(p)}
	if d, _, _ := CanonicalPath(p); utf8.ValidString(d) {
		// Unicode case variants: each rune's next case in its fold orbit.
		folded := strings.Map(unicode.SimpleFold, d)
		caseOnly = append(caseOnly, escapePath(folded))
	}
	return same, caseOnly
}

func FuzzMatch(f *testing.F) {
	rs := testRuleSet(f)
	for _, s := range []string{"/", "//admin", "/ADMIN", "/adm%69n", "/public/../admin", "/admin/.", "/public/%2e%2e/admin",
		"/public%2F..%2Fadmin", "/assets/../settings", "/Settings", "/%2e/api/v1/x", "/routes/X/y", "/api/v1/", "/API/V1/x",
		"/public/%252e%252e/admin", "/%5Cadmin", "/admin%00", "/admin%2f", "/.%2e/admin", "/exact/.."} {
		for _, m := range []string{"GET", "POST", "PUT", "head"} {
			f.Add(m, s)
		}
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		decoded, escaped, _ := CanonicalPath(path)
		want := rs.Match(method, "app.example.com", decoded)
		key := func(m RouteMatch) string {
			idx := -1
			if m.Rule != nil {
				idx = m.Rule.Index
			}
			// A capture keeps its letters; compare it as the rules and plans
			// do, folded (ToUpper first, so "ſ" and "K" fold like EqualFold).
			return fmt.Sprintf("rule %d %s %s", idx, m.Access, strings.ToLower(strings.ToUpper(m.RouteID)))
		}
		same, caseOnly := pathVariants(escaped)
		for _, v := range same {
			d, _, _ := CanonicalPath(v)
			if d != decoded && strings.TrimSuffix(d, "/") != strings.TrimSuffix(decoded, "/") {
				t.Fatalf("variant %q of %q canonicalises to %q, want %q", v, escaped, d, decoded)
			}
			if got := rs.Match(method, "app.example.com", d); got != want {
				t.Fatalf("variant %q of %q matched %s, want %s", v, escaped, key(got), key(want))
			}
		}
		for _, v := range caseOnly {
			d, _, _ := CanonicalPath(v)
			if got := rs.Match(method, "APP.example.com:443", d); key(got) != key(want) {
				t.Fatalf("case variant %q of %q matched %s, want %s", v, escaped, key(got), key(want))
			}
		}
		for _, m := range []string{asciiCase(method, 'A', 'Z', 'a'-'A'), asciiCase(method, 'a', 'z', 'A'-'a')} {
			if got := rs.Match(m, "app.example.com", decoded); got != want {
				t.Fatalf("method %q on %q matched %s, want %s (method %q)", m, decoded, key(got), key(want), method)
			}
		}
		lower := strings.ToLower(decoded)
		for _, pp := range protectedPrefixes() {
			if underPrefix(lower, pp.prefix) && accessRank(want.Access) < accessRank(pp.min) {
				t.Fatalf("%s %q (from %q) resolves to %s, weaker than %s for %s", method, decoded, path, want.Access, pp.min, pp.prefix)
			}
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	rs := testRuleSet(b)
	b.ReportAllocs()
	for b.Loop() {
		rs.Match("GET", "app.example.com", "/settings/profile/edit")
	}
}

func BenchmarkCanonicalPath(b *testing.B) {
	for _, p := range []string{"/settings/profile/edit", "/a/../b%2Fc/./d"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				CanonicalPath(p)
			}
		})
	}
}

func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// matchExpectations pairs each got line with the expectation that is its
// prefix, so that cmp.Diff shows what is missing and what is extra.
func matchExpectations(got, want []string) []string {
	out := make([]string, 0, len(got))
	used := make([]bool, len(want))
	for _, g := range got {
		m := g
		for i, w := range want {
			if !used[i] && strings.HasPrefix(g, w) {
				used[i], m = true, w
				break
			}
		}
		out = append(out, m)
	}
	return out
}

// mappedEqual is strings.ToUpper(a) == strings.ToUpper(b) (and ToLower),
// without the copies, invalid UTF-8 and special cases included.
func TestMappedEqual(t *testing.T) {
	words := []string{"", "a", "A", "route", "ROUTE", "Route", "ß", "SS", "ſ", "s", "S", "K", "k", "\u212a", "İ", "i", "ı", "I",
		"\xff", "\xfe", "\uFFFD", "a\xffb", "A\uFFFDB", "straße", "STRASSE", "ǅ", "ǆ", "Ǆ", "é", "É", "e\u0301"}
	for _, a := range words {
		for _, b := range words {
			if got, want := mappedEqual(a, b, unicode.ToUpper), strings.ToUpper(a) == strings.ToUpper(b); got != want {
				t.Errorf("upper %q %q: %v, want %v", a, b, got, want)
			}
			if got, want := mappedEqual(a, b, unicode.ToLower), strings.ToLower(a) == strings.ToLower(b); got != want {
				t.Errorf("lower %q %q: %v, want %v", a, b, got, want)
			}
		}
	}
}

func FuzzMappedEqual(f *testing.F) {
	f.Add("route", "ROUTE")
	f.Add("\xff", "\uFFFD")
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := mappedEqual(a, b, unicode.ToUpper), strings.ToUpper(a) == strings.ToUpper(b); got != want {
			t.Errorf("upper %q %q: %v, want %v", a, b, got, want)
		}
		if got, want := mappedEqual(a, b, unicode.ToLower), strings.ToLower(a) == strings.ToLower(b); got != want {
			t.Errorf("lower %q %q: %v, want %v", a, b, got, want)
		}
	})
}

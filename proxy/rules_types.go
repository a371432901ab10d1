package proxy

// Rule is one compiled entry of routes:, in file order.
type Rule struct {
	Index   int      // position in routes:, from 0
	Line    int      // line in the config file, for warnings and logs
	Host    string   // host: optional, lower-case, exact (no port)
	Path    string   // path: the pattern as written, e.g. "/routes/{route}/*"
	Methods []string // methods: upper-case; empty means every method (HEAD counts as GET)
	ID      string   // id: fixed route ID (empty: none, or captured by {route})
	Access  Access   // access

	// pat is Path compiled by CompileRules. A Rule built by hand has none and
	// is compiled on every Match instead, so it still matches correctly.
	pat *pathPattern
}

// RuleSet is the compiled routes: list with its fallback. Build it with
// CompileRules (ParseConfig does) so that every rule is checked.
type RuleSet struct {
	Rules   []*Rule
	Default Access // default_access: what applies when no rule matches ("" means paid)
	// caseSensitiveLiterals: some literal segment holds an upper-case or
	// non-ASCII letter, so even a lower-case path may match it differently
	// under the case readings (set by CompileRules).
	caseSensitiveLiterals bool
	// nonASCIILiterals: some literal segment holds a byte outside ASCII, so
	// the foldings may read even an ASCII path differently from ASCII
	// folding ("ſ" upper-cases to "S").
	nonASCIILiterals bool
}

// RouteMatch is the outcome of matching one request against the RuleSet.
type RouteMatch struct {
	Rule    *Rule  // nil when no rule matched and default_access applies
	Access  Access // the rule's access, or default_access
	RouteID string // the rule's id, or the {route} capture, or ""
}

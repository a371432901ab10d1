package proxy

import (
	"fmt"
	"slices"
	"strings"
)

// methodsCover reports whether a rule with methods a matches every method
// that one with methods b matches (empty: every method).
func methodsCover(a, b []string) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, m := range b {
		if !slices.Contains(a, m) {
			return false
		}
	}
	return true
}

func hostCovers(a, b string) bool { return a == "" || a == b }
func hostOverlaps(a, b string) bool {
	return a == "" || b == "" || a == b
}

// catchAll reports whether r matches every request, so that rules after it
// and default_access are unreachable.
func (r *Rule) catchAll() bool {
	return r.pat != nil && r.Host == "" && len(r.Methods) == 0 && r.pat.wildcard && len(r.pat.segs) == 0
}

// DefaultReachable reports whether some request can reach default_access,
// i.e. no rule matches every request.
func (rs *RuleSet) DefaultReachable() bool {
	for _, r := range rs.Rules {
		if r.catchAll() {
			return false
		}
	}
	return true
}

// RuleWarning is a finding of Lint about one rule.
type RuleWarning struct {
	Rule *Rule
	Msg  string
}

// Lint finds rules that can never match because an earlier rule matches
// everything they do, rules under internalPrefix (which rules never see), and
// method-filtered rules whose other methods fall through to weaker access. It
// is conservative: it warns only about what it can prove.
func (rs *RuleSet) Lint(internalPrefix string) []RuleWarning {
	var ws []RuleWarning
	var internal *pathPattern
	if internalPrefix != "" && internalPrefix != "/" {
		internal, _ = parsePattern(internalPrefix + "/*")
	}
	for i, r := range rs.Rules {
		if r.pat == nil {
			continue
		}
		if internal != nil && internal.covers(r.pat) {
			ws = append(ws, RuleWarning{r, fmt.Sprintf("is under internal_prefix (%s): tollgate serves those paths itself and never consults routes for them", internalPrefix)})
			continue
		}
		if j := rs.shadowedBy(i); j >= 0 {
			e := rs.Rules[j]
			ws = append(ws, RuleWarning{r, fmt.Sprintf("never matches: routes[%d] (line %d) comes first and matches everything it does", e.Index, e.Line)})
			continue
		}
		if w := rs.fallThrough(i); w != "" {
			ws = append(ws, RuleWarning{r, w})
		}
		if w := rs.childrenFallThrough(i); w != "" {
			ws = append(ws, RuleWarning{r, w})
		}
	}
	return ws
}

// PaidUnreachable explains why no request can ever be paid, or returns ""
// when some may be. Plans then unlock nothing: most often a public /* above
// the paid rules takes every request first. Like Lint it is conservative: a
// paid rule counts as reachable unless an earlier rule provably matches
// everything it does.
func (rs *RuleSet) PaidUnreachable() string {
	shadowed := false
	for i, r := range rs.Rules {
		if r.Access != AccessPaid {
			continue
		}
		if r.pat == nil || rs.shadowedBy(i) < 0 {
			return ""
		}
		shadowed = true
	}
	for _, r := range rs.Rules {
		// The first catch-all is never shadowed, so had it been paid the
		// loop above would have returned.
		if r.catchAll() {
			return fmt.Sprintf("routes[%d] (line %d) is %s and matches every request, so no request is ever paid; put paid rules above it, or narrow its path",
				r.Index, r.Line, r.Access)
		}
	}
	def := rs.defaultAccess()
	switch {
	case def == AccessPaid:
		return ""
	case shadowed:
		return fmt.Sprintf("every paid rule comes after one that matches everything it does, and default_access is %s, so no request is ever paid", def)
	}
	return fmt.Sprintf("no rule is paid and default_access is %s, so no request is ever paid", def)
}

// shadowedBy returns the index of an earlier rule matching every request
// rule i matches, or -1.
func (rs *RuleSet) shadowedBy(i int) int {
	r := rs.Rules[i]
	for j, e := range rs.Rules[:i] {
		if e.pat != nil && hostCovers(e.Host, r.Host) && methodsCover(e.Methods, r.Methods) && e.pat.covers(r.pat) {
			return j
		}
	}
	return -1
}

// fallThrough describes how the methods a method-filtered rule leaves out
// reach weaker access on its paths, or returns "". It follows the later rules
// that catch those methods on rule i's paths: the first that is weaker is
// reported; one that is not weaker and covers only part of the paths ends the
// search, since where the rest goes then depends on the path.
func (rs *RuleSet) fallThrough(i int) string {
	r := rs.Rules[i]
	if len(r.Methods) == 0 || r.Access == AccessPublic {
		return ""
	}
	// The methods still falling through: every method except these.
	except := slices.Clone(r.Methods)
	for _, l := range rs.Rules[i+1:] {
		if l.pat == nil || !hostOverlaps(l.Host, r.Host) || !l.pat.overlaps(r.pat) {
			continue
		}
		caught := l.Methods
		if len(caught) > 0 {
			caught = slices.DeleteFunc(slices.Clone(caught), func(m string) bool { return slices.Contains(except, m) })
			if len(caught) == 0 {
				continue // it only sees methods rule i already took
			}
		}
		covers := hostCovers(l.Host, r.Host) && l.pat.covers(r.pat)
		if accessRank(l.Access) < accessRank(r.Access) {
			what := "other methods"
			if len(caught) > 0 {
				what = strings.Join(caught, ", ")
			}
			where := "these paths"
			if !covers {
				where = "some of these paths"
			}
			return fmt.Sprintf("%s %s, but %s on %s fall through to routes[%d] (line %d), which is %s; add a rule for them or drop methods",
				methodsAre(r.Methods), r.Access, what, where, l.Index, l.Line, l.Access)
		}
		if !covers {
			return "" // the rest of the paths go on to rules unknown here
		}
		if len(caught) == 0 {
			return "" // every remaining method stops here
		}
		except = append(except, caught...)
	}
	if def := rs.defaultAccess(); accessRank(def) < accessRank(r.Access) {
		return fmt.Sprintf("%s %s, but other methods on these paths fall through to default_access, which is %s; add a rule for them or drop methods",
			methodsAre(r.Methods), r.Access, def)
	}
	return ""
}

// childrenFallThrough describes how the paths under an exact rule (one
// without a final /*) reach weaker access, or returns "": a paid "/reports"
// leaves "/reports/q3-secret" to whatever comes next. It follows the rules
// that could match those paths, in order: one that takes only some of them
// is passed over (the rest go on), and the first that takes them all, or
// default_access, decides the rest.
func (rs *RuleSet) childrenFallThrough(i int) string {
	r := rs.Rules[i]
	if r.pat == nil || r.pat.wildcard || r.Access == AccessPublic {
		return ""
	}
	some := ""
	weaker := func(a Access, where string) string {
		if accessRank(a) >= accessRank(r.Access) {
			return ""
		}
		return fmt.Sprintf("is %s for %s only; %sthe paths under it fall through to %s, which is %s; write %s/* to cover them too",
			r.Access, r.Path, some, where, a, strings.TrimSuffix(r.Path, "/"))
	}
	for j, e := range rs.Rules {
		if j == i || e.pat == nil || !hostOverlaps(e.Host, r.Host) || !e.pat.overlapsChildren(r.pat) {
			continue
		}
		if !hostCovers(e.Host, r.Host) || !methodsCover(e.Methods, r.Methods) || !e.pat.coversChildren(r.pat) {
			some = "some of " // it takes some; the rest go on
			continue
		}
		return weaker(e.Access, fmt.Sprintf("routes[%d] (line %d)", e.Index, e.Line))
	}
	return weaker(rs.defaultAccess(), "default_access")
}

// coversChildren reports whether pt matches every path one or more
// segments below a path that b matches.
func (pt *pathPattern) coversChildren(b *pathPattern) bool {
	n := len(b.segs)
	if !pt.wildcard || len(pt.segs) > n+1 {
		return false
	}
	for i := range pt.segs {
		if i == n {
			if i != pt.capture {
				return false // a literal takes one child name, not all
			}
			continue
		}
		if !pt.segCovers(i, b, i) {
			return false
		}
	}
	return true
}

// overlapsChildren reports whether some path one or more segments below a
// path that b matches also matches pt.
func (pt *pathPattern) overlapsChildren(b *pathPattern) bool {
	n := len(b.segs)
	if len(pt.segs) <= n && !pt.wildcard {
		return false
	}
	for i := range min(n, len(pt.segs)) {
		if !pt.segOverlaps(i, b, i) {
			return false
		}
	}
	return true
}

func methodsAre(ms []string) string {
	if len(ms) == 1 {
		return "method " + ms[0] + " is"
	}
	return "methods " + strings.Join(ms, ", ") + " are"
}

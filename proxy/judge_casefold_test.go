package proxy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Python's str.casefold (Unicode full case folding, as PHP's MB_CASE_FOLD
// and Perl's fc read it too) folds the capital sharp s "ẞ" (U+1E9E) to
// "ss", while its full upper-case form is itself: "/paẞword/x" casefolds to
// "/password/x". docs/SECURITY.md says the full-upper-cased reading stands
// for Python's upper() and casefold(); for "ẞ" it does not, so an upstream
// that routes by casefold reads a rule's literal the gate judged unmatched
// (red team 15). Each path must be refused (400), or judged by the rule
// its casefolded reading chooses.
func TestJudge_CapitalSharpSCasefoldsToSS(t *testing.T) {
	withSessions, err := CompileRules(AccessPaid, []*Rule{
		{Path: "/", Access: AccessPublic},
		{Path: "/assets/*", Access: AccessPublic},
		{Path: "/sessions/*", Access: AccessDeny},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		rs         *RuleSet
		path       string // as sent, escaped
		casefolded string // the path Python's casefold routes
	}{
		{"a public rule", testRuleSet(t), "/a%E1%BA%9Eets/x", "/assets/x"},
		{"a deny rule", withSessions, "/se%E1%BA%9Eions/x", "/sessions/x"},
		{"a deny rule, escaped twice", withSessions, "/se%25e1%25ba%259eions/x", "/sessions/x"},
		{"a deny rule, upper-case elsewhere", withSessions, "/SE%E1%BA%9EIONS/x", "/sessions/x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, escaped, _ := CanonicalPath(tt.path)
			decoded, _, _ := CanonicalPath(escaped)
			got, ok := tt.rs.Judge("GET", "app.example.com", decoded, nil)
			if !ok {
				return // refused: nothing reaches an upstream
			}
			want := tt.rs.match("GET", "app.example.com", tt.casefolded, foldUnicode)
			type rule struct {
				Rule    int
				Access  Access
				RouteID string
			}
			if diff := cmp.Diff(rule{ruleIndex(want), want.Access, want.RouteID}, rule{ruleIndex(got), got.Access, got.RouteID}); diff != "" {
				t.Errorf("%q (decoded %q) forwarded under a rule its casefolded reading %q does not choose (-casefold +gate):\n%s",
					tt.path, decoded, tt.casefolded, diff)
			}
		})
	}
}

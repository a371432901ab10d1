package proxy

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// An upstream that decodes the forwarded path once more may read letters the
// canonical path does not hold: "%c4%b1" is "ı", which Windows upper-cases
// to "I". The case readings a request is judged under must be those of every
// path reading, not of the canonical path alone; lower-case hex left the
// canonical path with no upper-case letter, so only the folded reading was
// checked and "/adm%25c4%25b1n/x" passed a deny rule on "/admin/*" to IIS
// (red team, issue 15).
func TestJudge_CaseReadingsOfEveryPathReading(t *testing.T) {
	rs := testRuleSet(t)
	for _, p := range []string{
		"/adm%25c4%25b1n/x", "/adm%25C4%25B1n/x", "/ADM%25c4%25b1N/x", "/public/..%252f..%252fadm%25c4%25b1n",
		"/sett%25c4%25b1ngs/x", "/%25e2%2584%25aa/x",
	} {
		t.Run(p, func(t *testing.T) {
			checkEveryReadingAgrees(t, rs, "GET", p)
			decoded, _, _ := CanonicalPath(p)
			if m, ok := rs.Judge("GET", "app.example.com", decoded, nil); ok && strings.Contains(p, "adm") && m.Access != AccessDeny {
				t.Errorf("%q: judged %s by rule %d, want refused or denied", p, m.Access, ruleIndex(m))
			}
		})
	}
}

// TestJudge_RandomPathsAgreeWithEveryReading is FuzzJudge's property over
// paths drawn from the same pieces with a fixed seed, so that every run of
// the tests (not only the fuzzing step) explores combinations of them.
func TestJudge_RandomPathsAgreeWithEveryReading(t *testing.T) {
	rs := testRuleSet(t)
	n := 30_000
	if testing.Short() {
		n = 3_000
	}
	rng := rand.New(rand.NewPCG(15, 2026))
	for range n {
		var b strings.Builder
		for range 1 + rng.IntN(8) {
			b.WriteString(pathTokens[rng.IntN(len(pathTokens))])
		}
		method := "GET"
		if rng.IntN(4) == 0 {
			method = "POST"
		}
		checkEveryReadingAgrees(t, rs, method, "/"+b.String())
	}
}

func TestCaseReadings(t *testing.T) {
	compile := func(paths ...string) *RuleSet {
		t.Helper()
		var rules []*Rule
		for _, p := range paths {
			rules = append(rules, &Rule{Path: p, Access: AccessDeny})
		}
		rs, err := CompileRules(AccessPaid, rules)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	lower, upper, nonASCII := compile("/admin/*"), compile("/Admin/*"), compile("/admın/*")
	for _, tt := range []struct {
		name string
		rs   *RuleSet
		path string
		want []caseMode
	}{
		{"lower-case path, lower-case literals: folding is all", lower, "/admin/x", nil},
		{"upper-case ASCII path: byte for byte differs", lower, "/ADMIN/x", byteForByte},
		{"upper-case literal: byte for byte differs", upper, "/admin/x", byteForByte},
		{"non-ASCII path: every folding", lower, "/adm\u0131n/x", caseModes},
		{"invalid UTF-8 is outside ASCII", lower, "/adm\xffn/x", caseModes},
		{"non-ASCII literal: every folding, even for an ASCII path", nonASCII, "/admin/x", caseModes},
		{"no rules", nil, "/ADMIN", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.rs.caseReadings(tt.path)); diff != "" {
				t.Errorf("caseReadings(%q) (-want +got):\n%s", tt.path, diff)
			}
		})
	}
}

// FuzzASCIIFoldingReadingsAgree is why caseReadings may judge an ASCII path
// against ASCII literals folded and byte for byte only: every other way of
// reading case compares two ASCII segments as folding does.
func FuzzASCIIFoldingReadingsAgree(f *testing.F) {
	for _, s := range [][2]string{{"admin", "ADMIN"}, {"Admin", "admin"}, {"ss", "SS"}, {"k", "K"}, {"fi", "FI"}, {"a@", "A`"}, {"[", "{"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, lit, seg string) {
		if !isASCII(lit) || !isASCII(seg) {
			return
		}
		folded := segmentEqual(lit, seg, foldUnicode)
		for _, mode := range caseModes {
			if mode == exactCase {
				continue
			}
			if got := segmentEqual(lit, seg, mode); got != folded {
				t.Fatalf("literal %q, segment %q: mode %d says %v, folding says %v", lit, seg, mode, got, folded)
			}
		}
	})
}

// BenchmarkJudge is the judgement of a common request: a plain path with an
// upper-case route ID, against rules of ASCII literals.
func BenchmarkJudge(b *testing.B) {
	rs := testRuleSet(b)
	b.ReportAllocs()
	for b.Loop() {
		rs.Judge("GET", "app.example.com", "/routes/415VNA/chart", nil)
	}
}

// A long path that may read differently is refused rather than judged under
// every reading; one that cannot is judged as it is, whatever its length.
func TestJudge_LongPathsUnderReadingsAreRefused(t *testing.T) {
	rs := testRuleSet(t)
	for _, tt := range []struct {
		name string
		path string
		ok   bool
	}{
		{"backslashes past the bound", "/public/" + strings.Repeat(`x\`, maxReadPathLen/2), false},
		{"escapes past the bound", "/public/" + strings.Repeat("x%u002f", maxReadPathLen/7), false},
		{"plain, past the bound", "/public/" + strings.Repeat("x/", maxReadPathLen), true},
		{"readings within the bound", "/public/" + strings.Repeat(`x\`, maxReadPathLen/4), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := rs.Judge("GET", "app.example.com", tt.path, nil); ok != tt.ok {
				t.Errorf("judged: %v, want %v", ok, tt.ok)
			}
		})
	}
}

// BenchmarkJudge_LongestReadPath is the most a path may cost under its
// readings, the worst shape the red team found at maxReadPathLen:
// backslashes every reading but one changes, and a tail that decodes again
// and again until the readings run out.
func BenchmarkJudge_LongestReadPath(b *testing.B) {
	rs := testRuleSet(b)
	tail := "%u002e%2e%25252e"
	p := "/public/" + strings.Repeat(`x\`, (maxReadPathLen-len("/public/")-len(tail))/2) + tail
	b.Logf("a path of %d bytes", len(p))
	b.ReportAllocs()
	for b.Loop() {
		rs.Judge("GET", "app.example.com", p, nil)
	}
}

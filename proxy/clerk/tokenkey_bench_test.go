package clerk

import (
	"strings"
	"testing"
)

// BenchmarkTokenKey: the cache key of a session token of Clerk's size (an
// RS256 token of ~900 characters, its signature 342).
func BenchmarkTokenKey(b *testing.B) {
	e := newEnv(b)
	tok := e.token("pad", strings.Repeat("x", 400))
	b.Logf("token of %d characters", len(tok))
	b.ReportAllocs()
	for b.Loop() {
		e.c.tokenKey(tok)
	}
}

// FuzzLastDot: lastDot's shortcut for tokens of Clerk's shape finds the
// dot strings.LastIndexByte finds, for any string, so that tokenKey splits
// every token, forged ones included, where the verifier does.
func FuzzLastDot(f *testing.F) {
	sig := strings.Repeat("s", rs256SignatureLen)
	for _, s := range []string{"", ".", "a.b.c", "h.p." + sig, "h.p" + sig, "h.p." + sig[1:] + ".", "h.p.." + sig[2:], "." + sig, sig} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if got, want := lastDot(tok), strings.LastIndexByte(tok, '.'); got != want {
			t.Fatalf("lastDot(%q) = %d, want %d", tok, got, want)
		}
		// The same around a signature of RS256's length, where the
		// shortcut applies.
		long := tok + "." + sig
		if got, want := lastDot(long), strings.LastIndexByte(long, '.'); got != want {
			t.Fatalf("lastDot(%q) = %d, want %d", long, got, want)
		}
		spliced := tok + sig
		if got, want := lastDot(spliced), strings.LastIndexByte(spliced, '.'); got != want {
			t.Fatalf("lastDot(%q) = %d, want %d", spliced, got, want)
		}
	})
}

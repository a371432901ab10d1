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

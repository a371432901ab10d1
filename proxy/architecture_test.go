package proxy_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tollgate/tollgate"

// TestImportGraph holds the architecture in docs/ARCHITECTURE.md: the
// domain (proxy) needs only the standard library; each adapter outside cmd/
// needs at most the domain, so no adapter knows another's concrete types;
// only the commands wire them together. The sandbox's fakes may share its
// page renderer, and the stores' conformance suite (proxy/storetest) may
// import the consumers whose store interfaces it tests, never a store.
func TestImportGraph(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command")
	}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		seen++
		for _, imp := range imports {
			if why := forbidden(pkg, imp); why != "" {
				t.Errorf("%s imports %s: %s", strings.TrimPrefix(pkg, module+"/"), imp, why)
			}
		}
	}
	if seen < 5 {
		t.Fatalf("go list found %d packages; the check would pass vacuously", seen)
	}
}

// storeConsumer reports whether a package owns store interfaces that
// proxy/storetest tests (docs/ARCHITECTURE.md, "Where to add… A store").
func storeConsumer(imp string) bool {
	switch strings.TrimPrefix(imp, module+"/") {
	case "proxy/stripe", "proxy/admin", "proxy/clerk", "proxy/gateway", "proxy/limits":
		return true
	}
	return false
}

func forbidden(pkg, imp string) string {
	own := imp == module || strings.HasPrefix(imp, module+"/")
	stdlib := !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".")
	switch {
	case strings.HasPrefix(pkg, module+"/cmd/"):
		return "" // the commands know every concrete type
	case pkg == module+"/proxy":
		if !stdlib {
			return "the domain uses the standard library only"
		}
	case pkg == module+"/proxy/postgres" && !own && !stdlib && !strings.HasPrefix(imp, "github.com/jackc/pgx/v5"):
		return "the PostgreSQL store speaks to the database through pgx (and pgxpool) only"
	case own && imp == module+"/proxy":
		return ""
	case own && imp == module+"/proxy/sandbox" && strings.HasPrefix(pkg, module+"/proxy/sandbox/"):
		return "" // the fakes share the sandbox's page renderer
	case own && pkg == module+"/proxy/storetest" && storeConsumer(imp):
		return "" // the suite tests the interfaces these packages own
	case own && imp == module+"/proxy/limits" && pkg == module+"/proxy/gateway":
		// The limiter is the gateway's in-memory state, in a package of its
		// own so that its store interface (limits.Store) can be named by
		// the stores' conformance suite without the gateway.
		return ""
	case own:
		return "an adapter imports at most the domain; the commands wire adapters together"
	}
	return ""
}

func TestForbidden(t *testing.T) {
	m := module + "/"
	for _, tc := range []struct {
		pkg, imp string
		ok       bool
	}{
		{m + "proxy", "net/http", true},
		{m + "proxy", "gopkg.in/yaml.v3", false},
		{m + "proxy", m + "proxy/bolt", false},
		{m + "proxy/bolt", m + "proxy", true},
		{m + "proxy/bolt", "go.etcd.io/bbolt", true},
		{m + "proxy/admin", m + "proxy/bolt", false},
		{m + "proxy/gateway", m + "proxy/cache", false},
		{m + "proxy/sandbox/clerk", m + "proxy/sandbox", true},
		{m + "proxy/stripe", m + "proxy/sandbox", false},
		{m + "cmd/tollgate", m + "proxy/bolt", true},
		{m + "proxy/storetest", m + "proxy/gateway", true},
		{m + "proxy/storetest", m + "proxy/stripe", true},
		{m + "proxy/storetest", m + "proxy/bolt", false},
		{m + "proxy/storetest", m + "proxy/postgres", false},
		{m + "proxy/storetest", m + "proxy/cache", false},
		{m + "proxy/storetest", m + "proxy/sandbox", false},
		{m + "proxy/metrics", m + "proxy/gateway", false},
		{m + "proxy/gateway", m + "proxy/limits", true},
		{m + "proxy/storetest", m + "proxy/limits", true},
		{m + "proxy/bolt", m + "proxy/limits", false},
		{m + "proxy/limits", m + "proxy/gateway", false},
		{m + "proxy/admin", m + "proxy/limits", false},
		{m + "proxy/postgres", m + "proxy", true},
		{m + "proxy/postgres", "github.com/jackc/pgx/v5/pgxpool", true},
		{m + "proxy/postgres", "github.com/lib/pq", false},
		{m + "proxy/postgres", m + "proxy/bolt", false},
		{m + "proxy/gateway", m + "proxy/postgres", false},
		{m + "cmd/tollgate", m + "proxy/postgres", true},
	} {
		if got := forbidden(tc.pkg, tc.imp) == ""; got != tc.ok {
			t.Errorf("%s importing %s allowed = %v, want %v", tc.pkg, tc.imp, got, tc.ok)
		}
	}
}

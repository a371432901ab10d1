package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

func TestParseConfig_Store(t *testing.T) {
	const base = "public_url: https://a.example\nupstream: http://b:1\ndefault_access: public\n"
	env := func(name string) string {
		switch name {
		case "DATABASE_URL":
			return "postgres://tollgate:s3cret@db:5432/tollgate"
		case "EMPTY_URL":
			return ""
		}
		return testEnv(name)
	}
	pool := proxy.StoreConfig{Driver: proxy.StorePostgres, Path: DefaultStorePath, CacheSize: DefaultCacheSize,
		DSN: "postgres://tollgate:s3cret@db:5432/tollgate", MaxConns: DefaultMaxConns, MinConns: DefaultMinConns,
		MaxConnLifetime: DefaultMaxConnLifetime, MaxConnIdle: DefaultMaxConnIdle, ConnectTimeout: DefaultConnectTimeout}
	for _, tc := range []struct {
		name, yaml string
		want       proxy.StoreConfig
		err        string // a fragment of the error, with its line
		warn       string
	}{
		{"left out: bolt", "", proxy.StoreConfig{Driver: proxy.StoreBolt, Path: DefaultStorePath, CacheSize: DefaultCacheSize}, "", ""},
		{"postgres from the environment", "store:\n  driver: postgres\n  dsn: ${DATABASE_URL}\n", pool, "", ""},
		{"pool settings", "store:\n  driver: postgres\n  dsn: host=db dbname=tollgate\n  max_conns: 20\n  min_conns: 4\n  max_conn_lifetime: 30m\n  max_conn_idle: 1m\n  connect_timeout: 2s\n",
			proxy.StoreConfig{Driver: proxy.StorePostgres, Path: DefaultStorePath, CacheSize: DefaultCacheSize, DSN: "host=db dbname=tollgate",
				MaxConns: 20, MinConns: 4, MaxConnLifetime: 30 * time.Minute, MaxConnIdle: time.Minute, ConnectTimeout: 2 * time.Second}, "", ""},
		{"unknown driver", "store:\n  driver: redis\n", proxy.StoreConfig{}, `config.yaml:5: store.driver: "redis" is not a store driver`, ""},
		{"postgres without dsn", "store:\n  driver: postgres\n", proxy.StoreConfig{}, "config.yaml:5: store.dsn: missing; it is required with store.driver: postgres", ""},
		{"dsn from an empty variable", "store:\n  driver: postgres\n  dsn: ${EMPTY_URL}\n", proxy.StoreConfig{}, "config.yaml:6: store.dsn: empty because", ""},
		{"another scheme, password hidden", "store:\n  driver: postgres\n  dsn: mysql://u:hunter2@db/x\n", proxy.StoreConfig{}, "config.yaml:6: store.dsn:", ""},
		{"no host", "store:\n  driver: postgres\n  dsn: postgres:///tollgate\n", proxy.StoreConfig{}, "names no host", ""},
		// A "%" in the password makes the URL unparsable: the string is
		// never shown (red team, issue 16: it was printed whole).
		{"unparsable URL, password hidden", "store:\n  driver: postgres\n  dsn: postgres://tollgate:hunter2%zz@127.0.0.1:5432/db\n", proxy.StoreConfig{}, "percent-encode", ""},
		{"unparsable port, password hidden", "store:\n  driver: postgres\n  dsn: postgres://tollgate:hunter2@127.0.0.1:%zz/db\n", proxy.StoreConfig{}, "not shown", ""},
		{"min above max", "store:\n  driver: postgres\n  dsn: host=db\n  max_conns: 2\n  min_conns: 3\n", proxy.StoreConfig{}, "config.yaml:8: store.min_conns: 3 is more than store.max_conns (2)", ""},
		{"zero lifetime", "store:\n  driver: postgres\n  dsn: host=db\n  max_conn_lifetime: 0s\n", proxy.StoreConfig{}, "config.yaml:7: store.max_conn_lifetime: \"0s\" is zero", ""},
		{"dsn with bolt is not read", "store:\n  dsn: ${UNSET_URL}\n  max_conns: 0\n", proxy.StoreConfig{Driver: proxy.StoreBolt, Path: DefaultStorePath, CacheSize: DefaultCacheSize}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("config.yaml", []byte(base+tc.yaml), env)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one saying %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the error shows the DSN's password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, cfg.Store); d != "" {
				t.Errorf("store (-want +got):\n%s", d)
			}
			if tc.warn != "" && !strings.Contains(strings.Join(cfg.Warnings, "\n"), tc.warn) {
				t.Errorf("warnings %q, want one saying %q", cfg.Warnings, tc.warn)
			}
		})
	}
}

// Ensure a URL quoted in an error never shows what could be a password,
// even when it does not parse (red team, issue 16).
func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://app.example.com/x":         `"https://app.example.com/x"`,
		"https://u:hunter2@app.example.com": `"https://u:xxxxx@app.example.com"`,
		"https://u:hunter2%zz@h:%zz/":       `"https://xxxxx@h:%zz/"`,
		"not a url %zz":                     `"not a url %zz"`,
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %s, want %s", in, got, want)
		}
	}
}

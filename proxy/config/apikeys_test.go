package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

func TestParseConfig_APIKeys(t *testing.T) {
	const base = "public_url: https://a.example\nupstream: http://b:1\ndefault_access: public\n"
	for _, tc := range []struct {
		name, yaml string
		want       proxy.APIKeysConfig
		err        string
	}{
		{"left out", "", proxy.APIKeysConfig{MaxFailures: DefaultAPIKeyMaxFailures}, ""},
		{"header canonicalised", "api_keys: { enabled: true, header: x-api-key, max_failures: 5 }\n",
			proxy.APIKeysConfig{Enabled: true, Header: "X-Api-Key", MaxFailures: 5}, ""},
		{"Authorization refused", "api_keys: { header: authorization }\n", proxy.APIKeysConfig{}, "a header tollgate reads or sets itself"},
		{"X-Tollgate- refused", "api_keys: { header: X-Tollgate-Key }\n", proxy.APIKeysConfig{}, "a header tollgate reads or sets itself"},
		{"not a name", "api_keys: { header: \"X API\" }\n", proxy.APIKeysConfig{}, "is not a header name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("config.yaml", []byte(base+tc.yaml), testEnv)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, cfg.APIKeys); d != "" {
				t.Errorf("api_keys (-want +got):\n%s", d)
			}
		})
	}
}

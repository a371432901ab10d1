package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// checkConfigs are configs for TestCheck_StrictAndCounts, without ${VAR}s
// so that the environment does not matter.
const (
	checkConfigClean = `public_url: "https://app.example.com"
upstream: "http://app:3000"
routes:
  - { path: "/*", access: public }
`
	// The paywall never applies: one warning.
	checkConfigPlanUnreachable = checkConfigClean + `plans:
  pro: { prices: [price_pro], routes: ["*"] }
`
	// A public /* above a paid rule: two warnings.
	checkConfigShadowedPaid = checkConfigClean + `  - { path: "/reports/*", access: paid }
clerk: { publishable_key: pk_test_ZXhhbXBsZS5hY2NvdW50cy5kZXYk, secret_key: sk_test_x }
session: { secret: 0123456789abcdef0123456789abcdef }
stripe: { secret_key: sk_test_x, webhook_secret: whsec_x }
plans:
  pro: { prices: [price_pro], routes: ["*"] }
`
)

func TestCheck_StrictAndCounts(t *testing.T) {
	const unreachable = "plans: unlock nothing: routes[0] (line 4) is public and matches every request, so no request is ever paid; put paid rules above it, or narrow its path"
	tests := []struct {
		name    string
		config  string
		strict  bool
		wantOut string // FILE stands for the config's path
		wantErr string
	}{
		{"no warnings", checkConfigClean, false,
			"FILE: ok (1 route, 0 plans, 0 warnings)\n", ""},
		{"no warnings, strict", checkConfigClean, true,
			"FILE: ok (1 route, 0 plans, 0 warnings)\n", ""},
		{"one warning", checkConfigPlanUnreachable, false,
			"warning: FILE:6: " + unreachable + "\nFILE: ok (1 route, 1 plan, 1 warning)\n", ""},
		{"one warning, strict", checkConfigPlanUnreachable, true,
			"warning: FILE:6: " + unreachable + "\n", "FILE: 1 warning; -strict fails on warnings"},
		{"a public /* above a paid rule", checkConfigShadowedPaid, false,
			"warning: FILE:5: routes[1]: never matches: routes[0] (line 4) comes first and matches everything it does\n" +
				"warning: FILE:10: " + unreachable + "\n" +
				"FILE: ok (2 routes, 1 plan, 2 warnings)\n", ""},
		{"a public /* above a paid rule, strict", checkConfigShadowedPaid, true,
			"warning: FILE:5: routes[1]: never matches: routes[0] (line 4) comes first and matches everything it does\n" +
				"warning: FILE:10: " + unreachable + "\n", "FILE: 2 warnings; -strict fails on warnings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(file, []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"check", "-config", file}
			if tt.strict {
				args = append(args, "-strict")
			}
			var out, errb bytes.Buffer
			err := run(t.Context(), args, &out, &errb)
			if diff := cmp.Diff(out.String(), strings.ReplaceAll(tt.wantOut, "FILE", file)); diff != "" {
				t.Errorf("output (-got +want):\n%s", diff)
			}
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
				if code := exitCode(err); code != 1 {
					t.Errorf("exit status %d, want 1", code)
				}
			}
			if diff := cmp.Diff(gotErr, strings.ReplaceAll(tt.wantErr, "FILE", file)); diff != "" {
				t.Errorf("error (-got +want):\n%s", diff)
			}
		})
	}
}

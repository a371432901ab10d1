package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate/proxy"
)

// What the upgrade page says about a plan: highlight true is the usual
// label, false or absent none; its words may hold " #" (not a comment
// inside quotes there, as in a name).
func TestParseConfig_PlanWords(t *testing.T) {
	const base = "public_url: https://app.example.com\nupstream: http://app:3000\ndefault_access: public\nplans:\n  pro:\n    prices: [price_1]\n    routes: [\"*\"]\n"
	tests := []struct {
		name string
		doc  string
		want proxy.Plan
	}{
		{"none", "", proxy.Plan{}},
		{"highlight true", "    highlight: true\n", proxy.Plan{Highlight: "Recommended"}},
		{"highlight false", "    highlight: false\n", proxy.Plan{}},
		{"a label", "    highlight: \"Best value\"\n", proxy.Plan{Highlight: "Best value"}},
		{"words with a hash", "    description: \"Our #1 plan\"\n    features: [\"Support ticket #1 first\", Reports]\n",
			proxy.Plan{Description: "Our #1 plan", Features: []string{"Support ticket #1 first", "Reports"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("config.yaml", []byte(base+tt.doc), testEnv)
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Plans[0]
			got = proxy.Plan{Description: got.Description, Features: got.Features, Highlight: got.Highlight}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

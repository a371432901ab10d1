package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate/proxy"
)

// A plan's meter: a base fee plus usage keeps its prices; a plan without
// prices: is pure pay-as-you-go, its metered price its only price.
func TestParseConfig_Meter(t *testing.T) {
	const base = "public_url: https://app.example.com\nupstream: http://app:3000\ndefault_access: public\nplans:\n  api:\n    routes: [\"*\"]\n"
	tests := []struct {
		name string
		doc  string
		want proxy.Plan
	}{
		{"no meter", "    prices: [price_1]\n", proxy.Plan{Prices: []string{"price_1"}}},
		{"base fee plus usage", "    prices: [price_1]\n    meter: { event_name: api_requests, price: price_m }\n",
			proxy.Plan{Prices: []string{"price_1"}, Meter: &proxy.PlanMeter{EventName: "api_requests", Price: "price_m"}}},
		{"pay as you go", "    meter:\n      event_name: api.requests-v2\n      price: price_m\n",
			proxy.Plan{Prices: []string{"price_m"}, Meter: &proxy.PlanMeter{EventName: "api.requests-v2", Price: "price_m"}}},
		{"null meter", "    prices: [price_1]\n    meter: ~\n", proxy.Plan{Prices: []string{"price_1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("config.yaml", []byte(base+tt.doc), testEnv)
			if err != nil {
				t.Fatal(err)
			}
			got := proxy.Plan{Prices: cfg.Plans[0].Prices, Meter: cfg.Plans[0].Meter}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidMeterEventName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"api_requests", true},
		{"a", true},
		{"", false},
		{"api requests", false},
		{"tab\there", false},
		{"naïve", false},
		{strings100('x'), true},
		{strings100('x') + "x", false},
	}
	for _, tt := range tests {
		if got := proxy.ValidMeterEventName(tt.name); got != tt.ok {
			t.Errorf("ValidMeterEventName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func strings100(c byte) string {
	b := make([]byte, 100)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

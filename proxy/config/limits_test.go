package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate/proxy"
)

const limitsBase = "public_url: https://app.example.com\nupstream: http://app:3000\ndefault_access: public\n" +
	"routes:\n  - { id: 258AVO, path: /api/*, access: public }\n  - { id: 415VNA, path: /reports/*, access: public }\n" +
	"plans:\n  pro:\n    prices: [price_1]\n    routes: [\"258AVO\", \"415VNA\"]\n"

// The example, and the defaults: burst is a unit's worth of the
// rate; free: is a plan called free with its own routes.
func TestParseConfig_Limits(t *testing.T) {
	doc := limitsBase + `    limits:
      "258AVO": { rate: 10/s, burst: 20, quota: 10000/month }
      "*":      { rate: 50/m }
free:
  routes: ["258AVO"]
  limits: { "258AVO": { quota: 100/day } }
cost_header: x-tollgate-cost
quota_flush: 250ms
`
	cfg, err := Parse("config.yaml", []byte(doc), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []proxy.LimitEntry{
		{Route: "258AVO", Limit: proxy.Limit{Rate: 10, Per: time.Second, Burst: 20, Quota: 10000, Period: proxy.PeriodMonth}},
		{Route: "*", Limit: proxy.Limit{Rate: 50, Per: time.Minute, Burst: 50}},
	}
	if d := cmp.Diff(want, cfg.Plans[0].Limits); d != "" {
		t.Errorf("plans.pro.limits (-want +got):\n%s", d)
	}
	wantFree := &proxy.Plan{Key: "free", Name: "Free", Scope: proxy.SubjectUser, Routes: []string{"258AVO"},
		Limits: []proxy.LimitEntry{{Route: "258AVO", Limit: proxy.Limit{Quota: 100, Period: proxy.PeriodDay}}}}
	if d := cmp.Diff(wantFree, cfg.Free, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("free (-want +got):\n%s", d)
	}
	if cfg.CostHeader != "X-Tollgate-Cost" || cfg.QuotaFlush != 250*time.Millisecond {
		t.Errorf("cost_header %q, quota_flush %v", cfg.CostHeader, cfg.QuotaFlush)
	}
	if e := cfg.Plans[0].LimitFor("258avo"); e == nil || e.Route != "258AVO" {
		t.Errorf("LimitFor(258avo) = %+v, want the 258AVO entry", e)
	}
	if e := cfg.Plans[0].LimitFor("415VNA"); e == nil || e.Route != "*" {
		t.Errorf("LimitFor(415VNA) = %+v, want \"*\"", e)
	}
}

// Every mistake names its key and line.
func TestParseConfig_LimitErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"bad rate", "    limits: { \"*\": { rate: ten/s } }\n", `config.yaml:11: plans.pro.limits.*.rate: "ten/s": want a whole number`},
		{"bad rate unit", "    limits: { \"*\": { rate: 10/d } }\n", `config.yaml:11: plans.pro.limits.*.rate: "10/d": the unit after / must be s, m or h`},
		{"bad quota period", "    limits: { \"*\": { quota: 10/week } }\n", `config.yaml:11: plans.pro.limits.*.quota: "10/week": the period after / must be hour, day or month`},
		{"zero quota", "    limits: { \"*\": { quota: 0/day } }\n", `config.yaml:11: plans.pro.limits.*.quota: "0/day": want a whole number from 1`},
		{"burst alone", "    limits: { \"*\": { burst: 5 } }\n", `config.yaml:11: plans.pro.limits.*.burst: is set without rate`},
		{"bad burst", "    limits: { \"*\": { rate: 1/s, burst: 0 } }\n", `config.yaml:11: plans.pro.limits.*.burst:`},
		{"empty", "    limits:\n      \"*\": {}\n", `config.yaml:12: plans.pro.limits.*: limits nothing`},
		{"unknown key", "    limits: { \"*\": { rates: 1/s } }\n", `config.yaml:11: plans.pro.limits.*.rates: unknown key (did you mean rate?)`},
		{"route not the plan's", "    limits: { \"999ZZZ\": { rate: 1/s } }\n", `config.yaml:11: plans.pro.limits.999ZZZ: "999ZZZ" is not among this plan's routes`},
		{"duplicate in another case", "    limits:\n      \"258AVO\": { rate: 1/s }\n      \"258avo\": { rate: 2/s }\n", `config.yaml:13: plans.pro.limits.258avo: "258avo" is already limited above`},
		{"not a mapping", "    limits: [1]\n", `config.yaml:11: plans.pro.limits: is a list`},
		{"free without routes", "free: { limits: {} }\n", `free.routes: missing or empty`},
		{"free route not free's", "free:\n  routes: [258AVO]\n  limits: { \"415VNA\": { quota: 1/day } }\n", `config.yaml:13: free.limits.415VNA: "415VNA" is not among this plan's routes`},
		{"bad cost header", "cost_header: \"Retry-After\"\n", `config.yaml:11: cost_header: "Retry-After" is a header tollgate reads or sets itself`},
		{"bad quota flush", "quota_flush: 5m\n", `config.yaml:11: quota_flush: is 5m0s; want from 1ms to 1m`},
		{"bad meter window", "meter_window: 7m\n", `config.yaml:11: meter_window: is 7m0s; want whole seconds from 1s to 1h that divide an hour`},
		{"meter window too long", "meter_window: 2h\n", `config.yaml:11: meter_window: is 2h0m0s; want whole seconds`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("config.yaml", []byte(limitsBase+tt.doc), testEnv)
			if err == nil {
				t.Fatalf("parsed; want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}

// A rate or a quota is read in one way only, and whatever parses reads
// back the same.
func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{"10/s", "50/m", "1/h", "10000/month", "100/day", "5/hour", " 7 / s ", "0/s", "1/", "/s", "-1/day", "9999999999999/month", "1e3/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, per, err := proxy.ParseRate(s); err == nil {
			if n < 1 || n > 1_000_000 || (per != time.Second && per != time.Minute && per != time.Hour) {
				t.Fatalf("ParseRate(%q) = %d/%v", s, n, per)
			}
		} else if !errors.Is(err, proxy.ErrLimitSyntax) {
			t.Fatalf("ParseRate(%q) error %v does not wrap ErrLimitSyntax", s, err)
		}
		if n, period, err := proxy.ParseQuota(s); err == nil {
			if n < 1 || n > 1e12 || period == proxy.PeriodNone {
				t.Fatalf("ParseQuota(%q) = %d/%v", s, n, period)
			}
		} else if !errors.Is(err, proxy.ErrLimitSyntax) {
			t.Fatalf("ParseQuota(%q) error %v does not wrap ErrLimitSyntax", s, err)
		}
	})
}

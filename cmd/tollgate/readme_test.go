package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/stripe"
)

// The README's lists of webhook events to subscribe to are exactly the
// events tollgate handles, Stripe's and Clerk's.
func TestREADME_ListsTheHandledEvents(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for block, want := range map[string][]string{"handled-events": stripe.HandledEvents(), "clerk-events": clerk.HandledEvents()} {
		start := strings.Index(s, "<!-- "+block)
		end := strings.Index(s, "<!-- /"+block+" -->")
		if start < 0 || end < start {
			t.Errorf("README has no %s block", block)
			continue
		}
		var got []string
		for _, m := range regexp.MustCompile("`([A-Za-z_.]+)`").FindAllStringSubmatch(s[start:end], -1) {
			got = append(got, m[1])
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("README's %s lists %v\nhandled: %v", block, got, want)
		}
	}
}

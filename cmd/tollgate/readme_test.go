package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/proxy/stripe"
)

// The README's list of webhook events to subscribe to is exactly the
// events tollgate handles.
func TestREADME_ListsTheHandledStripeEvents(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "<!-- handled-events")
	end := strings.Index(s, "<!-- /handled-events -->")
	if start < 0 || end < start {
		t.Fatal("README has no handled-events block")
	}
	var got []string
	for _, m := range regexp.MustCompile("`([a-z_.]+)`").FindAllStringSubmatch(s[start:end], -1) {
		got = append(got, m[1])
	}
	want := stripe.HandledEvents()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("README lists %v\nhandled: %v", got, want)
	}
}

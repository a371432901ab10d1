package main

import (
	"bytes"
	"errors"
	"flag"
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

// Every tollgate command the README's shell blocks show uses flags that
// command has (its -h lists them), and the quickstart builds the binary
// onto the PATH rather than as ./tollgate in the checkout, where
// `tollgate init -dir tollgate` would then find a file in its way.
func TestREADME_CommandsUseRealFlags(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	if strings.Contains(readme, "-o tollgate ./cmd/tollgate") {
		t.Error("the README builds ./tollgate in the checkout")
	}
	flagsOf := map[string]map[string]bool{}
	helpFlag := regexp.MustCompile(`(?m)^\s+-([a-z][a-z-]*)`)
	seen := 0
	for i, block := range strings.Split(readme, "```sh\n") {
		if i == 0 {
			continue
		}
		block, _, _ = strings.Cut(block, "```")
		for _, line := range strings.Split(strings.ReplaceAll(block, "\\\n", " "), "\n") {
			line, _, _ = strings.Cut(line, "#")
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "tollgate" || strings.HasPrefix(f[1], "-") {
				continue
			}
			cmd := f[1]
			if flagsOf[cmd] == nil {
				var out, errb bytes.Buffer
				if err := run(t.Context(), []string{cmd, "-h"}, &out, &errb); !errors.Is(err, flag.ErrHelp) {
					t.Errorf("tollgate %s -h: %v", cmd, err)
					continue
				}
				flagsOf[cmd] = map[string]bool{}
				for _, m := range helpFlag.FindAllStringSubmatch(errb.String(), -1) {
					flagsOf[cmd][m[1]] = true
				}
			}
			for _, arg := range f[2:] {
				name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
				if strings.HasPrefix(arg, "-") && !flagsOf[cmd][name] {
					t.Errorf("the README's %q: tollgate %s has no flag -%s", strings.TrimSpace(line), cmd, name)
				}
			}
			seen++
		}
	}
	if seen < 5 {
		t.Errorf("only %d tollgate commands found in the README's shell blocks", seen)
	}
}

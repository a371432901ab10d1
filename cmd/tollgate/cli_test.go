package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLI_HelpListsEveryCommand: "tollgate help", -h and --help all list
// the commands, and every dispatched command is in the list, with the
// main flags of init and of the commands that read a config.
func TestCLI_HelpListsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-help"}} {
		var out, errb bytes.Buffer
		if err := run(t.Context(), args, &out, &errb); err != nil {
			t.Errorf("%v: %v", args, err)
			continue
		}
		for _, flag := range []string{"init [-dir DIR] [-env-file FILE]", "-public-url", "-listen", "-store-path", "-plan",
			"check [-config FILE] [-env-file FILE]", "serve] [-config FILE] [-env-file FILE]"} {
			if !strings.Contains(out.String(), flag) {
				t.Errorf("%v: the help does not show %q:\n%s", args, flag, out.String())
			}
		}
		for _, cmd := range []string{"serve", "init", "check", "demo", "users", "sync", "backup", "keys", "healthcheck", "version"} {
			if !strings.Contains(out.String(), "tollgate "+cmd) && !strings.Contains(out.String(), "tollgate ["+cmd+"]") {
				t.Errorf("%v: the help does not list %s:\n%s", args, cmd, out.String())
			}
		}
	}
}

func TestCLI_Version(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out, errb bytes.Buffer
		if err := run(t.Context(), args, &out, &errb); err != nil || out.String() != "tollgate "+version+"\n" {
			t.Errorf("%v: %v %q", args, err, out.String())
		}
	}
}

// TestCLI_EachCommandSaysWhatItDoes: a command's -h begins with what it
// does, then its flags.
func TestCLI_EachCommandSaysWhatItDoes(t *testing.T) {
	for cmd, want := range map[string]string{
		"serve":       "Runs the gateway",
		"init":        "Sets up tollgate in front of an app",
		"check":       "Validates a config file",
		"demo":        "Runs everything locally",
		"users":       "Lists users",
		"sync":        "Re-reads one customer",
		"backup":      "Writes a consistent copy of the store",
		"healthcheck": "Exits 0 when the gateway",
	} {
		var out, errb bytes.Buffer
		err := run(t.Context(), []string{cmd, "-h"}, &out, &errb)
		if !errors.Is(err, flag.ErrHelp) || exitCode(err) != 0 {
			t.Errorf("%s -h: err = %v, exit status %d; want flag.ErrHelp, 0 (help asked for is a success)", cmd, err, exitCode(err))
		}
		help := errb.String()
		if !strings.HasPrefix(help, "Usage: tollgate "+cmd+" [flags]\n\n"+want) || !strings.Contains(help, "Flags:\n  -") {
			t.Errorf("%s -h:\n%s", cmd, help)
		}
	}
}

// TestCLI_BareTollgateWithoutAConfigSaysWhatToDo: the first run of a bare
// binary is a guide, not "no such file".
func TestCLI_BareTollgateWithoutAConfigSaysWhatToDo(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"-config", filepath.Join(t.TempDir(), "config.yaml")}, &out, &errb)
	if err == nil {
		t.Fatal("no error without a config")
	}
	for _, want := range []string{"no config at ", "tollgate demo", "tollgate -config FILE", "tollgate help"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
}

// TestGoInstallable: `go install github.com/tollgate/tollgate/cmd/tollgate@latest`
// refuses a module whose go.mod has replace or exclude directives, and
// installs under the module path, which must be the one the README names.
func TestGoInstallable(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) > 0 && (f[0] == "replace" || f[0] == "exclude") {
			t.Errorf("go.mod: %q breaks go install …@latest", line)
		}
	}
	if !strings.HasPrefix(string(mod), "module github.com/tollgate/tollgate\n") {
		t.Errorf("go.mod's module path is not github.com/tollgate/tollgate")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "go install github.com/tollgate/tollgate/cmd/tollgate@latest") {
		t.Error("the README does not show go install")
	}
}

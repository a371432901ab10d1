// Command tollgate is a reverse proxy that puts a Clerk sign-in and a Stripe
// subscription paywall in front of an unmodified web app.
//
// Run "tollgate help" for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tollgate:", err)
		}
		os.Exit(exitCode(err))
	}
}

// errUsage marks a mistake in the command line (exit status 2).
var errUsage = errors.New("usage")

// exitCode is the exit status for run's error: 0 for help asked for
// ("tollgate check -h" succeeds, as "tollgate -h" does), 2 for a usage
// mistake, 1 for the rest.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}

// run dispatches a subcommand; it is main without the process around it, so
// tests can drive every command.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 {
		// The flags every CLI answers, before serve's own.
		switch args[0] {
		case "-h", "-help", "--help":
			cmd = "help"
		case "-version", "--version":
			cmd = "version"
		}
	}
	switch cmd {
	case "serve":
		return runServe(ctx, args, stderr)
	case "check":
		return runCheck(args, stdout, stderr)
	case "init":
		return runInit(ctx, args, os.Stdin, stdout, stderr)
	case "demo":
		return runDemo(ctx, args, stdout, stderr)
	case "users":
		return runUsers(ctx, args, stdout, stderr)
	case "sync":
		return runSync(ctx, args, stdout, stderr)
	case "backup":
		return runBackup(ctx, args, stdout, stderr)
	case "keys":
		return runKeys(ctx, args, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, args, stdout, stderr)
	case "store":
		return runStore(ctx, args, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "tollgate", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

const usage = `tollgate: a Clerk sign-in and Stripe paywall in front of any web app.

Usage:
  tollgate [serve] [-config FILE] [-env-file FILE]
                                  run the gateway (default config: ` + defaultConfigPath + `;
                                  -env-file: take ${VAR}s from a VAR=value file, as docker --env-file)
  tollgate init [-dir DIR] [-env-file FILE] [-yes] [-force] [-public-url URL] [-upstream URL]
                [-listen ADDR] [-store-path FILE] [-plan NAME=price_…] [-clerk-…] [-stripe-…]
                                  set up: ask for the URLs, keys and plans, check them online, make the
                                  Stripe webhook endpoint, write config.yaml and tollgate.env
  tollgate check [-config FILE] [-env-file FILE] [-strict] [-online]
                                  validate a config file and report warnings
                                  (-strict: fail on warnings too; -online: try the keys and prices)
  tollgate demo [-addr ADDR] [-dev] run a local demo: app, sandbox Clerk and Stripe, gateway
                                  (-dev: the sandbox Clerk as a development instance)
  tollgate users [-config FILE] [-env-file FILE] [-status S] [-plan P] [--json|--csv]
                                  list users with their customer, plan and status (asks the running gateway)
  tollgate sync [-config FILE] [-env-file FILE] [-customer cus_…|-user user_…]
                                  re-read one customer, or all, from Stripe (asks the running gateway)
  tollgate backup [-config FILE] [-env-file FILE] -o FILE
                                  a consistent copy of the store, from the running gateway
  tollgate keys list|create|revoke [-config FILE] [-env-file FILE] [-subject user_…|org_…]
                [-name NAME] [-scope ROUTE,…|*] [-expires DAYS] [-id key_…] [--json]
                                  list, make (printed once) or revoke API keys, through the running gateway
  tollgate migrate [-config FILE] [-env-file FILE]
                                  apply the PostgreSQL store's schema migrations (serve applies them too)
  tollgate store copy -from bolt:FILE -to DSN
                                  copy a bbolt store into an empty PostgreSQL database, verified by counts
  tollgate healthcheck [-config FILE] [-env-file FILE]
                                  exit 0 if the gateway answers (Docker HEALTHCHECK)
  tollgate version                print the version (also --version)

Run "tollgate COMMAND -h" for all of a command's flags. New here? "tollgate demo"
runs everything locally; "tollgate init" and the README's quickstart set up a
real deployment.
`

// newFlagSet is a subcommand's flags; its -h says what the command does
// (summary) before listing them.
func newFlagSet(name, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tollgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tollgate %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

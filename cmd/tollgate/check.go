package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/stripe"
)

func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "Validates a config file: every mistake with its line, then warnings. Opens nothing and calls nobody unless -online.", stderr)
	src := configFlags(fs, "path to the YAML config")
	online := fs.Bool("online", false, "also confirm the Clerk and Stripe keys work, every configured price exists, is active and of the right kind, and a PostgreSQL store answers (its schema version)")
	strict := fs.Bool("strict", false, "exit non-zero when there are warnings, so that CI fails on them")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := src.load()
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if *online {
		if err := checkOnline(cfg, stdout); err != nil {
			return err
		}
	}
	if *strict && len(cfg.Warnings) > 0 {
		return fmt.Errorf("%s: %s; -strict fails on warnings", src.path, countOf(len(cfg.Warnings), "warning"))
	}
	fmt.Fprintf(stdout, "%s: ok (%s, %s, %s)\n", src.path, countOf(len(cfg.Routes.Rules), "route"),
		countOf(len(cfg.Plans), "plan"), countOf(len(cfg.Warnings), "warning"))
	return nil
}

// countOf says "1 warning", "2 warnings", "0 warnings".
func countOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// checkOnline calls Clerk and Stripe with the configured keys: the keys
// work, the prices exist, are active and of the right kind, and test and
// live keys are not mixed; with store.driver postgres it connects to the
// database and reports its schema version. It changes nothing.
func checkOnline(cfg *proxy.Config, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var problems []error
	if cfg.Clerk.PublishableKey != "" {
		cc, err := clerk.New(clerkConfig(cfg))
		if err == nil {
			err = cc.Ready(ctx)
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("clerk: %w", err))
		} else {
			fmt.Fprintln(stdout, "clerk: keys work")
		}
	}
	if cfg.Stripe.SecretKey != "" {
		clerkLive := strings.HasPrefix(cfg.Clerk.PublishableKey, "pk_live_")
		stripeLive := strings.Contains(cfg.Stripe.SecretKey, "_live_")
		if cfg.Clerk.PublishableKey != "" && clerkLive != stripeLive {
			// Clerk's publishable and secret keys are checked against each
			// other by the config; across services a mix may be deliberate
			// (a staging site on production sign-in), so say it, loudly.
			fmt.Fprintf(stdout, "warning: keys mixed: a Clerk %s instance with a Stripe %s key\n", liveOrTest(clerkLive), liveOrTest(stripeLive))
		}
		if err := stripe.CheckKey(ctx, stripeConfig(cfg)); err != nil {
			problems = append(problems, fmt.Errorf("stripe: %w", err))
		} else {
			fmt.Fprintln(stdout, "stripe: key works; every configured price exists, is active and of the right kind")
		}
	}
	if msg, err := checkStoreOnline(ctx, cfg.Store); err != nil {
		problems = append(problems, err)
	} else if msg != "" {
		fmt.Fprintln(stdout, msg)
	}
	return errors.Join(problems...)
}

func liveOrTest(live bool) string {
	if live {
		return "live"
	}
	return "test"
}

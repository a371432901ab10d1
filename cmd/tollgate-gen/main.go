// Command tollgate-gen writes a store of made-up users and subscriptions
// through the store's own API (bolt.Store.Load, a few thousand subjects
// to a transaction), to measure the store and the admin console at scale:
//
//	go run ./cmd/tollgate-gen -n 1000000 -o /tmp/tollgate-1m.db
//	go run ./cmd/tollgate-gen -n 1000000 -profile paying -o /tmp/tollgate-1m-paying.db
//
// What it makes is cmd/internal/storegen's: in the mixed profile (the
// default) most users do not pay and some have two subscriptions; in the
// paying profile every subject is a user with one customer and one
// subscription. The same seed makes the same store.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tollgate/tollgate/cmd/internal/storegen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tollgate-gen:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tollgate-gen", flag.ContinueOnError)
	n := fs.Int("n", 1000, "subjects to make")
	path := fs.String("o", "", "the store file to write (must not exist)")
	seed := fs.Uint64("seed", 1, "random seed")
	batch := fs.Int("batch", 2000, "subjects per transaction")
	profile := fs.String("profile", string(storegen.Mixed), "mixed (a few pay, some twice) or paying (one subscription each)")
	nowFlag := fs.String("now", "", "the store's now, RFC 3339 (default: the current time)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("-o FILE is required")
	}
	if _, err := os.Stat(*path); err == nil {
		return fmt.Errorf("%s exists: tollgate-gen writes a new store", *path)
	}
	now := time.Now().UTC().Truncate(time.Second)
	if *nowFlag != "" {
		t, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			return fmt.Errorf("-now: %w", err)
		}
		now = t
	}
	counts, took, err := storegen.WriteFile(*path, storegen.Options{N: *n, Seed: *seed, Batch: *batch, Now: now, Profile: storegen.Profile(*profile),
		Progress: func(done int) {
			if done%100_000 == 0 || done == *n {
				fmt.Fprintf(out, "%d/%d subjects\n", done, *n)
			}
		}})
	if err != nil {
		return err
	}
	st, err := os.Stat(*path)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s in %s: %d subjects (%d users, %d organisations), %d customers, %d subscriptions; %d bytes, %.0f per subject, %.0f per customer\n",
		*path, took.Round(time.Second), counts.Subjects, counts.Users, counts.Orgs, counts.Customers, counts.Subscriptions,
		st.Size(), float64(st.Size())/float64(max(counts.Subjects, 1)), float64(st.Size())/float64(max(counts.Customers, 1)))
	return nil
}

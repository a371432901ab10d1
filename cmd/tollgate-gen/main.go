// Command tollgate-gen writes a store of made-up users and subscriptions
// through the store's own API (bolt.Store.PutUsers and CommitCustomers, in
// large batches), to measure the admin console at scale:
//
//	go run ./cmd/tollgate-gen -n 1000000 -o /tmp/tollgate-1m.db
//
// Every user is a Clerk user ID with an email and first and last seen
// times over two years; about 60% pay through a Stripe customer with one
// subscription (a few with an older cancelled one too), to the plans pro
// and business, monthly or yearly, in dollars, euros and pounds, in every
// status, a third after a trial; 1% are organisations on the team plan.
// The same seed makes the same store.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
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
	batch := fs.Int("batch", 20000, "subjects per transaction")
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
	s, err := bolt.Open(*path, bolt.Options{NoSync: true, Now: func() time.Time { return now }})
	if err != nil {
		return err
	}
	g := gen{r: rand.New(rand.NewPCG(*seed, 0x7011)), now: now}
	start := time.Now()
	ctx := context.Background()
	for from := 0; from < *n; from += *batch {
		to := min(from+*batch, *n)
		var users []proxy.User
		var states []proxy.CustomerState
		for i := from; i < to; i++ {
			u, st := g.subject(i)
			if u != nil {
				users = append(users, *u)
			}
			if st != nil {
				states = append(states, *st)
			}
		}
		if err := s.CommitCustomers(ctx, states); err != nil {
			return errors.Join(err, s.Close())
		}
		if err := s.PutUsers(ctx, users); err != nil {
			return errors.Join(err, s.Close())
		}
		fmt.Fprintf(out, "%d/%d subjects (%s)\n", to, *n, time.Since(start).Round(time.Second))
	}
	if err := s.Close(); err != nil {
		return err
	}
	// The bulk load skipped fsync: sync the file once, whole.
	f, err := os.OpenFile(*path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return errors.Join(err, f.Close())
	}
	if err := f.Close(); err != nil {
		return err
	}
	st, err := os.Stat(*path)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s: %d subjects, %d MiB, in %s\n", *path, *n, st.Size()>>20, time.Since(start).Round(time.Second))
	return nil
}

type gen struct {
	r   *rand.Rand
	now time.Time
}

var (
	firstNames = []string{"ada", "grace", "alan", "edsger", "barbara", "ken", "dennis", "margaret", "linus", "radia", "john", "frances"}
	domains    = []string{"example.com", "example.org", "mail.test", "corp.example", "uni.test"}
)

// pick returns one of weights' indexes, each as likely as its weight.
func (g *gen) pick(weights ...int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := g.r.IntN(total)
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// ago is a time up to d before now.
func (g *gen) ago(d time.Duration) time.Time {
	return g.now.Add(-time.Duration(g.r.Int64N(int64(d)))).Truncate(time.Second)
}

// subject makes subject i: a user (nil for an organisation) and its
// customer (nil for one who does not pay).
func (g *gen) subject(i int) (*proxy.User, *proxy.CustomerState) {
	const span = 2 * 365 * 24 * time.Hour
	id := fmt.Sprintf("%07d%04x", i, g.r.Uint32()&0xffff)
	if g.r.IntN(100) == 0 {
		org := proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_" + id}
		return nil, &proxy.CustomerState{CustomerID: "cus_" + id, Subject: org, Email: "billing@" + domains[g.r.IntN(len(domains))],
			Subscriptions: []proxy.Subscription{g.subscription(id, "team", g.ago(span))}}
	}
	first := g.ago(span)
	last := first.Add(time.Duration(g.r.Int64N(int64(g.now.Sub(first)) + 1))).Truncate(time.Second)
	u := &proxy.User{ID: "user_" + id, Email: fmt.Sprintf("%s.%d@%s", firstNames[g.r.IntN(len(firstNames))], i, domains[g.r.IntN(len(domains))]),
		FirstSeen: first, LastSeen: last}
	if g.r.IntN(100) >= 60 {
		return u, nil
	}
	plan := []string{"pro", "business"}[g.pick(3, 1)]
	subs := []proxy.Subscription{g.subscription(id, plan, first.Add(time.Duration(g.r.Int64N(int64(g.now.Sub(first))+1))))}
	if g.r.IntN(10) == 0 {
		old := g.subscription(id+"old", plan, first)
		old.Status, old.EndedAt = proxy.StatusCanceled, old.Created.Add(time.Duration(g.r.Int64N(int64(g.now.Sub(old.Created))+1)))
		subs = append(subs, old)
	}
	return u, &proxy.CustomerState{CustomerID: "cus_" + id, Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: u.ID}, Email: u.Email, Subscriptions: subs}
}

// subscription makes one subscription to plan created at created.
func (g *gen) subscription(id, plan string, created time.Time) proxy.Subscription {
	s := proxy.Subscription{ID: "sub_" + id, CustomerID: "cus_" + id, Plan: plan, PriceIDs: []string{"price_" + plan}, Created: created,
		Currency: []string{"usd", "eur", "gbp"}[g.pick(16, 3, 1)], Interval: "month", IntervalCount: 1, SyncedAt: g.now}
	s.Amount = map[string]int64{"pro": 1200, "business": 4900, "team": 9900}[plan]
	if g.r.IntN(4) == 0 {
		s.Interval, s.Amount = "year", s.Amount*10
	}
	if g.r.IntN(3) == 0 {
		s.TrialEnd = created.Add(7 * 24 * time.Hour)
	}
	s.Status = proxy.Statuses()[g.pick(70, 6, 4, 1, 1, 1, 1, 16)]
	switch {
	case s.Status == proxy.StatusTrialing:
		s.Created = g.ago(6 * 24 * time.Hour)
		s.TrialEnd = s.Created.Add(7 * 24 * time.Hour)
	case s.Status == proxy.StatusCanceled:
		s.EndedAt = created.Add(time.Duration(g.r.Int64N(int64(g.now.Sub(created)) + 1))).Truncate(time.Second)
	}
	s.CurrentPeriodEnd = g.now.Add(time.Duration(g.r.Int64N(int64(30 * 24 * time.Hour)))).Truncate(time.Second)
	return s
}

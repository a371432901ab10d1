// Package storegen writes a store of made-up users and subscriptions
// through the store's own API (bolt.Store.Load, a few thousand subjects to
// a transaction), for tollgate-gen and tollgate-load's million-user
// scenario.
//
// Subjects join over two years in the order of their IDs, as Clerk's IDs
// are handed out in time order, and each is seen last at some time since.
// In the mixed profile about 60% of users pay through a Stripe customer
// with one subscription (a tenth of them with an older cancelled one
// too), to the plans pro and business, monthly or yearly, in dollars,
// euros and pounds, in every status, a third after a trial; 1% of
// subjects are organisations on the team plan. In the paying profile
// every subject is a user whose customer has exactly one subscription.
// The same seed makes the same store.
package storegen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
)

// Profile is what kind of subjects a store holds.
type Profile string

const (
	Mixed  Profile = "mixed"
	Paying Profile = "paying"
)

// Options say what to make.
type Options struct {
	N       int    // subjects
	Seed    uint64 // the same seed makes the same store
	Batch   int    // subjects per transaction; default 2,000
	Now     time.Time
	Profile Profile // default Mixed
	// Progress, if set, hears after each transaction how many subjects
	// are written.
	Progress func(done int)
}

// Counts is what a generation wrote.
type Counts struct {
	Subjects, Users, Orgs, Customers, Subscriptions int
}

// Generate writes opts.N subjects into s: the organisations first, then
// the users, each in the order of their IDs, so every bucket keyed by them
// is written at its end. The next batch is made while one commits.
func Generate(ctx context.Context, s *bolt.Store, opts Options) (Counts, error) {
	if opts.Batch <= 0 {
		opts.Batch = 2000
	}
	if opts.Profile == "" {
		opts.Profile = Mixed
	}
	if opts.Profile != Mixed && opts.Profile != Paying {
		return Counts{}, fmt.Errorf("unknown profile %q (mixed, paying)", opts.Profile)
	}
	type batch struct {
		users  []proxy.User
		states []proxy.CustomerState
		n      int
	}
	batches := make(chan batch, 1)
	stop := make(chan struct{})
	defer close(stop)
	var counts Counts
	go func() {
		defer close(batches)
		g := gen{opts: opts, first: opts.Now.Add(-span)}
		var b batch
		flush := func() bool {
			select {
			case batches <- b:
			case <-stop:
				return false
			}
			b = batch{}
			return true
		}
		for _, orgs := range []bool{true, false} {
			for i := range opts.N {
				u, st, ok := g.subject(i, orgs)
				if !ok {
					continue
				}
				counts.Subjects++
				if u != nil {
					b.users = append(b.users, *u)
					counts.Users++
				} else {
					counts.Orgs++
				}
				if st != nil {
					b.states = append(b.states, *st)
					counts.Customers++
					counts.Subscriptions += len(st.Subscriptions)
				}
				if b.n++; b.n == opts.Batch && !flush() {
					return
				}
			}
		}
		if b.n > 0 {
			flush()
		}
	}()
	done := 0
	for b := range batches {
		if err := s.Load(ctx, b.users, b.states); err != nil {
			return Counts{}, err
		}
		done += b.n
		if opts.Progress != nil {
			opts.Progress(done)
		}
	}
	return counts, nil
}

// span is how long ago the first subject joined.
const span = 2 * 365 * 24 * time.Hour

type gen struct {
	opts      Options
	first     time.Time // when subject 0 joined
	customers int       // customers made so far: their IDs follow in order
}

var (
	firstNames = []string{"ada", "grace", "alan", "edsger", "barbara", "ken", "dennis", "margaret", "linus", "radia", "john", "frances"}
	domains    = []string{"example.com", "example.org", "mail.test", "corp.example", "uni.test"}
)

// pick returns one of weights' indexes, each as likely as its weight.
func pick(r *rand.Rand, weights ...int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := r.IntN(total)
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// between is a time in [from, to), to the second.
func between(r *rand.Rand, from, to time.Time) time.Time {
	if !to.After(from) {
		return from.Truncate(time.Second)
	}
	return from.Add(time.Duration(r.Int64N(int64(to.Sub(from))))).Truncate(time.Second)
}

// subject makes subject i if it is of the kind asked for (an
// organisation, or a user): the user (nil for an organisation) and its
// customer (nil for a user who does not pay). Each subject draws from its
// own random stream, so the two passes agree on it.
func (g *gen) subject(i int, org bool) (*proxy.User, *proxy.CustomerState, bool) {
	r := rand.New(rand.NewPCG(g.opts.Seed, uint64(i)))
	isOrg := g.opts.Profile == Mixed && r.IntN(100) == 0
	if isOrg != org {
		return nil, nil, false
	}
	id := fmt.Sprintf("%07d%04x", i, r.Uint32()&0xffff)
	// Subject i joins at its share of the span, give or take a little.
	step := span / time.Duration(max(g.opts.N, 1))
	joined := between(r, g.first.Add(time.Duration(i)*step), g.first.Add(time.Duration(i+1)*step))
	now := g.opts.Now
	if isOrg {
		org := proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_" + id}
		cus := g.customer(r)
		return nil, &proxy.CustomerState{CustomerID: cus, Subject: org, Email: "billing@" + domains[r.IntN(len(domains))],
			Subscriptions: []proxy.Subscription{g.subscription(r, cus, "sub_"+cus[4:], "team", joined)}}, true
	}
	// Emails in no order, as people's are (not unique: a search finds
	// several).
	u := &proxy.User{ID: "user_" + id, Email: fmt.Sprintf("%s.%d@%s", firstNames[r.IntN(len(firstNames))], r.IntN(10_000_000), domains[r.IntN(len(domains))]),
		FirstSeen: joined, LastSeen: between(r, joined, now.Add(time.Second))}
	if g.opts.Profile == Mixed && r.IntN(100) >= 60 {
		return u, nil, true
	}
	plan := []string{"pro", "business"}[pick(r, 3, 1)]
	cus := g.customer(r)
	subs := []proxy.Subscription{g.subscription(r, cus, "sub_"+cus[4:], plan, between(r, joined, now.Add(time.Second)))}
	if g.opts.Profile == Mixed && r.IntN(10) == 0 {
		old := g.subscription(r, cus, "sub_"+cus[4:]+"old", plan, joined)
		old.Status, old.EndedAt = proxy.StatusCanceled, between(r, old.Created, now.Add(time.Second))
		subs = append(subs, old)
	}
	return u, &proxy.CustomerState{CustomerID: cus, Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: u.ID}, Email: u.Email, Subscriptions: subs}, true
}

// customer is the next customer's ID: Stripe's are random, these follow
// the order they are written in, as the subjects' do.
func (g *gen) customer(r *rand.Rand) string {
	g.customers++
	return fmt.Sprintf("cus_%07d%04x", g.customers, r.Uint32()&0xffff)
}

// subscription makes one subscription to plan created at created.
func (g *gen) subscription(r *rand.Rand, cus, id, plan string, created time.Time) proxy.Subscription {
	now := g.opts.Now
	s := proxy.Subscription{ID: id, CustomerID: cus, Plan: plan, PriceIDs: []string{"price_" + plan}, Created: created,
		Currency: []string{"usd", "eur", "gbp"}[pick(r, 16, 3, 1)], Interval: "month", IntervalCount: 1, SyncedAt: now}
	s.Amount = map[string]int64{"pro": 1200, "business": 4900, "team": 9900}[plan]
	if r.IntN(4) == 0 {
		s.Interval, s.Amount = "year", s.Amount*10
	}
	if r.IntN(3) == 0 {
		s.TrialEnd = created.Add(7 * 24 * time.Hour)
	}
	s.Status = proxy.Statuses()[pick(r, 70, 6, 4, 1, 1, 1, 1, 16)]
	switch s.Status {
	case proxy.StatusTrialing:
		s.Created = between(r, now.Add(-6*24*time.Hour), now)
		s.TrialEnd = s.Created.Add(7 * 24 * time.Hour)
	case proxy.StatusCanceled:
		s.EndedAt = between(r, created, now.Add(time.Second))
	}
	s.CurrentPeriodEnd = between(r, now, now.Add(30*24*time.Hour))
	return s
}

// WriteFile makes a new store at path as opts say, without an fsync per
// transaction (a crash may lose a new file, never an old one), then syncs
// the file once, whole.
func WriteFile(path string, opts Options) (Counts, time.Duration, error) {
	start := time.Now()
	if _, err := os.Stat(path); err == nil {
		return Counts{}, 0, fmt.Errorf("%s exists: a store is generated into a new file", path)
	}
	s, err := bolt.Open(path, bolt.Options{NoSync: true, Now: func() time.Time { return opts.Now }})
	if err != nil {
		return Counts{}, 0, err
	}
	counts, err := Generate(context.Background(), s, opts)
	if err = errors.Join(err, s.Close()); err != nil {
		return Counts{}, 0, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return Counts{}, 0, err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return Counts{}, 0, err
	}
	return counts, time.Since(start), nil
}

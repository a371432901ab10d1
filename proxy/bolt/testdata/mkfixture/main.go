// Command mkfixture writes the store fixtures the migration test opens
// (proxy/bolt/testdata/schema*.db) with the tollgate of the schema they
// hold, and the answers that tollgate gave about them (schema*.json),
// which package dump reads, for mkfixture and for the test alike. It lives
// under testdata, which the go tool's patterns skip: copy it to the same
// place in a checkout of the commit whose format the fixture keeps, and
// run it there by its path:
//
//	git archive 9a3b880 | tar -x -C /tmp/old3   # schema 3
//	cp -r proxy/bolt/testdata/mkfixture /tmp/old3/proxy/bolt/testdata/
//	cd /tmp/old3 && go run ./proxy/bolt/testdata/mkfixture -o schema3
//
//	git archive 1f6a4b9 | tar -x -C /tmp/old2   # schema 2, with API keys and dirty marks
//	cp -r proxy/bolt/testdata/mkfixture /tmp/old2/proxy/bolt/testdata/
//	cd /tmp/old2 && go run ./proxy/bolt/testdata/mkfixture -o schema2
//
//	git archive 6b9c994 | tar -x -C /tmp/old1   # schema 1
//	cp -r proxy/bolt/testdata/mkfixture /tmp/old1/proxy/bolt/testdata/
//	cd /tmp/old1 && go run -tags schema1 ./proxy/bolt/testdata/mkfixture -o schema1
//
// It uses only the store's API, which every schema keeps.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
	"github.com/tollgate/tollgate/proxy/bolt/testdata/mkfixture/dump"
)

// now is the fixture's clock; the migration test opens it at the same now.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func main() {
	out := flag.String("o", "", "the files to write: OUT.db and OUT.json")
	flag.Parse()
	if *out == "" {
		log.Fatal("-o is required")
	}
	_ = os.Remove(*out + ".db")
	clock := now
	s, err := bolt.Open(*out+".db", bolt.Options{Now: func() time.Time { return clock }})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	at := func(d time.Duration) time.Time { return now.Add(d) }
	user := func(id string) proxy.Subject { return proxy.Subject{Kind: proxy.SubjectUser, ID: id} }
	org := proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"}
	sub := func(id, cus string, st proxy.SubscriptionStatus, plan string) proxy.Subscription {
		return proxy.Subscription{ID: id, CustomerID: cus, Status: st, PriceIDs: []string{"price_" + plan}, Plan: plan,
			CurrentPeriodEnd: at(20 * 24 * time.Hour), SyncedAt: at(-time.Minute), Amount: 1200, Currency: "usd",
			Interval: "month", IntervalCount: 1, Created: at(-40 * 24 * time.Hour)}
	}
	commit := func(st proxy.CustomerState, evt string) {
		_, _, err := s.CommitCustomer(ctx, st, evt)
		must(err)
	}

	// Users, with sub-second sightings and a long email.
	must(s.PutUser(ctx, proxy.User{ID: "user_ada", Email: "Ada@Example.com", FirstSeen: at(-30 * 24 * time.Hour), LastSeen: at(-time.Hour + 123456789)}))
	must(s.PutUser(ctx, proxy.User{ID: "user_bob", Email: "bob@example.com", FirstSeen: at(-20 * 24 * time.Hour), LastSeen: at(-2 * time.Hour)}))
	must(s.PutUser(ctx, proxy.User{ID: "user_cy", Email: "cy@example.org", FirstSeen: at(-10 * 24 * time.Hour), LastSeen: at(-3 * time.Hour)}))
	must(s.PutUser(ctx, proxy.User{ID: "user_dee", Email: "dee@example.net"}))
	must(s.PutUser(ctx, proxy.User{ID: "user_long", Email: strings.Repeat("l", 140) + "@example.com", LastSeen: at(-5 * time.Hour)}))
	must(s.PutOrg(ctx, proxy.Org{ID: "org_acme", Slug: "acme", Name: "Acme"}))
	must(s.PutMembership(ctx, "org_acme", "user_ada", "org:admin"))
	must(s.PutMembership(ctx, "org_acme", "user_bob", "org:member"))
	must(s.DeleteMembership(ctx, "org_acme", "user_bob"))

	// Ada: a pro subscription that began as a trial, and a team trial.
	trial := sub("sub_ada1", "cus_ada", proxy.StatusTrialing, "pro")
	trial.TrialEnd = at(-33 * 24 * time.Hour)
	commit(proxy.CustomerState{CustomerID: "cus_ada", Subject: user("user_ada"), Email: "ada@billing.test", SyncedAt: at(-35 * 24 * time.Hour),
		Subscriptions: []proxy.Subscription{trial}}, "evt_1")
	active := trial
	active.Status, active.CancelAtPeriodEnd, active.PriceIDs = proxy.StatusActive, true, []string{"price_pro", "price_seat"}
	team := sub("sub_ada2", "cus_ada", proxy.StatusTrialing, "team")
	team.TrialEnd, team.Currency, team.Interval, team.Amount = at(5*24*time.Hour), "eur", "year", 99000
	commit(proxy.CustomerState{CustomerID: "cus_ada", Subscriptions: []proxy.Subscription{active, team}}, "evt_2")
	// Bob: past due, then paused collection.
	pd := sub("sub_bob", "cus_bob", proxy.StatusPastDue, "pro")
	commit(proxy.CustomerState{CustomerID: "cus_bob", Subject: user("user_bob"), Email: "bob@example.com", SyncedAt: at(-48 * time.Hour),
		Subscriptions: []proxy.Subscription{pd}}, "")
	pd.PausedCollection, pd.CollectionResumesAt = "keep_as_draft", at(72*time.Hour)
	commit(proxy.CustomerState{CustomerID: "cus_bob", SyncedAt: at(-time.Hour), Subscriptions: []proxy.Subscription{pd}}, "evt_3")
	// Cy: comps only, one of them revoked.
	must(s.PutComp(ctx, proxy.Comp{ID: "comp_cy1", Subject: user("user_cy"), Plan: "team", ExpiresAt: at(10 * 24 * time.Hour), By: "admin:grace", Reason: "beta"}))
	must(s.PutComp(ctx, proxy.Comp{ID: "comp_cy2", Subject: user("user_cy"), Plan: "pro", ExpiresAt: at(24 * time.Hour), By: "admin:grace"}))
	must(s.RevokeComp(ctx, "comp_cy2", "admin:grace", "mistake"))
	// Dee: a customer, then the Clerk user deleted (the customer stays).
	commit(proxy.CustomerState{CustomerID: "cus_dee", Subject: user("user_dee"), Subscriptions: []proxy.Subscription{sub("sub_dee", "cus_dee", proxy.StatusCanceled, "pro")}}, "")
	must(s.DeleteUser(ctx, "user_dee"))
	// The organisation's team plan; an expired comp on it.
	commit(proxy.CustomerState{CustomerID: "cus_acme", Subject: org, Email: "billing@acme.test",
		Subscriptions: []proxy.Subscription{sub("sub_acme", "cus_acme", proxy.StatusActive, "team")}}, "")
	must(s.PutComp(ctx, proxy.Comp{ID: "comp_acme", Subject: org, Plan: "pro", ExpiresAt: at(-time.Hour), CreatedAt: at(-48 * time.Hour)}))
	// Eve's customer was deleted in Stripe; an orphan no one claims; Fay
	// linked at Checkout and never synced; Gus's customer moved to Hal.
	commit(proxy.CustomerState{CustomerID: "cus_eve", Subject: user("user_eve"), Subscriptions: []proxy.Subscription{sub("sub_eve", "cus_eve", proxy.StatusActive, "pro")}}, "")
	commit(proxy.CustomerState{CustomerID: "cus_eve", Deleted: true}, "evt_4")
	commit(proxy.CustomerState{CustomerID: "cus_orphan", Email: "who@example.com", Subscriptions: []proxy.Subscription{sub("sub_orphan", "cus_orphan", proxy.StatusUnpaid, "pro")}}, "")
	must(s.LinkCustomer(ctx, user("user_fay"), "cus_fay"))
	commit(proxy.CustomerState{CustomerID: "cus_gus", Subject: user("user_gus"), Subscriptions: []proxy.Subscription{sub("sub_gus", "cus_gus", proxy.StatusIncomplete, "pro")}}, "")
	must(s.LinkCustomer(ctx, user("user_hal"), "cus_gus"))
	odd := sub("sub_odd", "cus_odd", "some_future_status", "")
	odd.PriceIDs = nil
	commit(proxy.CustomerState{CustomerID: "cus_odd", Subject: user("user_odd"), Subscriptions: []proxy.Subscription{odd}}, "")

	must(s.RecordSeen(ctx, map[string]time.Time{"user_ada": at(-30 * time.Minute), "user_ivy": at(-4 * time.Hour), "user_gus": at(-6 * time.Hour)}))
	must(s.MarkEvent(ctx, "evt_ignored"))
	must(s.SetCursor(ctx, "sync_all", "sub_ada2"))
	must(s.Audit(ctx, proxy.AuditEntry{Actor: "admin:grace", Action: "comp.granted", Subject: user("user_cy"), Detail: "team until …"}))
	must(s.Audit(ctx, proxy.AuditEntry{At: at(-time.Hour), Actor: "admin-token", Action: "sync.all"}))
	must(s.AddRevocation(ctx, proxy.Revocation{Kind: proxy.RevocationSession, ID: "sess_1", At: at(-time.Minute), Expires: at(time.Hour)}))
	must(s.AddRevocation(ctx, proxy.Revocation{Kind: proxy.RevocationUser, UserID: "user_bob", At: at(-time.Minute), Expires: at(2 * time.Hour)}))
	must(writeExtras(ctx, s))
	must(s.Close())

	s, err = bolt.Open(*out+".db", bolt.Options{Now: func() time.Time { return clock }})
	if err != nil {
		log.Fatal(err)
	}
	d, err := dump.Take(ctx, s, now)
	must(err)
	must(s.Close())
	b, err := json.MarshalIndent(d, "", " ")
	must(err)
	must(os.WriteFile(*out+".json", append(b, '\n'), 0o644))
	fmt.Println("wrote", *out+".db", *out+".json")
}

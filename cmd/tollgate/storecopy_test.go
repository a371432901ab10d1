package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/bolt"
	"github.com/tollgate/tollgate/proxy/postgres"
	"github.com/tollgate/tollgate/proxy/postgres/pgtest"
)

// TestStoreCopy_BoltToPostgres fills a bbolt store with every kind of
// record, copies it with `tollgate store copy`, and holds the PostgreSQL
// store's answers to bbolt's: entitlements, listings, the dashboard, keys,
// revocations, dirty marks, history and audit.
func TestStoreCopy_BoltToPostgres(t *testing.T) {
	cluster := pgtest.Start(t, pgtest.Options{})
	dsn := cluster.NewDB(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	path := filepath.Join(t.TempDir(), "tollgate.db")
	b, err := bolt.Open(path, bolt.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ada, acme := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}, proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.PutUser(ctx, proxy.User{ID: "user_ada", Email: "Ada@example.com", FirstSeen: now.Add(-48 * time.Hour), LastSeen: now}))
	must(b.PutUser(ctx, proxy.User{ID: "user_bob", Email: "bob@example.com", LastSeen: now.Add(-time.Hour)}))
	must(b.PutOrg(ctx, proxy.Org{ID: "org_acme", Slug: "acme", Name: "Acme"}))
	must(b.PutMembership(ctx, "org_acme", "user_ada", "org:admin"))
	sub := func(id, status, plan string) proxy.Subscription {
		return proxy.Subscription{ID: id, Status: proxy.SubscriptionStatus(status), Plan: plan, PriceIDs: []string{"price_" + plan},
			CurrentPeriodEnd: now.Add(30 * 24 * time.Hour), Amount: 1200, Currency: "usd", Interval: "month", IntervalCount: 1, Created: now.Add(-time.Hour)}
	}
	_, _, err = b.CommitCustomer(ctx, proxy.CustomerState{CustomerID: "cus_ada", Subject: ada, Email: "ada@example.com",
		Subscriptions: []proxy.Subscription{sub("sub_1", "trialing", "pro")}}, "evt_1")
	must(err)
	_, _, err = b.CommitCustomer(ctx, proxy.CustomerState{CustomerID: "cus_ada", Subscriptions: []proxy.Subscription{sub("sub_1", "active", "pro")}}, "evt_2")
	must(err)
	_, _, err = b.CommitCustomer(ctx, proxy.CustomerState{CustomerID: "cus_acme", Subject: acme, Subscriptions: []proxy.Subscription{sub("sub_2", "past_due", "team")}}, "")
	must(err)
	_, _, err = b.CommitCustomer(ctx, proxy.CustomerState{CustomerID: "cus_nobody", Subscriptions: []proxy.Subscription{sub("sub_3", "canceled", "pro")}}, "")
	must(err)
	must(b.PutComp(ctx, proxy.Comp{ID: "comp_1", Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_bob"}, Plan: "pro", ExpiresAt: now.Add(time.Hour), By: "admin", Reason: "friend"}))
	must(b.Audit(ctx, proxy.AuditEntry{Actor: "admin", Action: "comp.granted", Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: "user_bob"}, Detail: "pro"}))
	must(b.MarkEvent(ctx, "svix:msg_1"))
	must(b.SetCursor(ctx, "reconcile", "sub_2"))
	must(b.AddRevocation(ctx, proxy.Revocation{Kind: proxy.RevocationSession, ID: "sess_1", At: now, Expires: now.Add(time.Hour)}))
	key, rec, err := proxy.NewAPIKey(false, now)
	must(err)
	rec.Subject, rec.Name, rec.Scopes, rec.CreatedBy = ada, "ci", []string{"*"}, "user_ada"
	must(b.CreateAPIKey(ctx, rec, 0))
	must(b.MarkDirty(ctx, "cus_acme", "evt_3"))
	// Clerk's ordering: Ada's user at now, Ada's membership of Acme
	// deleted at now (a tombstone).
	for _, v := range []struct {
		key     string
		deleted bool
	}{{proxy.ClerkUserKey("user_ada"), false}, {proxy.ClerkMembershipKey("org_acme", "user_ada"), true}} {
		if ok, err := b.OrderClerk(ctx, v.key, now, v.deleted); err != nil || !ok {
			t.Fatalf("bolt OrderClerk %s: %v %v", v.key, ok, err)
		}
	}
	must(b.Close())

	var out bytes.Buffer
	if err := runStoreCopy(ctx, []string{"-from", "bolt:" + path, "-to", dsn}, &out, &out); err != nil {
		t.Fatalf("store copy: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "every count matches") {
		t.Errorf("store copy printed:\n%s", out.String())
	}
	if !regexp.MustCompile(`(?m)^Clerk versions +2 +2$`).MatchString(out.String()) {
		t.Errorf("store copy did not count the Clerk versions (2 on each side):\n%s", out.String())
	}
	t.Logf("tollgate store copy:\n%s", out.String())
	// A second copy into the same database is refused.
	if err := runStoreCopy(ctx, []string{"-from", "bolt:" + path, "-to", dsn}, &out, &out); err == nil {
		t.Error("a copy into a database that holds a store succeeded")
	}

	b, err = bolt.Open(path, bolt.Options{Now: func() time.Time { return now }})
	must(err)
	defer b.Close()
	p, err := postgres.Open(ctx, dsn, postgres.Options{Now: func() time.Time { return now }})
	must(err)
	defer p.Close()
	opts := cmp.Options{cmpopts.EquateEmpty(), cmpopts.EquateApproxTime(time.Microsecond)}
	same := func(what string, want, got any, more ...cmp.Option) {
		t.Helper()
		if d := cmp.Diff(want, got, append(opts, more...)); d != "" {
			t.Errorf("%s (-bolt +postgres):\n%s", what, d)
		}
	}
	for _, s := range []proxy.Subject{ada, acme, {Kind: proxy.SubjectUser, ID: "user_bob"}} {
		we, err := b.Entitlements(ctx, s)
		must(err)
		ge, err := p.Entitlements(ctx, s)
		must(err)
		same("entitlements of "+s.String(), we, ge)
		wd, err := b.UserDetail(ctx, s, 100)
		must(err)
		gd, err := p.UserDetail(ctx, s, 100)
		must(err)
		same("detail of "+s.String(), wd, gd)
	}
	for _, f := range []proxy.UserFilter{{}, {Sort: proxy.SortEmail}, {Sort: proxy.SortStatus, Desc: true}, {Status: "active"}, {Plan: "team"}, {Query: "ada"}} {
		wp, err := b.ListPage(ctx, f)
		must(err)
		gp, err := p.ListPage(ctx, f)
		must(err)
		same("listing", wp.Users, gp.Users)
		if wp.Total != gp.Total {
			t.Errorf("listing %+v: total %d, postgres %d", f, wp.Total, gp.Total)
		}
	}
	wdash, err := b.Dashboard(ctx)
	must(err)
	gdash, err := p.Dashboard(ctx)
	must(err)
	same("dashboard", wdash, gdash, cmp.Exporter(func(reflect.Type) bool { return true }))
	gk, err := p.APIKeyByHash(ctx, proxy.HashAPIKey(key))
	must(err)
	same("api key", rec, gk)
	wr, err := b.Revocations(ctx, now)
	must(err)
	gr, err := p.Revocations(ctx, now)
	must(err)
	same("revocations", wr, gr)
	wm, _, err := b.DirtyDue(ctx, now.Add(time.Hour), 10)
	must(err)
	gm, _, err := p.DirtyDue(ctx, now.Add(time.Hour), 10)
	must(err)
	same("dirty marks", wm, gm, cmpopts.IgnoreFields(proxy.DirtyMark{}, "Seq"))
	for _, id := range []string{"evt_1", "evt_2", "evt_3", "svix:msg_1"} {
		if done, err := p.EventProcessed(ctx, id); err != nil || !done {
			t.Errorf("event %s not copied: %v %v", id, done, err)
		}
	}
	if c, err := p.Cursor(ctx, "reconcile"); err != nil || c != "sub_2" {
		t.Errorf("cursor = %q, %v", c, err)
	}
	// The Clerk versions came along: a message older than the copied
	// version is refused, an older creation does not undo the tombstone,
	// and a newer message applies.
	for _, v := range []struct {
		key     string
		at      time.Time
		deleted bool
		want    bool
	}{
		{proxy.ClerkUserKey("user_ada"), now.Add(-time.Minute), false, false},
		{proxy.ClerkMembershipKey("org_acme", "user_ada"), now.Add(-time.Minute), false, false},
		{proxy.ClerkUserKey("user_ada"), now.Add(time.Minute), false, true},
	} {
		if ok, err := p.OrderClerk(ctx, v.key, v.at, v.deleted); err != nil || ok != v.want {
			t.Errorf("postgres OrderClerk %s at %s after the copy: %v %v, want %v", v.key, v.at.Sub(now), ok, err, v.want)
		}
	}
}

// TestComposeReplicas_TwoReplicasOnPostgres: the several-replica compose
// file runs two tollgate replicas on PostgreSQL, each with DATABASE_URL
// and the config directory, waiting for the database to be healthy, and
// the app publishes no port.
func TestComposeReplicas_TwoReplicasOnPostgres(t *testing.T) {
	raw, err := os.ReadFile("../../compose.replicas.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Ports       []string          `yaml:"ports"`
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
			DependsOn   map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	if len(compose.Services["app"].Ports) != 0 {
		t.Errorf("the app publishes %v", compose.Services["app"].Ports)
	}
	if !strings.HasPrefix(compose.Services["postgres"].Image, "postgres:") {
		t.Errorf("postgres service image %q", compose.Services["postgres"].Image)
	}
	ports := map[string]bool{}
	for _, name := range []string{"tollgate-a", "tollgate-b"} {
		s := compose.Services[name]
		if !strings.HasPrefix(s.Environment["DATABASE_URL"], "postgres://") {
			t.Errorf("%s: DATABASE_URL %q", name, s.Environment["DATABASE_URL"])
		}
		if s.DependsOn["postgres"].Condition != "service_healthy" {
			t.Errorf("%s does not wait for a healthy database: %+v", name, s.DependsOn)
		}
		if !slices.Contains(s.Volumes, "./tollgate:/etc/tollgate:ro") {
			t.Errorf("%s volumes %v", name, s.Volumes)
		}
		for _, p := range s.Ports {
			if ports[p] {
				t.Errorf("%s publishes %s twice", name, p)
			}
			ports[p] = true
		}
	}
}

package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate/proxy"
)

// The fixtures under testdata are stores written by the tollgate of each
// past schema (testdata/mkfixture says how), with what that tollgate
// answered about them. Whatever the format becomes, a store of every past
// schema opens and answers the same.

// fixtureNow is the fixtures' clock (mkfixture's now).
var fixtureNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixtureDump is mkfixture's Dump: what a store answers about the fixture.
type fixtureDump struct {
	Details     map[string]proxy.UserDetail
	Ents        map[string]*proxy.Entitlements
	CustomerOf  map[string]string
	SubjectOf   map[string]string
	HadTrial    map[string]bool
	History     map[string][]proxy.HistoryEntry
	Users       []proxy.User
	Orgs        map[string]proxy.Org
	Events      map[string]bool
	Cursors     map[string]string
	Revocations []proxy.Revocation
	Audit       []proxy.AuditEntry
	Listing     *fixtureListing `json:",omitempty"`
	Extras      *fixtureExtras  `json:",omitempty"`
}

// fixtureExtras are what later tollgates of schema 2 added: API keys and
// dirty marks.
type fixtureExtras struct {
	APIKeys map[string][]proxy.APIKey
	Dirty   []proxy.DirtyMark
	Backlog proxy.Backlog
}

type fixtureListing struct {
	Pages     map[string][]string
	Totals    map[string]int64
	Dashboard proxy.Dashboard
}

var (
	fixtureSubjects  = []string{"user_ada", "user_bob", "user_cy", "user_dee", "user_long", "user_eve", "user_fay", "user_gus", "user_hal", "user_odd", "user_ivy", "user_none", "org_acme"}
	fixtureCustomers = []string{"cus_ada", "cus_bob", "cus_dee", "cus_acme", "cus_eve", "cus_orphan", "cus_fay", "cus_gus", "cus_odd", "cus_none"}
)

// takeFixture reads the dump as mkfixture's Take does.
func takeFixture(ctx context.Context, s *Store) (*fixtureDump, error) {
	d := &fixtureDump{Details: map[string]proxy.UserDetail{}, Ents: map[string]*proxy.Entitlements{}, CustomerOf: map[string]string{},
		SubjectOf: map[string]string{}, HadTrial: map[string]bool{}, History: map[string][]proxy.HistoryEntry{}, Orgs: map[string]proxy.Org{},
		Events: map[string]bool{}, Cursors: map[string]string{}}
	for _, id := range fixtureSubjects {
		subject, err := proxy.ParseSubject(id)
		if err != nil {
			return nil, err
		}
		if det, err := s.UserDetail(ctx, subject, 100); err == nil {
			d.Details[id] = det
		}
		if d.Ents[id], err = s.Entitlements(ctx, subject); err != nil {
			return nil, err
		}
		if d.CustomerOf[id], err = s.CustomerOf(ctx, subject); err != nil {
			return nil, err
		}
	}
	for _, c := range fixtureCustomers {
		subj, ok, err := s.SubjectOf(ctx, c)
		if err != nil {
			return nil, err
		}
		if ok {
			d.SubjectOf[c] = subj.String()
		}
		if d.HadTrial[c], err = s.HadTrial(ctx, c); err != nil {
			return nil, err
		}
		if d.History[c], err = s.History(ctx, c, 100); err != nil {
			return nil, err
		}
	}
	var err error
	if d.Users, err = s.Users(ctx, "", 100); err != nil {
		return nil, err
	}
	if o, err := s.Org(ctx, "org_acme"); err == nil {
		d.Orgs["org_acme"] = o
	}
	for _, e := range []string{"evt_1", "evt_2", "evt_3", "evt_4", "evt_ignored", "evt_none"} {
		if d.Events[e], err = s.EventProcessed(ctx, e); err != nil {
			return nil, err
		}
	}
	for _, c := range []string{"sync_all", "none"} {
		if d.Cursors[c], err = s.Cursor(ctx, c); err != nil {
			return nil, err
		}
	}
	if d.Revocations, err = s.Revocations(ctx, fixtureNow); err != nil {
		return nil, err
	}
	if d.Audit, err = s.AuditLog(ctx, proxy.Subject{}, 100); err != nil {
		return nil, err
	}
	if d.Listing, err = takeFixtureListing(ctx, s); err != nil {
		return nil, fmt.Errorf("listing: %w", err)
	}
	e := &fixtureExtras{APIKeys: map[string][]proxy.APIKey{}}
	for _, id := range fixtureSubjects {
		subject, err := proxy.ParseSubject(id)
		if err != nil {
			return nil, err
		}
		if e.APIKeys[id], err = s.APIKeysOf(ctx, subject); err != nil {
			return nil, err
		}
	}
	if e.Dirty, _, err = s.DirtyDue(ctx, fixtureNow.Add(time.Hour), 100); err != nil {
		return nil, err
	}
	if e.Backlog, err = s.DirtyBacklog(ctx); err != nil {
		return nil, err
	}
	d.Extras = e
	return d, nil
}

// takeFixtureListing pages every sort both ways, two at a time, and the
// filters and searches, as mkfixture's takeListing does.
func takeFixtureListing(ctx context.Context, s *Store) (*fixtureListing, error) {
	l := &fixtureListing{Pages: map[string][]string{}, Totals: map[string]int64{}}
	filters := map[string]proxy.UserFilter{}
	for _, sort := range proxy.UserSorts() {
		for _, desc := range []bool{false, true} {
			filters[fmt.Sprintf("sort=%s desc=%v", sort, desc)] = proxy.UserFilter{Sort: sort, Desc: desc}
		}
	}
	for _, st := range []string{"active", "trialing", "past_due", "canceled", "incomplete", "unpaid", "none", "some_future_status"} {
		filters["status="+st] = proxy.UserFilter{Status: st, Sort: proxy.SortEmail}
	}
	for _, p := range []string{"pro", "team"} {
		filters["plan="+p] = proxy.UserFilter{Plan: p, Sort: proxy.SortStatus}
	}
	filters["status=active plan=team"] = proxy.UserFilter{Status: "active", Plan: "team", Sort: proxy.SortFirstSeen, Desc: true}
	for _, q := range []string{"ada", "BOB@", "user_", "user_g", "org_", "cus_", "cus_gus", "llll", "nobody"} {
		filters["query="+q] = proxy.UserFilter{Query: q}
	}
	for name, f := range filters {
		f.Limit = 2
		var ids []string
		for {
			p, err := s.ListPage(ctx, f)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			for _, u := range p.Users {
				ids = append(ids, u.ID)
			}
			l.Totals[name] = p.Total
			if p.Next == "" {
				break
			}
			f.After = p.Next
		}
		l.Pages[name] = ids
	}
	var err error
	l.Dashboard, err = s.Dashboard(ctx)
	return l, err
}

// openFixture opens a copy of a fixture at the fixture's now.
func openFixture(t *testing.T, name string) *Store {
	t.Helper()
	src, err := os.Open(filepath.Join("testdata", name+".db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(t.TempDir(), "tollgate.db")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return openClock(t, path, &clock{now: fixtureNow})
}

// readGolden reads what the fixture's own tollgate answered.
func readGolden(t *testing.T, name string) *fixtureDump {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var d fixtureDump
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

// roundTrip passes a dump through JSON, as the golden one was, so both
// lose the same (unexported fields) and read back the same types.
func roundTrip(t *testing.T, d *fixtureDump) *fixtureDump {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var out fixtureDump
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// A store of every past schema opens and answers as the tollgate that
// wrote it; a schema 1 store, which had no listing, lists as the schema 2
// one of the same users does (its dashboard lacks the amounts schema 1
// did not keep).
func TestOpen_Fixtures(t *testing.T) {
	schema2 := readGolden(t, "schema2")
	for _, name := range []string{"schema1", "schema2"} {
		t.Run(name, func(t *testing.T) {
			s := openFixture(t, name)
			got, err := takeFixture(t.Context(), s)
			if err != nil {
				t.Fatal(err)
			}
			got = roundTrip(t, got)
			want := readGolden(t, name)
			listing := got.Listing
			if want.Listing == nil {
				got.Listing = nil
			}
			if want.Extras == nil {
				got.Extras = nil
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.IgnoreUnexported(proxy.PlanBreakdown{})); diff != "" {
				t.Errorf("answers after opening (-the old tollgate's +now):\n%s", diff)
			}
			if diff := cmp.Diff(schema2.Listing.Pages, listing.Pages, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("listing (-schema 2's +now):\n%s", diff)
			}
			if diff := cmp.Diff(schema2.Listing.Totals, listing.Totals); diff != "" {
				t.Errorf("listing totals (-schema 2's +now):\n%s", diff)
			}
		})
	}
}

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tollgate/tollgate/proxy"
)

// seedAdmin fills a demo store with made-up users and subscriptions of
// the last three months, through the store's own API, so the dashboard
// has something to draw. Ada is among them, without a plan.
// seeder is what seedAdmin writes with: either store.
type seeder interface {
	CommitCustomers(ctx context.Context, states []proxy.CustomerState) error
	PutUsers(ctx context.Context, users []proxy.User) error
}

func seedAdmin(t *testing.T, s seeder, now time.Time) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 7))
	users := []proxy.User{{ID: "user_ada", Email: "ada@example.com", FirstSeen: now.AddDate(0, -2, 0), LastSeen: now.Add(-time.Hour)}}
	var states []proxy.CustomerState
	for i := range 80 {
		id := fmt.Sprintf("user_demo%02d", i)
		created := now.Add(-time.Duration(r.Int64N(int64(85 * 24 * time.Hour)))).Truncate(time.Second)
		users = append(users, proxy.User{ID: id, Email: fmt.Sprintf("person%02d@example.org", i), FirstSeen: created.Add(-time.Hour),
			LastSeen: now.Add(-time.Duration(r.Int64N(int64(72 * time.Hour))))})
		if i%5 == 4 {
			continue // signed in, never paid
		}
		sub := proxy.Subscription{ID: "sub_" + id, CustomerID: "cus_" + id, Plan: "pro", PriceIDs: []string{"price_demo_pro_monthly"},
			Status: proxy.StatusActive, Amount: 1200, Currency: "usd", Interval: "month", IntervalCount: 1, Created: created,
			CurrentPeriodEnd: now.AddDate(0, 0, 1+r.IntN(28))}
		if i%3 == 0 {
			sub.TrialEnd = created.AddDate(0, 0, 7)
		}
		switch {
		case i%11 == 0:
			sub.Status, sub.EndedAt = proxy.StatusCanceled, created.AddDate(0, 0, 7+r.IntN(20))
		case i%13 == 0:
			sub.Status, sub.PastDueSince = proxy.StatusPastDue, now.Add(-time.Hour)
		case i%9 == 0:
			sub.Status, sub.Created, sub.TrialEnd = proxy.StatusTrialing, now.AddDate(0, 0, -2), now.AddDate(0, 0, 5)
		case i%7 == 0:
			sub.Currency, sub.Amount, sub.Interval = "eur", 11000, "year"
		}
		states = append(states, proxy.CustomerState{CustomerID: "cus_" + id, Subject: proxy.Subject{Kind: proxy.SubjectUser, ID: id},
			Email: fmt.Sprintf("person%02d@example.org", i), Subscriptions: []proxy.Subscription{sub}, SyncedAt: now})
	}
	if err := s.CommitCustomers(t.Context(), states); err != nil {
		t.Fatal(err)
	}
	if err := s.PutUsers(t.Context(), users); err != nil {
		t.Fatal(err)
	}
}

// noneClipped fails the test for every visible element of the page that
// reaches past the screen's edge, at a phone's and a desktop's width.
func (b *browser) noneClipped(page string) {
	b.t.Helper()
	for _, vp := range []struct{ w, h int64 }{{390, 844}, {1280, 800}} {
		if err := chromedp.Do(b.ctx, chromedp.EmulateViewport(vp.w, vp.h)); err != nil {
			b.t.Fatal(err)
		}
		out, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('body *')].filter(e => {
			const r = e.getBoundingClientRect();
			return r.width > 0 && r.height > 0 && (r.left < -0.5 || r.right > document.documentElement.clientWidth + 0.5);
		}).slice(0, 5).map(e => e.tagName.toLowerCase() + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().width) + 'px')`))
		if err != nil {
			b.t.Fatal(err)
		}
		if len(out) > 0 {
			b.t.Errorf("%s at %d px: elements past the screen's edge: %v", page, vp.w, out)
		}
	}
}

// typeInto types into the field css matches.
func (b *browser) typeInto(css, text string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.SendKeys(chromedp.CSS(css), text, chromedp.NodeVisible)); err != nil {
		b.t.Fatalf("type into %s: %v", css, err)
	}
}

// TestBrowser_AdminConsole walks the admin console as the demo's admin
// (Grace): the dashboard and its charts, a search for a user, and that
// user's page, where a comp is granted and then revoked; each page at
// 390 and 1280 px, with nothing past the screen's edge.
func TestBrowser_AdminConsole(t *testing.T) {
	b := newBrowser(t)
	d, clk := mustRunDemo(t)
	seedAdmin(t, d.gateway.Store.(seeder), clk.Now())

	if _, loc := b.open(d.URL + "/.tollgate/admin"); !strings.HasPrefix(loc, d.ClerkURL+"/sign-in") {
		t.Fatalf("signed-out admin: at %s, want the sandbox sign-in", loc)
	}
	if code, loc := b.click(`button[name="user_id"][value="user_grace"]`); code != 200 || loc != d.URL+"/.tollgate/admin" {
		t.Fatalf("after sign-in: %d at %s, want the dashboard", code, loc)
	}
	b.mustSay("the dashboard", "Monthly recurring revenue", "$", "€", "Trials, apart", "New and cancelled subscriptions per day",
		"Trial conversion", "Per plan", "Pro")
	charts, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('svg.chart rect[fill^="url(#tg-"]').length`))
	if err != nil || charts == 0 {
		t.Errorf("the charts have no patterned marks (%d, %v)", charts, err)
	}
	b.shoot("admin-dashboard")
	b.noneClipped("the dashboard")
	b.open(d.URL + "/.tollgate/admin?days=90")
	b.mustSay("the 90-day dashboard", "in the last 90 days")

	// The users: all, then a search.
	b.click(`nav a[href="/.tollgate/admin/users"]`)
	b.mustSay("the users", "person", "Export CSV", "Last seen")
	b.shoot("admin-users")
	b.noneClipped("the users")
	b.typeInto(`#q`, "ada@")
	if _, loc := b.click(`form[role="search"] button[type="submit"]`); !strings.Contains(loc, "q=ada%40") {
		t.Fatalf("search: at %s", loc)
	}
	b.mustSay("the search", "ada@example.com", "user_ada")
	b.shoot("admin-search")
	b.noneClipped("the search")

	// Ada's page: grant a comp, then revoke it.
	if _, loc := b.click(`a[href="/.tollgate/admin/users/user_ada"]`); loc != d.URL+"/.tollgate/admin/users/user_ada" {
		t.Fatalf("Ada's page: at %s", loc)
	}
	b.typeInto(`#comp-reason`, "Conference speaker")
	if code, loc := b.click(`form[action$="/comps"] button[type="submit"]`); code != 200 || !strings.HasSuffix(loc, "?done=comp-granted") {
		t.Fatalf("grant: %d at %s", code, loc)
	}
	b.mustSay("Ada's page after the grant", "Comp granted.", "active", "Conference speaker", "comp.granted", "clerk:user_grace")
	b.shoot("admin-user-comp")
	b.noneClipped("the user's page")
	b.typeInto(`form[action$="/revoke"] input[name="reason"]`, "Talk cancelled")
	if code, loc := b.click(`form[action$="/revoke"] button[type="submit"]`); code != 200 || !strings.HasSuffix(loc, "?done=comp-revoked") {
		t.Fatalf("revoke: %d at %s", code, loc)
	}
	b.mustSay("Ada's page after the revocation", "Comp revoked.", "revoked", "comp.revoked", "Talk cancelled")
	b.shoot("admin-user-revoked")
	b.noneClipped("the user's page after the revocation")
}

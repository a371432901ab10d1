package gateway

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

func (fakePortal) SignUpURL(ret, db string) string {
	return portalPage("sign-up", ret, db)
}

func (fakePortal) OrganizationURL(ret, db string) string {
	return portalPage("organization", ret, db)
}

func portalPage(page, ret, db string) string {
	u := "https://accounts.example.com/" + page + "?redirect_url=" + url.QueryEscape(ret)
	if db != "" {
		u += "&__clerk_db_jwt=" + db
	}
	return u
}

// fakePrices is a price catalogue.
type fakePrices map[string]proxy.Price

func (f fakePrices) Price(id string) (proxy.Price, bool) {
	p, ok := f[id]
	return p, ok
}

var testPrices = fakePrices{
	"price_pro":        {Amount: 1200, Currency: "usd", Interval: "month", IntervalCount: 1},
	"price_pro_yearly": {Amount: 12000, Currency: "usd", Interval: "year", IntervalCount: 1},
	"price_team":       {Amount: 4900, Currency: "usd", Interval: "month", IntervalCount: 1},
}

// fakeOrgs names organisations.
type fakeOrgs map[string]proxy.Org

func (f fakeOrgs) Org(_ context.Context, id string) (proxy.Org, error) {
	if o, ok := f[id]; ok {
		return o, nil
	}
	return proxy.Org{}, proxy.ErrNotFound
}

// section is the part of page from the first match of start, for checks
// that must not see the header or footer.
func section(page, start string) string {
	if i := strings.Index(page, start); i >= 0 {
		return page[i:]
	}
	return ""
}

// The account page reads each plan as the visitor needs it: a past-due
// plan never says it renews, an unpaid one has one thing to do and says
// where it leads, an ended one says when it ended and how to come back,
// an admin's complimentary grant renews nothing.
func TestAccountPage_EveryState(t *testing.T) {
	day := func(n int) time.Time { return time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).AddDate(0, 0, n) }
	portalButtons := regexp.MustCompile(`<button type="submit" aria-describedby="portal-hint-\d+">([^<]*)</button>`)
	tests := []struct {
		name    string
		sub     proxy.Subscription
		comp    *proxy.Comp
		want    []string
		absent  []string
		buttons []string // the portal buttons, in order
	}{
		{name: "trialing", sub: proxy.Subscription{Status: proxy.StatusTrialing, TrialEnd: day(7), CurrentPeriodEnd: day(7)},
			want:    []string{"Trial", "Trial ends", "4 December 2026", "$12.00 a month", "charged automatically"},
			absent:  []string{"Renews"},
			buttons: []string{"Manage billing"}},
		{name: "active", sub: proxy.Subscription{Status: proxy.StatusActive, CurrentPeriodEnd: day(20)},
			want:    []string{"Active", "Renews", "17 December 2026", "renews automatically on 17 December 2026, for $12.00"},
			buttons: []string{"Manage billing"}},
		{name: "cancelling", sub: proxy.Subscription{Status: proxy.StatusActive, CurrentPeriodEnd: day(20), CancelAtPeriodEnd: true},
			want:    []string{"Ending", "Access ends", "17 December 2026", "will not renew", "resume it"},
			absent:  []string{"Renews", "renews automatically"},
			buttons: []string{"Manage billing"}},
		{name: "past due", sub: proxy.Subscription{Status: proxy.StatusPastDue, CurrentPeriodEnd: day(-2), PastDueSince: day(-2)},
			want:    []string{"Payment failed", "did not go through", "Stripe will try again", "billing portal, run by Stripe"},
			absent:  []string{"Renews", "renews"},
			buttons: []string{"Update payment method"}},
		{name: "unpaid", sub: proxy.Subscription{Status: proxy.StatusUnpaid, CurrentPeriodEnd: day(-20)},
			want:    []string{"Unpaid", "access is on hold", "Opens the billing portal, run by Stripe"},
			absent:  []string{"Renews", "Manage billing", "Subscribe again"},
			buttons: []string{"Update payment method"}},
		{name: "ended", sub: proxy.Subscription{Status: proxy.StatusCanceled, CurrentPeriodEnd: day(-1), EndedAt: day(-3)},
			want:   []string{"Ended", "24 November 2026", "This plan ended on 24 November 2026", `href="/.tollgate/subscribe/pro">Subscribe again`, "See past invoices"},
			absent: []string{"Renews", "Manage billing"}},
		{name: "never started", sub: proxy.Subscription{Status: proxy.StatusIncompleteExpired, CurrentPeriodEnd: day(-1)},
			want:   []string{"Not started", "never started", "Subscribe again"},
			absent: []string{"Renews"}},
		{name: "complimentary", comp: &proxy.Comp{ID: "comp_1", Plan: "pro", ExpiresAt: day(30), CreatedAt: day(-1)},
			want:   []string{"Complimentary", "Until", "27 December 2026", "free of charge"},
			absent: []string{"Renews", "renews", "/billing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newGateFixture(t, nil)
			fx.srv.billing, fx.srv.billingOn, fx.srv.prices = &fakeBilling{}, true, testPrices
			user := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}
			ents := &proxy.Entitlements{Subject: user}
			if tt.comp != nil {
				ents.Comps = []proxy.Comp{*tt.comp}
			} else {
				s := tt.sub
				s.ID, s.Plan, s.PriceIDs = "sub_1", "pro", []string{"price_pro"}
				ents.Subscriptions = []proxy.Subscription{s}
			}
			fx.ents[user] = ents
			page := section(body(t, fx.do("GET", "/.tollgate/account", with(navigation, "X-Test-User", "user_1"))), `<h1 id="title">`)
			for _, s := range tt.want {
				if !strings.Contains(page, s) {
					t.Errorf("the page lacks %q:\n%s", s, page)
				}
			}
			for _, s := range tt.absent {
				if strings.Contains(page, s) {
					t.Errorf("the page says %q:\n%s", s, page)
				}
			}
			var buttons []string
			for _, m := range portalButtons.FindAllStringSubmatch(page, -1) {
				buttons = append(buttons, m[1])
			}
			if diff := cmp.Diff(tt.buttons, buttons); diff != "" {
				t.Errorf("portal buttons (-want +got):\n%s", diff)
			}
		})
	}
}

// The organisation is named by its name (from Clerk's webhooks), not its
// slug; without one the slug stands in. A visitor with no organisation is
// shown where Clerk lets them choose one.
func TestAccountPage_NamesTheOrganisation(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.srv.auth = fakeAuth{func(r *http.Request) proxy.AuthResult {
		res := signedInByHeader(r)
		if res.Identity != nil && res.Identity.OrgID != "" {
			res.Identity.OrgSlug = "acme"
		}
		return res
	}}
	member := with(navigation, "X-Test-User", "user_1", "X-Test-Org", "org_1")
	if page := body(t, fx.do("GET", "/.tollgate/account", member)); !strings.Contains(page, "in the organisation <strong>acme</strong>") {
		t.Errorf("without a name the slug stands in:\n%.2000s", page)
	}
	fx.srv.orgs = fakeOrgs{"org_1": {ID: "org_1", Slug: "acme", Name: "Acme Inc."}}
	page := body(t, fx.do("GET", "/.tollgate/account", member))
	if !strings.Contains(page, "in the organisation <strong>Acme Inc.</strong>") || strings.Contains(page, "choose an organisation") {
		t.Errorf("the organisation's name:\n%.2000s", page)
	}
	page = body(t, fx.do("GET", "/.tollgate/account", with(navigation, "X-Test-User", "user_1")))
	want := `href="https://accounts.example.com/organization?redirect_url=` + url.QueryEscape("https://app.example.com/.tollgate/account") + `">choose an organisation`
	if !strings.Contains(page, strings.ReplaceAll(want, "&", "&amp;")) {
		t.Errorf("no organisation: want a link to choose one (%s):\n%.2000s", want, page)
	}
}

// The upgrade page offers a plan's monthly and yearly prices as links that
// work without JavaScript, posts the chosen price, and says what yearly
// saves; a plan's description, features and highlight are shown, its terms
// without check marks.
func TestUpgradePage_IntervalsAndPlanWords(t *testing.T) {
	fx := newGateFixtureConfig(t, nil, func(c string) string {
		return strings.Replace(c, "    prices: [price_pro]\n", "    prices: [price_pro, price_pro_yearly]\n"+
			"    description: \"For one person.\"\n    features: [\"Every report\", \"CSV export\"]\n    highlight: true\n", 1)
	})
	fx.srv.prices, fx.srv.billing, fx.srv.billingOn = testPrices, &fakeBilling{}, true
	signedIn := with(navigation, "X-Test-User", "user_1")
	tests := []struct {
		query     string
		wantPrice string
		want      []string
		absent    []string
	}{
		{"", "price_pro", []string{`href="/.tollgate/upgrade?interval=month&amp;route=415VNA" aria-current="true">Monthly`,
			`href="/.tollgate/upgrade?interval=year&amp;route=415VNA">Yearly <span class="save">save 17%</span>`, "$12.00", "/ month"},
			[]string{"billed yearly"}},
		{"&interval=year", "price_pro_yearly", []string{`aria-current="true">Yearly`, "$120.00", "/ year",
			"$10.00 a month, billed yearly: 17% less than paying monthly"}, nil},
		{"&interval=fortnight", "price_pro", []string{`aria-current="true">Monthly`}, nil},
	}
	for _, tt := range tests {
		page := body(t, fx.do("GET", "/.tollgate/upgrade?route=415VNA"+tt.query, signedIn))
		if m := regexp.MustCompile(`name="price" value="([^"]*)"`).FindStringSubmatch(page); m == nil || m[1] != tt.wantPrice {
			t.Errorf("%q: the form posts price %v, want %s", tt.query, m, tt.wantPrice)
		}
		for _, s := range append(tt.want, `<p class="flag">Recommended</p>`, `<p class="desc">For one person.</p>`,
			"<li>Every report</li>\n    <li>CSV export</li>") {
			if !strings.Contains(page, s) {
				t.Errorf("%q: the page lacks %q:\n%.4000s", tt.query, s, section(page, "<main"))
			}
		}
		for _, s := range tt.absent {
			if strings.Contains(page, s) {
				t.Errorf("%q: the page says %q", tt.query, s)
			}
		}
		if features := section(page, `<ul class="features"`); strings.Index(features, "</ul>") > strings.Index(features, "charged today") {
			t.Errorf("%q: the terms are among the features (with check marks)", tt.query)
		}
	}
}

// Checkout subscribes to the chosen price, one of the plan's; any other is
// refused before Billing. The config's Checkout options go along.
func TestCheckout_ChosenPriceAndOptions(t *testing.T) {
	fx := newGateFixtureConfig(t, nil, func(c string) string {
		c = strings.Replace(c, "    prices: [price_pro]\n", "    prices: [price_pro, price_pro_yearly]\n", 1)
		return strings.Replace(c, "  past_due_grace: 0s\n", "  past_due_grace: 0s\n  allow_promotion_codes: true\n  automatic_tax: true\n", 1)
	})
	fb := &fakeBilling{}
	fx.srv.billing, fx.srv.billingOn = fb, true
	user := with(navigation, "X-Test-User", "user_1")
	for _, tt := range []struct {
		price string
		code  int
	}{{"", http.StatusSeeOther}, {"price_pro_yearly", http.StatusSeeOther}, {"price_team", http.StatusBadRequest}, {"price_x", http.StatusBadRequest}} {
		if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"pro"}, "price": {tt.price}}, user); resp.StatusCode != tt.code {
			t.Errorf("price %q: %d, want %d", tt.price, resp.StatusCode, tt.code)
		}
	}
	var got []string
	for _, r := range fb.requests {
		if !r.AllowPromotionCodes || !r.AutomaticTax {
			t.Errorf("options not passed: %+v", r)
		}
		got = append(got, r.PriceID())
	}
	if diff := cmp.Diff([]string{"price_pro", "price_pro_yearly"}, got); diff != "" {
		t.Errorf("prices checked out (-want +got):\n%s", diff)
	}
}

// An unpaid visitor on the upgrade page has one way back, the portal, and
// is told where it leads; no plan offers a second, equal button (its
// Checkout would lead to the portal all the same).
func TestUpgradePage_UnpaidHasOneAction(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.srv.billing, fx.srv.billingOn = &fakeBilling{}, true
	user := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}
	fx.ents[user] = &proxy.Entitlements{Subject: user, Subscriptions: []proxy.Subscription{{ID: "sub_1", Plan: "pro", Status: proxy.StatusUnpaid}}}
	page := section(body(t, fx.do("GET", "/.tollgate/upgrade?route=415VNA", with(navigation, "X-Test-User", "user_1"))), "<main")
	if n := strings.Count(page, `<button type="submit"`); n != 1 || !strings.Contains(page, "Update payment method</button>") ||
		!strings.Contains(page, "Opens the billing portal, run by Stripe") || strings.Contains(page, "Manage billing") ||
		strings.Contains(page, `class="plans"`) || !strings.Contains(page, "needs your attention") {
		t.Errorf("%d buttons:\n%s", n, page)
	}
}

// An app's "Sign in" and "Sign up" buttons link to <prefix>/sign-in and
// /sign-up with a return path: the visitor goes to Clerk's page and comes
// back to that path on public_url, never anywhere else; a visitor signed in
// already goes straight back.
func TestPortalLinks(t *testing.T) {
	fx := newGateFixture(t, nil)
	back := func(page, path string) string {
		return portalPage(page, "https://app.example.com"+path, "")
	}
	tests := []struct {
		target string
		hdr    map[string]string
		code   int
		loc    string
	}{
		{"/.tollgate/sign-in?return=%2Freports%3Fq%3D1", navigation, http.StatusTemporaryRedirect, back("sign-in", "/reports?q=1")},
		{"/.tollgate/sign-up?return=%2Fpricing", navigation, http.StatusTemporaryRedirect, back("sign-up", "/pricing")},
		{"/.tollgate/sign-in", navigation, http.StatusTemporaryRedirect, back("sign-in", "/")},
		{"/.tollgate/sign-in?return=https%3A%2F%2Fevil.example%2Fx", navigation, http.StatusTemporaryRedirect, back("sign-in", "/")},
		{"/.tollgate/sign-up?return=%2F%2Fevil.example", navigation, http.StatusTemporaryRedirect, back("sign-up", "/")},
		{"/.tollgate/sign-in?return=%2F.tollgate%2Fcheckout", navigation, http.StatusTemporaryRedirect, back("sign-in", "/")},
		{"/.tollgate/sign-in?return=%2Freports", with(navigation, "X-Test-User", "user_1"), http.StatusSeeOther, "/reports"},
		{"/.tollgate/sign-up?return=https%3A%2F%2Fevil.example", with(navigation, "X-Test-User", "user_1"), http.StatusSeeOther, "/"},
	}
	for _, tt := range tests {
		resp := fx.do("GET", tt.target, tt.hdr)
		if resp.StatusCode != tt.code || resp.Header.Get("Location") != tt.loc {
			t.Errorf("%s: %d %q, want %d %q", tt.target, resp.StatusCode, resp.Header.Get("Location"), tt.code, tt.loc)
		}
	}
	fx.srv.portal = noPortal{}
	if resp := fx.do("GET", "/.tollgate/sign-in", navigation); resp.StatusCode != http.StatusNotFound {
		t.Errorf("without Clerk: %d, want 404", resp.StatusCode)
	}
}

// The header offers the visitor's account and signing out when they are
// signed in (on the pages that look the visitor up), on every page of one
// layout.
func TestLayout_HeaderKnowsTheVisitor(t *testing.T) {
	fx := newGateFixture(t, nil)
	const account = `<a href="/.tollgate/account"`
	const signOut = `<form method="post" action="/.tollgate/sign-out" class="inline">`
	for _, target := range []string{"/.tollgate/upgrade?route=415VNA", "/.tollgate/account", "/.tollgate/subscribe/pro?return=%2F"} {
		in := body(t, fx.do("GET", target, with(navigation, "X-Test-User", "user_1")))
		out := body(t, fx.do("GET", target, navigation))
		if !strings.Contains(in, account) || !strings.Contains(in, signOut) {
			t.Errorf("%s signed in: no account link or sign-out in the header:\n%.1500s", target, in)
		}
		if strings.Contains(out, account) || strings.Contains(out, signOut) {
			t.Errorf("%s signed out: the header offers an account", target)
		}
	}
}

// A page the app could not serve offers to try the same address again, not
// the home page; a form's POST, which a link cannot repeat, gets the home
// page.
func TestErrorPage_TryAgain(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.upstream.Close() // the app is down: 502
	page := body(t, fx.do("GET", "/public/report?x=1", navigation))
	if !strings.Contains(page, `<a class="button" href="">Try again</a>`) || strings.Contains(page, "Go to the home page") {
		t.Errorf("the 502 page:\n%s", section(page, "<main"))
	}
	resp := fx.post("/public/form", url.Values{"a": {"1"}}, navigation)
	if page := body(t, resp); resp.StatusCode != http.StatusBadGateway || strings.Contains(page, "Try again") || !strings.Contains(page, "Go to the home page") {
		t.Errorf("the 502 page of a POST (%d):\n%s", resp.StatusCode, section(page, "<main"))
	}
}

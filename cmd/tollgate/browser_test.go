package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/tollgate/tollgate/proxy"
)

// The browser tests drive Debian's Chromium through the in-process demo:
// the real gateway, the sandbox Clerk and Stripe, and the demo app, all on
// 127.0.0.1. They browse nothing else.

// maxRedirects is the most redirects one step of the journey may take (the
// longest is a page load with an expired token: the handshake, back, then
// the upgrade page). More means a loop, or a detour nobody should wait for.
const maxRedirects = 3

// chromiumPath finds Chromium, or skips the test (fails it under
// TOLLGATE_REQUIRE_TOOLS=1, as .ci/run sets).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "/usr/bin/chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium not found: install it (apt-get install -y chromium) to run the browser tests"
	if os.Getenv("TOLLGATE_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser is one headless Chromium tab that records the redirects of every
// page load and saves screenshots.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string // the screenshot folder
	n     int    // screenshots taken, for their file names
	// maxRedirects bounds the redirects of one step (default maxRedirects).
	maxRedirects int

	mu        sync.Mutex
	redirects []string // document redirects since the last step
	problems  []string // console errors, CSP violations, uncaught exceptions
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	shots := os.Getenv("TOLLGATE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots: %s", shots)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	// The whole journey has this long; a hung page fails rather than stalls.
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc() // waits for Chromium to exit, before its TempDir goes
	})
	b := &browser{t: t, ctx: ctx, shots: shots, maxRedirects: maxRedirects}
	start := time.Now()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	t.Logf("chromium started in %v", time.Since(start).Round(time.Millisecond))
	if err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			if e.Type == network.ResourceTypeDocument && e.RedirectResponse != nil {
				b.redirects = append(b.redirects, fmt.Sprintf("%d %s -> %s", e.RedirectResponse.Status, e.RedirectResponse.URL, e.Request.URL))
			}
		case *cdplog.EventEntryAdded:
			// Error statuses are the journey's point (403, 404, the
			// favicon); anything else logged as an error is a problem,
			// such as a Content-Security-Policy violation.
			if e.Entry.Level == cdplog.EntryLevelError && e.Entry.Source != cdplog.EntrySourceNetwork {
				b.problems = append(b.problems, fmt.Sprintf("%s: %s (%s)", e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		case *runtime.EventExceptionThrown:
			b.problems = append(b.problems, "uncaught exception: "+e.ExceptionDetails.Text)
		}
	}); err != nil {
		t.Fatal(err)
	}
	return b
}

// load runs act (a navigation or a click that navigates), waits for the new
// page, checks that it took at most maxRedirects redirects and returns its
// status and URL.
func (b *browser) load(what string, act chromedp.Action[chromedp.Void]) (int, string) {
	b.t.Helper()
	b.mu.Lock()
	b.redirects = nil
	b.mu.Unlock()
	resp, err := chromedp.RunResponse(b.ctx, act)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	b.mu.Lock()
	hops := b.redirects
	b.mu.Unlock()
	if len(hops) > b.maxRedirects {
		b.t.Fatalf("%s: %d redirects (a loop?):\n  %s", what, len(hops), strings.Join(hops, "\n  "))
	}
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return int(resp.Status), loc
}

// checkConsole fails the test for every console error seen so far.
func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	problems := b.problems
	b.problems = nil
	b.mu.Unlock()
	for _, p := range problems {
		b.t.Errorf("browser console: %s", p)
	}
}

// javascript turns the page's scripts on or off: tollgate's pages must work
// without them.
func (b *browser) javascript(on bool) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: !on}); err != nil {
		b.t.Fatal(err)
	}
}

// open navigates to u.
func (b *browser) open(u string) (int, string) {
	b.t.Helper()
	return b.load("open "+u, chromedp.Navigate(u))
}

// click clicks the first element css matches and waits for the page it
// leads to.
func (b *browser) click(css string) (int, string) {
	b.t.Helper()
	return b.load("click "+css, chromedp.Click(chromedp.CSS(css), chromedp.NodeVisible))
}

// text is the visible text of the page.
func (b *browser) text() string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

// mustSay fails unless the page says every one of wants.
func (b *browser) mustSay(page string, wants ...string) {
	b.t.Helper()
	text := b.text()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			b.t.Errorf("%s does not say %q; it says:\n%s", page, w, text)
		}
	}
}

// header reads what the demo app shows of an X-Tollgate-* header it got.
func (b *browser) header(name string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](
		fmt.Sprintf(`(document.querySelector('[data-header=%q]') || {}).textContent || ""`, name)))
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

// clipped lists the page's elements that stick out of the screen sideways
// or cut their own content off (overflow hidden or clip), except inside a
// container made to scroll sideways (a wide table), the skip link (off
// screen until focused) and text hidden for screen readers only (a 1 px
// box that clips on purpose).
const clipped = `(() => {
  const w = document.documentElement.clientWidth, out = [];
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : '');
  const inScroller = el => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o === 'auto' || o === 'scroll') return true;
    }
    return false;
  };
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('.skip, script, style')) continue;
    const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
    if (r.width <= 1 || r.height <= 1 || cs.visibility === 'hidden' || inScroller(el)) continue;
    if (r.left < -0.5 || r.right > w + 0.5) out.push(name(el) + ' spans ' + Math.round(r.left) + '..' + Math.round(r.right) + ' of ' + w);
    if ((cs.overflowX === 'hidden' || cs.overflowX === 'clip') && el.scrollWidth > el.clientWidth + 1) out.push(name(el) + ' cuts off ' + (el.scrollWidth - el.clientWidth) + ' px of its content');
  }
  return out;
})()`

// shoot saves the page as a PNG at a phone's and a desktop's width, and
// checks at each that nothing sticks out sideways or is cut off.
func (b *browser) shoot(name string) {
	b.t.Helper()
	b.n++
	for _, vp := range []struct{ w, h int64 }{{390, 844}, {1280, 800}} {
		if err := chromedp.Do(b.ctx, chromedp.EmulateViewport(vp.w, vp.h)); err != nil {
			b.t.Fatal(err)
		}
		over, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth - document.documentElement.clientWidth`))
		if err != nil {
			b.t.Fatal(err)
		}
		if over > 0 {
			b.t.Errorf("%s at %d px: the page is %d px wider than the screen", name, vp.w, over)
		}
		bad, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](clipped))
		if err != nil {
			b.t.Fatal(err)
		}
		for _, s := range bad {
			b.t.Errorf("%s at %d px: %s", name, vp.w, s)
		}
		png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			b.t.Fatal(err)
		}
		file := filepath.Join(b.shots, fmt.Sprintf("%02d-%s-%d.png", b.n, name, vp.w))
		if err := os.WriteFile(file, png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	b.checkConsole()
}

// payWithAddress fills in the sandbox Checkout page's billing address (the
// demo has automatic tax on) and pays.
func (b *browser) payWithAddress() (int, string) {
	b.t.Helper()
	for _, f := range []struct{ css, v string }{{"#line1", "1 Horse Guards"}, {"#city", "London"}, {"#postal_code", "SW1A 1AA"}, {"#country", "GB"}} {
		if err := chromedp.Do(b.ctx, chromedp.SetValue(chromedp.CSS(f.css), f.v)); err != nil {
			b.t.Fatalf("fill %s: %v", f.css, err)
		}
	}
	return b.click(`form[action^="/checkout/pay/"] button[type="submit"]`)
}

// TestBrowser_PaidJourney is the visitor's whole journey in a real browser:
// sign in through the sandbox, hit a paid route, read the upgrade page, start
// the paid trial, pay in the sandbox Checkout, land back on the same route
// with access, read the account page, cancel in the portal, keep access to
// the end of the period, lose it when the sandbox clock passes it, and sign
// out. Also: a fetch() long after the 60-second token expired, no redirect
// loops, and a screenshot of every page at 390 px and 1280 px.
func TestBrowser_PaidJourney(t *testing.T) {
	b := newBrowser(t)
	d, clk := mustRunDemo(t)
	route := d.URL + "/routes/415VNA/"

	// The public home page, then a signed-in page sends us to sign in.
	if code, _ := b.open(d.URL + "/"); code != 200 {
		t.Fatalf("home: %d", code)
	}
	b.mustSay("the home page", "Lighthouse")
	if _, loc := b.click(`nav a[href="/settings/"]`); !strings.HasPrefix(loc, d.ClerkURL+"/sign-in") {
		t.Fatalf("signed-out settings: at %s, want the sandbox sign-in", loc)
	}
	b.shoot("sign-in")
	if _, loc := b.click(`button[name="user_id"][value="user_ada"]`); loc != d.URL+"/settings/" {
		t.Fatalf("after sign-in: at %s, want %s/settings/", loc, d.URL)
	}
	if got := b.header("X-Tollgate-User"); got != "user_ada" {
		t.Fatalf("signed in, the app got X-Tollgate-User %q", got)
	}

	// From here to the portal and back, the journey runs with JavaScript
	// off: tollgate's pages and the sandbox's must not need it.
	b.javascript(false)

	// The paid route: the upgrade page names the plan, price and trial.
	code, loc := b.open(route)
	if u, _ := url.Parse(loc); code != 200 || u.Path != "/.tollgate/upgrade" || u.Query().Get("route") != "415VNA" {
		t.Fatalf("unpaid route: %d at %s, want the upgrade page", code, loc)
	}
	b.mustSay("the upgrade page", "part of a paid plan", "Pro", "$12.00", "/ month", "7-day trial for $1.00", "charged today",
		"After the trial you pay $12.00 every month", "Start Pro trial")
	b.shoot("upgrade")

	// Start the trial: the sandbox Checkout shows the trial fee due today.
	_, payURL := b.click(`form[action="/.tollgate/checkout"] button[type="submit"]`)
	if !strings.HasPrefix(payURL, d.StripeURL+"/checkout/pay/") {
		t.Fatalf("start trial: at %s, want the sandbox Checkout", payURL)
	}
	b.mustSay("the Checkout page", "7-day", "$1.00", "Billing address", "Tax", "Promotion code")
	b.shoot("checkout")

	// Coming back from Checkout before paying shows the finishing page.
	sessionID := strings.TrimPrefix(payURL, d.StripeURL+"/checkout/pay/")
	if code, _ := b.open(d.URL + "/.tollgate/checkout/done?session_id=" + url.QueryEscape(sessionID)); code != 200 {
		t.Fatalf("finishing page: %d", code)
	}
	b.mustSay("the finishing page", "Finishing up")
	b.shoot("finishing")
	if code, _ := b.open(payURL); code != 200 {
		t.Fatalf("back to Checkout: %d", code)
	}

	// Pay: back on the same route, with the plan the gateway told the app.
	if code, loc := b.payWithAddress(); code != 200 || loc != route {
		t.Fatalf("after paying: %d at %s, want 200 at %s", code, loc, route)
	}
	if plan, status := b.header("X-Tollgate-Plan"), b.header("X-Tollgate-Status"); plan != "pro" || status != "trialing" {
		t.Fatalf("after paying the app got plan %q status %q, want pro trialing", plan, status)
	}
	b.mustSay("the paid route", "You are in")
	b.shoot("route-with-access")

	// The account page: plan, status, when the trial ends.
	if code, _ := b.open(d.URL + "/.tollgate/account"); code != 200 {
		t.Fatalf("account: %d", code)
	}
	trialEnd := clk.Now().Add(7 * 24 * time.Hour).UTC().Format("2 January 2006")
	b.mustSay("the account page", "Pro", "Trial", "Trial ends", trialEnd, "charged automatically", "Manage billing")
	b.shoot("account")

	// The portal: cancel at the period end, then back to the site.
	if _, loc := b.click(`form[action="/.tollgate/billing"] button[type="submit"]`); !strings.HasPrefix(loc, d.StripeURL+"/portal/") {
		t.Fatalf("manage billing: at %s, want the sandbox portal", loc)
	}
	b.shoot("portal")
	b.click(`button[name="action"][value="cancel_at_period_end"]`)
	if _, loc := b.click(`a.button[href$="/.tollgate/account"]`); loc != d.URL+"/.tollgate/account" {
		t.Fatalf("return to the site: at %s", loc)
	}
	b.javascript(true)
	waitWebhooks(t, d)
	b.open(d.URL + "/.tollgate/account")
	b.mustSay("the account page after cancelling", "Access ends", trialEnd, "will not renew")
	b.shoot("account-cancelled")
	if code, loc := b.open(route); code != 200 || loc != route || b.header("X-Tollgate-Plan") != "pro" {
		t.Fatalf("cancelled, still in the period: %d at %s plan %q, want access", code, loc, b.header("X-Tollgate-Plan"))
	}

	// An app page's fetch() more than 60 s after sign-in (the Clerk token
	// has expired; the gateway session carries it).
	if code, _ := b.open(d.URL + "/app/"); code != 200 {
		t.Fatalf("app page: %d", code)
	}
	clk.Advance(2 * time.Minute)
	raw, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]byte](
		`fetch('/api/v1/whoami').then(async r => ({status: r.status, body: await r.json()}))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	var who struct {
		Status int
		Body   struct{ User string }
	}
	if err := json.Unmarshal(raw, &who); err != nil || who.Status != 200 || who.Body.User != "user_ada" {
		t.Fatalf("fetch 2 minutes after sign-in: %s (%v), want 200 and user_ada", raw, err)
	}

	// The period ends: the sandbox cancels, its webhook ends access.
	d.Stripe.Advance(8 * 24 * time.Hour)
	waitWebhooks(t, d)
	code, loc = b.open(route)
	if u, _ := url.Parse(loc); code != 200 || u.Path != "/.tollgate/upgrade" {
		t.Fatalf("after the period ended: %d at %s, want the upgrade page", code, loc)
	}
	b.mustSay("the upgrade page after the plan ended", "has ended", "Pro", "$12.00")
	b.shoot("upgrade-ended")

	// Sign out from the account page: the Clerk session ends (through the
	// Backend API, not a hosted page), the browser lands on the app's home
	// page, and a signed-in page sends it to sign in again.
	if code, _ := b.open(d.URL + "/.tollgate/account"); code != 200 {
		t.Fatalf("account before signing out: %d", code)
	}
	if code, loc := b.click(`form[action="/.tollgate/sign-out"] button[type="submit"]`); code != 200 || loc != d.URL+"/" {
		t.Fatalf("sign out: %d at %s, want the home page", code, loc)
	}
	if got := d.Clerk.BackendCalls("POST /v1/sessions/{id}/revoke"); got != 1 {
		t.Errorf("sign out revoked %d Clerk sessions, want 1", got)
	}
	if _, loc := b.open(d.URL + "/settings/"); !strings.HasPrefix(loc, d.ClerkURL+"/sign-in") {
		t.Fatalf("signed-in page after signing out: at %s, want the sandbox sign-in", loc)
	}
	b.shoot("signed-out")

	// Tollgate's own error pages.
	if code, _ := b.open(d.URL + "/admin/"); code != 403 {
		t.Errorf("/admin/: %d, want 403", code)
	}
	b.mustSay("the 403 page", "403")
	b.shoot("403")
	if code, _ := b.open(d.URL + "/.tollgate/no-such-page"); code != 404 {
		t.Errorf("unknown tollgate page: %d, want 404", code)
	}
	b.mustSay("the 404 page", "404")
	b.shoot("404")

	// The same pages branded from pages: (a second gateway on the same
	// sandbox, with its own store): name, accent colour, support link.
	branded := *d.Config
	branded.Pages = proxy.PagesConfig{ProductName: "Harbour Pro", AccentColor: "#0f766e", SupportURL: "mailto:help@example.com"}
	branded.Store.Path = filepath.Join(t.TempDir(), "branded.db")
	gw, err := newApp(&branded, appDeps{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler)
	t.Cleanup(func() { srv.Close(); gw.Close() })
	if code, _ := b.open(srv.URL + "/.tollgate/upgrade?route=415VNA&return=%2Froutes%2F415VNA%2F"); code != 200 {
		t.Fatalf("branded upgrade page: %d", code)
	}
	b.mustSay("the branded upgrade page", "Harbour Pro", "Contact support")
	style, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[getComputedStyle(document.querySelector('.plan button, .plan .button')).backgroundColor,
		document.querySelector('footer a').getAttribute('href')]`))
	if err != nil {
		t.Fatal(err)
	}
	if style[0] != "rgb(15, 118, 110)" || style[1] != "mailto:help@example.com" {
		t.Errorf("branded page: button colour %q, support link %q; want rgb(15, 118, 110) and mailto:help@example.com", style[0], style[1])
	}
	b.shoot("branded-upgrade")
}

// TestBrowser_DevelopmentInstance is the sign-in journey against a
// development instance (pk_test_), in a real browser: the Account Portal
// sends Chromium back with __clerk_db_jwt in the URL, the handshake's
// payload comes back in the URL and is cleaned away, a fetch() after the
// token's minute rides on the gateway cookie, and sign-out sends the next
// signed-in page to sign-in with the dev browser. Once with the clocks
// agreeing, once with this machine's clock a minute behind Clerk's.
func TestBrowser_DevelopmentInstance(t *testing.T) {
	for _, skew := range []time.Duration{0, time.Minute} {
		t.Run("Clerk "+skew.String()+" ahead", func(t *testing.T) {
			b := newBrowser(t)
			d, clk := mustRunDemoWith(t, demoOptions{Development: true, ClerkSkew: skew})
			// The way back from the Account Portal: the portal, the dev
			// browser's handshake, the payload, the clean URL; with the
			// clock off, the handshakes Clerk's own counter allows.
			b.maxRedirects = 4
			if skew != 0 {
				b.maxRedirects = 12
			}
			if _, loc := b.open(d.URL + "/settings/"); !strings.HasPrefix(loc, d.ClerkURL+"/sign-in") {
				t.Fatalf("signed-out settings: at %s, want the sandbox sign-in", loc)
			}
			b.shoot("dev-sign-in")
			if code, loc := b.click(`button[name="user_id"][value="user_ada"]`); code != 200 || loc != d.URL+"/settings/" {
				t.Fatalf("after sign-in: %d at %s, want %s/settings/ without Clerk's parameters", code, loc, d.URL)
			}
			if got := b.header("X-Tollgate-User"); got != "user_ada" {
				t.Fatalf("signed in, the app got X-Tollgate-User %q", got)
			}
			cookies, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.cookie`))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(cookies, "__clerk_db_jwt=") || !strings.Contains(cookies, "__session=") {
				t.Errorf("the app's cookies (as scripts see them): %q, want __session and __clerk_db_jwt", cookies)
			}
			b.shoot("dev-signed-in")

			if code, _ := b.open(d.URL + "/app/"); code != 200 {
				t.Fatalf("app page: %d", code)
			}
			clk.Advance(2 * time.Minute)
			raw, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]byte](
				`fetch('/api/v1/whoami').then(async r => ({status: r.status, body: await r.json()}))`, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatal(err)
			}
			var who struct {
				Status int
				Body   struct{ User string }
			}
			if err := json.Unmarshal(raw, &who); err != nil || who.Status != 200 || who.Body.User != "user_ada" {
				t.Fatalf("fetch 2 minutes after sign-in: %s (%v), want 200 and user_ada", raw, err)
			}

			if code, _ := b.open(d.URL + "/.tollgate/account"); code != 200 {
				t.Fatalf("account: %d", code)
			}
			if code, loc := b.click(`form[action="/.tollgate/sign-out"] button[type="submit"]`); code != 200 || loc != d.URL+"/" {
				t.Fatalf("sign out: %d at %s, want the home page", code, loc)
			}
			if _, loc := b.open(d.URL + "/settings/"); !strings.HasPrefix(loc, d.ClerkURL+"/sign-in") || !strings.Contains(loc, "__clerk_db_jwt=") {
				t.Fatalf("signed-in page after signing out: at %s, want the sandbox sign-in with the dev browser", loc)
			}
			b.shoot("dev-signed-out")
		})
	}
}

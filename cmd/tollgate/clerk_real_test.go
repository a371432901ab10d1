package main

// Clerk as it really behaves, not as a kind stand-in would: each test runs
// over real HTTP against the real gateway wired by newGateway, with the
// sandbox answering the way Clerk's Frontend API, Account Portal and
// Backend API do.

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
)

// TestClerk_SignInReturnsWithOnlyClientUAT: a production Account Portal
// leaves the browser only the domain-wide __client_uat (and its own client
// cookie on the Frontend API host), never __session on the app's host. So
// the first page load back from sign-in must go through the handshake
// (client-uat-but-no-session-token), and an XHR sent before any page load
// is signed out.
func TestClerk_SignInReturnsWithOnlyClientUAT(t *testing.T) {
	d, _ := mustRunDemo(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	back := d.URL + "/settings/"
	resp, err := c.PostForm(d.ClerkURL+"/sign-in", url.Values{"user_id": {"user_ada"}, "redirect_url": {back}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != back {
		t.Fatalf("sign-in: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var names []string
	for _, ck := range resp.Cookies() {
		names = append(names, ck.Name)
	}
	if strings.Join(names, ",") != "__client_uat,__sandbox_client" {
		t.Errorf("sign-in set cookies %v, want only __client_uat and the Frontend API's client cookie", names)
	}

	// An XHR before any page load: __client_uat and no token, not a page
	// load, so no handshake and no gateway cookie yet.
	if code, _ := whoami(t, c, d, api); code != http.StatusUnauthorized {
		t.Errorf("XHR straight after sign-in: %d, want 401", code)
	}

	// The page load handshakes, and comes back signed in.
	resp = get(t, c, back, page)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusTemporaryRedirect || loc.Path != "/v1/client/handshake" ||
		loc.Query().Get("__clerk_hs_reason") != "client-uat-but-no-session-token" {
		t.Fatalf("first page load after sign-in: %d %q, want the handshake (client-uat-but-no-session-token)", resp.StatusCode, loc)
	}
	final, _ := browse(t, c, loc.String(), 2)
	if final.StatusCode != 200 || final.Request.URL.String() != back || !hasSetCookie(final, "__session") {
		t.Fatalf("back from the handshake: %d at %s, cookies %v", final.StatusCode, final.Request.URL, final.Header.Values("Set-Cookie"))
	}
	if code, h := whoami(t, c, d, api); code != 200 || h["user"] != "user_ada" {
		t.Errorf("XHR after the handshake: %d %v", code, h)
	}
}

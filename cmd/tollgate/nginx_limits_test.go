package main

import (
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Plans' limits through the README's nginx setup (README "Limits", "Forward
// auth"): allowed answers carry RateLimit and RateLimit-Policy; over free:'s
// 20 a day, an API call and a page load get 429 with Retry-After and both
// fields, as proxy mode's; the app's cost header never reaches the client
// (red team, issue 18: nginx's bare 403, no fields, the cost header
// passed).
func TestNginx_LimitsAnswer429WithTheFields(t *testing.T) {
	d, _ := mustRunDemo(t)
	front := startNginx(t, d.URL, d.AppURL)
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	// The first page load through nginx passes once through
	// /.tollgate/session for its cookies (README "Forward auth").
	if resp := get(t, c, front+"/settings/", page); resp.StatusCode == 302 && strings.Contains(resp.Header.Get("Location"), "/.tollgate/session") {
		loc, _ := url.Parse(resp.Header.Get("Location"))
		get(t, c, front+loc.RequestURI(), page)
	}
	rl := regexp.MustCompile(`^"free-quota";r=(\d+);t=\d+$`)
	allowed := 0
	for i := range 21 {
		resp := get(t, c, front+"/routes/TIDES/?cost=3", api)
		readBody(t, resp)
		if resp.StatusCode == 429 {
			break
		}
		if resp.StatusCode != 200 {
			t.Fatalf("call %d: %d, want 200 or 429", i+1, resp.StatusCode)
		}
		allowed++
		if m := rl.FindStringSubmatch(resp.Header.Get("RateLimit")); m == nil || m[1] != strconv.Itoa(19-i) {
			t.Errorf("call %d: RateLimit %q, want \"free-quota\";r=%d", i+1, resp.Header.Get("RateLimit"), 19-i)
		}
		if resp.Header.Get("RateLimit-Policy") == "" {
			t.Errorf("call %d: no RateLimit-Policy", i+1)
		}
		if v, ok := resp.Header["X-Tollgate-Cost"]; ok {
			t.Errorf("call %d: the app's cost header reached the client: %q", i+1, v)
		}
	}
	// Through nginx each allowed call costs 1, whatever the app says.
	if allowed != 20 {
		t.Errorf("%d calls allowed, want free:'s 20", allowed)
	}
	want := get(t, c, d.URL+"/routes/TIDES/", api) // proxy mode, the same subject
	if want.StatusCode != 429 {
		t.Fatalf("proxy mode: %d, want 429", want.StatusCode)
	}
	for _, h := range []map[string]string{api, page} {
		resp := get(t, c, front+"/routes/TIDES/", h)
		readBody(t, resp)
		if resp.StatusCode != 429 {
			t.Errorf("%s over the quota: %d, want 429", h["Accept"], resp.StatusCode)
		}
		for _, k := range []string{"Retry-After", "RateLimit-Policy", "RateLimit"} {
			if got := resp.Header.Get(k); got == "" || got != want.Header.Get(k) {
				t.Errorf("%s over the quota: %s %q, want proxy mode's %q", h["Accept"], k, got, want.Header.Get(k))
			}
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s over the quota: Cache-Control %q, want no-store", h["Accept"], resp.Header.Get("Cache-Control"))
		}
	}
}

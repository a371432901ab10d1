package gateway

import (
	"strings"
	"testing"
)

// withoutCookiesSpec is withoutCookies written plainly: every kept
// cookie, trimmed, joined by "; ".
func withoutCookiesSpec(line string, forwardClerk bool) string {
	var kept []string
	for _, part := range strings.Split(line, ";") {
		p := strings.TrimSpace(part)
		name, _, _ := strings.Cut(p, "=")
		name = strings.TrimSpace(name)
		if p == "" || tollgateCookie(name) || !forwardClerk && clerkCookie(name) {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, "; ")
}

func TestWithoutCookies(t *testing.T) {
	for _, c := range []struct {
		line          string
		want, wantFwd string
	}{
		{"__session=tok; __client_uat=1; __Host-tollgate=x", "", "__session=tok; __client_uat=1"},
		{"app=1; __session=tok", "app=1", "app=1; __session=tok"},
		{" __session=tok ;  app=1 ; ", "app=1", "__session=tok; app=1"},
		{"a=1; __tollgate_bounce=1; b=2;c=3", "a=1; b=2; c=3", "a=1; b=2; c=3"},
		{"__session_abc=t; __clerk_db_jwt=d; __refresh_x=r; __client_uat_abc=2", "", "__session_abc=t; __clerk_db_jwt=d; __refresh_x=r; __client_uat_abc=2"},
		{" __Host-tollgate = x ; __sessionx=1", "__sessionx=1", "__sessionx=1"},
		{"noequals; __session", "noequals", "noequals; __session"},
		// The Frontend API's client token, on the app's origin behind a
		// same-origin clerk.proxy_url: a refresh credential no app needs.
		{"__client=c; app=1; __client_abc=d; __clientx=1", "app=1; __clientx=1", "__client=c; app=1; __client_abc=d; __clientx=1"},
		{"", "", ""},
		{";;;", "", ""},
	} {
		if got := withoutCookies(c.line, false); got != c.want {
			t.Errorf("withoutCookies(%q) = %q, want %q", c.line, got, c.want)
		}
		if got := withoutCookies(c.line, true); got != c.wantFwd {
			t.Errorf("withoutCookies(%q, forwarding Clerk's) = %q, want %q", c.line, got, c.wantFwd)
		}
	}
}

// A line of credentials only, or with one cookie of the app's, is
// stripped without a copy.
func TestWithoutCookies_Allocations(t *testing.T) {
	for _, line := range []string{"__session=tok; __client_uat=1; __Host-tollgate=x", "__session=tok; app=1; __Host-tollgate=x"} {
		if n := testing.AllocsPerRun(10, func() { withoutCookies(line, false) }); n != 0 {
			t.Errorf("withoutCookies(%q): %.0f allocations, want 0", line, n)
		}
	}
}

func FuzzWithoutCookies(f *testing.F) {
	for _, s := range []string{"__session=tok; __client_uat=1; __Host-tollgate=x", "a=1; b=2", " ; __clerk_x=1;a", "__refresh_=1;\t__session_=2"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, line string, forwardClerk bool) {
		if got, want := withoutCookies(line, forwardClerk), withoutCookiesSpec(line, forwardClerk); got != want {
			t.Errorf("withoutCookies(%q, %v) = %q, want %q", line, forwardClerk, got, want)
		}
	})
}

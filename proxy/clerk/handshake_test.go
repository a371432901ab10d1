package clerk

import (
	"crypto/rsa"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// handshakeToken is a handshake payload JWT, signed like a session token.
func handshakeToken(t testing.TB, key *rsa.PrivateKey, directives ...string) string {
	t.Helper()
	return mint(t, key, sessionHeader(), claims{"handshake": directives})
}

// signedInDirectives is what the Frontend API sends back for an active
// session: a new __session and __client_uat, and clean-up.
func signedInDirectives(session string, uat int64) []string {
	return []string{
		"__client_uat=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
		"__clerk_handshake=; Path=/; Domain=example.com; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
		fmt.Sprintf("__client_uat=%d; Path=/; Domain=example.com; Max-Age=315360000; Secure; SameSite=Lax", uat),
		"__session=" + session + "; Path=/; Secure; SameSite=Lax",
	}
}

var signedOutDirectives = []string{
	"__client_uat=0; Path=/; Max-Age=315360000; Secure; SameSite=Lax",
	"__session=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; SameSite=Lax",
}

func TestHandshake_ProductionToken(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	fresh := e.token()
	directives := signedInDirectives(fresh, now.Unix())
	r := page("/dash", cookie("__clerk_handshake", handshakeToken(t, e.key, directives...)),
		cookie("__session", e.expiredToken()), uatCookie())

	got := e.c.Authenticate(t.Context(), r)
	want := signedIn("handshake", now.Unix(), now)
	want.SetCookies = directives // verbatim, for the gate to append to the upstream's answer
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}

	// The new token was verified once; the browser's next request hits the cache.
	before := e.c.verifications.Load()
	got = e.c.Authenticate(t.Context(), xhr("/api", cookie("__session", fresh), cookie("__client_uat", now.Unix())))
	if got.State != proxy.SignedIn || e.c.verifications.Load() != before {
		t.Errorf("next request: %v (%s), %d more verifications", got.State, got.Reason, e.c.verifications.Load()-before)
	}
}

// The browser applies a payload's directives in order, so the last
// __session one is the cookie it keeps: clearing the old token before
// setting the new one signs in; setting it and then clearing it signs out.
func TestHandshake_LastSessionDirectiveWins(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	fresh := e.token()
	clear := "__session=; Path=/; Max-Age=0; Secure; SameSite=Lax"
	set := "__session=" + fresh + "; Path=/; Secure; SameSite=Lax"
	uat := fmt.Sprintf("__client_uat=%d; Path=/; Max-Age=315360000; Secure; SameSite=Lax", now.Unix())

	got := e.c.Authenticate(t.Context(), page("/", cookie("__clerk_handshake", handshakeToken(t, e.key, clear, set, uat))))
	if got.State != proxy.SignedIn || got.Identity.Source != "handshake" {
		t.Errorf("clear, then set: %v (%s), want signed in", got.State, got.Reason)
	}
	got = e.c.Authenticate(t.Context(), page("/", cookie("__clerk_handshake", handshakeToken(t, e.key, set, clear, uat))))
	if got.State != proxy.SignedOut || got.Reason != "session-token-missing" {
		t.Errorf("set, then clear: %v (%s), want signed out", got.State, got.Reason)
	}
}

func TestHandshake_ProductionSignedOut(t *testing.T) {
	e := newEnv(t)
	r := page("/", cookie("__clerk_handshake", handshakeToken(t, e.key, signedOutDirectives...)), uatCookie())
	got := e.c.Authenticate(t.Context(), r)
	want := proxy.AuthResult{State: proxy.SignedOut, Reason: "session-token-missing", SetCookies: signedOutDirectives}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

func TestHandshake_PayloadHasNoTimeClaims(t *testing.T) {
	e := newEnv(t)
	fresh := e.token()
	old := mint(t, e.key, sessionHeader(), claims{
		"handshake": signedInDirectives(fresh, testUAT),
		"exp":       e.clock.Now().Add(-time.Hour).Unix(),
	})
	got := e.c.Authenticate(t.Context(), page("/", cookie("__clerk_handshake", old)))
	if got.State != proxy.SignedIn {
		t.Errorf("State = %v (%s), want signed in", got.State, got.Reason)
	}
}

func TestHandshake_DevelopmentQuery(t *testing.T) {
	e := newEnv(t, development)
	now := e.clock.Now()
	fresh := e.token()

	t.Run("signed in", func(t *testing.T) {
		directives := signedInDirectives(fresh, now.Unix())
		r := page("/page?x=1&__clerk_handshake="+handshakeToken(t, e.key, directives...)+"&__clerk_help=1&y=2", "__clerk_db_jwt=dvb_1")
		got := e.c.Authenticate(t.Context(), r)
		want := signedIn("handshake", now.Unix(), now)
		want.SetCookies, want.Location, want.DevBrowserToken = directives, "https://app.example.com/page?x=1&y=2", "dvb_1"
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("(-got +want):\n%s", diff)
		}
	})
	t.Run("signed out", func(t *testing.T) {
		r := page("/page?__clerk_handshake=" + handshakeToken(t, e.key, signedOutDirectives...))
		got := e.c.Authenticate(t.Context(), r)
		want := proxy.AuthResult{State: proxy.SignedOut, Reason: "session-token-missing", SetCookies: signedOutDirectives,
			Location: "https://app.example.com/page"}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("(-got +want):\n%s", diff)
		}
	})
	t.Run("unverifiable payload: signed out, not a 500", func(t *testing.T) {
		bad := handshakeToken(t, otherKey(), signedInDirectives(fresh, now.Unix())...)
		got := e.c.Authenticate(t.Context(), page("/p?__clerk_handshake="+bad+"&k=v", uatCookie()))
		want := proxy.AuthResult{State: proxy.SignedOut, Reason: "handshake-failed", ClientUAT: testUAT,
			Location: "https://app.example.com/p?k=v"}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("(-got +want):\n%s", diff)
		}
	})
}

// Clerk's development clock-skew retry (handshake.ts resolveHandshake): a
// development handshake token that fails only on its time claims is
// accepted with a day of skew; a production one is not, and beyond a day
// neither is.
func TestHandshake_DevelopmentClockSkew(t *testing.T) {
	dev, prod := newEnv(t, development), newEnv(t)
	now := dev.clock.Now()
	for _, tc := range []struct {
		name   string
		iat    time.Time
		devOK  bool
		reason string
	}{
		{"Clerk's clock an hour ahead", now.Add(time.Hour), true, ""},
		{"Clerk's clock an hour behind", now.Add(-time.Hour), true, ""},
		{"two days behind", now.Add(-48 * time.Hour), false, "handshake-failed"},
		{"two days ahead", now.Add(48 * time.Hour), false, "handshake-failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := mint(t, dev.key, sessionHeader(), sessionClaims(tc.iat))
			directives := signedInDirectives(tok, tc.iat.Unix())
			got := dev.c.Authenticate(t.Context(), page("/p?__clerk_handshake="+handshakeToken(t, dev.key, directives...)))
			if tc.devOK {
				want := signedIn("handshake", tc.iat.Unix(), tc.iat)
				want.SetCookies, want.Location = directives, "https://app.example.com/p"
				if diff := cmp.Diff(got, want); diff != "" {
					t.Errorf("development (-got +want):\n%s", diff)
				}
			} else if got.State != proxy.SignedOut || got.Reason != tc.reason {
				t.Errorf("development: %v (%s), want signed out (%s)", got.State, got.Reason, tc.reason)
			}
			got = prod.c.Authenticate(t.Context(), page("/p", cookie("__clerk_handshake", handshakeToken(t, prod.key, directives...))))
			if got.State == proxy.SignedIn {
				t.Errorf("production accepted a token %v off", tc.iat.Sub(now))
			}
			// What passed thanks to the skew is not cached: the same token
			// in a cookie is judged with the normal leeway.
			got = dev.c.Authenticate(t.Context(), xhr("/", cookie("__session", tok), cookie("__client_uat", tc.iat.Unix())))
			if got.State == proxy.SignedIn {
				t.Errorf("the skewed token as a cookie: signed in")
			}
		})
	}
	if !strings.Contains(dev.logs.String(), "clock skew detected") {
		t.Error("the skew was not logged")
	}
}

func TestHandshake_Nonce(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	directives := signedInDirectives(e.token(), now.Unix())
	e.clerk.mu.Lock()
	e.clerk.nonces["nonce_1"] = directives
	e.clerk.mu.Unlock()

	// The nonce wins over a (here unverifiable) token.
	r := page("/", cookie("__clerk_handshake_nonce", "nonce_1"), cookie("__clerk_handshake", "x.y.z"))
	got := e.c.Authenticate(t.Context(), r)
	want := signedIn("handshake", now.Unix(), now)
	want.SetCookies = directives
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	e.clerk.mu.Lock()
	defer e.clerk.mu.Unlock()
	if e.clerk.lastNonce != "nonce_1" {
		t.Errorf("Backend API got nonce %q", e.clerk.lastNonce)
	}
}

func TestHandshake_ProductionFailureFallsThrough(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	valid := e.token()
	foreignSession := mint(t, e.key, sessionHeader(), sessionClaims(now).with("azp", "https://evil.example"))

	tests := []struct {
		name string
		hs   string // a handshake cookie, as name=value
		want proxy.AuthState
	}{
		{"payload signed by another key", cookie("__clerk_handshake", handshakeToken(t, otherKey(), signedInDirectives(valid, now.Unix())...)), proxy.SignedIn},
		{"payload of another category", cookie("__clerk_handshake", mint(t, e.key, sessionHeader().with("cat", "cl_B7d4PD222AAA"), claims{"handshake": signedOutDirectives})), proxy.SignedIn},
		{"payload with alg none", cookie("__clerk_handshake", rawJWT(t, claims{"alg": "none"}, claims{"handshake": signedOutDirectives}, nil)), proxy.SignedIn},
		{"payload's session token invalid", cookie("__clerk_handshake", handshakeToken(t, e.key, signedInDirectives(foreignSession, now.Unix())...)), proxy.SignedIn},
		{"unknown nonce", cookie("__clerk_handshake_nonce", "nonce_unknown"), proxy.SignedIn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The request's own cookies decide.
			got := e.c.Authenticate(t.Context(), xhr("/", tt.hs, cookie("__session", valid), uatCookie()))
			if got.State != tt.want || got.Identity == nil || got.Identity.Source != "cookie" || got.SetCookies != nil {
				t.Errorf("got %v (%s) %+v", got.State, got.Reason, got.Identity)
			}
		})
	}
	if !strings.Contains(e.logs.String(), "cannot resolve the handshake") {
		t.Error("handshake failures were not logged")
	}

	// Without a usable session cookie, a page load goes through a new handshake.
	bad := handshakeToken(t, otherKey(), signedOutDirectives...)
	if got := e.c.Authenticate(t.Context(), page("/", cookie("__clerk_handshake", bad), uatCookie())); got.State != proxy.Handshake {
		t.Errorf("page load: %v (%s), want handshake", got.State, got.Reason)
	}
}

func TestHandshake_PendingSession(t *testing.T) {
	e := newEnv(t)
	directives := signedInDirectives(e.token("sts", "pending"), e.clock.Now().Unix())
	got := e.c.Authenticate(t.Context(), page("/", cookie("__clerk_handshake", handshakeToken(t, e.key, directives...))))
	if got.State != proxy.SignedOut || got.Reason != "session-pending" || len(got.SetCookies) != len(directives) {
		t.Errorf("got %v (%s), %d cookies", got.State, got.Reason, len(got.SetCookies))
	}
}

func TestDirectiveCookie(t *testing.T) {
	tests := []struct{ in, name, value string }{
		{"__session=abc.def.ghi; Path=/; Secure", "__session", "abc.def.ghi"},
		{"__session_Ab-9_x=v; Path=/", "__session_Ab-9_x", "v"},
		{"__session=; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "__session", ""},
		{" __client_uat = 17 ", "__client_uat", "17"},
		{"noequals", "noequals", ""},
	}
	for _, tt := range tests {
		if n, v := directiveCookie(tt.in); n != tt.name || v != tt.value {
			t.Errorf("directiveCookie(%q) = %q, %q; want %q, %q", tt.in, n, v, tt.name, tt.value)
		}
	}
}

// A production instance's Frontend API sets the handshake payload or nonce
// as a cookie, never in the URL: in the query they are a forged link (login
// CSRF) and are not read, let alone exchanged.
func TestHandshake_ProductionIgnoresTheQuery(t *testing.T) {
	e := newEnv(t)
	directives := signedInDirectives(e.token(), e.clock.Now().Unix())
	e.clerk.mu.Lock()
	e.clerk.nonces["nonce_1"] = directives
	e.clerk.mu.Unlock()
	for _, q := range []string{
		"__clerk_handshake=" + handshakeToken(t, e.key, directives...),
		"__clerk_handshake_nonce=nonce_1",
	} {
		got := e.c.Authenticate(t.Context(), page("/dash?"+q))
		want := proxy.AuthResult{State: proxy.SignedOut, Reason: "session-token-and-uat-missing"}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("%.30s…: (-got +want):\n%s", q, diff)
		}
	}
	e.clerk.mu.Lock()
	defer e.clerk.mu.Unlock()
	if e.clerk.lastNonce != "" {
		t.Errorf("a nonce from the query was exchanged: %q", e.clerk.lastNonce)
	}
}

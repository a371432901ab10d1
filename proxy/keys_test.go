package proxy

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePublishableKey(t *testing.T) {
	tests := []struct {
		pk   string
		want PublishableKey
	}{
		{"pk_test_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA", PublishableKey{
			FrontendAPIHost: "clerk.inspired.puma-74.lcl.dev", AccountsURL: "https://accounts.inspired.puma-74.lcl.dev",
			CookieSuffix: cookieSuffix("pk_test_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA"),
		}},
		{"pk_live_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA", PublishableKey{
			FrontendAPIHost: "clerk.inspired.puma-74.lcl.dev", Production: true, AccountsURL: "https://accounts.inspired.puma-74.lcl.dev",
			CookieSuffix: cookieSuffix("pk_live_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA"),
		}},
		{"pk_test_Zm9vLWJhci0xMy5jbGVyay5hY2NvdW50cy5kZXYk", PublishableKey{
			FrontendAPIHost: "foo-bar-13.clerk.accounts.dev", AccountsURL: "https://foo-bar-13.accounts.dev",
			CookieSuffix: cookieSuffix("pk_test_Zm9vLWJhci0xMy5jbGVyay5hY2NvdW50cy5kZXYk"),
		}},
		{"pk_test_ZXhhbXBsZS5hY2NvdW50cy5kZXYk", PublishableKey{ // the docs' example
			FrontendAPIHost: "example.accounts.dev", AccountsURL: "https://example.accounts.dev",
			CookieSuffix: cookieSuffix("pk_test_ZXhhbXBsZS5hY2NvdW50cy5kZXYk"),
		}},
		{"pk_live_ZmFrZS1jbGVyay10ZXN0LmNsZXJrLmFjY291bnRzLmRldiQ=", PublishableKey{ // padded
			FrontendAPIHost: "fake-clerk-test.clerk.accounts.dev", Production: true, AccountsURL: "https://fake-clerk-test.accounts.dev",
			CookieSuffix: "qReyu04C",
		}},
	}
	for _, tt := range tests {
		got, err := ParsePublishableKey(tt.pk)
		if err != nil {
			t.Errorf("ParsePublishableKey(%q): %v", tt.pk, err)
			continue
		}
		if diff := cmp.Diff(got, tt.want); diff != "" {
			t.Errorf("ParsePublishableKey(%q) (-got +want):\n%s", tt.pk, diff)
		}
	}

	for _, bad := range []string{
		"",
		"pk_live_",
		"sk_live_Y2xlcmsuZXhhbXBsZS5jb20k",
		"pk_prod_Y2xlcmsuZXhhbXBsZS5jb20k",
		"pk_live_Y2xlcmsuZXhhbXBsZS5jb20",        // no trailing $
		"pk_live_Y2xlcmsuZXhhbXBsZS5jb20kJA",     // two $
		"pk_live_bG9jYWxob3N0JA",                 // "localhost$": no dot
		"pk_live_ZXZpbC5jb20vcGF0aCQ",            // "evil.com/path$"
		"pk_live_Y2xlcmsuZXhhbXBsZS5jb20k_extra", // four parts
		"pk_live_!!!",
	} {
		if _, err := ParsePublishableKey(bad); err == nil {
			t.Errorf("ParsePublishableKey(%q): no error", bad)
		}
	}
}

func TestAccountsURL(t *testing.T) {
	tests := map[string]string{
		"one-two-three.clerk.accounts.dev":             "https://one-two-three.accounts.dev",
		"clerk.example.com":                            "https://accounts.example.com",
		"clerk.accounts.example.com":                   "https://accounts.example.com",
		"foo-bar-13.clerk.accountsstage.dev":           "https://foo-bar-13.accountsstage.dev",
		"clerk.accountsstage.example.com":              "https://accountsstage.example.com",
		"enough-alpaca-82.clerk.accounts.lclclerk.com": "https://enough-alpaca-82.accounts.lclclerk.com",
	}
	for host, want := range tests {
		if got := accountsURL(host); got != want {
			t.Errorf("accountsURL(%q) = %q, want %q", host, got, want)
		}
	}
}

// Vectors of @clerk/shared's keys.spec.ts and authenticateContext.test.ts.
func TestCookieSuffix(t *testing.T) {
	tests := map[string]string{
		"pk_live_ZmFrZS1jbGVyay10ZXN0LmNsZXJrLmFjY291bnRzLmRldiQ=":             "qReyu04C",
		"pk_test_Y2xlcmsuY2xlcmsuZGV2JA":                                       "QvfNY2dr",
		"pk_test_ZW5vdWdoLWFscGFjYS04Mi5jbGVyay5hY2NvdW50cy5sY2xjbGVyay5jb20k": "jtYvyt_H",
		"pk_test_eHh4eHh4LXhhYWFhYS1hYS5jbGVyay5hY2NvdW50cy5sY2xjbGVyay5jb20k": "tZJdb-5s",
		"pk_live_Y2xlcmsuY2xlcmsuZGV2JA":                                       "1Z8AzTQD",
	}
	for pk, want := range tests {
		if got := cookieSuffix(pk); got != want {
			t.Errorf("cookieSuffix(%q) = %q, want %q", pk, got, want)
		}
		parsed, err := ParsePublishableKey(pk)
		if err != nil {
			t.Errorf("ParsePublishableKey(%q): %v", pk, err)
		} else if parsed.CookieSuffix != want {
			t.Errorf("ParsePublishableKey(%q).CookieSuffix = %q, want %q", pk, parsed.CookieSuffix, want)
		}
	}
}

func TestOriginFor(t *testing.T) {
	mustParse := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	public := mustParse("https://app.example.com")
	extra := []*url.URL{mustParse("https://www.example.com"), mustParse("http://localhost:8081")}
	for _, tc := range []struct{ host, want string }{
		{"app.example.com", "https://app.example.com"},
		{"www.example.com", "https://www.example.com"},
		{"WWW.Example.COM.", "https://www.example.com"},
		{"localhost:8081", "http://localhost:8081"},
		{"localhost:8082", "https://app.example.com"}, // another port: another origin
		{"evil.test", "https://app.example.com"},      // never a Host that names no origin
		{"www.example.com.evil.test", "https://app.example.com"},
		{"", "https://app.example.com"},
		{"[::1]:8081", "https://app.example.com"},
	} {
		if got := OriginFor(public, extra, tc.host).String(); got != tc.want {
			t.Errorf("OriginFor(%q) = %q, want %q", tc.host, got, tc.want)
		}
	}
}

// A secret pasted where the publishable key goes is never quoted back: the
// error would reach logs.
func TestParsePublishableKey_NeverQuotesASecret(t *testing.T) {
	for _, v := range []string{"sk_live_abcdefghijklmnop", "sk_test_abcdefghijklmnop", "rk_live_abcdefghijklmnop", "whsec_abcdefghijklmnop"} {
		_, err := ParsePublishableKey(v)
		if err == nil || strings.Contains(err.Error(), "abcdefgh") || !strings.Contains(err.Error(), "looks like a secret key") {
			t.Errorf("%.8s…: %v", v, err)
		}
	}
}

package clerksandbox

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The organisation page stands in for the Account Portal's: signed out it
// asks for a sign-in first; signed in it names the visitor's organisation
// and offers the members of organisations to sign in as, and the way back.
func TestOrganizationPage(t *testing.T) {
	f := newFixture(t, Options{})
	back := url.QueryEscape("http://127.0.0.1:8080/.tollgate/upgrade?route=TEAM1")
	_, ada := f.c.SignIn("user_ada")
	_, grace := f.c.SignIn("user_grace")
	tests := []struct {
		name    string
		query   string
		cookies []*http.Cookie
		code    int
		loc     string
		want    []string
		absent  []string
	}{
		{name: "signed out", query: "?redirect_url=" + back, code: http.StatusFound, loc: "/sign-in?redirect_url=" + back},
		{name: "no organisation", query: "?redirect_url=" + back, cookies: ada, code: http.StatusOK,
			want:   []string{"Ada Lovelace</strong>: no organisation", "Sign in as Grace Hopper", "Sign in as Linus Torvalds", "admin of Acme Inc. (acme)", "Back to the app"},
			absent: []string{"Sign in as Ada"}},
		{name: "an organisation", cookies: grace, code: http.StatusOK,
			want:   []string{"Grace Hopper</strong>: admin of Acme Inc. (acme), the active organisation", "Sign in as Linus Torvalds"},
			absent: []string{"Sign in as Grace", "Back to the app"}},
		{name: "a redirect elsewhere", query: "?redirect_url=" + url.QueryEscape("https://evil.example/"), cookies: ada, code: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := f.get(t, "/organization"+tt.query, tt.cookies...)
			b, _ := io.ReadAll(res.Body)
			page := string(b)
			if res.StatusCode != tt.code || res.Header.Get("Location") != tt.loc {
				t.Fatalf("%d %q, want %d %q\n%s", res.StatusCode, res.Header.Get("Location"), tt.code, tt.loc, page)
			}
			for _, s := range tt.want {
				if !strings.Contains(page, s) {
					t.Errorf("the page lacks %q:\n%s", s, page)
				}
			}
			for _, s := range tt.absent {
				if strings.Contains(page, s) {
					t.Errorf("the page says %q", s)
				}
			}
		})
	}
}

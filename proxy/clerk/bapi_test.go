package clerk

import (
	"errors"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

func TestCheckSession(t *testing.T) {
	e := newEnv(t)
	e.clerk.mu.Lock()
	e.clerk.sessions["sess_active"] = "active"
	e.clerk.sessions["sess_org"] = "active"
	e.clerk.sessionOrgs["sess_org"] = "org_acme"
	e.clerk.sessions["sess_revoked"] = "revoked"
	e.clerk.sessions["sess_ended"] = "ended"
	e.clerk.sessions["sess_boom"] = "boom"
	e.clerk.mu.Unlock()

	tests := []struct {
		sid     string
		want    proxy.SessionStatus
		wantErr bool
	}{
		{"sess_active", proxy.SessionStatus{Active: true}, false},
		{"sess_org", proxy.SessionStatus{Active: true, OrgID: "org_acme"}, false},
		{"sess_revoked", proxy.SessionStatus{}, false},
		{"sess_ended", proxy.SessionStatus{}, false},
		{"sess_unknown", proxy.SessionStatus{}, false}, // 404
		{"", proxy.SessionStatus{}, false},
		{"sess_boom", proxy.SessionStatus{}, true}, // 502 with a non-Clerk body
	}
	for _, tt := range tests {
		got, err := e.c.CheckSession(t.Context(), tt.sid)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("CheckSession(%q) = %+v, %v; want %+v, error %v", tt.sid, got, err, tt.want, tt.wantErr)
		}
	}
}

// Clerk's 429 is a rate limit the caller can tell (proxy.ErrRateLimited),
// and for its Retry-After no Backend API call is made at all.
func TestCheckSession_RateLimited(t *testing.T) {
	e := newEnv(t)
	e.clerk.mu.Lock()
	e.clerk.sessions["sess_limited"] = "limited"
	e.clerk.sessions["sess_active"] = "active"
	e.clerk.mu.Unlock()
	if _, err := e.c.CheckSession(t.Context(), "sess_limited"); !errors.Is(err, proxy.ErrRateLimited) {
		t.Fatalf("429: %v, want ErrRateLimited", err)
	}
	calls := e.clerk.hits.Load()
	if _, err := e.c.CheckSession(t.Context(), "sess_active"); !errors.Is(err, proxy.ErrRateLimited) || e.clerk.hits.Load() != calls {
		t.Errorf("during Retry-After: %v, %d calls made", err, e.clerk.hits.Load()-calls)
	}
	if got := e.c.RefreshStretch(); got != proxy.MaxRefreshStretch {
		t.Errorf("RefreshStretch during Retry-After = %v", got)
	}
	e.clock.Advance(4 * time.Second)
	if st, err := e.c.CheckSession(t.Context(), "sess_active"); err != nil || !st.Active {
		t.Errorf("after Retry-After: %+v %v", st, err)
	}
}

func TestEndSession(t *testing.T) {
	e := newEnv(t)
	e.clerk.mu.Lock()
	e.clerk.sessions["sess_active"] = "active"
	e.clerk.sessions["sess_ended"] = "ended"
	e.clerk.sessions["sess_boom"] = "boom"
	e.clerk.mu.Unlock()
	wantClear := []string{
		"__session=; Path=/; Max-Age=0; SameSite=Lax; Secure",
		e.c.names.session + "=; Path=/; Max-Age=0; SameSite=Lax; Secure",
	}
	tests := []struct {
		sid     string
		wantErr bool
	}{
		{"sess_active", false},
		{"sess_ended", false},   // Clerk refuses to revoke it, and it is not active: ended all the same
		{"sess_unknown", false}, // likewise
		{"sess_boom", true},     // Clerk cannot say: not ended
	}
	for _, tt := range tests {
		clear, err := e.c.EndSession(t.Context(), tt.sid)
		if (err != nil) != tt.wantErr || !slices.Equal(clear, wantClear) {
			t.Errorf("EndSession(%q) = %q, %v; want %q, error %v", tt.sid, clear, err, wantClear, tt.wantErr)
		}
	}
	e.clerk.mu.Lock()
	defer e.clerk.mu.Unlock()
	if e.clerk.sessions["sess_active"] != "revoked" {
		t.Errorf("the session is %q after EndSession", e.clerk.sessions["sess_active"])
	}
}

func TestEmail(t *testing.T) {
	e := newEnv(t)
	if got, err := e.c.Email(t.Context(), "user_123"); got != "ada@example.com" || err != nil {
		t.Errorf("Email(user_123) = %q, %v", got, err)
	}
	if got, err := e.c.Email(t.Context(), "user_noemail"); got != "" || err != nil {
		t.Errorf("Email(user_noemail) = %q, %v", got, err)
	}
	if _, err := e.c.Email(t.Context(), "user_gone"); !errors.Is(err, proxy.ErrNotFound) {
		t.Errorf("Email(user_gone) error = %v, want ErrNotFound", err)
	}
}

func TestPortalURLs(t *testing.T) {
	prod := newEnv(t)
	dev := newEnv(t, development)
	sandbox := newEnv(t, func(c *Config) { c.SignInURL = "http://127.0.0.1:4010/sign-in?theme=dark" })
	odd := newEnv(t, func(c *Config) { c.SignInURL = "https://login.example.com/enter" })

	tests := []struct{ name, got, want string }{
		{"sign-in", prod.c.SignInURL("https://app.example.com/a?b=c", "dvb_ignored"),
			"https://accounts.example.com/sign-in?redirect_url=https%3A%2F%2Fapp.example.com%2Fa%3Fb%3Dc"},
		{"sign-in, path made absolute", prod.c.SignInURL("/settings", ""),
			"https://accounts.example.com/sign-in?redirect_url=https%3A%2F%2Fapp.example.com%2Fsettings"},
		{"sign-in, dev browser", dev.c.SignInURL("https://app.example.com/", "dvb_1"),
			"https://accounts.example.com/sign-in?__clerk_db_jwt=dvb_1&redirect_url=https%3A%2F%2Fapp.example.com%2F"},
		{"sign-in override", sandbox.c.SignInURL("/x", ""),
			"http://127.0.0.1:4010/sign-in?redirect_url=https%3A%2F%2Fapp.example.com%2Fx&theme=dark"},
		{"sign-up", prod.c.SignUpURL("/pricing", ""),
			"https://accounts.example.com/sign-up?redirect_url=https%3A%2F%2Fapp.example.com%2Fpricing"},
		{"sign-up, dev browser", dev.c.SignUpURL("/", "dvb_1"),
			"https://accounts.example.com/sign-up?__clerk_db_jwt=dvb_1&redirect_url=https%3A%2F%2Fapp.example.com%2F"},
		{"sign-up beside the sign-in override", sandbox.c.SignUpURL("/x", ""),
			"http://127.0.0.1:4010/sign-up?redirect_url=https%3A%2F%2Fapp.example.com%2Fx"},
		{"sign-up beside an override not ending in /sign-in", odd.c.SignUpURL("/x", ""),
			"https://accounts.example.com/sign-up?redirect_url=https%3A%2F%2Fapp.example.com%2Fx"},
		{"organisation", prod.c.OrganizationURL("/.tollgate/upgrade?route=TEAM1", ""),
			"https://accounts.example.com/organization?redirect_url=https%3A%2F%2Fapp.example.com%2F.tollgate%2Fupgrade%3Froute%3DTEAM1"},
		{"organisation beside the sign-in override", sandbox.c.OrganizationURL("/", ""),
			"http://127.0.0.1:4010/organization?redirect_url=https%3A%2F%2Fapp.example.com%2F"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, tt.got, tt.want)
		}
		if _, err := url.Parse(tt.got); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

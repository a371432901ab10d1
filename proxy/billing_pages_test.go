package proxy

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSafeReturn_KeepsOnlyOwnPaths(t *testing.T) {
	fx := newGateFixture(t, nil)
	tests := []struct{ in, want string }{
		{"", "/"},
		{"/routes/415VNA/?tab=2", "/routes/415VNA/?tab=2"},
		{"https://app.example.com/routes/x", "/routes/x"},
		{"HTTPS://APP.EXAMPLE.COM/routes/x", "/routes/x"},
		{"https://evil.example/routes/x", "/"},
		{"https://app.example.com.evil.example/x", "/"},
		{"https://user@app.example.com/x", "/"},
		{"http://app.example.com/x", "/"}, // another scheme is another origin
		{"//evil.example/x", "/"},
		{"/\\evil.example", "/%5Cevil.example"},
		{"\\\\evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"/.tollgate/upgrade?route=x", "/"},
		{"/.TOLLGATE/checkout", "/"},
		{"/a/../.tollgate/account", "/"},
		{"/x?__clerk_handshake=abc&keep=1", "/x?keep=1"},
		{"relative/path", "/"},
	}
	for _, tt := range tests {
		got := fx.srv.safeReturn(tt.in)
		if got != tt.want {
			t.Errorf("safeReturn(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.HasPrefix(got, "//") || strings.HasPrefix(got, "/\\") {
			t.Errorf("safeReturn(%q) = %q: a browser reads that as another host", tt.in, got)
		}
	}
}

type fakeBilling struct {
	mu       sync.Mutex
	requests []CheckoutRequest
	portals  []Subject
}

func (f *fakeBilling) Checkout(_ context.Context, req CheckoutRequest) (CheckoutResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	return CheckoutResult{URL: "https://checkout.stripe.test/c/pay/cs_1"}, nil
}

func (f *fakeBilling) CompleteCheckout(context.Context, string, *Identity) (CheckoutReturn, error) {
	return CheckoutReturn{}, ErrNotYours
}

func (f *fakeBilling) Portal(_ context.Context, s Subject, _ string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.portals = append(f.portals, s)
	return "https://billing.stripe.test/p/session/1", nil
}

func (fx *gateFixture) post(target string, form url.Values, hdr map[string]string) *http.Response {
	fx.t.Helper()
	req, _ := http.NewRequest("POST", fx.front.URL+target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestCheckout_WhoMayPayAndFromWhere(t *testing.T) {
	fx := newGateFixture(t, nil)
	fb := &fakeBilling{}
	fx.srv.billing = fb
	user := map[string]string{"X-Test-User": "user_1", "Accept": "text/html"}
	member := map[string]string{"X-Test-User": "user_1", "X-Test-Org": "org_1", "Accept": "text/html"}

	// A user plan: the user pays, the return path is kept (and cleaned).
	resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"pro"}, "return": {"https://evil.example/x"}}, user)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "https://checkout.stripe.test/c/pay/cs_1" {
		t.Fatalf("checkout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// An organisation plan without an active organisation, or as a member: refused.
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"team"}}, user); resp.StatusCode != http.StatusForbidden {
		t.Errorf("org plan, no org: %d", resp.StatusCode)
	}
	// The fixture's fake Clerk makes everyone an org admin; a member is not.
	fx.srv.auth = fakeAuth{func(r *http.Request) AuthResult {
		res := signedInByHeader(r)
		if res.Identity != nil && r.Header.Get("X-Test-Role") != "" {
			res.Identity.OrgRole = r.Header.Get("X-Test-Role")
		}
		return res
	}}
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"team"}}, with(member, "X-Test-Role", "org:member")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("org plan, member: %d", resp.StatusCode)
	}
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"team"}}, member); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("org plan, admin: %d", resp.StatusCode)
	}
	// Cross-origin POSTs are refused before anything happens.
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"pro"}}, with(user, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin: %d", resp.StatusCode)
	}
	// Unknown plan: 404; signed out: 401 (a POST is never redirected).
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"gold"}}, user); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown plan: %d", resp.StatusCode)
	}
	if resp := fx.post("/.tollgate/checkout", url.Values{"plan": {"pro"}}, map[string]string{"Accept": "text/html"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("signed out: %d", resp.StatusCode)
	}
	got := []string{}
	for _, r := range fb.requests {
		got = append(got, r.Subject.String()+" "+r.Plan.Key+" "+r.ReturnPath)
	}
	if diff := cmp.Diff([]string{"user:user_1 pro /", "org:org_1 team /"}, got); diff != "" {
		t.Errorf("checkouts started (-want +got):\n%s", diff)
	}

	// The portal: the user's own, or the organisation's for its admins only.
	fx.post("/.tollgate/billing", nil, user)
	if resp := fx.post("/.tollgate/billing", url.Values{"scope": {"org"}}, with(member, "X-Test-Role", "org:member")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("org portal as a member: %d", resp.StatusCode)
	}
	fx.post("/.tollgate/billing", url.Values{"scope": {"org"}}, member)
	if diff := cmp.Diff([]Subject{{Kind: SubjectUser, ID: "user_1"}, {Kind: SubjectOrg, ID: "org_1"}}, fb.portals); diff != "" {
		t.Errorf("portals opened (-want +got):\n%s", diff)
	}

	// Someone else's checkout session: 403.
	if resp := fx.do("GET", "/.tollgate/checkout/done?session_id=cs_other", with(navigation, "X-Test-User", "user_1")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign session: %d", resp.StatusCode)
	}
}

package gateway

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// addVary adds what is missing, once; a response without Vary gets the
// request's backing array, capped, so an append to the field afterwards
// copies rather than write past it (README "Performance").
func TestAddVary(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []string
		want []string
	}{
		{"none", nil, []string{"Cookie", "Authorization"}},
		{"another", []string{"Accept-Encoding"}, []string{"Accept-Encoding", "Cookie", "Authorization"}},
		{"one of them, another case", []string{"cookie"}, []string{"cookie", "Authorization"}},
		{"both in a list", []string{"Authorization, COOKIE"}, []string{"Authorization, COOKIE"}},
		{"star", []string{"*"}, []string{"*"}},
		{"a name containing one", []string{"X-Cookie-Hint"}, []string{"X-Cookie-Hint", "Cookie", "Authorization"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.in != nil {
				h["Vary"] = tt.in
			}
			var backing [2]string
			addVary(h, &backing, "Cookie", "Authorization")
			if diff := cmp.Diff(tt.want, h["Vary"]); diff != "" {
				t.Fatalf("Vary (-want +got):\n%s", diff)
			}
			v := h["Vary"]
			if cap(v) != len(v) && tt.in == nil {
				t.Errorf("backed Vary has room to append into: len %d cap %d", len(v), cap(v))
			}
			before := backing
			h["Vary"] = append(h["Vary"], "Origin")
			if backing != before {
				t.Errorf("an append to Vary wrote into the backing array: %q", backing)
			}
		})
	}
	h := http.Header{}
	addVary(h, nil, "Cookie", "Authorization") // no backing: a slice of its own
	if diff := cmp.Diff([]string{"Cookie", "Authorization"}, h["Vary"]); diff != "" {
		t.Errorf("without backing (-want +got):\n%s", diff)
	}
}

// The X-Tollgate- values share the forward's array, each capped at its
// one value: appending to one never overwrites the next.
func TestSetIdentityHeaders_Capped(t *testing.T) {
	f := &forward{identity: &proxy.Identity{UserID: "user_ada", OrgID: "org_1", KeyID: "key_1"}, plan: "pro", status: proxy.StatusActive, routeID: "415VNA"}
	h := http.Header{}
	setIdentityHeaders(h, f)
	want := http.Header{HeaderUser: {"user_ada"}, HeaderOrg: {"org_1"}, HeaderKey: {"key_1"}, HeaderPlan: {"pro"},
		HeaderStatus: {"active"}, HeaderRoute: {"415VNA"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Fatalf("headers (-want +got):\n%s", diff)
	}
	for name := range want {
		h[name] = append(h[name], "x")
	}
	want2 := http.Header{}
	for name, v := range want {
		want2[name] = append(append([]string(nil), v...), "x")
	}
	if diff := cmp.Diff(want2, h); diff != "" {
		t.Errorf("after appending to each (-want +got):\n%s", diff)
	}
}

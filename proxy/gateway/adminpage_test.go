package gateway

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/proxy"
)

// The admin page's status filter offers every status the domain knows,
// incomplete_expired too (it was missing from a list of its own).
func TestAdminPage_FilterOffersEveryStatus(t *testing.T) {
	fx := newGateFixture(t, nil)
	fx.srv.users = fakeUsers{}
	resp := fx.do("GET", "/.tollgate/admin?status=incomplete_expired", with(navigation, "X-Test-User", "user_boss"))
	b := body(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("admin page: %d %.300s", resp.StatusCode, b)
	}
	for _, st := range proxy.Statuses() {
		if !strings.Contains(b, `<option value="`+string(st)+`"`) {
			t.Errorf("no %s option in the status filter", st)
		}
	}
	if !strings.Contains(b, `<option value="incomplete_expired" selected>`) {
		t.Errorf("the chosen incomplete_expired filter is not selected:\n%.2000s", b)
	}
}

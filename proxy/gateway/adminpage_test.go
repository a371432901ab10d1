package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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

// recordingUsers remembers the filter the admin page asked with.
type recordingUsers struct{ got *proxy.UserFilter }

func (r recordingUsers) ListUsers(_ context.Context, f proxy.UserFilter) ([]proxy.UserSummary, string, error) {
	*r.got = f
	return nil, "", nil
}

// The admin page lists what grants as the gate decides it: under the
// config's stripe policy.
func TestAdminPage_ListsUnderTheConfigsPolicy(t *testing.T) {
	fx := newGateFixtureConfig(t, nil, func(c string) string {
		return strings.Replace(c, "past_due_grace: 0s", "past_due_grace: 72h\n  paused_collection: revoke", 1)
	})
	var got proxy.UserFilter
	fx.srv.users = recordingUsers{&got}
	if resp := fx.do("GET", "/.tollgate/admin?status=past_due&plan=pro&after=user_a", with(navigation, "X-Test-User", "user_boss")); resp.StatusCode != 200 {
		t.Fatalf("admin page: %d", resp.StatusCode)
	}
	want := proxy.UserFilter{Status: "past_due", Plan: "pro", After: "user_a", Limit: 100,
		Policy: proxy.AccessPolicy{PastDueGrace: 72 * time.Hour, PausedCollection: proxy.PausedCollectionRevoke}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("filter (-want +got):\n%s", diff)
	}
}

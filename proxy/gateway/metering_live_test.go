package gateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// A metered plan's request is counted with its cost when the response
// arrives, as its quota is debited: the cost header's value or 1, a 5xx
// nothing, a request the quota refused nothing (README "Usage billing").
func TestMetering_CountsCostNot5xx(t *testing.T) {
	fx := newLimitFixtureWith(t, 10, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/fail") {
			w.Header().Set("X-Cost", "4")
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		if c := r.URL.Query().Get("cost"); c != "" {
			w.Header().Set("X-Cost", c)
		}
		io.WriteString(w, "ok")
	}), func(cfg string) string {
		return strings.Replace(cfg, `      "*": { rate: 5/s, burst: 2 }`, `      "*": { rate: 50/s, burst: 20 }
    meter: { event_name: api_requests, price: price_pro_usage }`, 1)
	})
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_a"}
	fx.ents[ada].Subscriptions[0].CustomerID = "cus_a"
	user := map[string]string{"X-Test-User": "user_a"}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/routes/415VNA/x?cost=4", 200},
		{"/routes/415VNA/fail", 502},
		{"/routes/415VNA/x", 200},
		{"/routes/OTHER/x?cost=0", 200},
		{"/routes/415VNA/x?cost=5", 200},
		{"/routes/415VNA/x", 429}, // 10 used: refused, not billed
	} {
		resp := fx.do("GET", tc.path, user)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
	}
	n, err := fx.lim.MeteredUsage(context.Background(), ada, "api_requests", time.Time{})
	if err != nil || n != 10 {
		t.Errorf("metered usage = %d, %v; want 10 (4 + 1 + 0 + 5)", n, err)
	}
	if n, _ := fx.lim.MeteredUsage(context.Background(), proxy.Subject{Kind: proxy.SubjectUser, ID: "user_b"}, "api_requests", time.Time{}); n != 0 {
		t.Errorf("user_b's metered usage = %d; want 0", n)
	}
}

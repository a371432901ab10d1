package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/config"
	"github.com/tollgate/tollgate/proxy/limits"
)

type memUpstream struct{}

func (memUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"Content-Type": {"text/html"}},
		Body: io.NopCloser(strings.NewReader("<h1>hello</h1>")), ContentLength: 14, Request: r}, nil
}

// BenchmarkPaidRequest_Limits: the same paid request on a route of a plan
// without limits and on one under a limit (a rate and a monthly quota it
// never reaches), one subject, in the same run (README "Limits"):
//
//	go test -run='^$' -bench=PaidRequest_Limits -benchmem -count=6 ./proxy/gateway/
func BenchmarkPaidRequest_Limits(b *testing.B) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	text := fmt.Sprintf(gateTestConfig, "http://app.internal:3000")
	text = strings.Replace(text, `  pro:
    prices: [price_pro]
    routes: ["415VNA"]`, `  pro:
    prices: [price_pro]
    routes: ["415VNA", "LIMITED"]
    limits: { LIMITED: { rate: 1000000/s, burst: 1000000, quota: 1000000000000/month } }
  payg:
    routes: ["METERED"]
    meter: { event_name: api_requests, price: price_payg_usage }`, 1)
	cfg, err := config.Parse("bench.yaml", []byte(text), func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	l, err := limits.New(limits.Options{Store: limits.NewMemoryStore(), Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	sub := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	ents := fakeEntitlements{sub: {Subject: sub, Subscriptions: []proxy.Subscription{{ID: "sub_1", Plan: "pro", Status: proxy.StatusActive,
		BillingCycleAnchor: now.AddDate(0, -2, 3)}, {ID: "sub_2", Plan: "payg", Status: proxy.StatusActive, CustomerID: "cus_ada",
		CurrentPeriodEnd: now.AddDate(0, 0, 9)}}}}
	st := NewState(StateOptions{Transport: memUpstream{}})
	srv, err := New(Options{Config: cfg, Auth: fakeAuth{signedInByHeader}, Entitlements: ents, Limiter: l,
		State: st, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, path string }{{"no limits", "/routes/415VNA/x"}, {"under a limit", "/routes/LIMITED/x"}, {"metered", "/routes/METERED/x"}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				connCtx := st.ConnContext(context.Background(), nil) // as served: a connection's requests one at a time
				for pb.Next() {
					r := httptest.NewRequestWithContext(connCtx, "GET", "https://app.example.com"+bc.path, nil)
					r.Header.Set("X-Test-User", "user_ada")
					w := httptest.NewRecorder()
					srv.ServeHTTP(w, r)
					if w.Code != 200 {
						b.Fatalf("%s: %d", bc.path, w.Code)
					}
				}
			})
		})
	}
}

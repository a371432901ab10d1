package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// A wall clock that steps back after a subject spent its burst must not
// lock it out for the step's length: at most one interval (1/5 s here),
// shown as Retry-After 1 (red team, issue 18).
func TestLimitClockStepBack(t *testing.T) {
	for _, step := range []time.Duration{10 * time.Minute, 24 * time.Hour} {
		fx := newLimitFixture(t, 1000, nil)
		u := map[string]string{"X-Test-User": "user_a"}
		for range 2 { // the burst
			fx.do("GET", "/routes/OTHER/x", u).Body.Close()
		}
		fx.now = fx.now.Add(-step)
		resp := fx.do("GET", "/routes/OTHER/x", u)
		resp.Body.Close()
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "1" {
			t.Errorf("step back %v: 429 with Retry-After %q, want at most 1", step, resp.Header.Get("Retry-After"))
		}
		fx.now = fx.now.Add(200 * time.Millisecond)
		resp = fx.do("GET", "/routes/OTHER/x", u)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("step back %v, one interval later: %d (Retry-After %q), want 200", step, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
}

// The cost header is the upstream's to set: a client's in any spelling the
// app's framework reads as it (X_Cost, x.cost) never reaches the upstream,
// as the X-Tollgate-* family (red team, issue 18). Raw requests, since Go's
// client would canonicalise the names.
func TestLimitCostHeaderRequestSpellings(t *testing.T) {
	var mu sync.Mutex
	var saw []string
	fx := newLimitFixture(t, 100, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		for k, v := range r.Header {
			if foldedEqual(k, "x-cost") {
				saw = append(saw, k+": "+strings.Join(v, ","))
			}
		}
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	host := strings.TrimPrefix(fx.front.URL, "http://")
	for _, name := range []string{"X-Cost", "x-cost", "X_Cost", "x_cost", "X-COST", "X.Cost", "x_COST"} {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /routes/415VNA/x HTTP/1.1\r\nHost: %s\r\nX-Test-User: user_a\r\n%s: 0\r\nConnection: close\r\n\r\n", host, name)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d, want 200", name, resp.StatusCode)
		}
	}
	if len(saw) > 0 {
		t.Errorf("the upstream received the client's cost header: %q", saw)
	}
}

// Once the request has reached the upstream, an answer that never comes
// back still costs 1: the upstream may have done the work. Only a request
// that never went out, or a 5xx, is free (red team, issue 18: clients that
// hung up before the answer spent nothing). The gateway is served here
// through a handler that says when it is done with each request, so the
// quota is read after it settled.
func TestLimitLostAnswerCosts(t *testing.T) {
	sub := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_a"}
	for _, tc := range []struct {
		name     string
		upstream string // hang: holds the request until it is cancelled; reset: drops the connection; down: not listening
		cancel   bool   // the client hangs up once the upstream has the request
		want     int64  // units used afterwards
	}{
		{"client gone after the upstream had it", "hang", true, 1},
		{"upstream timed out", "hang", false, 1},
		{"upstream dropped the connection (502)", "reset", false, 0},
		{"upstream down: never sent", "down", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan struct{}, 1)
			var waits *upstreamWaits
			fx := newLimitFixtureWith(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got <- struct{}{}
				if tc.upstream == "reset" {
					conn, _, err := http.NewResponseController(w).Hijack()
					if err == nil {
						conn.Close()
					}
					return
				}
				<-r.Context().Done() // the gateway gave up on it
			}), nil, func(o *Options) {
				// The upstream's wait is cut by hand: the "upstream timed
				// out" case.
				waits = o.State.waits
				waits.sweepEvery = func() {}
			})
			if tc.upstream == "down" {
				fx.upstream.Close()
			}
			done := make(chan int, 1)
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fx.srv.ServeHTTP(w, r)
				done <- 0
			}))
			defer front.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", front.URL+"/routes/415VNA/x", nil)
			req.Header.Set("X-Test-User", "user_a")
			errc := make(chan error, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				errc <- err
			}()
			if tc.upstream != "down" {
				<-got
			}
			if tc.cancel {
				cancel()
			} else if tc.upstream == "hang" {
				waits.sweep(time.Now().Add(UpstreamWait + 3*time.Second))
			}
			<-done
			if err := <-errc; tc.cancel != errors.Is(err, context.Canceled) {
				t.Errorf("client: %v", err)
			}
			var used int64
			u, err := fx.lim.Usage(context.Background(), sub)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range u {
				used += c.Used
			}
			if used != tc.want {
				t.Errorf("used %d, want %d", used, tc.want)
			}
		})
	}
}

// The cost header never reaches the client in a 1xx answer (the
// ReverseProxy copies those without ModifyResponse) or as a trailer,
// declared or not; a cost sent as a trailer is ignored: the call costs 1
// (red team, issue 18).
func TestLimitCostHeaderIn1xxAndTrailers(t *testing.T) {
	for _, declared := range []bool{true, false} {
		fx := newLimitFixture(t, 100, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Cost", "7")
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("X-Cost")
			if declared {
				w.Header().Set("Trailer", "X-Cost")
			}
			w.WriteHeader(200)
			io.WriteString(w, "body")
			if declared {
				w.Header().Set("X-Cost", "50")
			} else {
				w.Header().Set(http.TrailerPrefix+"X-Cost", "50")
			}
		}))
		var hints []http.Header
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			hints = append(hints, http.Header(h).Clone())
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", fx.front.URL+"/routes/415VNA/x", nil)
		req.Header.Set("X-Test-User", "user_a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if len(hints) != 1 || hints[0].Get("Link") == "" {
			t.Errorf("declared %v: 1xx answers %v, want the 103 with its Link", declared, hints)
		}
		for _, h := range hints {
			if v, ok := h["X-Cost"]; ok {
				t.Errorf("declared %v: the cost header reached the client in a 1xx: %q", declared, v)
			}
		}
		if v, ok := resp.Trailer["X-Cost"]; ok {
			t.Errorf("declared %v: the cost header reached the client as a trailer: %q", declared, v)
		}
		if resp.StatusCode != 200 || resp.Header.Get("RateLimit") == "" {
			t.Errorf("declared %v: %d RateLimit %q, want 200 with the field", declared, resp.StatusCode, resp.Header.Get("RateLimit"))
		}
		u, err := fx.lim.Usage(context.Background(), proxy.Subject{Kind: proxy.SubjectUser, ID: "user_a"})
		if err != nil || len(u) != 1 || u[0].Used != 1 {
			t.Errorf("declared %v: usage %+v (%v), want 1: a cost in a trailer is ignored", declared, u, err)
		}
	}
}

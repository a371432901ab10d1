// Command tollgate-load runs tollgate's load scenarios on loopback, each
// printing its figures (README, "Performance" and "Scale"):
//
//	go run ./cmd/tollgate-load [wrk] [-d 5s] [-c 50,200] [-rounds 7] [-body 1024]
//	go run ./cmd/tollgate-load cold-miss [-users 8000] [-cache 1000] [-c 1,50]
//	go run ./cmd/tollgate-load webhook-storm [-events 5000] [-customers 500] [-c 8] [-store bolt|postgres] [-dsn DSN]
//	go run ./cmd/tollgate-load idle-connections [-n 10000] [-kind ws|sse]
//	go run ./cmd/tollgate-load million-user-store [-n 1000000] [-cache 100000] [-warm 100000] [-db bolt|postgres] [-dsn DSN]
//
// The default, wrk, and cold-miss measure tollgate serve against bare
// httputil.ReverseProxy in the same run (perf.go). Absolute numbers drift
// on shared machines; the ratios in one run are what to compare. Only
// 127.0.0.1 is ever contacted.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/cache"
	"github.com/tollgate/tollgate/proxy/clerk"
	"github.com/tollgate/tollgate/proxy/config"
	"github.com/tollgate/tollgate/proxy/gateway"
	clerksandbox "github.com/tollgate/tollgate/proxy/sandbox/clerk"
)

func main() {
	if err := dispatch(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tollgate-load:", err)
		os.Exit(1)
	}
}

const loadConfig = `
public_url: "%s"
upstream: "%s"
default_access: paid
clerk:
  publishable_key: "%s"
  secret_key: "%s"
  jwt_key: "%s"
session:
  secret: "0123456789abcdef0123456789abcdef"
stripe:
  secret_key: "sk_test_load"
  webhook_secret: "whsec_load"
plans:
  pro: { prices: [price_pro], routes: ["415VNA"] }
routes:
  - { path: "/public/*", access: public }
  - { path: "/routes/{route}/*", access: paid }
  - { path: "/app/*", access: signed_in }
`

// dispatch runs the scenario args name (the wrk comparison when none).
func dispatch(args []string, out io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "webhook-storm":
			return runStorm(args[1:], out)
		case "idle-connections":
			return runIdle(args[1:], out)
		case idleChildArg:
			return runIdleChild(args[1:], out)
		case idleUpstreamArg:
			return runIdleUpstream(out)
		case "million-user-store":
			return runStore(args[1:], out)
		case "cold-miss":
			return runColdMiss(args[1:], out)
		case perfUpstreamArg:
			return runPerfUpstream(args[1:], out)
		case perfBareArg:
			return runPerfBare(args[1:], out)
		case "wrk":
			args = args[1:]
		}
	}
	return runWrk(args, out)
}

// startGateway serves a tollgate gateway on loopback in front of upstream
// (the real Clerk adapter, networkless with a PEM key from the sandbox; an
// entitlement cached in the LRU for user_ada), with internal routes added,
// and returns its URL and the Cookie header of a signed-in visitor who has
// picked up the gateway cookie.
func startGateway(upstream string, internal []gateway.InternalRoute) (string, string, error) {
	sb, err := clerksandbox.New(clerksandbox.Options{TokenTTL: time.Hour})
	if err != nil {
		return "", "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", err
	}
	gwURL := "http://" + ln.Addr().String()
	pem := strings.ReplaceAll(sb.PublicKeyPEM(), "\n", `\n`)
	cfg, err := config.Parse("load.yaml", []byte(fmt.Sprintf(loadConfig, gwURL, upstream, sb.PublishableKey(), sb.SecretKey(), pem)), func(string) string { return "" })
	if err != nil {
		return "", "", err
	}
	cc, err := clerk.New(clerk.Config{PublishableKey: cfg.Clerk.PublishableKey, SecretKey: cfg.Clerk.SecretKey,
		JWTKey: cfg.Clerk.JWTKey, AuthorizedParties: cfg.Clerk.AuthorizedParties, PublicURL: cfg.PublicURL})
	if err != nil {
		return "", "", err
	}
	cache, err := cache.NewEntitlementCache(noStore{}, 1000)
	if err != nil {
		return "", "", err
	}
	cache.Put(proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}, &proxy.Entitlements{
		Subscriptions: []proxy.Subscription{{ID: "sub_load", Plan: "pro", Status: proxy.StatusActive}}})
	gw, err := gateway.New(gateway.Options{Config: cfg, Auth: cc, Portal: cc, State: gateway.NewState(gateway.StateOptions{Sessions: cc}), Entitlements: cache,
		Logger: slog.New(slog.DiscardHandler), Internal: internal})
	if err != nil {
		return "", "", err
	}
	go (&http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)

	now := time.Now()
	tok := sb.MintSessionToken("user_ada", "sess_load", now, nil)
	cookie := fmt.Sprintf("__session=%s; __client_uat=%d", tok, now.Unix()-5)
	// One request first, as a browser would, to pick up the gateway cookie.
	req, _ := http.NewRequest("GET", gwURL+"/app/x", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", "", fmt.Errorf("warm-up request: status %d", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == gateway.GatewayCookie {
			cookie += "; " + c.Name + "=" + c.Value
		}
	}

	return gwURL, cookie, nil
}

type bufPool struct{ p sync.Pool }

func (b *bufPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}
func (b *bufPool) Put(v []byte) { b.p.Put(&v) }

type noStore struct{}

func (noStore) Entitlements(context.Context, proxy.Subject) (*proxy.Entitlements, error) {
	return nil, nil
}

func serve(h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	return "http://" + ln.Addr().String()
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy/sandbox/clerk"
)

// clock is a fake clock shared by the gateway and the sandbox.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// mustRunDemo runs `tollgate demo` in-process on free ports: the real
// gateway, the real Clerk adapter, the sandbox and the demo app.
func mustRunDemo(t *testing.T) (*demo, *clock) {
	t.Helper()
	return mustRunDemoWith(t, demoOptions{})
}

// mustRunDemoWith is mustRunDemo with options (its clock is set here).
func mustRunDemoWith(t *testing.T, o demoOptions) (*demo, *clock) {
	t.Helper()
	clk := &clock{now: time.Now().Truncate(time.Second)}
	o.Now = clk.Now
	d, err := startDemo(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel(t)
	done := make(chan error, 1)
	go func() { done <- d.serveUntilDone(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo shutdown: %v", err)
		}
		d.Close()
	})
	return d, clk
}

// noRedirects is a browser's client that shows each redirect. Its timeout
// bounds a hang only: a Checkout under -race on a loaded machine took more
// than 10 s once (CI, this stop).
func noRedirects(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

var (
	page = map[string]string{"Accept": "text/html", "Sec-Fetch-Dest": "document"}
	api  = map[string]string{"Accept": "application/json", "Sec-Fetch-Dest": "empty"}
)

func withHeader(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// whoami asks the demo app, through the gateway, which identity headers it got.
func whoami(t *testing.T, c *http.Client, d *demo, hdr map[string]string) (int, map[string]string) {
	t.Helper()
	resp := get(t, c, d.URL+"/api/v1/whoami", hdr)
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	flatten(body, out)
	return resp.StatusCode, out
}

// flatten pulls every string leaf out of whoami's JSON, whatever its nesting.
func flatten(v any, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, vv := range x {
			if s, ok := vv.(string); ok {
				out[strings.ToLower(k)] = s
			} else {
				flatten(vv, out)
			}
		}
	case []any:
		for _, vv := range x {
			flatten(vv, out)
		}
	}
}

// signIn does what a person does on the sandbox sign-in page, into jar,
// and then what their browser does: it follows the way back to a signed-in
// page of the gateway. Like Clerk's Account Portal the sandbox leaves only
// __client_uat for the app's host, so that first page load goes through
// the handshake, which sets __session (and the gateway sets its cookie).
func signIn(t *testing.T, d *demo, jar http.CookieJar, userID string) {
	t.Helper()
	c := noRedirects(jar)
	back := d.URL + "/settings/"
	resp, err := c.PostForm(d.ClerkURL+"/sign-in", url.Values{"user_id": {userID}, "redirect_url": {back}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sandbox sign-in: status %d", resp.StatusCode)
	}
	final, hops := browse(t, c, resp.Header.Get("Location"), 4)
	if final.StatusCode != 200 || !strings.HasPrefix(final.Request.URL.String(), d.URL+"/") {
		t.Fatalf("back from sign-in: %d at %s after %v", final.StatusCode, final.Request.URL, hops)
	}
}

// browse loads u as a browser's page load would, following redirects with
// c's cookie jar (c itself must not follow them), at most maxHops of them.
// It returns the last response and the redirects taken ("307 <url>").
func browse(t *testing.T, c *http.Client, u string, maxHops int) (*http.Response, []string) {
	t.Helper()
	var hops []string
	for {
		resp := get(t, c, u, page)
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return resp, hops
		}
		hops = append(hops, fmt.Sprintf("%d %s", resp.StatusCode, loc))
		if len(hops) > maxHops {
			t.Fatalf("%s: more than %d redirects (a loop?):\n  %s", u, maxHops, strings.Join(hops, "\n  "))
		}
		next, err := resp.Request.URL.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		u = next.String()
	}
}

func cookieValue(jar http.CookieJar, rawURL, name string) string {
	u, _ := url.Parse(rawURL)
	for _, c := range jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func TestDemo_GatewayCoreAsANewUserWouldTryIt(t *testing.T) {
	d, _ := mustRunDemo(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)

	t.Run("public page passes untouched", func(t *testing.T) {
		resp := get(t, c, d.URL+"/", withHeader(page, "X-Tollgate-User", "user_evil"))
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || bytes.Contains(b, []byte("user_evil")) {
			t.Errorf("status %d; spoofed header reached the app: %v", resp.StatusCode, bytes.Contains(b, []byte("user_evil")))
		}
	})
	t.Run("signed out page load goes to sign-in", func(t *testing.T) {
		resp := get(t, c, d.URL+"/settings/?tab=1", page)
		loc := resp.Header.Get("Location")
		want := d.ClerkURL + "/sign-in?redirect_url=" + url.QueryEscape(d.URL+"/settings/?tab=1")
		if resp.StatusCode != http.StatusTemporaryRedirect || loc != want {
			t.Errorf("status %d Location %q, want 307 %q", resp.StatusCode, loc, want)
		}
	})
	t.Run("signed out API call gets 401 JSON", func(t *testing.T) {
		resp := get(t, c, d.URL+"/api/v1/whoami", api)
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
	t.Run("deny rule is 403", func(t *testing.T) {
		if resp := get(t, c, d.URL+"/admin/", page); resp.StatusCode != 403 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("dot segments cannot bypass", func(t *testing.T) {
		resp := rawGet(t, d.URL, "/assets/../settings/", page)
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "/settings/" {
			t.Errorf("status %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp = rawGet(t, d.URL, "/assets/%2e%2e/settings/", api)
		if resp.StatusCode != http.StatusPermanentRedirect {
			t.Errorf("encoded dot segments: status %d", resp.StatusCode)
		}
	})
}

func rawGet(t *testing.T, base, requestURI string, hdr map[string]string) *http.Response {
	t.Helper()
	u, _ := url.Parse(base)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", requestURI, u.Host)
	for k, v := range hdr {
		fmt.Fprintf(conn, "%s: %s\r\n", k, v)
	}
	fmt.Fprint(conn, "\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestDemo_SignInHandshakeAndGatewaySession(t *testing.T) {
	d, clk := mustRunDemo(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")

	// A fresh __session passes, and the app sees who it is.
	code, h := whoami(t, c, d, withHeader(api, "X-Tollgate-User", "user_evil"))
	if code != 200 || h["user"] != "user_ada" {
		t.Fatalf("signed in: status %d headers %v", code, h)
	}
	if cookieValue(jar, d.URL, "__tollgate") == "" {
		t.Fatal("no gateway session cookie after a verified token")
	}

	// Two minutes later the 60 s token has expired.
	clk.Advance(2 * time.Minute)

	// An XHR keeps working on the gateway session (Clerk asked once, says active).
	if code, h := whoami(t, c, d, api); code != 200 || h["user"] != "user_ada" {
		t.Fatalf("XHR after token expiry: status %d headers %v", code, h)
	}

	// A page load gets the handshake, which the sandbox answers like Clerk.
	resp := get(t, c, d.URL+"/settings/", page)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusTemporaryRedirect || loc.Path != "/v1/client/handshake" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("expired page load: status %d Location %v", resp.StatusCode, loc)
	}
	if got := loc.Query().Get("redirect_url"); got != d.URL+"/settings/" {
		t.Errorf("handshake redirect_url %q", got)
	}
	resp = get(t, c, loc.String(), page)
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("sandbox handshake: %d", resp.StatusCode)
	}
	resp = get(t, c, resp.Header.Get("Location"), page)
	if resp.StatusCode != 200 {
		t.Fatalf("back from handshake: %d", resp.StatusCode)
	}
	if !hasSetCookie(resp, "__session") {
		t.Errorf("handshake directives not passed on: %v", resp.Header.Values("Set-Cookie"))
	}

	// Clerk's session.revoked webhook ends the gateway session at once.
	sid := sessionIDOf(t, cookieValue(jar, d.URL, "__session"))
	clk.Advance(2 * time.Minute) // the fresh __session from the handshake expires again
	if code, _ := whoami(t, c, d, api); code != 200 {
		t.Fatalf("before the webhook: %d", code)
	}
	if resp := postSvix(t, d, clk.Now(), `{"type":"session.revoked","object":"event","data":{"id":"`+sid+`","object":"session"}}`, "wrong"); resp.StatusCode != 400 {
		t.Errorf("badly signed Clerk webhook: %d, want 400", resp.StatusCode)
	}
	if code, _ := whoami(t, c, d, api); code != 200 {
		t.Fatalf("a bad webhook changed something: %d", code)
	}
	if resp := postSvix(t, d, clk.Now(), `{"type":"session.revoked","object":"event","data":{"id":"`+sid+`","object":"session"}}`, ""); resp.StatusCode != 200 {
		t.Fatalf("Clerk webhook: %d", resp.StatusCode)
	}
	if code, _ := whoami(t, c, d, api); code != 401 {
		t.Errorf("after session.revoked: %d, want 401", code)
	}

	// The session is revoked in Clerk itself: after the refresh period, access ends.
	d.Clerk.RevokeSession(sid)
	clk.Advance(3 * time.Minute)
	if code, _ := whoami(t, c, d, api); code != 401 {
		t.Errorf("revoked session: status %d, want 401", code)
	}
}

// postSvix delivers a Clerk webhook signed like Svix does (or with a wrong
// signature when bad is set).
func postSvix(t *testing.T, d *demo, now time.Time, body, bad string) *http.Response {
	t.Helper()
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(d.clerkWebhookSecret, "whsec_"))
	id, ts := "msg_"+fmt.Sprint(time.Now().UnixNano()), fmt.Sprint(now.Unix())
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	sig := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if bad != "" {
		sig = "v1," + base64.StdEncoding.EncodeToString([]byte(bad))
	}
	req, _ := http.NewRequest("POST", d.URL+"/.tollgate/webhooks/clerk", strings.NewReader(body))
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", ts)
	req.Header.Set("svix-signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func hasSetCookie(resp *http.Response, name string) bool {
	for _, c := range resp.Cookies() {
		if c.Name == name && c.Value != "" {
			return true
		}
	}
	return false
}

func sessionIDOf(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		SID string `json:"sid"`
	}
	json.Unmarshal(b, &claims)
	return claims.SID
}

func TestDemo_BadTokensAreSignedOut(t *testing.T) {
	d, clk := mustRunDemo(t)
	c := noRedirects(nil)
	now := clk.Now()
	good := d.Clerk.MintSessionToken("user_ada", "sess_bearer", now, nil)
	other, err := clerksandbox.New(clerksandbox.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	otherIssuer, err := clerksandbox.New(clerksandbox.Options{FAPIHost: "clerk.evil.test", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte("user_ada"), []byte("user_bob"), 1)) + "." + parts[2]
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."

	if code, h := whoami(t, c, d, withHeader(api, "Authorization", "Bearer "+good)); code != 200 || h["user"] != "user_ada" {
		t.Fatalf("valid bearer: %d %v", code, h)
	}
	for name, tok := range map[string]string{
		"wrong key":    other.MintSessionToken("user_ada", "sess_1", now, nil),
		"wrong issuer": otherIssuer.MintSessionToken("user_ada", "sess_1", now, nil),
		"foreign azp":  d.Clerk.MintSessionToken("user_ada", "sess_1", now, map[string]any{"azp": "https://evil.test"}),
		"alg none":     none,
		"tampered":     tampered,
		"expired":      d.Clerk.MintSessionToken("user_ada", "sess_1", now.Add(-10*time.Minute), nil),
	} {
		if code, _ := whoami(t, c, d, withHeader(api, "Authorization", "Bearer "+tok)); code != 401 {
			t.Errorf("%s: status %d, want 401", name, code)
		}
		// The same token as a cookie on an XHR: signed out too.
		hdr := withHeader(api, "Cookie", "__session="+tok+"; __client_uat="+fmt.Sprint(now.Unix()))
		if code, _ := whoami(t, c, d, hdr); code != 401 {
			t.Errorf("%s as cookie: status %d, want 401", name, code)
		}
	}
	// Expired cookie + __client_uat on a page load: the handshake, not a sign-in.
	exp := d.Clerk.MintSessionToken("user_ada", "sess_1", now.Add(-10*time.Minute), nil)
	resp := get(t, c, d.URL+"/settings/", withHeader(page, "Cookie", "__session="+exp+"; __client_uat="+fmt.Sprint(now.Add(-11*time.Minute).Unix())))
	if resp.StatusCode != 307 || !strings.Contains(resp.Header.Get("Location"), "/v1/client/handshake") {
		t.Errorf("expired page load: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// __client_uat=0 means signed out whatever else is there.
	if code, _ := whoami(t, c, d, withHeader(api, "Cookie", "__session="+good+"; __client_uat=0")); code == 200 {
		t.Errorf("client_uat=0 with a valid session: allowed")
	}
}

func TestDemo_WebSocketAndSSEThroughTheGateway(t *testing.T) {
	d, _ := mustRunDemo(t)
	jar, _ := cookiejar.New(nil)
	signIn(t, d, jar, "user_ada")
	u, _ := url.Parse(d.URL)
	var cookies []string
	for _, c := range jar.Cookies(u) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	cookieHeader := strings.Join(cookies, "; ")

	// SSE: the first tick arrives while the stream is still open.
	c := noRedirects(nil)
	resp := get(t, c, d.URL+"/events", map[string]string{"Accept": "text/event-stream", "Cookie": cookieHeader})
	if resp.StatusCode != 200 {
		t.Fatalf("SSE status %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	var first string
	for first == "" || first == "\n" || strings.HasPrefix(first, ":") {
		if first, err := br.ReadString('\n'); err != nil {
			t.Fatalf("SSE read: %v (%q)", err, first)
		} else if strings.HasPrefix(first, "data:") || strings.HasPrefix(first, "event:") || strings.HasPrefix(first, "id:") {
			break
		}
	}

	// WebSocket: a masked text frame comes back echoed.
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nCookie: %s\r\n\r\n", u.Host, key, cookieHeader)
	wbr := bufio.NewReader(conn)
	wresp, err := http.ReadResponse(wbr, nil)
	if err != nil || wresp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", wresp, err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if wresp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Errorf("bad Sec-WebSocket-Accept")
	}
	msg := []byte("hello through tollgate")
	mask := []byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | byte(len(msg))}
	frame = append(frame, mask...)
	for i, b := range msg {
		frame = append(frame, b^mask[i%4])
	}
	conn.Write(frame)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(wbr, hdr); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, hdr[1]&0x7f)
	if _, err := io.ReadFull(wbr, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, msg) {
		t.Errorf("echo %q", got)
	}
}

func TestCheck_ReportsKeyAndLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: \":8080\"\npublic_url: \"https://app.example.com\"\nupstream: \"http://app:3000\"\ndefault_access: public\nroutes:\n  - { path: \"/\", acess: public }\n"), 0o600)
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"check", "-config", bad}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:6") || !strings.Contains(err.Error(), "acess") {
		t.Errorf("unknown key: %v", err)
	}
	os.WriteFile(bad, []byte("listen: \":8080\"\npublic_url: \"https://app.example.com\"\nupstream: \"http://app:3000\"\ndefault_access: paied\n"), 0o600)
	err = run(t.Context(), []string{"check", "-config", bad}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:4") || !strings.Contains(err.Error(), "default_access") {
		t.Errorf("bad value: %v", err)
	}
}

func TestCheck_ExampleConfigIsValid(t *testing.T) {
	for _, k := range []string{"CLERK_PUBLISHABLE_KEY", "CLERK_SECRET_KEY", "TOLLGATE_SESSION_SECRET", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "TOLLGATE_ADMIN_TOKEN"} {
		t.Setenv(k, "")
	}
	t.Setenv("CLERK_PUBLISHABLE_KEY", "pk_live_Y2xlcmsuZXhhbXBsZS5jb20k")
	t.Setenv("CLERK_SECRET_KEY", "sk_live_x")
	t.Setenv("TOLLGATE_SESSION_SECRET", strings.Repeat("s", 32))
	t.Setenv("STRIPE_SECRET_KEY", "sk_live_x")
	t.Setenv("STRIPE_WEBHOOK_SECRET", "whsec_x")
	t.Setenv("TOLLGATE_ADMIN_TOKEN", "admintoken")
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"check", "-config", "../../config.example.yaml"}, &out, &errb); err != nil {
		t.Fatalf("example config: %v", err)
	}
	if !strings.Contains(out.String(), "ok") {
		t.Errorf("output %q", out.String())
	}
}

func TestVersionAndUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"version"}, &out, &errb); err != nil || !strings.HasPrefix(out.String(), "tollgate ") {
		t.Errorf("version: %v %q", err, out.String())
	}
	if err := run(t.Context(), []string{"frobnicate"}, &out, &errb); err == nil || exitCode(err) != 2 {
		t.Errorf("unknown command: %v", err)
	}
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

func TestCheckOnline_AgainstTheSandbox(t *testing.T) {
	d, _ := mustRunDemo(t)
	for k, v := range d.env {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, demoConfig, 0o600)
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"check", "-online", "-config", good}, &out, &errb); err != nil {
		t.Fatalf("check -online: %v\n%s", err, out.String())
	}
	for _, want := range []string{"clerk: keys work", "stripe: key works", "warning: keys mixed: a Clerk live instance with a Stripe test key"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, bytes.Replace(demoConfig, []byte("price_demo_team_monthly"), []byte("price_nope"), 1), 0o600)
	err := run(t.Context(), []string{"check", "-online", "-config", bad}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "price_nope") {
		t.Errorf("a missing price: %v", err)
	}
	fee := filepath.Join(dir, "fee.yaml")
	os.WriteFile(fee, bytes.Replace(demoConfig, []byte("trial_fee_price: price_demo_trial_fee"), []byte("trial_fee_price: price_demo_pro_monthly"), 1), 0o600)
	if err := run(t.Context(), []string{"check", "-online", "-config", fee}, &out, &errb); err == nil {
		t.Errorf("a recurring trial fee passed -online")
	}
}

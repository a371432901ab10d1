package main

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireTool finds an external tool, or skips the test (fails under
// TOLLGATE_REQUIRE_TOOLS=1, as in CI).
func requireTool(t *testing.T, name string, paths ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found: install it (apt-get install -y %s) to run this test", name, name)
	if os.Getenv("TOLLGATE_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// nginxConf is the auth_request setup the README documents, with the
// addresses of this test. nginx runs in the foreground with its master
// process, which takes the test's listener (startNginx) and is stopped by
// its PID: without a master (master_process off), nginx 1.22 crashes on an
// inherited listener.
const nginxConf = `
daemon off;
master_process on;
worker_processes 1;
{{USER}}
pid {{DIR}}/nginx.pid;
error_log {{DIR}}/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path {{DIR}}/body;
  proxy_temp_path {{DIR}}/proxy;
  fastcgi_temp_path {{DIR}}/fastcgi;
  uwsgi_temp_path {{DIR}}/uwsgi;
  scgi_temp_path {{DIR}}/scgi;

  server {
    listen 127.0.0.1:{{PORT}};

    # Ask tollgate about every request.
    location = /_tollgate_auth {
      internal;
      proxy_pass {{GATEWAY}}/.tollgate/auth;
      # tollgate believes forwarding headers only from trusted_proxies; the
      # demo trusts 127.0.0.2, the test's client is 127.0.0.1.
      proxy_bind 127.0.0.2;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      # The family nginx does not set: a client's copy is removed.
      proxy_set_header X-Forwarded-Uri "";
      proxy_set_header X-Forwarded-Method "";
    }
    # tollgate's own pages and webhooks.
    location /.tollgate/ {
      proxy_pass {{GATEWAY}};
    }
    location / {
      auth_request /_tollgate_auth;
      auth_request_set $tg_user $upstream_http_x_tollgate_user;
      auth_request_set $tg_org $upstream_http_x_tollgate_org;
      auth_request_set $tg_plan $upstream_http_x_tollgate_plan;
      auth_request_set $tg_status $upstream_http_x_tollgate_status;
      auth_request_set $tg_route $upstream_http_x_tollgate_route;
      auth_request_set $tg_location $upstream_http_x_tollgate_location;
      # Plans' limits: the over-limit code and fields, and the RateLimit
      # fields of an allowed answer.
      auth_request_set $tg_code $upstream_http_x_tollgate_status_code;
      auth_request_set $tg_retry_after $upstream_http_retry_after;
      auth_request_set $tg_ratelimit $upstream_http_ratelimit;
      auth_request_set $tg_ratelimit_policy $upstream_http_ratelimit_policy;
      error_page 401 = @tollgate_401;
      error_page 403 = @tollgate_403;
      add_header RateLimit $tg_ratelimit always;
      add_header RateLimit-Policy $tg_ratelimit_policy always;
      # The app's cost header is tollgate's, never the client's, either way.
      proxy_hide_header X-Tollgate-Cost;
      proxy_set_header X-Tollgate-Cost "";
      # Set (or, when empty, remove) the identity headers: a client's own
      # X-Tollgate-* never reach the app.
      proxy_set_header X-Tollgate-User $tg_user;
      proxy_set_header X-Tollgate-Org $tg_org;
      proxy_set_header X-Tollgate-Plan $tg_plan;
      proxy_set_header X-Tollgate-Status $tg_status;
      proxy_set_header X-Tollgate-Route $tg_route;
      # nginx is the edge: the forwarding headers are its own, never a
      # client's.
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header Forwarded "";
      proxy_set_header X-Forwarded-Prefix "";
      proxy_set_header X-Forwarded-Port "";
      proxy_set_header X-Forwarded-Server "";
      proxy_set_header X-Forwarded-Uri "";
      proxy_set_header X-Forwarded-Method "";
      proxy_set_header X-Original-URL "";
      proxy_set_header X-Original-URI "";
      proxy_set_header X-Original-Method "";
      proxy_set_header X-Rewrite-URL "";
      proxy_set_header X-Host "";
      proxy_pass {{APP}};
    }
    location @tollgate_401 {
      add_header Cache-Control no-store always;
      if ($tg_location) { return 302 $tg_location; }
      return 401;
    }
    location @tollgate_403 {
      add_header Cache-Control no-store always;
      # Over a plan's limit (X-Tollgate-Status-Code 429): 429 with the
      # fields; empty ones are not sent.
      add_header Retry-After $tg_retry_after always;
      add_header RateLimit $tg_ratelimit always;
      add_header RateLimit-Policy $tg_ratelimit_policy always;
      if ($tg_location) { return 303 $tg_location; }
      if ($tg_code = 429) { return 429; }
      return 403;
    }
  }
}
`

// startNginx runs nginx with nginxConf in front of the gateway and the app,
// and returns its base URL. nginx binds no port itself: it inherits a
// listener the test opened, through the NGINX environment variable (the
// way nginx hands its sockets to a new binary when upgraded on the fly).
// The port is taken before nginx starts and held until the test ends, so
// no other socket can get it in between, as one could a port found by
// listening on :0 and closing it; had nginx not inherited it, its own bind
// would fail loudly. Connections wait in the listener's backlog until
// nginx accepts them, so there is nothing to poll for.
func startNginx(t *testing.T, gatewayURL, appURL string) string {
	t.Helper()
	bin := requireTool(t, "nginx", "/usr/sbin/nginx")
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // after nginx has stopped: cleanups run last first
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // as the test: its workers use the test's temporary directory
	}
	conf := strings.NewReplacer("{{DIR}}", dir, "{{PORT}}", port, "{{GATEWAY}}", gatewayURL, "{{APP}}", appURL, "{{USER}}", user).Replace(nginxConf)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	cmd.ExtraFiles = []*os.File{lnFile} // fd 3 in nginx
	cmd.Env = append(os.Environ(), "NGINX=3;")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGTERM to the master, which stops its worker; SIGKILL if it
		// does not exit.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	base := "http://127.0.0.1:" + port
	answered := make(chan error, 1)
	go func() {
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(base + "/.tollgate/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		if err == nil {
			return base
		}
		t.Errorf("nginx does not answer: %v", err)
	case err := <-exited:
		exited <- err // for the cleanup
		t.Errorf("nginx exited: %v", err)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
	t.Fatalf("nginx did not start:\n%s", log)
	return ""
}

// outcome reduces an answer to what a visitor experiences, so proxy mode
// and nginx mode can be compared: who the app saw, or where they were sent.
func outcome(t *testing.T, c *http.Client, base, path string, hdr map[string]string) string {
	t.Helper()
	resp := get(t, c, base+path, hdr)
	switch {
	case resp.StatusCode == 200:
		return "200 user=" + resp.Header.Get("X-Demo-User") + readUser(t, resp)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		loc := resp.Header.Get("Location")
		switch {
		case strings.Contains(loc, "/sign-in"):
			return "sign-in"
		case strings.Contains(loc, "/v1/client/handshake"):
			return "handshake"
		case strings.Contains(loc, "/.tollgate/upgrade"):
			return "upgrade"
		case strings.Contains(loc, "/.tollgate/session"):
			return "session-bounce"
		}
		return fmt.Sprintf("redirect %s", loc)
	}
	return fmt.Sprint(resp.StatusCode)
}

// readUser pulls the user the app saw out of whoami's JSON, if that is
// what was fetched.
func readUser(t *testing.T, resp *http.Response) string {
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return ""
	}
	b := readBody(t, resp)
	return between(b, `"user":"`, `"`)
}

func TestNginx_AuthRequestEnforcesTheSameRulesAsProxyMode(t *testing.T) {
	d, _ := mustRunDemo(t)
	front := startNginx(t, d.URL, d.AppURL)

	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	anon := noRedirects(nil)

	// Sign in, and pass the gateway-cookie bounce once, through nginx.
	signIn(t, d, jar, "user_ada")
	resp := get(t, c, front+"/settings/", page)
	if resp.StatusCode == http.StatusFound && strings.Contains(resp.Header.Get("Location"), "/.tollgate/session") {
		loc, _ := url.Parse(resp.Header.Get("Location"))
		resp = get(t, c, front+loc.RequestURI(), page)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("session bounce: %d", resp.StatusCode)
		}
	}

	cases := []struct {
		name   string
		client *http.Client
		path   string
		hdr    map[string]string
	}{
		{"public page", anon, "/", page},
		{"signed-out page load", anon, "/settings/", page},
		{"signed-out API call", anon, "/api/v1/whoami", api},
		{"spoofed identity header, signed out", anon, "/api/v1/whoami", withHeader(api, "X-Tollgate-User", "user_evil")},
		{"signed-in API call", c, "/api/v1/whoami", withHeader(api, "X-Tollgate-User", "user_evil")},
		{"signed-in page", c, "/settings/", page},
		{"unpaid page load", c, "/routes/415VNA/", page},
		{"unpaid API call", c, "/routes/415VNA/x.json", api},
		{"denied", c, "/admin/", page},
	}
	for _, tc := range cases {
		proxyMode := outcome(t, tc.client, d.URL, tc.path, tc.hdr)
		nginxMode := outcome(t, tc.client, front, tc.path, tc.hdr)
		// nginx turns tollgate's 402 into the 403 auth_request allows.
		if proxyMode == "402" {
			proxyMode = "403"
		}
		if proxyMode != nginxMode {
			t.Errorf("%s: proxy mode %q, nginx mode %q", tc.name, proxyMode, nginxMode)
		}
		if strings.Contains(nginxMode, "user_evil") {
			t.Errorf("%s: a spoofed header reached the app through nginx", tc.name)
		}
	}
	if got := outcome(t, c, front, "/api/v1/whoami", api); got != "200 user=user_ada" {
		t.Errorf("signed in through nginx: %q", got)
	}
}

// The bypasses of docs/SECURITY.md's "Rules in detail", tried through the README's
// own nginx setup, and against /.tollgate/auth directly: none reaches the
// paid page or lets a client choose what is judged.
func TestNginx_BypassAttemptsFail(t *testing.T) {
	d, _ := mustRunDemo(t)
	front := startNginx(t, d.URL, d.AppURL)
	anon := noRedirects(nil)

	// A client's own X-Forwarded-Uri/-Method beside nginx's X-Original-*.
	for _, hdr := range []map[string]string{
		withHeader(page, "X-Forwarded-Uri", "/"),
		withHeader(api, "X-Forwarded-Uri", "/", "X-Forwarded-Method", "GET"),
		withHeader(api, "X-Forwarded-Uri", "/assets/app.css"),
	} {
		if got := outcome(t, anon, front, "/routes/415VNA/", hdr); strings.HasPrefix(got, "200") {
			t.Errorf("%v: the paid page was served (%s)", hdr, got)
		}
	}
	// Paths an upstream may read as another route, as raw request lines.
	for _, uri := range []string{
		"/routes/415VNA/..;/..;/",
		"/settings/..;/",
		"/routes/415VNA/x%5C..%5C..%5C..%5C",
		`/routes/415VNA/x\..\..\..\`,
		"/routes/415VNA/%2e%2e;/%2e%2e;/",
	} {
		for _, base := range []string{front, d.URL} {
			resp := rawGet(t, base, uri, api)
			if resp.StatusCode == http.StatusPermanentRedirect {
				resp = rawGet(t, base, resp.Header.Get("Location"), api)
			}
			if resp.StatusCode == 200 {
				t.Errorf("%s%s: 200, the app answered a path the rules judged otherwise", base, uri)
			}
		}
	}
	// A client reaching /.tollgate/auth itself cannot name the request.
	resp := get(t, anon, d.URL+"/.tollgate/auth", withHeader(api, "X-Original-URI", "/", "X-Original-Method", "GET"))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("forward auth asked by a client directly: %d, want 403", resp.StatusCode)
	}

	// The forwarding family a client sends never reaches the app: an app
	// that routes on X-Original-URL would serve the paid path.
	echo := make(chan http.Header, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case echo <- r.Header.Clone():
		default:
		}
	}))
	t.Cleanup(app.Close)
	front2 := startNginx(t, d.URL, app.URL)
	spoof := map[string]string{"X-Original-URL": "/routes/415VNA/", "X-Rewrite-URL": "/admin/", "X-Forwarded-Host": "evil.test",
		"X-Forwarded-Prefix": "/evil", "Forwarded": "host=evil.test", "X-Real-IP": "6.6.6.6", "X-Forwarded-For": "6.6.6.6",
		"X-Original-URI": "/admin/", "X-Host": "evil.test", "X-Tollgate-User": "user_grace"}
	if resp := get(t, anon, front2+"/", withHeader(page, flattenKV(spoof)...)); resp.StatusCode != 200 {
		t.Fatalf("public page through nginx: %d", resp.StatusCode)
	}
	got := <-echo
	for k, v := range got {
		joined := strings.Join(v, ",")
		if strings.Contains(joined, "evil") || strings.Contains(joined, "6.6.6.6") || strings.Contains(joined, "/admin") ||
			strings.Contains(joined, "415VNA") || strings.Contains(joined, "grace") {
			t.Errorf("a client's %s: %q reached the app through nginx", k, v)
		}
	}

	// Signed in as Ada, an underscore spelling of the identity header does
	// not make her Grace at the app.
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	if got := outcome(t, c, front, "/api/v1/whoami", withHeader(api, "X_Tollgate_User", "user_grace")); strings.Contains(got, "grace") || !strings.Contains(got, "user_ada") {
		t.Errorf("through nginx with X_Tollgate_User: %s", got)
	}
	if got := outcome(t, c, d.URL, "/api/v1/whoami", withHeader(api, "X_Tollgate_User", "user_grace")); strings.Contains(got, "grace") || !strings.Contains(got, "user_ada") {
		t.Errorf("proxy mode with X_Tollgate_User: %s", got)
	}
}

func flattenKV(m map[string]string) []string {
	var kv []string
	for k, v := range m {
		kv = append(kv, k, v)
	}
	return kv
}

// Behind nginx every request comes from nginx's address: the per-client
// bound on handshake nonce exchanges counts the visitor nginx names in
// X-Forwarded-For, so one client's flood leaves another client its share.
func TestNginx_NonceBudgetCountsTheVisitorNotNginx(t *testing.T) {
	d, clk := mustRunDemo(t)
	front := startNginx(t, d.URL, d.AppURL)
	const payload = "GET /v1/clients/handshake_payload"
	try := func(c *http.Client) {
		t.Helper()
		hdr := withHeader(page, "Cookie", fmt.Sprintf("__client_uat=%d; __clerk_handshake_nonce=%s", clk.Now().Unix(), rand.Text()))
		if resp := get(t, c, front+"/settings/", hdr); resp.StatusCode == 200 {
			t.Fatal("a made-up nonce signed someone in")
		}
	}
	for range 60 {
		try(noRedirects(nil))
	}
	flood := d.Clerk.BackendCalls(payload)
	if flood > 6 {
		t.Errorf("60 made-up nonces from one client through nginx: %d Backend API calls, want at most 6", flood)
	}
	try(clientFrom("127.0.0.9"))
	if got := d.Clerk.BackendCalls(payload); got != flood+1 {
		t.Errorf("another client through nginx after the flood: %d calls, want %d (its own share)", got, flood+1)
	}
}

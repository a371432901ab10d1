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
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
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

// nginxConf wraps the README's auth_request setup (readmeNginxSnippet) in
// a server of this test's own. nginx runs in the foreground with its master
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
{{SNIPPET}}
  }
}
`

// readmeNginxSnippet is the README's nginx setup ("Forward auth") as it
// stands, with the addresses of this test: the tests run what a site owner
// copies, not a copy of it that could drift. The auth subrequest leaves
// from 127.0.0.2, the demo's trusted proxy (the test's client is
// 127.0.0.1), since tollgate believes forwarding headers only from
// trusted_proxies.
func readmeNginxSnippet(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "**nginx** (`auth_request`")
	if ok {
		_, after, ok = strings.Cut(after, "```nginx\n")
	}
	snippet, _, closed := strings.Cut(after, "```")
	if !ok || !closed {
		t.Fatal("README.md: no nginx block after **nginx** (`auth_request`")
	}
	const authPass = "proxy_pass http://tollgate:8080/.tollgate/auth;"
	if strings.Count(snippet, authPass) != 1 || !strings.Contains(snippet, "http://app:3000") {
		t.Fatalf("README.md's nginx block no longer names %q once and http://app:3000:\n%s", authPass, snippet)
	}
	return strings.NewReplacer(
		authPass, "proxy_pass {{GATEWAY}}/.tollgate/auth; proxy_bind 127.0.0.2;",
		"http://tollgate:8080", "{{GATEWAY}}",
		"http://app:3000", "{{APP}}",
	).Replace(snippet)
}

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
	conf := strings.Replace(nginxConf, "{{SNIPPET}}", readmeNginxSnippet(t), 1)
	conf = strings.NewReplacer("{{DIR}}", dir, "{{PORT}}", port, "{{GATEWAY}}", gatewayURL, "{{APP}}", appURL, "{{USER}}", user).Replace(conf)
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

// Through the README's nginx setup the app sees of the visitor's
// credentials what proxy mode lets it see: its own cookies but not the
// Clerk session token, Clerk's other cookies or the gateway cookie; no API
// key, in the key header or in Authorization; the key's ID in
// X-Tollgate-Key and never a client's (red team, 2026-12-06: the snippet
// passed all of them, and a client's X-Tollgate-Key).
func TestNginx_TheAppSeesNoCredentials(t *testing.T) {
	d, _ := mustRunDemo(t)
	seen := make(chan http.Header, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	t.Cleanup(app.Close)
	front := startNginx(t, d.URL, app.URL)
	appSaw := func(c *http.Client, path string, hdr map[string]string) http.Header {
		t.Helper()
		resp := get(t, c, front+path, hdr)
		readBody(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s through nginx: %d, want 200", path, resp.StatusCode)
		}
		return <-seen
	}

	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	withAppCookie := withHeader(page, "Cookie", "theme=dark")
	resp := get(t, c, front+"/settings/", withAppCookie)
	readBody(t, resp)
	if resp.StatusCode == http.StatusFound && strings.Contains(resp.Header.Get("Location"), "/.tollgate/session") {
		loc, _ := url.Parse(resp.Header.Get("Location"))
		readBody(t, get(t, c, front+loc.RequestURI(), page)) // the session bounce, once
	} else if resp.StatusCode == http.StatusOK {
		<-seen
	}
	var sent []string
	for _, ck := range jar.Cookies(&url.URL{Scheme: "http", Host: strings.TrimPrefix(front, "http://"), Path: "/"}) {
		sent = append(sent, ck.Name)
	}
	for _, name := range []string{"__session", "__client_uat"} {
		if !slices.Contains(sent, name) {
			t.Fatalf("the browser holds no %s (it holds %q): nothing to test", name, sent)
		}
	}
	got := appSaw(c, "/settings/", withAppCookie)
	// The jar also holds the sandbox Clerk's own cookie (its host is the
	// same 127.0.0.1): an app's cookie to tollgate, passed as proxy mode
	// passes it.
	cookies := strings.Join(got.Values("Cookie"), "; ")
	if !strings.HasPrefix(cookies, "theme=dark") {
		t.Errorf("signed in: the app got Cookie %q, want its own theme=dark first", cookies)
	}
	for _, name := range []string{"__session", "__client_uat", "__clerk_", "__tollgate", "__Host-tollgate"} {
		if strings.Contains(cookies, name) {
			t.Errorf("signed in: the app got %s in Cookie %q (the browser sent %q)", name, cookies, sent)
		}
	}
	if got.Get("X-Tollgate-User") != "user_ada" {
		t.Errorf("signed in: X-Tollgate-User %q", got.Get("X-Tollgate-User"))
	}

	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	key, rec := makeKey(t, d, ada, "*")
	anon := noRedirects(nil)
	for name, hdr := range map[string]map[string]string{
		"key header":           withHeader(api, "X-API-Key", key, "X-Tollgate-Key", "key_spoof"),
		"key in Authorization": withHeader(api, "Authorization", "Bearer "+key, "X-Tollgate-Key", "key_spoof"),
	} {
		got := appSaw(anon, "/app/", hdr)
		if v := got.Get("X-Tollgate-Key"); v != rec.ID {
			t.Errorf("%s: X-Tollgate-Key %q, want the key's ID %q", name, v, rec.ID)
		}
		for _, h := range []string{"X-Api-Key", "Authorization"} {
			if v := got.Values(h); len(v) > 0 {
				t.Errorf("%s: the app got %s %q", name, h, v)
			}
		}
	}

	// Signed out on a public page: a client's X-Tollgate-Key is removed, a
	// credential cookie of any value too, and an Authorization without a
	// key is the app's, as in proxy mode.
	got = appSaw(anon, "/", withHeader(page, "X-Tollgate-Key", "key_spoof", "Authorization", "Basic dXNlcjpwdw==",
		"Cookie", "theme=dark; __session=made.up.token; __tollgate=x",
		"X-Tollgate-Cookie", "__session=forged", "X-Tollgate-Authorization", "Bearer forged"))
	for _, h := range []string{"X-Tollgate-Key", "X-Tollgate-Cookie", "X-Tollgate-Authorization"} {
		if v := got.Values(h); len(v) > 0 {
			t.Errorf("signed out: a client's %s reached the app: %q", h, v)
		}
	}
	if v := got.Get("Authorization"); v != "Basic dXNlcjpwdw==" {
		t.Errorf("signed out: Authorization %q, want the client's Basic credentials", v)
	}
	if v := got.Values("Cookie"); !slices.Equal(v, []string{"theme=dark"}) {
		t.Errorf("signed out: the app got Cookie %q, want theme=dark", v)
	}
}

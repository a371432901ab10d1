package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"io"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/proxy/sandbox/clerk"
	"github.com/tollgate/tollgate/proxy/sandbox/demoapp"
	"github.com/tollgate/tollgate/proxy/sandbox/stripe"
)

// The Docker image cannot be built here (no engine), so these tests check
// the Dockerfile's promises and then do what the image does: build the
// binary with the Dockerfile's own command, and run it as the image's
// non-root user with a read-only config and a writable /data.

const dockerfilePath = "../../Dockerfile"

// dockerfile is the Dockerfile as instructions: continuation lines joined,
// comments dropped.
func dockerfile(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, strings.Join(strings.Fields(cur.String()), " "))
		cur.Reset()
	}
	return out
}

// dockerGoBuild returns the Dockerfile's `go build` flags, with the
// VERSION build argument set to version.
func dockerGoBuild(t *testing.T, version string) (ldflags string) {
	t.Helper()
	for _, ins := range dockerfile(t) {
		if !strings.HasPrefix(ins, "RUN ") || !strings.Contains(ins, "go build") {
			continue
		}
		if !strings.Contains(ins, "CGO_ENABLED=0") || !strings.Contains(ins, " -trimpath ") {
			t.Fatalf("the Dockerfile's go build is not static and trimmed: %s", ins)
		}
		m := regexp.MustCompile(`-ldflags "([^"]*)"`).FindStringSubmatch(ins)
		if m == nil {
			t.Fatalf("no -ldflags in the Dockerfile's go build: %s", ins)
		}
		return strings.ReplaceAll(m[1], "${VERSION}", version)
	}
	t.Fatal("the Dockerfile has no go build")
	return ""
}

func TestDockerfile_KeepsItsPromises(t *testing.T) {
	ins := dockerfile(t)
	all := strings.Join(ins, "\n")
	var stages []string
	for _, i := range ins {
		if strings.HasPrefix(i, "FROM ") {
			stages = append(stages, i)
		}
	}
	if len(stages) < 2 {
		t.Errorf("not a multi-stage build: %v", stages)
	}
	pinned := regexp.MustCompile(`^FROM (--platform=\S+ )?\S+:\S+@sha256:[0-9a-f]{64}( AS \S+)?$`)
	for _, st := range stages {
		if !pinned.MatchString(st) {
			t.Errorf("base image not pinned by digest: %s", st)
		}
	}
	if last := stages[len(stages)-1]; !strings.Contains(last, "distroless/static") && !strings.Contains(last, "scratch") {
		t.Errorf("runtime image %q: want distroless static or scratch (the binary is static)", last)
	}
	build := dockerGoBuild(t, "x")
	if !strings.Contains(build, "-X main.version=x") {
		t.Errorf("the build does not stamp the version: %q", build)
	}
	// Only the runtime stage's instructions count from here.
	runtime := ins[indexOf(ins, stages[len(stages)-1]):]
	has := func(what string, ok func(string) bool) {
		t.Helper()
		for _, i := range runtime {
			if ok(i) {
				return
			}
		}
		t.Errorf("the runtime stage lacks %s", what)
	}
	has("a non-root USER (nonroot)", func(i string) bool {
		return strings.HasPrefix(i, "USER ") && strings.Contains(i, "nonroot") && !strings.Contains(i, "root:root")
	})
	has("VOLUME /data", func(i string) bool { return i == "VOLUME /data" || i == `VOLUME ["/data"]` })
	// No shell in the image: every command is in exec (JSON) form.
	has("a HEALTHCHECK that runs `tollgate healthcheck` (exec form)", func(i string) bool {
		return strings.HasPrefix(i, "HEALTHCHECK ") && strings.Contains(i, `CMD ["/usr/local/bin/tollgate", "healthcheck", "-config", "/etc/tollgate/config.yaml"]`)
	})
	has(`ENTRYPOINT ["/usr/local/bin/tollgate"]`, func(i string) bool { return i == `ENTRYPOINT ["/usr/local/bin/tollgate"]` })
	has("CMD serving /etc/tollgate/config.yaml (exec form)", func(i string) bool {
		return i == `CMD ["serve", "-config", "/etc/tollgate/config.yaml"]`
	})
	has("/data owned by the runtime user", func(i string) bool {
		return strings.HasPrefix(i, "COPY ") && strings.Contains(i, "--chown=65532:65532") && strings.HasSuffix(i, " /data")
	})
	if strings.Contains(all, "CMD tollgate") || strings.Contains(all, "ENTRYPOINT tollgate") {
		t.Error("shell-form CMD or ENTRYPOINT: the runtime image has no shell")
	}
	if defaultConfigPath != "/etc/tollgate/config.yaml" {
		t.Errorf("defaultConfigPath %q, the image mounts /etc/tollgate/config.yaml", defaultConfigPath)
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// The image's user, as in gcr.io/distroless/static:nonroot.
const nonrootUID, nonrootGID = 65532, 65532

// TestDocker_BinaryRunsAsTheImageDoes builds tollgate with the Dockerfile's
// command, checks it is static, and runs it as uid 65532 with a read-only
// config and a writable data directory against the sandbox: healthcheck,
// a public and a signed-in request, then SIGTERM and a clean exit.
func TestDocker_BinaryRunsAsTheImageDoes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH: cannot build the binary")
	}
	root := os.Geteuid() == 0
	if !root {
		t.Log("not root: running the binary as the current user; the uid 65532 part needs root")
	}

	// Directories as the container has them: the binary, a read-only config
	// directory, and /data. The nonroot user must be able to reach them.
	base := t.TempDir()
	binDir, confDir, dataDir := filepath.Join(base, "bin"), filepath.Join(base, "etc"), filepath.Join(base, "data")
	for _, d := range []string{binDir, confDir, dataDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// Build exactly as the Dockerfile does.
	bin := filepath.Join(binDir, "tollgate")
	start := time.Now()
	build := exec.Command(goBin, "build", "-trimpath", "-ldflags", dockerGoBuild(t, "test"), "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	assertStatic(t, bin)
	if out, err := exec.Command(bin, "version").Output(); err != nil || strings.TrimSpace(string(out)) != "tollgate test" {
		t.Errorf("version: %q %v, want \"tollgate test\"", out, err)
	}

	// The sandbox and the demo app on loopback, as `tollgate demo` runs them.
	clerkSB, err := clerksandbox.New(clerksandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clerkSrv := httptest.NewServer(clerkSB.Handler())
	t.Cleanup(clerkSrv.Close)
	clerkSB.SetBaseURL(clerkSrv.URL)
	stripeSB := stripesandbox.New(stripesandbox.Options{})
	t.Cleanup(func() { stripeSB.Close() })
	stripeSrv := httptest.NewServer(stripeSB.Handler())
	t.Cleanup(stripeSrv.Close)
	stripeSB.SetBaseURL(stripeSrv.URL)
	appSrv := httptest.NewServer(demoapp.New(demoapp.Options{}))
	t.Cleanup(appSrv.Close)

	webhookSecret := "whsec_" + randomHex(24)

	// The config a site owner writes, secrets from the environment.
	config := filepath.Join(confDir, "config.yaml")
	if err := os.WriteFile(config, []byte(`listen: "${LISTEN}"
public_url: "${PUBLIC_URL}"
upstream: "`+appSrv.URL+`"
default_access: paid
clerk:
  publishable_key: "${CLERK_PUBLISHABLE_KEY}"
  secret_key: "${CLERK_SECRET_KEY}"
  api_url: "`+clerkSrv.URL+`/v1"
  frontend_api_url: "`+clerkSrv.URL+`"
  sign_in_url: "`+clerkSrv.URL+`/sign-in"
session:
  secret: "${TOLLGATE_SESSION_SECRET}"
stripe:
  secret_key: "${STRIPE_SECRET_KEY}"
  webhook_secret: "${STRIPE_WEBHOOK_SECRET}"
  api_url: "`+stripeSrv.URL+`"
plans:
  pro:
    name: Pro
    prices: [price_demo_pro_monthly]
    routes: ["415VNA"]
routes:
  - { path: "/", access: public }
  - { path: "/assets/*", access: public }
  - { path: "/api/v1/*", access: signed_in }
store:
  path: "`+filepath.Join(dataDir, "tollgate.db")+`"
`), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(config, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(confDir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(confDir, 0o755) })
	// The listen address comes from the environment too: it is drawn when
	// the process starts (startServe).
	env := []string{
		"PATH=/usr/bin:/bin", "HOME=" + dataDir,
		"CLERK_PUBLISHABLE_KEY=" + clerkSB.PublishableKey(),
		"CLERK_SECRET_KEY=" + clerkSB.SecretKey(),
		"TOLLGATE_SESSION_SECRET=" + randomHex(32),
		"STRIPE_SECRET_KEY=" + stripeSB.SecretKey(),
		"STRIPE_WEBHOOK_SECRET=" + webhookSecret,
	}
	asImageUser := func(cmd *exec.Cmd) *exec.Cmd {
		cmd.Env, cmd.Dir = env, dataDir // WORKDIR /data
		if root {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nonrootUID, Gid: nonrootGID}}
		}
		return cmd
	}
	if root {
		if err := os.Chown(dataDir, nonrootUID, nonrootGID); err != nil {
			t.Fatal(err)
		}
		// The premise: the image's user can write /data and cannot write
		// the config directory or the config.
		if touch, err := exec.LookPath("touch"); err == nil {
			for path, writable := range map[string]bool{filepath.Join(dataDir, "probe"): true, filepath.Join(confDir, "probe"): false, config: false} {
				if err := asImageUser(exec.Command(touch, path)).Run(); (err == nil) != writable {
					t.Fatalf("uid %d writing %s: %v, want writable=%v", nonrootUID, path, err, writable)
				}
			}
			os.Remove(filepath.Join(dataDir, "probe"))
		}
	}

	baseEnv := env
	serve := startServe(t, func(addr, _ string) *exec.Cmd {
		env = append(baseEnv[:len(baseEnv):len(baseEnv)], "LISTEN="+addr, "PUBLIC_URL=http://"+addr)
		return asImageUser(exec.Command(bin, "serve", "-config", config, "-log", "text"))
	})
	logs := serve.logs
	public := "http://" + serve.addr
	stripeSB.SetWebhook(public+"/.tollgate/webhooks/stripe", webhookSecret)

	// Docker's HEALTHCHECK: the same command, as the same user, passes as
	// soon as tollgate serves.
	if out, err := asImageUser(exec.Command(bin, "healthcheck", "-config", config)).CombinedOutput(); err != nil {
		t.Fatalf("healthcheck: %v %s\nlogs:\n%s", err, out, logs.String())
	}

	// docker kill -s HUP (README): the config is re-read.
	if err := serve.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !logs.waitFor("config reloaded", serve.exited, 20*time.Second) {
		t.Fatalf("no reload after SIGHUP:\n%s", logs.String())
	}

	// A public page, and a signed-in API call (Clerk JWKS over the network).
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	resp := get(t, c, public+"/", page)
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !bytes.Contains(body, []byte("Lighthouse")) {
		t.Fatalf("GET / through the binary: %d", resp.StatusCode)
	}
	d := &demo{URL: public, ClerkURL: clerkSrv.URL}
	signIn(t, d, jar, "user_ada")
	if code, h := whoami(t, c, d, api); code != 200 || h["user"] != "user_ada" {
		t.Fatalf("signed-in API call through the binary: %d %v", code, h)
	}

	// The store is in the data directory, written by the image's user.
	if fi, err := os.Stat(filepath.Join(dataDir, "tollgate.db")); err != nil {
		t.Errorf("no store in the data directory: %v", err)
	} else if st, ok := fi.Sys().(*syscall.Stat_t); ok && root && st.Uid != nonrootUID {
		t.Errorf("store owned by uid %d, want %d", st.Uid, nonrootUID)
	}

	// docker stop: SIGTERM, then a clean exit.
	start = time.Now()
	if err := serve.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-serve.exited:
		if serve.err != nil {
			t.Fatalf("exit after SIGTERM: %v\nlogs:\n%s", serve.err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15 s after SIGTERM (docker stop would kill it at 10 s)")
	}
	t.Logf("clean exit %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if l := logs.String(); strings.Contains(l, "level=ERROR") {
		t.Errorf("errors in the log:\n%s", l)
	}
}

// assertStatic fails unless bin is a statically linked ELF executable (no
// interpreter, no dynamic section): it must run on distroless/static.
func assertStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is dynamically linked (program header %v)", bin, p.Type)
		}
	}
	if f.Section(".interp") != nil || f.Section(".dynamic") != nil {
		t.Errorf("%s has an .interp or .dynamic section", bin)
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries: %v", bin, libs)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// lockedWriter collects a child's output; exec copies it from another
// goroutine while the test reads it, or waits for a line.
type lockedWriter struct {
	mu      sync.Mutex
	w       *bytes.Buffer
	written chan struct{} // closed by the next Write; nil when nobody waits
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.written != nil {
		close(l.written)
		l.written = nil
	}
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// waitFor reports whether the output comes to contain s before done is
// closed (the child exited) or within passes.
func (l *lockedWriter) waitFor(s string, done <-chan struct{}, within time.Duration) bool {
	timeout := time.NewTimer(within)
	defer timeout.Stop()
	for {
		l.mu.Lock()
		if strings.Contains(l.w.String(), s) {
			l.mu.Unlock()
			return true
		}
		if l.written == nil {
			l.written = make(chan struct{})
		}
		written := l.written
		l.mu.Unlock()
		select {
		case <-written:
		case <-done:
			return strings.Contains(l.String(), s)
		case <-timeout.C:
			return false
		}
	}
}

// TestCompose_MountsTheConfigDirectory: the compose file mounts the config's
// directory (a reload must see an editor's replaced file) and the data
// volume, and publishes no port of the app's; the env file example holds no
// inline comment, which docker's --env-file would keep in the value.
func TestCompose_MountsTheConfigDirectory(t *testing.T) {
	raw, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Ports   []string `yaml:"ports"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	tg, app := compose.Services["tollgate"], compose.Services["app"]
	if diff := cmp.Diff([]string{"./tollgate:/etc/tollgate:ro", "tollgate-data:/data"}, tg.Volumes); diff != "" {
		t.Errorf("tollgate's volumes (-want +got):\n%s", diff)
	}
	if len(app.Ports) != 0 {
		t.Errorf("the app publishes %v: only tollgate may reach it", app.Ports)
	}
	env, err := os.ReadFile("../../tollgate.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(env)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.Contains(line, "=") || strings.Contains(line, "#") || strings.ContainsAny(line, " \t") {
			t.Errorf("tollgate.env.example line %d %q: want VAR=value with no comment or space", i+1, line)
		}
	}
}

// Package pgtest starts throwaway PostgreSQL clusters for tests: initdb
// and pg_ctl in a temporary directory, as the postgres user when the test
// runs as root (PostgreSQL refuses to run as root), on a free port of
// 127.0.0.1. A test needing one skips with a message when the binaries
// are missing, and fails under TOLLGATE_REQUIRE_TOOLS=1 (as .ci/run sets).
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is one running PostgreSQL cluster.
type Cluster struct {
	Dir  string
	Port int
	bin  string
	opts Options
}

// Options tune a cluster.
type Options struct {
	// Durable keeps fsync and synchronous_commit on (performance runs);
	// off by default, as a test's data need not survive a power cut.
	Durable bool
}

// binDir finds initdb and pg_ctl: on PATH, else in Debian's
// /usr/lib/postgresql/<version>/bin.
func binDir() string {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if q, err := filepath.EvalSymlinks(p); err == nil {
			p = q
		}
		return filepath.Dir(p)
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1])
	}
	return ""
}

// Require skips (or, under TOLLGATE_REQUIRE_TOOLS=1, fails) the test when
// PostgreSQL is not installed, and returns its bin directory.
func Require(t testing.TB) string {
	t.Helper()
	bin := binDir()
	if bin == "" {
		msg := "PostgreSQL (initdb, pg_ctl) not found: install it (apt-get install -y postgresql) to run this test"
		if os.Getenv("TOLLGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// Start starts a cluster for this test, stopped in t.Cleanup.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	bin := Require(t)
	c, err := start(bin, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Log(err)
		}
		os.RemoveAll(c.Dir)
	})
	return c
}

// run runs a PostgreSQL program, as the postgres user when we are root.
func run(bin, name string, args ...string) ([]byte, error) {
	path := filepath.Join(bin, name)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	return cmd.CombinedOutput()
}

// StartCluster starts a cluster outside a test (tollgate-load); Remove
// stops it and deletes its directory. It fails when PostgreSQL is not
// installed.
func StartCluster(opts Options) (*Cluster, error) {
	bin := binDir()
	if bin == "" {
		return nil, fmt.Errorf("PostgreSQL (initdb, pg_ctl) not found: apt-get install -y postgresql")
	}
	return start(bin, opts)
}

// Remove stops the cluster and deletes its directory.
func (c *Cluster) Remove() error {
	err := c.Stop()
	os.RemoveAll(c.Dir)
	return err
}

// CreateDB creates an empty database and returns its DSN.
func (c *Cluster) CreateDB(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return c.DSN(name), nil
}

func start(bin string, opts Options) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "tollgate-pg-")
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if out, err := run(bin, "initdb", "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "tollgate", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	c := &Cluster{Dir: dir, bin: bin, opts: opts}
	if err := c.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

// freePort finds a port of 127.0.0.1 nobody listens on.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts the cluster (again, after Stop: on the same port).
func (c *Cluster) Start() error {
	if c.Port == 0 {
		p, err := freePort()
		if err != nil {
			return err
		}
		c.Port = p
	}
	o := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200", c.Port, c.Dir)
	if !c.opts.Durable {
		o += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	out, err := run(c.bin, "pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-l", filepath.Join(c.Dir, "log"), "-o", o, "-w", "-t", "60", "start")
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl start: %w\n%s", err, out)
	}
	return nil
}

// Stop stops the cluster at once (pg_ctl -m immediate: as a crash would,
// connections cut).
func (c *Cluster) Stop() error {
	out, err := run(c.bin, "pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "immediate", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// DSN is the URL of a database of the cluster.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://tollgate@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

var dbSeq atomic.Int64

// NewDB creates an empty database and returns its DSN.
func (c *Cluster) NewDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := c.CreateDB(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

var (
	shared     *Cluster
	sharedErr  error
	sharedOnce sync.Once
)

// DB is a fresh database in the cluster the package's tests share,
// started on first use and stopped by Main.
func DB(t testing.TB) string {
	t.Helper()
	bin := Require(t)
	sharedOnce.Do(func() { shared, sharedErr = start(bin, Options{}) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared.NewDB(t)
}

// Exit runs a package's tests, stops the shared cluster and exits: call
// it from TestMain.
func Exit(m *testing.M) {
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.RemoveAll(shared.Dir)
	}
	os.Exit(code)
}

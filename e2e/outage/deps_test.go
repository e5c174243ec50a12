package outage

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"backuprepo/shared/localserver"
)

// deps are a PostgreSQL and a Redis of this test alone, started the way scripts/deps.sh starts
// them, so that stopping them disturbs no other test.
type deps struct {
	dir               string
	pgBin, pgData     string
	pgPort, redisPort int
	asPostgres        []string // runuser prefix when running as root: initdb refuses root
}

// startDeps starts both servers in a fresh directory; they are stopped and the directory
// removed when the test ends. Register it before stack.Start, so that the stack (which drops
// its database through this PostgreSQL) is cleaned up first.
func startDeps(t *testing.T) *deps {
	t.Helper()
	pgBin := pgBinDir(t)
	// Not t.TempDir: its parents are private to root, and the postgres user must reach it.
	dir, err := os.MkdirTemp("", "br-outage-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &deps{dir: dir, pgBin: pgBin, pgData: filepath.Join(dir, "pg", "data"),
		pgPort: freePort(t), redisPort: freePort(t)}
	if err := os.Mkdir(filepath.Join(dir, "pg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root without a postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(filepath.Join(dir, "pg"), uid, gid); err != nil {
			t.Fatal(err)
		}
		d.asPostgres = []string{"runuser", "-u", "postgres", "--"}
	}
	d.run(t, 60*time.Second, d.pg("initdb", "--no-sync", "-A", "trust", "-U", "postgres", "-D", d.pgData)...)
	t.Cleanup(func() {
		_, _ = d.exec(30*time.Second, d.pg("pg_ctl", "-D", d.pgData, "-m", "immediate", "stop")...)
	})
	d.StartPostgres(t)
	t.Cleanup(func() {
		_, _ = d.exec(10*time.Second, "redis-cli", "-p", strconv.Itoa(d.redisPort), "shutdown", "nosave")
	})
	d.StartRedis(t)
	return d
}

// DatabaseURL is the base URL the stack creates its database through.
func (d *deps) DatabaseURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", d.pgPort)
}

// RedisURL is the Redis the control plane uses.
func (d *deps) RedisURL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", d.redisPort) }

// StartPostgres starts PostgreSQL on its port and data directory and waits until it accepts
// connections (pg_ctl -w).
func (d *deps) StartPostgres(t *testing.T) {
	t.Helper()
	d.run(t, 60*time.Second, d.pg("pg_ctl", "-D", d.pgData, "-l", filepath.Join(d.dir, "pg", "postgres.log"), "-w",
		"-o", fmt.Sprintf("-h 127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100",
			d.pgPort, filepath.Join(d.dir, "pg")), "start")...)
}

// StopPostgres stops PostgreSQL the way an operator would (fast: open sessions are ended).
func (d *deps) StopPostgres(t *testing.T) {
	t.Helper()
	d.run(t, 60*time.Second, d.pg("pg_ctl", "-D", d.pgData, "-m", "fast", "-w", "stop")...)
}

// StartRedis starts an empty Redis on its port and waits until it answers PING.
func (d *deps) StartRedis(t *testing.T) {
	t.Helper()
	d.run(t, 30*time.Second, "redis-server", "--port", strconv.Itoa(d.redisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "yes",
		"--pidfile", filepath.Join(d.dir, "redis.pid"), "--logfile", filepath.Join(d.dir, "redis.log"), "--dir", d.dir)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := d.exec(5*time.Second, "redis-cli", "-p", strconv.Itoa(d.redisPort), "ping"); err == nil && string(out) == "PONG\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis on port %d does not answer PING", d.redisPort)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StopRedis shuts Redis down without saving and waits until its port is closed.
func (d *deps) StopRedis(t *testing.T) {
	t.Helper()
	d.run(t, 10*time.Second, "redis-cli", "-p", strconv.Itoa(d.redisPort), "shutdown", "nosave")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(d.redisPort), time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("redis on port %d still accepts connections after shutdown", d.redisPort)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *deps) pg(tool string, args ...string) []string {
	return slices.Concat(d.asPostgres, []string{filepath.Join(d.pgBin, tool)}, args)
}

func (d *deps) run(t *testing.T, timeout time.Duration, argv ...string) {
	t.Helper()
	if out, err := d.exec(timeout, argv...); err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
}

func (d *deps) exec(timeout time.Duration, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = d.dir
	return cmd.CombinedOutput()
}

// pgBinDir finds the newest PostgreSQL's initdb and pg_ctl, as scripts/deps.sh does.
func pgBinDir(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p)
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no PostgreSQL server binaries (initdb, pg_ctl); run the tests with `make test`")
	}
	t.Skip("no PostgreSQL server binaries (initdb, pg_ctl)")
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode()&0o111 != 0
}

// freePort is a free 127.0.0.1 port.
func freePort(t *testing.T) int {
	t.Helper()
	port, err := localserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

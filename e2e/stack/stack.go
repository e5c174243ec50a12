// Package stack starts the real control plane and data node processes against a fresh
// PostgreSQL database and Redis prefix, for end-to-end tests that drive them over HTTP and
// inspect their disks and database afterwards.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"backuprepo/shared/localserver"
)

// Options shape a stack. The zero value runs two data nodes with one disk each.
type Options struct {
	// Binaries to run; built into the test's temporary directory when empty (slow: build
	// once in TestMain with Build and pass the result).
	Binaries Binaries
	// DataNodes is the number of data nodes (default 2).
	DataNodes int
	// Nodes holds per-node options; node i uses Nodes[i] when present.
	Nodes []NodeOptions
	// LogLevel of every process (default "info").
	LogLevel string
	// ControlPlaneEnv and DataNodeEnv add or override BR_* settings ("BR_NAME=value").
	ControlPlaneEnv []string
	DataNodeEnv     []string
	// StartTimeout bounds the whole start-up (default 60 s; the test machine may be busy).
	StartTimeout time.Duration
}

// NodeOptions shape one data node.
type NodeOptions struct {
	Zone string
	// Disks is the number of disk directories (default 1).
	Disks int
	// DiskParent is where the disk directories are made (default: a temporary directory of the
	// test); put them on another filesystem to control free space.
	DiskParent string
	// Reserve is the free space the node keeps on every disk, in bytes (BR_RESERVE).
	Reserve int64
	// Room, when positive, sets Reserve at start to the first disk's free space minus Room,
	// so that the node has about Room bytes to give to uploads.
	Room int64
}

// Stack is a running control plane with its data nodes.
type Stack struct {
	URL                          string // the control plane (front door, GraphQL, login)
	AdminEmail, AdminPassword    string
	AdminToken                   string // a login token of the bootstrap system admin
	HealthCheckCode, MetricsCode string
	NodeSecret, GossipKey        string
	DatabaseURL, RedisPrefix     string
	SigningKeyPath               string // the control plane's Ed25519 key (PEM PKCS#8)
	ControlPlane                 *Process
	Nodes                        []*Node
	DB                           *pgxpool.Pool // the control plane's database, for assertions
	HTTP                         *http.Client
	gossipJoin, verifyKey        string
}

// Node is one data node process and its disks.
type Node struct {
	*Process
	URL     string
	Zone    string
	Disks   []string
	Reserve int64
}

// Restart restarts the node with the same configuration and disks and waits until it serves.
func (n *Node) Restart(ctx context.Context) error { return n.Process.Restart(ctx) }

// SetReserve changes the node's reserve for its next start (see Restart).
func (n *Node) SetReserve(bytes int64) {
	n.Reserve = bytes
	n.Setenv("BR_RESERVE", strconv.FormatInt(bytes, 10))
}

// FreeBytes is the free space of the node's first disk as statfs reports it to unprivileged
// processes (what the node counts as free).
func (n *Node) FreeBytes(t testing.TB) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.Disks[0], &st); err != nil {
		t.Fatalf("statfs %s: %v", n.Disks[0], err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// GossipAddr is the host:port of the control plane's gossip member, the one every data node
// joins.
func (s *Stack) GossipAddr() string { return s.gossipJoin }

// Node returns the data node called name, or nil.
func (s *Stack) Node(name string) *Node {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// requireEnv fails the test under CI, where the servers must exist, and skips it elsewhere.
func requireEnv(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set; run the tests with `make test`", name)
		}
		t.Skipf("%s is not set; run the tests with `make test`", name)
	}
	return v
}

// Start runs a control plane and opts.DataNodes data nodes on free 127.0.0.1 ports, each
// with fresh secrets, and returns once every node is alive in the control plane's view.
// Everything stops (SIGTERM, then SIGKILL) and the database is dropped when the test ends;
// the processes' logs are printed when it failed.
func Start(t testing.TB, opts Options) *Stack {
	t.Helper()
	baseDB := requireEnv(t, "TEST_DATABASE_URL")
	redisURL := requireEnv(t, "TEST_REDIS_URL")
	if opts.DataNodes == 0 {
		opts.DataNodes = 2
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = time.Minute
	}
	if !opts.Binaries.complete() {
		opts.Binaries = BuildT(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.StartTimeout)
	defer cancel()

	dbURL := CreateDatabase(t, ctx, baseDB)
	dir := t.TempDir() // removed after the processes stop: TempDir's cleanup is registered first
	ports := &portPicker{used: map[int]bool{}}
	s := &Stack{
		AdminEmail:      "admin@example.org",
		AdminPassword:   randomText(24),
		HealthCheckCode: randomText(16),
		MetricsCode:     randomText(16),
		NodeSecret:      randomText(32),
		GossipKey:       base64.StdEncoding.EncodeToString(randomBytes(32)),
		DatabaseURL:     dbURL,
		RedisPrefix:     "e2e" + randomText(6) + ":",
		HTTP:            &http.Client{},
	}
	cpPort, cpGossip := ports.next(t), ports.next(t)
	s.URL = "http://127.0.0.1:" + strconv.Itoa(cpPort)
	s.gossipJoin = "127.0.0.1:" + strconv.Itoa(cpGossip)
	dataDir := filepath.Join(dir, "controlplane")
	s.verifyKey = filepath.Join(dataDir, "verify-key.pem")
	s.SigningKeyPath = filepath.Join(dataDir, "signing-key.pem")
	s.ControlPlane = &Process{
		Name:    "controlplane",
		LogPath: filepath.Join(dir, "controlplane.log"),
		livez:   s.URL + "/livez",
		bin:     opts.Binaries.ControlPlane,
		env: processEnv(map[string]string{
			"BR_DATABASE_URL":             dbURL,
			"BR_REDIS_URL":                redisURL,
			"BR_REDIS_PREFIX":             s.RedisPrefix,
			"BR_LISTEN":                   "127.0.0.1:" + strconv.Itoa(cpPort),
			"BR_BASE_URL":                 s.URL,
			"BR_APP_ENV":                  "test",
			"BR_HEALTH_CHECK_CODE":        s.HealthCheckCode,
			"BR_METRICS_CODE":             s.MetricsCode,
			"BR_GOSSIP_BIND":              s.gossipJoin,
			"BR_GOSSIP_KEY":               s.GossipKey,
			"BR_NODE_NAME":                "controlplane-1",
			"BR_NODE_SECRET":              s.NodeSecret,
			"BR_DATA_DIR":                 dataDir,
			"BR_CREATE_SIGNING_KEY":       "true",
			"BR_BOOTSTRAP_ADMIN_EMAIL":    s.AdminEmail,
			"BR_BOOTSTRAP_ADMIN_PASSWORD": s.AdminPassword,
			"BR_LOG_LEVEL":                opts.LogLevel,
		}, opts.ControlPlaneEnv),
	}

	for i := range opts.DataNodes {
		var no NodeOptions
		if i < len(opts.Nodes) {
			no = opts.Nodes[i]
		}
		s.Nodes = append(s.Nodes, s.newNode(t, i+1, no, dir, ports, opts))
	}

	t.Cleanup(func() { s.stop(t) })

	if err := s.ControlPlane.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.ControlPlane.WaitLive(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range s.Nodes {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range s.Nodes {
		if err := n.WaitLive(ctx); err != nil {
			t.Fatal(err)
		}
	}

	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("open the stack's database: %v", err)
	}
	s.DB = pool

	tok, err := s.Login(ctx, s.AdminEmail, s.AdminPassword)
	if err != nil {
		t.Fatalf("log in as the bootstrap admin: %v", err)
	}
	s.AdminToken = tok
	if err := s.WaitNodesAlive(ctx, s.Nodes...); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *Stack) newNode(t testing.TB, i int, no NodeOptions, dir string, ports *portPicker, opts Options) *Node {
	t.Helper()
	name := "datanode-" + strconv.Itoa(i)
	parent := no.DiskParent
	if parent == "" {
		parent = dir
	}
	if no.Disks == 0 {
		no.Disks = 1
	}
	var disks []string
	for d := range no.Disks {
		p, err := os.MkdirTemp(parent, fmt.Sprintf("%s-disk%d-", name, d+1))
		if err != nil {
			t.Fatalf("make a disk directory for %s: %v", name, err)
		}
		if no.DiskParent != "" {
			t.Cleanup(func() { _ = os.RemoveAll(p) })
		}
		disks = append(disks, p)
	}
	if no.Room > 0 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(disks[0], &st); err != nil {
			t.Fatalf("statfs %s: %v", disks[0], err)
		}
		no.Reserve = max(int64(st.Bavail)*int64(st.Bsize)-no.Room, 0)
	}
	port, gossip := ports.next(t), ports.next(t)
	n := &Node{URL: "http://127.0.0.1:" + strconv.Itoa(port), Zone: no.Zone, Disks: disks, Reserve: no.Reserve}
	diskList := ""
	for j, d := range disks {
		if j > 0 {
			diskList += ","
		}
		diskList += d
	}
	n.Process = &Process{
		Name:    name,
		LogPath: filepath.Join(dir, name+".log"),
		livez:   n.URL + "/livez",
		bin:     opts.Binaries.DataNode,
		env: processEnv(map[string]string{
			"BR_LISTEN":            "127.0.0.1:" + strconv.Itoa(port),
			"BR_NODE_NAME":         name,
			"BR_PUBLIC_URL":        n.URL,
			"BR_ZONE":              no.Zone,
			"BR_DISKS":             diskList,
			"BR_RESERVE":           strconv.FormatInt(no.Reserve, 10),
			"BR_GOSSIP_BIND":       "127.0.0.1:" + strconv.Itoa(gossip),
			"BR_GOSSIP_JOIN":       s.gossipJoin,
			"BR_GOSSIP_KEY":        s.GossipKey,
			"BR_CONTROLPLANE_URL":  s.URL,
			"BR_NODE_SECRET":       s.NodeSecret,
			"BR_VERIFY_KEYS":       s.verifyKey,
			"BR_HEALTH_CHECK_CODE": s.HealthCheckCode,
			"BR_SHUTDOWN_GRACE":    "2s",
			"BR_CLEANUP_INTERVAL":  "1s",
			"BR_LOG_LEVEL":         opts.LogLevel,
		}, opts.DataNodeEnv),
	}
	return n
}

// stop ends every process, data nodes first, and prints their logs' tails when the test
// failed.
func (s *Stack) stop(t testing.TB) {
	for _, n := range s.Nodes {
		if err := n.Stop(); err != nil {
			t.Logf("stop %s: %v", n.Name, err)
		}
	}
	if err := s.ControlPlane.Stop(); err != nil {
		t.Logf("stop control plane: %v", err)
	}
	if s.DB != nil {
		s.DB.Close()
	}
	if t.Failed() {
		for _, p := range append([]*Process{s.ControlPlane}, processes(s.Nodes)...) {
			t.Logf("---- last lines of %s (%s) ----\n%s", p.Name, p.LogPath, p.Tail(80))
		}
	}
}

func processes(ns []*Node) []*Process {
	out := make([]*Process, len(ns))
	for i, n := range ns {
		out[i] = n.Process
	}
	return out
}

// WaitNodesAlive polls GraphQL dataNodes until every given node is alive in the control
// plane's view.
func (s *Stack) WaitNodesAlive(ctx context.Context, nodes ...*Node) error {
	var last string
	for {
		var out struct {
			DataNodes []struct{ Name, State string }
		}
		err := s.GraphQL(ctx, s.AdminToken, `{ dataNodes { name state } }`, nil, &out)
		if err == nil {
			alive := map[string]bool{}
			for _, d := range out.DataNodes {
				alive[d.Name] = d.State == "alive"
			}
			missing := 0
			for _, n := range nodes {
				if !alive[n.Name] {
					missing++
				}
			}
			if missing == 0 {
				return nil
			}
			last = fmt.Sprintf("%+v", out.DataNodes)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("data nodes not alive in the control plane's view (last answer: %s): %w", last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CreateDatabase makes an empty database for the control plane to migrate; it is dropped,
// with any connection left, when the test ends.
func CreateDatabase(t testing.TB, ctx context.Context, base string) string {
	t.Helper()
	name := "e2e_" + randomText(10)
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to TEST_DATABASE_URL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// processEnv is a clean environment: nothing of the test's BR_* settings leaks in.
func processEnv(settings map[string]string, extra []string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	for k, v := range settings {
		env = append(env, k+"="+v)
	}
	return append(env, extra...) // later entries win in os/exec
}

// portPicker hands out free 127.0.0.1 ports (localserver.FreePort: free for TCP and UDP, from
// below the ephemeral range), never the same one twice to one stack.
type portPicker struct{ used map[int]bool }

func (p *portPicker) next(t testing.TB) int {
	t.Helper()
	for range 100 {
		port, err := localserver.FreePort()
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		if !p.used[port] {
			p.used[port] = true
			return port
		}
	}
	t.Fatal("no free port found")
	return 0
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return b
}

// randomText is n lowercase hex characters.
func randomText(n int) string { return hex.EncodeToString(randomBytes((n + 1) / 2))[:n] }

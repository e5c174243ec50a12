package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backuprepo/backupctl/client"
	"backuprepo/shared/localserver"
)

// stack is a real control plane and data node started from their binaries, shared by the
// tests of this package (each test makes its own tenant and collections).
type stack struct {
	URL         string
	AdminToken  string
	Disk        string // the data node's disk directory
	Bin         string // directory with controlplane, datanode and backupctl
	HealthCode  string // the control plane's BR_HEALTH_CHECK_CODE
	MetricsCode string // the control plane's BR_METRICS_CODE
	procs       []*exec.Cmd
	logs        []*bytes.Buffer
	dropDB      func()
}

var (
	sharedStack     *stack
	sharedStackErr  error
	sharedStackOnce sync.Once
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedStack != nil {
		sharedStack.stop()
	}
	os.Exit(code)
}

// getStack starts the stack on first use.
func getStack(t *testing.T) *stack {
	t.Helper()
	sharedStackOnce.Do(func() { sharedStack, sharedStackErr = startStack() })
	if sharedStackErr != nil {
		t.Fatalf("start stack: %v", sharedStackErr)
	}
	return sharedStack
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func startStack() (_ *stack, err error) {
	dbURL, redisURL := os.Getenv("TEST_DATABASE_URL"), os.Getenv("TEST_REDIS_URL")
	if dbURL == "" || redisURL == "" {
		return nil, fmt.Errorf("TEST_DATABASE_URL and TEST_REDIS_URL must be set (scripts/test.sh sets them)")
	}
	s := &stack{}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	s.Bin, err = os.MkdirTemp("", "backupctl-stack-")
	if err != nil {
		return nil, err
	}
	build := exec.Command("go", "build", "-o", s.Bin+"/", "./controlplane/cmd/controlplane", "./datanode/cmd/datanode", "./backupctl/cmd/backupctl")
	build.Dir = repoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build binaries: %v\n%s", err, out)
	}
	db, drop, err := freshDatabase(dbURL)
	if err != nil {
		return nil, err
	}
	s.dropDB = drop

	run := filepath.Join(s.Bin, "run")
	s.Disk = filepath.Join(run, "datanode", "disk")
	if err := os.MkdirAll(s.Disk, 0o750); err != nil {
		return nil, err
	}
	cpPort, cpGossip, dnPort, dnGossip := freePort(), freePort(), freePort(), freePort()
	s.URL = "http://127.0.0.1:" + strconv.Itoa(cpPort)
	gossipKey := base64.StdEncoding.EncodeToString(randomBytes(32))
	nodeSecret, adminPassword := hex.EncodeToString(randomBytes(16)), hex.EncodeToString(randomBytes(12))
	const adminEmail = "admin@example.org"
	s.HealthCode, s.MetricsCode = "health-"+hex.EncodeToString(randomBytes(8)), "metrics-"+hex.EncodeToString(randomBytes(8))
	s.start(filepath.Join(s.Bin, "controlplane"),
		"BR_DATABASE_URL="+db, "BR_REDIS_URL="+redisURL, "BR_REDIS_PREFIX=backupctl-test-"+hex.EncodeToString(randomBytes(6))+":",
		"BR_LISTEN=127.0.0.1:"+strconv.Itoa(cpPort), "BR_BASE_URL="+s.URL, "BR_APP_ENV=test",
		"BR_HEALTH_CHECK_CODE="+s.HealthCode, "BR_METRICS_CODE="+s.MetricsCode,
		"BR_GOSSIP_BIND=127.0.0.1:"+strconv.Itoa(cpGossip), "BR_GOSSIP_KEY="+gossipKey, "BR_NODE_NAME=controlplane-1",
		"BR_DATA_DIR="+filepath.Join(run, "controlplane"), "BR_CREATE_SIGNING_KEY=true", "BR_NODE_SECRET="+nodeSecret,
		"BR_BOOTSTRAP_ADMIN_EMAIL="+adminEmail, "BR_BOOTSTRAP_ADMIN_PASSWORD="+adminPassword)
	if err := waitUp(s.URL); err != nil {
		return nil, s.failure(err)
	}
	s.start(filepath.Join(s.Bin, "datanode"),
		"BR_LISTEN=127.0.0.1:"+strconv.Itoa(dnPort), "BR_NODE_NAME=datanode-1", "BR_PUBLIC_URL=http://127.0.0.1:"+strconv.Itoa(dnPort),
		"BR_ZONE=local", "BR_DISKS="+s.Disk, "BR_RESERVE=0", "BR_GOSSIP_BIND=127.0.0.1:"+strconv.Itoa(dnGossip),
		"BR_GOSSIP_JOIN=127.0.0.1:"+strconv.Itoa(cpGossip), "BR_GOSSIP_KEY="+gossipKey, "BR_CONTROLPLANE_URL="+s.URL,
		"BR_NODE_SECRET="+nodeSecret, "BR_VERIFY_KEYS="+filepath.Join(run, "controlplane", "verify-key.pem"),
		"BR_HEALTH_CHECK_CODE=health-node")
	if err := waitUp("http://127.0.0.1:" + strconv.Itoa(dnPort)); err != nil {
		return nil, s.failure(err)
	}
	ctx := context.Background()
	c, err := client.New(s.URL, "", client.Options{})
	if err != nil {
		return nil, err
	}
	sess, err := c.Login(ctx, adminEmail, adminPassword)
	if err != nil {
		return nil, s.failure(fmt.Errorf("admin login: %w", err))
	}
	s.AdminToken = sess.Token
	// Placement needs the data node in the cluster view.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out struct {
			DataNodes []struct{ State string } `json:"dataNodes"`
		}
		if err := s.gql(s.AdminToken, `{ dataNodes { state } }`, nil, &out); err != nil {
			return nil, s.failure(err)
		}
		if len(out.DataNodes) == 1 && out.DataNodes[0].State == "alive" {
			return s, nil
		}
		if time.Now().After(deadline) {
			return nil, s.failure(fmt.Errorf("data node not alive in the control plane's view: %+v", out.DataNodes))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *stack) start(bin string, env ...string) {
	cmd := exec.Command(bin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &syncWriter{w: &log}, &syncWriter{w: &log}
	if err := cmd.Start(); err == nil {
		s.procs = append(s.procs, cmd)
		s.logs = append(s.logs, &log)
	}
}

// syncWriter serialises the writes exec's copying goroutines make.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (s *stack) failure(err error) error {
	var b strings.Builder
	for i, l := range s.logs {
		fmt.Fprintf(&b, "\n--- %s log:\n%s", filepath.Base(s.procs[i].Path), l.String())
	}
	return fmt.Errorf("%w%s", err, b.String())
}

func (s *stack) stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		_ = s.procs[i].Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = s.procs[i].Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = s.procs[i].Process.Kill()
			<-done
		}
	}
	if s.dropDB != nil {
		s.dropDB()
	}
	if s.Bin != "" {
		os.RemoveAll(s.Bin)
	}
}

func (s *stack) gql(token, query string, vars map[string]any, out any) error {
	c, err := client.New(s.URL, token, client.Options{})
	if err != nil {
		return err
	}
	return c.GraphQL(context.Background(), query, vars, out)
}

func freshDatabase(base string) (string, func(), error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", nil, fmt.Errorf("connect to TEST_DATABASE_URL: %w", err)
	}
	defer conn.Close(ctx)
	name := "backupctl_" + hex.EncodeToString(randomBytes(6))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	return u.String(), drop, nil
}

// freePort returns a port free for both TCP and UDP (gossip uses both).
func freePort() int {
	port, err := localserver.FreePort()
	if err != nil {
		panic(err)
	}
	return port
}

func waitUp(base string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return localserver.WaitOK(ctx, base+"/livez", nil)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// tenantFixture is a tenant with a user who may upload, download and manage collections,
// the user's token, and one empty collection.
type tenantFixture struct {
	TenantID, UserID, Token, Collection string
}

func (s *stack) newTenant(t *testing.T) tenantFixture {
	t.Helper()
	slug := "t-" + hex.EncodeToString(randomBytes(5))
	var f tenantFixture
	var tn struct {
		CreateTenant struct{ ID string } `json:"createTenant"`
	}
	if err := s.gql(s.AdminToken, `mutation($in: CreateTenantInput!) { createTenant(input: $in) { id } }`,
		map[string]any{"in": map[string]any{"name": "Tenant " + slug, "slug": slug, "quota": "10GiB"}}, &tn); err != nil {
		t.Fatalf("create tenant: %v", err)
	}
	f.TenantID = tn.CreateTenant.ID
	var u struct {
		CreateUser struct{ ID string } `json:"createUser"`
	}
	if err := s.gql(s.AdminToken, `mutation($in: CreateUserInput!) { createUser(input: $in) { id } }`,
		map[string]any{"in": map[string]any{"tenantId": f.TenantID, "email": slug + "@example.org", "password": "a long password 123",
			"roles": []string{"backupUploader", "backupDownloader", "collectionManager"}}}, &u); err != nil {
		t.Fatalf("create user: %v", err)
	}
	f.UserID = u.CreateUser.ID
	f.Collection = s.newCollection(t, f.TenantID)
	var tok struct {
		IssueToken struct{ Token string } `json:"issueToken"`
	}
	if err := s.gql(s.AdminToken, `mutation($u: ID!) { issueToken(userId: $u, description: "test", ttl: "1d") { token } }`,
		map[string]any{"u": f.UserID}, &tok); err != nil {
		t.Fatalf("issue token: %v", err)
	}
	f.Token = tok.IssueToken.Token
	return f
}

func (s *stack) newCollection(t *testing.T, tenantID string) string {
	t.Helper()
	var c struct {
		CreateCollection struct {
			Collection struct{ ID string }
		} `json:"createCollection"`
	}
	if err := s.gql(s.AdminToken, `mutation($in: CreateCollectionInput!) { createCollection(input: $in) { collection { id } } }`,
		map[string]any{"in": map[string]any{"tenantId": tenantID, "maxBackupsCount": 5, "maxOneVersionSize": "200MiB",
			"maxCollectionSize": "1GiB", "strategy": "FIFO"}}, &c); err != nil {
		t.Fatalf("create collection: %v", err)
	}
	return c.CreateCollection.Collection.ID
}

// result is one in-process run of backupctl.
type result struct {
	stdout, stderr string
	code           int
}

// run runs backupctl in-process with token in BACKUPCTL_TOKEN and the stack's URL (or base
// when given) in BACKUPCTL_URL, a fresh config directory, and stdin.
func (s *stack) run(t *testing.T, token string, stdin []byte, args ...string) result {
	t.Helper()
	return s.runAt(t, s.URL, token, stdin, args...)
}

func (s *stack) runAt(t *testing.T, base, token string, stdin []byte, args ...string) result {
	t.Helper()
	env := map[string]string{"BACKUPCTL_URL": base, "BACKUPCTL_TOKEN": token, "BACKUPCTL_BACKOFF": "50ms"}
	return runApp(t, env, t.TempDir(), stdin, args...)
}

func runApp(t *testing.T, env map[string]string, configDir string, stdin []byte, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	a := &app{
		stdin:        bytes.NewReader(stdin),
		stdout:       &syncWriter{w: &stdout},
		stderr:       &syncWriter{w: &stderr}, // written by --cmd's copier and the meter at once
		getenv:       func(k string) string { return env[k] },
		configDir:    configDir,
		readPassword: func() ([]byte, bool, error) { return nil, false, nil },
		now:          time.Now,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := run(ctx, a, args)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// ok fails the test unless the run exited 0.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	return r
}

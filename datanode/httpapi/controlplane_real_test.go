package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"backuprepo/shared"
	"backuprepo/shared/internalapi"
	"backuprepo/shared/localserver"
	"backuprepo/shared/token"
)

// controlPlaneBin is the real control plane binary TestMain builds once for every test.
var controlPlaneBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "httpapi-cp-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	controlPlaneBin = filepath.Join(dir, "controlplane")
	build := exec.Command("go", "build", "-o", controlPlaneBin, "./cmd/controlplane")
	build.Dir = "../../controlplane"
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the control plane: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// realControlPlane is the real control plane process (fresh database, own Redis prefix) behind
// a forwarding proxy that counts the internal calls, records what admissions the node asked
// for, and injects faults into commits on demand: the control plane itself is never imitated.
type realControlPlane struct {
	t      *testing.T
	direct string // the process itself
	proxy  *httptest.Server
	db     *pgx.Conn
	keys   token.Keys
	admin  string // a system admin's token
	tenant string
	user   string
	secret []byte
	// dataDir holds the signing key the process generated.
	dataDir string

	mu     sync.Mutex
	calls  map[string]int
	admits []internalapi.AdmitRequest
	// loseCommits is how many commits are forwarded but answered by a cut connection.
	loseCommits atomic.Int64
	// failCommits is how many commits are answered 503 without reaching the control plane.
	failCommits atomic.Int64
}

// runControlPlane starts the control plane binary with args and waits until base answers
// /livez. On failure it returns the error and the process's log; on success the process runs
// until the test ends.
func runControlPlane(t *testing.T, args []string, base string) (string, error) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "controlplane.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	readLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	cmd := exec.Command(controlPlaneBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			t.Logf("control plane log:\n%s", readLog())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := localserver.WaitOK(ctx, base+"/livez", done); err != nil {
		return readLog(), fmt.Errorf("the control plane did not come up: %w", err)
	}
	return "", nil
}

// freePort returns a free 127.0.0.1 address for a process started afterwards.
func freePort(t *testing.T) string {
	t.Helper()
	port, err := localserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// startControlPlane starts the binary; extraArgs are further flags (a shorter -upload-lease).
func startControlPlane(t *testing.T, secret []byte, nodeName string, extraArgs ...string) *realControlPlane {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	redisURL := os.Getenv("TEST_REDIS_URL")
	if base == "" || redisURL == "" {
		t.Fatal("TEST_DATABASE_URL and TEST_REDIS_URL must be set")
	}
	ctx := context.Background()
	adminConn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect %s: %v", base, err)
	}
	name := "t_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	if _, err := adminConn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = adminConn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		_ = adminConn.Close(context.Background())
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	dbURL := u.String()

	dataDir := t.TempDir()
	gossipKey := make([]byte, 32)
	_, _ = rand.Read(gossipKey)
	adminPassword := "admin-password-" + uuid.NewString()
	// The ports are free when picked, but another process of this busy machine may take one
	// before the control plane binds it: then it exits at once, and the start is retried on
	// new ports.
	var listen string
	for attempt := 1; ; attempt++ {
		listen = freePort(t)
		args := []string{
			"-database-url=" + dbURL, "-redis-url=" + redisURL, "-redis-prefix=t-" + uuid.NewString() + ":",
			"-listen=" + listen, "-base-url=http://" + listen, "-app-env=dev",
			"-health-check-code=cp-health-" + uuid.NewString(), "-metrics-code=cp-metrics-" + uuid.NewString(),
			"-gossip-bind=" + freePort(t), "-gossip-key=" + base64.StdEncoding.EncodeToString(gossipKey),
			"-node-name=controlplane-" + name, "-node-secret=" + string(secret), "-data-dir=" + dataDir,
			"-create-signing-key=true", "-bootstrap-admin-email=admin@example.org",
			"-bootstrap-admin-password=" + adminPassword, "-log-level=warn"}
		log, err := runControlPlane(t, append(args, extraArgs...), "http://"+listen)
		if err == nil {
			break
		}
		if attempt < 3 && strings.Contains(log, "address already in use") {
			t.Logf("control plane start %d: a port was taken meanwhile; retrying on new ports", attempt)
			continue
		}
		t.Fatalf("%v:\n%s", err, log)
	}
	cp := &realControlPlane{t: t, direct: "http://" + listen, secret: secret, dataDir: dataDir, calls: map[string]int{}}
	cp.keys = readVerifyKey(t, filepath.Join(dataDir, "verify-key.pem"))
	if cp.db, err = pgx.Connect(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.db.Close(context.Background()) })
	cp.exec(`INSERT INTO data_nodes (name, public_url, state) VALUES ($1, 'http://127.0.0.1:1', 'alive')`, nodeName)

	var login struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	cp.post("/api/stable/auth/login", "", map[string]string{"username": "admin@example.org", "password": adminPassword}, &login)
	cp.admin = login.Data.Token
	var tenant struct {
		CreateTenant struct{ ID string } `json:"createTenant"`
	}
	cp.graphql(`mutation($in: CreateTenantInput!){ createTenant(input: $in) { id } }`,
		map[string]any{"in": map[string]any{"name": "Test tenant", "slug": "test"}}, &tenant)
	cp.tenant = tenant.CreateTenant.ID
	cp.user = cp.newUser("uploader@example.org", []string{"backupUploader", "backupDownloader", "collectionManager"}, nil)

	cp.proxy = httptest.NewServer(cp.forward())
	t.Cleanup(cp.proxy.Close)
	return cp
}

func readVerifyKey(t *testing.T, path string) token.Keys {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s holds no PEM block", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.(ed25519.PublicKey)
	return token.Keys{token.KeyID(pub): pub}
}

// take consumes one unit of a fault budget, reporting whether there was one.
func take(budget *atomic.Int64) bool {
	for {
		n := budget.Load()
		if n <= 0 {
			return false
		}
		if budget.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// forward passes every request to the control plane. It counts internal calls and records
// admission requests; while failCommits is positive a commit is answered 503 without being
// forwarded, and while loseCommits is positive a commit lands but the connection is cut
// instead of answering.
func (cp *realControlPlane) forward() http.Handler {
	target, _ := url.Parse(cp.direct)
	rp := httputil.NewSingleHostReverseProxy(target)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var admit *internalapi.AdmitRequest
		if r.URL.Path == internalapi.PathAdmit {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				cp.t.Errorf("read admission: %v", err)
				return
			}
			admit = new(internalapi.AdmitRequest)
			if err := json.Unmarshal(body, admit); err != nil {
				cp.t.Errorf("admission %s: %v", body, err)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		cp.mu.Lock()
		cp.calls[r.URL.Path]++
		if admit != nil {
			cp.admits = append(cp.admits, *admit)
		}
		cp.mu.Unlock()
		if r.URL.Path == internalapi.PathCommit && take(&cp.failCommits) {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path != internalapi.PathCommit || !take(&cp.loseCommits) {
			rp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			cp.t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	})
}

func (cp *realControlPlane) callCount(path string) int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	n := 0
	for p, c := range cp.calls {
		if path == "" || p == path {
			n += c
		}
	}
	return n
}

// lastAdmit is the latest admission request the node sent.
func (cp *realControlPlane) lastAdmit() internalapi.AdmitRequest {
	cp.t.Helper()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if len(cp.admits) == 0 {
		cp.t.Fatal("no admission seen")
	}
	return cp.admits[len(cp.admits)-1]
}

func (cp *realControlPlane) exec(sql string, args ...any) {
	cp.t.Helper()
	if _, err := cp.db.Exec(context.Background(), sql, args...); err != nil {
		cp.t.Fatalf("%s: %v", sql, err)
	}
}

func (cp *realControlPlane) count(sql string, args ...any) int {
	cp.t.Helper()
	var n int
	if err := cp.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		cp.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (cp *realControlPlane) post(path, bearer string, in, out any) {
	cp.t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, cp.direct+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cp.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		cp.t.Fatalf("%s: %d %s", path, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		cp.t.Fatalf("%s: %v: %s", path, err, raw)
	}
}

func (cp *realControlPlane) graphql(query string, vars map[string]any, data any) {
	cp.t.Helper()
	var out struct {
		Data   json.RawMessage `json:"data"`
		Errors []any           `json:"errors"`
	}
	cp.post("/graphql", cp.admin, map[string]any{"query": query, "variables": vars}, &out)
	if len(out.Errors) != 0 {
		cp.t.Fatalf("GraphQL errors: %v", out.Errors)
	}
	if err := json.Unmarshal(out.Data, data); err != nil {
		cp.t.Fatal(err)
	}
}

// collection creates a collection of the test tenant placed on the node under test; mutate
// changes the defaults (FIFO, 10 versions of at most 1 MiB, 1 GiB in all).
func (cp *realControlPlane) collection(id, node string, mutate ...func(*shared.Collection)) {
	cp.t.Helper()
	c := shared.Collection{ID: id, MaxBackupsCount: 10, MaxOneVersionSize: 1 << 20, MaxCollectionSize: 1 << 30,
		Strategy: shared.StrategyFIFO}
	for _, m := range mutate {
		m(&c)
	}
	windows := c.Windows
	if windows == nil {
		windows = []shared.Window{}
	}
	w, err := json.Marshal(windows)
	if err != nil {
		cp.t.Fatal(err)
	}
	cp.exec(`INSERT INTO collections (id, tenant_id, max_backups_count, max_one_version_size, max_collection_size,
		strategy, require_encryption, node_name, windows) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		c.ID, cp.tenant, c.MaxBackupsCount, c.MaxOneVersionSize, c.MaxCollectionSize, string(c.Strategy),
		c.RequireEncryption, node, string(w))
}

// newUser creates a user of the test tenant; allowedIPs nil leaves every address allowed.
func (cp *realControlPlane) newUser(email string, roles, allowedIPs []string) string {
	cp.t.Helper()
	in := map[string]any{"tenantId": cp.tenant, "email": email, "password": "uploader-password-1", "roles": roles}
	if allowedIPs != nil {
		in["allowedIPs"] = allowedIPs
	}
	var user struct {
		CreateUser struct{ ID string } `json:"createUser"`
	}
	cp.graphql(`mutation($in: CreateUserInput!){ createUser(input: $in) { id } }`, map[string]any{"in": in}, &user)
	return user.CreateUser.ID
}

// issue has the control plane issue a token of the test user.
func (cp *realControlPlane) issue(ttl string) string {
	cp.t.Helper()
	tok, _ := cp.issueFor(cp.user, ttl)
	return tok
}

// issueFor has the control plane issue a token of user; it returns the token and its id.
func (cp *realControlPlane) issueFor(user, ttl string) (string, string) {
	cp.t.Helper()
	var out struct {
		IssueToken struct {
			Token  string
			Record struct{ ID string }
		} `json:"issueToken"`
	}
	cp.graphql(`mutation($u: ID!, $ttl: Duration){ issueToken(userId: $u, description: "test", ttl: $ttl) { token record { id } } }`,
		map[string]any{"u": user, "ttl": ttl}, &out)
	return out.IssueToken.Token, out.IssueToken.Record.ID
}

// signingKey is the private key the control plane signs tokens with, as it wrote it.
func (cp *realControlPlane) signingKey() ed25519.PrivateKey {
	cp.t.Helper()
	b, err := os.ReadFile(filepath.Join(cp.dataDir, "signing-key.pem"))
	if err != nil {
		cp.t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		cp.t.Fatal("signing-key.pem holds no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		cp.t.Fatal(err)
	}
	return k.(ed25519.PrivateKey)
}

func (cp *realControlPlane) versionCount(collection string) int {
	return cp.count(`SELECT count(*) FROM versions WHERE collection_id = $1`, collection)
}

// locked reports whether an upload of collection still holds a reservation.
func (cp *realControlPlane) locked(collection string) bool {
	return cp.count(`SELECT count(*) FROM upload_reservations WHERE collection_id = $1 AND expires_at > now()`, collection) != 0
}

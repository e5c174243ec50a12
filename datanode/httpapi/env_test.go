package httpapi_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"backuprepo/datanode/admission"
	"backuprepo/datanode/disk"
	"backuprepo/datanode/httpapi"
	"backuprepo/shared"
	"backuprepo/shared/token"
)

var testSecret = []byte("node-secret-for-tests-0123456789")

// env is one data node (real disk store in temporary directories, real HTTP server on a real
// socket) talking to the real control plane (real).
type env struct {
	t    *testing.T
	real *realControlPlane
	// realToken is the control-plane-issued token requests carry.
	realToken string
	store     *disk.Store
	dirs      []string
	srv       *httptest.Server
	h         *httpapi.Handler
	rec       *httpapi.Reconciler
	client    *admission.Client
}

// envSettings are what a test may change before the node starts.
type envSettings struct {
	api         httpapi.Config
	commitRetry time.Duration
	// uploadLease is the control plane's -upload-lease; zero keeps its default.
	uploadLease time.Duration
}

type envOption func(*envSettings)

func withIdleTimeout(d time.Duration) envOption {
	return func(s *envSettings) { s.api.BodyIdleTimeout = d }
}

func withCommitRetry(d time.Duration) envOption {
	return func(s *envSettings) { s.commitRetry = d }
}

// withUploadLease shortens the control plane's upload lease, and so the node's extend period.
func withUploadLease(d time.Duration) envOption {
	return func(s *envSettings) { s.uploadLease = d }
}

// testNode is the data node's name in the cluster; collections are placed on it.
const testNode = "node-1"

// newRealEnv starts a real control plane (its own database and Redis prefix) and a data node
// talking to it through realControlPlane's forwarding proxy.
func newRealEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	set := envSettings{commitRetry: 5 * time.Second}
	for _, o := range opts {
		o(&set)
	}
	var args []string
	if set.uploadLease > 0 {
		args = append(args, "-upload-lease="+set.uploadLease.String())
	}
	e := &env{t: t, dirs: []string{t.TempDir(), t.TempDir()}}
	e.real = startControlPlane(t, testSecret, testNode, args...)
	return e.start(e.real.proxy.URL, e.real.keys, set)
}

func (e *env) start(cpURL string, keys token.Keys, set envSettings) *env {
	t := e.t
	t.Helper()
	store, err := disk.Open(context.Background(), disk.Config{Dirs: e.dirs, Reserve: 0})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	e.store = store
	client, err := admission.New(admission.Config{ControlPlaneURL: cpURL, NodeName: testNode,
		Secret: testSecret, CommitRetryFor: set.commitRetry})
	if err != nil {
		t.Fatal(err)
	}
	e.client = client
	e.rec = httpapi.NewReconciler(httpapi.ReconcilerConfig{Store: store, ControlPlane: client})
	cfg := set.api
	cfg.Store, cfg.ControlPlane, cfg.Reconciler, cfg.Keys = store, client, e.rec, keys
	cfg.NodeSecret, cfg.HealthCheckCode = testSecret, "health-code-1"
	h, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewUnstartedServer(h)
	e.srv.Config.ReadHeaderTimeout = 10 * time.Second
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

// token is the test user's control-plane-issued token, issued once per env.
func (e *env) token(ttl time.Duration) string {
	e.t.Helper()
	if e.realToken == "" {
		e.realToken = e.real.issue(ttl.String())
	}
	return e.realToken
}

func (e *env) url(path string) string { return e.srv.URL + path }

// do sends a request with a fresh valid token and returns the response with its body read.
func (e *env) do(req *http.Request) (*http.Response, []byte) {
	e.t.Helper()
	if req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+e.token(time.Hour))
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read answer: %v", err)
	}
	return resp, b
}

func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// files lists the data files left in the disk directories, relative to them: every file
// but the block checksum sidecars, which come and go with their data file (allFiles has them).
func (e *env) files() []string {
	e.t.Helper()
	var out []string
	for _, f := range e.allFiles() {
		if b := filepath.Base(f); !strings.HasPrefix(b, ".") || !strings.HasSuffix(b, ".sums") {
			out = append(out, f)
		}
	}
	return out
}

// allFiles lists every file left in the disk directories, relative to them.
func (e *env) allFiles() []string {
	e.t.Helper()
	var out []string
	for _, d := range e.dirs {
		err := filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !de.IsDir() {
				rel, _ := filepath.Rel(d, p)
				out = append(out, rel)
			}
			return nil
		})
		if err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

func (e *env) assertNoFiles() {
	e.t.Helper()
	if f := e.allFiles(); len(f) != 0 {
		e.t.Errorf("files left on disk: %v", f)
	}
}

type envelopeAnswer struct {
	Status bool            `json:"status"`
	Data   json.RawMessage `json:"data"`
	Error  string          `json:"error"`
	Code   shared.Code     `json:"code"`
}

func decodeEnvelope(t *testing.T, b []byte) envelopeAnswer {
	t.Helper()
	var a envelopeAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer is not an envelope: %v: %s", err, b)
	}
	return a
}

type versionJSON struct {
	ID           string    `json:"id"`
	CollectionID string    `json:"collectionId"`
	Number       int64     `json:"number"`
	Filename     string    `json:"filename"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"`
	CreatedAt    time.Time `json:"createdAt"`
}

// wantRefusal checks status and code of an error envelope.
func wantRefusal(t *testing.T, resp *http.Response, body []byte, status int, code shared.Code) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, body)
	}
	a := decodeEnvelope(t, body)
	if a.Status || a.Code != code {
		t.Fatalf("envelope = %+v, want code %s", a, code)
	}
}

// wantVersion checks a 200 upload answer and returns the version.
func wantVersion(t *testing.T, resp *http.Response, body []byte) versionJSON {
	t.Helper()
	if resp.Status != "200 OK" {
		t.Fatalf("status line = %q, want \"200 OK\"; body %s", resp.Status, body)
	}
	a := decodeEnvelope(t, body)
	var d struct {
		Version versionJSON `json:"version"`
	}
	if !a.Status || json.Unmarshal(a.Data, &d) != nil || d.Version.ID == "" {
		t.Fatalf("answer = %s", body)
	}
	return d.Version
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// waitFor polls cond for up to 5 s; asynchronous effects (an abort after a cut connection)
// are asserted with it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func uploadPath(prefix, collection, naming string) string {
	return "/api/" + prefix + "/repository/collection/" + collection + "/" + naming
}

// uploadOK sends an upload and requires a 200 with a version.
func (e *env) uploadOK(req *http.Request) versionJSON {
	e.t.Helper()
	resp, body := e.do(req)
	return wantVersion(e.t, resp, body)
}

// reopen opens the disk directories again, as a restarted node does, and returns a reconciler
// holding what the new store found staged.
func reopen(t *testing.T, e *env) *httpapi.Reconciler {
	t.Helper()
	store, err := disk.Open(context.Background(), disk.Config{Dirs: e.dirs})
	if err != nil {
		t.Fatal(err)
	}
	return httpapi.NewReconciler(httpapi.ReconcilerConfig{Store: store, ControlPlane: e.client})
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"backuprepo/shared"
	"backuprepo/shared/internalapi"
	"backuprepo/shared/localserver"
	"backuprepo/shared/nodemeta"
)

// buildBinary compiles the data node once per test run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "datanode-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "datanode")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &buildError{out: string(out), err: err}
	}
	return bin, nil
})

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

func binary(t *testing.T) string {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return bin
}

func TestBadConfigExits2WithOneLine(t *testing.T) {
	t.Parallel()
	env, _ := goodEnv(t)
	cmd := exec.Command(binary(t))
	cmd.Env = append(env, "BR_NODE_SECRET=short")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want code 2", err)
	}
	if got := strings.TrimSpace(stderr.String()); strings.Count(got, "\n") != 0 || !strings.Contains(got, "BR_NODE_SECRET") {
		t.Fatalf("stderr = %q", got)
	}
}

// freePort returns a 127.0.0.1 port free for TCP and UDP alike.
func freePort(t *testing.T) int {
	t.Helper()
	port, err := localserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestProcess starts the binary: it cleans its disks, settles a staged upload with the control
// plane, joins the gossip cluster announcing its capacity, serves health, and leaves on SIGTERM.
func TestProcess(t *testing.T) {
	t.Parallel()
	env, _ := goodEnv(t)
	disk := strings.Split(strings.TrimPrefix(env[2], "BR_DISKS="), ",")[0]
	coll := filepath.Join(disk, "collections", "col-1")
	if err := os.MkdirAll(coll, 0o750); err != nil {
		t.Fatal(err)
	}
	const staged = "0b6f3a1e-5d0c-4d47-9c1e-3f2a8b7c6d5e"
	for _, f := range []string{".tmp-leftover", ".staged-" + staged} {
		if err := os.WriteFile(filepath.Join(coll, f), []byte("partial"), 0o640); err != nil {
			t.Fatal(err)
		}
	}

	// The control plane's side: outcome says the staged upload was never committed.
	var mu sync.Mutex
	var calls []string
	cp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/livez" {
			return
		}
		if _, err := internalapi.Verify(r, []byte("0123456789abcdef"), body, time.Now()); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		calls = append(calls, r.URL.Path)
		mu.Unlock()
		switch r.URL.Path {
		case internalapi.PathOutcome:
			_ = json.NewEncoder(w).Encode(internalapi.OutcomeResponse{Committed: false})
		case internalapi.PathAbort:
			_ = json.NewEncoder(w).Encode(struct{}{})
		default:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(internalapi.ErrorBody{Code: shared.CodeNotFound, Message: "no"})
		}
	}))
	defer cp.Close()

	// A gossip member standing in for the control plane's membership, on real sockets.
	key := []byte("0123456789abcdef")
	conf := memberlist.DefaultLANConfig()
	conf.Name = "cp-test"
	conf.BindAddr = "127.0.0.1"
	conf.BindPort = 0
	conf.SecretKey = key
	conf.Logger = log.New(io.Discard, "", 0)
	seen := &memberEvents{meta: map[string][]byte{}, left: map[string]bool{}}
	conf.Events = seen
	ml, err := memberlist.Create(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Shutdown()

	httpPort := freePort(t)
	gossipPort := freePort(t)
	env = append(env,
		"BR_LISTEN=127.0.0.1:"+strconv.Itoa(httpPort),
		"BR_CONTROLPLANE_URL="+cp.URL,
		"BR_GOSSIP_BIND=127.0.0.1:"+strconv.Itoa(gossipPort),
		"BR_GOSSIP_JOIN="+ml.LocalNode().Address(),
		"BR_RESERVE=0",
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t))
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("node log:\n%s", stderr.String())
		}
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(httpPort)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/livez")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if _, err := os.Stat(filepath.Join(coll, ".tmp-leftover")); !os.IsNotExist(err) {
		t.Fatalf("stale temp file not removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(coll, ".staged-"+staged)); !os.IsNotExist(err) {
		t.Fatalf("uncommitted staged upload not discarded: %v", err)
	}
	mu.Lock()
	got := strings.Join(calls, ",")
	mu.Unlock()
	// Settling the staged upload comes first, then aborting what was lost; the deletion
	// sweeper may already have asked too.
	if want := internalapi.PathOutcome + "," + internalapi.PathAbort + "," + internalapi.PathAbortAll; got != want && got != want+","+internalapi.PathDeletions {
		t.Fatalf("control plane calls = %s", got)
	}

	resp, err := http.Get(base + "/health?code=abc")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"global_status":true`) {
		t.Fatalf("health: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz: %d", resp.StatusCode)
	}

	var meta nodemeta.Meta
	deadline = time.Now().Add(20 * time.Second)
	for meta.Name == "" && time.Now().Before(deadline) {
		if b, _ := seen.get("node-a"); b != nil {
			if meta, err = nodemeta.Decode(b); err != nil {
				t.Fatalf("node metadata: %v", err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if meta.Role != nodemeta.RoleDataNode || meta.PublicURL != "http://node-a.example:8081" ||
		meta.State != shared.NodeAlive || meta.Total <= 0 || meta.Free <= 0 {
		t.Fatalf("announced %+v", meta)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	// The node said it was leaving before it went.
	deadline = time.Now().Add(10 * time.Second)
	for {
		b, left := seen.get("node-a")
		m, err := nodemeta.Decode(b)
		if left || (err == nil && m.State == shared.NodeLeft) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node did not leave the cluster: %+v", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// memberEvents copies what memberlist reports, inside its callbacks: the *Node values it
// hands out are mutated later under its own lock, so reading them afterwards races.
type memberEvents struct {
	mu   sync.Mutex
	meta map[string][]byte
	left map[string]bool
}

func (e *memberEvents) record(n *memberlist.Node, left bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.meta[n.Name] = append([]byte(nil), n.Meta...)
	e.left[n.Name] = left
}

func (e *memberEvents) NotifyJoin(n *memberlist.Node)   { e.record(n, false) }
func (e *memberEvents) NotifyUpdate(n *memberlist.Node) { e.record(n, false) }
func (e *memberEvents) NotifyLeave(n *memberlist.Node)  { e.record(n, true) }

func (e *memberEvents) get(name string) ([]byte, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.meta[name], e.left[name]
}

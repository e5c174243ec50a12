package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

// pprofOverlay is compiled into both commands only when the suite profiles (go build
// -overlay): the product's source tree is untouched and the measured binaries are the
// product's own.
const pprofOverlay = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

// Added by the benchmark harness with go build -overlay; not part of the product.
func init() {
	if addr := os.Getenv("BENCH_PPROF_ADDR"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
`

// profiler collects CPU profiles of the single-node stack's processes during benchmarks.
type profiler struct {
	dir            string
	cpAddr, dnAddr string
}

// buildBinaries builds the product, with pprof endpoints added when profileDir is set.
func buildBinaries(t *testing.T, profileDir string) (stack.Binaries, *profiler) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	if profileDir == "" {
		b, err := stack.Build(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		return b, nil
	}
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "benchpprof.go")
	if err := os.WriteFile(src, []byte(pprofOverlay), 0o600); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlay, mustJSON(map[string]any{"Replace": map[string]string{
		filepath.Join(root, "controlplane/cmd/controlplane/zz_benchpprof.go"): src,
		filepath.Join(root, "datanode/cmd/datanode/zz_benchpprof.go"):         src,
	}}), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-overlay", overlay, "-o", dir+"/",
		"./controlplane/cmd/controlplane", "./datanode/cmd/datanode")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build with pprof: %v\n%s", err, out)
	}
	if err := os.MkdirAll(profileDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("profiling: CPU profiles go to %s", profileDir)
	return stack.Binaries{ControlPlane: filepath.Join(dir, "controlplane"), DataNode: filepath.Join(dir, "datanode")},
		&profiler{dir: profileDir, cpAddr: freeAddr(t), dnAddr: freeAddr(t)}
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// during starts a CPU profile of the control plane and of the data node lasting d and
// returns a function that waits for both and saves them as <name>-controlplane.pprof and
// <name>-datanode.pprof. Without a profiler it does nothing.
func (p *profiler) during(t testing.TB, name string, d time.Duration) func() {
	if p == nil {
		return func() {}
	}
	secs := max(1, int(d.Seconds()))
	var wg sync.WaitGroup
	for proc, addr := range map[string]string{"controlplane": p.cpAddr, "datanode": p.dnAddr} {
		wg.Go(func() {
			path := filepath.Join(p.dir, name+"-"+proc+".pprof")
			if err := fetchProfile(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), path); err != nil {
				t.Logf("profile %s of %s: %v", proc, name, err)
			}
		})
	}
	return wg.Wait
}

func fetchProfile(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Binaries are the paths of the two product binaries the stack runs.
type Binaries struct {
	ControlPlane string
	DataNode     string
}

func (b Binaries) complete() bool { return b.ControlPlane != "" && b.DataNode != "" }

// Build compiles the control plane and the data node (static, CGO_ENABLED=0) from the
// workspace containing the working directory into dir. It suits TestMain, which has no
// testing.TB: build once there and hand the result to every Start through Options.Binaries.
func Build(ctx context.Context, dir string) (Binaries, error) {
	root, err := RepoRoot()
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{ControlPlane: filepath.Join(dir, "controlplane"), DataNode: filepath.Join(dir, "datanode")}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", dir+string(filepath.Separator),
		"./controlplane/cmd/controlplane", "./datanode/cmd/datanode")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return b, nil
}

// BuildT is Build for a single test: it builds into the test's temporary directory.
func BuildT(t testing.TB) Binaries {
	t.Helper()
	b, err := Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RepoRoot walks up from the working directory to the directory holding go.work.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory")
		}
		dir = parent
	}
}

// RunTests is a TestMain body: it builds the product binaries once into a temporary
// directory, stores them in *bins, runs the package's tests and returns their exit code.
// With onlyWithServers, nothing is built when TEST_DATABASE_URL or TEST_REDIS_URL is unset,
// because then every test skips (or, under CI, fails) by itself.
//
//	func TestMain(m *testing.M) { os.Exit(stack.RunTests(m, &bins, true)) }
func RunTests(m *testing.M, bins *Binaries, onlyWithServers bool) int {
	if !onlyWithServers || (os.Getenv("TEST_DATABASE_URL") != "" && os.Getenv("TEST_REDIS_URL") != "") {
		dir, err := os.MkdirTemp("", "e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if *bins, err = Build(context.Background(), dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

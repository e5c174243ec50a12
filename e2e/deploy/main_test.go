package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"backuprepo/e2e/stack"
	"backuprepo/shared/config"
)

// bins are the product binaries, built once in TestMain: every test here needs their flag
// sets, and the nginx and Docker tests run them.
var bins stack.Binaries

func TestMain(m *testing.M) { os.Exit(stack.RunTests(m, &bins, false)) }

// need skips the test when a prerequisite is missing on a developer's machine, and fails it
// under CI, where every prerequisite must be there.
func need(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// aptMu serialises apt-get: parallel tests may each need a package.
var aptMu sync.Mutex

// ensureCommand returns the path of name, installing the Debian packages pkgs when it is
// missing and the test runs as root.
func ensureCommand(t testing.TB, name string, pkgs ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	need(t, os.Geteuid() == 0, "%s is missing and only root can install %v", name, pkgs)
	aptMu.Lock()
	defer aptMu.Unlock()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, pkgs...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		// Debian puts nginx and friends in /usr/sbin, which a non-login PATH may lack.
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return filepath.Join(dir, name)
			}
		}
		t.Fatalf("%s still missing after installing %v", name, pkgs)
	}
	return p
}

// repoRoot is the directory holding go.work.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// deployFile reads a file of deploy/.
func deployFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var flagLine = regexp.MustCompile(`(?m)^\s+-([a-z0-9][a-z0-9-]*)\b`)

// settingNames runs bin -h and returns the BR_* environment name of every flag it lists: the
// settings an operator may write down for it.
func settingNames(t testing.TB, bin string) map[string]bool {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, "-h")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run() // -h exits 0 or 2 depending on the binary; the usage text is what counts
	names := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(out.String(), -1) {
		names[config.EnvName(m[1])] = true
	}
	if len(names) < 10 {
		t.Fatalf("%s -h listed only %d flags:\n%s", bin, len(names), out.String())
	}
	return names
}

// checkSettings fails for every BR_* name in used that is not a flag of the binary.
func checkSettings(t testing.TB, where string, used []string, known map[string]bool) {
	t.Helper()
	slices.Sort(used)
	for _, name := range slices.Compact(used) {
		if strings.HasPrefix(name, "BR_") && !known[name] {
			t.Errorf("%s sets %s, which is not a flag of the binary", where, name)
		}
	}
}

// TestSettingNamesSeeEveryFlag guards the parser the other tests rely on: a setting from each
// binary's config is found and a made-up one is not.
func TestSettingNamesSeeEveryFlag(t *testing.T) {
	t.Parallel()
	cp, dn := settingNames(t, bins.ControlPlane), settingNames(t, bins.DataNode)
	for _, name := range []string{"BR_DATABASE_URL", "BR_LISTEN", "BR_GOSSIP_KEY", "BR_TRUSTED_PROXIES", "BR_LOG_LEVEL"} {
		if !cp[name] {
			t.Errorf("control plane flags lack %s: %v", name, cp)
		}
	}
	for _, name := range []string{"BR_DISKS", "BR_PUBLIC_URL", "BR_VERIFY_KEYS", "BR_SHUTDOWN_GRACE", "BR_LISTEN"} {
		if !dn[name] {
			t.Errorf("data node flags lack %s: %v", name, dn)
		}
	}
	if cp["BR_DISKS"] || dn["BR_DATABASE_URL"] || cp["BR_NO_SUCH_SETTING"] {
		t.Error("a setting of the other binary, or a made-up one, counted as a flag")
	}
}

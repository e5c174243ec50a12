package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runnableBlocks returns the ```sh runnable blocks of a Markdown file, and fails on a ```sh
// block that is not marked runnable, so no command in the docs escapes this test.
func runnableBlocks(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		blocks []string
		cur    *strings.Builder
	)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		l := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(l, "```"):
			info := strings.Fields(strings.TrimPrefix(l, "```"))
			if len(info) > 0 && (info[0] == "sh" || info[0] == "bash" || info[0] == "shell") {
				if len(info) < 2 || info[1] != "runnable" {
					t.Fatalf("%s:%d: a shell block not marked runnable; mark it (```sh runnable) or make it text", path, line)
				}
				cur = &strings.Builder{}
			} else if len(info) > 0 {
				cur = nil
				for sc.Scan() { // skip a non-shell block
					line++
					if strings.HasPrefix(sc.Text(), "```") {
						break
					}
				}
			}
		case cur != nil && strings.HasPrefix(l, "```"):
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(l + "\n")
		}
	}
	return blocks
}

// TestQuickstartNonprofit runs every command of docs/quickstart-nonprofit.md, in order, as the
// nonprofit's admin against the real stack: login, key, token, the cron script, the restore drill.
func TestQuickstartNonprofit(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	var me struct {
		Me struct{ User struct{ Email string } }
	}
	if err := s.gql(f.Token, `{ me { user { email } } }`, nil, &me); err != nil {
		t.Fatal(err)
	}
	blocks := runnableBlocks(t, filepath.Join(repoRoot(), "docs", "quickstart-nonprofit.md"))
	if len(blocks) < 6 {
		t.Fatalf("found %d runnable blocks", len(blocks))
	}
	home, work, data := t.TempDir(), t.TempDir(), t.TempDir()
	writeTree(t, data)
	script := "set -euo pipefail\n" + strings.Join(blocks, "\n")
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = work
	cmd.Env = []string{
		"PATH=" + s.Bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + home,
		"BACKUP_URL=" + s.URL,
		"BACKUP_EMAIL=" + me.Me.User.Email,
		"COLLECTION=" + f.Collection,
		"DATA_DIR=" + data,
		"BACKUPCTL_BACKOFF=50ms",
	}
	cmd.Stdin = strings.NewReader("a long password 123\n") // login reads it: stdin is no terminal
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the quick start failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "restore drill passed") {
		t.Fatalf("no restore drill:\n%s", out)
	}
	for file, mode := range map[string]os.FileMode{"upload.token": 0o600, "backup-key.key.asc": 0o600} {
		fi, err := os.Stat(filepath.Join(work, file))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v", file, fi, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(home, ".config", "backupctl", "config.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("saved login: %v %v", fi, err)
	}
}

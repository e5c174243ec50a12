package deploy

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

// syscallGroups parses `systemd-analyze syscall-filter`: every @group with its members, which
// may name further groups.
func syscallGroups(t *testing.T, sa string) map[string][]string {
	t.Helper()
	out, err := exec.Command(sa, "syscall-filter").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	groups := map[string][]string{}
	current := ""
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "@"):
			current = strings.TrimSpace(line)
		case strings.HasPrefix(line, "    ") && current != "":
			if m := strings.TrimSpace(line); !strings.HasPrefix(m, "#") {
				groups[current] = append(groups[current], m)
			}
		case strings.TrimSpace(line) == "":
		default:
			current = "" // the closing lists of unlisted and ignored calls
		}
	}
	if len(groups["@system-service"]) == 0 {
		t.Fatalf("no @system-service group in:\n%s", out)
	}
	return groups
}

func expand(groups map[string][]string, name string, into map[string]bool) {
	if !strings.HasPrefix(name, "@") {
		into[name] = true
		return
	}
	for _, m := range groups[name] {
		expand(groups, m, into)
	}
}

// allowedSyscalls evaluates a unit's SystemCallFilter= lines as systemd does for an allow
// list: the first line allows, a line starting with ~ takes away.
func allowedSyscalls(t *testing.T, groups map[string][]string, lines []string) map[string]bool {
	t.Helper()
	allowed := map[string]bool{}
	for i, line := range lines {
		deny := strings.HasPrefix(line, "~")
		if i == 0 && deny {
			t.Fatalf("SystemCallFilter= starts with a deny list; this test only evaluates allow lists")
		}
		set := map[string]bool{}
		for _, name := range strings.Fields(strings.TrimPrefix(line, "~")) {
			expand(groups, name, set)
		}
		for name := range set {
			if deny {
				delete(allowed, name)
			} else {
				allowed[name] = true
			}
		}
	}
	return allowed
}

// straceWrapper writes a script that runs bin under strace, logging to log, and passes a
// SIGTERM on to the traced program (strace itself would only detach from it).
func straceWrapper(t *testing.T, dir, name, strace, bin string) (wrapper, log string) {
	t.Helper()
	wrapper, log = filepath.Join(dir, name), filepath.Join(dir, name+".strace")
	script := fmt.Sprintf(`#!/bin/sh
%[1]s -f -qq -o '%[2]s' -- '%[3]s' "$@" &
tracer=$!
# The first line of the log is the traced program's execve, led by its pid.
trap 'kill -TERM "$(head -n1 '"'"'%[2]s'"'"' | cut -d" " -f1)" 2>/dev/null' TERM INT
wait "$tracer"; status=$?
while kill -0 "$tracer" 2>/dev/null; do wait "$tracer"; status=$?; done
exit "$status"
`, strace, log, bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper, log
}

var (
	syscallLine = regexp.MustCompile(`(?m)^\d+\s+([a-z0-9_]+)\(`)
	socketLine  = regexp.MustCompile(`(?m)^\d+\s+socket\((AF_[A-Z0-9]+)`)
)

// TestSystemdSandboxAllowsWhatTheBinariesDo runs a control plane and a data node under strace
// through start-up, an upload, a download, a `datanode verify` scan, health, metrics and
// shutdown, and checks that every
// system call and socket family they used is one the units' SystemCallFilter= and
// RestrictAddressFamilies= allow: a unit whose filter missed one would be killed with SIGSYS.
func TestSystemdSandboxAllowsWhatTheBinariesDo(t *testing.T) {
	sa := ensureCommand(t, "systemd-analyze", "systemd")
	strace := ensureCommand(t, "strace", "strace")
	groups := syscallGroups(t, sa)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cpBin, cpLog := straceWrapper(t, dir, "controlplane", strace, bins.ControlPlane)
	dnBin, dnLog := straceWrapper(t, dir, "datanode", strace, bins.DataNode)
	verifyBin, verifyLog := straceWrapper(t, dir, "datanode-verify", strace, bins.DataNode)

	t.Run("exercise", func(t *testing.T) {
		st := stack.Start(t, stack.Options{Binaries: stack.Binaries{ControlPlane: cpBin, DataNode: dnBin},
			DataNodes: 1, StartTimeout: 2 * time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		tenant := st.CreateTenant(t, map[string]any{"quota": "1GiB"})
		collection, _ := st.CreateCollection(t, map[string]any{"tenantId": tenant, "id": "sandbox",
			"maxBackupsCount": 1, "maxOneVersionSize": "16MiB", "maxCollectionSize": "16MiB", "strategy": "FIFO"})
		_, tok := st.Uploader(t, tenant, "backupUploader", "backupDownloader", "collectionManager")
		for i := range 2 { // the second upload rotates the first out: a file deletion
			a, err := upload(ctx, st.HTTP, st.URL, tok.Token, collection, 1<<20, uint64(10+i), true)
			if err != nil || a.status != http.StatusOK {
				t.Fatalf("upload: %v %d %s", err, a.status, a.raw)
			}
		}
		if a, err := st.Download(ctx, st.URL, tok.Token, collection, "latest", stack.ReadOptions{}); err != nil || a.Status != http.StatusOK {
			t.Fatalf("download: %v %v", err, a)
		}
		// The weekly scan's unit runs `datanode verify` beside the node, with its settings.
		node := st.Nodes[0]
		scan := exec.CommandContext(ctx, verifyBin, "verify")
		scan.Env = []string{"PATH=" + os.Getenv("PATH"), "BR_NODE_NAME=" + node.Name, "BR_DISKS=" + strings.Join(node.Disks, ","),
			"BR_CONTROLPLANE_URL=" + st.URL, "BR_NODE_SECRET=" + st.NodeSecret}
		if out, err := scan.CombinedOutput(); err != nil || !strings.Contains(string(out), "1 match their records") {
			t.Fatalf("datanode verify: %v\n%s", err, out)
		}
		for _, u := range []string{st.URL + "/health?code=" + st.HealthCheckCode, st.Nodes[0].URL + "/health?code=" + st.HealthCheckCode,
			st.URL + "/metrics", st.Nodes[0].URL + "/metrics", st.URL + "/readyz", st.Nodes[0].URL + "/readyz",
			st.URL + "/metrics/backup_repository_report/influxdb?code=" + st.MetricsCode} {
			resp, err := http.Get(u)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %v %v", u, err, resp)
			}
			resp.Body.Close()
		}
	}) // the stack stops here (SIGTERM), so the logs hold the shutdown too

	for _, c := range []struct{ unit, log string }{
		{"backup-repository-controlplane.service", cpLog},
		{"backup-repository-datanode.service", dnLog},
		{"backup-repository-datanode-verify.service", verifyLog},
	} {
		u := parseUnit(t, c.unit, deployFile(t, filepath.Join("systemd", c.unit)))
		allowed := allowedSyscalls(t, groups, u["Service"]["SystemCallFilter"])
		families := strings.Fields(mustLast(t, u, "Service", "RestrictAddressFamilies"))
		b, err := os.ReadFile(c.log)
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, m := range syscallLine.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
		if len(used) < 30 {
			t.Fatalf("%s: strace saw only %d system calls; did it trace anything?", c.log, len(used))
		}
		var blocked []string
		for name := range used {
			if !allowed[name] {
				blocked = append(blocked, name)
			}
		}
		slices.Sort(blocked)
		if len(blocked) > 0 {
			t.Errorf("%s: the binary called %v, which SystemCallFilter= forbids", c.unit, blocked)
		}
		for _, m := range socketLine.FindAllStringSubmatch(string(b), -1) {
			if !slices.Contains(families, m[1]) {
				t.Errorf("%s: the binary opened an %s socket, which RestrictAddressFamilies= forbids", c.unit, m[1])
			}
		}
		t.Logf("%s: the binary made %d distinct system calls", c.unit, len(used))
	}
}

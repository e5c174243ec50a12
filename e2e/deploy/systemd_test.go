package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unit is a parsed systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, name, text string) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", name, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// last is the effective value of a key (a later assignment wins).
func (u unit) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// envFile parses KEY=value lines.
func envFile(t *testing.T, rel string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for n, line := range strings.Split(deployFile(t, rel), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(k) {
			t.Fatalf("%s:%d: not KEY=value: %q", rel, n+1, line)
		}
		if _, dup := out[k]; dup {
			t.Errorf("%s:%d: %s set twice", rel, n+1, k)
		}
		out[k] = v
	}
	return out
}

func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	units := []struct {
		file, bin, env string
		required       []string // settings the binary refuses to start without
		minStop        time.Duration
	}{
		{"backup-repository-controlplane.service", bins.ControlPlane, "controlplane.env.example",
			[]string{"BR_DATABASE_URL", "BR_REDIS_URL", "BR_HEALTH_CHECK_CODE", "BR_METRICS_CODE", "BR_GOSSIP_KEY", "BR_NODE_SECRET"},
			30 * time.Second}, // the control plane's own shutdown timeout
		{"backup-repository-datanode.service", bins.DataNode, "datanode.env.example",
			[]string{"BR_NODE_NAME", "BR_PUBLIC_URL", "BR_DISKS", "BR_GOSSIP_KEY", "BR_CONTROLPLANE_URL", "BR_NODE_SECRET", "BR_VERIFY_KEYS", "BR_HEALTH_CHECK_CODE"},
			0}, // checked against BR_SHUTDOWN_GRACE below
	}
	for _, c := range units {
		t.Run(c.file, func(t *testing.T) {
			t.Parallel()
			u := parseUnit(t, c.file, deployFile(t, filepath.Join("systemd", c.file)))
			want := map[string]string{
				"Type": "exec", "Restart": "on-failure", "LimitNOFILE": "65536",
				"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
				"NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
				"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
			}
			for k, v := range want {
				if got, ok := u.last("Service", k); !ok || got != v {
					t.Errorf("[Service] %s=%q, want %q", k, got, v)
				}
			}
			if ef, _ := u.last("Service", "EnvironmentFile"); ef != "/etc/backup-repository/"+strings.TrimSuffix(c.env, ".example") {
				t.Errorf("EnvironmentFile=%s does not match the example %s", ef, c.env)
			}
			user, _ := u.last("Service", "User")
			dyn, _ := u.last("Service", "DynamicUser")
			if user == "" && dyn != "yes" {
				t.Error("neither DynamicUser=yes nor a dedicated User=")
			}

			env := envFile(t, filepath.Join("systemd", c.env))
			flags := settingNames(t, c.bin)
			var names []string
			for k := range env {
				names = append(names, k)
			}
			checkSettings(t, c.env, names, flags)
			for _, r := range c.required {
				if env[r] == "" {
					t.Errorf("%s lacks %s, without which the binary does not start", c.env, r)
				}
			}
			for _, e := range u["Service"]["Environment"] {
				k, _, _ := strings.Cut(e, "=")
				checkSettings(t, c.file+" Environment=", []string{k}, flags)
				if _, both := env[k]; both {
					t.Errorf("%s is set by Environment= and in %s, whose value would win", k, c.env)
				}
			}

			stop, err := time.ParseDuration(mustLast(t, u, "Service", "TimeoutStopSec"))
			if err != nil {
				t.Fatalf("TimeoutStopSec: %v", err)
			}
			minStop := c.minStop
			if g, ok := env["BR_SHUTDOWN_GRACE"]; ok {
				if minStop, err = time.ParseDuration(g); err != nil {
					t.Fatalf("BR_SHUTDOWN_GRACE: %v", err)
				}
			}
			if stop <= minStop {
				t.Errorf("TimeoutStopSec=%s does not leave in-flight transfers their %s", stop, minStop)
			}

			if disks, ok := env["BR_DISKS"]; ok {
				rw := strings.Fields(strings.Join(u["Service"]["ReadWritePaths"], " "))
				mounts := strings.Fields(strings.Join(u["Unit"]["RequiresMountsFor"], " "))
				for _, d := range splitComma(disks) {
					if !slices.Contains(rw, d) {
						t.Errorf("disk %s of %s is not in ReadWritePaths=%v: ProtectSystem=strict makes it read-only", d, c.env, rw)
					}
					if !slices.Contains(mounts, d) {
						t.Errorf("disk %s is not in RequiresMountsFor=%v", d, mounts)
					}
				}
			}
		})
	}
}

// TestSystemdAnalyzeVerify runs systemd's own checker on both units, with ExecStart pointing at
// freshly built binaries (verify insists the command exists), and rates their hardening.
func TestSystemdAnalyzeVerify(t *testing.T) {
	t.Parallel()
	sa := ensureCommand(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var paths []string
	for _, c := range []struct{ role, bin string }{{"controlplane", bins.ControlPlane}, {"datanode", bins.DataNode}} {
		name := "backup-repository-" + c.role + ".service"
		text := deployFile(t, filepath.Join("systemd", name))
		exec := "ExecStart=/usr/local/bin/backup-repository-" + c.role + "\n"
		if !strings.Contains(text, exec) {
			t.Fatalf("%s: no %q line", name, strings.TrimSpace(exec))
		}
		paths = append(paths, write(name, strings.Replace(text, exec, "ExecStart="+c.bin+"\n", 1)))
	}
	// The weekly scan: its service runs the data node binary's verify subcommand, and verify
	// checks a timer against the service of the same name beside it.
	verifyUnit := deployFile(t, filepath.Join("systemd", "backup-repository-datanode-verify.service"))
	verifyExec := "ExecStart=/usr/local/bin/backup-repository-datanode verify\n"
	if !strings.Contains(verifyUnit, verifyExec) {
		t.Fatalf("backup-repository-datanode-verify.service: no %q line", strings.TrimSpace(verifyExec))
	}
	paths = append(paths,
		write("backup-repository-datanode-verify.service", strings.Replace(verifyUnit, verifyExec, "ExecStart="+bins.DataNode+" verify\n", 1)),
		write("backup-repository-datanode-verify.timer", deployFile(t, filepath.Join("systemd", "backup-repository-datanode-verify.timer"))))

	verify := func(files ...string) string {
		out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, files...)...).CombinedOutput()
		if err != nil {
			return string(out) + err.Error()
		}
		return string(out)
	}
	if out := verify(paths...); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify complained:\n%s", out)
	}
	// The same check must notice a misspelt key (it only warns, so silence is what we assert).
	good, _ := os.ReadFile(paths[1])
	bad := write("backup-repository-datanode-bad.service", strings.Replace(string(good), "ProtectSystem=", "ProtectSytem=", 1))
	if out := verify(bad); !strings.Contains(out, "ProtectSytem") {
		t.Errorf("systemd-analyze verify did not notice a misspelt key: %q", out)
	}

	exposure := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)
	for _, p := range paths {
		if strings.HasSuffix(p, ".timer") {
			continue // security rates services
		}
		out, err := exec.Command(sa, "security", "--offline=true", p).CombinedOutput()
		m := exposure.FindSubmatch(out)
		if err != nil || m == nil {
			t.Errorf("systemd-analyze security %s: %v\n%s", filepath.Base(p), err, out)
			continue
		}
		score, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("%s: exposure %.1f (0 = fully sandboxed, 10 = not at all)", filepath.Base(p), score)
		if score > 2.0 {
			t.Errorf("%s: exposure %.1f, want at most 2.0", filepath.Base(p), score)
		}
	}
}

func mustLast(t *testing.T, u unit, section, key string) string {
	t.Helper()
	v, ok := u.last(section, key)
	if !ok {
		t.Fatalf("[%s] %s missing", section, key)
	}
	return v
}

// TestSystemdVerifyTimer checks the weekly `datanode verify` units against the data node's:
// the scan must run as the node's user with the node's settings on the node's disks, and be
// unable to write to them.
func TestSystemdVerifyTimer(t *testing.T) {
	t.Parallel()
	node := parseUnit(t, "datanode", deployFile(t, filepath.Join("systemd", "backup-repository-datanode.service")))
	scan := parseUnit(t, "verify", deployFile(t, filepath.Join("systemd", "backup-repository-datanode-verify.service")))
	timer := parseUnit(t, "timer", deployFile(t, filepath.Join("systemd", "backup-repository-datanode-verify.timer")))

	if got := mustLast(t, scan, "Service", "Type"); got != "oneshot" {
		t.Errorf("Type=%s, want oneshot", got)
	}
	if got, want := mustLast(t, scan, "Service", "ExecStart"), mustLast(t, node, "Service", "ExecStart")+" verify"; got != want {
		t.Errorf("ExecStart=%s, want %s", got, want)
	}
	for _, k := range []string{"EnvironmentFile", "User", "Group", "ProtectSystem", "NoNewPrivileges",
		"CapabilityBoundingSet", "RestrictAddressFamilies", "SystemCallFilter"} {
		if got, want := scan["Service"][k], node["Service"][k]; !slices.Equal(got, want) {
			t.Errorf("[Service] %s=%v, the data node's is %v", k, got, want)
		}
	}
	if got, want := scan["Unit"]["RequiresMountsFor"], node["Unit"]["RequiresMountsFor"]; !slices.Equal(got, want) {
		t.Errorf("RequiresMountsFor=%v, the data node's is %v", got, want)
	}
	if rw := scan["Service"]["ReadWritePaths"]; len(rw) > 0 {
		t.Errorf("ReadWritePaths=%v: the scan changes nothing on disk and must not be able to", rw)
	}

	if cal := mustLast(t, timer, "Timer", "OnCalendar"); cal == "" {
		t.Error("the timer has no OnCalendar=")
	}
	if p, _ := timer.last("Timer", "Persistent"); p != "true" {
		t.Errorf("Persistent=%q: a scan missed while the machine was off would wait another week", p)
	}
	if u, ok := timer.last("Timer", "Unit"); ok && u != "backup-repository-datanode-verify.service" {
		t.Errorf("the timer starts %s", u)
	}
	if w := mustLast(t, timer, "Install", "WantedBy"); w != "timers.target" {
		t.Errorf("WantedBy=%s, want timers.target", w)
	}

	// The binary knows the subcommand the unit runs.
	if out, err := exec.Command(bins.DataNode, "verify", "-h").CombinedOutput(); err != nil {
		t.Errorf("datanode verify -h: %v\n%s", err, out)
	}
}

package deploy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// composeCommand returns the argv prefix of a Compose implementation: the docker CLI plugin
// when present, else docker-compose (installed from Debian's packages when missing).
func composeCommand(t *testing.T) []string {
	t.Helper()
	if docker, err := exec.LookPath("docker"); err == nil {
		if exec.Command(docker, "compose", "version").Run() == nil {
			return []string{docker, "compose"}
		}
	}
	return []string{ensureCommand(t, "docker-compose", "docker-compose")}
}

// composeConfig runs `compose config` on compose.yaml with envFile; it returns the normalised
// file, what Compose printed on stderr, and whether it succeeded.
func composeConfig(t *testing.T, compose []string, composeFile, envFile string) (stdout, stderr string, ok bool) {
	t.Helper()
	args := append(compose[1:], "--env-file", envFile, "-f", composeFile, "config")
	cmd := exec.Command(compose[0], args...)
	cmd.Dir = t.TempDir() // no stray .env is picked up
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err == nil
}

type composeFile struct {
	Services map[string]struct {
		Image       string            `json:"image"`
		Environment map[string]string `json:"environment"`
		Volumes     []composeVolume   `json:"volumes"`
	} `json:"services"`
	Volumes map[string]any `json:"volumes"`
}

// composeVolume is a service's volume in either syntax: docker-compose 1 prints the short
// "source:target:mode", Compose 2 the long form.
type composeVolume struct {
	Source, Target string
}

func (v *composeVolume) UnmarshalJSON(b []byte) error {
	var short string
	if err := json.Unmarshal(b, &short); err == nil {
		parts := strings.Split(short, ":")
		if len(parts) < 2 {
			return fmt.Errorf("volume %q has no target", short)
		}
		v.Source, v.Target = parts[0], parts[1]
		return nil
	}
	var long struct{ Source, Target string }
	if err := json.Unmarshal(b, &long); err != nil {
		return err
	}
	v.Source, v.Target = long.Source, long.Target
	return nil
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	compose := composeCommand(t)
	root := repoRoot(t)
	file := filepath.Join(root, "deploy", "compose.yaml")
	example := filepath.Join(root, "deploy", "compose.env.example")

	stdout, stderr, ok := composeConfig(t, compose, file, example)
	if !ok || strings.TrimSpace(stderr) != "" {
		t.Fatalf("compose config with compose.env.example: ok=%v\n%s", ok, stderr)
	}
	var cf composeFile
	if err := yaml.Unmarshal([]byte(stdout), &cf); err != nil {
		t.Fatalf("decode the normalised compose file: %v\n%s", err, stdout)
	}

	cpFlags, dnFlags := settingNames(t, bins.ControlPlane), settingNames(t, bins.DataNode)
	counts := map[string]int{}
	nodeNames, nodeVolumes := map[string]bool{}, map[string]bool{}
	var cpDataVolume string
	for name, svc := range cf.Services {
		var names []string
		for k := range svc.Environment {
			names = append(names, k)
		}
		switch {
		case strings.HasPrefix(svc.Image, "backup-repository/controlplane:"):
			counts["controlplane"]++
			checkSettings(t, "compose service "+name, names, cpFlags)
			for _, v := range svc.Volumes {
				if v.Target == svc.Environment["BR_DATA_DIR"] {
					cpDataVolume = v.Source
				}
			}
		case strings.HasPrefix(svc.Image, "backup-repository/datanode:"):
			counts["datanode"]++
			checkSettings(t, "compose service "+name, names, dnFlags)
			env := svc.Environment
			if nodeNames[env["BR_NODE_NAME"]] {
				t.Errorf("%s: BR_NODE_NAME %q is not unique", name, env["BR_NODE_NAME"])
			}
			nodeNames[env["BR_NODE_NAME"]] = true
			if env["BR_PUBLIC_URL"] != "http://"+name+":8081" {
				t.Errorf("%s: BR_PUBLIC_URL %q is not where the front door reaches the service", name, env["BR_PUBLIC_URL"])
			}
			for _, v := range svc.Volumes {
				if v.Target == env["BR_DISKS"] {
					if nodeVolumes[v.Source] {
						t.Errorf("%s shares its disk volume %s with another node", name, v.Source)
					}
					nodeVolumes[v.Source] = true
				}
				if v.Target == filepath.Dir(env["BR_VERIFY_KEYS"]) && (v.Source != cpDataVolume && cpDataVolume != "") {
					t.Errorf("%s reads BR_VERIFY_KEYS from volume %s, not the control plane's data volume %s", name, v.Source, cpDataVolume)
				}
			}
			if k, err := base64.StdEncoding.DecodeString(env["BR_GOSSIP_KEY"]); err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
				t.Errorf("%s: BR_GOSSIP_KEY of the example is not base64 of 16, 24 or 32 bytes", name)
			}
		case strings.HasPrefix(svc.Image, "postgres:"):
			counts["postgres"]++
		case strings.HasPrefix(svc.Image, "redis:"):
			counts["redis"]++
		default:
			t.Errorf("unexpected service %s (%s)", name, svc.Image)
		}
	}
	if want := map[string]int{"controlplane": 1, "datanode": 3, "postgres": 1, "redis": 1}; !mapsEqual(counts, want) {
		t.Errorf("services by image %v, want %v", counts, want)
	}
	if len(nodeVolumes) != 3 {
		t.Errorf("want three data-node disk volumes, got %v", nodeVolumes)
	}
	if cpDataVolume == "" {
		t.Error("the control plane's BR_DATA_DIR is not on a volume")
	}

	// Every variable of the example is used, and every variable used is in the example.
	text := deployFile(t, "compose.yaml")
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)`).FindAllStringSubmatch(text, -1) {
		used[m[1]] = true
	}
	env := envFile(t, "compose.env.example")
	for k := range env {
		if !used[k] {
			t.Errorf("compose.env.example sets %s, which compose.yaml never uses", k)
		}
	}
	for k := range used {
		if _, ok := env[k]; !ok {
			t.Errorf("compose.yaml uses ${%s}, which compose.env.example does not set", k)
		}
	}

	// The checks above can fail: a required variable left out, or a misspelt key, is refused.
	dir := t.TempDir()
	lacking := filepath.Join(dir, "lacking.env")
	if err := os.WriteFile(lacking, []byte(regexp.MustCompile(`(?m)^BR_NODE_SECRET=.*$`).ReplaceAllString(deployFile(t, "compose.env.example"), "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, ok := composeConfig(t, compose, file, lacking); ok || !strings.Contains(stderr, "BR_NODE_SECRET") {
		t.Errorf("compose config accepted an .env without BR_NODE_SECRET: %q", stderr)
	}
	misspelt := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(misspelt, []byte(strings.Replace(text, "stop_grace_period: 45s", "stop_grace_periode: 45s", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := composeConfig(t, compose, misspelt, example); ok {
		t.Error("compose config accepted a misspelt key")
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

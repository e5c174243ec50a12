package deploy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backuprepo/e2e/stack"
	"backuprepo/shared/localserver"
)

// requireDocker returns the docker command once the engine answers.
func requireDocker(t *testing.T) string {
	t.Helper()
	docker, err := exec.LookPath("docker")
	need(t, err == nil, "docker is not installed")
	out, err := exec.Command(docker, "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	need(t, err == nil, "the Docker engine does not answer: %v %s", err, out)
	return docker
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

type imageConfig struct {
	User         string
	Entrypoint   []string
	Cmd          []string
	Env          []string
	ExposedPorts map[string]struct{}
	Volumes      map[string]struct{}
	WorkingDir   string
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestDockerImages builds both images with deploy/docker/build.sh, checks what they hold, and
// runs them as a cluster: the control plane and a data node in containers (host network, on
// 127.0.0.1) against the test PostgreSQL and Redis, the node's disk on a named volume.
func TestDockerImages(t *testing.T) {
	docker := requireDocker(t)
	root := repoRoot(t)
	tag := "deploy-test-" + randomHex(4)
	images := map[string]string{"controlplane": "backup-repository/controlplane:" + tag, "datanode": "backup-repository/datanode:" + tag}

	start := time.Now()
	cmd := exec.Command("bash", filepath.Join(root, "deploy", "docker", "build.sh"))
	cmd.Env = append(os.Environ(), "TAG="+tag)
	t.Cleanup(func() { _ = exec.Command(docker, "rmi", "-f", images["controlplane"], images["datanode"]).Run() })
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	t.Logf("build.sh built both images in %s", time.Since(start).Round(time.Second))

	flags := map[string]map[string]bool{"controlplane": settingNames(t, bins.ControlPlane), "datanode": settingNames(t, bins.DataNode)}
	for role, image := range images {
		var cfg imageConfig
		if err := json.Unmarshal([]byte(mustRun(t, docker, "image", "inspect", "--format", "{{json .Config}}", image)), &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.User != "65532:65532" {
			t.Errorf("%s: USER %q, want 65532:65532", role, cfg.User)
		}
		if want := []string{"/usr/local/bin/" + role}; strings.Join(cfg.Entrypoint, " ") != want[0] || len(cfg.Cmd) != 0 {
			t.Errorf("%s: ENTRYPOINT %v CMD %v, want %v alone", role, cfg.Entrypoint, cfg.Cmd, want)
		}
		if _, ok := cfg.ExposedPorts["8080/tcp"]; role == "controlplane" && !ok {
			t.Errorf("%s exposes %v, not 8080/tcp", role, cfg.ExposedPorts)
		}
		if _, ok := cfg.ExposedPorts["8081/tcp"]; role == "datanode" && !ok {
			t.Errorf("%s exposes %v, not 8081/tcp", role, cfg.ExposedPorts)
		}
		if _, ok := cfg.Volumes["/data/disk1"]; role == "datanode" && !ok {
			t.Errorf("datanode declares volumes %v, not /data/disk1", cfg.Volumes)
		}
		var names []string
		for _, e := range cfg.Env {
			k, _, _ := strings.Cut(e, "=")
			names = append(names, k)
		}
		checkSettings(t, role+" image ENV", names, flags[role])
		size, _ := strconv.ParseInt(mustRun(t, docker, "image", "inspect", "--format", "{{.Size}}", image), 10, 64)
		if size > 64<<20 {
			t.Errorf("%s image is %d MiB: it should hold the static binary only", role, size>>20)
		}
		// No shell: the image is the binary and nothing else.
		if out, err := exec.Command(docker, "run", "--rm", "--entrypoint", "/bin/sh", image, "-c", "true").CombinedOutput(); err == nil {
			t.Errorf("%s image runs /bin/sh: %s", role, out)
		}
		// The static binary starts in an empty image.
		out, _ := exec.Command(docker, "run", "--rm", image, "-h").CombinedOutput()
		if !strings.Contains(string(out), "Usage of "+role) {
			t.Errorf("%s -h in its image: %s", role, out)
		}
	}

	runCluster(t, docker, images)
}

// runCluster starts the two images as containers and uploads through the front door.
func runCluster(t *testing.T, docker string, images map[string]string) {
	dbURL := freshDatabase(t)
	redisURL := os.Getenv("TEST_REDIS_URL")
	need(t, redisURL != "", "TEST_REDIS_URL is not set; run the tests with `make test`")

	id := randomHex(4)
	keys, disk := "br-test-keys-"+id, "br-test-disk-"+id
	cpName, dnName := "br-test-controlplane-"+id, "br-test-datanode-"+id
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{cpName, dnName} {
				out, _ := exec.Command(docker, "logs", "--tail", "40", c).CombinedOutput()
				t.Logf("---- %s ----\n%s", c, out)
			}
		}
		_ = exec.Command(docker, "rm", "-f", "-v", cpName, dnName).Run()
		_ = exec.Command(docker, "volume", "rm", "-f", keys, disk).Run()
	})

	cpPort, cpGossip, dnPort, dnGossip := freePort(t), freePort(t), freePort(t), freePort(t)
	cpURL := "http://127.0.0.1:" + strconv.Itoa(cpPort)
	dnURL := "http://127.0.0.1:" + strconv.Itoa(dnPort)
	health, metrics := randomHex(8), randomHex(8)
	gossipKey := make([]byte, 32)
	_, _ = rand.Read(gossipKey)
	secret, adminPassword := randomHex(16), randomHex(12)

	cpEnv := map[string]string{
		"BR_DATABASE_URL": dbURL, "BR_REDIS_URL": redisURL, "BR_REDIS_PREFIX": "deploy-" + id + ":",
		"BR_LISTEN": "127.0.0.1:" + strconv.Itoa(cpPort), "BR_BASE_URL": cpURL, "BR_APP_ENV": "test",
		"BR_HEALTH_CHECK_CODE": health, "BR_METRICS_CODE": metrics,
		"BR_GOSSIP_BIND": "127.0.0.1:" + strconv.Itoa(cpGossip), "BR_GOSSIP_KEY": base64.StdEncoding.EncodeToString(gossipKey),
		"BR_NODE_NAME": "controlplane-1", "BR_NODE_SECRET": secret, "BR_CREATE_SIGNING_KEY": "true",
		"BR_BOOTSTRAP_ADMIN_EMAIL": "admin@example.org", "BR_BOOTSTRAP_ADMIN_PASSWORD": adminPassword,
	}
	dnEnv := map[string]string{
		"BR_LISTEN": "127.0.0.1:" + strconv.Itoa(dnPort), "BR_NODE_NAME": "datanode-1", "BR_PUBLIC_URL": dnURL,
		"BR_RESERVE": "16MiB", "BR_GOSSIP_BIND": "127.0.0.1:" + strconv.Itoa(dnGossip),
		"BR_GOSSIP_JOIN": "127.0.0.1:" + strconv.Itoa(cpGossip), "BR_GOSSIP_KEY": cpEnv["BR_GOSSIP_KEY"],
		"BR_CONTROLPLANE_URL": cpURL, "BR_NODE_SECRET": secret, "BR_VERIFY_KEYS": "/keys/verify-key.pem",
		"BR_HEALTH_CHECK_CODE": health, "BR_SHUTDOWN_GRACE": "5s",
	}
	// BR_DATA_DIR and BR_DISKS come from the images: the volumes are mounted where they point.
	start := func(name, image string, env map[string]string, volumes ...string) {
		args := []string{"run", "-d", "--name", name, "--network", "host"}
		for k, v := range env {
			args = append(args, "-e", k+"="+v)
		}
		for _, v := range volumes {
			args = append(args, "-v", v)
		}
		mustRun(t, docker, append(args, image)...)
	}
	start(cpName, images["controlplane"], cpEnv, keys+":/var/lib/backup-repository")
	waitHTTP(t, cpURL+"/livez", 60*time.Second)
	start(dnName, images["datanode"], dnEnv, disk+":/data/disk1", keys+":/keys:ro")
	// Ready: the node, running as 65532, wrote its probe file on the volume and reached the
	// control plane.
	waitHTTP(t, dnURL+"/readyz", 60*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := &stack.Stack{URL: cpURL, HTTP: &http.Client{Timeout: time.Minute}}
	tok, err := st.Login(ctx, "admin@example.org", adminPassword)
	if err != nil {
		t.Fatal(err)
	}
	st.AdminToken = tok
	node := &stack.Node{Process: &stack.Process{Name: "datanode-1"}}
	if err := st.WaitNodesAlive(ctx, node); err != nil {
		t.Fatal(err)
	}
	waitHTTP(t, cpURL+"/health?code="+url.QueryEscape(health), 30*time.Second)

	tenant := st.CreateTenant(t, map[string]any{"quota": "1GiB"})
	collection, placed := st.CreateCollection(t, map[string]any{"tenantId": tenant, "id": "docker-" + id,
		"maxBackupsCount": 2, "maxOneVersionSize": "64MiB", "maxCollectionSize": "128MiB", "strategy": "FIFO"})
	if placed != "datanode-1" {
		t.Fatalf("collection placed on %q", placed)
	}
	_, user := st.Uploader(t, tenant, "backupUploader", "backupDownloader")
	a, err := upload(ctx, st.HTTP, cpURL, user.Token, collection, 4<<20, 7, true)
	if err != nil || a.status != http.StatusOK || a.version.SHA256 != a.sent {
		t.Fatalf("upload through the containerised front door: %v %d %s", err, a.status, a.raw)
	}

	// The version is on the named volume, owned by the image's user.
	mount := mustRun(t, docker, "volume", "inspect", "--format", "{{.Mountpoint}}", disk)
	var found bool
	err = filepath.WalkDir(mount, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.Name() != a.version.ID {
			return err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 65532 || fi.Size() != a.version.Size {
			t.Errorf("stored version: uid %d size %d, want 65532 and %d", uid, fi.Size(), a.version.Size)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != a.sent {
			t.Errorf("stored version hashes to %s, want %s", got, a.sent)
		}
		found = true
		return nil
	})
	if err != nil || !found {
		t.Fatalf("version %s not found on volume %s (%s): %v", a.version.ID, disk, mount, err)
	}

	// docker stop sends the image's STOPSIGNAL; the node shuts down cleanly.
	mustRun(t, docker, "stop", "-t", "30", dnName)
	if code := mustRun(t, docker, "inspect", "--format", "{{.State.ExitCode}}", dnName); code != "0" {
		t.Errorf("the data node exited with %s after docker stop, want 0", code)
	}
}

// waitHTTP fails t unless u answers 200 within the given time.
func waitHTTP(t *testing.T, u string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	if err := localserver.WaitOK(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
}

// freshDatabase creates an empty database on TEST_DATABASE_URL's server, dropped at the end.
func freshDatabase(t *testing.T) string {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	need(t, base != "", "TEST_DATABASE_URL is not set; run the tests with `make test`")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := "deploy_" + randomHex(6)
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, base); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

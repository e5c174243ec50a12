package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dc "github.com/ory/dockertest/v3/docker"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/dockertest/v3"

	"backuprepo/e2e/stack"
	"backuprepo/shared/localserver"
)

const (
	imageTag        = "dev" // what deploy/docker/build.sh tags by default
	dataNodeImage   = "backup-repository/datanode:" + imageTag
	nodeDiskPath    = "/data/disk1" // the image's first disk (Dockerfile.datanode)
	nodeHTTPPort    = 8081
	nodeGossipPort  = 7947
	verifyKeyInNode = "/etc/backup-repository/verify-key.pem"
	imageUID        = 65532 // the user the images declare
	startTimeout    = 90 * time.Second
	nodeReserve     = 64 << 20 // BR_RESERVE of every data node: free space it never gives to uploads
)

// cluster is the running system under test: the Docker network, the data node containers and
// the control plane processes on the host.
type cluster struct {
	pool    *dockertest.Pool
	network *dockertest.Network
	gateway string // the host's address on the network
	subnet  *net.IPNet
	runID   string
	dir     string
	cpBin   string

	dbURL, redisURL, redisPrefix string
	adminEmail, adminPassword    string
	healthCode, metricsCode      string
	nodeSecret, gossipKey        string
	db                           *pgxpool.Pool
	cps                          []*controlPlane
	nodes                        []*dataNode
	api                          *stack.Stack // the client helpers, aimed at the first control plane
	containerUser                string       // "" runs the image's own user
	keyPath                      string       // the control plane's verify key, mounted in every node
}

// dataNode is one data node container.
type dataNode struct {
	name, ip, url string
	// disk is where the host reads the node's disk: a host directory mounted into the
	// container, or, for a tmpfs disk, the container's mount seen through /proc/<pid>/root.
	disk string
	// tmpfs, when positive, makes the disk a tmpfs of that many bytes inside the container
	// instead of a host directory: a small filesystem of its own that fills up for real. Its
	// contents go when the container stops.
	tmpfs       int64
	containerID string
	view        *stack.Node // for the disk inspection helpers
	env         []string
}

// gossipAddr is where the node's memberlist listens and is advertised.
func (n *dataNode) gossipAddr() string { return net.JoinHostPort(n.ip, strconv.Itoa(nodeGossipPort)) }

// startCluster builds nothing: images and the control plane binary come from the caller. It
// creates the network, a fresh database, the first control plane and three data nodes, and
// returns once every node is alive in the control plane's view. Everything is removed when
// the test ends, failed or not.
func startCluster(t *testing.T, pool *dockertest.Pool, cpBin string) *cluster {
	t.Helper()
	baseDB, redisURL := os.Getenv("TEST_DATABASE_URL"), os.Getenv("TEST_REDIS_URL")
	c := &cluster{
		pool:          pool,
		runID:         randomText(8),
		dir:           t.TempDir(),
		cpBin:         cpBin,
		redisURL:      redisURL,
		adminEmail:    "admin@example.org",
		adminPassword: randomText(24),
		healthCode:    randomText(16),
		metricsCode:   randomText(16),
		nodeSecret:    randomText(32),
		gossipKey:     base64.StdEncoding.EncodeToString(randomBytes(32)),
	}
	c.redisPrefix = "e2ecluster" + c.runID + ":"
	if os.Geteuid() != 0 {
		// Without root the disk directories cannot be given to the image's user: run the
		// containers as the test's own user instead, so both can read and write the disks.
		c.containerUser = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()

	c.dbURL = stack.CreateDatabase(t, ctx, baseDB)
	db, err := pgxpool.New(context.Background(), c.dbURL)
	if err != nil {
		t.Fatalf("open the cluster's database: %v", err)
	}
	t.Cleanup(db.Close)
	c.db = db

	if err := c.createNetwork(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pool.RemoveNetwork(c.network); err != nil {
			t.Logf("remove network %s: %v", c.network.Network.Name, err)
		}
	})

	// Static addresses: .1 is the gateway (the host), data nodes are .11, .12, .13.
	for i := range 3 {
		ip := make(net.IP, 4)
		copy(ip, c.subnet.IP.To4())
		ip[3] = byte(11 + i)
		name := "datanode-" + strconv.Itoa(i+1)
		c.nodes = append(c.nodes, &dataNode{name: name, ip: ip.String(),
			url: "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(nodeHTTPPort))})
	}

	cp := c.newControlPlane(t, "controlplane-1", nil)
	c.cps = append(c.cps, cp)
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cp.WaitLive(ctx); err != nil {
		t.Fatal(err)
	}
	c.api = &stack.Stack{URL: cp.url, DB: db, HTTP: &http.Client{}, AdminEmail: c.adminEmail,
		AdminPassword: c.adminPassword, HealthCheckCode: c.healthCode, MetricsCode: c.metricsCode,
		NodeSecret: c.nodeSecret, GossipKey: c.gossipKey, DatabaseURL: c.dbURL, RedisPrefix: c.redisPrefix}

	// The data nodes verify tokens with the control plane's public key, written at its first
	// start; they get a copy (the data dir is private to the host process).
	keyDir := filepath.Join(c.dir, "keys")
	if err := os.MkdirAll(keyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(cp.dataDir, "verify-key.pem"))
	if err != nil {
		t.Fatalf("read the control plane's verify key: %v", err)
	}
	c.keyPath = filepath.Join(keyDir, "verify-key.pem")
	if err := os.WriteFile(c.keyPath, key, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, n := range c.nodes {
		if err := c.runDataNode(t, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.nodes {
		if err := localserver.WaitOK(ctx, n.url+"/livez", nil); err != nil {
			t.Fatalf("%s: %v\n%s", n.name, err, c.containerLogs(n, 40))
		}
	}
	tok, err := c.api.Login(ctx, c.adminEmail, c.adminPassword)
	if err != nil {
		t.Fatalf("log in as the bootstrap admin: %v", err)
	}
	c.api.AdminToken = tok
	for _, n := range c.nodes {
		if _, err := c.waitState(ctx, c.api, n.name, "alive"); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// createNetwork makes a bridge network with a /24 of its own, so that addresses can be fixed.
// A random 10.x.y.0/24 that overlaps another network or a host route is skipped.
func (c *cluster) createNetwork() error {
	var lastErr error
	for range 30 {
		x, y := 64+randomInt(128), randomInt(256)
		subnet := fmt.Sprintf("10.%d.%d.0/24", x, y)
		_, ipnet, _ := net.ParseCIDR(subnet)
		if hostUses(ipnet) {
			continue
		}
		gw := fmt.Sprintf("10.%d.%d.1", x, y)
		nw, err := c.pool.CreateNetwork("br-e2e-"+c.runID, func(o *dc.CreateNetworkOptions) {
			o.Driver = "bridge"
			o.IPAM = &dc.IPAMOptions{Driver: "default", Config: []dc.IPAMConfig{{Subnet: subnet, Gateway: gw}}}
			o.Labels = map[string]string{"backuprepo.e2e": c.runID}
		})
		if err != nil {
			lastErr = err
			if strings.Contains(err.Error(), "overlap") {
				continue
			}
			return fmt.Errorf("create docker network: %w", err)
		}
		c.network, c.gateway, c.subnet = nw, gw, ipnet
		return nil
	}
	return fmt.Errorf("create docker network: no free subnet found: %w", lastErr)
}

// hostUses reports whether an address of a host interface lies in n.
func hostUses(n *net.IPNet) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok && (n.Contains(p.IP) || p.Contains(n.IP)) {
			return true
		}
	}
	return false
}

// addDataNode starts one more data node, at the next static address, with a tmpfs disk of
// tmpfs bytes when positive, and returns once it is alive in the control plane's view.
func (c *cluster) addDataNode(t *testing.T, name string, tmpfs int64) *dataNode {
	t.Helper()
	ip := make(net.IP, 4)
	copy(ip, c.subnet.IP.To4())
	ip[3] = byte(11 + len(c.nodes))
	n := &dataNode{name: name, ip: ip.String(), tmpfs: tmpfs,
		url: "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(nodeHTTPPort))}
	c.nodes = append(c.nodes, n)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.runDataNode(t, n); err != nil {
		t.Fatal(err)
	}
	if err := localserver.WaitOK(ctx, n.url+"/livez", nil); err != nil {
		t.Fatalf("%s: %v\n%s", n.name, err, c.containerLogs(n, 40))
	}
	if _, err := c.waitState(ctx, c.api, n.name, "alive"); err != nil {
		t.Fatal(err)
	}
	return n
}

// runDataNode creates and starts n's container with its disk and static address.
func (c *cluster) runDataNode(t *testing.T, n *dataNode) error {
	t.Helper()
	binds := []string{c.keyPath + ":" + verifyKeyInNode + ":ro"}
	var tmpfs map[string]string
	if n.tmpfs > 0 {
		uid, gid := imageUID, imageUID
		if c.containerUser != "" {
			uid, gid = os.Getuid(), os.Getgid()
		}
		tmpfs = map[string]string{nodeDiskPath: fmt.Sprintf("size=%d,mode=0750,uid=%d,gid=%d", n.tmpfs, uid, gid)}
	} else {
		n.disk = filepath.Join(c.dir, n.name+"-disk")
		if err := os.MkdirAll(n.disk, 0o750); err != nil {
			return err
		}
		if c.containerUser == "" {
			if err := os.Chown(n.disk, imageUID, imageUID); err != nil {
				return fmt.Errorf("give %s's disk to the image's user: %w", n.name, err)
			}
		}
		n.view = &stack.Node{Process: &stack.Process{Name: n.name}, URL: n.url, Disks: []string{n.disk}}
		binds = append(binds, n.disk+":"+nodeDiskPath)
	}
	joins := []string{}
	for _, cp := range c.cps {
		joins = append(joins, cp.gossipAddr)
	}
	n.env = []string{
		"BR_NODE_NAME=" + n.name,
		"BR_PUBLIC_URL=" + n.url,
		"BR_ZONE=e2e",
		"BR_DISKS=" + nodeDiskPath,
		"BR_RESERVE=" + strconv.Itoa(nodeReserve),
		"BR_LISTEN=0.0.0.0:" + strconv.Itoa(nodeHTTPPort),
		"BR_GOSSIP_BIND=0.0.0.0:" + strconv.Itoa(nodeGossipPort),
		"BR_GOSSIP_ADVERTISE=" + n.gossipAddr(),
		"BR_GOSSIP_JOIN=" + strings.Join(joins, ","),
		"BR_GOSSIP_KEY=" + c.gossipKey,
		"BR_CONTROLPLANE_URL=" + c.cps[0].url,
		"BR_NODE_SECRET=" + c.nodeSecret,
		"BR_VERIFY_KEYS=" + verifyKeyInNode,
		"BR_HEALTH_CHECK_CODE=" + c.healthCode,
		// Short enough that a stalled (partitioned) upload is dropped within the test.
		"BR_BODY_IDLE_TIMEOUT=5s",
		"BR_CLEANUP_INTERVAL=2s",
		"BR_SHUTDOWN_GRACE=2s",
		"BR_LOG_LEVEL=info",
	}
	cont, err := c.pool.Client.CreateContainer(dc.CreateContainerOptions{
		Name: "br-e2e-" + c.runID + "-" + n.name,
		Config: &dc.Config{
			Image:    dataNodeImage,
			Hostname: n.name,
			Env:      n.env,
			User:     c.containerUser,
			Labels:   map[string]string{"backuprepo.e2e": c.runID},
		},
		HostConfig: &dc.HostConfig{Binds: binds, Tmpfs: tmpfs},
		NetworkingConfig: &dc.NetworkingConfig{EndpointsConfig: map[string]*dc.EndpointConfig{
			c.network.Network.Name: c.endpoint(n),
		}},
	})
	if err != nil {
		return fmt.Errorf("create container of %s: %w", n.name, err)
	}
	n.containerID = cont.ID
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- last lines of %s (container) ----\n%s", n.name, c.containerLogs(n, 120))
		}
		if err := c.pool.Purge(&dockertest.Resource{Container: cont}); err != nil {
			t.Logf("remove container of %s: %v", n.name, err)
		}
	})
	return c.start(n)
}

// endpoint is n's attachment to the network: its fixed address and its name as an alias.
func (c *cluster) endpoint(n *dataNode) *dc.EndpointConfig {
	return &dc.EndpointConfig{IPAMConfig: &dc.EndpointIPAMConfig{IPv4Address: n.ip}, Aliases: []string{n.name}}
}

// kill sends SIGKILL to n's container: a crash, its disk stays.
func (c *cluster) kill(n *dataNode) error {
	return c.pool.Client.KillContainer(dc.KillContainerOptions{ID: n.containerID, Signal: dc.SIGKILL})
}

// start starts n's container (again: same disk and address; a tmpfs disk starts empty).
func (c *cluster) start(n *dataNode) error {
	if err := c.pool.Client.StartContainer(n.containerID, nil); err != nil {
		return fmt.Errorf("start container of %s: %w", n.name, err)
	}
	if n.tmpfs <= 0 {
		return nil
	}
	// The tmpfs lives in the container's mount namespace only; the host reaches it through the
	// node process's root (the image has no shell to exec, and docker cp skips tmpfs mounts).
	ci, err := c.pool.Client.InspectContainer(n.containerID)
	if err != nil {
		return fmt.Errorf("inspect container of %s: %w", n.name, err)
	}
	if ci.State.Pid <= 0 {
		return fmt.Errorf("container of %s has no process (state %s)", n.name, ci.State.String())
	}
	n.disk = filepath.Join("/proc", strconv.Itoa(ci.State.Pid), "root", nodeDiskPath)
	if _, err := os.Stat(n.disk); err != nil {
		return fmt.Errorf("read %s's tmpfs disk from the host (the Docker engine must run on this host, "+
			"and the test as root or as the containers' user): %w", n.name, err)
	}
	n.view = &stack.Node{Process: &stack.Process{Name: n.name}, URL: n.url, Disks: []string{n.disk}}
	return nil
}

// disconnect takes n off the network: a partition.
func (c *cluster) disconnect(n *dataNode) error {
	return c.pool.Client.DisconnectNetwork(c.network.Network.ID,
		dc.NetworkConnectionOptions{Container: n.containerID, Force: true})
}

// reconnect puts n back on the network at its address.
func (c *cluster) reconnect(n *dataNode) error {
	return c.pool.Client.ConnectNetwork(c.network.Network.ID,
		dc.NetworkConnectionOptions{Container: n.containerID, EndpointConfig: c.endpoint(n)})
}

// containerLogs returns the last lines of n's output.
func (c *cluster) containerLogs(n *dataNode, lines int) string {
	var buf bytes.Buffer
	err := c.pool.Client.Logs(dc.LogsOptions{Container: n.containerID, OutputStream: &buf, ErrorStream: &buf,
		Stdout: true, Stderr: true, Tail: strconv.Itoa(lines)})
	if err != nil {
		return fmt.Sprintf("(no logs: %v)", err)
	}
	return buf.String()
}

// node returns the data node called name.
func (c *cluster) node(t *testing.T, name string) *dataNode {
	t.Helper()
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	t.Fatalf("no data node %q in the cluster", name)
	return nil
}

// controlPlane is a control plane process on the host.
type controlPlane struct {
	*stack.Process
	url, gossipAddr, dataDir string
}

// newControlPlane prepares (does not start) a control plane on the gateway address with free
// ports; extra overrides BR_* settings. It is stopped when the test ends.
func (c *cluster) newControlPlane(t *testing.T, name string, extra []string) *controlPlane {
	t.Helper()
	httpPort, gossipPort := freePort(t, c.gateway), freePort(t, c.gateway)
	url := "http://" + net.JoinHostPort(c.gateway, strconv.Itoa(httpPort))
	gossipAddr := net.JoinHostPort(c.gateway, strconv.Itoa(gossipPort))
	dataDir := filepath.Join(c.dir, name)
	joins := []string{}
	for _, n := range c.nodes {
		joins = append(joins, n.gossipAddr()) // so that a restarted control plane finds the nodes again
	}
	for _, o := range c.cps {
		joins = append(joins, o.gossipAddr)
	}
	env := append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir(),
		"BR_DATABASE_URL=" + c.dbURL,
		"BR_REDIS_URL=" + c.redisURL,
		"BR_REDIS_PREFIX=" + c.redisPrefix,
		"BR_LISTEN=" + net.JoinHostPort(c.gateway, strconv.Itoa(httpPort)),
		"BR_BASE_URL=" + url,
		"BR_APP_ENV=test",
		"BR_HEALTH_CHECK_CODE=" + c.healthCode,
		"BR_METRICS_CODE=" + c.metricsCode,
		"BR_GOSSIP_BIND=" + gossipAddr,
		"BR_GOSSIP_ADVERTISE=" + gossipAddr,
		"BR_GOSSIP_JOIN=" + strings.Join(joins, ","),
		"BR_GOSSIP_KEY=" + c.gossipKey,
		"BR_NODE_NAME=" + name,
		"BR_NODE_SECRET=" + c.nodeSecret,
		"BR_DATA_DIR=" + dataDir,
		"BR_CREATE_SIGNING_KEY=true",
		"BR_BOOTSTRAP_ADMIN_EMAIL=" + c.adminEmail,
		"BR_BOOTSTRAP_ADMIN_PASSWORD=" + c.adminPassword,
		"BR_LOG_LEVEL=info",
	}, extra...)
	p := &controlPlane{
		Process:    stack.NewProcess(name, c.cpBin, filepath.Join(c.dir, name+".log"), url+"/livez", env),
		url:        url,
		gossipAddr: gossipAddr,
		dataDir:    dataDir,
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("stop %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("---- last lines of %s (%s) ----\n%s", name, p.LogPath, p.Tail(120))
		}
	})
	return p
}

// nodeStates returns every data node's state in api's view.
func nodeStates(ctx context.Context, api *stack.Stack) (map[string]string, error) {
	var out struct {
		DataNodes []struct{ Name, State string }
	}
	if err := api.GraphQL(ctx, api.AdminToken, `{ dataNodes { name state } }`, nil, &out); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, d := range out.DataNodes {
		m[d.Name] = d.State
	}
	return m, nil
}

// waitState polls api's view until node is in state and returns how long that took.
func (c *cluster) waitState(ctx context.Context, api *stack.Stack, node, state string) (time.Duration, error) {
	start := time.Now()
	last := ""
	for {
		states, err := nodeStates(ctx, api)
		if err == nil && states[node] == state {
			return time.Since(start), nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprint(states)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("%s not %s in %s's view after %s (last: %s)", node, state,
				api.URL, time.Since(start).Round(time.Millisecond), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePort is a port free for TCP and UDP on host (memberlist uses both).
func freePort(t *testing.T, host string) int {
	t.Helper()
	port, err := localserver.FreePortOn(host)
	if err != nil {
		t.Fatalf("find a free port on %s: %v", host, err)
	}
	return port
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return b
}

func randomText(n int) string { return hex.EncodeToString(randomBytes((n + 1) / 2))[:n] }

func randomInt(n int) int {
	v, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
	return int(v.Int64())
}

// readAllLimited drains r up to limit bytes; for error bodies.
func readAllLimited(r io.Reader, limit int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, limit))
	return b
}

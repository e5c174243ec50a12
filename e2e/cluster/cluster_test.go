package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"

	"backuprepo/e2e/stack"
)

// need skips the test when a prerequisite is missing on a developer's machine and fails it
// under CI, where every prerequisite must be there.
func need(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// suite is what the scenarios share: one cluster, and the placement facts the first scenario
// establishes.
type suite struct {
	c *cluster
	// roomiest is the node with the most room once the ballast collections are placed: every
	// new collection goes there unless it is drained or dead.
	roomiest *dataNode
	// ballast holds a collection on each of the two other nodes, with an uploader of its tenant.
	ballast        tenant
	ballastOn      map[string]string // node name -> ballast collection id
	onboarded      tenant
	onboardedColl  string
	onboardedFirst stack.Version
}

// TestCluster runs the failure scenarios of SPEC §6 in order against one cluster; the
// destructive ones (partition, node loss, control-plane restart) come last.
func TestCluster(t *testing.T) {
	suiteStart := time.Now()
	pool, cpBin := prepare(t)
	startAt := time.Now()
	c := startCluster(t, pool, cpBin)
	t.Logf("cluster up (network %s, gateway %s) in %s", c.network.Network.Name, c.gateway,
		time.Since(startAt).Round(time.Millisecond))
	s := &suite{c: c}

	// Every scenario needs the first one's placement facts; without them the rest is noise.
	if !t.Run("1_onboarding", s.onboarding) {
		t.FailNow()
	}
	t.Run("5_drain", s.drain)
	t.Run("6_two_control_planes", s.twoControlPlanes)
	t.Run("3_partition", s.partition)
	t.Run("2_node_loss", s.nodeLoss)
	t.Run("4_control_plane_restart", s.controlPlaneRestart)
	t.Logf("suite took %s", time.Since(suiteStart).Round(time.Millisecond))
}

// prepare checks the prerequisites, builds the images from deploy/docker and the control
// plane binary, and returns the Docker pool and the binary's path.
func prepare(t *testing.T) (*dockertest.Pool, string) {
	t.Helper()
	need(t, os.Getenv("TEST_DATABASE_URL") != "" && os.Getenv("TEST_REDIS_URL") != "",
		"TEST_DATABASE_URL and TEST_REDIS_URL are not set; run the tests with `make test`")
	pool, err := dockertest.NewPool("")
	if err == nil {
		err = pool.Client.Ping()
	}
	need(t, err == nil, "no Docker engine reachable: %v", err)

	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	buildStart := time.Now()
	build := exec.Command("bash", filepath.Join(root, "deploy", "docker", "build.sh"))
	build.Dir = root
	build.Env = append(os.Environ(), "TAG="+imageTag)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("deploy/docker/build.sh: %v\n%s", err, out)
	}
	bins, err := stack.Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("images and control plane built in %s", time.Since(buildStart).Round(time.Millisecond))
	return pool, bins.ControlPlane
}

// onboarding: a tenant, a user and a collection placed on the node with the most room; an
// upload through the front door comes back identical and sits on that node's disk.
func (s *suite) onboarding(t *testing.T) {
	c := s.c
	// The three disks share the host's filesystem, so their free space is the same give or take
	// whatever else writes there. Room is free space minus what placed collections still may
	// use: two ballast collections promising half and a quarter of it make the room of the
	// three nodes differ by far more than that noise, so the choice is deterministic.
	var nodes struct {
		DataNodes []struct {
			Name     string
			Capacity struct{ Free int64 }
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := c.api.GraphQL(ctx, c.api.AdminToken, `{ dataNodes { name capacity { free } } }`, nil, &nodes); err != nil {
		t.Fatal(err)
	}
	minFree := int64(-1)
	for _, n := range nodes.DataNodes {
		if minFree < 0 || n.Capacity.Free < minFree {
			minFree = n.Capacity.Free
		}
	}
	if len(nodes.DataNodes) != 3 || minFree < 4<<30 {
		t.Fatalf("want 3 data nodes with at least 4 GiB free each, got %+v", nodes.DataNodes)
	}
	s.ballast = newTenant(t, c)
	c.api.UpdateTenant(t, s.ballast.id, map[string]any{"quota": 0})
	s.ballastOn = map[string]string{}
	for _, part := range []int64{2, 4} {
		size := minFree / part &^ (1<<20 - 1)
		id, node := c.api.CreateCollection(t, map[string]any{
			"tenantId": s.ballast.id, "description": "ballast", "maxBackupsCount": 1,
			"maxOneVersionSize": size, "maxCollectionSize": size, "strategy": "FIFO"})
		if _, dup := s.ballastOn[node]; dup {
			t.Fatalf("ballast collections %v and %s both went to %s, though the first took half its room", s.ballastOn, id, node)
		}
		s.ballastOn[node] = id
		t.Logf("ballast collection promising %d MiB placed on %s", size>>20, node)
	}
	var want *dataNode
	for _, n := range c.nodes {
		if _, ok := s.ballastOn[n.name]; !ok {
			want = n
		}
	}

	// Onboarding proper: tenant, user logging in, collection.
	s.onboarded = newTenant(t, c)
	userToken, err := c.api.Login(ctx, s.onboarded.user.Email, s.onboarded.user.Password)
	if err != nil {
		t.Fatalf("the new user cannot log in: %v", err)
	}
	var created struct {
		CreateCollection struct {
			Collection struct{ ID string }
			NodeName   string
			Reason     string
		}
	}
	err = c.api.GraphQL(ctx, c.api.AdminToken, `mutation($in: CreateCollectionInput!) {
		createCollection(input: $in) { collection { id } nodeName reason } }`, map[string]any{"in": map[string]any{
		"tenantId": s.onboarded.id, "description": "onboarding", "maxBackupsCount": 5,
		"maxOneVersionSize": "64MiB", "maxCollectionSize": "320MiB", "strategy": "FIFO"}}, &created)
	if err != nil {
		t.Fatal(err)
	}
	coll, placed := created.CreateCollection.Collection.ID, created.CreateCollection.NodeName
	t.Logf("collection %s placed on %s: %s", coll, placed, created.CreateCollection.Reason)
	if placed != want.name {
		t.Fatalf("collection placed on %s, want %s (the node without ballast, so with the most room)", placed, want.name)
	}
	s.roomiest, s.onboardedColl = want, coll

	data := randomBytes(3<<20 + 12345)
	v := upload(t, c, c.api.URL, userToken, coll, data)
	if v.Number != 1 {
		t.Errorf("first version has number %d", v.Number)
	}
	download(t, c, c.api.URL, userToken, coll, "latest", sha(data))
	requireStored(t, c, want, coll, v)
	rows := c.api.VersionRows(t, coll)
	if len(rows) != 1 || rows[0].ID != v.ID || rows[0].NodeName != want.name || rows[0].SHA256 != v.SHA256 {
		t.Errorf("versions table holds %+v, want version %s on %s", rows, v.ID, want.name)
	}

	// The endpoint API names the same node, and the node serves the version directly.
	status, body, err := get(ctx, c.api.URL+"/api/stable/repository/collection/"+coll+"/endpoint", userToken)
	if err != nil || status != http.StatusOK {
		t.Fatalf("endpoint: %d %s %v", status, body, err)
	}
	var ep struct {
		Data struct{ NodeName, UploadURL, DownloadURL string }
	}
	if err := json.Unmarshal(body, &ep); err != nil || ep.Data.NodeName != want.name {
		t.Errorf("endpoint answered %s, want node %s", body, want.name)
	}
	download(t, c, want.url, userToken, coll, fmt.Sprint(v.Number), sha(data))
	s.onboardedFirst = v
}

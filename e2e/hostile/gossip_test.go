package hostile

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/memberlist"
	"github.com/jackc/pgx/v5"

	"backuprepo/e2e/stack"
	"backuprepo/shared"
	"backuprepo/shared/nodemeta"
)

// hugeFree is what the fake data nodes claim to have free: far more than any real disk, so
// that placement would pick a fake node over the real ones if it ever listened to one.
const hugeFree = int64(1) << 60

// hugeCollection is a maxCollectionSize no real node of the stack can hold (1 PiB) and the fake
// node could.
const hugeCollection = int64(1) << 50

// gossipMember is a bare memberlist member run by the test, announcing whatever bytes the test
// gives it: the intruder a real data node is not.
type gossipMember struct {
	ml   *memberlist.Memberlist
	mu   sync.Mutex
	meta []byte
}

func (m *gossipMember) NodeMeta(int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.meta
}
func (*gossipMember) NotifyMsg([]byte)                {}
func (*gossipMember) GetBroadcasts(int, int) [][]byte { return nil }
func (*gossipMember) LocalState(bool) []byte          { return nil }
func (*gossipMember) MergeRemoteState([]byte, bool)   {}

// startMember starts a member on 127.0.0.1 with the cluster's protocol settings; key nil means
// no encryption at all.
func startMember(t *testing.T, name string, key, meta []byte) *gossipMember {
	t.Helper()
	conf := memberlist.DefaultLANConfig()
	conf.Name = name
	conf.BindAddr = "127.0.0.1"
	conf.BindPort = 0
	conf.SecretKey = key
	conf.GossipVerifyIncoming = key != nil
	conf.GossipVerifyOutgoing = key != nil
	tm := nodemeta.DefaultTiming()
	conf.ProbeInterval, conf.ProbeTimeout = tm.ProbeInterval, tm.ProbeTimeout
	conf.SuspicionMult, conf.SuspicionMaxTimeoutMult = tm.SuspicionMult, tm.SuspicionMaxTimeoutMult
	conf.GossipInterval, conf.GossipNodes, conf.RetransmitMult = tm.GossipInterval, tm.GossipNodes, tm.RetransmitMult
	conf.PushPullInterval, conf.TCPTimeout = tm.PushPullInterval, tm.TCPTimeout
	conf.LogOutput = nil
	conf.Logger = log.New(io.Discard, "", 0)
	m := &gossipMember{meta: meta}
	conf.Delegate = m
	ml, err := memberlist.Create(conf)
	if err != nil {
		t.Fatalf("start gossip member %s: %v", name, err)
	}
	m.ml = ml
	t.Cleanup(func() { _ = ml.Shutdown() })
	return m
}

// announce replaces the member's metadata and gossips the change.
func (m *gossipMember) announce(t *testing.T, meta []byte) {
	t.Helper()
	m.mu.Lock()
	m.meta = meta
	m.mu.Unlock()
	if err := m.ml.UpdateNode(5 * time.Second); err != nil {
		t.Fatalf("announce new metadata: %v", err)
	}
}

// fakeNodeMeta is a valid announcement of a data node called name with hugeFree bytes free.
func fakeNodeMeta(t *testing.T, name string) []byte {
	t.Helper()
	b, err := nodemeta.Encode(nodemeta.Meta{Role: nodemeta.RoleDataNode, Name: name,
		PublicURL: "http://127.0.0.1:9/" + name, State: shared.NodeAlive, Version: "intruder",
		Total: hugeFree, Free: hugeFree})
	if err != nil {
		t.Fatalf("encode fake metadata: %v", err)
	}
	return b
}

func gossipKey(t *testing.T, s *stack.Stack) []byte {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(s.GossipKey)
	if err != nil {
		t.Fatalf("the stack's gossip key is not base64: %v", err)
	}
	return k
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// nodeStates is the control plane's registry as GraphQL dataNodes shows it: name → state.
func nodeStates(t *testing.T, s *stack.Stack) map[string]string {
	t.Helper()
	var out struct {
		DataNodes []struct{ Name, State string }
	}
	graphqlData(t, graphql(t, s.URL, s.AdminToken, `{ dataNodes { name state } }`, nil), &out)
	states := map[string]string{}
	for _, n := range out.DataNodes {
		states[n.Name] = n.State
	}
	return states
}

// mirrored reports whether PostgreSQL's data_nodes table holds a row for name.
func mirrored(t *testing.T, s *stack.Stack, name string) bool {
	t.Helper()
	var n int
	if err := s.DB.QueryRow(t.Context(), `SELECT count(*) FROM data_nodes WHERE name = $1`, name).Scan(&n); err != nil {
		t.Fatalf("read data_nodes: %v", err)
	}
	return n > 0
}

// requireUnknown fails when the control plane lists or mirrored any of names.
func requireUnknown(t *testing.T, s *stack.Stack, names ...string) {
	t.Helper()
	states := nodeStates(t, s)
	for _, name := range names {
		if st, ok := states[name]; ok {
			t.Errorf("dataNodes lists %s (state %s)", name, st)
		}
		if mirrored(t, s, name) {
			t.Errorf("data_nodes holds a row for %s", name)
		}
	}
	for _, n := range s.Nodes {
		if states[n.Name] != "alive" {
			t.Errorf("real node %s is %q in dataNodes, want alive (all: %v)", n.Name, states[n.Name], states)
		}
	}
}

// placedOn creates an ordinary collection and returns the node PostgreSQL says holds it.
func placedOn(t *testing.T, s *stack.Stack, tenant string) string {
	t.Helper()
	id, node := s.CreateCollection(t, map[string]any{"tenantId": tenant, "maxBackupsCount": 1,
		"maxOneVersionSize": 1 << 20, "maxCollectionSize": 1 << 20})
	var stored string
	if err := s.DB.QueryRow(t.Context(), `SELECT coalesce(node_name, '') FROM collections WHERE id = $1`, id).Scan(&stored); err != nil {
		t.Fatalf("read collection %s: %v", id, err)
	}
	if stored != node {
		t.Fatalf("createCollection answered node %q, the collections row holds %q", node, stored)
	}
	return stored
}

// createHuge asks for a collection only the fake node could hold and returns the GraphQL
// answer and whether a collections row with its id exists afterwards.
func createHuge(t *testing.T, s *stack.Stack, tenant string) (answer, string) {
	t.Helper()
	id := "huge-" + uuid.NewString()[:8]
	a := graphql(t, s.URL, s.AdminToken, `mutation($in: CreateCollectionInput!) { createCollection(input: $in) { collection { id } nodeName } }`,
		map[string]any{"in": map[string]any{"id": id, "tenantId": tenant, "maxBackupsCount": 1,
			"maxOneVersionSize": 1 << 20, "maxCollectionSize": hugeCollection}})
	var node string
	err := s.DB.QueryRow(t.Context(), `SELECT coalesce(node_name, '') FROM collections WHERE id = $1`, id).Scan(&node)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("read collection %s: %v", id, err)
	}
	return a, node
}

// TestGossipWithoutTheKey: members without the cluster key, or with another one, announcing a
// valid data node with more free space than any real one, cannot join the control plane's
// gossip, never appear in its registry or its PostgreSQL mirror, and never receive a
// collection. The same announcement with the right key is then accepted, which shows the
// refusal came from the key and nothing else.
func TestGossipWithoutTheKey(t *testing.T) {
	s := stack.Start(t, stack.Options{Binaries: bins})
	tenant := s.CreateTenant(t, nil)
	intruders := []struct {
		name string
		key  []byte
	}{
		{"dn-intruder-nokey", nil},
		{"dn-intruder-wrongkey", randomBytes(t, 32)},
	}
	var names []string
	for _, in := range intruders {
		names = append(names, in.name)
		m := startMember(t, in.name, in.key, fakeNodeMeta(t, in.name))
		n, err := m.ml.Join([]string{s.GossipAddr()})
		t.Logf("%s: join contacted %d, err %v", in.name, n, err)
		if n != 0 || err == nil {
			t.Errorf("%s joined the control plane's gossip: contacted %d, err %v", in.name, n, err)
		}
		if got := m.ml.NumMembers(); got != 1 {
			t.Errorf("%s sees %d members, want only itself", in.name, got)
		}
	}
	// Several probe and gossip rounds (0.5 s, 0.1 s) in which a member that slipped in would
	// have been announced to the control plane.
	time.Sleep(3 * time.Second)
	requireUnknown(t, s, names...)

	for range 4 {
		node := placedOn(t, s, tenant)
		if s.Node(node) == nil {
			t.Errorf("a new collection was placed on %q, not on a real data node", node)
		}
	}
	a, node := createHuge(t, s, tenant)
	if a.Code != "NO_CAPACITY" || node != "" {
		t.Errorf("a collection only the intruders could hold: answered %s, placed on %q; want NO_CAPACITY and no row", a, node)
	}

	// The control: the same kind of announcement with the right key joins and wins placement.
	ok := startMember(t, "dn-keyholder", gossipKey(t, s), fakeNodeMeta(t, "dn-keyholder"))
	if n, err := ok.ml.Join([]string{s.GossipAddr()}); n != 1 || err != nil {
		t.Fatalf("a member with the key could not join: contacted %d, %v", n, err)
	}
	waitUntil(t, 10*time.Second, "dn-keyholder alive in dataNodes", func() bool { return nodeStates(t, s)["dn-keyholder"] == "alive" })
	if a, node := createHuge(t, s, tenant); node != "dn-keyholder" {
		t.Errorf("with the key, the fake node should hold the huge collection: answered %s, placed on %q", a, node)
	}
	requireUnknown(t, s, names...)
}

// TestGossipGarbageMetadata: a member with the key but garbage metadata (random bytes, a
// truncated encoding, an unknown format version, again and again) is a member but never a data
// node; the control plane keeps working and warns about it exactly once.
func TestGossipGarbageMetadata(t *testing.T) {
	s := stack.Start(t, stack.Options{Binaries: bins})
	tenant := s.CreateTenant(t, nil)
	const name = "dn-garbage"
	valid := fakeNodeMeta(t, name)
	wrongVersion := append([]byte{2}, valid[1:]...)
	garbage := [][]byte{
		randomBytes(t, 200),
		valid[:len(valid)/2],
		wrongVersion,
		[]byte{},
		append([]byte{1}, randomBytes(t, 300)...),
		valid[:len(valid)-1],
		randomBytes(t, nodemeta.MaxSize),
	}

	m := startMember(t, name, gossipKey(t, s), garbage[0])
	if n, err := m.ml.Join([]string{s.GossipAddr()}); n != 1 || err != nil {
		t.Fatalf("join with the key: contacted %d, %v", n, err)
	}
	// It sees the control plane and both data nodes: it is in the cluster for real.
	waitUntil(t, 10*time.Second, "the garbage member sees the whole cluster", func() bool { return m.ml.NumMembers() == 2+len(s.Nodes) })
	for round := range 3 {
		for _, g := range garbage[1:] {
			m.announce(t, g)
			time.Sleep(250 * time.Millisecond)
		}
		m.announce(t, append([]byte(nil), randomBytes(t, 64+round)...))
		time.Sleep(250 * time.Millisecond)
	}
	// Let gossip and a push/pull settle: any late copy of an update would log now.
	time.Sleep(3 * time.Second)

	requireUnknown(t, s, name)
	for range 3 {
		if node := placedOn(t, s, tenant); s.Node(node) == nil {
			t.Errorf("a new collection was placed on %q, not on a real data node", node)
		}
	}
	if a, node := createHuge(t, s, tenant); a.Code != "NO_CAPACITY" || node != "" {
		t.Errorf("huge collection: answered %s, placed on %q; want NO_CAPACITY", a, node)
	}
	resp, err := http.Get(s.URL + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("control plane /readyz answered %d after the garbage", resp.StatusCode)
	}

	warnings := warningsAbout(t, s.ControlPlane.LogPath, name)
	t.Logf("%d garbage announcements; the control plane warned %d times about %s: %q", 1+3*len(garbage), len(warnings), name, warnings)
	if len(warnings) != 1 {
		t.Errorf("the control plane warned %d times about %s, want exactly once", len(warnings), name)
	} else if !strings.Contains(warnings[0], "metadata") {
		t.Errorf("the warning does not say the metadata is the problem: %s", warnings[0])
	}

	// Once the member announces valid metadata it is a data node: the refusal above was about
	// the metadata, and the channel carried every update.
	m.announce(t, valid)
	waitUntil(t, 10*time.Second, name+" alive in dataNodes", func() bool { return nodeStates(t, s)[name] == "alive" })
	waitUntil(t, 10*time.Second, name+" mirrored", func() bool { return mirrored(t, s, name) })
}

// warningsAbout returns the control plane's log records at WARN or above that mention member.
func warningsAbout(t *testing.T, logPath, member string) []string {
	t.Helper()
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatalf("open the control plane's log: %v", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var rec struct{ Level string }
		if json.Unmarshal([]byte(line), &rec) != nil {
			if strings.Contains(line, member) {
				t.Errorf("a log line that is not a JSON record mentions %s: %s", member, line)
			}
			continue
		}
		if (rec.Level == "WARN" || rec.Level == "ERROR") && strings.Contains(line, member) {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read the control plane's log: %v", err)
	}
	return out
}

// waitUntil polls cond every 100 ms until it holds, failing the test after limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s", what, limit)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

package gossip

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"backuprepo/controlplane/postgres"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
	"backuprepo/shared/nodemeta"
)

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(substrs ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, line := range strings.Split(b.buf.String(), "\n") {
		all := true
		for _, s := range substrs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo})), b
}

func startCluster(t *testing.T, name string, key []byte, db *postgres.DB, grace time.Duration) (*Cluster, *logBuffer) {
	t.Helper()
	logger, logs := newLogger()
	c, err := New(Config{Name: name, BindAddr: "127.0.0.1", Key: key, Logger: logger, DB: db, SeedGrace: grace,
		Meta: nodemeta.Meta{Role: nodemeta.RoleControlPlane, State: shared.NodeAlive, PublicURL: "http://127.0.0.1:8080"}})
	if err != nil {
		t.Fatalf("gossip.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return c, logs
}

// member is a plain memberlist member announcing whatever bytes the test gives it, standing in
// for a data node (the real announcer lives in the datanode module).
type member struct {
	ml   *memberlist.Memberlist
	mu   sync.Mutex
	meta []byte
}

func (m *member) NodeMeta(int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.meta
}
func (*member) NotifyMsg([]byte)                {}
func (*member) GetBroadcasts(int, int) [][]byte { return nil }
func (*member) LocalState(bool) []byte          { return nil }
func (*member) MergeRemoteState([]byte, bool)   {}

func startMember(t *testing.T, name string, key []byte, meta []byte) *member {
	t.Helper()
	conf := memberlistConfig(name, "127.0.0.1", 0, "", 0, key, nodemeta.DefaultTiming(), slog.New(slog.DiscardHandler))
	m := &member{meta: meta}
	conf.Delegate = m
	ml, err := memberlist.Create(conf)
	if err != nil {
		t.Fatalf("start member %s: %v", name, err)
	}
	m.ml = ml
	t.Cleanup(func() { _ = ml.Shutdown() })
	return m
}

func (m *member) join(t *testing.T, addr string) {
	t.Helper()
	if n, err := m.ml.Join([]string{addr}); n != 1 || err != nil {
		t.Fatalf("join %s: contacted %d, %v", addr, n, err)
	}
}

func (m *member) announce(t *testing.T, meta []byte) {
	t.Helper()
	m.mu.Lock()
	m.meta = meta
	m.mu.Unlock()
	if err := m.ml.UpdateNode(2 * time.Second); err != nil {
		t.Fatalf("UpdateNode: %v", err)
	}
}

func encode(t *testing.T, m nodemeta.Meta) []byte {
	t.Helper()
	b, err := nodemeta.Encode(m)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

func dnMeta(name string, free int64) nodemeta.Meta {
	return nodemeta.Meta{Role: nodemeta.RoleDataNode, Name: name, PublicURL: "http://127.0.0.1:8081", Zone: "z1",
		State: shared.NodeAlive, Version: "test"}.WithDisks([]shared.Disk{{Path: "/d1", Total: 1000, Free: free}})
}

// waitFor polls cond until it holds or timeout passes, and returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func nodeIs(c *Cluster, name string, state shared.NodeState, free int64) func() bool {
	return func() bool {
		n, ok := c.Node(name)
		return ok && n.State == state && (free < 0 || n.FreeBytes() == free)
	}
}

func TestDataNodeAppearsAndUpdatesPropagate(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	c, _ := startCluster(t, "cp-1", key, nil, 0)
	dn := startMember(t, "dn-1", key, encode(t, dnMeta("dn-1", 500)))
	dn.join(t, c.Addr())

	waitFor(t, 2*time.Second, "dn-1 in the registry", nodeIs(c, "dn-1", shared.NodeAlive, 500))
	got, _ := c.Node("dn-1")
	if got.PublicURL != "http://127.0.0.1:8081" || got.Zone != "z1" || got.SoftwareVersion != "test" ||
		len(got.Disks) != 1 || got.Disks[0] != (shared.Disk{Path: "/d1", Total: 1000, Free: 500}) || got.LastSeen.IsZero() {
		t.Fatalf("registry entry = %+v", got)
	}
	if nodes := c.Nodes(); len(nodes) != 1 {
		t.Fatalf("Nodes() = %+v; the control plane itself is not a data node", nodes)
	}

	for i, free := range []int64{480, 300, 299, 900, 10} {
		dn.announce(t, encode(t, dnMeta("dn-1", free)))
		took := waitFor(t, 2*time.Second, fmt.Sprintf("update %d", i), nodeIs(c, "dn-1", shared.NodeAlive, free))
		if took > time.Second {
			t.Errorf("update %d took %v to reach the registry, want <= 1s", i, took)
		}
	}

	draining := dnMeta("dn-1", 10)
	draining.State = shared.NodeDraining
	dn.announce(t, encode(t, draining))
	waitFor(t, 2*time.Second, "draining state", nodeIs(c, "dn-1", shared.NodeDraining, 10))
}

func TestMemberWithoutKeyCannotJoin(t *testing.T) {
	t.Parallel()
	c, _ := startCluster(t, "cp-1", newKey(t), nil, 0)
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"dn-nokey", nil}, {"dn-wrongkey", newKey(t)}} {
		m := startMember(t, tc.name, tc.key, encode(t, dnMeta(tc.name, 500)))
		if n, err := m.ml.Join([]string{c.Addr()}); n != 0 || err == nil {
			t.Errorf("%s joined: contacted %d, err %v", tc.name, n, err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if nodes := c.Nodes(); len(nodes) != 0 {
		t.Fatalf("registry holds %+v; members without the key must not reach it", nodes)
	}
	if n := c.Members(); n != 1 {
		t.Fatalf("memberlist sees %d members, want only itself", n)
	}
}

func TestInvalidMetadataIgnoredAndLoggedOnce(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	c, logs := startCluster(t, "cp-1", key, nil, 0)
	const msg = "ignoring gossip member with invalid metadata"
	bad := startMember(t, "dn-bad", key, []byte("\x01{garbage"))
	bad.join(t, c.Addr())
	waitFor(t, 2*time.Second, "first complaint", func() bool { return logs.count(msg, "member=dn-bad") == 1 })

	for range 3 {
		bad.announce(t, []byte("\x01{garbage"))
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if n := logs.count(msg, "member=dn-bad"); n != 1 {
		t.Fatalf("the same invalid metadata was logged %d times, want once", n)
	}
	if len(c.Nodes()) != 0 {
		t.Fatalf("registry holds %+v", c.Nodes())
	}

	// A different problem (metadata naming another node) is no reason for another line: a
	// member cycling through garbage would otherwise fill the log.
	bad.announce(t, encode(t, dnMeta("dn-other", 500)))
	bad.announce(t, []byte("\x02{other garbage"))
	time.Sleep(700 * time.Millisecond)
	if n := logs.count(msg, "member=dn-bad"); n != 1 {
		t.Fatalf("invalid metadata of one member was logged %d times, want once", n)
	}
	if _, ok := c.Node("dn-other"); ok {
		t.Fatal("a member could announce itself under another node's name")
	}

	// A control-plane replica is a member but not a data node.
	cp2 := startMember(t, "cp-2", key, encode(t, nodemeta.Meta{Role: nodemeta.RoleControlPlane, Name: "cp-2", State: shared.NodeAlive}))
	cp2.join(t, c.Addr())

	bad.announce(t, encode(t, dnMeta("dn-bad", 700)))
	waitFor(t, 2*time.Second, "valid metadata accepted", nodeIs(c, "dn-bad", shared.NodeAlive, 700))
	waitFor(t, 2*time.Second, "cp-2 seen", func() bool { return c.Members() == 3 })
	if nodes := c.Nodes(); len(nodes) != 1 {
		t.Fatalf("Nodes() = %+v, want only dn-bad", nodes)
	}
	// Garbage after valid metadata is news again: one more line.
	bad.announce(t, []byte("\x01{garbage"))
	waitFor(t, 2*time.Second, "second complaint", func() bool { return logs.count(msg, "member=dn-bad") == 2 })
	if n := logs.count(msg); n != 2 {
		t.Fatalf("%d complaints in total, want 2", n)
	}
}

func TestDeadAndLeft(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	c, _ := startCluster(t, "cp-1", key, nil, 0)
	crash := startMember(t, "dn-crash", key, encode(t, dnMeta("dn-crash", 500)))
	crash.join(t, c.Addr())
	leave := startMember(t, "dn-leave", key, encode(t, dnMeta("dn-leave", 500)))
	leave.join(t, c.Addr())
	waitFor(t, 2*time.Second, "both alive", func() bool {
		return nodeIs(c, "dn-crash", shared.NodeAlive, 500)() && nodeIs(c, "dn-leave", shared.NodeAlive, 500)()
	})
	before, _ := c.Node("dn-crash")

	// A crash: the process stops answering without saying goodbye.
	if err := crash.ml.Shutdown(); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 10*time.Second, "dn-crash dead", nodeIs(c, "dn-crash", shared.NodeDead, -1))
	t.Logf("crashed node marked dead after %v", took)
	if took > 6*time.Second {
		t.Errorf("crashed node marked dead after %v, want <= 6s", took)
	}
	// A live node is seen now; a dead one keeps the time its death was noticed.
	after, _ := c.Node("dn-crash")
	if after.LastSeen.Before(before.LastSeen) || after.LastSeen.After(time.Now()) {
		t.Errorf("LastSeen of the dead node = %v, want between %v and now", after.LastSeen, before.LastSeen)
	}
	time.Sleep(50 * time.Millisecond)
	if again, _ := c.Node("dn-crash"); !again.LastSeen.Equal(after.LastSeen) {
		t.Errorf("LastSeen of a dead node moved from %v to %v", after.LastSeen, again.LastSeen)
	}

	// A graceful leave: the node says so in its metadata, then leaves.
	leaving := dnMeta("dn-leave", 500)
	leaving.State = shared.NodeLeft
	leave.announce(t, encode(t, leaving))
	if err := leave.ml.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "dn-leave left", nodeIs(c, "dn-leave", shared.NodeLeft, 500))
	if err := leave.ml.Shutdown(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if n, _ := c.Node("dn-leave"); n.State != shared.NodeLeft {
		t.Errorf("a node that left is now %s", n.State)
	}
}

func TestMirrorAndSeedFromPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	key := newKey(t)
	// A node another replica saw before; it is nowhere in gossip now.
	ghostSeen := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	if err := db.UpsertDataNode(ctx, shared.DataNode{Name: "dn-ghost", PublicURL: "http://ghost", State: shared.NodeAlive, LastSeen: ghostSeen}); err != nil {
		t.Fatal(err)
	}
	c, _ := startCluster(t, "cp-1", key, db, time.Second)
	if n, ok := c.Node("dn-ghost"); !ok || n.State != shared.NodeSuspect {
		t.Fatalf("seeded node = %+v, %v; want suspect", n, ok)
	}
	waitFor(t, 3*time.Second, "unconfirmed seeded node dead", nodeIs(c, "dn-ghost", shared.NodeDead, -1))

	dn := startMember(t, "dn-1", key, encode(t, dnMeta("dn-1", 500)))
	dn.join(t, c.Addr())
	row := func(name string) (postgres.DataNodeRecord, bool) {
		rows, err := db.DataNodes(ctx)
		if err != nil {
			t.Fatalf("DataNodes: %v", err)
		}
		for _, r := range rows {
			if r.Node.Name == name {
				return r, true
			}
		}
		return postgres.DataNodeRecord{}, false
	}
	waitFor(t, 3*time.Second, "dn-1 row alive", func() bool {
		r, ok := row("dn-1")
		return ok && r.Node.State == shared.NodeAlive && r.Node.FreeBytes() == 500 && r.Node.PublicURL == "http://127.0.0.1:8081"
	})
	dn.announce(t, encode(t, dnMeta("dn-1", 200)))
	waitFor(t, 3*time.Second, "dn-1 row updated", func() bool { r, _ := row("dn-1"); return r.Node.FreeBytes() == 200 })
	if err := dn.ml.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "dn-1 row dead", func() bool { r, _ := row("dn-1"); return r.Node.State == shared.NodeDead })

	// The seeded state is this replica's guess, never written back.
	if r, _ := row("dn-ghost"); r.Node.State != shared.NodeAlive || !r.Node.LastSeen.Equal(ghostSeen) {
		t.Fatalf("ghost row changed to %+v", r.Node)
	}
	// Members without the key never show up in the table.
	stranger := startMember(t, "dn-stranger", newKey(t), encode(t, dnMeta("dn-stranger", 500)))
	_, _ = stranger.ml.Join([]string{c.Addr()})
	time.Sleep(time.Second)
	if _, ok := row("dn-stranger"); ok {
		t.Fatal("a member without the key was mirrored")
	}

	// A second replica starting now sees dn-1 as suspect, not as missing.
	c2, _ := startCluster(t, "cp-2", key, db, time.Minute)
	if n, ok := c2.Node("dn-1"); !ok || n.State != shared.NodeSuspect || n.FreeBytes() != 200 {
		t.Fatalf("second replica's view of dn-1 = %+v, %v", n, ok)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	good := Config{Name: "cp-1", BindAddr: "127.0.0.1", Key: make([]byte, 16),
		Meta: nodemeta.Meta{Role: nodemeta.RoleControlPlane, State: shared.NodeAlive}}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no key", func(c *Config) { c.Key = nil }, "key must be 16, 24 or 32 bytes"},
		{"short key", func(c *Config) { c.Key = make([]byte, 15) }, "key must be 16, 24 or 32 bytes"},
		{"no name", func(c *Config) { c.Name = "" }, "node name is required"},
		{"data node role", func(c *Config) { c.Meta.Role = nodemeta.RoleDataNode }, "want \"controlplane\""},
		{"name mismatch", func(c *Config) { c.Meta.Name = "other" }, "differs from node name"},
		{"bad meta", func(c *Config) { c.Meta.State = shared.NodeDead }, "announced state"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := good
			tc.edit(&cfg)
			c, err := New(cfg)
			if err == nil {
				_ = c.Shutdown(context.Background())
				t.Fatal("New accepted a bad config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want it to mention %q", err, tc.want)
			}
		})
	}
}

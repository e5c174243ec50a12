package admin_test

import (
	"context"
	"crypto/rand"
	"io"
	"time"

	"github.com/hashicorp/memberlist"

	"backuprepo/controlplane/gossip"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
	"backuprepo/shared/nodemeta"
)

// announcer is a bare memberlist member announcing data-node metadata, standing in for a data
// node process (which lives in another module) on a real socket.
type announcer []byte

func (a announcer) NodeMeta(int) []byte           { return a }
func (announcer) NotifyMsg([]byte)                {}
func (announcer) GetBroadcasts(int, int) [][]byte { return nil }
func (announcer) LocalState(bool) []byte          { return nil }
func (announcer) MergeRemoteState([]byte, bool)   {}

// nodeView starts the control plane's real gossip cluster on 127.0.0.1 with a data node member
// announcing n, and waits until the node is in the registry and mirrored into data_nodes.
func (e *env) nodeView(n shared.DataNode) *gossip.Cluster {
	t := e.t
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	c, err := gossip.New(gossip.Config{Name: pgtest.RandomName("cp-"), BindAddr: "127.0.0.1", Key: key, DB: e.db,
		Meta: nodemeta.Meta{Role: nodemeta.RoleControlPlane, State: shared.NodeAlive, PublicURL: "http://127.0.0.1:8080"}})
	if err != nil {
		t.Fatalf("start gossip: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Shutdown(ctx)
	})
	meta, err := nodemeta.Encode(nodemeta.Meta{Role: nodemeta.RoleDataNode, Name: n.Name, PublicURL: n.PublicURL,
		Zone: n.Zone, State: n.State, Version: "test"}.WithDisks(n.Disks))
	if err != nil {
		t.Fatal(err)
	}
	conf := memberlist.DefaultLANConfig()
	conf.Name, conf.BindAddr, conf.BindPort, conf.AdvertisePort = n.Name, "127.0.0.1", 0, 0
	conf.SecretKey = key
	conf.Delegate = announcer(meta)
	conf.LogOutput = io.Discard
	ml, err := memberlist.Create(conf)
	if err != nil {
		t.Fatalf("start data node member: %v", err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	if _, err := ml.Join([]string{c.Addr()}); err != nil {
		t.Fatalf("join: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		live, ok := c.Node(n.Name)
		recs, err := e.db.DataNodes(context.Background())
		if ok && live.State == shared.NodeAlive && err == nil && len(recs) == 1 {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("data node %s not seen by gossip (%v) or not mirrored (%d rows, %v)", n.Name, ok, len(recs), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

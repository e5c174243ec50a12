package gossip

import (
	"testing"
	"time"

	"backuprepo/shared"
)

func TestRegistryLastSeen(t *testing.T) {
	t.Parallel()
	r := newRegistry()
	long := time.Now().Add(-time.Hour)
	r.put(shared.DataNode{Name: "up", State: shared.NodeAlive, LastSeen: long})
	r.put(shared.DataNode{Name: "draining", State: shared.NodeDraining, LastSeen: long})
	r.put(shared.DataNode{Name: "down", State: shared.NodeDead, LastSeen: long})
	for _, n := range r.Nodes() {
		live := n.State != shared.NodeDead
		if fresh := time.Since(n.LastSeen) < time.Minute; fresh != live {
			t.Errorf("%s (%s): LastSeen %v; a live node is seen now, a dead one when it was last alive", n.Name, n.State, n.LastSeen)
		}
	}
	if _, ok := r.Node("nobody"); ok {
		t.Error("unknown node found")
	}
}

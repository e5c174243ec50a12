package gossip

import (
	"slices"
	"strings"
	"sync"
	"time"

	"backuprepo/shared"
)

// Registry is the control plane's current view of the data nodes. It is safe for concurrent
// use; only the Cluster's event goroutine writes to it.
type Registry struct {
	mu    sync.RWMutex
	nodes map[string]shared.DataNode
}

func newRegistry() *Registry { return &Registry{nodes: map[string]shared.DataNode{}} }

// Nodes returns every known data node, sorted by name.
func (r *Registry) Nodes() []shared.DataNode {
	r.mu.RLock()
	out := make([]shared.DataNode, 0, len(r.nodes))
	now := time.Now()
	for _, n := range r.nodes {
		out = append(out, view(n, now))
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b shared.DataNode) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Node returns one data node.
func (r *Registry) Node(name string) (shared.DataNode, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n, ok := r.nodes[name]
	if !ok {
		return shared.DataNode{}, false
	}
	return view(n, time.Now()), true
}

// view is what callers get: a copy, in which a live node is seen now. memberlist probes live
// members every ProbeInterval and only events are recorded, so the stored time is that of the
// last change, not of the last contact.
func view(n shared.DataNode, now time.Time) shared.DataNode {
	n = clone(n)
	if n.State == shared.NodeAlive || n.State == shared.NodeDraining {
		n.LastSeen = now
	}
	return n
}

func (r *Registry) put(n shared.DataNode) {
	r.mu.Lock()
	r.nodes[n.Name] = clone(n)
	r.mu.Unlock()
}

// clone copies the disks so that callers can never change the registry's own slice.
func clone(n shared.DataNode) shared.DataNode {
	n.Disks = slices.Clone(n.Disks)
	return n
}

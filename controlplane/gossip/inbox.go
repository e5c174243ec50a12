package gossip

import (
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// observation is the latest news about one member, copied out of memberlist while its lock is
// held (memberlist keeps changing the *Node it hands to delegates).
type observation struct {
	name string
	// gone is set for NotifyLeave, which memberlist sends for a crash and a graceful leave
	// alike (the Node's State field is not maintained in events); the member's last metadata
	// tells the two apart.
	gone bool
	meta []byte
	at   time.Time
	// sawAlive is set when an alive observation of the same member was replaced by this one
	// before the event goroutine read it: a member that joined and died in between still
	// counts as seen alive.
	sawAlive bool
}

// inbox is the event delegate. Instead of queueing every event in a channel that could fill
// up (and then either block memberlist or lose events), it keeps only the latest observation
// per member and wakes the consumer: the delegate never blocks, nothing is dropped, and a burst
// of updates from one member costs one registry update.
type inbox struct {
	mu   sync.Mutex
	obs  map[string]observation
	wake chan struct{}
}

func newInbox() *inbox {
	return &inbox{obs: map[string]observation{}, wake: make(chan struct{}, 1)}
}

func (b *inbox) NotifyJoin(n *memberlist.Node)   { b.put(n, false) }
func (b *inbox) NotifyLeave(n *memberlist.Node)  { b.put(n, true) }
func (b *inbox) NotifyUpdate(n *memberlist.Node) { b.put(n, false) }

func (b *inbox) put(n *memberlist.Node, gone bool) {
	o := observation{name: n.Name, gone: gone, meta: append([]byte(nil), n.Meta...), at: time.Now()}
	b.mu.Lock()
	if prev, ok := b.obs[n.Name]; ok {
		o.sawAlive = prev.sawAlive || !prev.gone
	}
	b.obs[n.Name] = o
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default: // a wake-up is already pending; the consumer will see this observation too
	}
}

// take returns and forgets every pending observation.
func (b *inbox) take() map[string]observation {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.obs) == 0 {
		return nil
	}
	out := b.obs
	b.obs = map[string]observation{}
	return out
}

// nameSet is a set of names with a wake-up channel, the same pattern as inbox, used to hand
// changed nodes to the PostgreSQL mirror without ever blocking the event goroutine.
type nameSet struct {
	mu    sync.Mutex
	names map[string]struct{}
	wake  chan struct{}
}

func newNameSet() *nameSet {
	return &nameSet{names: map[string]struct{}{}, wake: make(chan struct{}, 1)}
}

func (s *nameSet) add(names ...string) {
	s.mu.Lock()
	for _, n := range names {
		s.names[n] = struct{}{}
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *nameSet) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.names))
	for n := range s.names {
		out = append(out, n)
	}
	s.names = map[string]struct{}{}
	return out
}

// Package gossip puts a data node in the memberlist cluster and announces its address, zone,
// state and capacity to the control plane through node metadata.
package gossip

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"backuprepo/shared"
	"backuprepo/shared/nodemeta"
)

// updateTimeout bounds how long an announcement waits for memberlist to retire its broadcast
// (every retransmission done); the broadcast stays queued after that, and a newer announcement
// replaces it in the queue. Waiting longer only delays the next change: with 2 s, changes
// that came while a broadcast was being retired waited for it, and 1 change in 50 took 2 to 9
// s to reach the control plane (bench gossip_capacity_propagation_p99).
const updateTimeout = 10 * time.Millisecond

// Config describes the data node's membership.
type Config struct {
	Name          string // unique in the cluster; Meta.Name must match or be empty
	BindAddr      string
	BindPort      int // 0 picks a free port
	AdvertiseAddr string
	AdvertisePort int      // defaults to the bound port
	Join          []string // host:port of members (control planes) to join; retried in the background
	Key           []byte   // AES key shared by every member: 16, 24 or 32 bytes
	Logger        *slog.Logger
	Meta          nodemeta.Meta   // role datanode
	Timing        nodemeta.Timing // zero value means nodemeta.DefaultTiming()
}

// Announcer is the data node's membership.
type Announcer struct {
	ml     *memberlist.Memberlist
	log    *slog.Logger
	name   string
	mu     sync.Mutex
	last   nodemeta.Meta // the metadata last announced
	meta   []byte        // its encoding, served to memberlist
	closed bool          // set by Shutdown; memberlist must not be used after it
	// wake asks the announce goroutine to call UpdateNode, which memberlist does not allow
	// from two goroutines at once and which blocks until the news is out.
	wake      chan struct{}
	announced chan struct{} // closed when the announce goroutine has stopped
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	once      sync.Once
	err       error
}

// New starts the membership and keeps trying to join cfg.Join in the background until one
// member answers.
func New(cfg Config) (*Announcer, error) {
	if cfg.Name == "" {
		return nil, errors.New("gossip: node name is required")
	}
	switch len(cfg.Key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("gossip: key must be 16, 24 or 32 bytes, got %d", len(cfg.Key))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timing == (nodemeta.Timing{}) {
		cfg.Timing = nodemeta.DefaultTiming()
	}
	a := &Announcer{log: cfg.Logger, name: cfg.Name, wake: make(chan struct{}, 1), announced: make(chan struct{})}
	m, b, err := a.check(cfg.Meta)
	if err != nil {
		return nil, err
	}
	a.last, a.meta = m, b

	conf := memberlist.DefaultLANConfig()
	conf.Name = cfg.Name
	if cfg.BindAddr != "" {
		conf.BindAddr = cfg.BindAddr
	}
	conf.BindPort = cfg.BindPort
	conf.AdvertiseAddr = cfg.AdvertiseAddr
	conf.AdvertisePort = cfg.AdvertisePort
	if cfg.AdvertisePort == 0 {
		conf.AdvertisePort = cfg.BindPort
	}
	conf.SecretKey = cfg.Key
	conf.GossipVerifyIncoming = true
	conf.GossipVerifyOutgoing = true
	t := cfg.Timing
	conf.ProbeInterval = t.ProbeInterval
	conf.ProbeTimeout = t.ProbeTimeout
	conf.SuspicionMult = t.SuspicionMult
	conf.SuspicionMaxTimeoutMult = t.SuspicionMaxTimeoutMult
	conf.GossipInterval = t.GossipInterval
	conf.GossipNodes = t.GossipNodes
	conf.RetransmitMult = t.RetransmitMult
	conf.PushPullInterval = t.PushPullInterval
	conf.TCPTimeout = t.TCPTimeout
	conf.DeadNodeReclaimTime = t.DeadNodeReclaimTime
	conf.LogOutput = nil
	conf.Logger = log.New(nodemeta.NewLogWriter(cfg.Logger), "", 0)
	conf.Delegate = delegate{a}
	ml, err := memberlist.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("gossip: start memberlist: %w", err)
	}
	a.ml = ml

	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() { defer close(a.announced); a.announceLoop(ctx) }()
	if len(cfg.Join) > 0 {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); nodemeta.KeepJoined(ctx, a.ml, cfg.Join, a.log) }()
	}
	return a, nil
}

// check fills in the name, insists on the data-node role and encodes.
func (a *Announcer) check(m nodemeta.Meta) (nodemeta.Meta, []byte, error) {
	if m.Name == "" {
		m.Name = a.name
	}
	if m.Name != a.name {
		return m, nil, fmt.Errorf("gossip: metadata name %q differs from node name %q", m.Name, a.name)
	}
	if m.Role != nodemeta.RoleDataNode {
		return m, nil, fmt.Errorf("gossip: metadata role is %q, want %q", m.Role, nodemeta.RoleDataNode)
	}
	b, err := nodemeta.Encode(m)
	if err != nil {
		return m, nil, fmt.Errorf("gossip: %w", err)
	}
	return m, b, nil
}

// announceLoop is the one goroutine that calls UpdateNode; memberlist asks the delegate for the
// metadata then, so a burst of updates goes out as one announcement of the newest.
func (a *Announcer) announceLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		}
		// A timeout is the usual outcome (see updateTimeout), not a failure: the broadcast
		// stays queued and memberlist keeps sending it.
		_ = a.ml.UpdateNode(updateTimeout)
	}
}

// Update re-announces m when it matters to placement: a disk's free space moved by more than
// 1% of that disk's size since the last announcement, the disks themselves changed, or the
// state, URL, zone or version changed. It reports whether it announced; the announcement
// itself goes out in the background, so Update never blocks. Safe for concurrent use.
func (a *Announcer) Update(m nodemeta.Meta) (bool, error) {
	m, b, err := a.check(m)
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return false, errors.New("gossip: announcer is shut down")
	}
	if !significant(a.last, m) {
		a.mu.Unlock()
		return false, nil
	}
	a.last, a.meta = m, b
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default: // an announcement is already due; it will carry this metadata
	}
	return true, nil
}

// significant reports whether next differs from prev enough to announce.
func significant(prev, next nodemeta.Meta) bool {
	if prev.Role != next.Role || prev.PublicURL != next.PublicURL || prev.Zone != next.Zone ||
		prev.State != next.State || prev.Version != next.Version || len(prev.Disks) != len(next.Disks) {
		return true
	}
	if len(next.Disks) == 0 {
		return prev.Total != next.Total || moved(prev.Free, next.Free, next.Total)
	}
	for i, d := range next.Disks {
		p := prev.Disks[i]
		if p.Path != d.Path || p.Total != d.Total || moved(p.Free, d.Free, d.Total) {
			return true
		}
	}
	return false
}

// moved reports whether free changed by more than 1% of total (diff*100 > total, written so
// that it cannot overflow).
func moved(prev, next, total int64) bool {
	diff := next - prev
	if diff < 0 {
		diff = -diff
	}
	return diff > total/100
}

// Announced returns the metadata last announced.
func (a *Announcer) Announced() nodemeta.Meta {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.last
	m.Disks = append([]shared.Disk(nil), m.Disks...)
	return m
}

// Addr is the host:port other members join this one at.
func (a *Announcer) Addr() string { return a.ml.LocalNode().Address() }

// Members counts the gossip members memberlist considers alive or suspect, itself included.
func (a *Announcer) Members() int { return a.ml.NumMembers() }

// Shutdown announces that the node is leaving (so the control plane shows it as left, not
// dead), leaves the cluster, stops memberlist and waits for the join loop. ctx bounds it, to
// 5 s at most.
func (a *Announcer) Shutdown(ctx context.Context) error {
	a.once.Do(func() {
		a.cancel()
		timeout := 5 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, max(time.Until(dl), 0))
		}
		deadline := time.Now().Add(timeout)
		var errs []error
		select {
		case <-a.announced:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("wait for the announce goroutine: %w", ctx.Err()))
			a.err = errors.Join(errs...)
			return
		}
		a.mu.Lock()
		a.closed = true
		leaving := a.last
		leaving.State = shared.NodeLeft
		b, err := nodemeta.Encode(leaving)
		if err == nil {
			a.last, a.meta = leaving, b
		}
		a.mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("encode leaving metadata: %w", err))
		} else if err := a.ml.UpdateNode(max(time.Until(deadline)/2, time.Millisecond)); err != nil {
			errs = append(errs, fmt.Errorf("announce leaving: %w", err))
		}
		if err := a.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
			errs = append(errs, fmt.Errorf("leave gossip cluster: %w", err))
		}
		if err := a.ml.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("stop memberlist: %w", err))
		}
		done := make(chan struct{})
		go func() { a.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("wait for gossip goroutines: %w", ctx.Err()))
		}
		a.err = errors.Join(errs...)
	})
	return a.err
}

// delegate serves the current metadata to memberlist; it only takes a short lock.
type delegate struct{ a *Announcer }

func (d delegate) NodeMeta(int) []byte {
	d.a.mu.Lock()
	defer d.a.mu.Unlock()
	return d.a.meta
}
func (delegate) NotifyMsg([]byte)                {}
func (delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (delegate) LocalState(bool) []byte          { return nil }
func (delegate) MergeRemoteState([]byte, bool)   {}

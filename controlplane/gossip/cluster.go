// Package gossip puts the control plane in the memberlist cluster and turns membership events
// into a registry of data nodes, mirrored into PostgreSQL's data_nodes table.
package gossip

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
	"backuprepo/shared/nodemeta"
)

// Config describes the control plane's membership.
type Config struct {
	Name          string // unique in the cluster; Meta.Name must match or be empty
	BindAddr      string
	BindPort      int // 0 picks a free port
	AdvertiseAddr string
	AdvertisePort int      // defaults to the bound port
	Join          []string // host:port of members to join; retried in the background
	Key           []byte   // AES key shared by every member: 16, 24 or 32 bytes
	Logger        *slog.Logger
	Meta          nodemeta.Meta   // role controlplane
	Timing        nodemeta.Timing // zero value means nodemeta.DefaultTiming()
	// DB, when set, seeds the registry at start and receives every change the cluster sees.
	DB *postgres.DB
	// SeedGrace is how long a node known from PostgreSQL but not (yet) seen in gossip stays
	// suspect before it is shown as dead. Default 5 s.
	SeedGrace time.Duration
}

// Cluster is the control plane's membership in the gossip cluster.
type Cluster struct {
	ml     *memberlist.Memberlist
	reg    *Registry
	log    *slog.Logger
	db     *postgres.DB
	inbox  *inbox
	dirty  *nameSet
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// New joins (or starts) the cluster. Nodes recorded in PostgreSQL but not yet seen in gossip
// are listed as suspect, and as dead once SeedGrace has passed without news of them, rather
// than left out: a collection placed on a node that is down must answer 503 (node unavailable),
// not 404. Those seeded states are not written back; only what gossip reports is mirrored, so a
// replica that has just started never overwrites what the others saw.
func New(cfg Config) (*Cluster, error) {
	if cfg.Name == "" {
		return nil, errors.New("gossip: node name is required")
	}
	switch len(cfg.Key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("gossip: key must be 16, 24 or 32 bytes, got %d", len(cfg.Key))
	}
	if cfg.Meta.Name == "" {
		cfg.Meta.Name = cfg.Name
	}
	if cfg.Meta.Name != cfg.Name {
		return nil, fmt.Errorf("gossip: metadata name %q differs from node name %q", cfg.Meta.Name, cfg.Name)
	}
	if cfg.Meta.Role != nodemeta.RoleControlPlane {
		return nil, fmt.Errorf("gossip: metadata role is %q, want %q", cfg.Meta.Role, nodemeta.RoleControlPlane)
	}
	meta, err := nodemeta.Encode(cfg.Meta)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timing == (nodemeta.Timing{}) {
		cfg.Timing = nodemeta.DefaultTiming()
	}
	if cfg.SeedGrace <= 0 {
		cfg.SeedGrace = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{reg: newRegistry(), log: cfg.Logger, db: cfg.DB, inbox: newInbox(), dirty: newNameSet(), cancel: cancel}

	seeded := map[string]bool{}
	if cfg.DB != nil {
		rows, err := cfg.DB.DataNodes(ctx)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("gossip: seed registry: %w", err)
		}
		for _, r := range rows {
			n := r.Node
			if n.State != shared.NodeLeft {
				n.State = shared.NodeSuspect
				seeded[n.Name] = true
			}
			c.reg.put(n)
		}
	}

	conf := memberlistConfig(cfg.Name, cfg.BindAddr, cfg.BindPort, cfg.AdvertiseAddr, cfg.AdvertisePort,
		cfg.Key, cfg.Timing, cfg.Logger)
	conf.Delegate = staticMeta(meta)
	conf.Events = c.inbox
	ml, err := memberlist.Create(conf)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("gossip: start memberlist: %w", err)
	}
	c.ml = ml

	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.consume(ctx, seeded, cfg.SeedGrace) }()
	if cfg.DB != nil {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.mirror(ctx) }()
	}
	if len(cfg.Join) > 0 {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); nodemeta.KeepJoined(ctx, ml, cfg.Join, cfg.Logger) }()
	}
	return c, nil
}

// memberlistConfig applies the settings every member of the cluster shares.
func memberlistConfig(name, bindAddr string, bindPort int, advAddr string, advPort int, key []byte,
	t nodemeta.Timing, logger *slog.Logger) *memberlist.Config {
	conf := memberlist.DefaultLANConfig()
	conf.Name = name
	if bindAddr != "" {
		conf.BindAddr = bindAddr
	}
	conf.BindPort = bindPort
	conf.AdvertiseAddr = advAddr
	conf.AdvertisePort = advPort
	if advPort == 0 {
		conf.AdvertisePort = bindPort
	}
	conf.SecretKey = key
	conf.GossipVerifyIncoming = true
	conf.GossipVerifyOutgoing = true
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
	conf.Logger = log.New(nodemeta.NewLogWriter(logger), "", 0)
	return conf
}

// Registry is the live view of the data nodes.
func (c *Cluster) Registry() *Registry { return c.reg }

// Nodes returns every known data node (see Registry.Nodes).
func (c *Cluster) Nodes() []shared.DataNode { return c.reg.Nodes() }

// Node returns one data node (see Registry.Node).
func (c *Cluster) Node(name string) (shared.DataNode, bool) { return c.reg.Node(name) }

// Addr is the host:port other members join this one at.
func (c *Cluster) Addr() string { return c.ml.LocalNode().Address() }

// Members counts the gossip members memberlist currently considers alive or suspect, every
// role included.
func (c *Cluster) Members() int { return c.ml.NumMembers() }

// Shutdown announces a graceful leave (bounded by ctx, 5 s at most), stops memberlist and
// waits for the background goroutines.
func (c *Cluster) Shutdown(ctx context.Context) error {
	c.once.Do(func() {
		c.cancel()
		timeout := 5 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, max(time.Until(dl), 0))
		}
		var errs []error
		if err := c.ml.Leave(timeout); err != nil {
			errs = append(errs, fmt.Errorf("leave gossip cluster: %w", err))
		}
		if err := c.ml.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("stop memberlist: %w", err))
		}
		done := make(chan struct{})
		go func() { c.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("wait for gossip goroutines: %w", ctx.Err()))
		}
		c.err = errors.Join(errs...)
	})
	return c.err
}

// consume is the one goroutine that turns membership news into registry entries.
func (c *Cluster) consume(ctx context.Context, seeded map[string]bool, grace time.Duration) {
	// Members whose invalid metadata was logged: once per member until it announces valid
	// metadata or leaves, whatever the error, so that a member cycling through garbage (each
	// piece failing differently) cannot fill the log.
	badMeta := map[string]bool{}
	graceOver := time.After(grace)
	for {
		select {
		case <-ctx.Done():
			return
		case <-graceOver:
			for name := range seeded {
				if n, ok := c.reg.Node(name); ok && n.State == shared.NodeSuspect {
					n.State = shared.NodeDead
					c.reg.put(n)
				}
			}
			seeded = nil
		case <-c.inbox.wake:
			batch := c.inbox.take()
			names := make([]string, 0, len(batch))
			for name := range batch {
				names = append(names, name)
			}
			sort.Strings(names)
			var changed []string
			for _, name := range names {
				if c.apply(batch[name], badMeta) {
					delete(seeded, name)
					changed = append(changed, name)
				}
			}
			if len(changed) > 0 && c.db != nil {
				c.dirty.add(changed...)
			}
		}
	}
}

// apply records one observation and reports whether the registry changed.
//
// memberlist tells members about joins, updates and leaves only: a suspect member raises no
// event (and reading the state of Members() would race with memberlist), so the registry shows
// a member as alive until memberlist declares it dead, which DefaultTiming bounds to a few
// seconds. Suspect is used for nodes seeded from PostgreSQL and not yet confirmed by gossip.
func (c *Cluster) apply(o observation, badMeta map[string]bool) bool {
	m, err := c.decode(o)
	if !o.gone {
		if err != nil {
			if !badMeta[o.name] {
				badMeta[o.name] = true
				c.log.Warn("ignoring gossip member with invalid metadata", "member", o.name, "err", err)
			}
			return false
		}
		delete(badMeta, o.name)
		if m.Role != nodemeta.RoleDataNode {
			return false
		}
		c.reg.put(dataNode(m, o.at))
		return true
	}
	delete(badMeta, o.name)
	n, ok := c.reg.Node(o.name)
	if !ok {
		if !o.sawAlive || err != nil || m.Role != nodemeta.RoleDataNode {
			return false // never seen alive here: nothing to report about it
		}
		n = dataNode(m, o.at)
	}
	// A member that announced it was leaving has left; any other disappearance is a death.
	// LastSeen becomes the time it was last known alive: the registry shows live nodes as
	// seen now, so the copy read above carries the moment the death was noticed.
	n.State = shared.NodeDead
	if err == nil && m.State == shared.NodeLeft {
		n.State = shared.NodeLeft
	}
	c.reg.put(n)
	return true
}

func (c *Cluster) decode(o observation) (nodemeta.Meta, error) {
	m, err := nodemeta.Decode(o.meta)
	if err != nil {
		return m, err
	}
	if m.Name != o.name {
		return m, fmt.Errorf("%w: metadata names %q but the member is %q", nodemeta.ErrInvalid, m.Name, o.name)
	}
	return m, nil
}

// dataNode turns an announcement into a registry entry. Metadata that had to drop its
// per-disk detail becomes one disk with an empty path holding the totals.
func dataNode(m nodemeta.Meta, at time.Time) shared.DataNode {
	disks := m.Disks
	if len(disks) == 0 && m.Total > 0 {
		disks = []shared.Disk{{Total: m.Total, Free: m.Free}}
	}
	return shared.DataNode{Name: m.Name, PublicURL: m.PublicURL, Zone: m.Zone, Disks: disks,
		State: m.State, LastSeen: at, SoftwareVersion: m.Version}
}

// mirror writes changed nodes to PostgreSQL off the event goroutine; a failed write is
// retried, logged once per outage.
func (c *Cluster) mirror(ctx context.Context) {
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.dirty.wake:
		}
		names := c.dirty.take()
		for i, name := range names {
			n, ok := c.reg.Node(name)
			if !ok {
				continue
			}
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.db.UpsertDataNode(wctx, n)
			cancel()
			if err == nil {
				if failing {
					c.log.Info("data node mirror to PostgreSQL recovered")
					failing = false
				}
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if !failing {
				c.log.Warn("cannot mirror data node to PostgreSQL, retrying", "node", name, "err", err)
				failing = true
			}
			c.dirty.add(names[i:]...)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			break
		}
	}
}

// staticMeta is the control plane's memberlist delegate: it only announces fixed metadata.
type staticMeta []byte

func (m staticMeta) NodeMeta(int) []byte           { return m }
func (staticMeta) NotifyMsg([]byte)                {}
func (staticMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (staticMeta) LocalState(bool) []byte          { return nil }
func (staticMeta) MergeRemoteState([]byte, bool)   {}

package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"backuprepo/datanode/disk"
	"backuprepo/datanode/gossip"
	"backuprepo/shared"
	"backuprepo/shared/config"
	"backuprepo/shared/nodemeta"
)

// announceEvery is how often the capacity is compared with the last announcement. The
// announcer only gossips when free space moved by more than 1%, so a check costs one statfs;
// checking often keeps a change's way to the control plane under a second (announceEvery +
// disk.capacityTTL + a gossip round or two; see docs/BENCHMARKS.md).
const announceEvery = 200 * time.Millisecond

// clusterMember is the node's gossip membership with its capacity loop.
type clusterMember struct {
	ann  *gossip.Announcer
	stop context.CancelFunc
	done sync.WaitGroup
	log  *slog.Logger
}

func joinCluster(ctx context.Context, s settings, store *disk.Store, logger *slog.Logger) (*clusterMember, error) {
	bindHost, bindPort, err := config.HostPort("gossip-bind", s.GossipBind)
	if err != nil {
		return nil, err
	}
	advHost, advPort, err := config.HostPort("gossip-advertise", s.GossipAdvertise)
	if err != nil {
		return nil, err
	}
	meta := nodemeta.Meta{
		Role:      nodemeta.RoleDataNode,
		Name:      s.NodeName,
		PublicURL: s.PublicURL,
		Zone:      s.Zone,
		State:     shared.NodeAlive,
		Version:   version,
	}
	ann, err := gossip.New(gossip.Config{
		Name:          s.NodeName,
		BindAddr:      bindHost,
		BindPort:      bindPort,
		AdvertiseAddr: advHost,
		AdvertisePort: advPort,
		Join:          s.GossipJoin,
		Key:           s.GossipKey,
		Logger:        logger,
		Meta:          meta.WithDisks(usable(store.Capacity(), s.Reserve)),
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &clusterMember{ann: ann, stop: cancel, log: logger}
	c.done.Go(func() {
		t := time.NewTicker(announceEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if _, err := ann.Update(meta.WithDisks(usable(store.Capacity(), s.Reserve))); err != nil {
				logger.Warn("announce capacity", "err", err)
			}
		}
	})
	return c, nil
}

// leave stops the capacity loop and leaves the cluster, announcing the node as left.
func (c *clusterMember) leave() {
	c.stop()
	c.done.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ann.Shutdown(ctx); err != nil {
		c.log.Warn("leave gossip cluster", "err", err)
	}
}

// usable is the capacity the cluster plans with: each disk's free space minus the reserve the
// node keeps free, so placement never counts on bytes the node would refuse.
func usable(disks []shared.Disk, reserve int64) []shared.Disk {
	out := make([]shared.Disk, len(disks))
	for i, d := range disks {
		d.Free = max(d.Free-reserve, 0)
		out[i] = d
	}
	return out
}

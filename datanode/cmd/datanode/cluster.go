package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"backuprepo/datanode/disk"
	"backuprepo/datanode/gossip"
	"backuprepo/shared"
	"backuprepo/shared/nodemeta"
)

// announceEvery is how often the capacity is compared with the last announcement; the
// announcer only gossips when free space moved by more than 1%, so this costs a statfs.
const announceEvery = 5 * time.Second

// clusterMember is the node's gossip membership with its capacity loop.
type clusterMember struct {
	ann  *gossip.Announcer
	stop context.CancelFunc
	done sync.WaitGroup
	log  *slog.Logger
}

func joinCluster(ctx context.Context, s settings, store *disk.Store, logger *slog.Logger) (*clusterMember, error) {
	bindHost, bindPort, err := hostPort(s.GossipBind)
	if err != nil {
		return nil, fmt.Errorf("gossip bind address: %w", err)
	}
	var advHost string
	var advPort int
	if s.GossipAdvertise != "" {
		if advHost, advPort, err = hostPort(s.GossipAdvertise); err != nil {
			return nil, fmt.Errorf("gossip advertise address: %w", err)
		}
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
		Meta:          meta.WithDisks(store.Capacity()),
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
			if _, err := ann.Update(meta.WithDisks(store.Capacity())); err != nil {
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

func hostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return h, port, nil
}

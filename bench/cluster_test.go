package bench

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

// nodeView is one data node as the control plane's GraphQL shows it.
type nodeView struct {
	State string
	Free  int64 // summed over the disks
}

type snapshot struct {
	at    time.Time // when the answer arrived
	nodes map[string]nodeView
}

// registryPoller reads the control plane's view of the data nodes every interval; one poller
// serves every waiter, so that watching ten nodes costs the control plane 50 small queries a
// second, not 500.
type registryPoller struct {
	snap atomic.Pointer[snapshot]
	errs atomic.Int64
}

func pollRegistry(ctx context.Context, s *stack.Stack, every time.Duration) *registryPoller {
	p := &registryPoller{}
	go func() {
		for ctx.Err() == nil {
			var out struct {
				DataNodes []struct {
					Name, State string
					Disks       []struct{ Free int64 }
				}
			}
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := s.GraphQL(qctx, s.AdminToken, `{ dataNodes { name state disks { free } } }`, nil, &out)
			cancel()
			if err != nil {
				p.errs.Add(1)
			} else {
				sn := &snapshot{at: time.Now(), nodes: make(map[string]nodeView, len(out.DataNodes))}
				for _, d := range out.DataNodes {
					v := nodeView{State: d.State}
					for _, disk := range d.Disks {
						v.Free += disk.Free
					}
					sn.nodes[d.Name] = v
				}
				p.snap.Store(sn)
			}
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}()
	return p
}

// waitFor returns the arrival time of the first answer received after since for which ok
// holds, or false when none came within timeout.
func (p *registryPoller) waitFor(since time.Time, timeout time.Duration, ok func(map[string]nodeView) bool) (time.Time, bool) {
	deadline := since.Add(timeout)
	for time.Now().Before(deadline) {
		if sn := p.snap.Load(); sn != nil && sn.at.After(since) && ok(sn.nodes) {
			return sn.at, true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Time{}, false
}

// freeBytes is what a data node would announce for dir: statfs's available blocks.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

func cluster(t *testing.T, sz sizes, bins stack.Binaries, rep *reporter) {
	// Each node gets a small filesystem of its own, so that a quick write moves its free
	// space by well over the 1% that triggers an announcement, and no other node's.
	const fsSize = 64 * mib
	ballastSize := int64(2 * mib) // 3% of fsSize
	opts := make([]stack.NodeOptions, sz.clusterNodes)
	ownFS := true
	for i := range opts {
		dir, err := stack.OwnFilesystem(t, fsSize)
		if err != nil {
			t.Logf("%v; every node shares /dev/shm and changes run one at a time", err)
			ownFS = false
			break
		}
		opts[i].DiskParent = dir
	}
	if !ownFS {
		shm, err := os.MkdirTemp("/dev/shm", "bench-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(shm) })
		var st syscall.Statfs_t
		if err := syscall.Statfs(shm, &st); err != nil {
			t.Fatal(err)
		}
		ballastSize = int64(st.Blocks)*int64(st.Bsize)/100 + 8*mib
		for i := range opts {
			opts[i].DiskParent = shm
		}
	}

	s := stack.Start(t, stack.Options{Binaries: bins, DataNodes: sz.clusterNodes, Nodes: opts, LogLevel: "warn"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	poller := pollRegistry(ctx, s, 20*time.Millisecond)

	measure(t, "gossip_capacity_propagation_p99", func(t *testing.T) {
		benchGossip(t, s, poller, sz, ballastSize, ownFS, rep)
	})
	measure(t, "node_death_detection", func(t *testing.T) { benchDeath(t, s, poller, sz, rep) })
	if n := poller.errs.Load(); n > 0 {
		t.Logf("%d registry polls failed", n)
	}
}

func benchGossip(t *testing.T, s *stack.Stack, poller *registryPoller, sz sizes, ballastSize int64, ownFS bool, rep *reporter) {
	const timeout = 20 * time.Second
	perNode := (sz.gossipChanges + len(s.Nodes) - 1) / len(s.Nodes)
	var mu sync.Mutex
	var lat []float64
	var timeouts int
	var serial sync.Mutex // held across a change when the nodes share one filesystem
	var wg sync.WaitGroup
	for _, n := range s.Nodes {
		wg.Go(func() {
			disk := n.Disks[0]
			ballast := filepath.Join(filepath.Dir(disk), "ballast-"+n.Name)
			defer os.Remove(ballast)
			for k := range perNode {
				// A random pause, so that changes do not fall at one phase of the node's
				// announcement schedule.
				time.Sleep(time.Duration(rand.Int64N(int64(500 * time.Millisecond))))
				if !ownFS {
					serial.Lock()
				}
				var err error
				if k%2 == 0 {
					err = os.WriteFile(ballast, make([]byte, ballastSize), 0o600)
				} else {
					err = os.Remove(ballast)
				}
				changed := time.Now()
				var want int64
				if err == nil {
					want, err = freeBytes(disk)
				}
				if err != nil {
					if !ownFS {
						serial.Unlock()
					}
					t.Error(err)
					return
				}
				at, ok := poller.waitFor(changed, timeout, func(nodes map[string]nodeView) bool {
					d := nodes[n.Name].Free - want
					return d <= ballastSize/2 && d >= -ballastSize/2
				})
				if !ownFS {
					serial.Unlock()
				}
				mu.Lock()
				if ok {
					lat = append(lat, at.Sub(changed).Seconds())
				} else {
					timeouts++
					lat = append(lat, timeout.Seconds())
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if timeouts > 0 {
		t.Errorf("%d of %d capacity changes never showed within %s", timeouts, len(lat), timeout)
	}
	p99 := Percentile(lat, 99)
	t.Logf("%d capacity changes on %d nodes (%d MiB each): p50 %.3f s, p90 %.3f s, p99 %.3f s, max %.3f s",
		len(lat), len(s.Nodes), ballastSize/mib, Percentile(lat, 50), Percentile(lat, 90), p99, Percentile(lat, 100))
	rep.add(t, Result{"gossip_capacity_propagation_p99", p99, "<=", 1, "s"})
}

func benchDeath(t *testing.T, s *stack.Stack, poller *registryPoller, sz sizes, rep *reporter) {
	var secs []float64
	for r := range sz.deathRounds {
		victim := s.Nodes[len(s.Nodes)-1-r]
		if _, ok := poller.waitFor(time.Now(), 30*time.Second, func(nodes map[string]nodeView) bool {
			return nodes[victim.Name].State == "alive"
		}); !ok {
			t.Fatalf("%s is not alive before the kill", victim.Name)
		}
		killed := time.Now()
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
		at, ok := poller.waitFor(killed, time.Minute, func(nodes map[string]nodeView) bool {
			return nodes[victim.Name].State == "dead"
		})
		if !ok {
			t.Fatalf("%s not marked dead within a minute of SIGKILL", victim.Name)
		}
		secs = append(secs, at.Sub(killed).Seconds())
	}
	t.Logf("SIGKILL to dead in the control plane's view: %.3f s", secs)
	// The worst of the kills: the target is a bound, not an average.
	rep.add(t, Result{"node_death_detection", Percentile(secs, 100), "<=", 6, "s"})
}

package httpapi

import (
	"context"
	"crypto/rand"
	"io"
	"log"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"backuprepo/controlplane/gossip"
	"backuprepo/shared"
	"backuprepo/shared/nodemeta"
)

// dataNodeMember is a plain memberlist member announcing data-node metadata, standing in for a
// data node process (whose announcer lives in the datanode module).
type dataNodeMember struct{ meta []byte }

func (m dataNodeMember) NodeMeta(int) []byte           { return m.meta }
func (dataNodeMember) NotifyMsg([]byte)                {}
func (dataNodeMember) GetBroadcasts(int, int) [][]byte { return nil }
func (dataNodeMember) LocalState(bool) []byte          { return nil }
func (dataNodeMember) MergeRemoteState([]byte, bool)   {}

// TestHealthWithGossipCluster runs /health and /metrics against the real gossip registry with
// a real member on 127.0.0.1.
func TestHealthWithGossipCluster(t *testing.T) {
	t.Parallel()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cluster, err := gossip.New(gossip.Config{Name: "cp-test", BindAddr: "127.0.0.1", Key: key, Logger: logger,
		Meta: nodemeta.Meta{Role: nodemeta.RoleControlPlane, State: shared.NodeAlive}})
	if err != nil {
		t.Fatalf("gossip.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = cluster.Shutdown(ctx)
	})

	meta, err := nodemeta.Encode(nodemeta.Meta{Role: nodemeta.RoleDataNode, Name: "dn-1",
		PublicURL: "http://127.0.0.1:8081", State: shared.NodeAlive}.WithDisks(
		[]shared.Disk{{Path: "/srv/d1", Total: 5000, Free: 1234}}))
	if err != nil {
		t.Fatalf("encode metadata: %v", err)
	}
	conf := memberlist.DefaultLocalConfig()
	conf.Name = "dn-1"
	conf.BindAddr = "127.0.0.1"
	conf.BindPort = 0
	conf.SecretKey = key
	conf.Delegate = dataNodeMember{meta: meta}
	conf.LogOutput = nil
	conf.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(conf)
	if err != nil {
		t.Fatalf("start member: %v", err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })

	api := newTestAPI(t, func(c *Config) { c.Cluster = cluster })
	// Before the data node joins, the control plane sees no data node: 503.
	if rec := api.do(t, http.MethodGet, "/health?code="+healthCode, nil); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("health without data nodes = %d, want 503; %s", rec.Code, rec.Body)
	}
	if _, err := ml.Join([]string{cluster.Addr()}); err != nil {
		t.Fatalf("join: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec := api.do(t, http.MethodGet, "/health?code="+healthCode, nil)
		if rec.Code == http.StatusOK {
			golden(t, "health_healthy.json", rec.Body.Bytes())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never became 200 after the data node joined: %s", rec.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	body := api.do(t, http.MethodGet, "/metrics", nil).Body.String()
	for _, want := range []string{
		`br_node_free_bytes{node="dn-1"} 1234`,
		`br_node_total_bytes{node="dn-1"} 5000`,
		`br_cluster_members{state="alive"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"backuprepo/shared"
)

// checkTimeout bounds each dependency check, so a hung dependency makes /health answer 503
// quickly instead of hanging the monitoring system's request.
const checkTimeout = 2 * time.Second

// codeMatches compares a secret from the query string in constant time. Hashing first makes
// the comparison independent of the lengths too. An empty code never matches.
func codeMatches(got, want string) bool {
	if got == "" || want == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// The health answer has the seed's shape; struct field order fixes the key order.
type healthStatus struct {
	Storage  bool `json:"storage"`
	Database bool `json:"database"`
	Redis    bool `json:"redis"`
	Cluster  bool `json:"cluster"`
}

type healthMessages struct {
	Storage  []string `json:"storage"`
	Database []string `json:"database"`
	Redis    []string `json:"redis"`
	Cluster  []string `json:"cluster"`
}

type healthReport struct {
	Status       []healthStatus   `json:"status"`
	Messages     []healthMessages `json:"messages"`
	GlobalStatus bool             `json:"global_status"`
	Ident        []string         `json:"ident"`
}

// pyBool spells booleans the way the seed's ident strings do.
func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// newHealthReport builds the answer from each check's failure messages (none = passed).
func newHealthReport(storage, database, redis, cluster []string) healthReport {
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	st := healthStatus{Storage: len(storage) == 0, Database: len(database) == 0,
		Redis: len(redis) == 0, Cluster: len(cluster) == 0}
	global := st.Storage && st.Database && st.Redis && st.Cluster
	return healthReport{
		Status: []healthStatus{st},
		Messages: []healthMessages{{Storage: nonNil(storage), Database: nonNil(database),
			Redis: nonNil(redis), Cluster: nonNil(cluster)}},
		GlobalStatus: global,
		Ident: []string{
			"global_status=" + pyBool(global),
			"storage=" + pyBool(st.Storage),
			"database=" + pyBool(st.Database),
			"redis=" + pyBool(st.Redis),
			"cluster=" + pyBool(st.Cluster),
		},
	}
}

// health answers GET /health?code= (SPEC §4.3).
func (s *server) health(w http.ResponseWriter, r *http.Request) {
	if !codeMatches(r.URL.Query().Get("code"), s.cfg.HealthCheckCode) {
		refuse(w, shared.CodeForbidden, "missing or wrong health check code")
		return
	}
	var storage, database, redis, cluster []string
	var wg sync.WaitGroup
	wg.Go(func() { storage = storageCheck(s.cfg.Cluster.Nodes()) })
	wg.Go(func() { cluster = clusterCheck(s.cfg.Cluster.Nodes()) })
	wg.Go(func() { database = s.pingDatabase(r.Context()) })
	wg.Go(func() { redis = s.pingRedis(r.Context()) })
	wg.Wait()

	rep := newHealthReport(storage, database, redis, cluster)
	status := http.StatusOK
	if !rep.GlobalStatus {
		status = http.StatusServiceUnavailable
	}
	writeJSONBody(w, status, rep)
}

func (s *server) pingDatabase(ctx context.Context) []string {
	return s.ping(ctx, "database", s.cfg.DB.Ping)
}

func (s *server) pingRedis(ctx context.Context) []string {
	return s.ping(ctx, "redis", func(ctx context.Context) error { return s.cfg.Redis.Ping(ctx).Err() })
}

// ping runs one dependency check with its own timeout. The cause is logged, not returned:
// driver errors can name hosts and users, and the answer goes to monitoring systems.
func (s *server) ping(ctx context.Context, name string, ping func(context.Context) error) []string {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	err := ping(ctx)
	if err == nil {
		return nil
	}
	s.cfg.Logger.Warn("dependency check failed", "dependency", name, "err", err)
	if errors.Is(err, context.DeadlineExceeded) {
		return []string{fmt.Sprintf("%s did not answer within %s", name, checkTimeout)}
	}
	return []string{name + " is unreachable"}
}

// up reports whether gossip considers the node a live member; a draining node is live but
// takes no new collections.
func up(n shared.DataNode) bool {
	return n.State == shared.NodeAlive || n.State == shared.NodeDraining
}

// storageCheck is the control plane's storage check. SPEC §4.3 wants "every alive data node's
// disks passed their last check and at least one node accepts uploads". The gossip metadata
// does not carry the data node's last disk check result yet, so a live node passes when it
// announced at least one disk and every announced disk has a size; a node accepts uploads when
// it is alive (not draining) and has free space.
func storageCheck(nodes []shared.DataNode) []string {
	var msgs []string
	accepting := false
	for _, n := range nodes {
		if !up(n) {
			continue
		}
		if len(n.Disks) == 0 {
			msgs = append(msgs, fmt.Sprintf("data node %s announced no disks", n.Name))
		}
		for _, d := range n.Disks {
			if d.Total <= 0 {
				msgs = append(msgs, fmt.Sprintf("data node %s: disk %s reports no capacity", n.Name, d.Path))
			}
		}
		if n.State == shared.NodeAlive && n.FreeBytes() > 0 {
			accepting = true
		}
	}
	if !accepting {
		msgs = append(msgs, "no data node accepts uploads (none is alive, not draining, with free space)")
	}
	return msgs
}

// clusterCheck passes when gossip sees at least one live data node.
func clusterCheck(nodes []shared.DataNode) []string {
	for _, n := range nodes {
		if up(n) {
			return nil
		}
	}
	return []string{fmt.Sprintf("no live data node in the gossip cluster (%d known)", len(nodes))}
}

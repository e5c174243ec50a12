package frontdoor_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"backuprepo/controlplane/frontdoor"
	"backuprepo/controlplane/gossip"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
	"backuprepo/shared/nodemeta"
	"backuprepo/shared/token"
)

// startCluster starts a control plane's gossip member with a fresh key on 127.0.0.1, for the
// front door to find nodes in; it returns the key for members that are to join it.
func startCluster(t *testing.T) (*gossip.Cluster, []byte) {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	cluster, err := gossip.New(gossip.Config{Name: pgtest.RandomName("cp-"), BindAddr: "127.0.0.1", Key: key,
		Meta: nodemeta.Meta{Role: nodemeta.RoleControlPlane, State: shared.NodeAlive, PublicURL: "http://127.0.0.1:8080"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Shutdown(context.Background()) })
	return cluster, key
}

// The proxying itself is exercised against real data nodes in e2e/; these are the answers the
// front door gives on its own, before any data node is involved.
func TestFrontDoorRefusals(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO tenants (id, name, slug) VALUES ('00000000-0000-0000-0000-0000000000a1', 'A', 'a');
		INSERT INTO data_nodes (name, public_url, state) VALUES ('dn-gone', 'http://127.0.0.1:1', 'dead');
		INSERT INTO collections (id, tenant_id, max_backups_count, max_one_version_size, max_collection_size, strategy, node_name)
		VALUES ('on-dead-node', '00000000-0000-0000-0000-0000000000a1', 1, 10, 10, 'FIFO', 'dn-gone'),
		       ('unplaced', '00000000-0000-0000-0000-0000000000a1', 1, 10, 10, 'FIFO', NULL)`); err != nil {
		t.Fatal(err)
	}
	cluster, _ := startCluster(t)

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	kid := token.KeyID(pub)
	sign := func(exp time.Time) string {
		s, err := token.Sign(priv, kid, token.Claims{Subject: "u", ID: "j", IssuedAt: time.Now().Unix(), Expiry: exp.Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid, expired := sign(time.Now().Add(time.Hour)), sign(time.Now().Add(-time.Minute))
	door := frontdoor.New(frontdoor.Config{Locator: db, Nodes: cluster, Keys: token.Keys{kid: pub},
		Secret: []byte("node-secret-0123456789"), ClientIP: func(*http.Request) string { return "192.0.2.1" },
		RetryAfter: 7 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	r := chi.NewRouter()
	door.Routes(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	tests := []struct {
		name, method, path, token string
		status                    int
		code                      shared.Code
		retryAfter                string
	}{
		{"no token", "POST", "/api/stable/repository/collection/on-dead-node/versions", "", 401, shared.CodeUnauthenticated, ""},
		{"garbage token", "GET", "/api/alpha/repository/collection/on-dead-node/version/latest", "x.y.z", 401, shared.CodeUnauthenticated, ""},
		{"expired token", "GET", "/api/stable/repository/collection/on-dead-node/versions", expired, 401, shared.CodeTokenExpired, ""},
		{"unknown collection", "POST", "/api/stable/repository/collection/nope/versions", valid, 404, shared.CodeNotFound, ""},
		{"overlong id", "GET", "/api/stable/repository/collection/" + strings.Repeat("a", 65) + "/versions", valid, 404, shared.CodeNotFound, ""},
		{"dead node", "POST", "/api/stable/repository/collection/on-dead-node/backups", valid, 503, shared.CodeNodeUnavailable, "7"},
		{"unplaced collection", "DELETE", "/api/alpha/repository/collection/unplaced/backup/v1", valid, 503, shared.CodeNodeUnavailable, "7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader("body"))
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var env struct {
				Status bool        `json:"status"`
				Code   shared.Code `json:"code"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || env.Code != tt.code || env.Status {
				t.Fatalf("got %d %+v, want %d %s", resp.StatusCode, env, tt.status, tt.code)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
				t.Fatalf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
		})
	}
}

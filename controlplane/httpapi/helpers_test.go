package httpapi

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"backuprepo/controlplane/postgres"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
	"backuprepo/shared/envelope"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const (
	healthCode  = "health-secret"
	metricsCode = "metrics-secret"
)

// fixedNow is the timestamp of the seed's example line.
var fixedNow = time.Unix(0, 1620237873872992246)

// staticCluster is a cluster view holding fixed test data, for tests that run without gossip.
type staticCluster []shared.DataNode

func (c staticCluster) Nodes() []shared.DataNode { return c }

func healthyCluster() staticCluster {
	return staticCluster{{
		Name: "n1", PublicURL: "http://127.0.0.1:8081", State: shared.NodeAlive,
		Disks: []shared.Disk{{Path: "/srv/d1", Total: 1000, Free: 600}, {Path: "/srv/d2", Total: 2000, Free: 100}},
	}}
}

// markingAuth behaves like the auth middleware at its edges (a bad bearer is refused, anonymous
// requests pass) and marks the answers it saw, so tests can tell which routes sit behind it.
type markingAuth struct{}

func (markingAuth) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Auth-Middleware", "ran")
		if r.Header.Get("Authorization") == "Bearer bad" {
			envelope.WriteError(w, shared.Errorf(shared.CodeUnauthenticated, "invalid token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (markingAuth) ClientIPOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Auth-Middleware", "ip-only")
		next.ServeHTTP(w, r)
	})
}

// echo answers 200 with its name and the request body length it read.
func echo(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			envelope.WriteError(w, err)
			return
		}
		envelope.WriteData(w, http.StatusOK, map[string]any{"handler": name, "read": len(b)})
	})
}

type testAPI struct {
	cfg     Config
	handler http.Handler
	db      *postgres.DB
}

// newTestAPI builds the router against a fresh real database and the real test Redis;
// change the Config in edit before the metrics and the router are built.
func newTestAPI(t *testing.T, edit func(*Config)) testAPI {
	t.Helper()
	db := pgtest.NewDB(t)
	rdb, _ := pgtest.NewRedis(t)
	cluster := healthyCluster()
	cfg := Config{
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		BaseURL:         "http://localhost:8000",
		AppEnv:          "dev",
		HealthCheckCode: healthCode,
		MetricsCode:     metricsCode,
		DB:              db,
		Redis:           rdb,
		Cluster:         cluster,
		Auth:            markingAuth{},
		Login:           echo("login"),
		WhoAmI:          echo("whoami"),
		Logout:          echo("logout"),
		GraphQL:         echo("graphql"),
		Console:         echo("console"),
		Now:             func() time.Time { return fixedNow },
	}
	if edit != nil {
		edit(&cfg)
	}
	m, err := NewMetrics(prometheus.NewRegistry(), cfg.Cluster)
	if err != nil {
		t.Fatalf("NewMetrics: %v", err)
	}
	cfg.Metrics = m
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return testAPI{cfg: cfg, handler: h, db: db}
}

func (a testAPI) do(t *testing.T, method, target string, body io.Reader) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	a.handler.ServeHTTP(rec, httptest.NewRequest(method, target, body))
	return rec
}

// closedAddr returns a 127.0.0.1 address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	return addr
}

// downDB is a pool pointed at a port nobody listens on; pgxpool connects lazily.
func downDB(t *testing.T) *postgres.DB {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+closedAddr(t)+"/x?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(pool.Close)
	return &postgres.DB{Pool: pool}
}

// downRedis is a client to a port nobody listens on.
func downRedis(t *testing.T) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// golden compares got with testdata/name, rewriting the file under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("write golden: %v", err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s differs from the golden file\n got: %s\nwant: %s", name, got, want)
	}
}

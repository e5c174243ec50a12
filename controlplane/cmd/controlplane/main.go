// Command controlplane runs the control plane: GraphQL admin API, login, health and metrics,
// the internal API for data nodes, and the front door that streams collection requests to the
// data node holding the collection.
package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"backuprepo/controlplane/admin"
	"backuprepo/controlplane/auth"
	"backuprepo/controlplane/frontdoor"
	"backuprepo/controlplane/gossip"
	"backuprepo/controlplane/httpapi"
	"backuprepo/controlplane/postgres"
	"backuprepo/controlplane/uploads"
	"backuprepo/graph"
	"backuprepo/shared"
	"backuprepo/shared/nodemeta"
	"backuprepo/shared/pacing"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}

// configError marks errors that are the operator's to fix; they exit with status 2.
type configError struct{ error }

func exitCode(err error) int {
	var ce configError
	if errors.As(err, &ce) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args, environ []string, stderr io.Writer) error {
	s, err := parseSettings(args, environ, stderr)
	if err != nil {
		return configError{err}
	}
	log := newLogger(stderr, s.LogLevel)
	if s.GCPercent > 0 {
		// Process-wide, so it belongs to the wiring. A GOMEMLIMIT set in the environment still
		// applies: the collector then also runs whenever the heap nears that limit.
		debug.SetGCPercent(s.GCPercent)
		attrs := []any{"gc_percent", s.GCPercent}
		if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
			attrs = append(attrs, "memory_limit_bytes", limit)
		}
		log.Info("garbage collection target set", attrs...)
	}
	m := &Main{settings: s, log: log}
	defer m.Close()
	if err := m.Open(ctx); err != nil {
		return err
	}
	return m.Serve(ctx)
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// Main holds every component of a running control plane.
type Main struct {
	settings settings
	log      *slog.Logger

	db      *postgres.DB
	redis   *redis.Client
	cluster *gossip.Cluster
	server  *http.Server
}

// Open connects to the dependencies and builds every component.
func (m *Main) Open(ctx context.Context) error {
	s := m.settings
	var err error
	if m.db, err = postgres.Open(ctx, s.DatabaseURL); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	ropt, err := redis.ParseURL(s.RedisURL)
	if err != nil {
		return configError{fmt.Errorf("config: BR_REDIS_URL (-redis-url) is not a Redis URL: %w", err)}
	}
	// Fail fast when Redis is down: a request then answers 503 at once instead of after the
	// client library's five dial attempts and three retries (about 1.7 s per call). Settings
	// given in the URL win.
	if ropt.MaxRetries == 0 {
		ropt.MaxRetries = 1
	}
	if ropt.DialerRetries == 0 {
		ropt.DialerRetries = 1
	}
	if ropt.DialTimeout == 0 {
		ropt.DialTimeout = time.Second
	}
	m.redis = redis.NewClient(ropt)
	if err := m.redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}

	if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	signing, err := auth.LoadOrCreateSigningKey(s.SigningKey, s.CreateSigningKey)
	if err != nil {
		return configError{fmt.Errorf("config: BR_SIGNING_KEY (-signing-key): %w", err)}
	}
	verify, err := auth.LoadPublicKeys(s.VerifyKeys)
	if err != nil {
		return configError{fmt.Errorf("config: BR_VERIFY_KEYS (-verify-keys): %w", err)}
	}
	if s.CreateSigningKey {
		// Hand the verification key to data nodes started next to us (make run).
		pubPath := filepath.Join(s.DataDir, "verify-key.pem")
		if err := auth.WritePublicKey(pubPath, signing.Public().(ed25519.PublicKey)); err != nil {
			return fmt.Errorf("write verification key: %w", err)
		}
	}
	authSvc := auth.New(auth.Config{
		DB: m.db, Redis: m.redis, KeyPrefix: s.RedisPrefix,
		SigningKey: signing, VerifyKeys: verify,
		DefaultTTL: s.TokenTTL, MaxTTL: s.MaxTokenTTL,
		TrustedProxies: s.TrustedProxies, Logger: m.log,
	})
	if s.BootstrapAdminEmail != "" {
		created, err := authSvc.EnsureBootstrapAdmin(ctx, s.BootstrapAdminEmail, s.BootstrapAdminPassword)
		if err != nil {
			return fmt.Errorf("bootstrap admin: %w", err)
		}
		if created {
			m.log.Info("created the bootstrap system admin", "email", s.BootstrapAdminEmail)
		}
	}

	m.cluster, err = gossip.New(gossip.Config{
		Name: s.NodeName, BindAddr: s.GossipHost, BindPort: s.GossipPort,
		AdvertiseAddr: s.GossipAdvertiseHost, AdvertisePort: s.GossipAdvertisePort,
		Join: s.GossipJoin, Key: s.GossipKey, Logger: m.log,
		Meta: nodemeta.Meta{Role: nodemeta.RoleControlPlane, Name: s.NodeName, PublicURL: s.BaseURL, State: shared.NodeAlive, Version: version},
		DB:   m.db,
	})
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}

	adminSvc := admin.New(admin.Config{DB: m.db, Auth: authSvc, Nodes: m.cluster, Logger: m.log})
	registry := prometheus.NewRegistry()
	metrics, err := httpapi.NewMetrics(registry, m.cluster)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	door := frontdoor.New(frontdoor.Config{
		Locator: m.db, Nodes: m.cluster, Keys: authSvc.VerifyKeys(), Secret: s.NodeSecret,
		ClientIP: authSvc.ClientIPOf,
		Logger:   m.log,
	})
	internal := uploads.New(uploads.Config{
		DB: m.db, Redis: m.redis, Auth: authSvc, KeyPrefix: s.RedisPrefix,
		NodeSecret: s.NodeSecret, Lease: s.UploadLease, Logger: m.log,
	})
	gql := graph.NewHandler(graph.HandlerConfig{
		Sessions: adminSvc, Tenants: adminSvc, Users: adminSvc, Tokens: adminSvc,
		Collections: adminSvc, Versions: adminSvc, Nodes: adminSvc, Audit: adminSvc,
		Logger: m.log, ComplexityLimit: s.ComplexityLimit,
		AllowIntrospection: func(ctx context.Context) bool { _, ok := auth.PrincipalFrom(ctx); return ok },
	})
	handler, err := httpapi.New(httpapi.Config{
		Logger: m.log, BaseURL: s.BaseURL, AppEnv: s.AppEnv,
		HealthCheckCode: s.HealthCheckCode, MetricsCode: s.MetricsCode,
		DB: m.db, Redis: m.redis, Cluster: m.cluster, Metrics: metrics, Auth: authSvc,
		Login: http.HandlerFunc(authSvc.HandleLogin), WhoAmI: http.HandlerFunc(authSvc.HandleWhoami),
		Logout: http.HandlerFunc(authSvc.HandleLogout), GraphQL: gql,
		Console:     graph.ConsoleHandler("/graphql", s.ConsoleAssetURL),
		FrontDoor:   door,
		Internal:    internal,
		Collections: adminSvc,
	})
	if err != nil {
		return fmt.Errorf("http api: %w", err)
	}
	m.server = &http.Server{
		Addr:    s.Listen,
		Handler: handler,
		// Headers must arrive promptly; bodies may take hours (30 GB uploads), so there is no
		// ReadTimeout or WriteTimeout: streaming handlers extend deadlines as data flows.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// Serve answers HTTP until ctx ends, then shuts down gracefully.
func (m *Main) Serve(ctx context.Context) error {
	ln, err := pacing.Listen(m.settings.Listen)
	if err != nil {
		return configError{fmt.Errorf("config: BR_LISTEN (-listen) %s: %w", m.settings.Listen, err)}
	}
	m.log.Info("control plane listening", "addr", ln.Addr().String(), "version", version)
	errc := make(chan error, 1)
	go func() { errc <- m.server.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	m.log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.server.Shutdown(shutdownCtx); err != nil {
		m.log.Warn("http shutdown", "err", err)
	}
	return nil
}

// Close releases everything Open acquired, in reverse order.
func (m *Main) Close() {
	if m.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.cluster.Shutdown(ctx)
		cancel()
	}
	if m.redis != nil {
		_ = m.redis.Close()
	}
	if m.db != nil {
		m.db.Close()
	}
}

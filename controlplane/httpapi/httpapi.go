// Package httpapi is the control plane's public HTTP surface: routing, the JSON envelope,
// monitoring endpoints (health, InfluxDB report, Prometheus, probes) and the middleware every
// request passes through.
package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/redis/go-redis/v9"

	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
	"backuprepo/shared/envelope"
)

// maxJSONBody bounds the JSON routes (login, GraphQL); bytes beyond it are refused with 413.
const maxJSONBody = 1 << 20

// ClusterView is what the HTTP layer needs from the gossip registry.
type ClusterView interface {
	// Nodes returns the data nodes currently known, whatever their state.
	Nodes() []shared.DataNode
}

// Authenticator wraps the API routes: it records the client IP and, when a bearer token is
// sent, authenticates it (refusing a bad one); anonymous requests pass through so that login
// and the GraphQL login mutation work.
type Authenticator interface {
	Middleware(next http.Handler) http.Handler
	// ClientIPOnly records the client's address without authenticating (the login route).
	ClientIPOnly(next http.Handler) http.Handler
}

// Config is everything the router needs; main builds it and calls New.
type Config struct {
	Logger          *slog.Logger
	BaseURL         string // the public URL, reported as a tag of the InfluxDB line
	AppEnv          string // e.g. "prod", "dev"; reported as a tag of the InfluxDB line
	HealthCheckCode string // secret of GET /health?code=
	MetricsCode     string // secret of the InfluxDB report; must differ from HealthCheckCode

	DB      *postgres.DB
	Redis   *redis.Client
	Cluster ClusterView
	Metrics *Metrics // from NewMetrics; also handed to the front door

	Auth    Authenticator
	Login   http.Handler // POST /api/stable/auth/login
	WhoAmI  http.Handler // GET /api/stable/auth/whoami
	Logout  http.Handler // DELETE /api/stable/auth/logout
	GraphQL http.Handler // GET and POST /graphql
	Console http.Handler // GET /console

	// FrontDoor mounts the collection routes that stream to data nodes; Internal mounts the
	// node-signed internal API. Each authenticates its requests itself, so neither passes
	// through Auth's middleware, and neither gets a body limit or a timeout.
	FrontDoor Mounter
	Internal  Mounter
	// Collections answers the collection routes served by the control plane itself
	// (endpoint, health); optional.
	Collections CollectionREST

	Now func() time.Time // clock of the InfluxDB timestamp; nil means time.Now
}

func (c Config) validate() error {
	var missing []string
	check := func(ok bool, name string) {
		if !ok {
			missing = append(missing, name)
		}
	}
	check(c.Logger != nil, "Logger")
	check(c.BaseURL != "", "BaseURL")
	check(c.AppEnv != "", "AppEnv")
	check(c.HealthCheckCode != "", "HealthCheckCode")
	check(c.MetricsCode != "", "MetricsCode")
	check(c.DB != nil, "DB")
	check(c.Redis != nil, "Redis")
	check(c.Cluster != nil, "Cluster")
	check(c.Metrics != nil, "Metrics")
	check(c.Auth != nil, "Auth")
	check(c.Login != nil, "Login")
	check(c.WhoAmI != nil, "WhoAmI")
	check(c.Logout != nil, "Logout")
	check(c.GraphQL != nil, "GraphQL")
	check(c.Console != nil, "Console")
	if len(missing) > 0 {
		return errors.New("httpapi config: missing " + strings.Join(missing, ", "))
	}
	if c.HealthCheckCode == c.MetricsCode {
		// The seed insists they differ: the metrics code is handed to more systems.
		return errors.New("httpapi config: the metrics code must differ from the health check code")
	}
	return nil
}

// Mounter adds its routes to a router.
type Mounter interface{ Routes(r chi.Router) }

// server holds the dependencies of the handlers of this package.
type server struct {
	cfg Config
	now func() time.Time
}

// New builds the router. It fails when cfg is incomplete, so a bad wiring stops the program
// at start instead of answering 500s.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &server{cfg: cfg, now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}

	r := chi.NewRouter()
	// No whole-request timeout: uploads and downloads through the front door last hours.
	r.Use(cfg.Metrics.middleware, recoverer(cfg.Logger))
	r.NotFound(notFound)
	r.MethodNotAllowed(methodNotAllowed(r))

	r.Get("/livez", s.livez)
	r.Get("/readyz", s.readyz)
	r.Get("/health", s.health)
	r.Get("/metrics/backup_repository_report/influxdb", s.influx)
	r.Method(http.MethodGet, "/metrics", cfg.Metrics.handler())

	limited := limitBody(maxJSONBody)
	r.With(cfg.Auth.ClientIPOnly, limited).Method(http.MethodPost, "/api/stable/auth/login", cfg.Login)
	r.Group(func(r chi.Router) {
		r.Use(cfg.Auth.Middleware)
		r.Method(http.MethodGet, "/api/stable/auth/whoami", cfg.WhoAmI)
		r.Method(http.MethodDelete, "/api/stable/auth/logout", cfg.Logout)
		r.With(limited).Method(http.MethodPost, "/graphql", cfg.GraphQL)
		r.Method(http.MethodGet, "/graphql", cfg.GraphQL)
	})
	r.Method(http.MethodGet, "/console", cfg.Console)
	if cfg.Collections != nil {
		r.Get("/api/stable/repository/collection/{id}/health", s.collectionHealth)
		r.With(cfg.Auth.Middleware).Get("/api/stable/repository/collection/{id}/endpoint", s.collectionEndpoint)
	}
	for _, m := range []Mounter{cfg.FrontDoor, cfg.Internal} {
		if m != nil {
			m.Routes(r)
		}
	}
	return r, nil
}

func notFound(w http.ResponseWriter, r *http.Request) {
	refuse(w, shared.CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
}

// methodNotAllowed answers 405 with an Allow header; chi drops that header when the handler is
// replaced, so the allowed methods are found again by matching the path.
func methodNotAllowed(mux *chi.Mux) http.HandlerFunc {
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions}
	return func(w http.ResponseWriter, r *http.Request) {
		var allowed []string
		for _, m := range methods {
			if mux.Match(chi.NewRouteContext(), m, r.URL.Path) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeJSONBody(w, http.StatusMethodNotAllowed, envelope.Envelope{Status: false, Code: shared.CodeInvalidInput,
			Error: "method " + r.Method + " is not allowed on " + r.URL.Path + "; allowed: " + strings.Join(allowed, ", ")})
	}
}

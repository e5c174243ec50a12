// Package httpapi is the data node's HTTP surface: the collection endpoints of SPEC §4.1
// (upload, list, download, delete) under both path prefixes, and /health, /livez, /readyz and
// /metrics.
package httpapi

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"backuprepo/datanode/admission"
	"backuprepo/datanode/disk"
	"backuprepo/shared"
	"backuprepo/shared/internalapi"
	"backuprepo/shared/token"
)

// Config is what the handler needs.
type Config struct {
	Store        *disk.Store
	ControlPlane *admission.Client
	// Reconciler settles uploads whose commit outcome is unknown; required.
	Reconciler *Reconciler
	// Keys verify bearer tokens locally, so a bad token never costs a call to the control plane.
	Keys token.Keys
	// NodeSecret checks the front door's signature of the client address it passes on.
	NodeSecret      []byte
	HealthCheckCode string
	Logger          *slog.Logger
	// Registry receives the node's metrics; nil makes a new one. Never the global registry.
	Registry *prometheus.Registry
	Now      func() time.Time
	// BodyIdleTimeout is how long an upload may send nothing before it is dropped (default
	// 2 minutes). The read deadline moves forward as data arrives, so a slow but steady upload
	// never times out.
	BodyIdleTimeout time.Duration
}

// Handler serves the data node's HTTP API.
type Handler struct {
	router http.Handler
	store  *disk.Store
	// commitsStarted counts the bytes of every commit started, and overhead the disk.Overhead
	// of the uploads in flight (see admit).
	commitsStarted atomic.Int64
	overhead       atomic.Int64
	cp             *admission.Client
	reconciler     *Reconciler
	keys           token.Keys
	tokens         token.Cache // verified signatures of recent tokens
	secret         []byte
	healthCode     string
	log            *slog.Logger
	metrics        *metrics
	now            func() time.Time
	idle           time.Duration
	ready          *readiness
	stopping       atomic.Bool
}

// namings are the interchangeable words for versions in collection paths (SPEC §4.1).
var namings = []string{"versions", "version", "backups", "backup"}

// New checks cfg and builds the handler with its routes.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.ControlPlane == nil || cfg.Reconciler == nil {
		return nil, errors.New("httpapi: store, control plane client and reconciler are required")
	}
	if len(cfg.Keys) == 0 {
		return nil, errors.New("httpapi: no token verification keys")
	}
	if cfg.HealthCheckCode == "" {
		return nil, errors.New("httpapi: empty health check code")
	}
	if len(cfg.NodeSecret) < 16 {
		return nil, errors.New("httpapi: node secret is shorter than 16 bytes")
	}
	h := &Handler{
		store:      cfg.Store,
		cp:         cfg.ControlPlane,
		reconciler: cfg.Reconciler,
		keys:       cfg.Keys,
		secret:     cfg.NodeSecret,
		healthCode: cfg.HealthCheckCode,
		log:        cfg.Logger,
		now:        cfg.Now,
		idle:       cfg.BodyIdleTimeout,
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.idle <= 0 {
		h.idle = 2 * time.Minute
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg, cfg.Store)
	if err != nil {
		return nil, err
	}
	h.metrics = m
	h.ready = newReadiness(cfg.Store, cfg.ControlPlane, h.now)

	r := chi.NewRouter()
	r.Use(h.metrics.middleware, h.recoverer)
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, shared.Errorf(shared.CodeNotFound, "no such endpoint"))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeErrorStatus(w, http.StatusMethodNotAllowed, shared.CodeInvalidInput, "method not allowed")
	})
	for _, prefix := range []string{"/api/stable", "/api/alpha"} {
		for _, n := range namings {
			base := prefix + "/repository/collection/{id}/" + n
			r.Post(base, h.upload)
			r.Get(base, h.list)
			r.Get(base+"/{ref}", h.download)
			r.Head(base+"/{ref}", h.download)
			r.Delete(base+"/{ref}", h.deleteVersion)
		}
	}
	r.Get("/health", h.health)
	r.Get("/livez", h.livez)
	r.Get("/readyz", h.readyz)
	r.Handle("/metrics", h.metrics.handler())
	h.router = r
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.router.ServeHTTP(w, r) }

// Stopping makes /readyz fail so that orchestrators and the front door send no new work while
// the in-flight uploads finish.
func (h *Handler) Stopping() { h.stopping.Store(true) }

// authenticate verifies the bearer token's signature and expiry locally and returns the caller
// to pass on to the control plane, which checks everything else (revocation, user, tenant, IP,
// rights).
func (h *Handler) authenticate(r *http.Request) (internalapi.Caller, error) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return internalapi.Caller{}, shared.Errorf(shared.CodeUnauthenticated, "a bearer token is required")
	}
	if _, err := h.tokens.Verify(h.keys, tok, h.now()); err != nil {
		if errors.Is(err, token.ErrExpired) {
			return internalapi.Caller{}, shared.Wrap(err, shared.CodeTokenExpired, "the token has expired")
		}
		return internalapi.Caller{}, shared.Wrap(err, shared.CodeUnauthenticated, "invalid token")
	}
	return internalapi.Caller{Token: tok, ClientIP: h.clientIP(r)}, nil
}

// clientIP is the peer's address, or the address the front door vouches for with a signature
// made with the node secret; an unsigned or badly signed header is ignored, so a client cannot
// pick its own address to get past an IP allow-list.
func (h *Handler) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := r.Header.Get(internalapi.HeaderClientIP); ip != "" {
		if internalapi.VerifyClientIP(h.secret, ip, r.Header.Get(internalapi.HeaderClientIPSig), h.now()) {
			return ip
		}
	}
	return host
}

// validCollectionID mirrors the collection id rule of SPEC §2; anything else cannot exist, so
// it is answered 404 without a call to the control plane.
func validCollectionID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// fail answers err, logging it first when it is not a refusal meant for the caller.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := shared.ErrorCode(err)
	switch code {
	case shared.CodeInternal:
		h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	case shared.CodeDependencyUnavailable:
		h.log.Warn("control plane unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
	default:
		h.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	if code == shared.CodeUnauthenticated || code == shared.CodeTokenExpired || code == shared.CodeTokenRevoked {
		w.Header().Set("WWW-Authenticate", `Bearer realm="backup-repository"`)
	}
	writeError(w, err)
}

// recoverer turns a handler panic into a logged 500 instead of a dropped connection.
func (h *Handler) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			rv := recover()
			if rv == nil {
				return
			}
			if rv == http.ErrAbortHandler { //nolint:errorlint // sentinel panic value
				panic(rv)
			}
			// The path only: the query string may carry the health code.
			h.log.Error("panic while serving a request", "method", r.Method, "path", r.URL.Path, "panic", rv)
			writeError(w, errors.New("panic"))
		}()
		next.ServeHTTP(w, r)
	})
}

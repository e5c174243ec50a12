// Package admin is the control plane's admin service: it implements the GraphQL layer's
// service interfaces with every authorization rule, validation rule and audit record.
package admin

import (
	"context"
	"encoding/base64"
	"log/slog"
	"strconv"
	"time"

	"backuprepo/controlplane/auth"
	"backuprepo/controlplane/postgres"
	"backuprepo/graph"
	"backuprepo/shared"
)

// The service is what the GraphQL resolvers call.
var (
	_ graph.Sessions    = (*Service)(nil)
	_ graph.Tenants     = (*Service)(nil)
	_ graph.Users       = (*Service)(nil)
	_ graph.Tokens      = (*Service)(nil)
	_ graph.Collections = (*Service)(nil)
	_ graph.Nodes       = (*Service)(nil)
	_ graph.Audit       = (*Service)(nil)
)

// TokenService is what the admin service needs from auth.Service.
type TokenService interface {
	// Login, Issue and Revoke record their audit events in the transaction of their change.
	Login(ctx context.Context, email, password, ip string) (shared.IssuedToken, error)
	Issue(ctx context.Context, user shared.User, req shared.TokenRequest, audit auth.AuditToken) (shared.IssuedToken, error)
	Revoke(ctx context.Context, tokenID string, ev shared.AuditEvent) (shared.TokenRecord, error)
	RevokeUser(ctx context.Context, userID string) error
}

// NodeView is the cluster's current view of the data nodes (the gossip registry).
type NodeView interface {
	Nodes() []shared.DataNode
	Node(name string) (shared.DataNode, bool)
}

// Config wires a Service.
type Config struct {
	DB     *postgres.DB
	Auth   TokenService
	Nodes  NodeView
	Logger *slog.Logger
	Now    func() time.Time
}

// Service implements graph.Sessions, Tenants, Users, Tokens, Collections, Nodes and Audit.
type Service struct {
	db    *postgres.DB
	auth  TokenService
	nodes NodeView
	log   *slog.Logger
	now   func() time.Time
}

// New builds a Service. It panics when DB, Auth or Nodes is missing: that is a wiring bug.
func New(cfg Config) *Service {
	if cfg.DB == nil || cfg.Auth == nil || cfg.Nodes == nil {
		panic("admin.New: DB, Auth and Nodes are required")
	}
	s := &Service{db: cfg.DB, auth: cfg.Auth, nodes: cfg.Nodes, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// principal returns the caller or UNAUTHENTICATED.
func principal(ctx context.Context) (shared.Principal, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok || p.User.ID == "" {
		return shared.Principal{}, shared.Errorf(shared.CodeUnauthenticated, "authentication required")
	}
	return p, nil
}

// unscoped returns the caller, refusing scoped tokens: they are bound to collections and may
// not do anything else.
func unscoped(ctx context.Context) (shared.Principal, error) {
	p, err := principal(ctx)
	if err != nil {
		return p, err
	}
	if p.Scope != nil {
		return p, forbidden()
	}
	return p, nil
}

func forbidden() error {
	return shared.Errorf(shared.CodeForbidden, "you are not allowed to do this")
}

// event starts an audit record of a mutation made by p.
func event(ctx context.Context, p shared.Principal, action, objectType, objectID, tenantID string, details map[string]string) shared.AuditEvent {
	if details == nil {
		details = map[string]string{}
	}
	ip := auth.ClientIP(ctx)
	if ip == "" {
		ip = p.IP
	}
	return shared.AuditEvent{ActorID: p.User.ID, TenantID: tenantID, Action: action, ObjectType: objectType,
		ObjectID: objectID, IP: ip, Details: details}
}

const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

// pageSize validates first (0 = the default).
func pageSize(first int) (int, error) {
	switch {
	case first == 0:
		return defaultPageSize, nil
	case first < 0 || first > maxPageSize:
		return 0, shared.Errorf(shared.CodeInvalidInput, "first must be between 1 and %d", maxPageSize)
	}
	return first, nil
}

// listArgs checks the arguments of a list that only an unscoped caller may read: the caller,
// the page size and the cursor (the last key of the previous page, "" for the first).
func listArgs(ctx context.Context, page shared.Page) (p shared.Principal, limit int, after string, err error) {
	if p, err = unscoped(ctx); err != nil {
		return p, 0, "", err
	}
	if limit, err = pageSize(page.First); err != nil {
		return p, 0, "", err
	}
	after, err = decodeCursor(page.After)
	return p, limit, after, err
}

// Cursors are opaque to clients: the base64 of the last key seen.
func encodeCursor(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

func decodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) == 0 || len(b) > 256 {
		return "", shared.Errorf(shared.CodeInvalidInput, "invalid cursor")
	}
	return string(b), nil
}

// pageOf trims a result fetched with limit+1 rows to limit and says where the next page starts.
func pageOf[T any](items []T, limit int, key func(T) string) ([]T, shared.PageInfo) {
	info := shared.PageInfo{}
	if len(items) > limit {
		items = items[:limit]
		info.HasNextPage = true
	}
	if len(items) > 0 {
		info.EndCursor = encodeCursor(key(items[len(items)-1]))
	}
	return items, info
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

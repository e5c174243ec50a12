// Package graph is the GraphQL admin API: the schema, the generated executor and thin
// resolvers that call the services declared in this file. The control plane implements them.
package graph

import (
	"context"

	"backuprepo/shared"
)

// Every method reads the calling principal from ctx and enforces tenant isolation and roles
// itself; resolvers never make authorization decisions.

// Sessions logs people in and out and tells them who they are.
type Sessions interface {
	Login(ctx context.Context, email, password string) (shared.IssuedToken, error)
	Logout(ctx context.Context) error
	Me(ctx context.Context) (shared.Principal, error)
}

// Tenants manages nonprofits.
type Tenants interface {
	Tenants(ctx context.Context, page shared.Page) ([]shared.Tenant, shared.PageInfo, error)
	Tenant(ctx context.Context, id string) (shared.Tenant, error)
	CreateTenant(ctx context.Context, in shared.TenantInput) (shared.Tenant, error)
	UpdateTenant(ctx context.Context, id string, p shared.TenantPatch) (shared.Tenant, error)
}

// Users manages accounts and their per-collection grants.
type Users interface {
	Users(ctx context.Context, tenantID string, page shared.Page) ([]shared.User, shared.PageInfo, error)
	User(ctx context.Context, id string) (shared.User, error)
	CreateUser(ctx context.Context, in shared.UserInput) (shared.User, error)
	UpdateUser(ctx context.Context, id string, p shared.UserPatch) (shared.User, error)
	DeactivateUser(ctx context.Context, id string) (shared.User, error)
	// ChangePassword changes userID's password (empty = the caller, who must give the old one).
	ChangePassword(ctx context.Context, userID, oldPassword, newPassword string) error
	GrantCollectionAccess(ctx context.Context, collectionID, userID string, roles []shared.Role) (shared.Grant, error)
	RevokeCollectionAccess(ctx context.Context, collectionID, userID string) error
}

// Tokens issues, lists and revokes tokens.
type Tokens interface {
	Tokens(ctx context.Context, userID string) ([]shared.TokenRecord, error)
	IssueToken(ctx context.Context, req shared.TokenRequest) (shared.IssuedToken, error)
	RevokeToken(ctx context.Context, id string) (shared.TokenRecord, error)
}

// Collections manages collections and reads their versions.
type Collections interface {
	Collections(ctx context.Context, f shared.CollectionFilter) ([]shared.Collection, shared.PageInfo, error)
	Collection(ctx context.Context, id string) (shared.Collection, error)
	CreateCollection(ctx context.Context, in shared.CollectionInput) (shared.Placement, error)
	UpdateCollection(ctx context.Context, id string, p shared.CollectionPatch) (shared.Collection, error)
	DeleteCollection(ctx context.Context, id string, force bool) error
	Versions(ctx context.Context, collectionID string) ([]shared.Version, error)
	Usage(ctx context.Context, collectionID string) (shared.Usage, error)
	Grants(ctx context.Context, collectionID string) ([]shared.Grant, error)
	Health(ctx context.Context, collectionID string) (shared.CollectionHealth, error)
	// Integrity sums up the data nodes' last checks of the collection's stored versions.
	Integrity(ctx context.Context, collectionID string) (CollectionIntegrity, error)
}

// Nodes shows the cluster and lets admins drain nodes.
type Nodes interface {
	DataNodes(ctx context.Context) ([]shared.DataNode, error)
	DataNode(ctx context.Context, name string) (shared.DataNode, error)
	NodeCollections(ctx context.Context, name string) ([]shared.Collection, error)
	DrainDataNode(ctx context.Context, name string) (shared.DataNode, error)
	UndrainDataNode(ctx context.Context, name string) (shared.DataNode, error)
}

// Audit reads the audit log and the usage report.
type Audit interface {
	AuditLog(ctx context.Context, tenantID string, page shared.Page) ([]shared.AuditEvent, shared.PageInfo, error)
	Report(ctx context.Context) (shared.Report, error)
}

// Versions deletes single versions (SPEC §5 deleteVersion).
type Versions interface {
	// DeleteVersion deletes the version of collectionID named by ref (latest, recent, first,
	// vN, N or an id) and returns what was deleted.
	DeleteVersion(ctx context.Context, collectionID, ref string) (shared.Version, error)
}

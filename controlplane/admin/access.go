package admin

import (
	"slices"

	"backuprepo/shared"
)

// Action is something a principal may ask to do. Tenant-level actions concern a tenant as a
// whole; collection-level actions concern one collection of a tenant.
type Action int

const (
	// ReadTenant reads the tenant record itself.
	ReadTenant Action = iota
	// RenameTenant changes a tenant's display name.
	RenameTenant
	// ManageTenants creates tenants and changes their quota or suspension (hosting org only).
	ManageTenants
	// ManageUsers reads and changes the users of a tenant, their grants and their tokens.
	ManageUsers
	// ReadAudit reads a tenant's audit log.
	ReadAudit
	// ReadReport reads the installation-wide usage report (hosting org only).
	ReadReport
	// ManageNodes sees and drains data nodes (hosting org only).
	ManageNodes
	// CreateCollection creates a collection with the given id in a tenant.
	CreateCollection
	// ReadCollection reads a collection, its versions, usage, grants and health.
	ReadCollection
	// ManageCollection changes or deletes a collection.
	ManageCollection
	// Upload stores a new version.
	Upload
	// Download reads a version's bytes.
	Download
	// UploadAnytime uploads outside the collection's backup windows.
	UploadAnytime
)

// roleSet is a set of roles.
type roleSet map[shared.Role]bool

func (s roleSet) has(r shared.Role) bool { return s[r] }

// list returns the roles in shared.AllRoles order.
func (s roleSet) list() []shared.Role {
	out := []shared.Role{}
	for _, r := range shared.AllRoles {
		if s[r] {
			out = append(out, r)
		}
	}
	return out
}

func isSystemAdmin(u shared.User) bool { return u.HasRole(shared.RoleSystemAdmin) }

// Visible reports whether objects of tenantID exist at all for p: only systemAdmin sees across
// tenants. Everything invisible must answer NOT_FOUND, never FORBIDDEN, so that other
// tenants' objects cannot be discovered.
func Visible(p shared.Principal, tenantID string) bool {
	if isSystemAdmin(p.User) {
		return true
	}
	return p.User.TenantID != "" && p.User.TenantID == tenantID
}

// userRoles returns what u holds on a collection of tenantID given its grants there, ignoring
// any token scope. tenantAdmin implies every role of its tenant; systemAdmin implies all.
func userRoles(u shared.User, tenantID string, grants []shared.Role) roleSet {
	set := roleSet{}
	if isSystemAdmin(u) {
		for _, r := range shared.AllRoles {
			set[r] = true
		}
		return set
	}
	if u.TenantID == "" || u.TenantID != tenantID {
		return set
	}
	for _, r := range u.Roles {
		if r != shared.RoleSystemAdmin {
			set[r] = true
		}
	}
	for _, r := range grants {
		if r.CollectionScoped() {
			set[r] = true
		}
	}
	if set[shared.RoleTenantAdmin] {
		set[shared.RoleUserManager] = true
		for _, r := range shared.CollectionRoles {
			set[r] = true
		}
	}
	return set
}

// RolesOn returns the roles p effectively holds on collection collectionID of tenantID, where
// grants are p's user's per-collection grants on it. A scoped token keeps only the roles its
// scope lists for that collection and the user really holds, so a scope never widens.
func RolesOn(p shared.Principal, tenantID, collectionID string, grants []shared.Role) []shared.Role {
	return rolesOn(p, tenantID, collectionID, grants).list()
}

func rolesOn(p shared.Principal, tenantID, collectionID string, grants []shared.Role) roleSet {
	set := userRoles(p.User, tenantID, grants)
	if p.Scope == nil {
		return set
	}
	scoped := roleSet{}
	for _, e := range p.Scope {
		if e.Collection != collectionID {
			continue
		}
		for _, r := range e.Roles {
			if r.CollectionScoped() && set[r] {
				scoped[r] = true
			}
		}
	}
	return scoped
}

// Can reports whether p may do a in tenantID. For collection-level actions (and
// CreateCollection) collectionID names the collection and grants are p's user's grants on it;
// tenant-level actions ignore both. This is the one place rights are computed: the admin API
// and the upload admission path both ask it.
func Can(p shared.Principal, a Action, tenantID, collectionID string, grants []shared.Role) bool {
	switch a {
	case ManageTenants, ManageNodes, ReadReport:
		return p.Scope == nil && isSystemAdmin(p.User)
	case ReadTenant:
		return p.Scope == nil && Visible(p, tenantID)
	}
	if a <= ManageNodes {
		// A scoped token is bound to collections and holds no tenant-level right.
		if p.Scope != nil {
			return false
		}
		tenant := userRoles(p.User, tenantID, nil)
		switch a {
		case RenameTenant, ReadAudit:
			return tenant.has(shared.RoleTenantAdmin)
		case ManageUsers:
			return tenant.has(shared.RoleUserManager)
		}
		return false
	}
	roles := rolesOn(p, tenantID, collectionID, grants)
	switch a {
	case CreateCollection, ManageCollection:
		return roles.has(shared.RoleCollectionManager)
	case ReadCollection:
		return len(roles) > 0
	case Upload:
		return roles.has(shared.RoleBackupUploader)
	case Download:
		return roles.has(shared.RoleBackupDownloader)
	case UploadAnytime:
		return roles.has(shared.RoleUploadsAnytime)
	}
	return false
}

// canAssign reports whether p may hand roles to a user of tenantID (on collectionID with
// p's grants there when collectionID is not ""): only roles p holds itself, never systemAdmin
// unless p is systemAdmin, and tenantAdmin only by a tenantAdmin.
func canAssign(p shared.Principal, tenantID, collectionID string, grants []shared.Role, roles []shared.Role) bool {
	held := rolesOn(p, tenantID, collectionID, grants)
	if collectionID == "" {
		held = userRoles(p.User, tenantID, nil)
		if p.Scope != nil {
			return false
		}
	}
	for _, r := range roles {
		if !held.has(r) {
			return false
		}
	}
	return true
}

// outranks reports whether p's roles in tenantID cover every role of target, so that managing
// target (changing, deactivating, issuing tokens for it) cannot borrow rights p lacks.
func outranks(p shared.Principal, target shared.User) bool {
	if isSystemAdmin(p.User) {
		return true
	}
	if isSystemAdmin(target) {
		return false
	}
	held := userRoles(p.User, target.TenantID, nil)
	return !slices.ContainsFunc(target.Roles, func(r shared.Role) bool { return !held.has(r) })
}

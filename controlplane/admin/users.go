package admin

import (
	"context"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"backuprepo/controlplane/auth"
	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
)

const maxEmailLength = 254

func validateEmail(email string) error {
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" || len(email) > maxEmailLength || strings.ContainsAny(email, "\x00 ") {
		return shared.Errorf(shared.CodeInvalidInput, "%q is not a valid email address", email)
	}
	return nil
}

// validateUserRoles checks role names and that systemAdmin belongs to hosting-org staff only
// and tenant roles to tenant users only.
func validateUserRoles(roles []shared.Role, tenantID string) ([]shared.Role, error) {
	out := []shared.Role{}
	for _, r := range roles {
		if !r.Valid() {
			return nil, shared.Errorf(shared.CodeInvalidInput, "unknown role %q", r)
		}
		if (r == shared.RoleSystemAdmin) != (tenantID == "") {
			if tenantID == "" {
				return nil, shared.Errorf(shared.CodeInvalidInput, "a user without a tenant can only be a systemAdmin")
			}
			return nil, shared.Errorf(shared.CodeInvalidInput, "a user of a tenant cannot be a systemAdmin")
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

func rolesText(roles []shared.Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

// targetUser loads a user the caller wants to manage: NOT_FOUND when the caller's tenant
// cannot see it, FORBIDDEN when the caller may not manage users there or the user holds roles
// the caller lacks.
func (s *Service) targetUser(ctx context.Context, p shared.Principal, id string) (shared.User, error) {
	u, err := s.db.UserByID(ctx, id)
	if err != nil {
		return shared.User{}, err
	}
	if !Visible(p, u.TenantID) {
		return shared.User{}, shared.Errorf(shared.CodeNotFound, "user not found")
	}
	if !Can(p, ManageUsers, u.TenantID, "", nil) || !outranks(p, u) {
		return shared.User{}, forbidden()
	}
	return u, nil
}

// CreateUser creates a user. Without a tenant id the user joins the caller's tenant; users
// without a tenant (hosting-org staff) are created by systemAdmin only.
func (s *Service) CreateUser(ctx context.Context, in shared.UserInput) (shared.User, error) {
	p, err := unscoped(ctx)
	if err != nil {
		return shared.User{}, err
	}
	tenantID := in.TenantID
	if tenantID == "" && !isSystemAdmin(p.User) {
		tenantID = p.User.TenantID
	}
	if tenantID == "" {
		if !isSystemAdmin(p.User) {
			return shared.User{}, forbidden()
		}
	} else {
		if !Visible(p, tenantID) {
			return shared.User{}, shared.Errorf(shared.CodeNotFound, "tenant not found")
		}
		if !Can(p, ManageUsers, tenantID, "", nil) {
			return shared.User{}, forbidden()
		}
	}
	roles, err := validateUserRoles(in.Roles, tenantID)
	if err != nil {
		return shared.User{}, err
	}
	if !canAssign(p, tenantID, "", nil, roles) {
		return shared.User{}, shared.Errorf(shared.CodeForbidden, "you cannot give roles you do not hold")
	}
	if tenantID != "" {
		if _, err := s.db.TenantByID(ctx, tenantID); err != nil {
			return shared.User{}, err
		}
	}
	if err := validateEmail(in.Email); err != nil {
		return shared.User{}, err
	}
	if err := auth.ValidatePassword(in.Password); err != nil {
		return shared.User{}, err
	}
	ips, err := postgres.NormalizeCIDRs(in.AllowedIPs)
	if err != nil {
		return shared.User{}, err
	}
	hash, err := auth.HashPassword(in.Password)
	if err != nil {
		return shared.User{}, err
	}
	return s.db.CreateUser(ctx, shared.User{Email: in.Email, TenantID: tenantID, Roles: roles, Active: true,
		ExpiresAt: in.ExpiresAt, AllowedIPs: ips}, hash, event(ctx, p, "createUser", "user", "", tenantID,
		map[string]string{"email": in.Email, "roles": rolesText(roles)}))
}

// User returns one user: the caller itself, or a user the caller may manage.
func (s *Service) User(ctx context.Context, id string) (shared.User, error) {
	p, err := unscoped(ctx)
	if err != nil {
		return shared.User{}, err
	}
	if id == p.User.ID {
		return s.db.UserByID(ctx, id)
	}
	u, err := s.db.UserByID(ctx, id)
	if err != nil {
		return shared.User{}, err
	}
	if !Visible(p, u.TenantID) {
		return shared.User{}, shared.Errorf(shared.CodeNotFound, "user not found")
	}
	if !Can(p, ManageUsers, u.TenantID, "", nil) {
		return shared.User{}, forbidden()
	}
	return u, nil
}

// Users lists the users of a tenant ordered by id ("" = the caller's tenant, or everyone for
// systemAdmin).
func (s *Service) Users(ctx context.Context, tenantID string, page shared.Page) ([]shared.User, shared.PageInfo, error) {
	p, limit, after, err := listArgs(ctx, page)
	if err != nil {
		return nil, shared.PageInfo{}, err
	}
	q := postgres.UserQuery{TenantID: tenantID, After: after, Limit: limit + 1}
	if tenantID == "" {
		if isSystemAdmin(p.User) {
			q.AllTenants = true
		} else {
			q.TenantID = p.User.TenantID
		}
	}
	if !q.AllTenants {
		if !Visible(p, q.TenantID) {
			return nil, shared.PageInfo{}, shared.Errorf(shared.CodeNotFound, "tenant not found")
		}
		if !Can(p, ManageUsers, q.TenantID, "", nil) {
			return nil, shared.PageInfo{}, forbidden()
		}
	}
	list, err := s.db.ListUsers(ctx, q)
	if err != nil {
		return nil, shared.PageInfo{}, err
	}
	list, info := pageOf(list, limit, func(u shared.User) string { return u.ID })
	return list, info, nil
}

// UpdateUser changes a user. Managers of the tenant may change everything of users whose roles
// they hold themselves, and give only roles they hold; anyone may change their own email.
func (s *Service) UpdateUser(ctx context.Context, id string, patch shared.UserPatch) (shared.User, error) {
	p, err := unscoped(ctx)
	if err != nil {
		return shared.User{}, err
	}
	self := id == p.User.ID
	var target shared.User
	if self {
		if target, err = s.db.UserByID(ctx, id); err != nil {
			return shared.User{}, err
		}
		selfOnly := patch.Roles == nil && patch.Active == nil && patch.ExpiresAt == nil && patch.AllowedIPs == nil
		if !selfOnly && (!Can(p, ManageUsers, target.TenantID, "", nil) || !Visible(p, target.TenantID)) {
			return shared.User{}, shared.Errorf(shared.CodeForbidden, "you may only change your own email")
		}
	} else if target, err = s.targetUser(ctx, p, id); err != nil {
		return shared.User{}, err
	}
	details := map[string]string{}
	var roles []shared.Role
	if patch.Roles != nil {
		if roles, err = validateUserRoles(patch.Roles, target.TenantID); err != nil {
			return shared.User{}, err
		}
		if !canAssign(p, target.TenantID, "", nil, roles) {
			return shared.User{}, shared.Errorf(shared.CodeForbidden, "you cannot give roles you do not hold")
		}
		details["roles"] = rolesText(roles)
	}
	if patch.Email != nil {
		if err := validateEmail(*patch.Email); err != nil {
			return shared.User{}, err
		}
		details["email"] = *patch.Email
	}
	var ips []string
	if patch.AllowedIPs != nil {
		if ips, err = postgres.NormalizeCIDRs(patch.AllowedIPs); err != nil {
			return shared.User{}, err
		}
		details["allowedIPs"] = strings.Join(ips, ",")
	}
	if patch.Active != nil {
		details["active"] = strconv.FormatBool(*patch.Active)
	}
	if patch.ExpiresAt != nil {
		details["expiresAt"] = patch.ExpiresAt.UTC().Format(time.RFC3339)
	}
	ev := event(ctx, p, "updateUser", "user", id, target.TenantID, details)
	u, err := s.db.UpdateUser(ctx, id, func(cur shared.User) (shared.User, error) {
		// The roles may have changed since they were checked above.
		if !self && !outranks(p, cur) {
			return shared.User{}, forbidden()
		}
		if patch.Email != nil {
			cur.Email = *patch.Email
		}
		if patch.Roles != nil {
			cur.Roles = roles
		}
		if patch.Active != nil {
			cur.Active = *patch.Active
		}
		if patch.ExpiresAt != nil {
			cur.ExpiresAt = patch.ExpiresAt
		}
		if patch.AllowedIPs != nil {
			cur.AllowedIPs = ips
		}
		return cur, nil
	}, ev)
	if err != nil {
		return shared.User{}, err
	}
	if patch.Active != nil && !*patch.Active {
		if err := s.auth.RevokeUser(ctx, id); err != nil {
			return shared.User{}, err
		}
	}
	return u, nil
}

// DeactivateUser marks a user inactive and revokes every token it holds.
func (s *Service) DeactivateUser(ctx context.Context, id string) (shared.User, error) {
	p, err := unscoped(ctx)
	if err != nil {
		return shared.User{}, err
	}
	target, err := s.targetUser(ctx, p, id)
	if err != nil {
		return shared.User{}, err
	}
	ev := event(ctx, p, "deactivateUser", "user", id, target.TenantID, nil)
	u, err := s.db.UpdateUser(ctx, id, func(cur shared.User) (shared.User, error) {
		if !outranks(p, cur) {
			return shared.User{}, forbidden()
		}
		cur.Active = false
		return cur, nil
	}, ev)
	if err != nil {
		return shared.User{}, err
	}
	if err := s.auth.RevokeUser(ctx, id); err != nil {
		return shared.User{}, err
	}
	return u, nil
}

// ChangePassword sets a new password: one's own (the old one must be given) or, for managers,
// another user's of their tenant.
func (s *Service) ChangePassword(ctx context.Context, userID, oldPassword, newPassword string) error {
	p, err := unscoped(ctx)
	if err != nil {
		return err
	}
	target := p.User
	if userID == "" || userID == p.User.ID {
		// By id first: the email may have changed since the principal was read.
		cur, err := s.db.UserByID(ctx, p.User.ID)
		if err != nil {
			return err
		}
		byEmail, hash, err := s.db.UserByEmail(ctx, cur.Email)
		if err != nil {
			return err
		}
		if byEmail.ID != cur.ID {
			return shared.Errorf(shared.CodeConflict, "the account changed during the request; try again")
		}
		ok, err := auth.CheckPassword(hash, oldPassword)
		if err != nil || !ok {
			return shared.Errorf(shared.CodeInvalidCredentials, "the old password is wrong")
		}
	} else if target, err = s.targetUser(ctx, p, userID); err != nil {
		return err
	}
	if err := auth.ValidatePassword(newPassword); err != nil {
		return err
	}
	hash, err := auth.HashPassword(newPassword)
	if err != nil {
		return err
	}
	return s.db.SetPassword(ctx, target.ID, hash, event(ctx, p, "changePassword", "user", target.ID, target.TenantID, nil))
}

// callerGrants returns the caller's own grants on a collection.
func (s *Service) callerGrants(ctx context.Context, p shared.Principal, collectionID string) ([]shared.Role, error) {
	return s.db.GrantRoles(ctx, collectionID, p.User.ID)
}

// grantScope loads the collection and user of a grant change and checks that the caller may
// change grants there: userManager of the tenant or collectionManager of the collection.
func (s *Service) grantScope(ctx context.Context, p shared.Principal, collectionID, userID string) (shared.Collection, shared.User, []shared.Role, error) {
	c, err := s.visibleCollection(ctx, p, collectionID)
	if err != nil {
		return shared.Collection{}, shared.User{}, nil, err
	}
	u, err := s.db.UserByID(ctx, userID)
	if err != nil {
		return shared.Collection{}, shared.User{}, nil, err
	}
	if !Visible(p, u.TenantID) {
		return shared.Collection{}, shared.User{}, nil, shared.Errorf(shared.CodeNotFound, "user not found")
	}
	mine, err := s.callerGrants(ctx, p, c.ID)
	if err != nil {
		return shared.Collection{}, shared.User{}, nil, err
	}
	if !Can(p, ManageUsers, c.TenantID, "", nil) && !Can(p, ManageCollection, c.TenantID, c.ID, mine) {
		return shared.Collection{}, shared.User{}, nil, forbidden()
	}
	if u.TenantID != c.TenantID {
		return shared.Collection{}, shared.User{}, nil, shared.Errorf(shared.CodeInvalidInput, "the user and the collection belong to different tenants")
	}
	return c, u, mine, nil
}

// GrantCollectionAccess sets a user's roles on one collection of the same tenant. Only
// collection roles can be granted, and only roles the caller holds on that collection.
func (s *Service) GrantCollectionAccess(ctx context.Context, collectionID, userID string, roles []shared.Role) (shared.Grant, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.Grant{}, err
	}
	c, u, mine, err := s.grantScope(ctx, p, collectionID, userID)
	if err != nil {
		return shared.Grant{}, err
	}
	if len(roles) == 0 {
		return shared.Grant{}, shared.Errorf(shared.CodeInvalidInput, "give at least one role; revoke access to remove them all")
	}
	clean := []shared.Role{}
	for _, r := range roles {
		if !r.CollectionScoped() {
			return shared.Grant{}, shared.Errorf(shared.CodeInvalidInput, "role %q cannot be granted on a collection", r)
		}
		if !slices.Contains(clean, r) {
			clean = append(clean, r)
		}
	}
	if !canAssign(p, c.TenantID, c.ID, mine, clean) {
		return shared.Grant{}, shared.Errorf(shared.CodeForbidden, "you cannot give roles you do not hold")
	}
	ev := event(ctx, p, "grantCollectionAccess", "collection", c.ID, c.TenantID, map[string]string{
		"userId": u.ID, "roles": rolesText(clean)})
	return s.db.PutGrant(ctx, shared.Grant{CollectionID: c.ID, UserID: u.ID, Roles: clean}, ev)
}

// RevokeCollectionAccess removes a user's grant on a collection; the caller must hold every
// role the grant gives.
func (s *Service) RevokeCollectionAccess(ctx context.Context, collectionID, userID string) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	c, u, mine, err := s.grantScope(ctx, p, collectionID, userID)
	if err != nil {
		return err
	}
	existing, err := s.db.GrantRoles(ctx, c.ID, u.ID)
	if err != nil {
		return err
	}
	if len(existing) == 0 {
		return shared.Errorf(shared.CodeNotFound, "grant not found")
	}
	if !canAssign(p, c.TenantID, c.ID, mine, existing) {
		return shared.Errorf(shared.CodeForbidden, "the grant gives roles you do not hold")
	}
	ev := event(ctx, p, "revokeCollectionAccess", "collection", c.ID, c.TenantID, map[string]string{
		"userId": u.ID, "roles": rolesText(existing)})
	return s.db.DeleteGrant(ctx, c.ID, u.ID, ev)
}

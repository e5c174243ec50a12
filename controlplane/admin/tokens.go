package admin

import (
	"context"
	"strconv"
	"strings"

	"backuprepo/shared"
)

// Tokens lists a user's tokens ("" = the caller's), never the token strings.
func (s *Service) Tokens(ctx context.Context, userID string) ([]shared.TokenRecord, error) {
	p, err := unscoped(ctx)
	if err != nil {
		return nil, err
	}
	if userID != "" && userID != p.User.ID {
		u, err := s.db.UserByID(ctx, userID)
		if err != nil {
			return nil, err
		}
		if !Visible(p, u.TenantID) {
			return nil, shared.Errorf(shared.CodeNotFound, "user not found")
		}
		if !Can(p, ManageUsers, u.TenantID, "", nil) {
			return nil, forbidden()
		}
	} else {
		userID = p.User.ID
	}
	return s.db.ListTokens(ctx, userID)
}

// IssueToken issues a token for the caller or, for managers of its tenant, for another user.
// A scope may only name collections of that user's tenant and roles the user holds on them.
func (s *Service) IssueToken(ctx context.Context, req shared.TokenRequest) (shared.IssuedToken, error) {
	p, err := unscoped(ctx)
	if err != nil {
		return shared.IssuedToken{}, err
	}
	target := p.User
	if req.UserID != "" && req.UserID != p.User.ID {
		if target, err = s.targetUser(ctx, p, req.UserID); err != nil {
			return shared.IssuedToken{}, err
		}
	}
	owner := shared.Principal{User: target}
	names := make([]string, 0, len(req.Scope))
	for _, e := range req.Scope {
		c, err := s.db.CollectionByID(ctx, e.Collection)
		if err != nil {
			return shared.IssuedToken{}, err
		}
		if !Visible(owner, c.TenantID) || !Visible(p, c.TenantID) {
			return shared.IssuedToken{}, shared.Errorf(shared.CodeNotFound, "collection not found")
		}
		grants, err := s.db.GrantRoles(ctx, c.ID, target.ID)
		if err != nil {
			return shared.IssuedToken{}, err
		}
		held := rolesOn(owner, c.TenantID, c.ID, grants)
		for _, r := range e.Roles {
			if !r.CollectionScoped() {
				return shared.IssuedToken{}, shared.Errorf(shared.CodeInvalidInput, "scope: role %q cannot be granted on a collection", r)
			}
			if !held.has(r) {
				return shared.IssuedToken{}, shared.Errorf(shared.CodeForbidden, "scope: the user does not hold %s on collection %s", r, c.ID)
			}
		}
		names = append(names, c.ID)
	}
	return s.auth.Issue(ctx, target, req, func(rec shared.TokenRecord) shared.AuditEvent {
		return event(ctx, p, "issueToken", "token", rec.ID, target.TenantID, map[string]string{
			"userId": target.ID, "description": req.Description, "once": strconv.FormatBool(req.Once),
			"expiresAt": rec.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"), "scope": strings.Join(names, ",")})
	})
}

// RevokeToken revokes one of the caller's tokens or, for managers, a token of a user they
// manage.
func (s *Service) RevokeToken(ctx context.Context, id string) (shared.TokenRecord, error) {
	p, err := unscoped(ctx)
	if err != nil {
		return shared.TokenRecord{}, err
	}
	rec, err := s.db.TokenByID(ctx, id)
	if err != nil {
		return shared.TokenRecord{}, err
	}
	if rec.UserID != p.User.ID {
		owner, err := s.db.UserByID(ctx, rec.UserID)
		if err != nil {
			return shared.TokenRecord{}, err
		}
		if !Visible(p, owner.TenantID) {
			return shared.TokenRecord{}, shared.Errorf(shared.CodeNotFound, "token not found")
		}
		if !Can(p, ManageUsers, owner.TenantID, "", nil) || !outranks(p, owner) {
			return shared.TokenRecord{}, forbidden()
		}
	}
	return s.auth.Revoke(ctx, id, event(ctx, p, "revokeToken", "token", rec.ID, rec.TenantID,
		map[string]string{"userId": rec.UserID}))
}

package admin

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
)

var slugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

const maxNameLength = 200

func validateTenantName(name string) error {
	if strings.TrimSpace(name) == "" || utf8.RuneCountInString(name) > maxNameLength || !utf8.ValidString(name) {
		return shared.Errorf(shared.CodeInvalidInput, "name must be 1 to %d characters", maxNameLength)
	}
	return nil
}

// checkQuota refuses a tenant quota that the tenant's collections already exceed.
func checkQuota(quota int64, load postgres.TenantLoad) error {
	if quota < 0 {
		return shared.Errorf(shared.CodeInvalidInput, "quota must not be negative")
	}
	if quota == 0 {
		return nil
	}
	if load.Unlimited > 0 {
		return shared.Errorf(shared.CodeTenantQuotaExceeded, "the tenant has %d collections without a size limit; a quota needs every collection limited", load.Unlimited)
	}
	if load.Declared > quota {
		return shared.Errorf(shared.CodeTenantQuotaExceeded, "the tenant's collections already declare %d bytes, more than the quota %d", load.Declared, quota)
	}
	return nil
}

// CreateTenant creates a tenant (systemAdmin only).
func (s *Service) CreateTenant(ctx context.Context, in shared.TenantInput) (shared.Tenant, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.Tenant{}, err
	}
	if !Can(p, ManageTenants, "", "", nil) {
		return shared.Tenant{}, forbidden()
	}
	if err := validateTenantName(in.Name); err != nil {
		return shared.Tenant{}, err
	}
	if !slugPattern.MatchString(in.Slug) {
		return shared.Tenant{}, shared.Errorf(shared.CodeInvalidInput, "slug must match %s", slugPattern)
	}
	if in.Quota < 0 {
		return shared.Tenant{}, shared.Errorf(shared.CodeInvalidInput, "quota must not be negative")
	}
	ev := event(ctx, p, "createTenant", "tenant", "", "", map[string]string{
		"slug": in.Slug, "quota": itoa(in.Quota)})
	return s.db.CreateTenant(ctx, shared.Tenant{Name: in.Name, Slug: in.Slug, Quota: in.Quota}, ev)
}

// Tenant returns one tenant: any for systemAdmin, the caller's own otherwise.
func (s *Service) Tenant(ctx context.Context, id string) (shared.Tenant, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.Tenant{}, err
	}
	if !Visible(p, id) {
		return shared.Tenant{}, shared.Errorf(shared.CodeNotFound, "tenant not found")
	}
	if !Can(p, ReadTenant, id, "", nil) {
		return shared.Tenant{}, forbidden()
	}
	return s.db.TenantByID(ctx, id)
}

// Tenants lists tenants ordered by slug: all for systemAdmin, the caller's own otherwise.
func (s *Service) Tenants(ctx context.Context, page shared.Page) ([]shared.Tenant, shared.PageInfo, error) {
	p, limit, after, err := listArgs(ctx, page)
	if err != nil {
		return nil, shared.PageInfo{}, err
	}
	var list []shared.Tenant
	if isSystemAdmin(p.User) {
		if list, err = s.db.ListTenants(ctx, after, limit+1); err != nil {
			return nil, shared.PageInfo{}, err
		}
	} else {
		list = []shared.Tenant{}
		if p.User.TenantID != "" {
			t, err := s.db.TenantByID(ctx, p.User.TenantID)
			if err != nil {
				return nil, shared.PageInfo{}, err
			}
			if t.Slug > after {
				list = append(list, t)
			}
		}
	}
	list, info := pageOf(list, limit, func(t shared.Tenant) string { return t.Slug })
	return list, info, nil
}

// UpdateTenant renames a tenant (tenantAdmin of it or systemAdmin) or changes its quota or
// suspension (systemAdmin only). The quota may not fall below what its collections declare.
func (s *Service) UpdateTenant(ctx context.Context, id string, patch shared.TenantPatch) (shared.Tenant, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.Tenant{}, err
	}
	if !Visible(p, id) {
		return shared.Tenant{}, shared.Errorf(shared.CodeNotFound, "tenant not found")
	}
	if patch.Quota != nil || patch.Suspended != nil {
		if !Can(p, ManageTenants, id, "", nil) {
			return shared.Tenant{}, forbidden()
		}
	} else if !Can(p, RenameTenant, id, "", nil) {
		return shared.Tenant{}, forbidden()
	}
	details := map[string]string{}
	if patch.Name != nil {
		if err := validateTenantName(*patch.Name); err != nil {
			return shared.Tenant{}, err
		}
		details["name"] = *patch.Name
	}
	if patch.Quota != nil {
		if *patch.Quota < 0 {
			return shared.Tenant{}, shared.Errorf(shared.CodeInvalidInput, "quota must not be negative")
		}
		details["quota"] = itoa(*patch.Quota)
	}
	if patch.Suspended != nil {
		details["suspended"] = strconv.FormatBool(*patch.Suspended)
	}
	ev := event(ctx, p, "updateTenant", "tenant", id, id, details)
	return s.db.UpdateTenant(ctx, id, func(cur shared.Tenant, load postgres.TenantLoad) (shared.Tenant, error) {
		if patch.Name != nil {
			cur.Name = *patch.Name
		}
		if patch.Quota != nil {
			if err := checkQuota(*patch.Quota, load); err != nil {
				return shared.Tenant{}, err
			}
			cur.Quota = *patch.Quota
		}
		if patch.Suspended != nil {
			cur.Suspended = *patch.Suspended
		}
		return cur, nil
	}, ev)
}

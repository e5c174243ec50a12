package admin

import (
	"context"
	"strconv"

	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
)

// AuditLog lists audit events newest first: any tenant's or all ("") for systemAdmin, the own
// tenant's for tenantAdmin.
func (s *Service) AuditLog(ctx context.Context, tenantID string, page shared.Page) ([]shared.AuditEvent, shared.PageInfo, error) {
	p, limit, cursor, err := listArgs(ctx, page)
	if err != nil {
		return nil, shared.PageInfo{}, err
	}
	var before int64
	if cursor != "" {
		if before, err = strconv.ParseInt(cursor, 10, 64); err != nil || before <= 0 {
			return nil, shared.PageInfo{}, shared.Errorf(shared.CodeInvalidInput, "invalid cursor")
		}
	}
	if !isSystemAdmin(p.User) {
		if tenantID == "" {
			tenantID = p.User.TenantID
		}
		if !Visible(p, tenantID) {
			return nil, shared.PageInfo{}, shared.Errorf(shared.CodeNotFound, "tenant not found")
		}
		if !Can(p, ReadAudit, tenantID, "", nil) {
			return nil, shared.PageInfo{}, forbidden()
		}
	}
	list, err := s.db.ListAudit(ctx, postgres.AuditQuery{TenantID: tenantID, BeforeID: before, Limit: limit + 1})
	if err != nil {
		return nil, shared.PageInfo{}, err
	}
	list, info := pageOf(list, limit, func(e shared.AuditEvent) string { return itoa(e.ID) })
	return list, info, nil
}

// Report returns the installation-wide usage numbers (systemAdmin only).
func (s *Service) Report(ctx context.Context) (shared.Report, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.Report{}, err
	}
	if !Can(p, ReadReport, "", "", nil) {
		return shared.Report{}, forbidden()
	}
	return s.db.Report(ctx)
}

package admin_test

import (
	"context"
	"encoding/json"
	"testing"

	"backuprepo/shared"
)

// snapshot is every row that belongs to a tenant, serialised, so that "changes nothing" is
// checked against the database itself.
func (e *env) snapshot(tenantID string) string {
	e.t.Helper()
	var out []string
	for _, q := range []string{
		"SELECT to_jsonb(t) FROM tenants t WHERE id = $1",
		"SELECT to_jsonb(u) FROM users u WHERE tenant_id = $1 ORDER BY id",
		"SELECT to_jsonb(c) FROM collections c WHERE tenant_id = $1 ORDER BY id",
		"SELECT to_jsonb(g) FROM collection_grants g JOIN collections c ON c.id = g.collection_id WHERE c.tenant_id = $1 ORDER BY g.user_id",
		"SELECT to_jsonb(k) - 'last_used_ip' - 'last_used_at' FROM tokens k WHERE tenant_id = $1 ORDER BY id",
		"SELECT to_jsonb(v) FROM versions v JOIN collections c ON c.id = v.collection_id WHERE c.tenant_id = $1 ORDER BY v.id",
	} {
		rows, err := e.db.Pool.Query(context.Background(), q, tenantID)
		if err != nil {
			e.t.Fatal(err)
		}
		for rows.Next() {
			var j []byte
			if err := rows.Scan(&j); err != nil {
				e.t.Fatal(err)
			}
			out = append(out, string(j))
		}
		rows.Close()
	}
	b, _ := json.Marshal(out)
	return string(b)
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ta, tb := e.tenant("alpha", 0), e.tenant("beta", 0)

	aAdmin := e.user(ta.ID, "admin@alpha.org", shared.RoleTenantAdmin)
	aUser := e.user(ta.ID, "up@alpha.org", shared.RoleBackupUploader)
	aColl := e.collection(ta.ID, "alpha-db")
	e.version(aColl.ID, 1, 100, aColl.CreatedAt)
	e.grant(aColl.ID, aUser.ID, shared.RoleBackupDownloader)
	aTok, err := e.svc.IssueToken(e.as(aAdmin, nil), shared.TokenRequest{UserID: aUser.ID, Description: "alpha upload"})
	if err != nil {
		t.Fatal(err)
	}
	e.collection(tb.ID, "beta-db")

	callers := map[string]shared.User{
		"tenantAdmin":       e.user(tb.ID, "admin@beta.org", shared.RoleTenantAdmin),
		"userManager":       e.user(tb.ID, "um@beta.org", shared.RoleUserManager, shared.RoleBackupUploader),
		"collectionManager": e.user(tb.ID, "cm@beta.org", shared.RoleCollectionManager),
		"backupUploader":    e.user(tb.ID, "up@beta.org", shared.RoleBackupUploader),
		"backupDownloader":  e.user(tb.ID, "down@beta.org", shared.RoleBackupDownloader),
		"uploadsAnytime":    e.user(tb.ID, "any@beta.org", shared.RoleUploadsAnytime),
		"noRole":            e.user(tb.ID, "none@beta.org"),
	}
	name := "stolen"
	email := "stolen@beta.org"
	size := int64(2e7)
	s := e.svc
	ops := map[string]func(ctx context.Context, self shared.User) error{
		"tenant": func(ctx context.Context, _ shared.User) error { _, err := s.Tenant(ctx, ta.ID); return err },
		"updateTenant": func(ctx context.Context, _ shared.User) error {
			_, err := s.UpdateTenant(ctx, ta.ID, shared.TenantPatch{Name: &name})
			return err
		},
		"users": func(ctx context.Context, _ shared.User) error {
			_, _, err := s.Users(ctx, ta.ID, shared.Page{})
			return err
		},
		"user": func(ctx context.Context, _ shared.User) error { _, err := s.User(ctx, aUser.ID); return err },
		"createUser": func(ctx context.Context, _ shared.User) error {
			_, err := s.CreateUser(ctx, shared.UserInput{Email: "x@alpha.org", Password: testPassword, TenantID: ta.ID})
			return err
		},
		"updateUser": func(ctx context.Context, _ shared.User) error {
			_, err := s.UpdateUser(ctx, aUser.ID, shared.UserPatch{Email: &email})
			return err
		},
		"deactivateUser": func(ctx context.Context, _ shared.User) error { _, err := s.DeactivateUser(ctx, aUser.ID); return err },
		"changePassword": func(ctx context.Context, _ shared.User) error {
			return s.ChangePassword(ctx, aUser.ID, "", "a brand new password")
		},
		"grantOnTheirs": func(ctx context.Context, self shared.User) error {
			_, err := s.GrantCollectionAccess(ctx, aColl.ID, self.ID, []shared.Role{shared.RoleBackupDownloader})
			return err
		},
		"grantTheirUser": func(ctx context.Context, _ shared.User) error {
			_, err := s.GrantCollectionAccess(ctx, aColl.ID, aUser.ID, []shared.Role{shared.RoleBackupUploader})
			return err
		},
		"revokeAccess": func(ctx context.Context, _ shared.User) error {
			return s.RevokeCollectionAccess(ctx, aColl.ID, aUser.ID)
		},
		"tokens": func(ctx context.Context, _ shared.User) error { _, err := s.Tokens(ctx, aUser.ID); return err },
		"issueForThem": func(ctx context.Context, _ shared.User) error {
			_, err := s.IssueToken(ctx, shared.TokenRequest{UserID: aUser.ID})
			return err
		},
		"issueScopedToTheirs": func(ctx context.Context, _ shared.User) error {
			_, err := s.IssueToken(ctx, shared.TokenRequest{Scope: []shared.ScopeEntry{{Collection: aColl.ID, Roles: []shared.Role{shared.RoleBackupUploader}}}})
			return err
		},
		"revokeToken": func(ctx context.Context, _ shared.User) error {
			_, err := s.RevokeToken(ctx, aTok.Record.ID)
			return err
		},
		"collectionsOfA": func(ctx context.Context, _ shared.User) error {
			_, _, err := s.Collections(ctx, shared.CollectionFilter{TenantID: ta.ID})
			return err
		},
		"collection": func(ctx context.Context, _ shared.User) error { _, err := s.Collection(ctx, aColl.ID); return err },
		"createCollection": func(ctx context.Context, _ shared.User) error {
			_, err := s.CreateCollection(ctx, collectionInput(ta.ID, "planted"))
			return err
		},
		"updateCollection": func(ctx context.Context, _ shared.User) error {
			_, err := s.UpdateCollection(ctx, aColl.ID, shared.CollectionPatch{MaxCollectionSize: &size})
			return err
		},
		"deleteCollection": func(ctx context.Context, _ shared.User) error { return s.DeleteCollection(ctx, aColl.ID, false) },
		"forceDelete":      func(ctx context.Context, _ shared.User) error { return s.DeleteCollection(ctx, aColl.ID, true) },
		"versions":         func(ctx context.Context, _ shared.User) error { _, err := s.Versions(ctx, aColl.ID); return err },
		"usage":            func(ctx context.Context, _ shared.User) error { _, err := s.Usage(ctx, aColl.ID); return err },
		"grants":           func(ctx context.Context, _ shared.User) error { _, err := s.Grants(ctx, aColl.ID); return err },
		"health":           func(ctx context.Context, _ shared.User) error { _, err := s.Health(ctx, aColl.ID); return err },
		"integrity":        func(ctx context.Context, _ shared.User) error { _, err := s.Integrity(ctx, aColl.ID); return err },
		"nodeCollections":  func(ctx context.Context, _ shared.User) error { _, err := s.NodeCollections(ctx, e.node); return err },
		"dataNodes":        func(ctx context.Context, _ shared.User) error { _, err := s.DataNodes(ctx); return err },
		"drain":            func(ctx context.Context, _ shared.User) error { _, err := s.DrainDataNode(ctx, e.node); return err },
		"auditLog": func(ctx context.Context, _ shared.User) error {
			_, _, err := s.AuditLog(ctx, ta.ID, shared.Page{})
			return err
		},
		"report": func(ctx context.Context, _ shared.User) error { _, err := s.Report(ctx); return err },
	}

	// Sessions first: issuing their tokens writes audit rows of its own.
	ctxs := map[string]context.Context{}
	for role, u := range callers {
		ctxs[role] = e.as(u, nil)
	}
	before, audits := e.snapshot(ta.ID), e.auditCount()
	for role, u := range callers {
		ctx := ctxs[role]
		for op, f := range ops {
			wantCode(t, role+" "+op, f(ctx, u), shared.CodeNotFound, shared.CodeForbidden)
		}
		// Lists without a tenant give the caller's own tenant only.
		if list, _, err := s.Collections(ctx, shared.CollectionFilter{}); err == nil {
			for _, c := range list {
				if c.TenantID != tb.ID {
					t.Errorf("%s: collections lists %s of another tenant", role, c.ID)
				}
			}
		}
		if list, _, err := s.Tenants(ctx, shared.Page{}); err != nil || len(list) != 1 || list[0].ID != tb.ID {
			t.Errorf("%s: tenants = %v, %v; want only beta", role, list, err)
		}
		if list, _, err := s.Users(ctx, "", shared.Page{}); err == nil {
			for _, u := range list {
				if u.TenantID != tb.ID {
					t.Errorf("%s: users lists %s of another tenant", role, u.Email)
				}
			}
		}
		if list, _, err := s.AuditLog(ctx, "", shared.Page{First: 1000}); err == nil {
			for _, ev := range list {
				if ev.TenantID != tb.ID {
					t.Errorf("%s: audit log shows %s of tenant %s", role, ev.Action, ev.TenantID)
				}
			}
		}
	}
	if after := e.snapshot(ta.ID); after != before {
		t.Errorf("tenant A changed:\nbefore %s\nafter  %s", before, after)
	}
	if n := e.auditCount(); n != audits {
		t.Errorf("audit rows went from %d to %d although every call was refused", audits, n)
	}
	// The same calls by A's own admin do work, so the refusals above are about the tenant.
	aCtx := e.as(aAdmin, nil)
	for _, op := range []string{"tenant", "users", "user", "tokens", "collection", "versions", "usage", "grants", "health", "integrity", "auditLog", "updateCollection"} {
		wantCode(t, "alpha admin "+op, ops[op](aCtx, aAdmin), "")
	}
}

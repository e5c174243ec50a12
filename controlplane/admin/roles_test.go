package admin_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"backuprepo/controlplane/admin"
	"backuprepo/shared"
)

func TestCanUploadRoles(t *testing.T) {
	t.Parallel()
	const tenant, coll = "11111111-1111-1111-1111-111111111111", "c1"
	user := func(tenantID string, roles ...shared.Role) shared.Principal {
		return shared.Principal{User: shared.User{ID: "u", TenantID: tenantID, Roles: roles, Active: true}}
	}
	scoped := func(p shared.Principal, roles ...shared.Role) shared.Principal {
		p.Scope = []shared.ScopeEntry{{Collection: coll, Roles: roles}}
		return p
	}
	cases := []struct {
		name   string
		p      shared.Principal
		grants []shared.Role
		a      admin.Action
		want   bool
	}{
		{"uploader uploads", user(tenant, shared.RoleBackupUploader), nil, admin.Upload, true},
		{"uploader does not download", user(tenant, shared.RoleBackupUploader), nil, admin.Download, false},
		{"uploader reads", user(tenant, shared.RoleBackupUploader), nil, admin.ReadCollection, true},
		{"uploader does not manage", user(tenant, shared.RoleBackupUploader), nil, admin.ManageCollection, false},
		{"downloader downloads", user(tenant, shared.RoleBackupDownloader), nil, admin.Download, true},
		{"downloader does not upload", user(tenant, shared.RoleBackupDownloader), nil, admin.Upload, false},
		{"anytime is not upload", user(tenant, shared.RoleUploadsAnytime), nil, admin.Upload, false},
		{"anytime bypasses windows", user(tenant, shared.RoleUploadsAnytime), nil, admin.UploadAnytime, true},
		{"per-collection grant uploads", user(tenant), []shared.Role{shared.RoleBackupUploader}, admin.Upload, true},
		{"grant of tenantAdmin is ignored", user(tenant), []shared.Role{shared.RoleTenantAdmin}, admin.Upload, false},
		{"no role reads nothing", user(tenant), nil, admin.ReadCollection, false},
		{"other tenant's uploader", user("22222222-2222-2222-2222-222222222222", shared.RoleBackupUploader), nil, admin.Upload, false},
		{"tenantAdmin uploads", user(tenant, shared.RoleTenantAdmin), nil, admin.Upload, true},
		{"tenantAdmin bypasses windows", user(tenant, shared.RoleTenantAdmin), nil, admin.UploadAnytime, true},
		{"systemAdmin anywhere", user("", shared.RoleSystemAdmin), nil, admin.Upload, true},
		{"scope keeps listed role", scoped(user(tenant, shared.RoleTenantAdmin), shared.RoleBackupUploader), nil, admin.Upload, true},
		{"scope drops unlisted role", scoped(user(tenant, shared.RoleTenantAdmin), shared.RoleBackupUploader), nil, admin.Download, false},
		{"scope never widens", scoped(user(tenant, shared.RoleBackupDownloader), shared.RoleBackupUploader), nil, admin.Upload, false},
		{"scope on another collection", func() shared.Principal {
			p := user(tenant, shared.RoleBackupUploader)
			p.Scope = []shared.ScopeEntry{{Collection: "other", Roles: []shared.Role{shared.RoleBackupUploader}}}
			return p
		}(), nil, admin.Upload, false},
		{"scoped token manages no users", scoped(user(tenant, shared.RoleTenantAdmin), shared.RoleCollectionManager), nil, admin.ManageUsers, false},
		{"userManager manages users", user(tenant, shared.RoleUserManager), nil, admin.ManageUsers, true},
		{"collectionManager does not manage users", user(tenant, shared.RoleCollectionManager), nil, admin.ManageUsers, false},
	}
	for _, c := range cases {
		if got := admin.Can(c.p, c.a, tenant, coll, c.grants); got != c.want {
			t.Errorf("%s: Can = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRoleMatrix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tn := e.tenant("gamma", 0)
	c1, c2 := e.collection(tn.ID, "c1"), e.collection(tn.ID, "c2")
	cmC1 := e.user(tn.ID, "cm-c1@gamma.org")
	e.grant(c1.ID, cmC1.ID, shared.RoleCollectionManager)
	roles := []struct {
		name string
		u    shared.User
	}{
		{"systemAdmin", e.admin},
		{"tenantAdmin", e.user(tn.ID, "admin@gamma.org", shared.RoleTenantAdmin)},
		{"userManager", e.user(tn.ID, "um@gamma.org", shared.RoleUserManager)},
		{"collectionManager", e.user(tn.ID, "cm@gamma.org", shared.RoleCollectionManager)},
		{"collectionManager@c1", cmC1},
		{"backupUploader", e.user(tn.ID, "up@gamma.org", shared.RoleBackupUploader)},
		{"backupDownloader", e.user(tn.ID, "down@gamma.org", shared.RoleBackupDownloader)},
		{"uploadsAnytime", e.user(tn.ID, "any@gamma.org", shared.RoleUploadsAnytime)},
	}
	victim := e.user(tn.ID, "victim@gamma.org", shared.RoleBackupUploader)
	s := e.svc
	n := 0
	uniq := func() string { n++; return fmt.Sprint(n) }
	newName, quota := "Gamma", int64(1e12)
	desc := "changed"
	type op struct {
		name  string
		f     func(ctx context.Context) error
		allow []string
	}
	all := []string{"systemAdmin", "tenantAdmin", "userManager", "collectionManager", "collectionManager@c1", "backupUploader", "backupDownloader", "uploadsAnytime"}
	ops := []op{
		{"createTenant", func(ctx context.Context) error {
			_, err := s.CreateTenant(ctx, shared.TenantInput{Name: "x", Slug: "t" + uniq()})
			return err
		}, []string{"systemAdmin"}},
		{"renameTenant", func(ctx context.Context) error {
			_, err := s.UpdateTenant(ctx, tn.ID, shared.TenantPatch{Name: &newName})
			return err
		}, []string{"systemAdmin", "tenantAdmin"}},
		{"setQuota", func(ctx context.Context) error {
			_, err := s.UpdateTenant(ctx, tn.ID, shared.TenantPatch{Quota: &quota})
			return err
		}, []string{"systemAdmin"}},
		{"readTenant", func(ctx context.Context) error { _, err := s.Tenant(ctx, tn.ID); return err }, all},
		{"listUsers", func(ctx context.Context) error { _, _, err := s.Users(ctx, tn.ID, shared.Page{}); return err },
			[]string{"systemAdmin", "tenantAdmin", "userManager"}},
		{"createPlainUser", func(ctx context.Context) error {
			_, err := s.CreateUser(ctx, shared.UserInput{Email: "u" + uniq() + "@gamma.org", Password: testPassword, TenantID: tn.ID})
			return err
		}, []string{"systemAdmin", "tenantAdmin", "userManager"}},
		{"createUploader", func(ctx context.Context) error {
			_, err := s.CreateUser(ctx, shared.UserInput{Email: "u" + uniq() + "@gamma.org", Password: testPassword, TenantID: tn.ID,
				Roles: []shared.Role{shared.RoleBackupUploader}})
			return err
		}, []string{"systemAdmin", "tenantAdmin"}}, // userManager does not hold backupUploader
		{"createTenantAdmin", func(ctx context.Context) error {
			_, err := s.CreateUser(ctx, shared.UserInput{Email: "u" + uniq() + "@gamma.org", Password: testPassword, TenantID: tn.ID,
				Roles: []shared.Role{shared.RoleTenantAdmin}})
			return err
		}, []string{"systemAdmin", "tenantAdmin"}},
		{"deactivateUploader", func(ctx context.Context) error {
			u := e.user(tn.ID, "d"+uniq()+"@gamma.org", shared.RoleBackupUploader)
			_, err := s.DeactivateUser(ctx, u.ID)
			return err
		}, []string{"systemAdmin", "tenantAdmin"}}, // a userManager may not manage users with roles it lacks
		{"deactivatePlain", func(ctx context.Context) error {
			u := e.user(tn.ID, "d"+uniq()+"@gamma.org")
			_, err := s.DeactivateUser(ctx, u.ID)
			return err
		}, []string{"systemAdmin", "tenantAdmin", "userManager"}},
		{"tokensOfOther", func(ctx context.Context) error { _, err := s.Tokens(ctx, victim.ID); return err },
			[]string{"systemAdmin", "tenantAdmin", "userManager"}},
		{"issueForOther", func(ctx context.Context) error {
			_, err := s.IssueToken(ctx, shared.TokenRequest{UserID: victim.ID})
			return err
		}, []string{"systemAdmin", "tenantAdmin"}},
		{"ownTokens", func(ctx context.Context) error { _, err := s.Tokens(ctx, ""); return err }, all},
		{"issueOwn", func(ctx context.Context) error {
			_, err := s.IssueToken(ctx, shared.TokenRequest{Description: "mine"})
			return err
		}, all},
		{"createCollection", func(ctx context.Context) error {
			_, err := s.CreateCollection(ctx, collectionInput(tn.ID, "n"+uniq()))
			return err
		}, []string{"systemAdmin", "tenantAdmin", "collectionManager"}},
		{"updateC1", func(ctx context.Context) error {
			_, err := s.UpdateCollection(ctx, c1.ID, shared.CollectionPatch{Description: &desc})
			return err
		}, []string{"systemAdmin", "tenantAdmin", "collectionManager", "collectionManager@c1"}},
		{"updateC2", func(ctx context.Context) error {
			_, err := s.UpdateCollection(ctx, c2.ID, shared.CollectionPatch{Description: &desc})
			return err
		}, []string{"systemAdmin", "tenantAdmin", "collectionManager"}},
		{"deleteEmpty", func(ctx context.Context) error {
			c := e.collection(tn.ID, "del"+uniq())
			return s.DeleteCollection(ctx, c.ID, false)
		}, []string{"systemAdmin", "tenantAdmin", "collectionManager"}},
		{"forceDelete", func(ctx context.Context) error {
			c := e.collection(tn.ID, "del"+uniq())
			e.version(c.ID, 1, 10, c.CreatedAt)
			return s.DeleteCollection(ctx, c.ID, true)
		}, []string{"systemAdmin"}},
		{"readC1", func(ctx context.Context) error { _, err := s.Collection(ctx, c1.ID); return err }, all},
		{"readC2", func(ctx context.Context) error { _, err := s.Versions(ctx, c2.ID); return err },
			[]string{"systemAdmin", "tenantAdmin", "userManager", "collectionManager", "backupUploader", "backupDownloader", "uploadsAnytime"}},
		{"integrityC2", func(ctx context.Context) error { _, err := s.Integrity(ctx, c2.ID); return err },
			[]string{"systemAdmin", "tenantAdmin", "userManager", "collectionManager", "backupUploader", "backupDownloader", "uploadsAnytime"}},
		{"integrityC1", func(ctx context.Context) error { _, err := s.Integrity(ctx, c1.ID); return err }, all},
		{"grantsC1", func(ctx context.Context) error { _, err := s.Grants(ctx, c1.ID); return err },
			[]string{"systemAdmin", "tenantAdmin", "userManager", "collectionManager", "collectionManager@c1"}},
		{"grantDownloadC1", func(ctx context.Context) error {
			_, err := s.GrantCollectionAccess(ctx, c1.ID, victim.ID, []shared.Role{shared.RoleBackupDownloader})
			return err
		}, []string{"systemAdmin", "tenantAdmin"}}, // managers may only give roles they hold
		{"grantManageC1", func(ctx context.Context) error {
			_, err := s.GrantCollectionAccess(ctx, c1.ID, victim.ID, []shared.Role{shared.RoleCollectionManager})
			return err
		}, []string{"systemAdmin", "tenantAdmin", "collectionManager", "collectionManager@c1"}},
		{"auditLog", func(ctx context.Context) error { _, _, err := s.AuditLog(ctx, tn.ID, shared.Page{}); return err },
			[]string{"systemAdmin", "tenantAdmin"}},
		{"dataNodes", func(ctx context.Context) error { _, err := s.DataNodes(ctx); return err }, []string{"systemAdmin"}},
		{"nodeOfOwnCollection", func(ctx context.Context) error { _, err := s.DataNode(ctx, e.node); return err }, all},
		{"drain", func(ctx context.Context) error {
			if _, err := s.DrainDataNode(ctx, e.node); err != nil {
				return err
			}
			_, err := s.UndrainDataNode(ctx, e.node)
			return err
		}, []string{"systemAdmin"}},
		{"report", func(ctx context.Context) error { _, err := s.Report(ctx); return err }, []string{"systemAdmin"}},
	}
	for _, r := range roles {
		ctx := e.as(r.u, nil)
		for _, o := range ops {
			if slices.Contains(o.allow, r.name) {
				wantCode(t, r.name+" "+o.name, o.f(ctx), "")
			} else {
				wantCode(t, r.name+" "+o.name, o.f(ctx), shared.CodeForbidden)
			}
		}
	}

	// A per-collection manager lists only its collection.
	list, _, err := s.Collections(e.as(cmC1, nil), shared.CollectionFilter{})
	if err != nil || len(list) != 1 || list[0].ID != c1.ID {
		t.Errorf("collectionManager@c1 lists %v, %v; want only c1", list, err)
	}
}

func TestScopedTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tn := e.tenant("delta", 0)
	c1, c2 := e.collection(tn.ID, "c1"), e.collection(tn.ID, "c2")
	ta := e.user(tn.ID, "admin@delta.org", shared.RoleTenantAdmin)
	up := e.user(tn.ID, "up@delta.org", shared.RoleBackupUploader)
	s := e.svc
	desc := "x"

	read := e.as(ta, []shared.ScopeEntry{{Collection: c1.ID, Roles: []shared.Role{shared.RoleBackupDownloader}}})
	wantCode(t, "scoped read c1", func() error { _, err := s.Collection(read, c1.ID); return err }(), "")
	wantCode(t, "scoped read c2", func() error { _, err := s.Collection(read, c2.ID); return err }(), shared.CodeForbidden)
	wantCode(t, "scoped integrity c1", func() error { _, err := s.Integrity(read, c1.ID); return err }(), "")
	wantCode(t, "scoped integrity c2", func() error { _, err := s.Integrity(read, c2.ID); return err }(), shared.CodeForbidden)
	wantCode(t, "scoped update c1", func() error {
		_, err := s.UpdateCollection(read, c1.ID, shared.CollectionPatch{Description: &desc})
		return err
	}(), shared.CodeForbidden)
	wantCode(t, "scoped createUser", func() error {
		_, err := s.CreateUser(read, shared.UserInput{Email: "n@delta.org", Password: testPassword})
		return err
	}(), shared.CodeForbidden)
	wantCode(t, "scoped users", func() error { _, _, err := s.Users(read, "", shared.Page{}); return err }(), shared.CodeForbidden)
	wantCode(t, "scoped issue", func() error { _, err := s.IssueToken(read, shared.TokenRequest{}); return err }(), shared.CodeForbidden)
	wantCode(t, "scoped audit", func() error { _, _, err := s.AuditLog(read, "", shared.Page{}); return err }(), shared.CodeForbidden)
	wantCode(t, "scoped createCollection", func() error {
		_, err := s.CreateCollection(read, collectionInput(tn.ID, "c3"))
		return err
	}(), shared.CodeForbidden)
	if list, _, err := s.Collections(read, shared.CollectionFilter{}); err != nil || len(list) != 1 || list[0].ID != c1.ID {
		t.Errorf("scoped list = %v, %v; want only c1", list, err)
	}

	manage := e.as(ta, []shared.ScopeEntry{{Collection: c1.ID, Roles: []shared.Role{shared.RoleCollectionManager}}})
	wantCode(t, "scoped manager updates c1", func() error {
		_, err := s.UpdateCollection(manage, c1.ID, shared.CollectionPatch{Description: &desc})
		return err
	}(), "")
	wantCode(t, "scoped manager updates c2", func() error {
		_, err := s.UpdateCollection(manage, c2.ID, shared.CollectionPatch{Description: &desc})
		return err
	}(), shared.CodeForbidden)
	wantCode(t, "scoped logout", s.Logout(manage), "")

	// Issuing a scope wider than the user's rights is refused, for the user and for its admin.
	wide := []shared.ScopeEntry{{Collection: c1.ID, Roles: []shared.Role{shared.RoleCollectionManager}}}
	wantCode(t, "uploader asks for manager scope", func() error {
		_, err := s.IssueToken(e.as(up, nil), shared.TokenRequest{Scope: wide})
		return err
	}(), shared.CodeForbidden)
	wantCode(t, "admin asks manager scope for uploader", func() error {
		_, err := s.IssueToken(e.as(ta, nil), shared.TokenRequest{UserID: up.ID, Scope: wide})
		return err
	}(), shared.CodeForbidden)
	narrow := []shared.ScopeEntry{{Collection: c1.ID, Roles: []shared.Role{shared.RoleBackupUploader}}}
	tok, err := s.IssueToken(e.as(ta, nil), shared.TokenRequest{UserID: up.ID, Scope: narrow, Once: true})
	if err != nil {
		t.Fatalf("narrow scope: %v", err)
	}
	p, err := e.auth.Authenticate(context.Background(), tok.Token, "192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	if !admin.Can(p, admin.Upload, tn.ID, c1.ID, nil) || admin.Can(p, admin.Upload, tn.ID, c2.ID, nil) {
		t.Errorf("scoped uploader token: upload c1 %v, c2 %v; want true, false",
			admin.Can(p, admin.Upload, tn.ID, c1.ID, nil), admin.Can(p, admin.Upload, tn.ID, c2.ID, nil))
	}
}

func TestRevokedTokenFailsNextRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tn := e.tenant("eps", 0)
	u := e.user(tn.ID, "u@eps.org", shared.RoleBackupUploader)
	ctx := e.as(u, nil)
	tok, err := e.svc.IssueToken(ctx, shared.TokenRequest{Description: "cron"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth.Authenticate(context.Background(), tok.Token, "192.0.2.7"); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	rec, err := e.svc.RevokeToken(ctx, tok.Record.ID)
	if err != nil || rec.RevokedAt == nil {
		t.Fatalf("revoke: %+v, %v", rec, err)
	}
	_, err = e.auth.Authenticate(context.Background(), tok.Token, "192.0.2.7")
	wantCode(t, "revoked token", err, shared.CodeTokenRevoked)

	// Deactivation revokes every token of the user.
	tok2, err := e.svc.IssueToken(e.root, shared.TokenRequest{UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.DeactivateUser(e.root, u.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.auth.Authenticate(context.Background(), tok2.Token, "192.0.2.7")
	wantCode(t, "token of deactivated user", err, shared.CodeTokenRevoked, shared.CodeForbidden)
	recs, err := e.svc.Tokens(e.root, u.ID)
	if err != nil || len(recs) < 2 {
		t.Fatalf("tokens: %v, %v", recs, err)
	}
}

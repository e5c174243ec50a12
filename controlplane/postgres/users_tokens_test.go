package postgres_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"backuprepo/controlplane/postgres"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
)

func TestNormalizeCIDRs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   []string
		want []string
		bad  bool
	}{
		{in: nil, want: []string{}},
		{in: []string{"10.0.0.1"}, want: []string{"10.0.0.1/32"}},
		{in: []string{" 192.168.1.5/24 "}, want: []string{"192.168.1.0/24"}},
		{in: []string{"2001:db8::1"}, want: []string{"2001:db8::1/128"}},
		{in: []string{"2001:db8::/32", "0.0.0.0/0"}, want: []string{"2001:db8::/32", "0.0.0.0/0"}},
		{in: []string{"10.0.0.300"}, bad: true},
		{in: []string{"10.0.0.0/33"}, bad: true},
		{in: []string{"example.org"}, bad: true},
		{in: []string{""}, bad: true},
	}
	for _, c := range cases {
		got, err := postgres.NormalizeCIDRs(c.in)
		if c.bad {
			if shared.ErrorCode(err) != shared.CodeInvalidInput {
				t.Errorf("NormalizeCIDRs(%q): err = %v, want INVALID_INPUT", c.in, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("NormalizeCIDRs(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func insertTenant(t *testing.T, db *postgres.DB, suspended bool) string {
	t.Helper()
	id := uuid.NewString()
	if _, err := db.Pool.Exec(context.Background(), "INSERT INTO tenants (id, name, slug, suspended) VALUES ($1, 'T', $2, $3)",
		id, pgtest.RandomName("t-"), suspended); err != nil {
		t.Fatal(err)
	}
	return id
}

func wantCode(t *testing.T, err error, code shared.Code) {
	t.Helper()
	if shared.ErrorCode(err) != code {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

func TestUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	tenant := insertTenant(t, db, false)
	exp := time.Now().Add(time.Hour).Truncate(time.Microsecond)

	n, err := db.CountUsers(ctx)
	if err != nil || n != 0 {
		t.Fatalf("CountUsers = %d, %v; want 0", n, err)
	}
	u, err := db.CreateUser(ctx, shared.User{
		Email: "Alice@Example.org", TenantID: tenant, Active: true, ExpiresAt: &exp,
		Roles:      []shared.Role{shared.RoleBackupUploader, shared.RoleBackupDownloader},
		AllowedIPs: []string{"10.0.0.1", "192.168.0.7/16"},
	}, "hash-1", pgtest.Event("createUser"))
	if err != nil {
		t.Fatal(err)
	}
	if u.ID == "" || u.CreatedAt.IsZero() {
		t.Fatalf("created user lacks id or creation time: %+v", u)
	}
	if !slices.Equal(u.AllowedIPs, []string{"10.0.0.1/32", "192.168.0.0/16"}) {
		t.Errorf("AllowedIPs = %q", u.AllowedIPs)
	}

	got, hash, err := db.UserByEmail(ctx, "alice@EXAMPLE.org")
	if err != nil {
		t.Fatal(err)
	}
	if hash != "hash-1" || got.ID != u.ID || got.TenantID != tenant || got.Email != "Alice@Example.org" ||
		!got.Active || got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) ||
		!slices.Equal(got.Roles, []shared.Role{shared.RoleBackupUploader, shared.RoleBackupDownloader}) ||
		!slices.Equal(got.AllowedIPs, u.AllowedIPs) {
		t.Errorf("UserByEmail = %+v, %q; want %+v", got, hash, u)
	}
	byID, err := db.UserByID(ctx, u.ID)
	if err != nil || byID.Email != u.Email {
		t.Fatalf("UserByID = %+v, %v", byID, err)
	}

	_, err = db.CreateUser(ctx, shared.User{Email: "ALICE@example.org", Active: true}, "x", pgtest.Event("createUser"))
	wantCode(t, err, shared.CodeConflict)
	_, err = db.CreateUser(ctx, shared.User{Email: "bad-ip@example.org", AllowedIPs: []string{"nope"}}, "x", pgtest.Event("createUser"))
	wantCode(t, err, shared.CodeInvalidInput)

	staff, err := db.CreateUser(ctx, shared.User{Email: "staff@example.org", Roles: []shared.Role{shared.RoleSystemAdmin}, Active: true}, "h", pgtest.Event("createUser"))
	if err != nil {
		t.Fatal(err)
	}
	if staff.TenantID != "" || staff.ExpiresAt != nil || len(staff.AllowedIPs) != 0 {
		t.Errorf("staff user = %+v; want no tenant, expiry or IP list", staff)
	}

	if err := db.SetPassword(ctx, u.ID, "hash-2", pgtest.Event("changePassword")); err != nil {
		t.Fatal(err)
	}
	if _, hash, _ := db.UserByEmail(ctx, u.Email); hash != "hash-2" {
		t.Errorf("hash after SetPassword = %q", hash)
	}
	wantCode(t, db.SetPassword(ctx, uuid.NewString(), "h", pgtest.Event("changePassword")), shared.CodeNotFound)

	_, _, err = db.UserByEmail(ctx, "nobody@example.org")
	wantCode(t, err, shared.CodeNotFound)
	_, err = db.UserByID(ctx, uuid.NewString())
	wantCode(t, err, shared.CodeNotFound)
	_, err = db.UserByID(ctx, "../etc/passwd")
	wantCode(t, err, shared.CodeNotFound)

	if n, err := db.CountUsers(ctx); err != nil || n != 2 {
		t.Errorf("CountUsers = %d, %v; want 2", n, err)
	}

	susp, err := db.TenantSuspended(ctx, tenant)
	if err != nil || susp {
		t.Errorf("TenantSuspended = %v, %v; want false", susp, err)
	}
	_, err = db.TenantSuspended(ctx, uuid.NewString())
	wantCode(t, err, shared.CodeNotFound)
}

func TestTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	tenant := insertTenant(t, db, false)
	u, err := db.CreateUser(ctx, shared.User{Email: "t@example.org", TenantID: tenant, Active: true}, "h", pgtest.Event("createUser"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	scoped := shared.TokenRecord{
		ID: uuid.NewString(), UserID: u.ID, TenantID: tenant, Description: "backup maker",
		Scope:     []shared.ScopeEntry{{Collection: "c1", Roles: []shared.Role{shared.RoleBackupUploader}}},
		Once:      true,
		CreatedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour),
	}
	full := shared.TokenRecord{ID: uuid.NewString(), UserID: u.ID, TenantID: tenant, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	expired := shared.TokenRecord{ID: uuid.NewString(), UserID: u.ID, TenantID: tenant, CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}
	for _, rec := range []shared.TokenRecord{scoped, full, expired} {
		if err := db.InsertToken(ctx, rec, pgtest.Event("issueToken")); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, db.InsertToken(ctx, full, pgtest.Event("issueToken")), shared.CodeConflict)

	got, err := db.TokenByID(ctx, scoped.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Description != "backup maker" || !got.Once || got.TenantID != tenant || len(got.Scope) != 1 ||
		got.Scope[0].Collection != "c1" || got.Scope[0].Roles[0] != shared.RoleBackupUploader ||
		!got.ExpiresAt.Equal(scoped.ExpiresAt) || got.RevokedAt != nil || got.LastUsedAt != nil {
		t.Errorf("TokenByID = %+v", got)
	}
	if got, _ := db.TokenByID(ctx, full.ID); got.Scope != nil {
		t.Errorf("unscoped token read back with scope %+v", got.Scope)
	}

	list, err := db.ListTokens(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, r := range list {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []string{full.ID, scoped.ID, expired.ID}) {
		t.Errorf("ListTokens order = %q; want newest first", ids)
	}

	if err := db.TouchToken(ctx, full.ID, "10.1.2.3"); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.TokenByID(ctx, full.ID); got.LastUsedIP != "10.1.2.3" || got.LastUsedAt == nil {
		t.Errorf("after TouchToken: %+v", got)
	}

	r1, err := db.RevokeToken(ctx, scoped.ID, pgtest.Event("revokeToken"))
	if err != nil || r1.RevokedAt == nil {
		t.Fatalf("RevokeToken = %+v, %v", r1, err)
	}
	r2, err := db.RevokeToken(ctx, scoped.ID, pgtest.Event("revokeToken"))
	if err != nil || !r2.RevokedAt.Equal(*r1.RevokedAt) {
		t.Errorf("second revoke changed revoked_at: %v then %v (%v)", r1.RevokedAt, r2.RevokedAt, err)
	}
	_, err = db.RevokeToken(ctx, uuid.NewString(), pgtest.Event("revokeToken"))
	wantCode(t, err, shared.CodeNotFound)

	// Only the live, unrevoked token is reported by a user-wide revocation.
	revoked, err := db.RevokeUserTokens(ctx, u.ID)
	if err != nil || !slices.Equal(revoked, []string{full.ID}) {
		t.Errorf("RevokeUserTokens = %q, %v; want [%s]", revoked, err, full.ID)
	}
	if again, err := db.RevokeUserTokens(ctx, u.ID); err != nil || len(again) != 0 {
		t.Errorf("second RevokeUserTokens = %q, %v; want none", again, err)
	}
}

func TestTokenAuthState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	tenant := insertTenant(t, db, false)
	u, err := db.CreateUser(ctx, shared.User{Email: "s@example.org", TenantID: tenant, Active: true,
		AllowedIPs: []string{"10.0.0.0/8"}, Roles: []shared.Role{shared.RoleTenantAdmin}}, "h", pgtest.Event("createUser"))
	if err != nil {
		t.Fatal(err)
	}
	rec := shared.TokenRecord{ID: uuid.NewString(), UserID: u.ID, TenantID: tenant, ExpiresAt: time.Now().Add(time.Hour)}
	if err := db.InsertToken(ctx, rec, pgtest.Event("issueToken")); err != nil {
		t.Fatal(err)
	}
	st, err := db.TokenAuthState(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.TenantSuspended || st.Token.RevokedAt != nil || st.User.ID != u.ID ||
		!slices.Equal(st.User.AllowedIPs, []string{"10.0.0.0/8"}) || !st.User.HasRole(shared.RoleTenantAdmin) {
		t.Errorf("TokenAuthState = %+v", st)
	}
	if _, err := db.Pool.Exec(ctx, "UPDATE tenants SET suspended = true WHERE id = $1", tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeToken(ctx, rec.ID, pgtest.Event("revokeToken")); err != nil {
		t.Fatal(err)
	}
	st, err = db.TokenAuthState(ctx, rec.ID)
	if err != nil || !st.TenantSuspended || st.Token.RevokedAt == nil {
		t.Errorf("after suspend and revoke: %+v, %v", st, err)
	}
	_, err = db.TokenAuthState(ctx, uuid.NewString())
	wantCode(t, err, shared.CodeNotFound)
	_, err = db.TokenAuthState(ctx, "not-a-uuid")
	wantCode(t, err, shared.CodeNotFound)
}

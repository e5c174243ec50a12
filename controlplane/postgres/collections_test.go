package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"backuprepo/controlplane/postgres"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
)

func seedTenant(t *testing.T, db *postgres.DB, slug string, quota int64) shared.Tenant {
	t.Helper()
	tn, err := db.CreateTenant(context.Background(), shared.Tenant{Name: slug, Slug: slug, Quota: quota},
		shared.AuditEvent{Action: "createTenant", ObjectType: "tenant"})
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

func noCheck(shared.Tenant, postgres.TenantLoad) error { return nil }

func TestCollectionRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	tn := seedTenant(t, db, "rt", 0)
	in := shared.Collection{ID: "rt-1", TenantID: tn.ID, Description: "d", Tags: []string{"a", "b"},
		FilenameTemplate: "x-${version}", MaxBackupsCount: 3, MaxOneVersionSize: 5, MaxCollectionSize: 20,
		Strategy: shared.StrategyFIFOPlusOlder, MaxOlderCopies: 2, KeepOlderNotMoreThan: 48 * time.Hour,
		Windows: []shared.Window{{From: "0 2 * * *", Duration: 90 * time.Minute}}, RequireEncryption: true}
	got, err := db.CreateCollection(ctx, in, "hash", noCheck, shared.AuditEvent{Action: "createCollection", ObjectType: "collection", TenantID: tn.ID})
	if err != nil {
		t.Fatal(err)
	}
	in.HasHealthCode, in.CreatedAt, in.UpdatedAt = true, got.CreatedAt, got.UpdatedAt
	if a, b := fmt.Sprintf("%+v", in), fmt.Sprintf("%+v", got); a != b {
		t.Errorf("round trip\n got %s\nwant %s", b, a)
	}
	if h, _ := db.CollectionHealthCodeHash(ctx, "rt-1"); h != "hash" {
		t.Errorf("health code hash %q", h)
	}
	_, err = db.CreateCollection(ctx, in, "", noCheck, shared.AuditEvent{Action: "createCollection", ObjectType: "collection"})
	if shared.ErrorCode(err) != shared.CodeConflict {
		t.Errorf("duplicate id: %v", err)
	}
	// A check that refuses leaves neither the row nor the audit event.
	in.ID = "rt-2"
	_, err = db.CreateCollection(ctx, in, "", func(shared.Tenant, postgres.TenantLoad) error {
		return shared.Errorf(shared.CodeTenantQuotaExceeded, "no")
	}, shared.AuditEvent{Action: "createCollection", ObjectType: "collection", TenantID: tn.ID})
	if shared.ErrorCode(err) != shared.CodeTenantQuotaExceeded {
		t.Errorf("refusing check: %v", err)
	}
	if _, err := db.CollectionByID(ctx, "rt-2"); shared.ErrorCode(err) != shared.CodeNotFound {
		t.Errorf("refused collection stored: %v", err)
	}
	evs, err := db.ListAudit(ctx, postgres.AuditQuery{TenantID: tn.ID, Limit: 10})
	if err != nil || len(evs) != 2 { // createTenant + the one createCollection that went through
		t.Errorf("audit events %+v, %v", evs, err)
	}
}

func TestTenantLoadExcludesUpdatedCollection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	tn := seedTenant(t, db, "load", 0)
	for i, size := range []int64{10, 20, 0} {
		c := shared.Collection{ID: fmt.Sprint("l", i), TenantID: tn.ID, FilenameTemplate: "${version}", MaxBackupsCount: 1,
			MaxOneVersionSize: 1, MaxCollectionSize: size, Strategy: shared.StrategyFIFO}
		if _, err := db.CreateCollection(ctx, c, "", noCheck, shared.AuditEvent{Action: "a", ObjectType: "collection"}); err != nil {
			t.Fatal(err)
		}
	}
	var seen postgres.TenantLoad
	_, err := db.UpdateCollection(ctx, "l1", func(cur shared.Collection, u shared.Usage, tt shared.Tenant, load postgres.TenantLoad) (shared.Collection, error) {
		seen = load
		cur.Description = "changed"
		return cur, nil
	}, nil, shared.AuditEvent{Action: "u", ObjectType: "collection"})
	if err != nil {
		t.Fatal(err)
	}
	if seen != (postgres.TenantLoad{Declared: 10, Unlimited: 1}) {
		t.Errorf("load seen by update of l1 = %+v", seen)
	}
	_, err = db.UpdateTenant(ctx, tn.ID, func(cur shared.Tenant, load postgres.TenantLoad) (shared.Tenant, error) {
		seen = load
		return cur, nil
	}, shared.AuditEvent{Action: "t", ObjectType: "tenant"})
	if err != nil || seen != (postgres.TenantLoad{Declared: 30, Unlimited: 1}) {
		t.Errorf("tenant load %+v, %v", seen, err)
	}
}

// TestCollectionsKeysetAtScale checks that a tenant with 10,000 collections is listed page by
// page, every row once, in order, quickly.
func TestCollectionsKeysetAtScale(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	tn := seedTenant(t, db, "big", 0)
	other := seedTenant(t, db, "small", 0)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO collections (id, tenant_id, tags, max_backups_count, max_one_version_size,
			max_collection_size, strategy)
		SELECT 'c-' || lpad(i::text, 5, '0'), CASE WHEN i % 10 = 0 THEN $2::uuid ELSE $1::uuid END,
			CASE WHEN i % 7 = 0 THEN ARRAY['seven'] ELSE ARRAY['other'] END, 1, 1, 1, 'FIFO'
		FROM generate_series(1, 11000) AS i`, tn.ID, other.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, "ANALYZE collections"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	seen, after := 0, ""
	for {
		page, err := db.ListCollections(ctx, postgres.CollectionQuery{TenantID: tn.ID, After: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			if c.TenantID != tn.ID || c.ID <= after {
				t.Fatalf("row %s of tenant %s out of order or of another tenant", c.ID, c.TenantID)
			}
			after = c.ID
		}
		seen += len(page)
		if len(page) < 1000 {
			break
		}
	}
	if seen != 9900 {
		t.Errorf("visited %d collections, want 9900", seen)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("listing 9900 collections took %s", d)
	}
	sevens, err := db.ListCollections(ctx, postgres.CollectionQuery{TenantID: tn.ID, Tags: []string{"seven"}, Limit: 10000})
	if err != nil || len(sevens) != 1414 { // multiples of 7 up to 11000 that are not multiples of 10
		t.Errorf("tag filter: %d, %v", len(sevens), err)
	}
}

func TestGrantsAndAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	tn := seedTenant(t, db, "gr", 0)
	c := shared.Collection{ID: "g", TenantID: tn.ID, FilenameTemplate: "${version}", MaxBackupsCount: 1,
		MaxOneVersionSize: 1, MaxCollectionSize: 1, Strategy: shared.StrategyFIFO}
	if _, err := db.CreateCollection(ctx, c, "", noCheck, shared.AuditEvent{Action: "a", ObjectType: "collection"}); err != nil {
		t.Fatal(err)
	}
	u, err := db.CreateUser(ctx, shared.User{Email: "g@x.org", TenantID: tn.ID, Active: true}, "h", pgtest.Event("createUser"))
	if err != nil {
		t.Fatal(err)
	}
	ev := shared.AuditEvent{ActorID: u.ID, TenantID: tn.ID, Action: "grantCollectionAccess", ObjectType: "collection",
		ObjectID: "g", IP: "192.0.2.1", Details: map[string]string{"roles": "backupUploader"}}
	if _, err := db.PutGrant(ctx, shared.Grant{CollectionID: "g", UserID: u.ID, Roles: []shared.Role{shared.RoleBackupUploader}}, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutGrant(ctx, shared.Grant{CollectionID: "g", UserID: u.ID, Roles: []shared.Role{shared.RoleBackupDownloader}}, ev); err != nil {
		t.Fatal(err)
	}
	roles, err := db.GrantRoles(ctx, "g", u.ID)
	if err != nil || len(roles) != 1 || roles[0] != shared.RoleBackupDownloader {
		t.Errorf("grant replaced: %v, %v", roles, err)
	}
	if err := db.DeleteGrant(ctx, "g", u.ID, ev); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteGrant(ctx, "g", u.ID, ev); shared.ErrorCode(err) != shared.CodeNotFound {
		t.Errorf("second delete: %v", err)
	}
	evs, err := db.ListAudit(ctx, postgres.AuditQuery{TenantID: tn.ID, Limit: 2})
	if err != nil || len(evs) != 2 {
		t.Fatalf("audit: %v, %v", evs, err)
	}
	got := evs[0]
	if got.ActorID != u.ID || got.IP != "192.0.2.1" || got.Details["roles"] != "backupUploader" || got.ObjectID != "g" {
		t.Errorf("audit event %+v", got)
	}
	older, err := db.ListAudit(ctx, postgres.AuditQuery{TenantID: tn.ID, BeforeID: evs[1].ID, Limit: 100})
	if err != nil || len(older) == 0 || older[0].ID >= evs[1].ID {
		t.Errorf("audit keyset: %v, %v", older, err)
	}
}

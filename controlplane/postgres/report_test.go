package postgres_test

import (
	"context"
	"testing"

	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
)

func TestReportEmpty(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	got, err := db.Report(context.Background())
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	if got != (shared.Report{}) {
		t.Fatalf("Report on an empty database = %+v, want all zeros", got)
	}
}

func TestReportCountsRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	const seed = `
INSERT INTO tenants (id, name, slug) VALUES
	('00000000-0000-0000-0000-0000000000a1', 'A', 'a'),
	('00000000-0000-0000-0000-0000000000a2', 'B', 'b');

INSERT INTO users (id, email, password_hash, tenant_id, active, expires_at) VALUES
	('00000000-0000-0000-0000-000000000001', 'active@x', 'h', NULL, true, NULL),
	('00000000-0000-0000-0000-000000000002', 'future@x', 'h', '00000000-0000-0000-0000-0000000000a1', true, now() + interval '1 day'),
	('00000000-0000-0000-0000-000000000003', 'expired@x', 'h', '00000000-0000-0000-0000-0000000000a1', true, now() - interval '1 second'),
	('00000000-0000-0000-0000-000000000004', 'inactive@x', 'h', '00000000-0000-0000-0000-0000000000a2', false, NULL);

INSERT INTO tokens (id, user_id, expires_at, revoked_at) VALUES
	('00000000-0000-0000-0000-0000000000f1', '00000000-0000-0000-0000-000000000001', now() + interval '1 hour', NULL),
	('00000000-0000-0000-0000-0000000000f2', '00000000-0000-0000-0000-000000000001', now() + interval '1 hour', NULL),
	('00000000-0000-0000-0000-0000000000f3', '00000000-0000-0000-0000-000000000002', now() + interval '1 hour', now()),
	('00000000-0000-0000-0000-0000000000f4', '00000000-0000-0000-0000-000000000002', now() - interval '1 second', NULL);

INSERT INTO collections (id, tenant_id, tags, max_backups_count, max_one_version_size, max_collection_size, strategy) VALUES
	('c1', '00000000-0000-0000-0000-0000000000a1', '{db,daily}', 3, 100, 1000, 'FIFO'),
	('c2', '00000000-0000-0000-0000-0000000000a1', '{daily,files}', 2, 200, 2500, 'FIFO'),
	('c3', '00000000-0000-0000-0000-0000000000a2', '{}', 1, 0, 0, 'REJECT_WHEN_FULL');

INSERT INTO versions (id, collection_id, number, filename, size, sha256, node_name) VALUES
	('00000000-0000-0000-0000-0000000000b1', 'c1', 1, 'backup-1', 10, repeat('a', 64), 'n1'),
	('00000000-0000-0000-0000-0000000000b2', 'c1', 2, 'backup-2', 20, repeat('b', 64), 'n1'),
	('00000000-0000-0000-0000-0000000000b3', 'c2', 1, 'backup-1', 300, repeat('c', 64), 'n1');`
	if _, err := db.Pool.Exec(ctx, seed); err != nil {
		t.Fatalf("seed: %v", err)
	}
	got, err := db.Report(ctx)
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	want := shared.Report{
		StorageDeclaredSpace: 1000 + 2500 + 0,
		StorageUsedSpace:     10 + 20 + 300,
		UsersActiveAccounts:  2, // active without expiry, active with a future expiry
		UsersActiveJWTKeys:   2, // the two unrevoked, unexpired tokens
		BackupVersions:       3,
		BackupCollections:    3,
		ResourcesTags:        3, // db, daily, files
	}
	if got != want {
		t.Fatalf("Report = %+v\nwant     %+v", got, want)
	}
}

package postgres_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"backuprepo/controlplane/postgres"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
)

func TestUpsertDataNodeKeepsDrained(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	seen := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	n := shared.DataNode{Name: "dn-1", PublicURL: "http://a:8081", Zone: "z1", State: shared.NodeAlive,
		Disks: []shared.Disk{{Path: "/d1", Total: 100, Free: 60}}, LastSeen: seen, SoftwareVersion: "v1"}
	if err := db.UpsertDataNode(ctx, n); err != nil {
		t.Fatalf("UpsertDataNode: %v", err)
	}
	if err := db.SetDrained(ctx, "dn-1", true, pgtest.Event("drainDataNode")); err != nil {
		t.Fatalf("SetDrained: %v", err)
	}
	n.State, n.Disks, n.LastSeen = shared.NodeDead, nil, seen.Add(time.Minute)
	if err := db.UpsertDataNode(ctx, n); err != nil {
		t.Fatalf("UpsertDataNode again: %v", err)
	}
	got, err := db.DataNodes(ctx)
	if err != nil {
		t.Fatalf("DataNodes: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d rows, want 1", len(got))
	}
	got[0].Node.LastSeen = got[0].Node.LastSeen.UTC()
	want := postgres.DataNodeRecord{Drained: true, Node: shared.DataNode{Name: "dn-1", PublicURL: "http://a:8081",
		Zone: "z1", State: shared.NodeDead, Disks: []shared.Disk{}, LastSeen: seen.Add(time.Minute), SoftwareVersion: "v1"}}
	if !reflect.DeepEqual(got[0], want) {
		t.Fatalf("row:\n got %+v\nwant %+v", got[0], want)
	}
	if err := db.SetDrained(ctx, "dn-1", false, pgtest.Event("drainDataNode")); err != nil {
		t.Fatalf("SetDrained false: %v", err)
	}
	if got, _ := db.DataNodes(ctx); got[0].Drained {
		t.Fatal("still drained after SetDrained(false)")
	}
}

func TestSetDrainedUnknownNode(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	err := db.SetDrained(context.Background(), "nope", true, pgtest.Event("drainDataNode"))
	if shared.ErrorCode(err) != shared.CodeNotFound {
		t.Fatalf("SetDrained(unknown) = %v, want NOT_FOUND", err)
	}
}

func TestNodeCommitments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	// n1 holds c1 (limit 1000, 30 used, 100 reserved live, 500 reserved expired: promises 870),
	// c2 (limit 250, 300 used: over its limit, promises 0) and c3 (unlimited: promises 0).
	// n2 holds c4 (limit 400, nothing used: promises 400). c5 is not placed anywhere.
	const seed = `
INSERT INTO tenants (id, name, slug) VALUES ('00000000-0000-0000-0000-0000000000a1', 'A', 'a');
INSERT INTO data_nodes (name, public_url, state) VALUES ('n1', 'http://n1', 'alive'), ('n2', 'http://n2', 'alive');
INSERT INTO collections (id, tenant_id, max_backups_count, max_one_version_size, max_collection_size, strategy, node_name) VALUES
	('c1', '00000000-0000-0000-0000-0000000000a1', 3, 100, 1000, 'FIFO', 'n1'),
	('c2', '00000000-0000-0000-0000-0000000000a1', 1, 250, 250, 'FIFO', 'n1'),
	('c3', '00000000-0000-0000-0000-0000000000a1', 1, 0, 0, 'FIFO', 'n1'),
	('c4', '00000000-0000-0000-0000-0000000000a1', 2, 200, 400, 'FIFO', 'n2'),
	('c5', '00000000-0000-0000-0000-0000000000a1', 2, 200, 400, 'FIFO', NULL);
INSERT INTO versions (id, collection_id, number, filename, size, sha256, node_name) VALUES
	('00000000-0000-0000-0000-0000000000b1', 'c1', 1, 'backup-1', 10, repeat('a', 64), 'n1'),
	('00000000-0000-0000-0000-0000000000b2', 'c1', 2, 'backup-2', 20, repeat('b', 64), 'n1'),
	('00000000-0000-0000-0000-0000000000b3', 'c2', 1, 'backup-1', 300, repeat('c', 64), 'n1');
INSERT INTO upload_reservations (id, collection_id, tenant_id, node_name, bytes, expires_at) VALUES
	('00000000-0000-0000-0000-0000000000d1', 'c1', '00000000-0000-0000-0000-0000000000a1', 'n1', 100, now() + interval '1 hour'),
	('00000000-0000-0000-0000-0000000000d2', 'c1', '00000000-0000-0000-0000-0000000000a1', 'n1', 500, now() - interval '1 second'),
	('00000000-0000-0000-0000-0000000000d3', 'c5', '00000000-0000-0000-0000-0000000000a1', 'n2', 50, now() + interval '1 hour');`
	if _, err := db.Pool.Exec(ctx, seed); err != nil {
		t.Fatalf("seed: %v", err)
	}
	got, err := db.NodeCommitments(ctx)
	if err != nil {
		t.Fatalf("NodeCommitments: %v", err)
	}
	want := map[string]postgres.Commitment{
		"n1": {Collections: 3, Bytes: 870},
		"n2": {Collections: 1, Bytes: 400},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("NodeCommitments = %+v, want %+v", got, want)
	}
}

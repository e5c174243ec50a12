package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"backuprepo/controlplane/postgres"
)

// checkFixture is a collection with one version on dn-1 and one on dn-2, created an hour ago.
func checkFixture(t *testing.T) (*postgres.DB, string, string) {
	t.Helper()
	db, _, _, ids := uploadFixture(t, 1)
	v1, v2 := uuid.NewString(), uuid.NewString()
	if _, err := db.Pool.Exec(context.Background(), `
		INSERT INTO data_nodes (name, public_url, state) VALUES ('dn-2', 'http://dn-2', 'alive');
		INSERT INTO versions (id, collection_id, number, filename, size, sha256, node_name, created_at) VALUES
			('`+v1+`', '`+ids[0]+`', 1, 'b-1', 10, repeat('a', 64), 'dn-1', now() - interval '1 hour'),
			('`+v2+`', '`+ids[0]+`', 2, 'b-2', 20, repeat('b', 64), 'dn-2', now() - interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	return db, v1, v2
}

// TestRecordIntegrityOnlyWritesTheNodesVersions checks the statement's own guard: whatever the
// judge returns, a node's report never writes a check of another node's version, and the judge
// sees rows for existing ids only.
func TestRecordIntegrityOnlyWritesTheNodesVersions(t *testing.T) {
	t.Parallel()
	db, v1, v2 := checkFixture(t)
	ctx := context.Background()
	unknown := uuid.NewString()
	var seen map[string]postgres.StoredVersion
	size := int64(9)
	missing, err := db.RecordIntegrity(ctx, "dn-1", "", []string{v1, v2, unknown}, func(rows map[string]postgres.StoredVersion) []postgres.VersionCheck {
		seen = rows
		return []postgres.VersionCheck{
			{VersionID: v1, Kind: postgres.CheckDamaged, FoundSize: &size, FoundSHA256: fmt.Sprintf("%064x", 1), Detail: "short"},
			{VersionID: v2, OK: true},
		}
	}, nil)
	if err != nil || missing != 0 {
		t.Fatalf("record: %d, %v", missing, err)
	}
	if len(seen) != 2 || seen[v1].NodeName != "dn-1" || seen[v1].Size != 10 || seen[v2].NodeName != "dn-2" {
		t.Fatalf("judge saw %+v", seen)
	}
	checks, err := db.CollectionChecks(ctx, "c00")
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 1 {
		t.Fatalf("checks = %+v, want v1's only", checks)
	}
	c := checks[0]
	if c.VersionID != v1 || c.OK || c.Kind != postgres.CheckDamaged || c.NodeName != "dn-1" || c.Number != 1 ||
		c.Filename != "b-1" || c.FoundSize == nil || *c.FoundSize != 9 || c.FoundSHA256 == nil ||
		*c.FoundSHA256 != fmt.Sprintf("%064x", 1) || c.Detail != "short" || c.ExpectedSHA256 != strings.Repeat("a", 64) {
		t.Fatalf("v1's check = %+v", c)
	}

	// A later good check replaces the problem, NULLs included; deleting the version drops it.
	if _, err := db.RecordIntegrity(ctx, "dn-1", "", []string{v1}, func(map[string]postgres.StoredVersion) []postgres.VersionCheck {
		return []postgres.VersionCheck{{VersionID: v1, OK: true}}
	}, nil); err != nil {
		t.Fatal(err)
	}
	checks, err = db.CollectionChecks(ctx, "c00")
	if err != nil || len(checks) != 1 || !checks[0].OK || checks[0].Kind != "" || checks[0].FoundSize != nil ||
		checks[0].FoundSHA256 != nil || checks[0].Detail != "" || !checks[0].CheckedAt.After(c.CheckedAt) {
		t.Fatalf("after repair: %+v, %v (first check at %v)", checks, err, c.CheckedAt)
	}
	if _, err := db.Pool.Exec(ctx, "DELETE FROM versions WHERE id = $1", v1); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM version_checks").Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("version_checks rows after the delete: %d, %v", rows, err)
	}
}

// TestRecordIntegrityMissing marks the node's versions that a complete scan did not check, and
// leaves alone those checked since, those created after the cut-off and other nodes' ones.
func TestRecordIntegrityMissing(t *testing.T) {
	t.Parallel()
	db, v1, v2 := checkFixture(t)
	ctx := context.Background()
	late, checked := uuid.NewString(), uuid.NewString()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO versions (id, collection_id, number, filename, size, sha256, node_name, created_at) VALUES
		($1, 'c00', 3, 'b-3', 5, repeat('c', 64), 'dn-1', now()),
		($2, 'c00', 4, 'b-4', 5, repeat('d', 64), 'dn-1', now() - interval '1 hour')`, late, checked); err != nil {
		t.Fatal(err)
	}
	none := func(map[string]postgres.StoredVersion) []postgres.VersionCheck { return nil }
	ok := func(map[string]postgres.StoredVersion) []postgres.VersionCheck {
		return []postgres.VersionCheck{{VersionID: checked, OK: true}}
	}
	scan := &postgres.MissingScan{ScanID: uuid.NewString(), CreatedAgo: time.Minute, Detail: "gone"}
	if _, err := db.RecordIntegrity(ctx, "dn-1", scan.ScanID, []string{checked}, ok, nil); err != nil {
		t.Fatal(err)
	}
	missing, err := db.RecordIntegrity(ctx, "dn-1", scan.ScanID, nil, none, scan)
	if err != nil || missing != 1 {
		t.Fatalf("missing = %d, %v; want 1 (v1)", missing, err)
	}
	checks, err := db.CollectionChecks(ctx, "c00")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, c := range checks {
		kinds[c.VersionID] = c.Kind
		if c.Kind == postgres.CheckMissing && (c.OK || c.Detail != "gone" || c.FoundSize != nil || c.FoundSHA256 != nil) {
			t.Errorf("missing row = %+v", c)
		}
	}
	if len(kinds) != 2 || kinds[v1] != postgres.CheckMissing || kinds[checked] != "" {
		t.Fatalf("kinds = %v; want v1 missing, %s ok, nothing for %s (dn-2) or %s (created late)", kinds, checked, v2, late)
	}
	// The same report again finds nothing more: the missing rows carry the scan's id.
	if missing, err := db.RecordIntegrity(ctx, "dn-1", scan.ScanID, nil, none, scan); err != nil || missing != 0 {
		t.Fatalf("same scan again: missing = %d, %v; want 0", missing, err)
	}
	// A download's report (no scan id) of the checked version keeps its scan id.
	if _, err := db.RecordIntegrity(ctx, "dn-1", "", []string{checked}, ok, nil); err != nil {
		t.Fatal(err)
	}
	if missing, err := db.RecordIntegrity(ctx, "dn-1", scan.ScanID, nil, none, scan); err != nil || missing != 0 {
		t.Fatalf("after a download's report: missing = %d, %v; want 0", missing, err)
	}
	// Checks of an earlier scan do not count for a new one, however recent: v1 and the
	// checked one are missing now; the late one is still too young.
	next := &postgres.MissingScan{ScanID: uuid.NewString(), CreatedAgo: 30 * time.Minute, Detail: "gone"}
	if missing, err := db.RecordIntegrity(ctx, "dn-1", next.ScanID, nil, none, next); err != nil || missing != 2 {
		t.Fatalf("second scan: missing = %d, %v; want 2 (v1 again and %s)", missing, err, checked)
	}
}

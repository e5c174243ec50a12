package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Kinds of problem a version check records (version_checks.kind); "" is a file that matched.
const (
	// CheckDamaged: the node read the file whole, and its size or SHA-256 differs from the row.
	CheckDamaged = "damaged"
	// CheckUnreadable: the node could not read the file whole, or a block failed its checksum
	// while a download was served; the detail is the node's own account.
	CheckUnreadable = "unreadable"
	// CheckMissing: a complete scan of the node did not find the file.
	CheckMissing = "missing"
)

// StoredVersion is what a version row says a node's file must be.
type StoredVersion struct {
	ID           string
	CollectionID string
	NodeName     string
	Size         int64
	SHA256       string
}

// VersionCheck is the outcome of one check of a stored version, as recorded.
type VersionCheck struct {
	VersionID string
	OK        bool
	Kind      string // "" when OK
	// FoundSize and FoundSHA256 are what the node read; nil and "" are recorded as NULL.
	FoundSize   *int64
	FoundSHA256 string
	Detail      string
}

// MissingScan names a complete scan of a node's disks: the node's versions created more than
// CreatedAgo before the report (by PostgreSQL's clock) and not checked by scan ScanID were not
// found, and are recorded missing with Detail.
type MissingScan struct {
	ScanID     string
	CreatedAgo time.Duration
	Detail     string
}

// RecordIntegrity records, in one transaction, what node found when it read its stored files.
// judge receives the version rows of ids that exist (locked against deletion until the
// commit) and returns the outcomes to record; outcomes of versions that node does not hold are
// dropped by the statement itself, whatever judge returns. With scan, the node's versions that
// the scan did not check are then recorded missing; it returns how many were.
func (db *DB) RecordIntegrity(ctx context.Context, node, scanID string, ids []string,
	judge func(map[string]StoredVersion) []VersionCheck, scan *MissingScan) (int, error) {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after commit

	stored, err := lockStoredVersions(ctx, tx, ids)
	if err != nil {
		return 0, err
	}
	if err := upsertChecks(ctx, tx, node, scanID, judge(stored)); err != nil {
		return 0, err
	}
	missing := 0
	if scan != nil {
		// The missing rows are stamped with the scan too, so the same report sent again
		// finds nothing more.
		tag, err := tx.Exec(ctx, `INSERT INTO version_checks (version_id, node_name, checked_at, ok, kind, detail, scan_id)
			SELECT v.id, v.node_name, now(), false, 'missing', $4, $3::uuid FROM versions v
			WHERE v.node_name = $1 AND v.created_at < now() - $2::bigint * interval '1 microsecond'
			  AND NOT EXISTS (SELECT 1 FROM version_checks k WHERE k.version_id = v.id AND k.scan_id = $3::uuid)
			ON CONFLICT (version_id) DO UPDATE SET node_name = EXCLUDED.node_name, checked_at = EXCLUDED.checked_at,
				ok = false, kind = 'missing', found_size = NULL, found_sha256 = NULL, detail = EXCLUDED.detail,
				scan_id = EXCLUDED.scan_id`,
			node, scan.CreatedAgo.Microseconds(), scan.ScanID, scan.Detail)
		if err != nil {
			return 0, fmt.Errorf("record missing versions: %w", err)
		}
		missing = int(tag.RowsAffected())
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit version checks: %w", err)
	}
	return missing, nil
}

// lockStoredVersions reads the version rows of ids, keyed by id, holding a key-share lock so
// that a concurrent delete waits for the checks to be written (and then removes them with it).
func lockStoredVersions(ctx context.Context, tx pgx.Tx, ids []string) (map[string]StoredVersion, error) {
	out := make(map[string]StoredVersion, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, `SELECT id::text, collection_id, node_name, size, sha256 FROM versions
		WHERE id = ANY($1::uuid[]) FOR KEY SHARE`, ids)
	if err != nil {
		return nil, fmt.Errorf("select checked versions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v StoredVersion
		if err := rows.Scan(&v.ID, &v.CollectionID, &v.NodeName, &v.Size, &v.SHA256); err != nil {
			return nil, fmt.Errorf("scan checked version: %w", err)
		}
		out[v.ID] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select checked versions: %w", err)
	}
	return out, nil
}

// upsertChecks writes a batch of outcomes in one statement; a newer check of a version replaces
// the older one, so a file found intact again clears its problem.
// A download's report (no scan id) keeps the scan id of the row it replaces, so that a download
// failing during a scan does not make its version look unchecked by that scan.
func upsertChecks(ctx context.Context, tx pgx.Tx, node, scanID string, checks []VersionCheck) error {
	if len(checks) == 0 {
		return nil
	}
	var (
		ids, kinds, shas, details = make([]string, len(checks)), make([]string, len(checks)), make([]string, len(checks)), make([]string, len(checks))
		oks                       = make([]bool, len(checks))
		sizes                     = make([]*int64, len(checks))
	)
	for i, c := range checks {
		ids[i], oks[i], kinds[i], sizes[i], shas[i], details[i] = c.VersionID, c.OK, c.Kind, c.FoundSize, c.FoundSHA256, c.Detail
	}
	_, err := tx.Exec(ctx, `INSERT INTO version_checks (version_id, node_name, checked_at, ok, kind, found_size, found_sha256, detail, scan_id)
		SELECT c.version_id, v.node_name, now(), c.ok, c.kind, c.found_size, nullif(c.found_sha256, ''), c.detail,
			nullif($8, '')::uuid
		FROM unnest($2::uuid[], $3::boolean[], $4::text[], $5::bigint[], $6::text[], $7::text[])
			AS c (version_id, ok, kind, found_size, found_sha256, detail)
		JOIN versions v ON v.id = c.version_id AND v.node_name = $1
		ON CONFLICT (version_id) DO UPDATE SET node_name = EXCLUDED.node_name, checked_at = EXCLUDED.checked_at,
			ok = EXCLUDED.ok, kind = EXCLUDED.kind, found_size = EXCLUDED.found_size,
			found_sha256 = EXCLUDED.found_sha256, detail = EXCLUDED.detail,
			scan_id = coalesce(EXCLUDED.scan_id, version_checks.scan_id)`,
		node, ids, oks, kinds, sizes, shas, details, scanID)
	if err != nil {
		return fmt.Errorf("record version checks: %w", err)
	}
	return nil
}

// CheckedVersion is the last check recorded of one version of a collection.
type CheckedVersion struct {
	VersionID      string
	Number         int64
	Filename       string
	ExpectedSHA256 string
	NodeName       string
	CheckedAt      time.Time
	OK             bool
	Kind           string
	FoundSize      *int64
	FoundSHA256    *string
	Detail         string
}

// CollectionChecks returns the last check of every checked version of a collection, newest
// version first, in one query.
func (db *DB) CollectionChecks(ctx context.Context, collectionID string) ([]CheckedVersion, error) {
	rows, err := db.Pool.Query(ctx, `SELECT v.id::text, v.number, v.filename, v.sha256, k.node_name, k.checked_at,
			k.ok, k.kind, k.found_size, k.found_sha256, k.detail
		FROM versions v JOIN version_checks k ON k.version_id = v.id
		WHERE v.collection_id = $1 ORDER BY v.number DESC`, collectionID)
	if err != nil {
		return nil, fmt.Errorf("select version checks: %w", err)
	}
	defer rows.Close()
	out := []CheckedVersion{}
	for rows.Next() {
		var c CheckedVersion
		if err := rows.Scan(&c.VersionID, &c.Number, &c.Filename, &c.ExpectedSHA256, &c.NodeName, &c.CheckedAt,
			&c.OK, &c.Kind, &c.FoundSize, &c.FoundSHA256, &c.Detail); err != nil {
			return nil, fmt.Errorf("scan version check: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select version checks: %w", err)
	}
	return out, nil
}

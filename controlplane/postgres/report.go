package postgres

import (
	"context"
	"fmt"

	"backuprepo/shared"
)

// reportQuery computes every number of the InfluxDB report line in one round trip, so the
// numbers are read from a single snapshot and a scrape costs one query.
const reportQuery = `
SELECT
	(SELECT coalesce(sum(max_collection_size), 0)::bigint FROM collections),
	(SELECT coalesce(sum(size), 0)::bigint FROM versions),
	(SELECT count(*) FROM users WHERE active AND (expires_at IS NULL OR expires_at > now())),
	(SELECT count(*) FROM tokens WHERE revoked_at IS NULL AND expires_at > now()),
	(SELECT count(*) FROM versions),
	(SELECT count(*) FROM collections),
	(SELECT count(DISTINCT tag) FROM collections, unnest(tags) AS tag)`

// Report returns the installation-wide numbers of the monitoring report (SPEC §4.3).
func (db *DB) Report(ctx context.Context) (shared.Report, error) {
	var r shared.Report
	err := db.Pool.QueryRow(ctx, reportQuery).Scan(
		&r.StorageDeclaredSpace,
		&r.StorageUsedSpace,
		&r.UsersActiveAccounts,
		&r.UsersActiveJWTKeys,
		&r.BackupVersions,
		&r.BackupCollections,
		&r.ResourcesTags,
	)
	if err != nil {
		return shared.Report{}, fmt.Errorf("query report: %w", err)
	}
	return r, nil
}

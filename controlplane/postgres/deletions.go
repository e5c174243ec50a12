package postgres

import (
	"context"
	"fmt"

	"backuprepo/shared/internalapi"
)

// PendingDeletions lists, oldest first, at most limit files that node must delete.
func (db *DB) PendingDeletions(ctx context.Context, node string, limit int) ([]internalapi.FileRef, error) {
	rows, err := db.Pool.Query(ctx, `SELECT collection_id, version_id::text FROM file_deletions
		WHERE node_name = $1 ORDER BY created_at, version_id LIMIT $2`, node, limit)
	if err != nil {
		return nil, fmt.Errorf("select file deletions: %w", err)
	}
	defer rows.Close()
	files := []internalapi.FileRef{}
	for rows.Next() {
		var f internalapi.FileRef
		if err := rows.Scan(&f.CollectionID, &f.VersionID); err != nil {
			return nil, fmt.Errorf("scan file deletion: %w", err)
		}
		files = append(files, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read file deletions: %w", err)
	}
	return files, nil
}

// AckDeletions forgets the tombstones of node's files that are gone; ids that are not valid
// UUIDs are ignored.
func (db *DB) AckDeletions(ctx context.Context, node string, versionIDs []string) error {
	ids := make([]string, 0, len(versionIDs))
	for _, id := range versionIDs {
		if validUUID(id) {
			ids = append(ids, id)
		}
	}
	if _, err := db.Pool.Exec(ctx, "DELETE FROM file_deletions WHERE node_name = $1 AND version_id = ANY($2::uuid[])", node, ids); err != nil {
		return fmt.Errorf("delete file deletions: %w", err)
	}
	return nil
}

package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"backuprepo/shared"
)

// versionColumns is the column list scanVersion expects.
const versionColumns = `id, collection_id, number, filename, size, sha256, created_at,
	coalesce(uploaded_by::text, ''), coalesce(token_id::text, ''), node_name`

func scanVersion(row pgx.Row) (shared.Version, error) {
	var v shared.Version
	err := row.Scan(&v.ID, &v.CollectionID, &v.Number, &v.Filename, &v.Size, &v.SHA256, &v.CreatedAt,
		&v.UploadedBy, &v.TokenID, &v.NodeName)
	return v, err
}

type rowQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func queryVersions(ctx context.Context, q rowQuerier, collectionID string) ([]shared.Version, error) {
	rows, err := q.Query(ctx, "SELECT "+versionColumns+" FROM versions WHERE collection_id = $1 ORDER BY number DESC", collectionID)
	if err != nil {
		return nil, fmt.Errorf("select versions: %w", err)
	}
	defer rows.Close()
	out := []shared.Version{}
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			return nil, fmt.Errorf("scan version: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select versions: %w", err)
	}
	return out, nil
}

// ListVersions returns a collection's versions, newest (highest number) first.
func (db *DB) ListVersions(ctx context.Context, collectionID string) ([]shared.Version, error) {
	return queryVersions(ctx, db.Pool, collectionID)
}

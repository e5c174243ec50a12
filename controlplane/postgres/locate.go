package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"backuprepo/shared"
)

// CollectionNode returns the name of the data node that holds a collection ("" when it is
// not placed yet); NOT_FOUND when the collection does not exist.
func (db *DB) CollectionNode(ctx context.Context, collectionID string) (string, error) {
	var node *string
	err := db.Pool.QueryRow(ctx, "SELECT node_name FROM collections WHERE id = $1", collectionID).Scan(&node)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", shared.Errorf(shared.CodeNotFound, "collection not found")
	}
	if err != nil {
		return "", fmt.Errorf("locate collection: %w", err)
	}
	if node == nil {
		return "", nil
	}
	return *node, nil
}

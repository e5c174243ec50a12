package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"backuprepo/shared"
)

func textToRoles(in []string) []shared.Role {
	out := make([]shared.Role, len(in))
	for i, r := range in {
		out[i] = shared.Role(r)
	}
	return out
}

// GrantRoles returns the roles userID holds on one collection; empty when there is no grant.
func (db *DB) GrantRoles(ctx context.Context, collectionID, userID string) ([]shared.Role, error) {
	if !validUUID(userID) {
		return []shared.Role{}, nil
	}
	var roles []string
	err := db.Pool.QueryRow(ctx, "SELECT roles FROM collection_grants WHERE collection_id = $1 AND user_id = $2",
		collectionID, userID).Scan(&roles)
	if errors.Is(err, pgx.ErrNoRows) {
		return []shared.Role{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("select grant: %w", err)
	}
	return textToRoles(roles), nil
}

// CollectionGrants lists every grant on a collection, ordered by user id.
func (db *DB) CollectionGrants(ctx context.Context, collectionID string) ([]shared.Grant, error) {
	rows, err := db.Pool.Query(ctx, `SELECT collection_id, user_id, roles FROM collection_grants
		WHERE collection_id = $1 ORDER BY user_id`, collectionID)
	if err != nil {
		return nil, fmt.Errorf("select grants: %w", err)
	}
	defer rows.Close()
	out := []shared.Grant{}
	for rows.Next() {
		var (
			g     shared.Grant
			roles []string
		)
		if err := rows.Scan(&g.CollectionID, &g.UserID, &roles); err != nil {
			return nil, fmt.Errorf("scan grant: %w", err)
		}
		g.Roles = textToRoles(roles)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select grants: %w", err)
	}
	return out, nil
}

// PutGrant sets (replaces) a user's roles on a collection and records the audit event in the
// same transaction.
func (db *DB) PutGrant(ctx context.Context, g shared.Grant, ev shared.AuditEvent) (shared.Grant, error) {
	if !validUUID(g.UserID) {
		return shared.Grant{}, shared.Errorf(shared.CodeNotFound, "user not found")
	}
	err := db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO collection_grants (collection_id, user_id, roles) VALUES ($1, $2, $3)
			ON CONFLICT (collection_id, user_id) DO UPDATE SET roles = excluded.roles`,
			g.CollectionID, g.UserID, rolesToText(g.Roles)); err != nil {
			return ev, fmt.Errorf("upsert grant: %w", err)
		}
		return ev, nil
	})
	if err != nil {
		return shared.Grant{}, err
	}
	return g, nil
}

// DeleteGrant removes a user's grant on a collection with its audit event; NOT_FOUND when
// there was none.
func (db *DB) DeleteGrant(ctx context.Context, collectionID, userID string, ev shared.AuditEvent) error {
	if !validUUID(userID) {
		return shared.Errorf(shared.CodeNotFound, "grant not found")
	}
	return db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		tag, err := tx.Exec(ctx, "DELETE FROM collection_grants WHERE collection_id = $1 AND user_id = $2", collectionID, userID)
		if err != nil {
			return ev, fmt.Errorf("delete grant: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ev, shared.Errorf(shared.CodeNotFound, "grant not found")
		}
		return ev, nil
	})
}

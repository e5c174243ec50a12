package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"backuprepo/shared"
)

// UserQuery selects users ordered by id.
type UserQuery struct {
	TenantID   string // the tenant whose users to list
	AllTenants bool   // ignore TenantID and list everyone, staff included
	After      string // keyset: ids greater than this; "" = from the start
	Limit      int
}

// ListUsers returns up to q.Limit users ordered by id.
func (db *DB) ListUsers(ctx context.Context, q UserQuery) ([]shared.User, error) {
	if (!q.AllTenants && !validUUID(q.TenantID)) || (q.After != "" && !validUUID(q.After)) {
		return []shared.User{}, nil
	}
	var tenant *string
	if !q.AllTenants {
		tenant = &q.TenantID
	}
	rows, err := db.Pool.Query(ctx, "SELECT "+userColumns+` FROM users
		WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::uuid IS NULL OR id > $2)
		ORDER BY id LIMIT $3`, tenant, nullIfEmpty(q.After), q.Limit)
	if err != nil {
		return nil, fmt.Errorf("select users: %w", err)
	}
	defer rows.Close()
	out := []shared.User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("scan user: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select users: %w", err)
	}
	return out, nil
}

// UpdateUser locks a user, lets apply compute the new state (email, roles, active, expiry,
// allowed IPs; apply may refuse), writes it and the audit event in one transaction. A taken
// email is CONFLICT.
func (db *DB) UpdateUser(ctx context.Context, id string, apply func(cur shared.User) (shared.User, error), ev shared.AuditEvent) (shared.User, error) {
	if !validUUID(id) {
		return shared.User{}, shared.Errorf(shared.CodeNotFound, "user not found")
	}
	var updated shared.User
	err := db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		cur, err := scanUser(tx.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = $1 FOR UPDATE", id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ev, shared.Errorf(shared.CodeNotFound, "user not found")
		}
		if err != nil {
			return ev, fmt.Errorf("lock user: %w", err)
		}
		next, err := apply(cur)
		if err != nil {
			return ev, err
		}
		ips, err := NormalizeCIDRs(next.AllowedIPs)
		if err != nil {
			return ev, err
		}
		updated, err = scanUser(tx.QueryRow(ctx, `UPDATE users SET email = $2, roles = $3, active = $4, expires_at = $5,
				allowed_ips = $6::cidr[]
			WHERE id = $1 RETURNING `+userColumns, id, next.Email, rolesToText(next.Roles), next.Active, next.ExpiresAt, ips))
		if isUniqueViolation(err) {
			return ev, shared.Errorf(shared.CodeConflict, "a user with this email already exists")
		}
		if err != nil {
			return ev, fmt.Errorf("update user: %w", err)
		}
		return ev, nil
	})
	if err != nil {
		return shared.User{}, err
	}
	return updated, nil
}

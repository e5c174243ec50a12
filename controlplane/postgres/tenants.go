package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"backuprepo/shared"
)

const tenantColumns = "id, name, slug, quota, suspended, created_at"

func scanTenant(row pgx.Row) (shared.Tenant, error) {
	var t shared.Tenant
	err := row.Scan(&t.ID, &t.Name, &t.Slug, &t.Quota, &t.Suspended, &t.CreatedAt)
	return t, err
}

func tenantNotFound() error { return shared.Errorf(shared.CodeNotFound, "tenant not found") }

// TenantLoad is what a tenant's collections already declare, read while the tenant row is
// locked so that concurrent collection changes cannot jointly overshoot the quota.
type TenantLoad struct {
	Declared  int64 // sum of maxCollectionSize, capped at MaxInt64
	Unlimited int   // collections with maxCollectionSize 0
}

// lockTenant takes the tenant row lock that serialises every change to the tenant's declared
// space, and returns the load of its collections other than exceptCollection.
func lockTenant(ctx context.Context, tx pgx.Tx, tenantID, exceptCollection string) (shared.Tenant, TenantLoad, error) {
	if !validUUID(tenantID) {
		return shared.Tenant{}, TenantLoad{}, tenantNotFound()
	}
	t, err := scanTenant(tx.QueryRow(ctx, "SELECT "+tenantColumns+" FROM tenants WHERE id = $1 FOR UPDATE", tenantID))
	if errors.Is(err, pgx.ErrNoRows) {
		return shared.Tenant{}, TenantLoad{}, tenantNotFound()
	}
	if err != nil {
		return shared.Tenant{}, TenantLoad{}, fmt.Errorf("lock tenant: %w", err)
	}
	var load TenantLoad
	err = tx.QueryRow(ctx, `SELECT least(coalesce(sum(max_collection_size), 0), 9223372036854775807)::bigint,
			count(*) FILTER (WHERE max_collection_size = 0)
		FROM collections WHERE tenant_id = $1 AND id <> $2`, tenantID, exceptCollection).
		Scan(&load.Declared, &load.Unlimited)
	if err != nil {
		return shared.Tenant{}, TenantLoad{}, fmt.Errorf("sum tenant collections: %w", err)
	}
	return t, load, nil
}

// CreateTenant inserts a tenant (a new id when t.ID is empty) and its audit event; a taken
// slug is CONFLICT.
func (db *DB) CreateTenant(ctx context.Context, t shared.Tenant, ev shared.AuditEvent) (shared.Tenant, error) {
	if t.ID == "" {
		t.ID = uuid.NewString()
	}
	var created shared.Tenant
	err := db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		var err error
		created, err = scanTenant(tx.QueryRow(ctx, `INSERT INTO tenants (id, name, slug, quota, suspended)
			VALUES ($1, $2, $3, $4, $5) RETURNING `+tenantColumns, t.ID, t.Name, t.Slug, t.Quota, t.Suspended))
		if isUniqueViolation(err) {
			return ev, shared.Errorf(shared.CodeConflict, "a tenant with this slug or id already exists")
		}
		if err != nil {
			return ev, fmt.Errorf("insert tenant: %w", err)
		}
		ev.TenantID, ev.ObjectID = created.ID, created.ID
		return ev, nil
	})
	if err != nil {
		return shared.Tenant{}, err
	}
	return created, nil
}

// TenantByID returns one tenant; NOT_FOUND when it does not exist.
func (db *DB) TenantByID(ctx context.Context, id string) (shared.Tenant, error) {
	if !validUUID(id) {
		return shared.Tenant{}, tenantNotFound()
	}
	t, err := scanTenant(db.Pool.QueryRow(ctx, "SELECT "+tenantColumns+" FROM tenants WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return shared.Tenant{}, tenantNotFound()
	}
	if err != nil {
		return shared.Tenant{}, fmt.Errorf("select tenant: %w", err)
	}
	return t, nil
}

// ListTenants returns up to limit tenants ordered by slug, starting after the slug afterSlug.
func (db *DB) ListTenants(ctx context.Context, afterSlug string, limit int) ([]shared.Tenant, error) {
	rows, err := db.Pool.Query(ctx, "SELECT "+tenantColumns+" FROM tenants WHERE slug > $1 ORDER BY slug LIMIT $2", afterSlug, limit)
	if err != nil {
		return nil, fmt.Errorf("select tenants: %w", err)
	}
	defer rows.Close()
	out := []shared.Tenant{}
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, fmt.Errorf("scan tenant: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select tenants: %w", err)
	}
	return out, nil
}

// UpdateTenant locks the tenant, lets apply compute the new state from the current one and the
// load of its collections (apply enforces the rules and may refuse), writes it and the audit
// event in one transaction.
func (db *DB) UpdateTenant(ctx context.Context, id string, apply func(cur shared.Tenant, load TenantLoad) (shared.Tenant, error), ev shared.AuditEvent) (shared.Tenant, error) {
	var updated shared.Tenant
	err := db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		cur, load, err := lockTenant(ctx, tx, id, "")
		if err != nil {
			return ev, err
		}
		next, err := apply(cur, load)
		if err != nil {
			return ev, err
		}
		updated, err = scanTenant(tx.QueryRow(ctx, `UPDATE tenants SET name = $2, quota = $3, suspended = $4
			WHERE id = $1 RETURNING `+tenantColumns, id, next.Name, next.Quota, next.Suspended))
		if err != nil {
			return ev, fmt.Errorf("update tenant: %w", err)
		}
		return ev, nil
	})
	if err != nil {
		return shared.Tenant{}, err
	}
	return updated, nil
}

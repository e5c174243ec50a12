package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"backuprepo/shared"
)

const insertAuditQuery = `INSERT INTO audit_log (actor_id, tenant_id, action, object_type, object_id, ip, details)
	VALUES ($1, $2, $3, $4, $5, $6, $7)`

func auditArgs(ev shared.AuditEvent) ([]any, error) {
	details := ev.Details
	if details == nil {
		details = map[string]string{}
	}
	d, err := json.Marshal(details)
	if err != nil {
		return nil, fmt.Errorf("encode audit details: %w", err)
	}
	return []any{nullIfEmpty(ev.ActorID), nullIfEmpty(ev.TenantID), ev.Action, ev.ObjectType, ev.ObjectID, ev.IP, d}, nil
}

// insertAudit writes ev inside tx, so that an audited change and its record commit together.
func insertAudit(ctx context.Context, tx pgx.Tx, ev shared.AuditEvent) error {
	args, err := auditArgs(ev)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, insertAuditQuery, args...); err != nil {
		return fmt.Errorf("insert audit event: %w", err)
	}
	return nil
}

// audited runs change in a transaction and records the audit event it returns in the same
// transaction, so that a change and its record commit together or not at all. change returns
// the event once it knows what it changed (the id of a row it created).
func (db *DB) audited(ctx context.Context, change func(tx pgx.Tx) (shared.AuditEvent, error)) error {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	ev, err := change(tx)
	if err != nil {
		return err
	}
	if err := insertAudit(ctx, tx, ev); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// AuditQuery selects audit events, newest first.
type AuditQuery struct {
	TenantID string // "" = every tenant
	BeforeID int64  // keyset: only events with a smaller id; 0 = from the newest
	Limit    int
}

// ListAudit returns audit events newest first.
func (db *DB) ListAudit(ctx context.Context, q AuditQuery) ([]shared.AuditEvent, error) {
	if q.TenantID != "" && !validUUID(q.TenantID) {
		return []shared.AuditEvent{}, nil
	}
	rows, err := db.Pool.Query(ctx, `SELECT id, at, coalesce(actor_id::text, ''), coalesce(tenant_id::text, ''),
			action, object_type, object_id, ip, details
		FROM audit_log
		WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::bigint = 0 OR id < $2)
		ORDER BY id DESC LIMIT $3`, nullIfEmpty(q.TenantID), q.BeforeID, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("select audit events: %w", err)
	}
	defer rows.Close()
	out := []shared.AuditEvent{}
	for rows.Next() {
		var (
			ev      shared.AuditEvent
			details []byte
		)
		if err := rows.Scan(&ev.ID, &ev.At, &ev.ActorID, &ev.TenantID, &ev.Action, &ev.ObjectType, &ev.ObjectID, &ev.IP, &details); err != nil {
			return nil, fmt.Errorf("scan audit event: %w", err)
		}
		if err := json.Unmarshal(details, &ev.Details); err != nil {
			return nil, fmt.Errorf("decode audit details: %w", err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select audit events: %w", err)
	}
	return out, nil
}

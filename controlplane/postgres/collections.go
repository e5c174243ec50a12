package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"backuprepo/shared"
)

// collectionColumns is the column list scanCollection expects (table alias c). Windows are
// stored as the JSON of []shared.Window; keepOlderNotMoreThan as whole seconds.
const collectionColumns = `c.id, c.tenant_id, c.description, c.tags, c.filename_template, c.max_backups_count,
	c.max_one_version_size, c.max_collection_size, c.strategy, c.max_older_copies, c.keep_older_not_more_than,
	c.windows, c.require_encryption, c.health_code_hash <> '', coalesce(c.node_name, ''), c.created_at, c.updated_at`

func scanCollection(row pgx.Row) (shared.Collection, error) {
	var (
		c       shared.Collection
		keep    int64
		windows []byte
	)
	if err := row.Scan(&c.ID, &c.TenantID, &c.Description, &c.Tags, &c.FilenameTemplate, &c.MaxBackupsCount,
		&c.MaxOneVersionSize, &c.MaxCollectionSize, &c.Strategy, &c.MaxOlderCopies, &keep, &windows,
		&c.RequireEncryption, &c.HasHealthCode, &c.NodeName, &c.CreatedAt, &c.UpdatedAt); err != nil {
		return shared.Collection{}, err
	}
	c.KeepOlderNotMoreThan = time.Duration(keep) * time.Second
	// Most collections have no upload windows: skip the JSON decoder for "[]", which showed in
	// the profile of listing pages of 100 collections.
	if string(windows) != "[]" {
		if err := json.Unmarshal(windows, &c.Windows); err != nil {
			return shared.Collection{}, fmt.Errorf("decode collection windows: %w", err)
		}
	}
	if c.Windows == nil {
		c.Windows = []shared.Window{}
	}
	return c, nil
}

func collectionNotFound() error { return shared.Errorf(shared.CodeNotFound, "collection not found") }

// collectionRowArgs are the values of the writable columns, in the order used by the INSERT
// and UPDATE statements below ($2..$14).
func collectionRowArgs(c shared.Collection) ([]any, error) {
	windows := c.Windows
	if windows == nil {
		windows = []shared.Window{}
	}
	w, err := json.Marshal(windows)
	if err != nil {
		return nil, fmt.Errorf("encode collection windows: %w", err)
	}
	tags := c.Tags
	if tags == nil {
		tags = []string{}
	}
	return []any{c.TenantID, c.Description, tags, c.FilenameTemplate, c.MaxBackupsCount, c.MaxOneVersionSize,
		c.MaxCollectionSize, string(c.Strategy), c.MaxOlderCopies, int64(c.KeepOlderNotMoreThan / time.Second), w,
		c.RequireEncryption, nullIfEmpty(c.NodeName)}, nil
}

// CreateCollection inserts a collection and its audit event in one transaction. The tenant row
// is locked first and check gets the load of the tenant's other collections, so the tenant
// quota holds even when collections are created concurrently. An id in use is CONFLICT.
func (db *DB) CreateCollection(ctx context.Context, c shared.Collection, healthCodeHash string,
	check func(t shared.Tenant, load TenantLoad) error, ev shared.AuditEvent) (shared.Collection, error) {
	var created shared.Collection
	err := db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		t, load, err := lockTenant(ctx, tx, c.TenantID, c.ID)
		if err != nil {
			return ev, err
		}
		if err := check(t, load); err != nil {
			return ev, err
		}
		args, err := collectionRowArgs(c)
		if err != nil {
			return ev, err
		}
		args = append([]any{c.ID}, args...)
		args = append(args, healthCodeHash)
		created, err = scanCollection(tx.QueryRow(ctx, `INSERT INTO collections AS c (id, tenant_id, description, tags,
				filename_template, max_backups_count, max_one_version_size, max_collection_size, strategy, max_older_copies,
				keep_older_not_more_than, windows, require_encryption, node_name, health_code_hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
			RETURNING `+collectionColumns, args...))
		if isUniqueViolation(err) {
			return ev, shared.Errorf(shared.CodeConflict, "a collection with this id already exists")
		}
		if err != nil {
			return ev, fmt.Errorf("insert collection: %w", err)
		}
		return ev, nil
	})
	if err != nil {
		return shared.Collection{}, err
	}
	return created, nil
}

// CollectionByID returns one collection; NOT_FOUND when it does not exist.
func (db *DB) CollectionByID(ctx context.Context, id string) (shared.Collection, error) {
	c, err := scanCollection(db.Pool.QueryRow(ctx, "SELECT "+collectionColumns+" FROM collections c WHERE c.id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return shared.Collection{}, collectionNotFound()
	}
	if err != nil {
		return shared.Collection{}, fmt.Errorf("select collection: %w", err)
	}
	return c, nil
}

// CollectionHealthCodeHash returns the stored hash of a collection's health code ("" = none).
func (db *DB) CollectionHealthCodeHash(ctx context.Context, id string) (string, error) {
	var h string
	err := db.Pool.QueryRow(ctx, "SELECT health_code_hash FROM collections WHERE id = $1", id).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", collectionNotFound()
	}
	if err != nil {
		return "", fmt.Errorf("select health code: %w", err)
	}
	return h, nil
}

// usageQuery reads a collection's versions count and bytes and the bytes reserved by uploads
// still in flight.
const usageQuery = `SELECT
	(SELECT count(*) FROM versions WHERE collection_id = $1),
	(SELECT coalesce(sum(size), 0)::bigint FROM versions WHERE collection_id = $1),
	(SELECT coalesce(sum(bytes), 0)::bigint FROM upload_reservations WHERE collection_id = $1 AND expires_at > now())`

// CollectionUsage returns how much of a collection is taken.
func (db *DB) CollectionUsage(ctx context.Context, id string) (shared.Usage, error) {
	var u shared.Usage
	if err := db.Pool.QueryRow(ctx, usageQuery, id).Scan(&u.Versions, &u.Bytes, &u.ReservedBytes); err != nil {
		return shared.Usage{}, fmt.Errorf("select collection usage: %w", err)
	}
	return u, nil
}

// UpdateCollection locks the collection's tenant and then the collection, lets apply compute
// the new state from the current one, the usage and the load of the tenant's other collections
// (apply enforces the rules and may refuse), and writes it with its audit event in one
// transaction. healthCodeHash nil keeps the stored code. The id, tenant and node never change.
func (db *DB) UpdateCollection(ctx context.Context, id string,
	apply func(cur shared.Collection, usage shared.Usage, t shared.Tenant, load TenantLoad) (shared.Collection, error),
	healthCodeHash *string, ev shared.AuditEvent) (shared.Collection, error) {
	var updated shared.Collection
	err := db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		var tenantID string
		err := tx.QueryRow(ctx, "SELECT tenant_id FROM collections WHERE id = $1", id).Scan(&tenantID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ev, collectionNotFound()
		}
		if err != nil {
			return ev, fmt.Errorf("select collection tenant: %w", err)
		}
		// Tenant before collection: the same order as CreateCollection, so the two never deadlock.
		t, load, err := lockTenant(ctx, tx, tenantID, id)
		if err != nil {
			return ev, err
		}
		cur, err := scanCollection(tx.QueryRow(ctx, "SELECT "+collectionColumns+" FROM collections c WHERE c.id = $1 FOR UPDATE", id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ev, collectionNotFound()
		}
		if err != nil {
			return ev, fmt.Errorf("lock collection: %w", err)
		}
		var usage shared.Usage
		if err := tx.QueryRow(ctx, usageQuery, id).Scan(&usage.Versions, &usage.Bytes, &usage.ReservedBytes); err != nil {
			return ev, fmt.Errorf("select collection usage: %w", err)
		}
		next, err := apply(cur, usage, t, load)
		if err != nil {
			return ev, err
		}
		next.ID, next.TenantID, next.NodeName = cur.ID, cur.TenantID, cur.NodeName
		args, err := collectionRowArgs(next)
		if err != nil {
			return ev, err
		}
		args = append([]any{id}, args...)
		args = append(args, healthCodeHash)
		updated, err = scanCollection(tx.QueryRow(ctx, `UPDATE collections AS c SET description = $3, tags = $4,
				filename_template = $5, max_backups_count = $6, max_one_version_size = $7, max_collection_size = $8,
				strategy = $9, max_older_copies = $10, keep_older_not_more_than = $11, windows = $12,
				require_encryption = $13, health_code_hash = coalesce($15, c.health_code_hash), updated_at = now()
			WHERE c.id = $1 AND c.tenant_id = $2 AND c.node_name IS NOT DISTINCT FROM $14
			RETURNING `+collectionColumns, args...))
		if err != nil {
			return ev, fmt.Errorf("update collection: %w", err)
		}
		return ev, nil
	})
	if err != nil {
		return shared.Collection{}, err
	}
	return updated, nil
}

// DeleteCollection deletes a collection, its grants and reservations, and records ev. A
// collection with versions is COLLECTION_NOT_EMPTY unless force, which deletes the version rows
// first and returns them: their files on the data node still have to be removed.
func (db *DB) DeleteCollection(ctx context.Context, id string, force bool, ev shared.AuditEvent) ([]shared.Version, error) {
	var versions []shared.Version
	err := db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		var locked string
		err := tx.QueryRow(ctx, "SELECT id FROM collections WHERE id = $1 FOR UPDATE", id).Scan(&locked)
		if errors.Is(err, pgx.ErrNoRows) {
			return ev, collectionNotFound()
		}
		if err != nil {
			return ev, fmt.Errorf("lock collection: %w", err)
		}
		if versions, err = queryVersions(ctx, tx, id); err != nil {
			return ev, err
		}
		if len(versions) > 0 && !force {
			return ev, shared.Errorf(shared.CodeCollectionNotEmpty, "the collection still has %d versions", len(versions))
		}
		if len(versions) > 0 {
			// The rows go now; the files stay on the data node until it deletes them.
			details := make(map[string]string, len(ev.Details)+2)
			for k, v := range ev.Details {
				details[k] = v
			}
			details["versionsDeleted"] = strconv.Itoa(len(versions))
			details["fileDeletion"] = "pending"
			ev.Details = details
		}
		if _, err := tx.Exec(ctx, "DELETE FROM versions WHERE collection_id = $1", id); err != nil {
			return ev, fmt.Errorf("delete versions: %w", err)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM collections WHERE id = $1", id); err != nil {
			return ev, fmt.Errorf("delete collection: %w", err)
		}
		return ev, nil
	})
	if err != nil {
		return nil, err
	}
	return versions, nil
}

// CollectionQuery selects collections ordered by id (keyset pagination over the primary key
// or, with a tenant, over the (tenant_id, id) index).
type CollectionQuery struct {
	TenantID  string   // "" = every tenant
	Search    string   // case-insensitive substring of the id or the description
	Tags      []string // every one must be present
	NodeName  string   // "" = any node
	GrantedTo string   // only collections on which this user holds a grant
	IDs       []string // only these ids; nil = no restriction
	After     string   // only ids greater than this
	Limit     int
}

// likeEscaper makes a search term match literally inside ILIKE.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// ListCollections returns up to q.Limit collections matching q, in one query.
func (db *DB) ListCollections(ctx context.Context, q CollectionQuery) ([]shared.Collection, error) {
	if q.TenantID != "" && !validUUID(q.TenantID) || q.GrantedTo != "" && !validUUID(q.GrantedTo) {
		return []shared.Collection{}, nil
	}
	var search *string
	if q.Search != "" {
		s := "%" + likeEscaper.Replace(q.Search) + "%"
		search = &s
	}
	var tags []string
	if len(q.Tags) > 0 {
		tags = q.Tags
	}
	rows, err := db.Pool.Query(ctx, "SELECT "+collectionColumns+` FROM collections c
		WHERE ($1::uuid IS NULL OR c.tenant_id = $1)
		  AND ($2::text IS NULL OR c.id ILIKE $2 OR c.description ILIKE $2)
		  AND ($3::text[] IS NULL OR c.tags @> $3)
		  AND ($4::text IS NULL OR c.node_name = $4)
		  AND ($5::uuid IS NULL OR EXISTS (SELECT 1 FROM collection_grants g WHERE g.collection_id = c.id AND g.user_id = $5))
		  AND ($6::text[] IS NULL OR c.id = ANY($6))
		  AND c.id > $7
		ORDER BY c.id LIMIT $8`,
		nullIfEmpty(q.TenantID), search, tags, nullIfEmpty(q.NodeName), nullIfEmpty(q.GrantedTo), q.IDs, q.After, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("select collections: %w", err)
	}
	defer rows.Close()
	// Sized for a full page (callers bound Limit) so that appending never copies the rows.
	out := make([]shared.Collection, 0, min(max(q.Limit, 0), 1000))
	for rows.Next() {
		c, err := scanCollection(rows)
		if err != nil {
			return nil, fmt.Errorf("scan collection: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select collections: %w", err)
	}
	return out, nil
}

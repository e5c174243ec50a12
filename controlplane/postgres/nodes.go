package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"backuprepo/shared"
)

// DataNodeRecord is a data_nodes row: the last gossip view this cluster mirrored, plus the
// operator's drain wish, which gossip never touches.
type DataNodeRecord struct {
	Node    shared.DataNode
	Drained bool
}

// Commitment is what a data node has promised to the collections placed on it.
type Commitment struct {
	Collections int   // collections placed on the node
	Bytes       int64 // the not yet used part of their maxCollectionSize
}

// UpsertDataNode records the gossip view of one data node. The drained column is left as it
// is: it belongs to the operator.
func (db *DB) UpsertDataNode(ctx context.Context, n shared.DataNode) error {
	disks := n.Disks
	if disks == nil {
		disks = []shared.Disk{}
	}
	dj, err := json.Marshal(disks)
	if err != nil {
		return fmt.Errorf("encode disks of node %s: %w", n.Name, err)
	}
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO data_nodes (name, public_url, zone, disks, state, last_seen, software_version)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (name) DO UPDATE SET public_url = EXCLUDED.public_url, zone = EXCLUDED.zone,
			disks = EXCLUDED.disks, state = EXCLUDED.state, last_seen = EXCLUDED.last_seen,
			software_version = EXCLUDED.software_version`,
		n.Name, n.PublicURL, n.Zone, dj, string(n.State), n.LastSeen, n.SoftwareVersion); err != nil {
		return fmt.Errorf("upsert data node %s: %w", n.Name, err)
	}
	return nil
}

// DataNodes returns every recorded data node, by name.
func (db *DB) DataNodes(ctx context.Context) ([]DataNodeRecord, error) {
	rows, err := db.Pool.Query(ctx, `SELECT name, public_url, zone, disks, state, last_seen,
		software_version, drained FROM data_nodes ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list data nodes: %w", err)
	}
	defer rows.Close()
	var out []DataNodeRecord
	for rows.Next() {
		var r DataNodeRecord
		var disks []byte
		var state string
		if err := rows.Scan(&r.Node.Name, &r.Node.PublicURL, &r.Node.Zone, &disks, &state,
			&r.Node.LastSeen, &r.Node.SoftwareVersion, &r.Drained); err != nil {
			return nil, fmt.Errorf("scan data node: %w", err)
		}
		r.Node.State = shared.NodeState(state)
		if err := json.Unmarshal(disks, &r.Node.Disks); err != nil {
			return nil, fmt.Errorf("decode disks of node %s: %w", r.Node.Name, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list data nodes: %w", err)
	}
	return out, nil
}

// SetDrained records the operator's wish that a node take no new collections (or take them
// again), with its audit event in the same transaction. NOT_FOUND when the node was never
// recorded.
func (db *DB) SetDrained(ctx context.Context, name string, drained bool, ev shared.AuditEvent) error {
	return db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		tag, err := tx.Exec(ctx, `UPDATE data_nodes SET drained = $2 WHERE name = $1`, name, drained)
		if err != nil {
			return ev, fmt.Errorf("set drained on node %s: %w", name, err)
		}
		if tag.RowsAffected() == 0 {
			return ev, shared.Errorf(shared.CodeNotFound, "data node %q not found", name)
		}
		return ev, nil
	})
}

// NodeCommitments returns, per data node holding collections, how many there are and the sum
// over them of max(maxCollectionSize - bytes of their versions - bytes of their live upload
// reservations, 0): the space placement must treat as already taken (SPEC §6 "room"). A
// collection with maxCollectionSize 0 (unlimited) promises nothing it could be held to, so it
// adds 0 bytes.
func (db *DB) NodeCommitments(ctx context.Context) (map[string]Commitment, error) {
	rows, err := db.Pool.Query(ctx, `
		SELECT c.node_name, count(*),
			COALESCE(sum(GREATEST(c.max_collection_size - COALESCE(v.used, 0) - COALESCE(r.reserved, 0), 0)), 0)::bigint
		FROM collections c
		LEFT JOIN (SELECT collection_id, sum(size) AS used FROM versions GROUP BY collection_id) v
			ON v.collection_id = c.id
		LEFT JOIN (SELECT collection_id, sum(bytes) AS reserved FROM upload_reservations
			WHERE expires_at > now() GROUP BY collection_id) r
			ON r.collection_id = c.id
		WHERE c.node_name IS NOT NULL
		GROUP BY c.node_name`)
	if err != nil {
		return nil, fmt.Errorf("sum node commitments: %w", err)
	}
	defer rows.Close()
	out := map[string]Commitment{}
	for rows.Next() {
		var name string
		var c Commitment
		if err := rows.Scan(&name, &c.Collections, &c.Bytes); err != nil {
			return nil, fmt.Errorf("scan node commitment: %w", err)
		}
		out[name] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sum node commitments: %w", err)
	}
	return out, nil
}

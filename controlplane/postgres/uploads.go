package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"backuprepo/shared"
	"backuprepo/shared/ref"
)

// The upload path's SQL, written for few statements and fewer round trips: an admitted and
// committed upload costs six statements in four round trips, with no explicit BEGIN/COMMIT:
// AdmissionState (the token check and the target, batched), Reserve (a lock and the
// reservation, batched), CommitState and CommitUpload.

// versionsLateral aggregates the versions of collection c, oldest first, as parallel arrays.
const versionsLateral = `LEFT JOIN LATERAL (
		SELECT coalesce(array_agg(v.id::text ORDER BY v.number), '{}') AS ids,
			coalesce(array_agg(v.number ORDER BY v.number), '{}') AS numbers,
			coalesce(array_agg(v.size ORDER BY v.number), '{}') AS sizes,
			coalesce(array_agg(v.created_at ORDER BY v.number), '{}') AS created
		FROM versions v WHERE v.collection_id = c.id) vs ON true`

// versionArrays receives the columns of versionsLateral.
type versionArrays struct {
	ids     []string
	numbers []int64
	sizes   []int64
	created []time.Time
}

func (a *versionArrays) dest() []any { return []any{&a.ids, &a.numbers, &a.sizes, &a.created} }

func (a *versionArrays) versions(collectionID string) ([]shared.Version, error) {
	n := len(a.ids)
	if len(a.numbers) != n || len(a.sizes) != n || len(a.created) != n {
		return nil, errors.New("version arrays of different lengths")
	}
	out := make([]shared.Version, n)
	for i := range out {
		out[i] = shared.Version{ID: a.ids[i], CollectionID: collectionID, Number: a.numbers[i],
			Size: a.sizes[i], CreatedAt: a.created[i]}
	}
	return out, nil
}

// UploadTarget is what admission needs to know about a collection, read in one statement.
type UploadTarget struct {
	Collection  shared.Collection
	NextVersion int64
	// Grants are the caller's per-collection roles.
	Grants []shared.Role
	// Versions are the collection's versions, oldest first, with ID, Number, Size and
	// CreatedAt set.
	Versions []shared.Version
}

// uploadTargetSQL reads what UploadTarget returns; $1 is the collection id, $2 the user id or
// NULL.
const uploadTargetSQL = "SELECT " + collectionColumns + `, c.next_version,
		coalesce((SELECT g.roles FROM collection_grants g WHERE g.collection_id = c.id AND g.user_id = $2), '{}'),
		vs.ids, vs.numbers, vs.sizes, vs.created
	FROM collections c ` + versionsLateral + ` WHERE c.id = $1`

// UploadTarget reads a collection, the next version number, userID's grant on it and its
// versions; NOT_FOUND when the collection does not exist.
func (db *DB) UploadTarget(ctx context.Context, collectionID, userID string) (UploadTarget, error) {
	return scanUploadTarget(db.Pool.QueryRow(ctx, uploadTargetSQL, collectionID, nullIfInvalidUUID(userID)))
}

// scanUploadTarget reads the row of uploadTargetSQL.
func scanUploadTarget(row pgx.Row) (UploadTarget, error) {
	var (
		t      UploadTarget
		c      shared.Collection
		keep   int64
		wins   []byte
		grants []string
		va     versionArrays
	)
	dest := []any{&c.ID, &c.TenantID, &c.Description, &c.Tags, &c.FilenameTemplate, &c.MaxBackupsCount,
		&c.MaxOneVersionSize, &c.MaxCollectionSize, &c.Strategy, &c.MaxOlderCopies, &keep, &wins,
		&c.RequireEncryption, &c.HasHealthCode, &c.NodeName, &c.CreatedAt, &c.UpdatedAt, &t.NextVersion, &grants}
	err := row.Scan(append(dest, va.dest()...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return UploadTarget{}, collectionNotFound()
	}
	if err != nil {
		return UploadTarget{}, fmt.Errorf("select upload target: %w", err)
	}
	c.KeepOlderNotMoreThan = time.Duration(keep) * time.Second
	if err := json.Unmarshal(wins, &c.Windows); err != nil {
		return UploadTarget{}, fmt.Errorf("decode collection windows: %w", err)
	}
	t.Collection = c
	t.Grants = textToRoles(grants)
	if t.Versions, err = va.versions(c.ID); err != nil {
		return UploadTarget{}, err
	}
	return t, nil
}

// Admission is what admitting an upload reads before it reserves, each part with the error
// its own method would have returned.
type Admission struct {
	Auth      TokenAuth // as TokenAuthState
	AuthErr   error
	Target    UploadTarget // as UploadTarget
	TargetErr error
}

// AdmissionState reads TokenAuthState(tokenID) and UploadTarget(collectionID, userID) in one
// round trip: the two statements go out as one batch. The target is read even when the token
// turns out to be refused; the caller must not use it then.
func (db *DB) AdmissionState(ctx context.Context, tokenID, collectionID, userID string) Admission {
	unread := errors.New("not read")
	a := Admission{AuthErr: unread, TargetErr: unread}
	b := &pgx.Batch{}
	if validUUID(tokenID) {
		b.Queue(tokenAuthSQL, tokenID).QueryRow(func(row pgx.Row) error {
			a.Auth, a.AuthErr = scanTokenAuth(row)
			return nil
		})
	} else {
		a.AuthErr = tokenNotFound()
	}
	b.Queue(uploadTargetSQL, collectionID, nullIfInvalidUUID(userID)).QueryRow(func(row pgx.Row) error {
		a.Target, a.TargetErr = scanUploadTarget(row)
		return nil
	})
	if err := db.Pool.SendBatch(ctx, b).Close(); err != nil {
		// Whatever the callbacks saw may be incomplete: neither part is trusted.
		err = fmt.Errorf("read admission state: %w", err)
		a = Admission{AuthErr: err, TargetErr: err}
	}
	return a
}

func nullIfInvalidUUID(id string) *string {
	if !validUUID(id) {
		return nil
	}
	return &id
}

// Reservation asks Reserve to promise bytes to an upload.
type Reservation struct {
	ID           string // the upload id, a UUID
	CollectionID string
	TenantID     string
	NodeName     string
	UserID       string
	TokenID      string
	// Want is the number of bytes asked for: the Content-Length when Exact, else the
	// collection's allowance, which Reserve may lower to the node's room.
	Want  int64
	Exact bool
	// Room is the free space of the collection's disk minus its reserve, as the node reported it.
	Room int64
	// NextVersion is the collections.next_version the allowance was computed with; a commit
	// since then makes the reservation Stale.
	NextVersion int64
	Lease       time.Duration
}

// ReserveResult says what Reserve did. Bytes >= 0 means the reservation was made.
type ReserveResult struct {
	Bytes int64 // bytes reserved; -1 when nothing was reserved
	// NodeReserved is what live reservations of other uploads already hold on the node.
	NodeReserved int64
	// Busy is true when another upload holds a live reservation on the collection.
	Busy bool
	// Gone is true when the collection no longer exists or is no longer on the node.
	Gone bool
	// Stale is true when a version was committed since the allowance was computed.
	Stale bool
}

// reserveLockClass is the first key of the advisory lock that serialises the reservations
// of one data node ("brUp").
const reserveLockClass = 0x62725570

// reserveQuery inserts the reservation when the collection has no other live upload, its
// versions have not changed, and the node's room minus what live reservations already hold
// covers it. The final SELECT tells the caller why nothing was inserted. purge is "" or
// purgeExpired.
func reserveQuery(purge string) string {
	return `WITH live AS (
		SELECT coalesce(sum(bytes), 0)::bigint AS node_reserved,
			count(*) FILTER (WHERE collection_id = $2) AS busy
		FROM upload_reservations WHERE node_name = $4 AND expires_at > now()
	), cur AS (
		SELECT next_version FROM collections WHERE id = $2 AND node_name = $4
	), ` + purge + `ins AS (
		INSERT INTO upload_reservations (id, collection_id, tenant_id, node_name, bytes, user_id, token_id, expires_at)
		SELECT $1, $2, $3, $4, least($5::bigint, $9::bigint - live.node_reserved), $7, $8, now() + $11 * interval '1 millisecond'
		FROM live, cur
		WHERE live.busy = 0 AND cur.next_version = $10
			AND CASE WHEN $6 THEN $9::bigint - live.node_reserved >= $5::bigint ELSE $9::bigint - live.node_reserved > 0 END
		RETURNING bytes
	)
	SELECT live.node_reserved, live.busy > 0, coalesce((SELECT next_version FROM cur), 0),
		coalesce((SELECT bytes FROM ins), -1)
	FROM live`
}

// purgeExpired deletes the node's reservations that expired over a minute ago: those of
// crashed uploads, which every reader already ignores (they all ask for expires_at > now()).
const purgeExpired = `expired AS (
		DELETE FROM upload_reservations WHERE node_name = $4 AND expires_at < now() - interval '1 minute'
	), `

var (
	reserveOnly  = reserveQuery("")
	reservePurge = reserveQuery(purgeExpired)
)

// purgeEvery is how often Reserve also clears a node's expired reservations. Doing it on
// every reservation was a second scan of the node's reservations, dead rows included, at each
// admission: 0.17 ms of the 0.45 ms the statement cost PostgreSQL per small upload
// (docs/BENCHMARKS.md), and a longer hold of the node's lock.
const purgeEvery = 30 * time.Second

// purgeDue reports whether this reservation on node should clear its expired reservations,
// and if so counts it as done.
func (db *DB) purgeDue(node string, now time.Time) bool {
	db.purgeMu.Lock()
	defer db.purgeMu.Unlock()
	if last, ok := db.purged[node]; ok && now.Sub(last) < purgeEvery {
		return false
	}
	if db.purged == nil || len(db.purged) > 10_000 {
		db.purged = make(map[string]time.Time)
	}
	db.purged[node] = now
	return true
}

// Reserve promises bytes to an upload. The node's reservations are serialised by an
// advisory lock taken in the same implicit transaction (one batch, one round trip), so the
// insert reads every reservation committed before it and concurrent admissions on one node
// can never jointly promise more than its room.
func (db *DB) Reserve(ctx context.Context, r Reservation) (ReserveResult, error) {
	var (
		out  ReserveResult
		next int64
	)
	query := reserveOnly
	if db.purgeDue(r.NodeName, time.Now()) {
		query = reservePurge
	}
	b := &pgx.Batch{}
	b.Queue("SELECT pg_advisory_xact_lock($1::int4, hashtext($2))", int32(reserveLockClass), r.NodeName)
	b.Queue(query, r.ID, r.CollectionID, r.TenantID, r.NodeName, r.Want, r.Exact,
		nullIfInvalidUUID(r.UserID), nullIfInvalidUUID(r.TokenID), r.Room, r.NextVersion, r.Lease.Milliseconds()).
		QueryRow(func(row pgx.Row) error {
			return row.Scan(&out.NodeReserved, &out.Busy, &next, &out.Bytes)
		})
	// SendBatch runs the queued statements in one implicit transaction: the lock is held until
	// the insert has committed.
	if err := db.Pool.SendBatch(ctx, b).Close(); err != nil {
		return ReserveResult{}, fmt.Errorf("reserve upload bytes: %w", err)
	}
	out.Gone = next == 0
	out.Stale = !out.Gone && next != r.NextVersion
	return out, nil
}

// ExtendReservation moves a live reservation's expiry to now + lease and returns its
// collection; ok is false when the reservation is unknown, expired or of another node.
func (db *DB) ExtendReservation(ctx context.Context, uploadID, nodeName string, lease time.Duration) (collectionID string, ok bool, err error) {
	if !validUUID(uploadID) {
		return "", false, nil
	}
	err = db.Pool.QueryRow(ctx, `UPDATE upload_reservations SET expires_at = now() + $3 * interval '1 millisecond'
		WHERE id = $1 AND node_name = $2 AND expires_at > now() RETURNING collection_id`,
		uploadID, nodeName, lease.Milliseconds()).Scan(&collectionID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("extend reservation: %w", err)
	}
	return collectionID, true, nil
}

// AbortResult says what AbortReservation found.
type AbortResult struct {
	// CollectionID is set when a reservation was deleted.
	CollectionID string
	// Committed is true when the upload had already become a version: nothing was aborted.
	Committed bool
}

// AbortReservation deletes an upload's reservation. When there was none it checks, in a
// second statement that sees every commit finished meanwhile, whether the upload was
// committed: a commit racing the abort either finds no reservation (and fails) or has
// committed before the delete returned, and then the caller must not discard the file.
func (db *DB) AbortReservation(ctx context.Context, uploadID, nodeName string) (AbortResult, error) {
	if !validUUID(uploadID) {
		return AbortResult{}, nil
	}
	var res AbortResult
	err := db.Pool.QueryRow(ctx, "DELETE FROM upload_reservations WHERE id = $1 AND node_name = $2 RETURNING collection_id",
		uploadID, nodeName).Scan(&res.CollectionID)
	if err == nil {
		return res, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return AbortResult{}, fmt.Errorf("delete reservation: %w", err)
	}
	_, found, err := db.VersionByUploadID(ctx, uploadID)
	if err != nil {
		return AbortResult{}, err
	}
	res.Committed = found
	return res, nil
}

// NodeReservation is a reservation of an upload in flight.
type NodeReservation struct {
	UploadID     string
	CollectionID string
}

// AbortNodeReservations deletes every reservation of a node and returns them.
func (db *DB) AbortNodeReservations(ctx context.Context, nodeName string) ([]NodeReservation, error) {
	rows, err := db.Pool.Query(ctx, "DELETE FROM upload_reservations WHERE node_name = $1 RETURNING id::text, collection_id", nodeName)
	if err != nil {
		return nil, fmt.Errorf("delete node reservations: %w", err)
	}
	defer rows.Close()
	var out []NodeReservation
	for rows.Next() {
		var r NodeReservation
		if err := rows.Scan(&r.UploadID, &r.CollectionID); err != nil {
			return nil, fmt.Errorf("scan node reservation: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read node reservations: %w", err)
	}
	return out, nil
}

// CommittedUpload returns the version an upload became and the versions its commit rotated
// out, if it was committed.
func (db *DB) CommittedUpload(ctx context.Context, uploadID string) (shared.Version, []shared.Version, bool, error) {
	if !validUUID(uploadID) {
		return shared.Version{}, nil, false, nil
	}
	var (
		v       shared.Version
		rotated string
	)
	err := db.Pool.QueryRow(ctx, "SELECT "+versionColumns+`,
			coalesce((SELECT a.details->>'rotatedVersions' FROM audit_log a
				WHERE a.tenant_id = (SELECT tenant_id FROM collections WHERE id = versions.collection_id)
					AND a.action = 'uploadVersion' AND a.object_id = versions.id::text
				ORDER BY a.id LIMIT 1), '[]')
		FROM versions WHERE upload_id = $1`, uploadID).
		Scan(&v.ID, &v.CollectionID, &v.Number, &v.Filename, &v.Size, &v.SHA256, &v.CreatedAt,
			&v.UploadedBy, &v.TokenID, &v.NodeName, &rotated)
	if errors.Is(err, pgx.ErrNoRows) {
		return shared.Version{}, nil, false, nil
	}
	if err != nil {
		return shared.Version{}, nil, false, fmt.Errorf("select committed upload: %w", err)
	}
	out := []shared.Version{}
	if err := json.Unmarshal([]byte(rotated), &out); err != nil {
		return shared.Version{}, nil, false, fmt.Errorf("decode rotated versions: %w", err)
	}
	for i := range out {
		out[i].NodeName = v.NodeName
	}
	return v, out, true, nil
}

// VersionByUploadID returns the version an upload became, if it was committed.
func (db *DB) VersionByUploadID(ctx context.Context, uploadID string) (shared.Version, bool, error) {
	if !validUUID(uploadID) {
		return shared.Version{}, false, nil
	}
	v, err := scanVersion(db.Pool.QueryRow(ctx, "SELECT "+versionColumns+" FROM versions WHERE upload_id = $1", uploadID))
	if errors.Is(err, pgx.ErrNoRows) {
		return shared.Version{}, false, nil
	}
	if err != nil {
		return shared.Version{}, false, fmt.Errorf("select version by upload: %w", err)
	}
	return v, true, nil
}

// CommitState is what a commit needs to decide: the reservation, the collection and its
// versions. Found is false when there is no reservation row for the upload.
type CommitState struct {
	Found     bool
	Live      bool // the reservation has not expired
	Bytes     int64
	NodeName  string
	TenantID  string
	UserID    string
	TokenID   string
	TokenOnce bool
	// TokenExpiresAt is when the upload's token expires (zero without a token): how long a
	// one-shot token's revocation must stay cached.
	TokenExpiresAt time.Time
	Collection     shared.Collection
	Versions       []shared.Version // oldest first, with ID, Number, Size and CreatedAt
}

// CommitState reads an upload's reservation with its collection and versions in one statement.
func (db *DB) CommitState(ctx context.Context, uploadID string) (CommitState, error) {
	if !validUUID(uploadID) {
		return CommitState{}, nil
	}
	var (
		st   CommitState
		c    shared.Collection
		keep int64
		wins []byte
		va   versionArrays
		exp  *time.Time
	)
	dest := []any{&st.Live, &st.Bytes, &st.NodeName, &st.TenantID, &st.UserID, &st.TokenID, &st.TokenOnce, &exp,
		&c.ID, &c.TenantID, &c.Description, &c.Tags, &c.FilenameTemplate, &c.MaxBackupsCount,
		&c.MaxOneVersionSize, &c.MaxCollectionSize, &c.Strategy, &c.MaxOlderCopies, &keep, &wins,
		&c.RequireEncryption, &c.HasHealthCode, &c.NodeName, &c.CreatedAt, &c.UpdatedAt}
	err := db.Pool.QueryRow(ctx, `SELECT r.expires_at > now(), r.bytes, r.node_name, r.tenant_id::text,
			coalesce(r.user_id::text, ''), coalesce(r.token_id::text, ''), coalesce(t.once, false), t.expires_at,
			`+collectionColumns+`,
			vs.ids, vs.numbers, vs.sizes, vs.created
		FROM upload_reservations r
		JOIN collections c ON c.id = r.collection_id
		LEFT JOIN tokens t ON t.id = r.token_id
		`+versionsLateral+`
		WHERE r.id = $1`, uploadID).Scan(append(dest, va.dest()...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return CommitState{}, nil
	}
	if err != nil {
		return CommitState{}, fmt.Errorf("select commit state: %w", err)
	}
	c.KeepOlderNotMoreThan = time.Duration(keep) * time.Second
	if err := json.Unmarshal(wins, &c.Windows); err != nil {
		return CommitState{}, fmt.Errorf("decode collection windows: %w", err)
	}
	st.Found = true
	st.Collection = c
	if exp != nil {
		st.TokenExpiresAt = *exp
	}
	if st.Versions, err = va.versions(c.ID); err != nil {
		return CommitState{}, err
	}
	return st, nil
}

// Commit records a durable upload.
type Commit struct {
	UploadID string
	NodeName string
	Size     int64
	SHA256   string
	// Rotate are the ids of the versions the upload rotates out.
	Rotate []string
}

// returning lists a version's columns with names, for RETURNING clauses whose rows are read
// through a CTE.
const returning = `id, collection_id, number, filename, size, sha256, created_at,
	coalesce(uploaded_by::text, '') AS uploaded_by_text, coalesce(token_id::text, '') AS token_id_text, node_name`

// commitQuery does a whole commit in one statement, hence one transaction: it consumes the
// live reservation (only if it covers the size), takes the next version number, inserts the
// version with its filename, deletes the rotated versions, revokes a one-shot token and
// writes the audit event. Nothing happens unless the reservation is consumed. The audit event
// lists the rotated versions (as a JSON string, details being text values), so that a commit
// repeated because its answer was lost can still tell the node which files to delete.
const commitQuery = `WITH r AS (
		DELETE FROM upload_reservations
		WHERE id = $1 AND node_name = $2 AND expires_at > now() AND bytes >= $3
		RETURNING collection_id, tenant_id, user_id, token_id, node_name
	), c AS (
		UPDATE collections SET next_version = next_version + 1
		WHERE id = (SELECT collection_id FROM r)
		RETURNING id, next_version - 1 AS number,
			replace(filename_template, '${version}', (next_version - 1)::text) AS filename
	), v AS (
		INSERT INTO versions (id, collection_id, number, filename, size, sha256, uploaded_by, token_id, node_name, upload_id)
		SELECT $1, c.id, c.number, c.filename, $3, $4, r.user_id, r.token_id, r.node_name, $1 FROM c, r
		RETURNING ` + returning + `
	), d AS (
		DELETE FROM versions
		WHERE collection_id = (SELECT collection_id FROM r) AND id = ANY($5::uuid[])
		RETURNING ` + returning + `
	), t AS (
		UPDATE tokens SET revoked_at = coalesce(revoked_at, now())
		WHERE id = (SELECT token_id FROM r) AND once
		RETURNING id
	), a AS (
		INSERT INTO audit_log (actor_id, tenant_id, action, object_type, object_id, details)
		SELECT r.user_id, r.tenant_id, 'uploadVersion', 'version', v.id::text,
			jsonb_build_object('collectionId', v.collection_id, 'number', v.number::text, 'size', v.size::text,
				'sha256', v.sha256, 'node', v.node_name, 'oneShotTokenRevoked', (SELECT count(*) FROM t)::text,
				'rotatedVersions', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', d.id, 'collectionId', d.collection_id,
					'number', d.number, 'filename', d.filename, 'size', d.size, 'sha256', d.sha256, 'createdAt', d.created_at)
					ORDER BY d.number), '[]')::text FROM d))
		FROM v, r
	)
	SELECT true, * FROM v UNION ALL SELECT false, * FROM d`

// CommitUpload records a durable upload as a version in one transaction and returns it with
// the versions rotated out. ok is false when nothing was written because the reservation is
// gone, expired, of another node or smaller than the size.
func (db *DB) CommitUpload(ctx context.Context, cm Commit) (v shared.Version, rotated []shared.Version, ok bool, err error) {
	rotate := cm.Rotate
	if rotate == nil {
		rotate = []string{}
	}
	rows, err := db.Pool.Query(ctx, commitQuery, cm.UploadID, cm.NodeName, cm.Size, cm.SHA256, rotate)
	if err != nil {
		return shared.Version{}, nil, false, fmt.Errorf("commit upload: %w", err)
	}
	defer rows.Close()
	rotated = []shared.Version{}
	for rows.Next() {
		var (
			isNew bool
			x     shared.Version
		)
		if err := rows.Scan(&isNew, &x.ID, &x.CollectionID, &x.Number, &x.Filename, &x.Size, &x.SHA256,
			&x.CreatedAt, &x.UploadedBy, &x.TokenID, &x.NodeName); err != nil {
			return shared.Version{}, nil, false, fmt.Errorf("scan committed version: %w", err)
		}
		if isNew {
			v, ok = x, true
		} else {
			rotated = append(rotated, x)
		}
	}
	if err := rows.Err(); err != nil {
		if isUniqueViolation(err) {
			// A concurrent commit of the same upload won; the caller looks the version up.
			return shared.Version{}, nil, false, nil
		}
		return shared.Version{}, nil, false, fmt.Errorf("commit upload: %w", err)
	}
	return v, rotated, ok, nil
}

// CollectionAccess is a collection with the caller's grant on it.
type CollectionAccess struct {
	Collection shared.Collection
	Grants     []shared.Role
}

// CollectionAccess reads a collection and userID's grant on it; NOT_FOUND when it does not exist.
func (db *DB) CollectionAccess(ctx context.Context, collectionID, userID string) (CollectionAccess, error) {
	var (
		a      CollectionAccess
		grants []string
	)
	row := db.Pool.QueryRow(ctx, "SELECT "+collectionColumns+`,
			coalesce((SELECT g.roles FROM collection_grants g WHERE g.collection_id = c.id AND g.user_id = $2), '{}')
		FROM collections c WHERE c.id = $1`, collectionID, nullIfInvalidUUID(userID))
	c, err := scanCollection(scanWithExtra{row: row, extra: []any{&grants}})
	if errors.Is(err, pgx.ErrNoRows) {
		return CollectionAccess{}, collectionNotFound()
	}
	if err != nil {
		return CollectionAccess{}, fmt.Errorf("select collection access: %w", err)
	}
	a.Collection = c
	a.Grants = textToRoles(grants)
	return a, nil
}

// scanWithExtra lets scanCollection read a row that has more columns after the collection's.
type scanWithExtra struct {
	row   pgx.Row
	extra []any
}

func (s scanWithExtra) Scan(dest ...any) error { return s.row.Scan(append(dest, s.extra...)...) }

// refCondition is the WHERE clause (with ORDER BY and LIMIT where needed) that selects the
// version r names in the collection given as parameter $<c>; r's value, if any, is appended to
// args as the next parameter.
func refCondition(r ref.Ref, c int, args []any) (string, []any, error) {
	coll := fmt.Sprintf("collection_id = $%d", c)
	val := fmt.Sprintf("$%d", len(args)+1)
	switch r.Kind {
	case ref.Latest:
		return coll + " ORDER BY number DESC LIMIT 1", args, nil
	case ref.First:
		return coll + " ORDER BY number ASC LIMIT 1", args, nil
	case ref.Number:
		return coll + " AND number = " + val, append(args, r.Number), nil
	case ref.ID:
		if !validUUID(r.ID) {
			return "", nil, versionNotFound()
		}
		return coll + " AND id = " + val + "::uuid", append(args, r.ID), nil
	}
	return "", nil, shared.Errorf(shared.CodeInvalidInput, "invalid version reference")
}

func versionNotFound() error { return shared.Errorf(shared.CodeNotFound, "version not found") }

// VersionByRef returns the version of a collection that r names; NOT_FOUND when there is none.
func (db *DB) VersionByRef(ctx context.Context, collectionID string, r ref.Ref) (shared.Version, error) {
	where, args, err := refCondition(r, 1, []any{collectionID})
	if err != nil {
		return shared.Version{}, err
	}
	v, err := scanVersion(db.Pool.QueryRow(ctx, "SELECT "+versionColumns+" FROM versions WHERE "+where, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return shared.Version{}, versionNotFound()
	}
	if err != nil {
		return shared.Version{}, fmt.Errorf("select version: %w", err)
	}
	return v, nil
}

// DeleteVersionByRef deletes the version of a collection that r names and records ev (its
// ObjectID becomes the version id) in the same statement, hence the same transaction;
// NOT_FOUND when there is none. The file on the data node is the caller's to delete.
func (db *DB) DeleteVersionByRef(ctx context.Context, collectionID string, r ref.Ref, ev shared.AuditEvent) (shared.Version, error) {
	aargs, err := auditArgs(ev) // actor, tenant, action, object type, object id, ip, details
	if err != nil {
		return shared.Version{}, err
	}
	args := []any{aargs[0], aargs[1], aargs[2], aargs[3], aargs[5], aargs[6], collectionID}
	where, args, err := refCondition(r, 7, args)
	if err != nil {
		return shared.Version{}, err
	}
	v, err := scanVersion(db.Pool.QueryRow(ctx, `WITH d AS (
			DELETE FROM versions WHERE id = (SELECT id FROM versions WHERE `+where+`)
			RETURNING `+returning+`
		), a AS (
			INSERT INTO audit_log (actor_id, tenant_id, action, object_type, object_id, ip, details)
			SELECT $1, $2, $3, $4, d.id::text, $5, $6::jsonb || jsonb_build_object('collectionId', d.collection_id,
				'number', d.number::text, 'filename', d.filename, 'size', d.size::text)
			FROM d
		)
		SELECT * FROM d`, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return shared.Version{}, versionNotFound()
	}
	if err != nil {
		return shared.Version{}, fmt.Errorf("delete version: %w", err)
	}
	return v, nil
}

// Package uploads is the control plane's side of the upload path: the rules of SPEC §3
// (rotation, byte allowance) and the internal API that data nodes call to admit, extend,
// commit and abort uploads and to resolve, list and delete versions on behalf of a caller.
package uploads

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"backuprepo/controlplane/admin"
	"backuprepo/controlplane/auth"
	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
	"backuprepo/shared/internalapi"
	"backuprepo/shared/ref"
	"backuprepo/shared/window"
)

// Config wires a Service. Zero durations get the defaults documented per field.
type Config struct {
	DB    *postgres.DB
	Redis *redis.Client
	Auth  *auth.Service
	// KeyPrefix starts every Redis key the service writes.
	KeyPrefix string
	// NodeSecret is the HMAC secret the data nodes sign internal requests with (>= 16 bytes).
	NodeSecret []byte
	// Lease is how long an upload's lock and reservation live without an extend (60 s); nodes
	// are told to extend every Lease/3.
	Lease time.Duration
	// Timeout bounds the work of one internal request (10 s), so that a database or Redis
	// that stopped answering gives a fast 503 rather than a hung upload.
	Timeout time.Duration
	Logger  *slog.Logger
	Now     func() time.Time
}

// Service implements the internal API.
type Service struct {
	db      *postgres.DB
	auth    *auth.Service
	lock    locker
	secret  []byte
	lease   time.Duration
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time
}

// New builds a Service. It panics when DB, Redis, Auth or a NodeSecret of at least 16 bytes is
// missing: that is a wiring bug, not a runtime condition.
func New(cfg Config) *Service {
	if cfg.DB == nil || cfg.Redis == nil || cfg.Auth == nil || len(cfg.NodeSecret) < 16 {
		panic("uploads.New: DB, Redis, Auth and a NodeSecret of at least 16 bytes are required")
	}
	s := &Service{db: cfg.DB, auth: cfg.Auth, lock: locker{rdb: cfg.Redis, prefix: cfg.KeyPrefix},
		secret: cfg.NodeSecret, lease: cfg.Lease, timeout: cfg.Timeout, log: cfg.Logger, now: cfg.Now}
	if s.lease <= 0 {
		s.lease = time.Minute
	}
	if s.timeout <= 0 {
		s.timeout = 10 * time.Second
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// staleRetries bounds how often admission re-reads a collection that a commit changed
// between the read and the reservation; the lock it holds by then stops further commits.
const staleRetries = 3

var sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

func notFound() error { return shared.Errorf(shared.CodeNotFound, "collection not found") }

func uploadNotFound() error { return shared.Errorf(shared.CodeNotFound, "upload not found") }

func leaseExpired() error { return shared.Errorf(shared.CodeConflict, "upload lease expired") }

// dbError turns a database failure into what the caller sees: an application error as it is,
// an error PostgreSQL answered (a query bug) as INTERNAL, and anything else (no connection,
// timeout) as DEPENDENCY_UNAVAILABLE, so nodes fail fast and retry.
func dbError(err error) error {
	var se *shared.Error
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &se):
		return err
	case errors.As(err, &pe):
		return err
	}
	return shared.Wrap(err, shared.CodeDependencyUnavailable, "the database is unavailable")
}

func redisError(err error) error {
	return shared.Wrap(err, shared.CodeDependencyUnavailable, "the upload lock service is unavailable")
}

// checkCollection applies SPEC §3 rule 2 and placement to a collection the caller asked for
// through node: invisible is NOT_FOUND, held by another node is CONFLICT, and the caller must
// be allowed one of actions.
func checkCollection(p shared.Principal, node string, c shared.Collection, grants []shared.Role, actions ...admin.Action) error {
	if !admin.Visible(p, c.TenantID) {
		return notFound()
	}
	if c.NodeName != node {
		return shared.Errorf(shared.CodeConflict, "the collection is held by another data node")
	}
	for _, a := range actions {
		if admin.Can(p, a, c.TenantID, c.ID, grants) {
			return nil
		}
	}
	return shared.Errorf(shared.CodeForbidden, "you are not allowed to do this")
}

// Admit applies SPEC §3 rules 1 to 6 in order to an upload that node is about to receive and,
// when it may start, takes the collection's lock and reserves its byte allowance.
//
// The reservation is capped by the node's room (req.Room, the collection's disk's free space
// minus its reserve) less every live reservation on the node; that over-counts bytes already
// streamed by uploads in flight and the other disks' reservations, which only errs on the safe
// side. A known Content-Length reserves exactly that; a chunked body reserves its whole
// allowance. When the room binds, the limit code is INSUFFICIENT_STORAGE.
//
// The tenant quota is not checked on bytes here: SPEC §2 enforces it on the declared
// maxCollectionSize of the tenant's collections (and refuses unlimited collections under a
// quota), and every upload keeps its collection within maxCollectionSize, so the tenant's
// stored bytes stay within its quota without a tenant-wide lock on every admission.
func (s *Service) Admit(ctx context.Context, node string, req internalapi.AdmitRequest) (internalapi.AdmitResponse, error) {
	if req.ContentLength < -1 {
		return internalapi.AdmitResponse{}, shared.Errorf(shared.CodeInvalidInput, "contentLength must be -1 or more")
	}
	claims, err := s.auth.VerifyBearer(ctx, req.Token)
	if err != nil {
		return internalapi.AdmitResponse{}, err
	}
	validID := admin.CollectionIDPattern.MatchString(req.CollectionID)
	// The token's state and the target come in one round trip; the target is judged only
	// once the token is. An id outside the pattern is not sent to PostgreSQL at all: bytes it
	// refuses in text (a NUL, invalid UTF-8) would fail the whole batch as an outage.
	var first postgres.Admission
	if validID {
		first = s.db.AdmissionState(ctx, claims.ID, req.CollectionID, claims.Subject)
	} else {
		first.Auth, first.AuthErr = s.db.TokenAuthState(ctx, claims.ID)
	}
	p, err := s.auth.Principal(ctx, claims, first.Auth, first.AuthErr, req.ClientIP)
	if err != nil {
		return internalapi.AdmitResponse{}, err
	}
	if !validID {
		return internalapi.AdmitResponse{}, notFound()
	}
	uploadID := uuid.NewString()
	locked := false
	refuse := func(err error) (internalapi.AdmitResponse, error) {
		if locked {
			s.release(ctx, req.CollectionID, uploadID)
		}
		return internalapi.AdmitResponse{}, err
	}
	for attempt := 0; ; attempt++ {
		t, err := first.Target, first.TargetErr
		if attempt > 0 {
			t, err = s.db.UploadTarget(ctx, req.CollectionID, p.User.ID)
		}
		if err != nil {
			return refuse(dbError(err))
		}
		c := t.Collection
		if err := checkCollection(p, node, c, t.Grants, admin.Upload); err != nil {
			return refuse(err)
		}
		now := s.now()
		if !window.Open(c.Windows, now) && !admin.Can(p, admin.UploadAnytime, c.TenantID, c.ID, t.Grants) {
			return refuse(shared.Errorf(shared.CodeWindowClosed, "the collection's backup window is closed"))
		}
		if !locked {
			ok, err := s.lock.acquire(ctx, c.ID, uploadID, s.lease)
			if err != nil {
				return refuse(redisError(err))
			}
			if !ok {
				return refuse(shared.Errorf(shared.CodeUploadInProgress, "another upload to this collection is in progress"))
			}
			locked = true
		}
		if c.Strategy == shared.StrategyRejectWhenFull && len(t.Versions) >= c.MaxBackupsCount {
			return refuse(shared.Errorf(shared.CodeCollectionFull, "the collection already holds %d versions", len(t.Versions)))
		}
		kept := Kept(t.Versions, Rotation(c, t.Versions, now))
		allowance, code := Allowance(c, sizes(kept), 0)
		if req.ContentLength > allowance {
			return refuse(shared.Errorf(code, "the upload is %d bytes; this collection allows %d now", req.ContentLength, allowance))
		}
		want, exact := allowance, false
		if req.ContentLength >= 0 {
			// A known length is all the upload can use; reserving more would only keep other
			// uploads on the node from starting.
			want, exact = req.ContentLength, true
		}
		res, err := s.db.Reserve(ctx, postgres.Reservation{ID: uploadID, CollectionID: c.ID, TenantID: c.TenantID,
			NodeName: node, UserID: p.User.ID, TokenID: p.TokenID, Want: want, Exact: exact,
			Room: max(req.Room, 0), NextVersion: t.NextVersion, Lease: s.lease})
		switch {
		case err != nil:
			return refuse(dbError(err))
		case res.Gone:
			return refuse(notFound())
		case res.Busy:
			return refuse(shared.Errorf(shared.CodeUploadInProgress, "another upload to this collection is in progress"))
		case res.Stale && attempt < staleRetries:
			continue
		case res.Stale:
			return refuse(shared.Errorf(shared.CodeConflict, "the collection changed during admission; retry"))
		case res.Bytes < 0:
			return refuse(shared.Errorf(shared.CodeInsufficientStorage, "the data node has no room for this upload now"))
		}
		if res.Bytes < want {
			code = shared.CodeInsufficientStorage
		}
		return internalapi.AdmitResponse{UploadID: uploadID, Allowance: res.Bytes, LimitCode: code,
			RequireEncryption: c.RequireEncryption, ExtendEvery: s.lease / 3,
			RoomLeft: max(max(req.Room, 0)-res.NodeReserved-res.Bytes, 0)}, nil
	}
}

// release drops an upload's lock. It runs even when the request's context ended, and a
// failure only means the lock expires on its own, so it is logged, not returned.
func (s *Service) release(ctx context.Context, collectionID, uploadID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := s.lock.release(ctx, collectionID, uploadID); err != nil {
		s.log.WarnContext(ctx, "release upload lock; it will expire", "collection", collectionID, "upload", uploadID, "err", err)
	}
}

func validUploadID(id string) error {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return shared.Errorf(shared.CodeInvalidInput, "uploadId must be a UUID")
	}
	return nil
}

// Extend keeps an upload's reservation and lock alive for another lease.
func (s *Service) Extend(ctx context.Context, node string, req internalapi.UploadRef) error {
	if err := validUploadID(req.UploadID); err != nil {
		return err
	}
	coll, ok, err := s.db.ExtendReservation(ctx, req.UploadID, node, s.lease)
	if err != nil {
		return dbError(err)
	}
	if !ok {
		return leaseExpired()
	}
	held, err := s.lock.extend(ctx, coll, req.UploadID, s.lease)
	if err != nil {
		return redisError(err)
	}
	if !held {
		return shared.Errorf(shared.CodeConflict, "another upload holds the collection's lock")
	}
	return nil
}

// Abort gives up an upload: its reservation goes and its lock is released. Aborting an unknown
// or already aborted upload succeeds; aborting a committed one is CONFLICT, so that the node
// keeps the file.
func (s *Service) Abort(ctx context.Context, node string, req internalapi.UploadRef) error {
	if err := validUploadID(req.UploadID); err != nil {
		return err
	}
	res, err := s.db.AbortReservation(ctx, req.UploadID, node)
	if err != nil {
		return dbError(err)
	}
	if res.Committed {
		return shared.Errorf(shared.CodeConflict, "the upload is already committed")
	}
	if res.CollectionID != "" {
		s.release(ctx, res.CollectionID, req.UploadID)
	}
	return nil
}

// AbortAll aborts every upload of the calling node that still holds a reservation, releasing
// their locks: the node calls it once it restarted and settled its staged files, so nothing
// of its own is in flight and the lost uploads should not block their collections until the
// lease expires.
func (s *Service) AbortAll(ctx context.Context, node string, _ internalapi.AbortAllRequest) (internalapi.AbortAllResponse, error) {
	aborted, err := s.db.AbortNodeReservations(ctx, node)
	if err != nil {
		return internalapi.AbortAllResponse{}, dbError(err)
	}
	for _, r := range aborted {
		s.release(ctx, r.CollectionID, r.UploadID)
	}
	if len(aborted) > 0 {
		s.log.InfoContext(ctx, "aborted the uploads a restarted data node lost", "node", node, "uploads", len(aborted))
	}
	return internalapi.AbortAllResponse{Aborted: len(aborted)}, nil
}

// Commit records a durable upload as a version, rotates the collection, releases the
// reservation and the lock and revokes a one-shot token, all but the lock in one PostgreSQL
// transaction. Committing the same upload again returns the same version.
//
// A commit, once begun, runs to its end (or to the timeout) even when the node goes away
// meanwhile. Cancelled with the node's request, it could be cut off after PostgreSQL committed
// and before the lock was released: the version would exist while the collection stayed
// locked until the lease ran out, and the client's retry was refused for that long. The node
// learns the outcome when it restarts (Outcome).
func (s *Service) Commit(ctx context.Context, node string, req internalapi.CommitRequest) (internalapi.CommitResponse, error) {
	if err := validUploadID(req.UploadID); err != nil {
		return internalapi.CommitResponse{}, err
	}
	if req.Size < 0 || !sha256Pattern.MatchString(req.SHA256) {
		return internalapi.CommitResponse{}, shared.Errorf(shared.CodeInvalidInput, "size must not be negative and sha256 must be 64 lowercase hex digits")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	st, err := s.db.CommitState(ctx, req.UploadID)
	if err != nil {
		return internalapi.CommitResponse{}, dbError(err)
	}
	if !st.Found {
		return s.committed(ctx, node, req)
	}
	switch {
	case st.NodeName != node:
		return internalapi.CommitResponse{}, uploadNotFound()
	case !st.Live:
		return internalapi.CommitResponse{}, leaseExpired()
	case req.Size > st.Bytes:
		return internalapi.CommitResponse{}, shared.Errorf(shared.CodeConflict, "the upload is larger than its allowance of %d bytes", st.Bytes)
	}
	rotate := Rotation(st.Collection, st.Versions, s.now())
	rotate = append(rotate, Fit(st.Collection, Kept(st.Versions, rotate), req.Size)...)
	v, rotated, ok, err := s.db.CommitUpload(ctx, postgres.Commit{UploadID: req.UploadID, NodeName: node,
		Size: req.Size, SHA256: req.SHA256, Rotate: rotate})
	if err != nil {
		return internalapi.CommitResponse{}, dbError(err)
	}
	if !ok {
		// The lease ran out since the read, or a concurrent commit of this upload won.
		return s.committed(ctx, node, req)
	}
	if st.TokenOnce {
		// The revocation is already committed with the version; this fills the revocation
		// cache every replica checks first.
		s.auth.CacheRevoked(context.WithoutCancel(ctx), postgres.RevokedToken{ID: st.TokenID, ExpiresAt: st.TokenExpiresAt})
	}
	s.release(ctx, st.Collection.ID, req.UploadID)
	return internalapi.CommitResponse{Version: v, Rotated: rotated}, nil
}

// committed answers a commit whose reservation is gone: the version it already became with
// the versions its commit rotated out (the node may have missed the first answer and still
// hold their files), or CONFLICT when it never became one.
func (s *Service) committed(ctx context.Context, node string, req internalapi.CommitRequest) (internalapi.CommitResponse, error) {
	v, rotated, found, err := s.db.CommittedUpload(ctx, req.UploadID)
	if err != nil {
		return internalapi.CommitResponse{}, dbError(err)
	}
	if !found || v.NodeName != node {
		return internalapi.CommitResponse{}, leaseExpired()
	}
	if v.Size != req.Size || v.SHA256 != req.SHA256 {
		return internalapi.CommitResponse{}, shared.Errorf(shared.CodeConflict, "the upload was committed with other content")
	}
	return internalapi.CommitResponse{Version: v, Rotated: rotated}, nil
}

// Outcome tells a node whether an upload it staged was committed. A committed upload's lock
// is released again here (only if that upload still holds it): the commit that released it
// may have failed after PostgreSQL committed, when its connection broke, and the lock would
// then block the collection until its lease ran out.
func (s *Service) Outcome(ctx context.Context, node string, req internalapi.UploadRef) (internalapi.OutcomeResponse, error) {
	if err := validUploadID(req.UploadID); err != nil {
		return internalapi.OutcomeResponse{}, err
	}
	v, found, err := s.db.VersionByUploadID(ctx, req.UploadID)
	if err != nil {
		return internalapi.OutcomeResponse{}, dbError(err)
	}
	if !found || v.NodeName != node {
		return internalapi.OutcomeResponse{}, nil
	}
	s.release(ctx, v.CollectionID, req.UploadID)
	return internalapi.OutcomeResponse{Committed: true, Version: v}, nil
}

// access authenticates the caller and checks it may do one of actions on the collection
// through node.
func (s *Service) access(ctx context.Context, node string, caller internalapi.Caller, collectionID string, actions ...admin.Action) (shared.Principal, shared.Collection, error) {
	p, err := s.auth.Authenticate(ctx, caller.Token, caller.ClientIP)
	if err != nil {
		return shared.Principal{}, shared.Collection{}, err
	}
	if !admin.CollectionIDPattern.MatchString(collectionID) {
		return shared.Principal{}, shared.Collection{}, notFound()
	}
	a, err := s.db.CollectionAccess(ctx, collectionID, p.User.ID)
	if err != nil {
		return shared.Principal{}, shared.Collection{}, dbError(err)
	}
	if err := checkCollection(p, node, a.Collection, a.Grants, actions...); err != nil {
		return shared.Principal{}, shared.Collection{}, err
	}
	return p, a.Collection, nil
}

// Resolve checks the caller may download from the collection and names the version ref means.
func (s *Service) Resolve(ctx context.Context, node string, req internalapi.VersionRequest) (internalapi.VersionResponse, error) {
	_, c, err := s.access(ctx, node, req.Caller, req.CollectionID, admin.Download)
	if err != nil {
		return internalapi.VersionResponse{}, err
	}
	r, err := ref.Parse(req.Ref)
	if err != nil {
		return internalapi.VersionResponse{}, err
	}
	v, err := s.db.VersionByRef(ctx, c.ID, r)
	if err != nil {
		return internalapi.VersionResponse{}, dbError(err)
	}
	return internalapi.VersionResponse{Version: v}, nil
}

// List returns the collection's versions, newest first. Downloaders, uploaders and managers may
// list: an uploader checks what it stored, a manager what to delete. uploadsAnytime alone does
// not let anyone see anything.
func (s *Service) List(ctx context.Context, node string, req internalapi.ListRequest) (internalapi.ListResponse, error) {
	_, c, err := s.access(ctx, node, req.Caller, req.CollectionID, admin.Download, admin.Upload, admin.ManageCollection)
	if err != nil {
		return internalapi.ListResponse{}, err
	}
	vs, err := s.db.ListVersions(ctx, c.ID)
	if err != nil {
		return internalapi.ListResponse{}, dbError(err)
	}
	return internalapi.ListResponse{Versions: vs}, nil
}

// Delete removes a version's record with an audit event (collectionManager only) and returns
// it; the node deletes the file.
func (s *Service) Delete(ctx context.Context, node string, req internalapi.VersionRequest) (internalapi.VersionResponse, error) {
	p, c, err := s.access(ctx, node, req.Caller, req.CollectionID, admin.ManageCollection)
	if err != nil {
		return internalapi.VersionResponse{}, err
	}
	r, err := ref.Parse(req.Ref)
	if err != nil {
		return internalapi.VersionResponse{}, err
	}
	v, err := s.db.DeleteVersionByRef(ctx, c.ID, r, shared.AuditEvent{ActorID: p.User.ID, TenantID: c.TenantID,
		Action: "deleteVersion", ObjectType: "version", IP: req.ClientIP,
		Details: map[string]string{"node": node, "ref": req.Ref}})
	if err != nil {
		return internalapi.VersionResponse{}, dbError(err)
	}
	return internalapi.VersionResponse{Version: v}, nil
}

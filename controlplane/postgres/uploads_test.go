package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"backuprepo/controlplane/postgres"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
	"backuprepo/shared/ref"
)

// uploadFixture is a tenant with n collections on dn-1 and one user.
func uploadFixture(t *testing.T, n int) (*postgres.DB, string, string, []string) {
	t.Helper()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	tenant, user := uuid.NewString(), uuid.NewString()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%02d", i)
	}
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO data_nodes (name, public_url, state) VALUES ('dn-1', 'http://dn-1', 'alive');
		INSERT INTO tenants (id, name, slug) VALUES ('`+tenant+`', 'T', 't');
		INSERT INTO users (id, email, password_hash, tenant_id) VALUES ('`+user+`', 'u@example.org', 'x', '`+tenant+`');
		INSERT INTO collections (id, tenant_id, max_backups_count, max_one_version_size, max_collection_size, strategy, node_name)
			SELECT 'c' || lpad(i::text, 2, '0'), '`+tenant+`', 3, 300, 900, 'FIFO', 'dn-1' FROM generate_series(0, `+fmt.Sprint(n-1)+`) i`,
	); err != nil {
		t.Fatal(err)
	}
	return db, tenant, user, ids
}

// TestReserveRespectsRoomUnderContention starts the reservations of 20 collections on one
// node at the same instant, round after round, and checks they never promise more than the
// node's room together: the advisory lock makes each insert see the ones before it.
func TestReserveRespectsRoomUnderContention(t *testing.T) {
	t.Parallel()
	db, tenant, user, ids := uploadFixture(t, 20)
	ctx := context.Background()
	const room = 1000
	for round := range 5 {
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			mu    sync.Mutex
			total int64
		)
		for i, id := range ids {
			wg.Go(func() {
				<-start
				res, err := db.Reserve(ctx, postgres.Reservation{ID: uuid.NewString(), CollectionID: id, TenantID: tenant,
					NodeName: "dn-1", UserID: user, Want: 300, Exact: i%2 == 0, Room: room, NextVersion: 1, Lease: time.Minute})
				if err != nil {
					t.Error(err)
					return
				}
				if res.Bytes > 0 {
					mu.Lock()
					total += res.Bytes
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		var reserved int64
		if err := db.Pool.QueryRow(ctx, "SELECT coalesce(sum(bytes), 0) FROM upload_reservations WHERE expires_at > now()").Scan(&reserved); err != nil {
			t.Fatal(err)
		}
		if total != reserved || reserved > room || reserved < room-300 {
			t.Fatalf("round %d: granted %d, reserved %d of a %d-byte room", round, total, reserved, room)
		}
		if _, err := db.Pool.Exec(ctx, "DELETE FROM upload_reservations"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReserveRefusals(t *testing.T) {
	t.Parallel()
	db, tenant, user, ids := uploadFixture(t, 2)
	ctx := context.Background()
	r := postgres.Reservation{ID: uuid.NewString(), CollectionID: ids[0], TenantID: tenant, NodeName: "dn-1", UserID: user,
		Want: 100, Room: 1000, NextVersion: 1, Lease: time.Minute}
	res, err := db.Reserve(ctx, r)
	if err != nil || res.Bytes != 100 {
		t.Fatalf("first reservation: %+v %v", res, err)
	}
	second := r
	second.ID = uuid.NewString()
	if res, err := db.Reserve(ctx, second); err != nil || !res.Busy || res.Bytes != -1 {
		t.Fatalf("second reservation on the same collection: %+v %v", res, err)
	}
	other := r
	other.ID, other.CollectionID, other.NextVersion = uuid.NewString(), ids[1], 7
	if res, err := db.Reserve(ctx, other); err != nil || !res.Stale || res.Bytes != -1 {
		t.Fatalf("stale next version: %+v %v", res, err)
	}
	other.NextVersion, other.NodeName = 1, "dn-2"
	if res, err := db.Reserve(ctx, other); err != nil || !res.Gone || res.Bytes != -1 {
		t.Fatalf("collection not on the node: %+v %v", res, err)
	}
	other.NodeName, other.Exact, other.Want = "dn-1", true, 901
	if res, err := db.Reserve(ctx, other); err != nil || res.NodeReserved != 100 || res.Bytes != -1 {
		t.Fatalf("exact length above room - reserved: %+v %v", res, err)
	}
	other.Exact, other.Want = false, 5000
	if res, err := db.Reserve(ctx, other); err != nil || res.Bytes != 900 {
		t.Fatalf("chunked upload capped at room - reserved: %+v %v", res, err)
	}
}

// TestReservePurgesExpiredReservations checks that reservations of crashed uploads (expired
// over a minute ago) are cleared by a node's first reservation, and then at most every
// purgeEvery, while an expired reservation never counts against the node's room meanwhile.
func TestReservePurgesExpiredReservations(t *testing.T) {
	t.Parallel()
	db, tenant, user, ids := uploadFixture(t, 3)
	ctx := context.Background()
	crashed := func(collection string) string {
		id := uuid.NewString()
		if _, err := db.Pool.Exec(ctx, `INSERT INTO upload_reservations (id, collection_id, tenant_id, node_name, bytes, expires_at)
			VALUES ($1, $2, $3, 'dn-1', 800, now() - interval '2 minutes')`, id, collection, tenant); err != nil {
			t.Fatal(err)
		}
		return id
	}
	exists := func(id string) bool {
		var n int
		if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM upload_reservations WHERE id = $1", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	reserve := func(collection string) {
		res, err := db.Reserve(ctx, postgres.Reservation{ID: uuid.NewString(), CollectionID: collection, TenantID: tenant,
			NodeName: "dn-1", UserID: user, Want: 100, Exact: true, Room: 1000, NextVersion: 1, Lease: time.Minute})
		if err != nil || res.Bytes != 100 || res.NodeReserved != 0 && res.NodeReserved != 100 {
			t.Fatalf("reserve on %s: %+v %v (an expired reservation must not count)", collection, res, err)
		}
	}
	first := crashed(ids[0])
	reserve(ids[1])
	if exists(first) {
		t.Error("the node's first reservation left a reservation expired two minutes ago")
	}
	second := crashed(ids[0])
	reserve(ids[2])
	if !exists(second) {
		t.Error("a reservation right after the purge purged again; expected at most one purge per interval")
	}
}

func TestCommitUploadInOneStatement(t *testing.T) {
	t.Parallel()
	db, tenant, user, ids := uploadFixture(t, 1)
	ctx := context.Background()
	commit := func(size int64, rotate []string) (shared.Version, []shared.Version) {
		t.Helper()
		id := uuid.NewString()
		if res, err := db.Reserve(ctx, postgres.Reservation{ID: id, CollectionID: ids[0], TenantID: tenant, NodeName: "dn-1",
			UserID: user, Want: 300, Room: 1 << 30, NextVersion: nextVersion(t, db, ids[0]), Lease: time.Minute}); err != nil || res.Bytes != 300 {
			t.Fatalf("reserve: %+v %v", res, err)
		}
		st, err := db.CommitState(ctx, id)
		if err != nil || !st.Found || !st.Live || st.Bytes != 300 || st.UserID != user {
			t.Fatalf("commit state: %+v %v", st, err)
		}
		if _, _, ok, err := db.CommitUpload(ctx, postgres.Commit{UploadID: id, NodeName: "dn-1", Size: 301,
			SHA256: fmt.Sprintf("%064x", size)}); ok || err != nil {
			t.Fatalf("commit above the reservation: ok %v, %v", ok, err)
		}
		v, rotated, ok, err := db.CommitUpload(ctx, postgres.Commit{UploadID: id, NodeName: "dn-1", Size: size,
			SHA256: fmt.Sprintf("%064x", size), Rotate: rotate})
		if !ok || err != nil {
			t.Fatalf("commit: ok %v, %v", ok, err)
		}
		if _, _, ok, _ := db.CommitUpload(ctx, postgres.Commit{UploadID: id, NodeName: "dn-1", Size: size,
			SHA256: fmt.Sprintf("%064x", size)}); ok {
			t.Fatal("a second commit consumed a reservation again")
		}
		return v, rotated
	}
	v1, _ := commit(10, nil)
	v2, _ := commit(20, nil)
	if v1.Number != 1 || v2.Number != 2 || v2.Filename != "backup-2" || v2.UploadedBy != user || v2.NodeName != "dn-1" {
		t.Fatalf("versions: %+v %+v", v1, v2)
	}
	v3, rotated := commit(30, []string{v1.ID})
	if v3.Number != 3 || len(rotated) != 1 || rotated[0] != v1 {
		t.Fatalf("rotation: %+v %+v", v3, rotated)
	}
	got, found, err := db.VersionByUploadID(ctx, v3.ID)
	if err != nil || !found || got != v3 {
		t.Fatalf("version by upload id: %+v %v %v", got, found, err)
	}
	if v, err := db.VersionByRef(ctx, ids[0], ref.Ref{Kind: ref.First}); err != nil || v != v2 {
		t.Fatalf("first: %+v %v", v, err)
	}
	if _, err := db.VersionByRef(ctx, ids[0], ref.Ref{Kind: ref.Number, Number: 1}); shared.ErrorCode(err) != shared.CodeNotFound {
		t.Fatalf("rotated v1: %v", err)
	}
	deleted, err := db.DeleteVersionByRef(ctx, ids[0], ref.Ref{Kind: ref.Latest},
		shared.AuditEvent{ActorID: user, TenantID: tenant, Action: "deleteVersion", ObjectType: "version", IP: "192.0.2.1"})
	if err != nil || deleted != v3 {
		t.Fatalf("delete latest: %+v %v", deleted, err)
	}
	var audits int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'deleteVersion' AND object_id = $1
		AND details->>'number' = '3'`, v3.ID).Scan(&audits); err != nil || audits != 1 {
		t.Fatalf("delete audit rows: %d %v", audits, err)
	}
}

func nextVersion(t *testing.T, db *postgres.DB, collection string) int64 {
	t.Helper()
	var n int64
	if err := db.Pool.QueryRow(context.Background(), "SELECT next_version FROM collections WHERE id = $1", collection).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAdmissionStateReadsBothParts checks that the batched read returns what TokenAuthState
// and UploadTarget return on their own, each part's NOT_FOUND apart from the other's, and an
// error on both parts, never an empty success, when the round trip fails.
func TestAdmissionStateReadsBothParts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, tenant, user, ids := uploadFixture(t, 1)
	if _, err := db.Pool.Exec(ctx, "INSERT INTO collection_grants (collection_id, user_id, roles) VALUES ($1, $2, '{backupUploader}')",
		ids[0], user); err != nil {
		t.Fatal(err)
	}
	rec := shared.TokenRecord{ID: uuid.NewString(), UserID: user, TenantID: tenant, ExpiresAt: time.Now().Add(time.Hour)}
	if err := db.InsertToken(ctx, rec, pgtest.Event("issueToken")); err != nil {
		t.Fatal(err)
	}
	wantAuth, err := db.TokenAuthState(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantTarget, err := db.UploadTarget(ctx, ids[0], user)
	if err != nil {
		t.Fatal(err)
	}

	a := db.AdmissionState(ctx, rec.ID, ids[0], user)
	if a.AuthErr != nil || a.TargetErr != nil {
		t.Fatalf("AdmissionState errors: %v, %v", a.AuthErr, a.TargetErr)
	}
	if got, want := fmt.Sprintf("%+v", a.Auth), fmt.Sprintf("%+v", wantAuth); got != want {
		t.Errorf("Auth = %s\nwant %s", got, want)
	}
	if got, want := fmt.Sprintf("%+v", a.Target), fmt.Sprintf("%+v", wantTarget); got != want {
		t.Errorf("Target = %s\nwant %s", got, want)
	}
	if len(a.Target.Grants) != 1 || a.Target.Grants[0] != shared.RoleBackupUploader {
		t.Errorf("grants = %v, want [backupUploader]", a.Target.Grants)
	}

	a = db.AdmissionState(ctx, uuid.NewString(), ids[0], user)
	wantCode(t, a.AuthErr, shared.CodeNotFound)
	if a.TargetErr != nil {
		t.Errorf("target of an unknown token's request: %v", a.TargetErr)
	}
	a = db.AdmissionState(ctx, "not-a-uuid", "nope", user)
	wantCode(t, a.AuthErr, shared.CodeNotFound)
	wantCode(t, a.TargetErr, shared.CodeNotFound)

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	a = db.AdmissionState(canceled, rec.ID, ids[0], user)
	if a.AuthErr == nil || a.TargetErr == nil || shared.ErrorCode(a.AuthErr) == shared.CodeNotFound {
		t.Errorf("failed round trip: errors %v and %v, want both set and not NOT_FOUND", a.AuthErr, a.TargetErr)
	}
}

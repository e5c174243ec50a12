package uploads

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"backuprepo/controlplane/auth"
	"backuprepo/controlplane/postgres"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
	"backuprepo/shared/internalapi"
)

func TestInternalAPIRefusesUnsignedRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.collection("c1")
	userToken := e.uploader()
	body, _ := json.Marshal(internalapi.AdmitRequest{Caller: internalapi.Caller{Token: userToken, ClientIP: "203.0.113.9"},
		CollectionID: "c1", ContentLength: 10, Room: 1 << 30})
	paths := []string{internalapi.PathAdmit, internalapi.PathExtend, internalapi.PathCommit, internalapi.PathAbort,
		internalapi.PathOutcome, internalapi.PathResolve, internalapi.PathList, internalapi.PathDelete,
		internalapi.PathDeletions, internalapi.PathDeletionsAck, internalapi.PathAbortAll}
	cases := []struct {
		name string
		sign func(r *http.Request)
	}{
		{"unsigned", func(*http.Request) {}},
		{"user token only", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+userToken) }},
		{"wrong secret", func(r *http.Request) {
			internalapi.Sign(r, []byte("another-secret-0123456789"), "dn-1", body, time.Now())
		}},
		{"stale", func(r *http.Request) { internalapi.Sign(r, testSecret, "dn-1", body, time.Now().Add(-10*time.Minute)) }},
		{"signed for another body", func(r *http.Request) { internalapi.Sign(r, testSecret, "dn-1", []byte(`{}`), time.Now()) }},
	}
	for _, path := range paths {
		for _, c := range cases {
			req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			c.sign(req)
			st, eb := e.do(req, nil)
			if st != http.StatusUnauthorized || eb.Code != shared.CodeNodeSignatureInvalid {
				t.Errorf("%s %s: %d %+v, want 401 NODE_SIGNATURE_INVALID", c.name, path, st, eb)
			}
		}
	}
	e.assertNothingLeft("c1", 0)
}

func TestAdmitRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := e.newTenant("other")
	closed := []shared.Window{{From: "0 0 1 1 *", Duration: time.Minute}} // New Year's first minute
	e.collection("plain")
	e.collection("extra", func(c *shared.Collection) { c.MaxCollectionSize = 100; c.MaxOneVersionSize = 30 })
	e.collection("exact", func(c *shared.Collection) { c.MaxCollectionSize = 90 })
	e.collection("far", func(c *shared.Collection) { c.NodeName = "dn-2" })
	e.collection("theirs", func(c *shared.Collection) { c.TenantID = other })
	e.collection("windowed", func(c *shared.Collection) { c.Windows = closed })
	e.collection("full", func(c *shared.Collection) { c.Strategy = shared.StrategyRejectWhenFull; c.MaxBackupsCount = 1 })
	up := e.uploader()
	e.upload(up, "full", 5)

	revoked := e.user(e.tenant, shared.RoleBackupUploader)
	revokedTok, err := e.auth.Issue(e.ctx, revoked, shared.TokenRequest{}, pgtest.IssueEvent)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth.Revoke(e.ctx, revokedTok.Record.ID, pgtest.Event("revokeToken")); err != nil {
		t.Fatal(err)
	}
	inactive := e.user(e.tenant, shared.RoleBackupUploader)
	inactiveTok := e.token(inactive, shared.TokenRequest{})
	e.exec("UPDATE users SET active = false WHERE id = $1", inactive.ID)
	fenced := e.user(e.tenant, shared.RoleBackupUploader)
	e.exec("UPDATE users SET allowed_ips = '{10.0.0.0/8}' WHERE id = $1", fenced.ID)
	suspendedTenant := e.newTenant("sleepy")
	e.collection("sleepy", func(c *shared.Collection) { c.TenantID = suspendedTenant })
	sleepyTok := e.token(e.user(suspendedTenant, shared.RoleBackupUploader), shared.TokenRequest{})
	e.exec("UPDATE tenants SET suspended = true WHERE id = $1", suspendedTenant)
	downloader := e.token(e.user(e.tenant, shared.RoleBackupDownloader), shared.TokenRequest{})
	scoped := e.token(e.user(e.tenant, shared.RoleBackupUploader),
		shared.TokenRequest{Scope: []shared.ScopeEntry{{Collection: "extra", Roles: []shared.Role{shared.RoleBackupUploader}}}})

	tests := []struct {
		name       string
		tok        string
		collection string
		length     int64
		room       int64
		status     int
		code       shared.Code
	}{
		{"garbage token", "not-a-token", "plain", 10, 1 << 30, 401, shared.CodeUnauthenticated},
		{"revoked token", revokedTok.Token, "plain", 10, 1 << 30, 401, shared.CodeTokenRevoked},
		{"inactive user", inactiveTok, "plain", 10, 1 << 30, 403, shared.CodeForbidden},
		{"IP not allowed", e.token(fenced, shared.TokenRequest{}), "plain", 10, 1 << 30, 403, shared.CodeIPNotAllowed},
		{"suspended tenant", sleepyTok, "sleepy", 10, 1 << 30, 403, shared.CodeTenantSuspended},
		{"unknown collection", up, "nope", 10, 1 << 30, 404, shared.CodeNotFound},
		{"malformed collection id", up, "../etc", 10, 1 << 30, 404, shared.CodeNotFound},
		{"another tenant's collection", up, "theirs", 10, 1 << 30, 404, shared.CodeNotFound},
		{"no upload right", downloader, "plain", 10, 1 << 30, 403, shared.CodeForbidden},
		{"token scoped to another collection", scoped, "plain", 10, 1 << 30, 403, shared.CodeForbidden},
		{"collection on another node", up, "far", 10, 1 << 30, 409, shared.CodeConflict},
		{"window closed", up, "windowed", 10, 1 << 30, 403, shared.CodeWindowClosed},
		{"REJECT_WHEN_FULL holding maxBackupsCount", up, "full", 10, 1 << 30, 409, shared.CodeCollectionFull},
		{"31 bytes over maxOneVersionSize 30 with no extra", up, "exact", 31, 1 << 30, 413, shared.CodeVersionTooLarge},
		{"41 bytes over 30 + extra 10", up, "extra", 41, 1 << 30, 413, shared.CodeCollectionQuotaExceeded},
		{"20 bytes with 19 bytes of room", up, "plain", 20, 19, 507, shared.CodeInsufficientStorage},
		{"chunked with no room", up, "plain", -1, 0, 507, shared.CodeInsufficientStorage},
	}
	for _, tt := range tests {
		_, st, eb := e.admitRoom(tt.tok, tt.collection, tt.length, tt.room)
		if st != tt.status || eb.Code != tt.code {
			t.Errorf("%s: %d %+v, want %d %s", tt.name, st, eb, tt.status, tt.code)
		}
		want := int64(0)
		if tt.collection == "full" {
			want = 1
		}
		e.assertNothingLeft(tt.collection, want)
	}

	// The bypasses: uploadsAnytime opens a closed window, a per-collection grant gives the right.
	anytime := e.token(e.user(e.tenant, shared.RoleBackupUploader, shared.RoleUploadsAnytime), shared.TokenRequest{})
	e.upload(anytime, "windowed", 10)
	granted := e.user(e.tenant)
	e.exec("INSERT INTO collection_grants (collection_id, user_id, roles) VALUES ('plain', $1, '{backupUploader}')", granted.ID)
	e.upload(e.token(granted, shared.TokenRequest{}), "plain", 10)
	scopedOK := e.token(e.user(e.tenant, shared.RoleBackupUploader),
		shared.TokenRequest{Scope: []shared.ScopeEntry{{Collection: "plain", Roles: []shared.Role{shared.RoleBackupUploader}}}})
	e.upload(scopedOK, "plain", 10)
	if got := e.numbers("plain"); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("plain holds %v", got)
	}
}

func TestAllowanceExampleThroughAdmission(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// maxCollectionSize 100, maxBackupsCount 3, maxOneVersionSize 30: extra = 100 - 3 x 30 = 10.
	e.collection("ex")
	up := e.uploader()
	steps := []struct {
		name      string
		allowance int64
		code      shared.Code
		size      int64
		kept      []int64
	}{
		{"empty: 30 + 10 = 40", 40, shared.CodeCollectionQuotaExceeded, 40, []int64{1}},
		{"v1 (40) borrows all 10: 30", 30, shared.CodeVersionTooLarge, 30, []int64{1, 2}},
		{"v1 40 + v2 30 kept: still 30", 30, shared.CodeVersionTooLarge, 20, []int64{1, 2, 3}},
		{"v1 rotates out, v2 30 + v3 20 borrow nothing: 40", 40, shared.CodeCollectionQuotaExceeded, 35, []int64{2, 3, 4}},
		{"v2 rotates out, v3 20 + v4 35 (borrows 5): 35", 35, shared.CodeCollectionQuotaExceeded, 35, []int64{3, 4, 5}},
	}
	for _, s := range steps {
		adm, st, eb := e.admit(up, "ex", -1)
		if st != http.StatusOK || adm.Allowance != s.allowance || adm.LimitCode != s.code {
			t.Fatalf("%s: admit = %d %+v %+v, want allowance %d %s", s.name, st, eb, adm, s.allowance, s.code)
		}
		if adm.ExtendEvery != 20*time.Second {
			t.Fatalf("ExtendEvery = %s, want a third of the 60 s lease", adm.ExtendEvery)
		}
		if _, st, eb := e.commit(adm.UploadID, s.size); st != http.StatusOK {
			t.Fatalf("%s: commit: %d %+v", s.name, st, eb)
		}
		if got := e.numbers("ex"); !slices.Equal(got, s.kept) {
			t.Fatalf("%s: kept %v, want %v", s.name, got, s.kept)
		}
		if n := e.count("SELECT sum(size) FROM versions WHERE collection_id = 'ex'"); n > 100 {
			t.Fatalf("%s: the collection holds %d bytes", s.name, n)
		}
	}
	// A known length reserves just that, and the room cuts a chunked upload's allowance.
	adm, st, _ := e.admitRoom(up, "ex", 12, 1<<30)
	if st != http.StatusOK || adm.Allowance != 12 {
		t.Fatalf("known length: %d %+v", st, adm)
	}
	e.call("dn-1", internalapi.PathAbort, internalapi.UploadRef{UploadID: adm.UploadID}, nil)
	adm, st, _ = e.admitRoom(up, "ex", -1, 7)
	if st != http.StatusOK || adm.Allowance != 7 || adm.LimitCode != shared.CodeInsufficientStorage {
		t.Fatalf("room-bound chunked: %d %+v", st, adm)
	}
}

func TestStrategies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up := e.uploader()

	e.collection("fifo", func(c *shared.Collection) { c.MaxCollectionSize = 0 })
	var rotated [][]int64
	for range 5 {
		out := e.upload(up, "fifo", 10)
		var nums []int64
		for _, v := range out.Rotated {
			nums = append(nums, v.Number)
		}
		rotated = append(rotated, nums)
	}
	if got := e.numbers("fifo"); !slices.Equal(got, []int64{3, 4, 5}) {
		t.Fatalf("FIFO keeps %v, want [3 4 5]", got)
	}
	if rotated[3][0] != 1 || rotated[4][0] != 2 || len(rotated[2]) != 0 {
		t.Fatalf("FIFO rotated %v", rotated)
	}

	e.collection("reject", func(c *shared.Collection) { c.Strategy = shared.StrategyRejectWhenFull; c.MaxBackupsCount = 2 })
	e.upload(up, "reject", 10)
	e.upload(up, "reject", 10)
	if _, st, eb := e.admit(up, "reject", 10); st != http.StatusConflict || eb.Code != shared.CodeCollectionFull {
		t.Fatalf("third upload to a full REJECT_WHEN_FULL: %d %+v", st, eb)
	}
	e.assertNothingLeft("reject", 2)

	// FIFO_PLUS_OLDER, 2 versions plus 1 older copy not older than 48 hours.
	e.collection("older", func(c *shared.Collection) {
		c.Strategy = shared.StrategyFIFOPlusOlder
		c.MaxBackupsCount = 2
		c.MaxOlderCopies = 1
		c.KeepOlderNotMoreThan = 48 * time.Hour
	})
	age := func(number int64, d time.Duration) {
		e.exec("UPDATE versions SET created_at = now() - $2 * interval '1 second' WHERE collection_id = 'older' AND number = $1",
			number, int64(d/time.Second))
	}
	e.upload(up, "older", 10)
	e.upload(up, "older", 10)
	age(1, 24*time.Hour)
	e.upload(up, "older", 10) // FIFO would drop v1; it is 24 h old, kept as the older copy
	if got := e.numbers("older"); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("after v3: %v, want [1 2 3]", got)
	}
	e.upload(up, "older", 10) // candidates v1, v2: only the newest (v2) is kept
	if got := e.numbers("older"); !slices.Equal(got, []int64{2, 3, 4}) {
		t.Fatalf("after v4: %v, want [2 3 4]", got)
	}
	age(3, 72*time.Hour)
	age(2, 96*time.Hour)
	e.upload(up, "older", 10) // candidates v2, v3: both older than 48 h, both go
	if got := e.numbers("older"); !slices.Equal(got, []int64{4, 5}) {
		t.Fatalf("after v5: %v, want [4 5]", got)
	}
	// The older copy counts towards maxCollectionSize: 100 bytes, 2 x 30, one kept copy of 30.
	e.collection("oldsize", func(c *shared.Collection) {
		c.Strategy = shared.StrategyFIFOPlusOlder
		c.MaxBackupsCount = 2
		c.MaxOneVersionSize = 30
		c.MaxCollectionSize = 100
		c.MaxOlderCopies = 1
		c.KeepOlderNotMoreThan = 48 * time.Hour
	})
	e.upload(up, "oldsize", 30)
	e.upload(up, "oldsize", 30)
	adm, st, _ := e.admit(up, "oldsize", -1)
	// v1 stays as the older copy, v2 stays: 100 - 60 = 40 = 30 + extra 40 - 0 capped by space.
	if st != http.StatusOK || adm.Allowance != 40 {
		t.Fatalf("allowance with an older copy: %d %+v, want 40", st, adm)
	}
}

func TestUploadLock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.collection("c1")
	up := e.uploader()
	first, st, _ := e.admit(up, "c1", 10)
	if st != http.StatusOK || !e.locked("c1") {
		t.Fatalf("first admit: %d, locked %v", st, e.locked("c1"))
	}
	if _, st, eb := e.admit(up, "c1", 10); st != http.StatusConflict || eb.Code != shared.CodeUploadInProgress {
		t.Fatalf("second admit: %d %+v", st, eb)
	}
	if _, st, _ := e.commit(first.UploadID, 10); st != http.StatusOK || e.locked("c1") {
		t.Fatalf("commit: %d, still locked %v", st, e.locked("c1"))
	}
	third, st, _ := e.admit(up, "c1", 10)
	if st != http.StatusOK {
		t.Fatalf("admit after commit: %d", st)
	}
	if st, eb := e.call("dn-1", internalapi.PathAbort, internalapi.UploadRef{UploadID: third.UploadID}, nil); st != http.StatusOK {
		t.Fatalf("abort: %d %+v", st, eb)
	}
	e.assertNothingLeft("c1", 1)
	if st, _ := e.call("dn-1", internalapi.PathAbort, internalapi.UploadRef{UploadID: third.UploadID}, nil); st != http.StatusOK {
		t.Fatalf("second abort: %d", st)
	}
	if _, st, eb := e.commit(third.UploadID, 10); st != http.StatusConflict || eb.Code != shared.CodeConflict {
		t.Fatalf("commit after abort: %d %+v", st, eb)
	}
	if st, eb := e.call("dn-1", internalapi.PathAbort, internalapi.UploadRef{UploadID: first.UploadID}, nil); st != http.StatusConflict {
		t.Fatalf("abort of a committed upload: %d %+v", st, eb)
	}
	e.assertNothingLeft("c1", 1)
}

func TestUploadLeaseExpiresAndExtends(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Lease = 600 * time.Millisecond })
	e.collection("c1")
	up := e.uploader()
	a, st, _ := e.admit(up, "c1", 10)
	if st != http.StatusOK || a.ExtendEvery != 200*time.Millisecond {
		t.Fatalf("admit: %d %+v", st, a)
	}
	// Extending every ExtendEvery keeps the upload alive past several leases.
	for range 6 {
		time.Sleep(a.ExtendEvery)
		if st, eb := e.call("dn-1", internalapi.PathExtend, internalapi.UploadRef{UploadID: a.UploadID}, nil); st != http.StatusOK {
			t.Fatalf("extend: %d %+v", st, eb)
		}
	}
	if _, st, eb := e.admit(up, "c1", 10); st != http.StatusConflict || eb.Code != shared.CodeUploadInProgress {
		t.Fatalf("admit during an extended upload: %d %+v", st, eb)
	}
	if st, _ := e.call("dn-2", internalapi.PathExtend, internalapi.UploadRef{UploadID: a.UploadID}, nil); st != http.StatusConflict {
		t.Fatalf("extend by another node: %d", st)
	}
	// Without extends the lock and the reservation expire: a crashed node blocks nothing.
	time.Sleep(800 * time.Millisecond)
	if e.locked("c1") {
		t.Fatal("lock did not expire")
	}
	if _, st, eb := e.commit(a.UploadID, 10); st != http.StatusConflict || eb.Message != "upload lease expired" {
		t.Fatalf("commit after expiry: %d %+v", st, eb)
	}
	if st, _ := e.call("dn-1", internalapi.PathExtend, internalapi.UploadRef{UploadID: a.UploadID}, nil); st != http.StatusConflict {
		t.Fatalf("extend after expiry: %d", st)
	}
	b, st, eb := e.admit(up, "c1", 10)
	if st != http.StatusOK {
		t.Fatalf("admit after expiry: %d %+v", st, eb)
	}
	if _, st, eb := e.commit(b.UploadID, 10); st != http.StatusOK {
		t.Fatalf("commit of the upload admitted after expiry: %d %+v", st, eb)
	}
}

func TestCommitIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.collection("c1")
	up := e.uploader()
	a, _, _ := e.admit(up, "c1", 10)
	first, st, _ := e.commit(a.UploadID, 10)
	if st != http.StatusOK || first.Version.ID != a.UploadID || first.Version.Number != 1 ||
		first.Version.Filename != "db-1.sql.gpg" || first.Version.SHA256 != sha(10) || first.Version.Size != 10 {
		t.Fatalf("commit: %d %+v", st, first)
	}
	second, st, _ := e.commit(a.UploadID, 10)
	if st != http.StatusOK || second.Version != first.Version || len(second.Rotated) != 0 {
		t.Fatalf("second commit: %d %+v, want %+v", st, second, first)
	}
	if n := e.count("SELECT count(*) FROM versions WHERE collection_id = 'c1'"); n != 1 {
		t.Fatalf("%d version rows", n)
	}
	if _, st, eb := e.commit(a.UploadID, 11); st != http.StatusConflict {
		t.Fatalf("commit with other content: %d %+v", st, eb)
	}
	var out internalapi.OutcomeResponse
	if st, _ := e.call("dn-1", internalapi.PathOutcome, internalapi.UploadRef{UploadID: a.UploadID}, &out); st != http.StatusOK ||
		!out.Committed || out.Version != first.Version {
		t.Fatalf("outcome: %d %+v", st, out)
	}
	out = internalapi.OutcomeResponse{}
	if st, _ := e.call("dn-1", internalapi.PathOutcome, internalapi.UploadRef{UploadID: uuid.NewString()}, &out); st != http.StatusOK || out.Committed {
		t.Fatalf("outcome of an unknown upload: %d %+v", st, out)
	}
	if n := e.count("SELECT count(*) FROM audit_log WHERE action = 'uploadVersion' AND object_id = $1", a.UploadID); n != 1 {
		t.Fatalf("%d audit rows for the upload", n)
	}
	// A repeated commit of an upload that rotated versions out names them again, so that a node
	// that lost the first answer still deletes their files.
	e.upload(up, "c1", 10)
	e.upload(up, "c1", 10)
	b, _, _ := e.admit(up, "c1", 10)
	rot, st, _ := e.commit(b.UploadID, 10)
	again, st2, _ := e.commit(b.UploadID, 10)
	if st != http.StatusOK || st2 != http.StatusOK || len(rot.Rotated) != 1 || rot.Rotated[0].Number != 1 ||
		len(again.Rotated) != 1 || again.Rotated[0].ID != rot.Rotated[0].ID || again.Rotated[0].Filename != "db-1.sql.gpg" ||
		!again.Rotated[0].CreatedAt.Equal(rot.Rotated[0].CreatedAt) || again.Version != rot.Version {
		t.Fatalf("repeated commit with rotation: %+v then %+v", rot, again)
	}
	if n := e.count("SELECT count(*) FROM versions WHERE upload_id = $1", a.UploadID); n != 0 {
		t.Fatalf("%d version rows of the rotated first upload", n)
	}
}

// TestCommitOutlivesItsCaller: a node killed during its commit call must not leave the
// commit half done. The commit runs to its end though the node's request is gone, version and
// lock release alike; and Outcome, which the restarted node asks, releases the lock of a
// committed upload that still holds it, but never another upload's.
func TestCommitOutlivesItsCaller(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.collection("c1")
	up := e.uploader()
	a, st, eb := e.admit(up, "c1", 10)
	if st != http.StatusOK || !e.locked("c1") {
		t.Fatalf("admit: %d %+v, locked %v", st, eb, e.locked("c1"))
	}
	gone, cancel := context.WithCancel(e.ctx)
	cancel() // the node hung up before the control plane began
	out, err := e.svc.Commit(gone, "dn-1", internalapi.CommitRequest{UploadID: a.UploadID, Size: 10, SHA256: sha(10)})
	if err != nil || out.Version.ID != a.UploadID {
		t.Fatalf("commit for a caller that went away: %+v, %v", out, err)
	}
	e.assertNothingLeft("c1", 1)

	// A commit whose lock release was lost: the lock is back as the upload left it.
	key := e.prefix + "upload:lock:c1"
	if err := e.rdb.Set(e.ctx, key, a.UploadID, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if !e.outcome(a.UploadID).Committed {
		t.Fatal("outcome: not committed")
	}
	if e.locked("c1") {
		t.Fatal("the committed upload's lock is still held after Outcome")
	}
	// Another upload's lock stays.
	other := uuid.NewString()
	if err := e.rdb.Set(e.ctx, key, other, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if !e.outcome(a.UploadID).Committed {
		t.Fatal("outcome: not committed")
	}
	if holder, err := e.rdb.Get(e.ctx, key).Result(); err != nil || holder != other {
		t.Fatalf("the lock of another upload: %q, %v; want it kept for %s", holder, err, other)
	}
}

func TestOneShotToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.collection("c1")
	tok, err := e.auth.Issue(e.ctx, e.user(e.tenant, shared.RoleBackupUploader), shared.TokenRequest{Once: true}, pgtest.IssueEvent)
	if err != nil {
		t.Fatal(err)
	}
	e.upload(tok.Token, "c1", 10)
	if n := e.count("SELECT count(*) FROM tokens WHERE id = $1 AND revoked_at IS NOT NULL", tok.Record.ID); n != 1 {
		t.Fatal("one-shot token not revoked in the database")
	}
	if n, _ := e.rdb.Exists(e.ctx, e.prefix+"revoked:"+tok.Record.ID).Result(); n != 1 {
		t.Fatal("one-shot token revocation not cached")
	}
	if _, st, eb := e.admit(tok.Token, "c1", 10); st != http.StatusUnauthorized || eb.Code != shared.CodeTokenRevoked {
		t.Fatalf("second use: %d %+v", st, eb)
	}
	e.assertNothingLeft("c1", 1)
}

func TestConcurrentAdmitsNeverOvershootNodeRoom(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const room = 1000
	up := e.uploader()
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = "many-" + uuid.NewString()[:8]
		// 300 bytes each: 20 of them would need 6000 bytes of the node's 1000.
		e.collection(ids[i], func(c *shared.Collection) { c.MaxOneVersionSize = 300; c.MaxCollectionSize = 900 })
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		granted int64
		ok      int
	)
	for _, id := range ids {
		wg.Go(func() {
			length := int64(-1)
			if id[len(id)-1]%2 == 0 {
				length = 250
			}
			adm, st, eb := e.admitRoom(up, id, length, room)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case st == http.StatusOK:
				granted += adm.Allowance
				ok++
			case eb.Code != shared.CodeInsufficientStorage:
				t.Errorf("admit %s: %d %+v", id, st, eb)
			}
		})
	}
	wg.Wait()
	reserved := e.count("SELECT coalesce(sum(bytes), 0) FROM upload_reservations WHERE node_name = 'dn-1' AND expires_at > now()")
	if granted > room || reserved > room || reserved != granted {
		t.Fatalf("granted %d, reserved %d bytes of a %d-byte room", granted, reserved, room)
	}
	if ok < 3 {
		t.Fatalf("only %d admissions succeeded; the room fits at least 3", ok)
	}
	t.Logf("%d of 20 admitted, %d of %d bytes reserved", ok, reserved, room)
}

func TestVersionsResolveListDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.collection("c1")
	e.collection("far", func(c *shared.Collection) { c.NodeName = "dn-2" })
	up := e.uploader()
	v1 := e.upload(up, "c1", 10).Version
	v2 := e.upload(up, "c1", 11).Version
	caller := func(tok string) internalapi.Caller { return internalapi.Caller{Token: tok, ClientIP: "203.0.113.9"} }
	resolve := func(tok, coll, ref string) (shared.Version, int, shared.Code) {
		var out internalapi.VersionResponse
		st, eb := e.call("dn-1", internalapi.PathResolve, internalapi.VersionRequest{Caller: caller(tok), CollectionID: coll, Ref: ref}, &out)
		return out.Version, st, eb.Code
	}
	for ref, want := range map[string]shared.Version{"latest": v2, "recent": v2, "first": v1, "v1": v1, "2": v2, v1.ID: v1} {
		if got, st, code := resolve(up, "c1", ref); st != http.StatusOK || got != want {
			t.Errorf("resolve %s: %d %s %+v, want %+v", ref, st, code, got, want)
		}
	}
	onlyUp := e.token(e.user(e.tenant, shared.RoleBackupUploader), shared.TokenRequest{})
	manager := e.token(e.user(e.tenant, shared.RoleCollectionManager), shared.TokenRequest{})
	anytimeOnly := e.token(e.user(e.tenant, shared.RoleUploadsAnytime), shared.TokenRequest{})
	refusals := []struct {
		name, tok, coll, ref string
		status               int
		code                 shared.Code
	}{
		{"v0", up, "c1", "v0", 400, shared.CodeInvalidInput},
		{"overlong number", up, "c1", "v99999999999999999999", 400, shared.CodeInvalidInput},
		{"unknown number", up, "c1", "v9", 404, shared.CodeNotFound},
		{"unknown id", up, "c1", uuid.NewString(), 404, shared.CodeNotFound},
		{"no download right", onlyUp, "c1", "latest", 403, shared.CodeForbidden},
		{"unknown collection", up, "zz", "latest", 404, shared.CodeNotFound},
		{"another node's collection", up, "far", "latest", 409, shared.CodeConflict},
		{"bad token", "x", "c1", "latest", 401, shared.CodeUnauthenticated},
	}
	for _, r := range refusals {
		if _, st, code := resolve(r.tok, r.coll, r.ref); st != r.status || code != r.code {
			t.Errorf("resolve %s: %d %s, want %d %s", r.name, st, code, r.status, r.code)
		}
	}

	list := func(tok string) ([]shared.Version, int) {
		var out internalapi.ListResponse
		st, _ := e.call("dn-1", internalapi.PathList, internalapi.ListRequest{Caller: caller(tok), CollectionID: "c1"}, &out)
		return out.Versions, st
	}
	for _, tok := range []string{up, onlyUp, manager} {
		if vs, st := list(tok); st != http.StatusOK || len(vs) != 2 || vs[0] != v2 {
			t.Fatalf("list: %d %+v", st, vs)
		}
	}
	if _, st := list(anytimeOnly); st != http.StatusForbidden {
		t.Fatalf("list with uploadsAnytime only: %d", st)
	}

	del := func(tok, ref string) (shared.Version, int, shared.Code) {
		var out internalapi.VersionResponse
		st, eb := e.call("dn-1", internalapi.PathDelete, internalapi.VersionRequest{Caller: caller(tok), CollectionID: "c1", Ref: ref}, &out)
		return out.Version, st, eb.Code
	}
	if _, st, code := del(up, "first"); st != http.StatusForbidden || code != shared.CodeForbidden {
		t.Fatalf("delete by an uploader: %d %s", st, code)
	}
	if got, st, _ := del(manager, "first"); st != http.StatusOK || got != v1 {
		t.Fatalf("delete by a manager: %d %+v", st, got)
	}
	if _, st, _ := del(manager, v1.ID); st != http.StatusNotFound {
		t.Fatalf("second delete: %d", st)
	}
	if got := e.numbers("c1"); !slices.Equal(got, []int64{2}) {
		t.Fatalf("after delete: %v", got)
	}
	if n := e.count("SELECT count(*) FROM audit_log WHERE action = 'deleteVersion' AND object_id = $1 AND ip = '203.0.113.9'", v1.ID); n != 1 {
		t.Fatalf("%d audit rows for the delete", n)
	}
	// Numbers are never reused: the next upload is v3.
	if v := e.upload(up, "c1", 5).Version; v.Number != 3 {
		t.Fatalf("next number %d", v.Number)
	}
}

func TestRedisDownFailsFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.collection("c1")
	up := e.uploader()
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = dead.Close() })
	svc := New(Config{DB: e.db, Redis: dead, Auth: e.auth, KeyPrefix: e.prefix, NodeSecret: testSecret})
	start := time.Now()
	_, err := svc.Admit(e.ctx, "dn-1", internalapi.AdmitRequest{Caller: internalapi.Caller{Token: up, ClientIP: "203.0.113.9"},
		CollectionID: "c1", ContentLength: 10, Room: 1 << 30})
	if shared.ErrorCode(err) != shared.CodeDependencyUnavailable || time.Since(start) > 5*time.Second {
		t.Fatalf("admit without Redis: %v after %s", err, time.Since(start))
	}
	e.assertNothingLeft("c1", 0)
}

func TestPostgresDownFailsFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.collection("c1")
	up := e.uploader()
	a, st, _ := e.admit(up, "c1", 10)
	if st != http.StatusOK {
		t.Fatalf("admit: %d", st)
	}
	pool, err := pgxpool.New(e.ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	dead := &postgres.DB{Pool: pool}
	svc := New(Config{DB: dead, Redis: e.rdb, Auth: auth.New(auth.Config{DB: dead, Redis: e.rdb, KeyPrefix: e.prefix,
		SigningKey: e.key}), KeyPrefix: e.prefix, NodeSecret: testSecret})
	caller := internalapi.Caller{Token: up, ClientIP: "203.0.113.9"}
	start := time.Now()
	_, admitErr := svc.Admit(e.ctx, "dn-1", internalapi.AdmitRequest{Caller: caller, CollectionID: "c1", ContentLength: 10, Room: 1 << 30})
	_, commitErr := svc.Commit(e.ctx, "dn-1", internalapi.CommitRequest{UploadID: a.UploadID, Size: 10, SHA256: sha(10)})
	extendErr := svc.Extend(e.ctx, "dn-1", internalapi.UploadRef{UploadID: a.UploadID})
	for name, err := range map[string]error{"admit": admitErr, "commit": commitErr, "extend": extendErr} {
		if shared.ErrorCode(err) != shared.CodeDependencyUnavailable {
			t.Errorf("%s without PostgreSQL: %v", name, err)
		}
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %s to fail", time.Since(start))
	}
	// The upload is still there for the node's retry once PostgreSQL is back.
	if _, st, eb := e.commit(a.UploadID, 10); st != http.StatusOK {
		t.Fatalf("commit after recovery: %d %+v", st, eb)
	}
}

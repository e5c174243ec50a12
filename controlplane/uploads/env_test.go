package uploads

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"backuprepo/controlplane/auth"
	"backuprepo/controlplane/postgres"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
	"backuprepo/shared/internalapi"
)

var testSecret = []byte("node-secret-0123456789abcdef")

// env is a control plane internal API on a real socket, with a fresh database, a Redis key
// prefix and a real auth service.
type env struct {
	t      *testing.T
	ctx    context.Context
	db     *postgres.DB
	rdb    *redis.Client
	prefix string
	auth   *auth.Service
	svc    *Service
	srv    *httptest.Server
	tenant string
	key    ed25519.PrivateKey
}

type envOption func(*Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	db := pgtest.NewDB(t)
	rdb, prefix := pgtest.NewRedis(t)
	e := &env{t: t, ctx: context.Background(), db: db, rdb: rdb, prefix: prefix}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.key = key
	e.auth = auth.New(auth.Config{DB: db, Redis: rdb, KeyPrefix: prefix, SigningKey: key})
	cfg := Config{DB: db, Redis: rdb, Auth: e.auth, KeyPrefix: prefix, NodeSecret: testSecret}
	for _, o := range opts {
		o(&cfg)
	}
	e.svc = New(cfg)
	r := chi.NewRouter()
	e.svc.Routes(r)
	e.srv = httptest.NewServer(r)
	t.Cleanup(e.srv.Close)
	for _, n := range []string{"dn-1", "dn-2"} {
		e.exec(`INSERT INTO data_nodes (name, public_url, state) VALUES ($1, 'http://' || $1, 'alive')`, n)
	}
	e.tenant = e.newTenant("acme")
	return e
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Pool.Exec(e.ctx, sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) count(sql string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.db.Pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (e *env) newTenant(slug string) string {
	id := uuid.NewString()
	e.exec(`INSERT INTO tenants (id, name, slug) VALUES ($1, $2, $2)`, id, slug)
	return id
}

// user creates an active user of tenant (none for "") with roles and returns it.
func (e *env) user(tenant string, roles ...shared.Role) shared.User {
	e.t.Helper()
	u, err := e.db.CreateUser(e.ctx, shared.User{Email: uuid.NewString() + "@example.org", TenantID: tenant,
		Roles: roles, Active: true}, "unused-hash", pgtest.Event("createUser"))
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *env) token(u shared.User, req shared.TokenRequest) string {
	e.t.Helper()
	tok, err := e.auth.Issue(e.ctx, u, req, pgtest.IssueEvent)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok.Token
}

// uploader returns a token of a new backupUploader of the env's tenant.
func (e *env) uploader() string {
	return e.token(e.user(e.tenant, shared.RoleBackupUploader, shared.RoleBackupDownloader), shared.TokenRequest{})
}

// collection creates a collection on dn-1 of the env's tenant; mutate adjusts the defaults
// (FIFO, 3 versions of at most 30 bytes, 100 bytes in all).
func (e *env) collection(id string, mutate ...func(*shared.Collection)) shared.Collection {
	e.t.Helper()
	c := shared.Collection{ID: id, TenantID: e.tenant, FilenameTemplate: "db-${version}.sql.gpg", MaxBackupsCount: 3,
		MaxOneVersionSize: 30, MaxCollectionSize: 100, Strategy: shared.StrategyFIFO, NodeName: "dn-1"}
	for _, m := range mutate {
		m(&c)
	}
	created, err := e.db.CreateCollection(e.ctx, c, "", func(shared.Tenant, postgres.TenantLoad) error { return nil },
		shared.AuditEvent{Action: "createCollection", ObjectType: "collection", ObjectID: id, TenantID: c.TenantID})
	if err != nil {
		e.t.Fatal(err)
	}
	return created
}

// call POSTs in to path signed as node and decodes a 200 answer into out; it returns the
// status and, for other statuses, the error body.
func (e *env) call(node, path string, in, out any) (int, internalapi.ErrorBody) {
	e.t.Helper()
	body, err := json.Marshal(in)
	if err != nil {
		e.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	internalapi.Sign(req, testSecret, node, body, time.Now())
	return e.do(req, out)
}

func (e *env) do(req *http.Request, out any) (int, internalapi.ErrorBody) {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	var eb internalapi.ErrorBody
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(raw, &eb); err != nil {
			e.t.Fatalf("%s: status %d with a body that is not an ErrorBody: %s", req.URL.Path, resp.StatusCode, raw)
		}
		return resp.StatusCode, eb
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s: decode %s: %v", req.URL.Path, raw, err)
		}
	}
	return resp.StatusCode, eb
}

func (e *env) admit(tok, collection string, length int64) (internalapi.AdmitResponse, int, internalapi.ErrorBody) {
	e.t.Helper()
	return e.admitRoom(tok, collection, length, 1<<40)
}

func (e *env) admitRoom(tok, collection string, length, room int64) (internalapi.AdmitResponse, int, internalapi.ErrorBody) {
	e.t.Helper()
	var out internalapi.AdmitResponse
	st, eb := e.call("dn-1", internalapi.PathAdmit, internalapi.AdmitRequest{
		Caller: internalapi.Caller{Token: tok, ClientIP: "203.0.113.9"}, CollectionID: collection,
		ContentLength: length, Room: room}, &out)
	return out, st, eb
}

// sha is a well-formed sha256 that depends on n.
func sha(n int64) string { return fmt.Sprintf("%064x", n) }

func (e *env) commit(uploadID string, size int64) (internalapi.CommitResponse, int, internalapi.ErrorBody) {
	e.t.Helper()
	var out internalapi.CommitResponse
	st, eb := e.call("dn-1", internalapi.PathCommit, internalapi.CommitRequest{UploadID: uploadID, Size: size,
		SHA256: sha(size)}, &out)
	return out, st, eb
}

// outcome asks what became of an upload, as a restarted node does, and fails the test unless
// the control plane answers.
func (e *env) outcome(uploadID string) internalapi.OutcomeResponse {
	e.t.Helper()
	var out internalapi.OutcomeResponse
	if st, eb := e.call("dn-1", internalapi.PathOutcome, internalapi.UploadRef{UploadID: uploadID}, &out); st != http.StatusOK {
		e.t.Fatalf("outcome of %s: %d %+v", uploadID, st, eb)
	}
	return out
}

// upload admits and commits an upload of size bytes and fails the test unless both succeed.
func (e *env) upload(tok, collection string, size int64) internalapi.CommitResponse {
	e.t.Helper()
	adm, st, eb := e.admit(tok, collection, size)
	if st != http.StatusOK {
		e.t.Fatalf("admit %d bytes to %s: %d %+v", size, collection, st, eb)
	}
	out, st, eb := e.commit(adm.UploadID, size)
	if st != http.StatusOK {
		e.t.Fatalf("commit %d bytes to %s: %d %+v", size, collection, st, eb)
	}
	return out
}

// numbers returns the version numbers a collection holds, oldest first.
func (e *env) numbers(collection string) []int64 {
	e.t.Helper()
	rows, err := e.db.Pool.Query(e.ctx, "SELECT number FROM versions WHERE collection_id = $1 ORDER BY number", collection)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := []int64{}
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// locked reports whether the collection's upload lock is held in Redis.
func (e *env) locked(collection string) bool {
	e.t.Helper()
	n, err := e.rdb.Exists(e.ctx, e.prefix+"upload:lock:"+collection).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return n == 1
}

// assertNothingLeft checks that a refused upload left no version, no reservation and no lock.
func (e *env) assertNothingLeft(collection string, versions int64) {
	e.t.Helper()
	if n := e.count("SELECT count(*) FROM versions WHERE collection_id = $1", collection); n != versions {
		e.t.Errorf("%s holds %d versions, want %d", collection, n, versions)
	}
	if n := e.count("SELECT count(*) FROM upload_reservations WHERE collection_id = $1", collection); n != 0 {
		e.t.Errorf("%s has %d reservations left", collection, n)
	}
	if e.locked(collection) {
		e.t.Errorf("%s is still locked", collection)
	}
}

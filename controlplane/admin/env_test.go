package admin_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"backuprepo/controlplane/admin"
	"backuprepo/controlplane/auth"
	"backuprepo/controlplane/postgres"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
)

const testPassword = "correct horse battery"

// env is one control plane's admin service on a fresh database, with real auth, Redis and a
// node view holding one data node.
type env struct {
	t     *testing.T
	db    *postgres.DB
	auth  *auth.Service
	svc   *admin.Service
	hash  string // testPassword, hashed once per test: argon2id is slow by design
	node  string
	root  context.Context // the bootstrap systemAdmin
	admin shared.User
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db := pgtest.NewDB(t)
	rdb, prefix := pgtest.NewRedis(t)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := auth.New(auth.Config{DB: db, Redis: rdb, KeyPrefix: prefix, SigningKey: key})
	hash, err := auth.HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, auth: a, hash: hash, node: "node-1"}
	e.svc = admin.New(admin.Config{DB: db, Auth: a, Nodes: e.nodeView(shared.DataNode{
		Name: e.node, PublicURL: "http://127.0.0.1:1", Zone: "z1", State: shared.NodeAlive, LastSeen: time.Now(),
		Disks: []shared.Disk{{Path: "/d1", Total: 1 << 50, Free: 1 << 50}},
	})})
	e.admin = e.user("", "root@example.org", shared.RoleSystemAdmin)
	e.root = e.as(e.admin, nil)
	return e
}

// user inserts a user directly (the service's own createUser is tested separately).
func (e *env) user(tenantID, email string, roles ...shared.Role) shared.User {
	e.t.Helper()
	if roles == nil {
		roles = []shared.Role{}
	}
	u, err := e.db.CreateUser(context.Background(), shared.User{Email: email, TenantID: tenantID, Roles: roles, Active: true}, e.hash, pgtest.Event("createUser"))
	if err != nil {
		e.t.Fatalf("create user %s: %v", email, err)
	}
	return u
}

// as returns a request context authenticated as u through a real token; scope narrows it.
func (e *env) as(u shared.User, scope []shared.ScopeEntry) context.Context {
	e.t.Helper()
	ctx := auth.WithClientIP(context.Background(), "192.0.2.7")
	tok, err := e.auth.Issue(ctx, u, shared.TokenRequest{Description: "test", Scope: scope}, pgtest.IssueEvent)
	if err != nil {
		e.t.Fatalf("issue token for %s: %v", u.Email, err)
	}
	p, err := e.auth.Authenticate(ctx, tok.Token, "192.0.2.7")
	if err != nil {
		e.t.Fatalf("authenticate %s: %v", u.Email, err)
	}
	return auth.WithPrincipal(ctx, p)
}

func (e *env) tenant(slug string, quota int64) shared.Tenant {
	e.t.Helper()
	t, err := e.svc.CreateTenant(e.root, shared.TenantInput{Name: "Tenant " + slug, Slug: slug, Quota: quota})
	if err != nil {
		e.t.Fatalf("create tenant %s: %v", slug, err)
	}
	return t
}

// collectionInput is a valid collection of 10 versions of 1 MB in 10 MB.
func collectionInput(tenantID, id string) shared.CollectionInput {
	return shared.CollectionInput{ID: id, TenantID: tenantID, Description: "nightly db dump", Tags: []string{"db"},
		MaxBackupsCount: 10, MaxOneVersionSize: 1e6, MaxCollectionSize: 1e7, Strategy: shared.StrategyFIFO}
}

func (e *env) collection(tenantID, id string) shared.Collection {
	e.t.Helper()
	pl, err := e.svc.CreateCollection(e.root, collectionInput(tenantID, id))
	if err != nil {
		e.t.Fatalf("create collection %s: %v", id, err)
	}
	return pl.Collection
}

// version inserts a version row as the upload path's commit would.
func (e *env) version(collectionID string, number, size int64, at time.Time) {
	e.t.Helper()
	_, err := e.db.Pool.Exec(context.Background(), `INSERT INTO versions (id, collection_id, number, filename, size, sha256, created_at, node_name)
		VALUES (gen_random_uuid(), $1, $2::bigint, 'backup-' || $2::bigint, $3, repeat('a', 64), $4, $5)`,
		collectionID, number, size, at, e.node)
	if err != nil {
		e.t.Fatalf("insert version: %v", err)
	}
}

func (e *env) grant(collectionID, userID string, roles ...shared.Role) {
	e.t.Helper()
	if _, err := e.svc.GrantCollectionAccess(e.root, collectionID, userID, roles); err != nil {
		e.t.Fatalf("grant: %v", err)
	}
}

func (e *env) auditCount() int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM audit_log").Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// wantCode fails unless err carries one of the codes ("" = no error).
func wantCode(t *testing.T, what string, err error, codes ...shared.Code) {
	t.Helper()
	if len(codes) == 1 && codes[0] == "" {
		if err != nil {
			t.Errorf("%s: unexpected error %v", what, err)
		}
		return
	}
	if err == nil {
		t.Errorf("%s: succeeded, want %v", what, codes)
		return
	}
	var se *shared.Error
	if !errors.As(err, &se) {
		t.Errorf("%s: error %v is not a *shared.Error (want %v)", what, err, codes)
		return
	}
	for _, c := range codes {
		if se.Code == c {
			return
		}
	}
	t.Errorf("%s: code %s (%v), want %v", what, se.Code, err, codes)
}

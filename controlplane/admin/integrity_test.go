package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"backuprepo/controlplane/admin"
	"backuprepo/controlplane/postgres"
	"backuprepo/graph"
	"backuprepo/shared"
)

// gql runs query through the real GraphQL handler as ctx's principal and decodes the answer.
func gql(t *testing.T, h http.Handler, ctx context.Context, query string, vars map[string]any) (map[string]any, []map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	r := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body)).WithContext(ctx)
	r.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	var resp struct {
		Data   map[string]any   `json:"data"`
		Errors []map[string]any `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, rec.Body.String())
	}
	return resp.Data, resp.Errors
}

func handlerFor(s *admin.Service) http.Handler {
	return graph.NewHandler(graph.HandlerConfig{Sessions: s, Tenants: s, Users: s, Tokens: s, Collections: s,
		Versions: s, Nodes: s, Audit: s})
}

// versionIDs returns a collection's version ids by number.
func (e *env) versionIDs(collectionID string) map[int64]string {
	e.t.Helper()
	rows, err := e.db.Pool.Query(context.Background(), "SELECT number, id::text FROM versions WHERE collection_id = $1", collectionID)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[int64]string{}
	for rows.Next() {
		var n int64
		var id string
		if err := rows.Scan(&n, &id); err != nil {
			e.t.Fatal(err)
		}
		out[n] = id
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// record stores checks as the data node's integrity report would.
func (e *env) record(checks ...postgres.VersionCheck) {
	e.t.Helper()
	ids := make([]string, len(checks))
	for i, c := range checks {
		ids[i] = c.VersionID
	}
	if _, err := e.db.RecordIntegrity(context.Background(), e.node, "", ids,
		func(map[string]postgres.StoredVersion) []postgres.VersionCheck { return checks }, nil); err != nil {
		e.t.Fatal(err)
	}
}

const integrityQuery = `query($id: ID!) { collection(id: $id) { id integrity { lastCheckedAt checkedVersions
	problems { versionId version filename kind detail expectedSha256 foundSha256 foundSize node detectedAt } } } }`

// TestIntegrityField reads Collection.integrity through the GraphQL handler: every role of the
// tenant that can read the collection sees the problems, another tenant sees nothing.
func TestIntegrityField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.tenant("int-a", 0), e.tenant("int-b", 0)
	c := e.collection(a.ID, "int-coll")
	for n := int64(1); n <= 3; n++ {
		e.version(c.ID, n, 100*n, time.Now().Add(-time.Hour))
	}
	ids := e.versionIDs(c.ID)
	size, found := int64(150), strings.Repeat("b", 64)
	e.record(
		postgres.VersionCheck{VersionID: ids[1], OK: true},
		postgres.VersionCheck{VersionID: ids[2], Kind: postgres.CheckDamaged, FoundSize: &size, FoundSHA256: found, Detail: "the file holds 150 bytes; 200 were uploaded"},
		postgres.VersionCheck{VersionID: ids[3], Kind: postgres.CheckUnreadable, Detail: "block 0 fails its checksum"},
	)
	h := handlerFor(e.svc)

	granted := e.user(a.ID, "granted@int-a.org")
	e.grant(c.ID, granted.ID, shared.RoleBackupDownloader)
	readers := map[string]shared.User{
		"systemAdmin":       e.admin,
		"tenantAdmin":       e.user(a.ID, "admin@int-a.org", shared.RoleTenantAdmin),
		"userManager":       e.user(a.ID, "um@int-a.org", shared.RoleUserManager),
		"collectionManager": e.user(a.ID, "cm@int-a.org", shared.RoleCollectionManager),
		"backupUploader":    e.user(a.ID, "up@int-a.org", shared.RoleBackupUploader),
		"backupDownloader":  e.user(a.ID, "down@int-a.org", shared.RoleBackupDownloader),
		"uploadsAnytime":    e.user(a.ID, "any@int-a.org", shared.RoleUploadsAnytime),
		"grant on it":       granted,
	}
	for name, u := range readers {
		data, errs := gql(t, h, e.as(u, nil), integrityQuery, map[string]any{"id": c.ID})
		if len(errs) != 0 {
			t.Errorf("%s: errors %v", name, errs)
			continue
		}
		in := data["collection"].(map[string]any)["integrity"].(map[string]any)
		problems := in["problems"].([]any)
		if in["checkedVersions"] != float64(3) || in["lastCheckedAt"] == nil || len(problems) != 2 {
			t.Errorf("%s: integrity = %v", name, in)
			continue
		}
		p3, p2 := problems[0].(map[string]any), problems[1].(map[string]any)
		if p3["versionId"] != ids[3] || p3["version"] != float64(3) || p3["filename"] != "backup-3" || p3["kind"] != "unreadable" ||
			p3["detail"] != "block 0 fails its checksum" || p3["foundSha256"] != nil || p3["foundSize"] != nil ||
			p3["expectedSha256"] != strings.Repeat("a", 64) || p3["node"] != e.node || p3["detectedAt"] == nil {
			t.Errorf("%s: problem of v3 = %v", name, p3)
		}
		if p2["versionId"] != ids[2] || p2["kind"] != "damaged" || p2["foundSize"] != float64(150) || p2["foundSha256"] != found {
			t.Errorf("%s: problem of v2 = %v", name, p2)
		}
	}

	// Another tenant's users, whatever their roles, and a user without any role get nothing.
	outsiders := map[string]shared.User{
		"other tenantAdmin":     e.user(b.ID, "admin@int-b.org", shared.RoleTenantAdmin),
		"other backupUploader":  e.user(b.ID, "up@int-b.org", shared.RoleBackupUploader),
		"no role in the tenant": e.user(a.ID, "none@int-a.org"),
	}
	for name, u := range outsiders {
		data, errs := gql(t, h, e.as(u, nil), integrityQuery, map[string]any{"id": c.ID})
		if len(errs) == 0 || data["collection"] != nil {
			t.Errorf("%s: data %v, errors %v; want no collection and an error", name, data, errs)
			continue
		}
		if code := errs[0]["extensions"].(map[string]any)["code"]; code != string(shared.CodeNotFound) && code != string(shared.CodeForbidden) {
			t.Errorf("%s: code %v", name, code)
		}
	}
	// The service itself refuses the other tenant with NOT_FOUND, as for every other object.
	_, err := e.svc.Integrity(e.as(outsiders["other tenantAdmin"], nil), c.ID)
	wantCode(t, "other tenant's integrity", err, shared.CodeNotFound)

	// A collection never checked: no time, nothing checked, no problems.
	e.collection(a.ID, "int-fresh")
	got, err := e.svc.Integrity(e.root, "int-fresh")
	if err != nil || got.LastCheckedAt != nil || got.CheckedVersions != 0 || got.Problems == nil || len(got.Problems) != 0 {
		t.Errorf("unchecked collection: %+v, %v", got, err)
	}
}

// queryCounter records the SQL of every query pgx sends.
type queryCounter struct {
	mu  sync.Mutex
	sql []string
}

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sql = append(c.sql, d.SQL)
	return ctx
}

func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// take returns how many queries since the last take read version_checks.
func (c *queryCounter) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.sql {
		if strings.Contains(s, "version_checks") {
			n++
		}
	}
	c.sql = nil
	return n
}

// TestIntegrityFieldCostsNothingUnlessAsked lists collections with and without the field: the
// list alone reads no check, and the field reads one query per collection.
func TestIntegrityFieldCostsNothingUnlessAsked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("int-cost", 0)
	for _, id := range []string{"cost-1", "cost-2", "cost-3"} {
		e.collection(a.ID, id)
		e.version(id, 1, 10, time.Now())
	}
	counter := &queryCounter{}
	cfg := e.db.Pool.Config()
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	svc := admin.New(admin.Config{DB: &postgres.DB{Pool: pool}, Auth: e.auth, Nodes: e.nodeView(shared.DataNode{
		Name: e.node, PublicURL: "http://127.0.0.1:1", State: shared.NodeAlive, LastSeen: time.Now()})})
	h := handlerFor(svc)
	ctx := e.as(e.user(a.ID, "admin@int-cost.org", shared.RoleTenantAdmin), nil)

	counter.take()
	if _, errs := gql(t, h, ctx, `{ collections { items { id description } } }`, nil); len(errs) != 0 {
		t.Fatal(errs)
	}
	if n := counter.take(); n != 0 {
		t.Errorf("listing collections without integrity read version_checks %d times", n)
	}
	data, errs := gql(t, h, ctx, `{ collections { items { id integrity { checkedVersions } } } }`, nil)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if items := data["collections"].(map[string]any)["items"].([]any); len(items) != 3 {
		t.Fatalf("items = %v", items)
	}
	if n := counter.take(); n != 3 {
		t.Errorf("integrity of 3 collections read version_checks %d times, want 3", n)
	}
}

package admin_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"backuprepo/controlplane/auth"
	"backuprepo/shared"
)

func TestCollectionValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tn := e.tenant("valid", 0)
	quoted := e.tenant("quoted", 5e7)
	e.collection(quoted.ID, "existing") // declares 1e7 of 5e7
	cm := e.as(e.user(tn.ID, "cm@valid.org", shared.RoleCollectionManager), nil)
	qcm := e.as(e.user(quoted.ID, "cm@quoted.org", shared.RoleCollectionManager), nil)
	n := 0
	cases := []struct {
		name string
		ctx  context.Context
		edit func(*shared.CollectionInput)
		want shared.Code
	}{
		{"valid", cm, func(in *shared.CollectionInput) {}, ""},
		{"uuid id", cm, func(in *shared.CollectionInput) { in.ID = "3f2a8c1e-5b7d-4e9f-a1c3-0d2b4f6e8a9c" }, ""},
		{"generated id", cm, func(in *shared.CollectionInput) { in.ID = "" }, ""},
		{"id with underscore", cm, func(in *shared.CollectionInput) { in.ID = "a_b" }, shared.CodeInvalidInput},
		{"id with dot dot slash", cm, func(in *shared.CollectionInput) { in.ID = "../etc" }, shared.CodeInvalidInput},
		{"id of 64", cm, func(in *shared.CollectionInput) { in.ID = strings.Repeat("a", 64) }, ""},
		{"id of 65", cm, func(in *shared.CollectionInput) { in.ID = strings.Repeat("b", 65) }, shared.CodeInvalidInput},
		{"template with version", cm, func(in *shared.CollectionInput) { in.FilenameTemplate = "db-${version}.sql.gpg" }, ""},
		{"template without version", cm, func(in *shared.CollectionInput) { in.FilenameTemplate = "db.sql" }, shared.CodeInvalidInput},
		{"template with slash", cm, func(in *shared.CollectionInput) { in.FilenameTemplate = "../${version}" }, shared.CodeInvalidInput},
		{"one backup", cm, func(in *shared.CollectionInput) { in.MaxBackupsCount = 1 }, ""},
		{"zero backups", cm, func(in *shared.CollectionInput) { in.MaxBackupsCount = 0 }, shared.CodeInvalidInput},
		{"negative backups", cm, func(in *shared.CollectionInput) { in.MaxBackupsCount = -1 }, shared.CodeInvalidInput},
		{"version equals collection", cm, func(in *shared.CollectionInput) { in.MaxBackupsCount, in.MaxOneVersionSize = 1, 1e7 }, ""},
		{"version above collection", cm, func(in *shared.CollectionInput) { in.MaxBackupsCount, in.MaxOneVersionSize = 1, 1e7+1 }, shared.CodeInvalidInput},
		{"count times version fits", cm, func(in *shared.CollectionInput) { in.MaxBackupsCount, in.MaxOneVersionSize = 5, 2e6 }, ""},
		{"count times version too big", cm, func(in *shared.CollectionInput) { in.MaxBackupsCount, in.MaxOneVersionSize = 6, 2e6 }, shared.CodeInvalidInput},
		{"product overflows", cm, func(in *shared.CollectionInput) {
			in.MaxBackupsCount, in.MaxOneVersionSize, in.MaxCollectionSize = 4, math.MaxInt64/2, math.MaxInt64
		}, shared.CodeInvalidInput},
		{"negative version size", cm, func(in *shared.CollectionInput) { in.MaxOneVersionSize = -1 }, shared.CodeInvalidInput},
		{"negative collection size", cm, func(in *shared.CollectionInput) { in.MaxCollectionSize = -1 }, shared.CodeInvalidInput},
		{"unlimited by systemAdmin", e.root, func(in *shared.CollectionInput) { in.MaxCollectionSize = 0 }, ""},
		{"unlimited by manager", cm, func(in *shared.CollectionInput) { in.MaxCollectionSize = 0 }, shared.CodeForbidden},
		{"strategy reject", cm, func(in *shared.CollectionInput) { in.Strategy = shared.StrategyRejectWhenFull }, ""},
		{"strategy unknown", cm, func(in *shared.CollectionInput) { in.Strategy = "LIFO" }, shared.CodeInvalidInput},
		{"fifo plus older", cm, func(in *shared.CollectionInput) {
			in.Strategy, in.MaxOlderCopies, in.KeepOlderNotMoreThan = shared.StrategyFIFOPlusOlder, 2, 30*24*time.Hour
		}, ""},
		{"fifo plus older without copies", cm, func(in *shared.CollectionInput) {
			in.Strategy, in.KeepOlderNotMoreThan = shared.StrategyFIFOPlusOlder, 30*24*time.Hour
		}, shared.CodeInvalidInput},
		{"fifo plus older without age", cm, func(in *shared.CollectionInput) {
			in.Strategy, in.MaxOlderCopies = shared.StrategyFIFOPlusOlder, 2
		}, shared.CodeInvalidInput},
		{"window valid", cm, func(in *shared.CollectionInput) {
			in.Windows = []shared.Window{{From: "0 2 * * *", Duration: 2 * time.Hour}}
		}, ""},
		{"window bad cron", cm, func(in *shared.CollectionInput) {
			in.Windows = []shared.Window{{From: "61 2 * * *", Duration: time.Hour}}
		}, shared.CodeInvalidInput},
		{"window no duration", cm, func(in *shared.CollectionInput) { in.Windows = []shared.Window{{From: "0 2 * * *"}} }, shared.CodeInvalidInput},
		{"within tenant quota", qcm, func(in *shared.CollectionInput) { in.TenantID, in.MaxCollectionSize = quoted.ID, 4e7 }, ""},
		{"above tenant quota", qcm, func(in *shared.CollectionInput) {
			in.TenantID, in.MaxCollectionSize, in.MaxOneVersionSize, in.MaxBackupsCount = quoted.ID, 1, 1, 1
		}, shared.CodeTenantQuotaExceeded},
		{"unlimited under quota", e.root, func(in *shared.CollectionInput) { in.TenantID, in.MaxCollectionSize = quoted.ID, 0 }, shared.CodeTenantQuotaExceeded},
		{"duplicate id", cm, func(in *shared.CollectionInput) { in.ID = "dup" }, ""},
		{"duplicate id again", cm, func(in *shared.CollectionInput) { in.ID = "dup" }, shared.CodeConflict},
		{"health code", cm, func(in *shared.CollectionInput) { in.HealthCode = "s3cret" }, ""},
	}
	for _, c := range cases {
		n++
		in := collectionInput(tn.ID, fmt.Sprintf("v%d", n))
		c.edit(&in)
		pl, err := e.svc.CreateCollection(c.ctx, in)
		wantCode(t, c.name, err, c.want)
		if err == nil && (pl.NodeName != e.node || pl.Reason == "" || pl.Collection.NodeName != e.node) {
			t.Errorf("%s: placement %q (%q), collection on %q", c.name, pl.NodeName, pl.Reason, pl.Collection.NodeName)
		}
	}

	// The health code is stored hashed, never as given.
	var stored string
	if err := e.db.Pool.QueryRow(context.Background(), "SELECT health_code_hash FROM collections WHERE health_code_hash <> ''").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored == "s3cret" || len(stored) != 64 {
		t.Errorf("health code stored as %q", stored)
	}
}

func ptr[T any](v T) *T { return &v }

func TestUpdateCollectionRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tn := e.tenant("upd", 3e7)
	cm := e.as(e.user(tn.ID, "cm@upd.org", shared.RoleCollectionManager), nil)
	c := e.collection(tn.ID, "full")
	other := e.collection(tn.ID, "other") // the tenant now declares 2e7 of 3e7
	for i := int64(1); i <= 4; i++ {
		e.version(c.ID, i, 1e6, time.Now())
	}
	cases := []struct {
		name  string
		patch shared.CollectionPatch
		want  shared.Code
	}{
		{"shrink to fit usage", shared.CollectionPatch{MaxCollectionSize: ptr(int64(4e6)), MaxBackupsCount: ptr(4)}, ""},
		{"shrink below usage", shared.CollectionPatch{MaxCollectionSize: ptr(int64(3e6)), MaxBackupsCount: ptr(3)}, shared.CodeCollectionQuotaExceeded},
		{"fifo may keep more than count", shared.CollectionPatch{MaxBackupsCount: ptr(2)}, ""},
		{"reject when full must fit count", shared.CollectionPatch{MaxBackupsCount: ptr(3), Strategy: ptr(shared.StrategyRejectWhenFull)}, shared.CodeCollectionFull},
		{"reject when full with room", shared.CollectionPatch{MaxBackupsCount: ptr(4), Strategy: ptr(shared.StrategyRejectWhenFull)}, ""},
		{"grow within quota", shared.CollectionPatch{MaxCollectionSize: ptr(int64(2e7))}, ""},
		{"grow above quota", shared.CollectionPatch{MaxCollectionSize: ptr(int64(2e7 + 1))}, shared.CodeTenantQuotaExceeded},
		{"rule of creation still holds", shared.CollectionPatch{MaxOneVersionSize: ptr(int64(3e7))}, shared.CodeInvalidInput},
		{"unlimited by manager", shared.CollectionPatch{MaxCollectionSize: ptr(int64(0))}, shared.CodeForbidden},
		{"bad template", shared.CollectionPatch{FilenameTemplate: ptr("a/${version}")}, shared.CodeInvalidInput},
		{"tags", shared.CollectionPatch{Tags: []string{"x", "y", "x"}}, ""},
	}
	for _, tc := range cases {
		before, _ := e.db.CollectionByID(context.Background(), c.ID)
		got, err := e.svc.UpdateCollection(cm, c.ID, tc.patch)
		wantCode(t, tc.name, err, tc.want)
		after, _ := e.db.CollectionByID(context.Background(), c.ID)
		if err != nil && fmt.Sprint(before) != fmt.Sprint(after) {
			t.Errorf("%s: refused update changed the row", tc.name)
		}
		if err == nil && tc.patch.Tags != nil && strings.Join(got.Tags, ",") != "x,y" {
			t.Errorf("%s: tags %v", tc.name, got.Tags)
		}
	}
	// Lowering the tenant quota below what is declared is refused.
	wantCode(t, "quota below declared", func() error {
		_, err := e.svc.UpdateTenant(e.root, tn.ID, shared.TenantPatch{Quota: ptr(int64(2e7))})
		return err
	}(), shared.CodeTenantQuotaExceeded)
	_ = other
}

func TestDeleteCollection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tn := e.tenant("del", 0)
	cm := e.as(e.user(tn.ID, "cm@del.org", shared.RoleCollectionManager), nil)
	c := e.collection(tn.ID, "has-versions")
	e.version(c.ID, 1, 10, time.Now())
	e.version(c.ID, 2, 10, time.Now())
	wantCode(t, "delete non-empty", e.svc.DeleteCollection(cm, c.ID, false), shared.CodeCollectionNotEmpty)
	wantCode(t, "force by manager", e.svc.DeleteCollection(cm, c.ID, true), shared.CodeForbidden)
	wantCode(t, "force by systemAdmin", e.svc.DeleteCollection(e.root, c.ID, true), "")
	wantCode(t, "gone", func() error { _, err := e.svc.Collection(e.root, c.ID); return err }(), shared.CodeNotFound)
	var left int
	if err := e.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM versions WHERE collection_id = $1", c.ID).Scan(&left); err != nil || left != 0 {
		t.Errorf("versions left: %d, %v", left, err)
	}
	evs, _, err := e.svc.AuditLog(e.root, tn.ID, shared.Page{First: 1})
	if err != nil || len(evs) != 1 || evs[0].Action != "deleteCollection" || evs[0].Details["fileDeletion"] != "pending" || evs[0].Details["versionsDeleted"] != "2" {
		t.Errorf("audit of forced delete: %+v, %v", evs, err)
	}
	empty := e.collection(tn.ID, "empty")
	wantCode(t, "delete empty by manager", e.svc.DeleteCollection(cm, empty.ID, false), "")
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tn := e.tenant("bad", 0)
	ctx := e.root
	s := e.svc
	wantCode(t, "get ../", func() error { _, err := s.Collection(ctx, "../../etc/passwd"); return err }(), shared.CodeNotFound)
	wantCode(t, "get overlong", func() error { _, err := s.Collection(ctx, strings.Repeat("x", 10000)); return err }(), shared.CodeNotFound)
	wantCode(t, "tenant not uuid", func() error { _, err := s.Tenant(ctx, "1 OR 1=1"); return err }(), shared.CodeNotFound)
	wantCode(t, "user not uuid", func() error { _, err := s.User(ctx, "../x"); return err }(), shared.CodeNotFound)
	wantCode(t, "token not uuid", func() error { _, err := s.RevokeToken(ctx, "'; --"); return err }(), shared.CodeNotFound)
	wantCode(t, "slug ../", func() error { _, err := s.CreateTenant(ctx, shared.TenantInput{Name: "x", Slug: "../x"}); return err }(), shared.CodeInvalidInput)
	wantCode(t, "negative quota", func() error {
		_, err := s.CreateTenant(ctx, shared.TenantInput{Name: "x", Slug: "neg", Quota: -1})
		return err
	}(), shared.CodeInvalidInput)
	wantCode(t, "NUL in description", func() error {
		in := collectionInput(tn.ID, "nul")
		in.Description = "a\x00b"
		_, err := s.CreateCollection(ctx, in)
		return err
	}(), shared.CodeInvalidInput)
	wantCode(t, "short password", func() error {
		_, err := s.CreateUser(ctx, shared.UserInput{Email: "p@bad.org", Password: "short", TenantID: tn.ID})
		return err
	}(), shared.CodeInvalidInput)
	wantCode(t, "bad email", func() error {
		_, err := s.CreateUser(ctx, shared.UserInput{Email: "Joe <joe@bad.org>", Password: testPassword, TenantID: tn.ID})
		return err
	}(), shared.CodeInvalidInput)
	wantCode(t, "bad allowed ip", func() error {
		_, err := s.CreateUser(ctx, shared.UserInput{Email: "ip@bad.org", Password: testPassword, TenantID: tn.ID, AllowedIPs: []string{"10.0.0.0/33"}})
		return err
	}(), shared.CodeInvalidInput)
	wantCode(t, "unknown role", func() error {
		_, err := s.CreateUser(ctx, shared.UserInput{Email: "r@bad.org", Password: testPassword, TenantID: tn.ID, Roles: []shared.Role{"root"}})
		return err
	}(), shared.CodeInvalidInput)
	wantCode(t, "systemAdmin in a tenant", func() error {
		_, err := s.CreateUser(ctx, shared.UserInput{Email: "sa@bad.org", Password: testPassword, TenantID: tn.ID, Roles: []shared.Role{shared.RoleSystemAdmin}})
		return err
	}(), shared.CodeInvalidInput)
	wantCode(t, "missing tenant", func() error {
		_, err := s.CreateUser(ctx, shared.UserInput{Email: "m@bad.org", Password: testPassword, TenantID: "00000000-0000-0000-0000-000000000000"})
		return err
	}(), shared.CodeNotFound)
	wantCode(t, "bad cursor", func() error {
		_, _, err := s.Collections(ctx, shared.CollectionFilter{Page: shared.Page{After: "%%%"}})
		return err
	}(), shared.CodeInvalidInput)
	wantCode(t, "first too large", func() error {
		_, _, err := s.Collections(ctx, shared.CollectionFilter{Page: shared.Page{First: 1001}})
		return err
	}(), shared.CodeInvalidInput)
	wantCode(t, "negative first", func() error { _, _, err := s.Tenants(ctx, shared.Page{First: -1}); return err }(), shared.CodeInvalidInput)
	wantCode(t, "grant non-collection role", func() error {
		c := e.collection(tn.ID, "g")
		u := e.user(tn.ID, "g@bad.org")
		_, err := s.GrantCollectionAccess(ctx, c.ID, u.ID, []shared.Role{shared.RoleTenantAdmin})
		return err
	}(), shared.CodeInvalidInput)
	wantCode(t, "unauthenticated", func() error { _, _, err := s.Collections(context.Background(), shared.CollectionFilter{}); return err }(), shared.CodeUnauthenticated)
	wantCode(t, "unauthenticated mutation", func() error {
		_, err := s.CreateTenant(context.Background(), shared.TenantInput{Name: "x", Slug: "x"})
		return err
	}(), shared.CodeUnauthenticated)

	// SQL-looking text is data: stored and returned verbatim.
	sql := `'); DROP TABLE collections; -- % _ \`
	in := collectionInput(tn.ID, "sql")
	in.Description, in.Tags = sql, []string{sql}
	if _, err := s.CreateCollection(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, err := s.Collection(ctx, "sql")
	if err != nil || got.Description != sql || len(got.Tags) != 1 || got.Tags[0] != sql {
		t.Errorf("round trip: %+v, %v", got, err)
	}
	list, _, err := s.Collections(ctx, shared.CollectionFilter{Search: "DROP TABLE collections; -- %", Tags: []string{sql}})
	if err != nil || len(list) != 1 || list[0].ID != "sql" {
		t.Errorf("search for the SQL text: %v, %v", list, err)
	}
	list, _, err = s.Collections(ctx, shared.CollectionFilter{Search: "%"})
	if err != nil || len(list) != 1 {
		t.Errorf("a %% in the search is literal: %d results, %v", len(list), err)
	}
	tnt, err := s.CreateTenant(ctx, shared.TenantInput{Name: sql, Slug: "sqlname"})
	if err != nil || tnt.Name != sql {
		t.Errorf("tenant name: %+v, %v", tnt, err)
	}
}

func TestCollectionsPagination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tn := e.tenant("many", 0)
	other := e.tenant("others", 0)
	e.collection(other.ID, "zz-other")
	want := map[string]bool{}
	for i := range 250 {
		in := collectionInput(tn.ID, fmt.Sprintf("c-%03d", i))
		if i%2 == 0 {
			in.Tags = []string{"even", "db"}
		}
		if _, err := e.svc.CreateCollection(e.root, in); err != nil {
			t.Fatal(err)
		}
		want[in.ID] = true
	}
	ctx := e.as(e.user(tn.ID, "admin@many.org", shared.RoleTenantAdmin), nil)
	seen := map[string]int{}
	after, pages := "", 0
	for {
		list, info, err := e.svc.Collections(ctx, shared.CollectionFilter{Page: shared.Page{First: 100, After: after}})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, c := range list {
			seen[c.ID]++
		}
		if !info.HasNextPage {
			break
		}
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		after = info.EndCursor
	}
	if pages != 3 || len(seen) != 250 {
		t.Errorf("%d pages, %d distinct collections; want 3 and 250", pages, len(seen))
	}
	for id, n := range seen {
		if n != 1 || !want[id] {
			t.Errorf("%s seen %d times (ours: %v)", id, n, want[id])
		}
	}
	even, _, err := e.svc.Collections(ctx, shared.CollectionFilter{Tags: []string{"even", "db"}, Page: shared.Page{First: 1000}})
	if err != nil || len(even) != 125 {
		t.Errorf("tag filter: %d, %v; want 125", len(even), err)
	}
	one, _, err := e.svc.Collections(ctx, shared.CollectionFilter{Search: "C-24", Page: shared.Page{First: 1000}})
	if err != nil || len(one) != 10 {
		t.Errorf("search: %d, %v; want 10 (c-240..c-249)", len(one), err)
	}
	all, _, err := e.svc.Collections(e.root, shared.CollectionFilter{Page: shared.Page{First: 1000}})
	if err != nil || len(all) != 251 {
		t.Errorf("systemAdmin across tenants: %d, %v; want 251", len(all), err)
	}
}

func TestTenantQuotaUnderConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tn := e.tenant("race", 4e7) // room for four 1e7 collections
	var wg sync.WaitGroup
	errs := make([]error, 12)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.svc.CreateCollection(e.root, collectionInput(tn.ID, fmt.Sprintf("r%d", i)))
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			wantCode(t, "concurrent create", err, shared.CodeTenantQuotaExceeded)
		}
	}
	var declared int64
	if err := e.db.Pool.QueryRow(context.Background(), "SELECT sum(max_collection_size) FROM collections WHERE tenant_id = $1", tn.ID).Scan(&declared); err != nil {
		t.Fatal(err)
	}
	if ok != 4 || declared != 4e7 {
		t.Errorf("%d creations succeeded declaring %d; want 4 and 4e7", ok, declared)
	}
}

func TestPlacementAndAudit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tn := e.tenant("place", 0)
	in := collectionInput(tn.ID, "huge")
	in.MaxCollectionSize = 1 << 60
	in.MaxOneVersionSize = 1 << 40
	_, err := e.svc.CreateCollection(e.root, in)
	wantCode(t, "larger than every node", err, shared.CodeNoCapacity)
	if _, err := e.db.CollectionByID(context.Background(), "huge"); shared.ErrorCode(err) != shared.CodeNotFound {
		t.Errorf("refused collection was stored: %v", err)
	}
	pl, err := e.svc.CreateCollection(e.as(e.user(tn.ID, "cm@place.org", shared.RoleCollectionManager), nil), collectionInput(tn.ID, "fits"))
	if err != nil {
		t.Fatal(err)
	}
	evs, _, err := e.svc.AuditLog(e.root, tn.ID, shared.Page{First: 1})
	if err != nil || len(evs) != 1 {
		t.Fatalf("audit: %v, %v", evs, err)
	}
	ev := evs[0]
	if ev.Action != "createCollection" || ev.ObjectID != "fits" || ev.Details["node"] != pl.NodeName ||
		ev.Details["placementReason"] != pl.Reason || ev.IP != "192.0.2.7" || ev.ActorID == "" {
		t.Errorf("audit event %+v for placement %+v", ev, pl)
	}
	// A drained node takes no new collections.
	if _, err := e.svc.DrainDataNode(e.root, e.node); err != nil {
		t.Fatal(err)
	}
	n, err := e.svc.DataNode(e.root, e.node)
	if err != nil || n.State != shared.NodeDraining {
		t.Errorf("drained node: %+v, %v", n, err)
	}
	_, err = e.svc.CreateCollection(e.root, collectionInput(tn.ID, "after-drain"))
	wantCode(t, "only node drained", err, shared.CodeNoCapacity)
	if _, err := e.svc.UndrainDataNode(e.root, e.node); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateCollection(e.root, collectionInput(tn.ID, "after-undrain")); err != nil {
		t.Errorf("after undrain: %v", err)
	}
	onNode, err := e.svc.NodeCollections(e.root, e.node)
	if err != nil || len(onNode) != 2 {
		t.Errorf("node collections: %d, %v", len(onNode), err)
	}
}

func TestUsersAndPasswords(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tn := e.tenant("people", 0)
	um := e.user(tn.ID, "um@people.org", shared.RoleUserManager, shared.RoleBackupUploader)
	ctx := e.as(um, nil)
	u, err := e.svc.CreateUser(ctx, shared.UserInput{Email: "new@people.org", Password: testPassword,
		Roles: []shared.Role{shared.RoleBackupUploader}, AllowedIPs: []string{"192.0.2.7", "10.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	if u.TenantID != tn.ID || !u.Active || strings.Join(u.AllowedIPs, ",") != "192.0.2.7/32,10.0.0.0/8" {
		t.Errorf("created %+v", u)
	}
	_, err = e.svc.CreateUser(ctx, shared.UserInput{Email: "NEW@people.org", Password: testPassword})
	wantCode(t, "duplicate email", err, shared.CodeConflict)
	_, err = e.svc.CreateUser(ctx, shared.UserInput{Email: "staff@host.org", Password: testPassword, TenantID: ""})
	if err != nil {
		t.Errorf("manager's user without tenant id joins the manager's tenant: %v", err)
	}
	_, err = e.svc.UpdateUser(ctx, u.ID, shared.UserPatch{Roles: []shared.Role{shared.RoleCollectionManager}})
	wantCode(t, "give a role not held", err, shared.CodeForbidden)
	self := e.as(u, nil)
	wantCode(t, "own roles", func() error {
		_, err := e.svc.UpdateUser(self, u.ID, shared.UserPatch{Roles: []shared.Role{shared.RoleTenantAdmin}})
		return err
	}(), shared.CodeForbidden)
	wantCode(t, "own email", func() error {
		_, err := e.svc.UpdateUser(self, u.ID, shared.UserPatch{Email: ptr("renamed@people.org")})
		return err
	}(), "")
	wantCode(t, "wrong old password", e.svc.ChangePassword(self, "", "not the password", "another long password"), shared.CodeInvalidCredentials)
	wantCode(t, "short new password", e.svc.ChangePassword(self, "", testPassword, "short"), shared.CodeInvalidInput)
	wantCode(t, "change own password", e.svc.ChangePassword(self, "", testPassword, "another long password"), "")
	if _, err := e.svc.Login(fromTestIP(), "renamed@people.org", "another long password"); err != nil {
		t.Errorf("login with the new password: %v", err)
	}
	wantCode(t, "manager resets password", e.svc.ChangePassword(ctx, u.ID, "", "third long password"), "")
	wantCode(t, "staff user by tenant manager", func() error {
		_, err := e.svc.CreateUser(ctx, shared.UserInput{Email: "x@people.org", Password: testPassword, Roles: []shared.Role{shared.RoleSystemAdmin}})
		return err
	}(), shared.CodeInvalidInput, shared.CodeForbidden)
	list, info, err := e.svc.Users(ctx, "", shared.Page{First: 2})
	if err != nil || len(list) != 2 || !info.HasNextPage {
		t.Errorf("users page: %d, %+v, %v", len(list), info, err)
	}
	me, err := e.svc.Me(ctx)
	if err != nil || me.User.ID != um.ID {
		t.Errorf("me: %+v, %v", me, err)
	}
}

// fromTestIP is an unauthenticated request from the address the test users are allowed at.
func fromTestIP() context.Context { return auth.WithClientIP(context.Background(), "192.0.2.7") }

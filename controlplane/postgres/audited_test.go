package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"backuprepo/controlplane/postgres"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
)

// brokenEvent cannot be inserted: its actor is not a uuid.
func brokenEvent(action string) shared.AuditEvent {
	return shared.AuditEvent{ActorID: "not-a-uuid", Action: action, ObjectType: "test"}
}

// TestAuditedChangesCommitWithTheirEvent checks the five changes that record their audit event
// in their own transaction: when the event cannot be written the change is rolled back, and when
// it can, the event is there with the change's object.
func TestAuditedChangesCommitWithTheirEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	tenant := insertTenant(t, db, false)
	countAudit := func(action string) int {
		t.Helper()
		evs, err := db.ListAudit(ctx, postgres.AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range evs {
			if e.Action == action {
				n++
			}
		}
		return n
	}

	// CreateUser: no user without its event; the event names the new user.
	_, err := db.CreateUser(ctx, shared.User{Email: "lost@example.org", TenantID: tenant, Active: true}, "h", brokenEvent("createUser"))
	if err == nil {
		t.Fatal("CreateUser with an unwritable event succeeded")
	}
	if _, _, err := db.UserByEmail(ctx, "lost@example.org"); shared.ErrorCode(err) != shared.CodeNotFound {
		t.Fatalf("user after the failed CreateUser: %v, want NOT_FOUND", err)
	}
	u, err := db.CreateUser(ctx, shared.User{Email: "kept@example.org", TenantID: tenant, Active: true}, "h1",
		shared.AuditEvent{TenantID: tenant, Action: "createUser", ObjectType: "user"})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := db.ListAudit(ctx, postgres.AuditQuery{TenantID: tenant, Limit: 10})
	if err != nil || len(evs) != 1 || evs[0].ObjectID != u.ID {
		t.Fatalf("audit after CreateUser = %+v, %v; want one createUser event for %s", evs, err, u.ID)
	}

	// SetPassword.
	if err := db.SetPassword(ctx, u.ID, "h2", brokenEvent("changePassword")); err == nil {
		t.Fatal("SetPassword with an unwritable event succeeded")
	}
	if _, hash, _ := db.UserByEmail(ctx, u.Email); hash != "h1" {
		t.Fatalf("hash after the failed SetPassword = %q, want h1", hash)
	}
	if err := db.SetPassword(ctx, u.ID, "h2", pgtest.Event("changePassword")); err != nil {
		t.Fatal(err)
	}

	// InsertToken.
	now := time.Now().Truncate(time.Second)
	rec := shared.TokenRecord{ID: uuid.NewString(), UserID: u.ID, TenantID: tenant, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := db.InsertToken(ctx, rec, brokenEvent("issueToken")); err == nil {
		t.Fatal("InsertToken with an unwritable event succeeded")
	}
	if _, err := db.TokenByID(ctx, rec.ID); shared.ErrorCode(err) != shared.CodeNotFound {
		t.Fatalf("token after the failed InsertToken: %v, want NOT_FOUND", err)
	}
	if err := db.InsertToken(ctx, rec, pgtest.Event("issueToken")); err != nil {
		t.Fatal(err)
	}

	// RevokeToken.
	if _, err := db.RevokeToken(ctx, rec.ID, brokenEvent("revokeToken")); err == nil {
		t.Fatal("RevokeToken with an unwritable event succeeded")
	}
	if got, err := db.TokenByID(ctx, rec.ID); err != nil || got.RevokedAt != nil {
		t.Fatalf("token after the failed RevokeToken = %+v, %v; want unrevoked", got, err)
	}
	if _, err := db.RevokeToken(ctx, rec.ID, pgtest.Event("revokeToken")); err != nil {
		t.Fatal(err)
	}

	// SetDrained.
	if err := db.UpsertDataNode(ctx, shared.DataNode{Name: "dn-a", PublicURL: "http://a:8081", State: shared.NodeAlive,
		LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetDrained(ctx, "dn-a", true, brokenEvent("drainDataNode")); err == nil {
		t.Fatal("SetDrained with an unwritable event succeeded")
	}
	if nodes, err := db.DataNodes(ctx); err != nil || len(nodes) != 1 || nodes[0].Drained {
		t.Fatalf("nodes after the failed SetDrained = %+v, %v; want dn-a not drained", nodes, err)
	}
	if err := db.SetDrained(ctx, "dn-a", true, pgtest.Event("drainDataNode")); err != nil {
		t.Fatal(err)
	}

	for _, action := range []string{"changePassword", "issueToken", "revokeToken", "drainDataNode"} {
		if n := countAudit(action); n != 1 {
			t.Errorf("%d %s events, want 1 (only the change that happened)", n, action)
		}
	}
}

// Package pgtest gives each test its own freshly migrated PostgreSQL database and its own
// Redis key prefix, on the throwaway servers that scripts/deps.sh starts.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
)

// require fails the test under CI (where the servers must exist) and skips it elsewhere.
func require(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set; run the tests with `make test`", name)
		}
		t.Skipf("%s is not set; run the tests with `make test`", name)
	}
	return v
}

// RandomName returns a short random lowercase name with the given prefix.
func RandomName(prefix string) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

// NewDB creates an empty database, migrates it and drops it when the test ends.
func NewDB(t testing.TB) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), DatabaseURL(t))
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(db.Close) // runs before the drop registered by DatabaseURL
	return db
}

// DatabaseURL creates an empty (unmigrated) database and returns its URL; it is dropped when
// the test ends. Use it to start a real control plane process against.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	base := require(t, "TEST_DATABASE_URL")
	name := RandomName("t_")
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to test database server: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return u.String()
}

// NewRedis connects to the test Redis and returns the client and a key prefix unique to the
// test; every key the code under test writes must start with it.
func NewRedis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	opt, err := redis.ParseURL(require(t, "TEST_REDIS_URL"))
	if err != nil {
		t.Fatalf("parse TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opt)
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("ping test redis: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, RandomName("t") + ":"
}

// Event is an audit event for tests that are not about auditing.
func Event(action string) shared.AuditEvent {
	return shared.AuditEvent{Action: action, ObjectType: "test"}
}

// IssueEvent is the audit event of a test's token issue (an auth.AuditToken).
func IssueEvent(rec shared.TokenRecord) shared.AuditEvent {
	return shared.AuditEvent{Action: "issueToken", ObjectType: "token", ObjectID: rec.ID, TenantID: rec.TenantID}
}

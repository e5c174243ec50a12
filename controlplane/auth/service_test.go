package auth

import (
	"context"
	"crypto/ed25519"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"backuprepo/controlplane/postgres"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
	"backuprepo/shared/token"
)

// env is one test's database, Redis namespace and signing key; every Service made from it
// behaves like another replica of the same control plane.
type env struct {
	db     *postgres.DB
	rdb    *redis.Client
	prefix string
	key    ed25519.PrivateKey
}

func newEnv(t *testing.T) env {
	t.Helper()
	db := pgtest.NewDB(t)
	rdb, prefix := pgtest.NewRedis(t)
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return env{db: db, rdb: rdb, prefix: prefix, key: key}
}

func (e env) service(t *testing.T, mod func(*Config)) *Service {
	t.Helper()
	cfg := Config{DB: e.db, Redis: e.rdb, KeyPrefix: e.prefix, SigningKey: e.key,
		DefaultTTL: time.Hour, MaxTTL: 48 * time.Hour, LoginLimit: 100, AccountLimit: 100}
	if mod != nil {
		mod(&cfg)
	}
	return New(cfg)
}

const testPassword = "correct horse battery"

// testPasswordHash is computed once: hashing is deliberately slow, and every test user shares
// the password.
var testPasswordHash = sync.OnceValues(func() (string, error) { return HashPassword(testPassword) })

func (e env) tenant(t *testing.T, suspended bool) string {
	t.Helper()
	id := uuid.NewString()
	if _, err := e.db.Pool.Exec(context.Background(), "INSERT INTO tenants (id, name, slug, suspended) VALUES ($1, 'T', $2, $3)",
		id, pgtest.RandomName("t-"), suspended); err != nil {
		t.Fatal(err)
	}
	return id
}

func (e env) user(t *testing.T, mod func(*shared.User)) shared.User {
	t.Helper()
	u := shared.User{Email: pgtest.RandomName("u") + "@example.org", Active: true, Roles: []shared.Role{shared.RoleBackupUploader}}
	if mod != nil {
		mod(&u)
	}
	h, err := testPasswordHash()
	if err != nil {
		t.Fatal(err)
	}
	created, err := e.db.CreateUser(context.Background(), u, h, pgtest.Event("createUser"))
	if err != nil {
		t.Fatal(err)
	}
	return created
}

func (e env) setActive(t *testing.T, userID string, active bool) {
	t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), "UPDATE users SET active = $2 WHERE id = $1", userID, active); err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, code shared.Code) {
	t.Helper()
	if got := shared.ErrorCode(err); got != code {
		t.Fatalf("err = %v (code %s), want code %s", err, got, code)
	}
}

func TestLoginAndAuthenticate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, nil)
	tenant := e.tenant(t, false)
	u := e.user(t, func(u *shared.User) { u.TenantID = tenant; u.Email = "Mixed@Example.org" })

	it, err := s.Login(ctx, "mixed@example.ORG", testPassword, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if it.Token == "" || it.Record.ID == "" || it.Record.UserID != u.ID || it.Record.TenantID != tenant {
		t.Fatalf("issued = %+v", it)
	}
	if d := it.Record.ExpiresAt.Sub(time.Now()); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("login token lives %s, want the DefaultTTL of 1h", d)
	}
	claims, err := token.Verify(token.Keys{s.KeyID(): e.key.Public().(ed25519.PublicKey)}, it.Token, time.Now())
	if err != nil || claims.ID != it.Record.ID || claims.Subject != u.ID || claims.TenantID != tenant {
		t.Fatalf("claims = %+v, %v", claims, err)
	}
	rec, err := e.db.TokenByID(ctx, it.Record.ID)
	if err != nil || rec.UserID != u.ID {
		t.Fatalf("token not recorded: %+v, %v", rec, err)
	}

	p, err := s.Authenticate(ctx, it.Token, "192.0.2.9")
	if err != nil {
		t.Fatal(err)
	}
	if p.User.ID != u.ID || p.TokenID != it.Record.ID || p.IP != "192.0.2.9" || p.Scope != nil ||
		!p.TokenExpiresAt.Equal(it.Record.ExpiresAt) {
		t.Errorf("principal = %+v", p)
	}
	rec, _ = e.db.TokenByID(ctx, it.Record.ID)
	if rec.LastUsedIP != "192.0.2.9" || rec.LastUsedAt == nil {
		t.Errorf("last use not recorded: %+v", rec)
	}

	for _, bad := range []string{"", "garbage", it.Token + "x", it.Token[:len(it.Token)-4]} {
		_, err := s.Authenticate(ctx, bad, "192.0.2.9")
		wantCode(t, err, shared.CodeUnauthenticated)
	}
}

func TestLoginFailuresLookAlike(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, nil)
	past := time.Now().Add(-time.Hour)
	good := e.user(t, nil)
	inactive := e.user(t, func(u *shared.User) { u.Active = false })
	expired := e.user(t, func(u *shared.User) { u.ExpiresAt = &past })

	var messages []string
	for _, c := range []struct{ email, pw string }{
		{good.Email, "wrong password!"},
		{"nobody@example.org", testPassword},
		{inactive.Email, testPassword},
		{expired.Email, testPassword},
		{good.Email, ""},
	} {
		_, err := s.Login(ctx, c.email, c.pw, "192.0.2.1")
		wantCode(t, err, shared.CodeInvalidCredentials)
		messages = append(messages, shared.ErrorMessage(err))
	}
	for _, m := range messages[1:] {
		if m != messages[0] {
			t.Errorf("failure messages differ: %q vs %q", m, messages[0])
		}
	}
}

func TestLoginRateLimitPerIP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, func(c *Config) { c.LoginLimit = 3; c.LoginWindow = 30 * time.Second })
	u := e.user(t, nil)

	for range 3 {
		_, err := s.Login(ctx, u.Email, "wrong password!", "198.51.100.1")
		wantCode(t, err, shared.CodeInvalidCredentials)
	}
	// Even the right password is refused once the IP is over its limit.
	_, err := s.Login(ctx, u.Email, testPassword, "198.51.100.1")
	wantCode(t, err, shared.CodeRateLimited)
	if d := RetryAfter(err); d <= 0 || d > 30*time.Second {
		t.Errorf("RetryAfter = %s, want within (0, 30s]", d)
	}
	// Another IP is not affected, and a second replica sees the same counter.
	if _, err := s.Login(ctx, u.Email, testPassword, "198.51.100.2"); err != nil {
		t.Errorf("login from another IP: %v", err)
	}
	_, err = e.service(t, func(c *Config) { c.LoginLimit = 3 }).Login(ctx, u.Email, testPassword, "198.51.100.1")
	wantCode(t, err, shared.CodeRateLimited)
}

func TestLoginRateLimitPerAccount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, func(c *Config) { c.AccountLimit = 2 })
	u := e.user(t, nil)
	other := e.user(t, nil)

	// Successes do not count against the account.
	for range 3 {
		if _, err := s.Login(ctx, u.Email, testPassword, "203.0.113.50"); err != nil {
			t.Fatal(err)
		}
	}
	for _, ip := range []string{"203.0.113.1", "203.0.113.2"} {
		_, err := s.Login(ctx, u.Email, "wrong password!", ip)
		wantCode(t, err, shared.CodeInvalidCredentials)
	}
	_, err := s.Login(ctx, u.Email, testPassword, "203.0.113.9")
	wantCode(t, err, shared.CodeRateLimited)
	if RetryAfter(err) <= 0 {
		t.Error("no retry delay on an account limit")
	}
	if _, err := s.Login(ctx, other.Email, testPassword, "203.0.113.9"); err != nil {
		t.Errorf("another account from the same IP: %v", err)
	}
}

func TestRevocationAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	a, b := e.service(t, nil), e.service(t, nil)
	u := e.user(t, nil)

	it, err := a.Login(ctx, u.Email, testPassword, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	keep, err := a.Login(ctx, u.Email, testPassword, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Authenticate(ctx, it.Token, "192.0.2.1"); err != nil {
		t.Fatalf("replica b before revocation: %v", err)
	}
	rec, err := a.Revoke(ctx, it.Record.ID, pgtest.Event("revokeToken"))
	if err != nil || rec.RevokedAt == nil {
		t.Fatalf("Revoke = %+v, %v", rec, err)
	}
	_, err = b.Authenticate(ctx, it.Token, "192.0.2.1")
	wantCode(t, err, shared.CodeTokenRevoked)
	_, err = a.Authenticate(ctx, it.Token, "192.0.2.1")
	wantCode(t, err, shared.CodeTokenRevoked)
	if _, err := b.Authenticate(ctx, keep.Token, "192.0.2.1"); err != nil {
		t.Errorf("an unrelated token was refused: %v", err)
	}
	ttl, err := e.rdb.PTTL(ctx, e.prefix+"revoked:"+it.Record.ID).Result()
	if err != nil || ttl <= 0 || ttl > time.Hour+2*time.Second {
		t.Errorf("revocation cache TTL = %s, %v; want about the token's remaining hour", ttl, err)
	}

	// PostgreSQL is authoritative: with the Redis entry gone the token stays refused.
	if err := e.rdb.Del(ctx, e.prefix+"revoked:"+it.Record.ID).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = b.Authenticate(ctx, it.Token, "192.0.2.1")
	wantCode(t, err, shared.CodeTokenRevoked)

	if _, err := a.Revoke(ctx, it.Record.ID, pgtest.Event("revokeToken")); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	_, err = a.Revoke(ctx, uuid.NewString(), pgtest.Event("revokeToken"))
	wantCode(t, err, shared.CodeNotFound)
}

func TestRedisDownStillRefusesRevokedTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, nil)
	u := e.user(t, nil)
	live, err := s.Login(ctx, u.Email, testPassword, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := s.Login(ctx, u.Email, testPassword, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}

	// A replica whose Redis is unreachable (a closed port, a real connection failure).
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = down.Close() })
	broken := New(Config{DB: e.db, Redis: down, KeyPrefix: e.prefix, SigningKey: e.key})

	if _, err := broken.Revoke(ctx, dead.Record.ID, pgtest.Event("revokeToken")); err != nil {
		t.Fatalf("revoke with Redis down: %v", err)
	}
	_, err = broken.Authenticate(ctx, dead.Token, "192.0.2.1")
	wantCode(t, err, shared.CodeTokenRevoked)
	_, err = s.Authenticate(ctx, dead.Token, "192.0.2.1")
	wantCode(t, err, shared.CodeTokenRevoked)
	if _, err := broken.Authenticate(ctx, live.Token, "192.0.2.1"); err != nil {
		t.Errorf("valid token with Redis down: %v", err)
	}
	// Login refuses rather than run without its rate limiter.
	_, err = broken.Login(ctx, u.Email, testPassword, "192.0.2.1")
	wantCode(t, err, shared.CodeDependencyUnavailable)
}

func TestAuthenticateExpiredAndForeignKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	s := e.service(t, func(c *Config) { c.Now = func() time.Time { return time.Unix(clock.Load(), 0) } })
	u := e.user(t, nil)

	it, err := s.Issue(ctx, u, shared.TokenRequest{TTL: 10 * time.Second}, pgtest.IssueEvent)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, it.Token, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	clock.Add(11)
	_, err = s.Authenticate(ctx, it.Token, "192.0.2.1")
	wantCode(t, err, shared.CodeTokenExpired)

	// A token signed with a key this replica does not know, for a recorded jti.
	_, stranger, _ := ed25519.GenerateKey(nil)
	foreign := env{db: e.db, rdb: e.rdb, prefix: e.prefix, key: stranger}
	ft, err := foreign.service(t, nil).Issue(ctx, u, shared.TokenRequest{}, pgtest.IssueEvent)
	if err != nil {
		t.Fatal(err)
	}
	clock.Store(time.Now().Unix())
	_, err = s.Authenticate(ctx, ft.Token, "192.0.2.1")
	wantCode(t, err, shared.CodeUnauthenticated)

	// Accepting the other key as a verification key (key rotation) makes it valid.
	rotated := e.service(t, func(c *Config) {
		c.VerifyKeys = token.Keys{token.KeyID(stranger.Public().(ed25519.PublicKey)): stranger.Public().(ed25519.PublicKey)}
	})
	if _, err := rotated.Authenticate(ctx, ft.Token, "192.0.2.1"); err != nil {
		t.Errorf("token from a listed verification key: %v", err)
	}

	// Properly signed, but never recorded: refused.
	unrecorded, err := token.Sign(e.key, s.KeyID(), token.Claims{Subject: u.ID, ID: uuid.NewString(),
		IssuedAt: time.Now().Unix(), Expiry: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Authenticate(ctx, unrecorded, "192.0.2.1")
	wantCode(t, err, shared.CodeUnauthenticated)
}

func TestUserAndTenantState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, nil)
	tenant := e.tenant(t, false)
	u := e.user(t, func(u *shared.User) { u.TenantID = tenant })
	it, err := s.Login(ctx, u.Email, testPassword, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}

	e.setActive(t, u.ID, false)
	_, err = s.Authenticate(ctx, it.Token, "192.0.2.1")
	wantCode(t, err, shared.CodeForbidden)
	e.setActive(t, u.ID, true)

	if _, err := e.db.Pool.Exec(ctx, "UPDATE users SET expires_at = now() - interval '1 second' WHERE id = $1", u.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.Authenticate(ctx, it.Token, "192.0.2.1")
	wantCode(t, err, shared.CodeForbidden)
	if _, err := e.db.Pool.Exec(ctx, "UPDATE users SET expires_at = NULL WHERE id = $1", u.ID); err != nil {
		t.Fatal(err)
	}

	if _, err := e.db.Pool.Exec(ctx, "UPDATE tenants SET suspended = true WHERE id = $1", tenant); err != nil {
		t.Fatal(err)
	}
	_, err = s.Authenticate(ctx, it.Token, "192.0.2.1")
	wantCode(t, err, shared.CodeTenantSuspended)
	_, err = s.Login(ctx, u.Email, testPassword, "192.0.2.1")
	wantCode(t, err, shared.CodeTenantSuspended)
	if _, err := e.db.Pool.Exec(ctx, "UPDATE tenants SET suspended = false WHERE id = $1", tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, it.Token, "192.0.2.1"); err != nil {
		t.Errorf("after unsuspending: %v", err)
	}

	// Deactivation revokes every token of the user.
	second, err := s.Login(ctx, u.Email, testPassword, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{it.Token, second.Token} {
		_, err = s.Authenticate(ctx, tok, "192.0.2.1")
		wantCode(t, err, shared.CodeTokenRevoked)
	}
}

func TestAllowedIPs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, nil)
	u := e.user(t, func(u *shared.User) { u.AllowedIPs = []string{"10.1.0.0/16", "2001:db8::/32"} })

	_, err := s.Login(ctx, u.Email, testPassword, "10.2.0.1")
	wantCode(t, err, shared.CodeIPNotAllowed)
	it, err := s.Login(ctx, u.Email, testPassword, "10.1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, it.Token, "2001:db8::7"); err != nil {
		t.Errorf("allowed IPv6: %v", err)
	}
	_, err = s.Authenticate(ctx, it.Token, "10.2.0.1")
	wantCode(t, err, shared.CodeIPNotAllowed)
	// A wrong password from a refused IP still answers INVALID_CREDENTIALS: the IP rule is
	// not revealed to someone who does not know the password.
	_, err = s.Login(ctx, u.Email, "wrong password!", "10.2.0.1")
	wantCode(t, err, shared.CodeInvalidCredentials)
}

func TestIssueValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, nil)
	u := e.user(t, nil)

	bad := []shared.TokenRequest{
		{TTL: -time.Second},
		{TTL: 49 * time.Hour},
		{Description: string(make([]byte, 501))},
		{Scope: []shared.ScopeEntry{{Collection: "c1"}}},
		{Scope: []shared.ScopeEntry{{Collection: "c1", Roles: []shared.Role{shared.RoleTenantAdmin}}}},
		{Scope: []shared.ScopeEntry{{Collection: "c1", Roles: []shared.Role{"root"}}}},
		{Scope: []shared.ScopeEntry{{Collection: "../x", Roles: []shared.Role{shared.RoleBackupUploader}}}},
		{Scope: []shared.ScopeEntry{
			{Collection: "c1", Roles: []shared.Role{shared.RoleBackupUploader}},
			{Collection: "c1", Roles: []shared.Role{shared.RoleBackupDownloader}},
		}},
	}
	for _, req := range bad {
		_, err := s.Issue(ctx, u, req, pgtest.IssueEvent)
		if shared.ErrorCode(err) != shared.CodeInvalidInput {
			t.Errorf("Issue(%+v) = %v, want INVALID_INPUT", req, err)
		}
	}
	inactive := u
	inactive.Active = false
	_, err := s.Issue(ctx, inactive, shared.TokenRequest{}, pgtest.IssueEvent)
	wantCode(t, err, shared.CodeForbidden)

	it, err := s.Issue(ctx, u, shared.TokenRequest{Description: "backup maker", TTL: 2 * time.Hour, Once: true,
		Scope: []shared.ScopeEntry{{Collection: "c-1", Roles: []shared.Role{shared.RoleBackupUploader}}}}, pgtest.IssueEvent)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Authenticate(ctx, it.Token, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Once || len(p.Scope) != 1 || p.Scope[0].Collection != "c-1" || p.Scope[0].Roles[0] != shared.RoleBackupUploader {
		t.Errorf("principal of a scoped one-shot token = %+v", p)
	}
	rec, _ := e.db.TokenByID(ctx, it.Record.ID)
	if rec.Description != "backup maker" || !rec.Once || len(rec.Scope) != 1 {
		t.Errorf("recorded = %+v", rec)
	}
}

func TestBootstrapAdminOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)

	_, err := e.service(t, nil).EnsureBootstrapAdmin(ctx, "admin@example.org", "short")
	wantCode(t, err, shared.CodeInvalidInput)
	_, err = e.service(t, nil).EnsureBootstrapAdmin(ctx, "not-an-email", testPassword)
	wantCode(t, err, shared.CodeInvalidInput)

	var created atomic.Int32
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			ok, err := e.service(t, nil).EnsureBootstrapAdmin(ctx, "admin@example.org", testPassword)
			if err != nil {
				t.Error(err)
			}
			if ok {
				created.Add(1)
			}
		})
	}
	wg.Wait()
	if created.Load() != 1 {
		t.Fatalf("bootstrap admin created %d times, want once", created.Load())
	}
	if n, _ := e.db.CountUsers(ctx); n != 1 {
		t.Fatalf("%d users after bootstrap, want 1", n)
	}
	ok, err := e.service(t, nil).EnsureBootstrapAdmin(ctx, "other@example.org", testPassword)
	if ok || err != nil {
		t.Errorf("bootstrap with users present = %v, %v; want a no-op", ok, err)
	}
	s := e.service(t, nil)
	it, err := s.Login(ctx, "admin@example.org", testPassword, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Authenticate(ctx, it.Token, "127.0.0.1")
	if err != nil || !p.User.HasRole(shared.RoleSystemAdmin) || p.User.TenantID != "" {
		t.Errorf("bootstrap admin principal = %+v, %v", p, err)
	}
}

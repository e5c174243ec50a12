package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
	"backuprepo/shared/token"
)

// Config wires a Service. Zero values get the defaults documented per field.
type Config struct {
	DB    *postgres.DB
	Redis *redis.Client
	// KeyPrefix starts every Redis key the service writes.
	KeyPrefix  string
	SigningKey ed25519.PrivateKey
	// VerifyKeys are the keys tokens are accepted from; the signing key's public half is
	// always added.
	VerifyKeys token.Keys
	// DefaultTTL is the lifetime of login tokens and of issued tokens that ask for none (24h).
	DefaultTTL time.Duration
	// MaxTTL bounds any token's lifetime (365 days).
	MaxTTL time.Duration
	// LoginLimit is how many login attempts one IP may make per LoginWindow (10 per minute).
	LoginLimit  int
	LoginWindow time.Duration
	// AccountLimit is how many failed logins one account may take per AccountWindow, from any
	// IP (20 per 15 minutes). Only failures count, so a flood cannot lock out a user who
	// knows the password for longer than the window.
	AccountLimit  int
	AccountWindow time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For is believed; empty = none.
	TrustedProxies []netip.Prefix
	Logger         *slog.Logger
	Now            func() time.Time
}

// Service authenticates callers and issues and revokes tokens.
type Service struct {
	db         *postgres.DB
	rdb        *redis.Client
	prefix     string
	signKey    ed25519.PrivateKey
	kid        string
	verifyKeys token.Keys
	defaultTTL time.Duration
	maxTTL     time.Duration

	loginLimit    int
	loginWindow   time.Duration
	accountLimit  int
	accountWindow time.Duration

	trusted []netip.Prefix
	log     *slog.Logger
	now     func() time.Time

	// dummyHash is checked for unknown users so that their answer takes as long as a wrong
	// password; it is computed here, with the live parameters, rather than at package level.
	dummyHash string

	// hashSlots bounds concurrent password checks: each takes argonMemoryKiB of memory, and
	// a flood from many IPs must not exhaust it.
	hashSlots chan struct{}

	verified token.Cache
	touchMu  sync.Mutex
	touched  map[string]time.Time // jti -> last TouchToken, to write at most once a minute
}

// touchEvery is how often a token's last-used IP and time are written.
const touchEvery = time.Minute

// New builds a Service. It panics when DB, Redis or SigningKey is missing: that is a wiring
// bug, not a runtime condition.
func New(cfg Config) *Service {
	if cfg.DB == nil || cfg.Redis == nil || len(cfg.SigningKey) != ed25519.PrivateKeySize {
		panic("auth.New: DB, Redis and an Ed25519 SigningKey are required")
	}
	s := &Service{
		db:            cfg.DB,
		rdb:           cfg.Redis,
		prefix:        cfg.KeyPrefix,
		signKey:       cfg.SigningKey,
		defaultTTL:    orDuration(cfg.DefaultTTL, 24*time.Hour),
		maxTTL:        orDuration(cfg.MaxTTL, 365*24*time.Hour),
		loginLimit:    orInt(cfg.LoginLimit, 10),
		loginWindow:   orDuration(cfg.LoginWindow, time.Minute),
		accountLimit:  orInt(cfg.AccountLimit, 20),
		accountWindow: orDuration(cfg.AccountWindow, 15*time.Minute),
		trusted:       cfg.TrustedProxies,
		log:           cfg.Logger,
		now:           cfg.Now,
		touched:       map[string]time.Time{},
		hashSlots:     make(chan struct{}, 2*runtime.GOMAXPROCS(0)),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.defaultTTL > s.maxTTL {
		s.defaultTTL = s.maxTTL
	}
	pub := cfg.SigningKey.Public().(ed25519.PublicKey)
	s.kid = token.KeyID(pub)
	s.verifyKeys = token.Keys{s.kid: pub}
	for k, v := range cfg.VerifyKeys {
		s.verifyKeys[k] = v
	}
	random := make([]byte, 32)
	_, _ = rand.Read(random) // crypto/rand.Read never fails on supported platforms
	h, err := HashPassword(hex.EncodeToString(random))
	if err != nil {
		panic(fmt.Sprintf("auth.New: hash dummy password: %v", err))
	}
	s.dummyHash = h
	return s
}

func orDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func orInt(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// KeyID is the kid of the signing key, as it appears in token headers.
func (s *Service) KeyID() string { return s.kid }

// VerifyKeys returns the keys tokens are accepted from, the signing key's included.
func (s *Service) VerifyKeys() token.Keys { return s.verifyKeys }

// RateLimitError carries how long a rate-limited caller should wait. It is always wrapped in a
// *shared.Error with code RATE_LIMITED.
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limited, retry after %s", e.RetryAfter)
}

// RetryAfter returns the wait carried by a rate-limit error, or 0 when err is not one.
func RetryAfter(err error) time.Duration {
	var rl *RateLimitError
	if errors.As(err, &rl) {
		return rl.RetryAfter
	}
	return 0
}

func rateLimited(wait time.Duration) error {
	if wait < time.Second {
		wait = time.Second
	}
	return shared.Wrap(&RateLimitError{RetryAfter: wait}, shared.CodeRateLimited, "too many login attempts; retry later")
}

// loginCheck counts an attempt against the IP and reads the account's failure count, in one
// atomic step so that concurrent attempts cannot slip past the limit. A counter that somehow
// lost its expiry gets it back rather than blocking forever.
var loginCheck = redis.NewScript(`
local ip = redis.call('INCR', KEYS[1])
local ipttl = redis.call('PTTL', KEYS[1])
if ipttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ipttl = tonumber(ARGV[1])
end
local acct = tonumber(redis.call('GET', KEYS[2]) or '0')
local acctttl = redis.call('PTTL', KEYS[2])
return {ip, ipttl, acct, acctttl}
`)

// countFailure adds one failed login to an account's counter.
var countFailure = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

func (s *Service) ipKey(ip string) string { return s.prefix + "login:ip:" + ip }

// accountKey hashes the email so that addresses do not sit in Redis in clear.
func (s *Service) accountKey(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	return s.prefix + "login:acct:" + hex.EncodeToString(sum[:16])
}

func (s *Service) revokedKey(jti string) string { return s.prefix + "revoked:" + jti }

// invalidCredentials is the one answer for every failed login, so that a caller cannot tell
// an unknown email from a wrong password or a disabled account.
func invalidCredentials() error {
	return shared.Errorf(shared.CodeInvalidCredentials, "invalid email or password")
}

// Login checks an email and password and issues a login token, recording a "login" audit
// event with it.
func (s *Service) Login(ctx context.Context, email, password, ip string) (shared.IssuedToken, error) {
	res, err := loginCheck.Run(ctx, s.rdb, []string{s.ipKey(ip), s.accountKey(email)}, s.loginWindow.Milliseconds()).Int64Slice()
	if err != nil {
		// Without the limiter, passwords could be guessed at full speed: refuse instead.
		return shared.IssuedToken{}, shared.Wrap(err, shared.CodeDependencyUnavailable, "login is temporarily unavailable")
	}
	ipCount, ipTTL, acctCount, acctTTL := res[0], res[1], res[2], res[3]
	if ipCount > int64(s.loginLimit) {
		return shared.IssuedToken{}, rateLimited(time.Duration(ipTTL) * time.Millisecond)
	}
	if acctCount >= int64(s.accountLimit) {
		return shared.IssuedToken{}, rateLimited(time.Duration(acctTTL) * time.Millisecond)
	}

	user, hash, err := s.db.UserByEmail(ctx, email)
	known := err == nil
	if err != nil && shared.ErrorCode(err) != shared.CodeNotFound {
		return shared.IssuedToken{}, shared.Wrap(err, shared.CodeDependencyUnavailable, "login is temporarily unavailable")
	}
	if !known || len(password) > maxPasswordLength {
		hash = s.dummyHash
	}
	select {
	case s.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return shared.IssuedToken{}, ctx.Err()
	}
	ok, err := CheckPassword(hash, password)
	<-s.hashSlots
	if err != nil {
		// A stored hash we cannot read: log it for the operator, answer like a wrong password.
		s.log.ErrorContext(ctx, "unreadable password hash", "user_id", user.ID, "err", err)
		ok = false
	}
	now := s.now()
	if !known || !ok || !user.Active || (user.ExpiresAt != nil && !now.Before(*user.ExpiresAt)) {
		if err := countFailure.Run(ctx, s.rdb, []string{s.accountKey(email)}, s.accountWindow.Milliseconds()).Err(); err != nil {
			s.log.WarnContext(ctx, "count failed login", "err", err)
		}
		return shared.IssuedToken{}, invalidCredentials()
	}
	if !IPAllowed(user.AllowedIPs, ip) {
		return shared.IssuedToken{}, shared.Errorf(shared.CodeIPNotAllowed, "this account may not log in from %s", ip)
	}
	if user.TenantID != "" {
		suspended, err := s.db.TenantSuspended(ctx, user.TenantID)
		if err != nil {
			return shared.IssuedToken{}, fmt.Errorf("check tenant: %w", err)
		}
		if suspended {
			return shared.IssuedToken{}, shared.Errorf(shared.CodeTenantSuspended, "the account's organisation is suspended")
		}
	}
	return s.Issue(ctx, user, shared.TokenRequest{Description: "login from " + ip}, func(rec shared.TokenRecord) shared.AuditEvent {
		return shared.AuditEvent{ActorID: user.ID, TenantID: rec.TenantID, Action: "login", ObjectType: "token",
			ObjectID: rec.ID, IP: ip, Details: map[string]string{}}
	})
}

// IPAllowed reports whether ip falls in one of the CIDR ranges; an empty list allows any IP.
// An unparsable ip is never allowed by a non-empty list.
func IPAllowed(allowed []string, ip string) bool {
	if len(allowed) == 0 {
		return true
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, c := range allowed {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			if a, err := netip.ParseAddr(c); err == nil && a.Unmap() == addr {
				return true
			}
			continue
		}
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

var collectionIDPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

const maxDescriptionLength = 500

// AuditToken makes the audit event of a token's issue from its record; it is written in the
// transaction that records the token.
type AuditToken func(shared.TokenRecord) shared.AuditEvent

// Issue signs and records a token for user, with the audit event audit makes of it. The caller
// (the admin layer) has already checked that the scope's collections belong to the user's
// tenant and that the scope does not widen the user's rights; Issue checks the shape. An empty
// scope means the user's full rights.
func (s *Service) Issue(ctx context.Context, user shared.User, req shared.TokenRequest, audit AuditToken) (shared.IssuedToken, error) {
	now := s.now()
	if !user.Active || (user.ExpiresAt != nil && !now.Before(*user.ExpiresAt)) {
		return shared.IssuedToken{}, shared.Errorf(shared.CodeForbidden, "the user is inactive or expired")
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = s.defaultTTL
	}
	if ttl < time.Second || ttl > s.maxTTL {
		return shared.IssuedToken{}, shared.Errorf(shared.CodeInvalidInput, "token lifetime must be between 1s and %s", s.maxTTL)
	}
	if len(req.Description) > maxDescriptionLength {
		return shared.IssuedToken{}, shared.Errorf(shared.CodeInvalidInput, "description must be at most %d characters", maxDescriptionLength)
	}
	scope, err := validateScope(req.Scope)
	if err != nil {
		return shared.IssuedToken{}, err
	}
	// JWT times are whole seconds; the record holds the same instants so both agree.
	iat := now.Unix()
	exp := now.Add(ttl).Unix()
	claims := token.Claims{
		Subject:  user.ID,
		TenantID: user.TenantID,
		ID:       uuid.NewString(),
		IssuedAt: iat,
		Expiry:   exp,
		Scope:    scope,
		Once:     req.Once,
	}
	tok, err := token.Sign(s.signKey, s.kid, claims)
	if err != nil {
		return shared.IssuedToken{}, fmt.Errorf("sign token: %w", err)
	}
	rec := shared.TokenRecord{
		ID:          claims.ID,
		UserID:      user.ID,
		TenantID:    user.TenantID,
		Description: req.Description,
		Scope:       scope,
		Once:        req.Once,
		CreatedAt:   time.Unix(iat, 0),
		ExpiresAt:   time.Unix(exp, 0),
	}
	if err := s.db.InsertToken(ctx, rec, audit(rec)); err != nil {
		return shared.IssuedToken{}, fmt.Errorf("record token: %w", err)
	}
	return shared.IssuedToken{Token: tok, Record: rec}, nil
}

func validateScope(in []shared.ScopeEntry) ([]shared.ScopeEntry, error) {
	if len(in) == 0 {
		return nil, nil
	}
	seen := map[string]bool{}
	out := make([]shared.ScopeEntry, 0, len(in))
	for _, e := range in {
		if !collectionIDPattern.MatchString(e.Collection) {
			return nil, shared.Errorf(shared.CodeInvalidInput, "scope: %q is not a collection id", e.Collection)
		}
		if seen[e.Collection] {
			return nil, shared.Errorf(shared.CodeInvalidInput, "scope: collection %q listed twice", e.Collection)
		}
		seen[e.Collection] = true
		if len(e.Roles) == 0 {
			return nil, shared.Errorf(shared.CodeInvalidInput, "scope: collection %q needs at least one role", e.Collection)
		}
		for _, r := range e.Roles {
			if !r.CollectionScoped() {
				return nil, shared.Errorf(shared.CodeInvalidInput, "scope: role %q cannot be granted on a collection", r)
			}
		}
		out = append(out, shared.ScopeEntry{Collection: e.Collection, Roles: append([]shared.Role(nil), e.Roles...)})
	}
	return out, nil
}

// Authenticate turns a bearer token into the principal of a request. The signature and expiry
// are checked locally; revocation, the user's state, the IP and the tenant's state are read
// from shared state on every call, so a revocation or deactivation is refused by every replica
// on the very next request. Redis is a fast path for revoked tokens (one key lookup, no
// PostgreSQL work); PostgreSQL, read in one query, is authoritative, so a Redis outage never
// lets a revoked token through and a PostgreSQL outage fails closed.
func (s *Service) Authenticate(ctx context.Context, bearer, ip string) (shared.Principal, error) {
	claims, err := s.VerifyBearer(ctx, bearer)
	if err != nil {
		return shared.Principal{}, err
	}
	st, err := s.db.TokenAuthState(ctx, claims.ID)
	return s.Principal(ctx, claims, st, err, ip)
}

// VerifyBearer is the first half of Authenticate: the token's signature and expiry, and the
// Redis fast path for revoked tokens. Its claims are not a principal yet: Principal must
// follow, with the token's state read from PostgreSQL.
func (s *Service) VerifyBearer(ctx context.Context, bearer string) (token.Claims, error) {
	claims, err := s.verified.Verify(s.verifyKeys, bearer, s.now())
	if errors.Is(err, token.ErrExpired) {
		return token.Claims{}, shared.Errorf(shared.CodeTokenExpired, "the token has expired")
	}
	if err != nil {
		return token.Claims{}, shared.Wrap(err, shared.CodeUnauthenticated, "invalid token")
	}
	revoked, err := s.rdb.Exists(ctx, s.revokedKey(claims.ID)).Result()
	if err != nil {
		s.log.WarnContext(ctx, "revocation cache unavailable; checking PostgreSQL only", "err", err)
	} else if revoked > 0 {
		return token.Claims{}, shared.Errorf(shared.CodeTokenRevoked, "the token has been revoked")
	}
	return claims, nil
}

// Principal is the second half of Authenticate: it judges claims from VerifyBearer by the
// token's state as postgres.DB.TokenAuthState returned it (st and stErr), read by the caller,
// which may have batched it with a query of its own.
func (s *Service) Principal(ctx context.Context, claims token.Claims, st postgres.TokenAuth, stErr error, ip string) (shared.Principal, error) {
	if shared.ErrorCode(stErr) == shared.CodeNotFound {
		return shared.Principal{}, shared.Errorf(shared.CodeUnauthenticated, "invalid token")
	}
	if stErr != nil {
		return shared.Principal{}, shared.Wrap(stErr, shared.CodeDependencyUnavailable, "cannot check the token right now")
	}
	if st.Token.UserID != claims.Subject {
		return shared.Principal{}, shared.Errorf(shared.CodeUnauthenticated, "invalid token")
	}
	if st.Token.RevokedAt != nil {
		return shared.Principal{}, shared.Errorf(shared.CodeTokenRevoked, "the token has been revoked")
	}
	now := s.now()
	u := st.User
	if !u.Active || (u.ExpiresAt != nil && !now.Before(*u.ExpiresAt)) {
		return shared.Principal{}, shared.Errorf(shared.CodeForbidden, "the account is inactive or expired")
	}
	if !IPAllowed(u.AllowedIPs, ip) {
		return shared.Principal{}, shared.Errorf(shared.CodeIPNotAllowed, "this account may not be used from %s", ip)
	}
	if st.TenantSuspended {
		return shared.Principal{}, shared.Errorf(shared.CodeTenantSuspended, "the account's organisation is suspended")
	}
	s.touch(ctx, claims.ID, ip, now)
	return shared.Principal{
		User:           u,
		TokenID:        claims.ID,
		TokenExpiresAt: st.Token.ExpiresAt,
		Scope:          st.Token.Scope,
		Once:           st.Token.Once,
		IP:             ip,
	}, nil
}

// touch records the token's last use at most once per touchEvery per replica; a failure only
// costs bookkeeping, so it is logged and the request goes on.
func (s *Service) touch(ctx context.Context, jti, ip string, now time.Time) {
	s.touchMu.Lock()
	last, ok := s.touched[jti]
	due := !ok || now.Sub(last) >= touchEvery
	if due {
		s.touched[jti] = now
		if len(s.touched) > 10000 {
			for k, t := range s.touched {
				if now.Sub(t) >= touchEvery {
					delete(s.touched, k)
				}
			}
		}
	}
	s.touchMu.Unlock()
	if !due {
		return
	}
	if err := s.db.TouchToken(ctx, jti, ip); err != nil {
		s.log.WarnContext(ctx, "record token use", "token_id", jti, "err", err)
	}
}

// Revoke revokes a token in PostgreSQL, with its audit event in the same transaction, then
// caches the revocation in Redis until the token would have expired anyway. Revoking twice is
// harmless.
func (s *Service) Revoke(ctx context.Context, tokenID string, ev shared.AuditEvent) (shared.TokenRecord, error) {
	rec, err := s.db.RevokeToken(ctx, tokenID, ev)
	if err != nil {
		return shared.TokenRecord{}, err
	}
	s.CacheRevoked(ctx, postgres.RevokedToken{ID: rec.ID, ExpiresAt: rec.ExpiresAt})
	return rec, nil
}

// RevokeUser revokes every live token of a user, for deactivation.
func (s *Service) RevokeUser(ctx context.Context, userID string) error {
	revoked, err := s.db.RevokeUserTokensWithExpiry(ctx, userID)
	if err != nil {
		return err
	}
	s.CacheRevoked(ctx, revoked...)
	return nil
}

// CacheRevoked writes tokens that PostgreSQL already holds revoked into the Redis fast path,
// each until it would have expired anyway: Revoke and RevokeUser use it, and so does an upload's
// commit for the one-shot token it revoked. PostgreSQL already refuses these tokens, so a Redis
// failure is logged, not returned.
func (s *Service) CacheRevoked(ctx context.Context, toks ...postgres.RevokedToken) {
	now := s.now()
	pipe := s.rdb.Pipeline()
	n := 0
	for _, t := range toks {
		left := t.ExpiresAt.Sub(now)
		if left <= 0 {
			continue
		}
		// A second of slack: the JWT expiry is checked against this replica's clock.
		pipe.Set(ctx, s.revokedKey(t.ID), "1", left+time.Second)
		n++
	}
	if n == 0 {
		return
	}
	if _, err := pipe.Exec(ctx); err != nil {
		s.log.WarnContext(ctx, "cache token revocation", "tokens", n, "err", err)
	}
}

// EnsureBootstrapAdmin creates a systemAdmin with the given email and password when there are
// no users at all. Two replicas starting together are safe: the unique email makes the
// second insert a no-op.
func (s *Service) EnsureBootstrapAdmin(ctx context.Context, email, password string) (bool, error) {
	email = strings.TrimSpace(email)
	if !strings.Contains(email, "@") {
		return false, shared.Errorf(shared.CodeInvalidInput, "bootstrap admin email %q is not an email address", email)
	}
	if err := ValidatePassword(password); err != nil {
		return false, err
	}
	n, err := s.db.CountUsers(ctx)
	if err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	hash, err := HashPassword(password)
	if err != nil {
		return false, err
	}
	_, err = s.db.CreateUser(ctx, shared.User{
		Email:  email,
		Roles:  []shared.Role{shared.RoleSystemAdmin},
		Active: true,
	}, hash, shared.AuditEvent{Action: "createUser", ObjectType: "user",
		Details: map[string]string{"email": email, "roles": string(shared.RoleSystemAdmin), "bootstrap": "true"}})
	if shared.ErrorCode(err) == shared.CodeConflict {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create bootstrap admin: %w", err)
	}
	return true, nil
}

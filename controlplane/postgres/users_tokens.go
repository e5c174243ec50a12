package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"backuprepo/shared"
)

// userColumns is the column list scanUser expects, in its order.
const userColumns = "id, email, tenant_id, roles, active, expires_at, allowed_ips, created_at"

// tokenColumns is the column list scanToken expects, in its order.
const tokenColumns = "id, user_id, tenant_id, description, scope, once, created_at, expires_at, revoked_at, last_used_ip, last_used_at"

// scanUser reads one row selected with userColumns.
func scanUser(row pgx.Row) (shared.User, error) {
	var s userScan
	if err := row.Scan(s.dest()...); err != nil {
		return shared.User{}, err
	}
	return s.user(), nil
}

// userScan holds the raw columns of userColumns until they are converted to a shared.User;
// it lets a query scan a user alongside other columns in one row.
type userScan struct {
	u        shared.User
	tenantID *string
	roles    []string
	ips      []netip.Prefix
}

func (s *userScan) dest() []any {
	return []any{&s.u.ID, &s.u.Email, &s.tenantID, &s.roles, &s.u.Active, &s.u.ExpiresAt, &s.ips, &s.u.CreatedAt}
}

func (s *userScan) user() shared.User {
	u := s.u
	if s.tenantID != nil {
		u.TenantID = *s.tenantID
	}
	u.Roles = make([]shared.Role, len(s.roles))
	for i, r := range s.roles {
		u.Roles[i] = shared.Role(r)
	}
	u.AllowedIPs = make([]string, len(s.ips))
	for i, p := range s.ips {
		u.AllowedIPs[i] = p.String()
	}
	return u
}

// scanToken reads one row selected with tokenColumns.
func scanToken(row pgx.Row) (shared.TokenRecord, error) {
	var s tokenScan
	if err := row.Scan(s.dest()...); err != nil {
		return shared.TokenRecord{}, err
	}
	return s.token()
}

// tokenScan holds the raw columns of tokenColumns until they are converted.
type tokenScan struct {
	t        shared.TokenRecord
	tenantID *string
	scope    []byte
	lastIP   *string
}

func (s *tokenScan) dest() []any {
	return []any{&s.t.ID, &s.t.UserID, &s.tenantID, &s.t.Description, &s.scope, &s.t.Once, &s.t.CreatedAt,
		&s.t.ExpiresAt, &s.t.RevokedAt, &s.lastIP, &s.t.LastUsedAt}
}

func (s *tokenScan) token() (shared.TokenRecord, error) {
	t := s.t
	if s.tenantID != nil {
		t.TenantID = *s.tenantID
	}
	if s.lastIP != nil {
		t.LastUsedIP = *s.lastIP
	}
	if len(s.scope) > 0 {
		if err := json.Unmarshal(s.scope, &t.Scope); err != nil {
			return shared.TokenRecord{}, fmt.Errorf("decode token scope: %w", err)
		}
	}
	return t, nil
}

// NormalizeCIDRs parses an allowed-IP list: plain addresses become single-host prefixes and
// host bits are cleared, because PostgreSQL's cidr type rejects "10.0.0.1/24".
func NormalizeCIDRs(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, s := range in {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if p, err = netip.ParsePrefix(s); err != nil {
				return nil, shared.Errorf(shared.CodeInvalidInput, "allowed IP %q is not an address or CIDR range", s)
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, shared.Errorf(shared.CodeInvalidInput, "allowed IP %q is not an address or CIDR range", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked().String())
	}
	return out, nil
}

// nullIfEmpty maps "" to SQL NULL for nullable uuid columns.
func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func rolesToText(roles []shared.Role) []string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = string(r)
	}
	return out
}

// validUUID keeps malformed ids from reaching PostgreSQL, which would answer with a
// syntax error instead of "not found".
func validUUID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil
}

// UserByEmail finds a user by email, ignoring case, and returns the password hash with it.
func (db *DB) UserByEmail(ctx context.Context, email string) (shared.User, string, error) {
	var (
		us   userScan
		hash string
	)
	err := db.Pool.QueryRow(ctx, "SELECT "+userColumns+", password_hash FROM users WHERE lower(email) = lower($1)", email).
		Scan(append(us.dest(), &hash)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return shared.User{}, "", shared.Errorf(shared.CodeNotFound, "user not found")
	}
	if err != nil {
		return shared.User{}, "", fmt.Errorf("select user by email: %w", err)
	}
	return us.user(), hash, nil
}

// UserByID finds a user by id.
func (db *DB) UserByID(ctx context.Context, id string) (shared.User, error) {
	if !validUUID(id) {
		return shared.User{}, shared.Errorf(shared.CodeNotFound, "user not found")
	}
	u, err := scanUser(db.Pool.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return shared.User{}, shared.Errorf(shared.CodeNotFound, "user not found")
	}
	if err != nil {
		return shared.User{}, fmt.Errorf("select user: %w", err)
	}
	return u, nil
}

// CreateUser inserts a user with an already hashed password; a new id is made when u.ID is
// empty. A duplicate email (ignoring case) is CONFLICT. ev is recorded in the same
// transaction, with the new user's id as its object.
func (db *DB) CreateUser(ctx context.Context, u shared.User, passwordHash string, ev shared.AuditEvent) (shared.User, error) {
	if u.ID == "" {
		u.ID = uuid.NewString()
	}
	ips, err := NormalizeCIDRs(u.AllowedIPs)
	if err != nil {
		return shared.User{}, err
	}
	var created shared.User
	err = db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		row := tx.QueryRow(ctx, `INSERT INTO users (id, email, password_hash, tenant_id, roles, active, expires_at, allowed_ips)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8::cidr[]) RETURNING `+userColumns,
			u.ID, u.Email, passwordHash, nullIfEmpty(u.TenantID), rolesToText(u.Roles), u.Active, u.ExpiresAt, ips)
		var err error
		created, err = scanUser(row)
		if isUniqueViolation(err) {
			return ev, shared.Errorf(shared.CodeConflict, "a user with this email already exists")
		}
		if err != nil {
			return ev, fmt.Errorf("insert user: %w", err)
		}
		ev.ObjectID = created.ID
		return ev, nil
	})
	if err != nil {
		return shared.User{}, err
	}
	return created, nil
}

// SetPassword replaces a user's password hash, with its audit event in the same transaction.
func (db *DB) SetPassword(ctx context.Context, userID, passwordHash string, ev shared.AuditEvent) error {
	if !validUUID(userID) {
		return shared.Errorf(shared.CodeNotFound, "user not found")
	}
	return db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		tag, err := tx.Exec(ctx, "UPDATE users SET password_hash = $2 WHERE id = $1", userID, passwordHash)
		if err != nil {
			return ev, fmt.Errorf("update password: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ev, shared.Errorf(shared.CodeNotFound, "user not found")
		}
		return ev, nil
	})
}

// CountUsers counts every user, active or not.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil {
		return 0, fmt.Errorf("count users: %w", err)
	}
	return n, nil
}

// TenantSuspended reports whether a tenant is suspended; NOT_FOUND when it does not exist.
func (db *DB) TenantSuspended(ctx context.Context, tenantID string) (bool, error) {
	if !validUUID(tenantID) {
		return false, shared.Errorf(shared.CodeNotFound, "tenant not found")
	}
	var s bool
	err := db.Pool.QueryRow(ctx, "SELECT suspended FROM tenants WHERE id = $1", tenantID).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, shared.Errorf(shared.CodeNotFound, "tenant not found")
	}
	if err != nil {
		return false, fmt.Errorf("select tenant state: %w", err)
	}
	return s, nil
}

// InsertToken records an issued token, with its audit event in the same transaction.
func (db *DB) InsertToken(ctx context.Context, rec shared.TokenRecord, ev shared.AuditEvent) error {
	var scope []byte
	if rec.Scope != nil {
		var err error
		if scope, err = json.Marshal(rec.Scope); err != nil {
			return fmt.Errorf("encode token scope: %w", err)
		}
	}
	created := rec.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	return db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		_, err := tx.Exec(ctx, `INSERT INTO tokens (id, user_id, tenant_id, description, scope, once, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			rec.ID, rec.UserID, nullIfEmpty(rec.TenantID), rec.Description, scope, rec.Once, created, rec.ExpiresAt)
		if isUniqueViolation(err) {
			return ev, shared.Errorf(shared.CodeConflict, "token id already used")
		}
		if err != nil {
			return ev, fmt.Errorf("insert token: %w", err)
		}
		return ev, nil
	})
}

// TokenByID returns the record of one token.
func (db *DB) TokenByID(ctx context.Context, id string) (shared.TokenRecord, error) {
	if !validUUID(id) {
		return shared.TokenRecord{}, shared.Errorf(shared.CodeNotFound, "token not found")
	}
	t, err := scanToken(db.Pool.QueryRow(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return shared.TokenRecord{}, shared.Errorf(shared.CodeNotFound, "token not found")
	}
	if err != nil {
		return shared.TokenRecord{}, fmt.Errorf("select token: %w", err)
	}
	return t, nil
}

// ListTokens returns a user's tokens, newest first.
func (db *DB) ListTokens(ctx context.Context, userID string) ([]shared.TokenRecord, error) {
	if !validUUID(userID) {
		return []shared.TokenRecord{}, nil
	}
	rows, err := db.Pool.Query(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE user_id = $1 ORDER BY created_at DESC, id", userID)
	if err != nil {
		return nil, fmt.Errorf("select tokens: %w", err)
	}
	defer rows.Close()
	out := []shared.TokenRecord{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("scan token: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select tokens: %w", err)
	}
	return out, nil
}

// RevokeToken marks a token revoked, with its audit event in the same transaction; revoking
// twice keeps the first revocation time (and records the second attempt too).
func (db *DB) RevokeToken(ctx context.Context, id string, ev shared.AuditEvent) (shared.TokenRecord, error) {
	if !validUUID(id) {
		return shared.TokenRecord{}, shared.Errorf(shared.CodeNotFound, "token not found")
	}
	var t shared.TokenRecord
	err := db.audited(ctx, func(tx pgx.Tx) (shared.AuditEvent, error) {
		var err error
		t, err = scanToken(tx.QueryRow(ctx, `UPDATE tokens SET revoked_at = coalesce(revoked_at, now())
			WHERE id = $1 RETURNING `+tokenColumns, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ev, shared.Errorf(shared.CodeNotFound, "token not found")
		}
		if err != nil {
			return ev, fmt.Errorf("revoke token: %w", err)
		}
		return ev, nil
	})
	if err != nil {
		return shared.TokenRecord{}, err
	}
	return t, nil
}

// RevokedToken names a token that was just revoked and when it would have expired anyway.
type RevokedToken struct {
	ID        string
	ExpiresAt time.Time
}

// RevokeUserTokens revokes every unrevoked, unexpired token of a user and returns their ids.
func (db *DB) RevokeUserTokens(ctx context.Context, userID string) ([]string, error) {
	revoked, err := db.RevokeUserTokensWithExpiry(ctx, userID)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(revoked))
	for i, r := range revoked {
		ids[i] = r.ID
	}
	return ids, nil
}

// RevokeUserTokensWithExpiry is RevokeUserTokens returning each token's expiry too, so a
// revocation cache can keep each entry exactly as long as the token would have lived.
func (db *DB) RevokeUserTokensWithExpiry(ctx context.Context, userID string) ([]RevokedToken, error) {
	if !validUUID(userID) {
		return []RevokedToken{}, nil
	}
	rows, err := db.Pool.Query(ctx, `UPDATE tokens SET revoked_at = now()
		WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING id, expires_at`, userID)
	if err != nil {
		return nil, fmt.Errorf("revoke user tokens: %w", err)
	}
	defer rows.Close()
	out := []RevokedToken{}
	for rows.Next() {
		var r RevokedToken
		if err := rows.Scan(&r.ID, &r.ExpiresAt); err != nil {
			return nil, fmt.Errorf("scan revoked token: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("revoke user tokens: %w", err)
	}
	return out, nil
}

// TouchToken records where and when a token was last used.
func (db *DB) TouchToken(ctx context.Context, id, ip string) error {
	if !validUUID(id) {
		return shared.Errorf(shared.CodeNotFound, "token not found")
	}
	if _, err := db.Pool.Exec(ctx, "UPDATE tokens SET last_used_ip = $2, last_used_at = now() WHERE id = $1", id, ip); err != nil {
		return fmt.Errorf("touch token: %w", err)
	}
	return nil
}

// TokenAuth is everything an authenticated request needs to know about its token, read in one
// round trip.
type TokenAuth struct {
	Token           shared.TokenRecord
	User            shared.User
	TenantSuspended bool
}

// tokenAuthSQL reads a token, its user and the user's tenant state; $1 is the token id.
const tokenAuthSQL = `SELECT t.id, t.user_id, t.tenant_id, t.description, t.scope, t.once, t.created_at, t.expires_at,
		t.revoked_at, t.last_used_ip, t.last_used_at,
		u.id, u.email, u.tenant_id, u.roles, u.active, u.expires_at, u.allowed_ips, u.created_at,
		coalesce(tn.suspended, false)
	FROM tokens t
	JOIN users u ON u.id = t.user_id
	LEFT JOIN tenants tn ON tn.id = u.tenant_id
	WHERE t.id = $1`

func tokenNotFound() error { return shared.Errorf(shared.CodeNotFound, "token not found") }

// TokenAuthState loads a token, its user and the user's tenant state in one query; NOT_FOUND
// when the token was never recorded.
func (db *DB) TokenAuthState(ctx context.Context, tokenID string) (TokenAuth, error) {
	if !validUUID(tokenID) {
		return TokenAuth{}, tokenNotFound()
	}
	return scanTokenAuth(db.Pool.QueryRow(ctx, tokenAuthSQL, tokenID))
}

// scanTokenAuth reads the row of tokenAuthSQL.
func scanTokenAuth(row pgx.Row) (TokenAuth, error) {
	var (
		ts        tokenScan
		us        userScan
		suspended bool
	)
	err := row.Scan(append(append(ts.dest(), us.dest()...), &suspended)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return TokenAuth{}, tokenNotFound()
	}
	if err != nil {
		return TokenAuth{}, fmt.Errorf("select token state: %w", err)
	}
	tok, err := ts.token()
	if err != nil {
		return TokenAuth{}, err
	}
	return TokenAuth{Token: tok, User: us.user(), TenantSuspended: suspended}, nil
}

package auth

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"backuprepo/shared"
	"backuprepo/shared/envelope"
)

// maxLoginBody bounds the login request body; credentials are a few hundred bytes.
const maxLoginBody = 64 << 10

// Routes mounts the SPEC §4.2 endpoints. The router must already run Middleware, which puts
// the principal in the context that whoami and logout read.
func (s *Service) Routes(r chi.Router) {
	r.Post("/api/stable/auth/login", s.HandleLogin)
	r.Get("/api/stable/auth/whoami", s.HandleWhoami)
	r.Delete("/api/stable/auth/logout", s.HandleLogout)
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type loginAnswer struct {
	Token     string `json:"token"`
	SessionID string `json:"sessionId"`
	Expire    string `json:"expire"`
}

// HandleLogin is POST /api/stable/auth/login: JSON or form {username, password}.
func (s *Service) HandleLogin(w http.ResponseWriter, r *http.Request) {
	req, err := readLogin(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ip := ClientIP(r.Context())
	if ip == "" {
		ip = s.clientIP(r)
	}
	it, err := s.Login(r.Context(), req.Username, req.Password, ip)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	envelope.WriteData(w, http.StatusOK, loginAnswer{
		Token:     it.Token,
		SessionID: it.Record.ID,
		Expire:    it.Record.ExpiresAt.UTC().Format(time.RFC3339),
	})
}

func readLogin(w http.ResponseWriter, r *http.Request) (loginRequest, error) {
	var req loginRequest
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return req, shared.Errorf(shared.CodeUnsupportedMediaType, "send the credentials as application/json or application/x-www-form-urlencoded")
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return req, shared.Errorf(shared.CodeUnsupportedMediaType, "unreadable Content-Type")
	}
	switch mt {
	case "application/json":
		if err := envelope.DecodeJSON(w, r, &req, maxLoginBody); err != nil {
			return req, err
		}
	case "application/x-www-form-urlencoded":
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLoginBody))
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, shared.Errorf(shared.CodePayloadTooLarge, "request body is larger than %d bytes", maxLoginBody)
		}
		if err != nil {
			return req, shared.Wrap(err, shared.CodeInvalidInput, "cannot read the request body")
		}
		form, err := url.ParseQuery(string(b))
		if err != nil {
			return req, shared.Errorf(shared.CodeInvalidInput, "malformed form body")
		}
		for k, v := range form {
			if k != "username" && k != "password" {
				return req, shared.Errorf(shared.CodeInvalidInput, "unknown field %q", k)
			}
			if len(v) != 1 {
				return req, shared.Errorf(shared.CodeInvalidInput, "field %q given %d times", k, len(v))
			}
		}
		req.Username, req.Password = form.Get("username"), form.Get("password")
	default:
		return req, shared.Errorf(shared.CodeUnsupportedMediaType, "send the credentials as application/json or application/x-www-form-urlencoded")
	}
	if req.Username == "" || req.Password == "" {
		return req, shared.Errorf(shared.CodeInvalidInput, "username and password are required")
	}
	return req, nil
}

type whoamiUser struct {
	ID         string        `json:"id"`
	Email      string        `json:"email"`
	TenantID   *string       `json:"tenantId"`
	Roles      []shared.Role `json:"roles"`
	ExpiresAt  *string       `json:"expiresAt"`
	AllowedIPs []string      `json:"allowedIPs"`
}

type whoamiAnswer struct {
	User      whoamiUser          `json:"user"`
	TenantID  *string             `json:"tenantId"`
	Roles     []shared.Role       `json:"roles"`
	TokenID   string              `json:"tokenId"`
	SessionID string              `json:"sessionId"`
	Expire    string              `json:"expire"`
	Scope     []shared.ScopeEntry `json:"scope"`
	Once      bool                `json:"once"`
}

// HandleWhoami is GET /api/stable/auth/whoami: the caller as the token identifies it.
func (s *Service) HandleWhoami(w http.ResponseWriter, r *http.Request) {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		s.writeError(w, r, shared.Errorf(shared.CodeUnauthenticated, "a bearer token is required"))
		return
	}
	var tenant *string
	if p.User.TenantID != "" {
		tenant = &p.User.TenantID
	}
	var userExp *string
	if p.User.ExpiresAt != nil {
		e := p.User.ExpiresAt.UTC().Format(time.RFC3339)
		userExp = &e
	}
	roles := p.User.Roles
	if roles == nil {
		roles = []shared.Role{}
	}
	ips := p.User.AllowedIPs
	if ips == nil {
		ips = []string{}
	}
	envelope.WriteData(w, http.StatusOK, whoamiAnswer{
		User: whoamiUser{ID: p.User.ID, Email: p.User.Email, TenantID: tenant, Roles: roles,
			ExpiresAt: userExp, AllowedIPs: ips},
		TenantID:  tenant,
		Roles:     roles,
		TokenID:   p.TokenID,
		SessionID: p.TokenID,
		Expire:    p.TokenExpiresAt.UTC().Format(time.RFC3339),
		Scope:     p.Scope,
		Once:      p.Once,
	})
}

type logoutAnswer struct {
	SessionID string `json:"sessionId"`
	RevokedAt string `json:"revokedAt"`
}

// HandleLogout is DELETE /api/stable/auth/logout: revokes the calling token, or with
// ?sessionId= another token of the same user. Someone else's token is NOT_FOUND, so ids of
// other users' tokens cannot be probed. A scoped token may only revoke itself: it is a
// narrowed credential and must not act on the user's other sessions.
func (s *Service) HandleLogout(w http.ResponseWriter, r *http.Request) {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		s.writeError(w, r, shared.Errorf(shared.CodeUnauthenticated, "a bearer token is required"))
		return
	}
	id := p.TokenID
	if q := r.URL.Query(); q.Has("sessionId") {
		id = q.Get("sessionId")
		if id != p.TokenID {
			if p.Scope != nil {
				s.writeError(w, r, shared.Errorf(shared.CodeForbidden, "a scoped token may only revoke itself"))
				return
			}
			rec, err := s.db.TokenByID(r.Context(), id)
			if err == nil && rec.UserID != p.User.ID {
				err = shared.Errorf(shared.CodeNotFound, "token not found")
			}
			if err != nil {
				s.writeError(w, r, err)
				return
			}
		}
	}
	ip := ClientIP(r.Context())
	if ip == "" {
		ip = p.IP
	}
	rec, err := s.Revoke(r.Context(), id, shared.AuditEvent{ActorID: p.User.ID, TenantID: p.User.TenantID,
		Action: "logout", ObjectType: "token", ObjectID: id, IP: ip, Details: map[string]string{}})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	envelope.WriteData(w, http.StatusOK, logoutAnswer{
		SessionID: rec.ID,
		RevokedAt: rec.RevokedAt.UTC().Format(time.RFC3339),
	})
}

// retryAfterSeconds renders a wait as Retry-After delta-seconds, rounded up.
func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

package admin

import (
	"context"

	"backuprepo/controlplane/auth"
	"backuprepo/shared"
)

// Login checks a password and issues a session token; it needs no principal.
func (s *Service) Login(ctx context.Context, email, password string) (shared.IssuedToken, error) {
	tok, err := s.auth.Login(ctx, email, password, auth.ClientIP(ctx))
	if err != nil {
		return shared.IssuedToken{}, err
	}
	p := shared.Principal{User: shared.User{ID: tok.Record.UserID}}
	s.audit(ctx, event(ctx, p, "login", "token", tok.Record.ID, tok.Record.TenantID, nil))
	return tok, nil
}

// Logout revokes the token the caller authenticated with; scoped tokens may do this too.
func (s *Service) Logout(ctx context.Context) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	if _, err := s.auth.Revoke(ctx, p.TokenID); err != nil {
		return err
	}
	s.audit(ctx, event(ctx, p, "logout", "token", p.TokenID, p.User.TenantID, nil))
	return nil
}

// Me returns the caller.
func (s *Service) Me(ctx context.Context) (shared.Principal, error) {
	return principal(ctx)
}

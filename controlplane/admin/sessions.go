package admin

import (
	"context"

	"backuprepo/controlplane/auth"
	"backuprepo/shared"
)

// Login checks a password and issues a session token; it needs no principal.
func (s *Service) Login(ctx context.Context, email, password string) (shared.IssuedToken, error) {
	return s.auth.Login(ctx, email, password, auth.ClientIP(ctx)) // records the "login" event
}

// Logout revokes the token the caller authenticated with; scoped tokens may do this too.
func (s *Service) Logout(ctx context.Context) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	_, err = s.auth.Revoke(ctx, p.TokenID, event(ctx, p, "logout", "token", p.TokenID, p.User.TenantID, nil))
	return err
}

// Me returns the caller.
func (s *Service) Me(ctx context.Context) (shared.Principal, error) {
	return principal(ctx)
}

package auth

import (
	"context"

	"backuprepo/shared"
)

type principalKey struct{}

type clientIPKey struct{}

// WithPrincipal returns ctx carrying the authenticated caller.
func WithPrincipal(ctx context.Context, p shared.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the authenticated caller, if the request had a valid token.
func PrincipalFrom(ctx context.Context) (shared.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(shared.Principal)
	return p, ok
}

// WithClientIP returns ctx carrying the client's address as the middleware determined it.
func WithClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, clientIPKey{}, ip)
}

// ClientIP returns the client's address, or "" outside a request that went through Middleware.
func ClientIP(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey{}).(string)
	return ip
}

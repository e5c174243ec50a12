package auth

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"backuprepo/shared"
	"backuprepo/shared/envelope"
)

// Middleware puts the client IP in every request's context and, when the request carries an
// `Authorization: Bearer` token, authenticates it and puts the principal there too; a bad token
// is answered right away (401/403). Requests without a bearer token pass through with no
// principal: the handlers decide what needs one. Other Authorization schemes also pass
// through untouched, so this can wrap routes that use their own credentials.
func (s *Service) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := s.clientIP(r)
		ctx := WithClientIP(r.Context(), ip)
		bearer, ok := bearerToken(r.Header.Get("Authorization"))
		if ok {
			p, err := s.Authenticate(ctx, bearer, ip)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			ctx = WithPrincipal(ctx, p)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// ClientIPOnly records the client's address like Middleware but never looks at the
// Authorization header: the login route must work for a client still sending a stale token.
func (s *Service) ClientIPOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(WithClientIP(r.Context(), s.clientIP(r))))
	})
}

// bearerToken extracts the token of a Bearer Authorization header; ok is false for a missing
// header or another scheme. "Bearer" with no token gives ok with an empty token, which
// Authenticate refuses.
func bearerToken(h string) (string, bool) {
	const scheme = "bearer"
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	rest := h[len(scheme):]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return "", false
	}
	return strings.TrimSpace(rest), true
}

// ClientIPOf returns the address of the client that sent r, for routes that do not pass
// through Middleware (the front door).
func (s *Service) ClientIPOf(r *http.Request) string { return s.clientIP(r) }

// clientIP is the peer address, or, when the peer is a trusted proxy, the rightmost
// X-Forwarded-For entry that is not itself a trusted proxy. Entries further left are
// client-supplied and could be anything, so they are never believed.
func (s *Service) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap().WithZone("")
	if !s.trustedProxy(addr) {
		return addr.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		addr = a.Unmap().WithZone("")
		if !s.trustedProxy(addr) {
			break
		}
	}
	return addr.String()
}

func (s *Service) trustedProxy(a netip.Addr) bool {
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// writeError answers with the error envelope and logs only what the caller cannot fix.
func (s *Service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if envelope.Status(shared.ErrorCode(err)) >= 500 {
		s.log.ErrorContext(r.Context(), "auth request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if d := RetryAfter(err); d > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(d))
	}
	envelope.WriteError(w, err)
}

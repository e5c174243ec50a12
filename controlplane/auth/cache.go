package auth

import (
	"sync"
	"time"

	"backuprepo/shared/token"
)

// verifiedTTL is how long a token's verified signature is remembered. A signature's validity
// never changes, so this bounds only memory churn; revocation, the user's and the tenant's
// state are still read on every request.
const verifiedTTL = time.Minute

// maxVerified bounds the cache; past it, the cache starts over.
const maxVerified = 50_000

// verifiedTokens saves the Ed25519 check of a token seen recently, the largest single cost of
// an authenticated request (docs/BENCHMARKS.md).
type verifiedTokens struct {
	mu      sync.Mutex
	entries map[string]verified // by the token string
}

type verified struct {
	claims token.Claims
	at     time.Time
}

// verify returns the token's claims, checking the signature only when it was not seen within
// verifiedTTL; expiry is checked every time.
func (c *verifiedTokens) verify(keys token.Keys, bearer string, now time.Time) (token.Claims, error) {
	c.mu.Lock()
	e, ok := c.entries[bearer]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < verifiedTTL {
		if !now.Before(e.claims.ExpiresAt()) {
			return token.Claims{}, token.ErrExpired
		}
		return e.claims, nil
	}
	claims, err := token.Verify(keys, bearer, now)
	if err != nil {
		return claims, err
	}
	c.mu.Lock()
	if c.entries == nil || len(c.entries) >= maxVerified {
		c.entries = make(map[string]verified)
	}
	c.entries[bearer] = verified{claims: claims, at: now}
	c.mu.Unlock()
	return claims, nil
}

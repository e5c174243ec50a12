package token

import (
	"sync"
	"time"
)

// CacheTTL is how long a Cache remembers a verified signature. A signature's validity never
// changes, so this bounds memory churn and how long a token signed by a key that was since
// removed from the key set is still accepted. Expiry is checked on every use, and whatever
// else a caller checks (revocation, the user's state) is not cached here.
const CacheTTL = time.Minute

// maxCached bounds a Cache; past it, the cache starts over.
const maxCached = 50_000

// Cache saves the Ed25519 check of tokens seen recently. The check is the largest single CPU
// cost of an authenticated request (about 110 µs, docs/BENCHMARKS.md), and a backup client
// sends the same token with every request. An upload through the front door has its token
// checked three times: by the front door, by the data node, and by the control plane when the
// node asks it to admit the upload. The zero value is ready to use.
type Cache struct {
	mu      sync.Mutex
	entries map[string]cached // by the whole token string
}

type cached struct {
	claims Claims
	at     time.Time
}

// Verify is Verify(keys, tok, now), without the signature check when the same token was
// verified within CacheTTL; expiry is checked every time.
func (c *Cache) Verify(keys Keys, tok string, now time.Time) (Claims, error) {
	c.mu.Lock()
	e, ok := c.entries[tok]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < CacheTTL {
		if !now.Before(e.claims.ExpiresAt()) {
			return Claims{}, ErrExpired
		}
		return e.claims, nil
	}
	claims, err := Verify(keys, tok, now)
	if err != nil {
		return claims, err
	}
	c.mu.Lock()
	if c.entries == nil || len(c.entries) >= maxCached {
		c.entries = make(map[string]cached)
	}
	c.entries[tok] = cached{claims: claims, at: now}
	c.mu.Unlock()
	return claims, nil
}

package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	t.Parallel()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	keys := Keys{KeyID(pub): pub}
	now := time.Unix(1_800_000_000, 0)
	tok, err := Sign(priv, KeyID(pub), Claims{Subject: "u", ID: "j", IssuedAt: now.Unix(), Expiry: now.Add(2 * time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	var c Cache
	if _, err := c.Verify(keys, tok, now); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Verify(Keys{}, tok, now.Add(time.Second)); err != nil || got.ID != "j" {
		t.Fatalf("cached token: %+v, %v", got, err)
	}
	// A token that differs by one character is verified, not looked up.
	i := strings.IndexByte(tok, '.') + 5 // a character of the claims
	swap := byte('A')
	if tok[i] == 'A' {
		swap = 'B'
	}
	tampered := tok[:i] + string(swap) + tok[i+1:]
	if _, err := c.Verify(keys, tampered, now); err == nil {
		t.Fatal("tampered token accepted")
	}
	// Past CacheTTL the signature is checked again (the token itself is still valid).
	if _, err := c.Verify(Keys{}, tok, now.Add(CacheTTL)); !errors.Is(err, ErrKey) {
		t.Fatalf("stale entry used without verification: %v", err)
	}
	// The cache never outlives the
	if _, err := c.Verify(keys, tok, now.Add(CacheTTL)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(keys, tok, now.Add(CacheTTL+time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired cached token: %v", err)
	}
}

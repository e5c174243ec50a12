package stack

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"

	"backuprepo/shared/token"
)

// SignToken signs claims with the control plane's own signing key, read from its data
// directory: tokens the API would never issue (already expired, never recorded) but whose
// signature is valid.
func (s *Stack) SignToken(t testing.TB, c token.Claims) string {
	t.Helper()
	b, err := os.ReadFile(s.SigningKeyPath)
	if err != nil {
		t.Fatalf("read the signing key: %v", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s holds no PEM block", s.SigningKeyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatalf("parse the signing key: %v", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		t.Fatalf("the signing key is a %T, not Ed25519", k)
	}
	return SignWith(t, priv, c)
}

// SignWith signs claims with any Ed25519 key (kid derived from it): a forged token when the key
// is not the control plane's.
func SignWith(t testing.TB, key ed25519.PrivateKey, c token.Claims) string {
	t.Helper()
	tok, err := token.Sign(key, token.KeyID(key.Public().(ed25519.PublicKey)), c)
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return tok
}

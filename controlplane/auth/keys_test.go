package auth

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
	"time"

	"backuprepo/shared/token"
)

func TestSigningKeyFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "signing.pem")

	if _, err := LoadOrCreateSigningKey(path, false); err == nil {
		t.Fatal("missing key without create: no error")
	}
	k1, err := LoadOrCreateSigningKey(path, true)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %o, want 600", st.Mode().Perm())
	}
	k2, err := LoadOrCreateSigningKey(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("second load generated a new key instead of reading the file")
	}

	pubPath := filepath.Join(dir, "verify.pem")
	pub := k1.Public().(ed25519.PublicKey)
	if err := WritePublicKey(pubPath, pub); err != nil {
		t.Fatal(err)
	}
	otherPath := filepath.Join(dir, "other.pem")
	if _, err := LoadOrCreateSigningKey(otherPath, true); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadPublicKeys([]string{pubPath, path, otherPath})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Errorf("got %d keys, want 2 (the private and public file of one key share a kid)", len(keys))
	}
	if !keys[token.KeyID(pub)].Equal(pub) {
		t.Error("public key not found under its kid")
	}
	// A token signed with the loaded key verifies with the loaded public keys.
	tok, err := token.Sign(k2, token.KeyID(pub), token.Claims{Subject: "u", ID: "j", Expiry: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := token.Verify(keys, tok, time.Now()); err != nil {
		t.Errorf("verify with loaded keys: %v", err)
	}

	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPublicKeys([]string{garbage}); err == nil {
		t.Error("garbage verification key accepted")
	}
	if _, err := LoadOrCreateSigningKey(garbage, true); err == nil {
		t.Error("garbage signing key accepted")
	}
	if _, err := LoadOrCreateSigningKey(pubPath, false); err == nil {
		t.Error("a public key accepted as signing key")
	}
}

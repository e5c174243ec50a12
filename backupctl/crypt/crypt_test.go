package crypt

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"backuprepo/shared"
)

func keyPair(t *testing.T) (pub, priv []byte) {
	t.Helper()
	kp, err := GenerateKey("test", "test@example.org", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return kp.Public, kp.Private
}

func encrypt(t *testing.T, pub, plain []byte, armour bool) []byte {
	t.Helper()
	keys, err := ReadKeys(bytes.NewReader(pub))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w, err := Encrypt(&out, keys, armour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func decrypt(priv, msg []byte) ([]byte, error) {
	keys, err := ReadKeys(bytes.NewReader(priv))
	if err != nil {
		return nil, err
	}
	r, err := Decrypt(bytes.NewReader(msg), keys)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	pub, priv := keyPair(t)
	plain := make([]byte, 300000)
	_, _ = rand.Read(plain)
	for _, armour := range []bool{false, true} {
		msg := encrypt(t, pub, plain, armour)
		if armour != bytes.HasPrefix(msg, []byte("-----BEGIN PGP MESSAGE-----")) {
			t.Fatalf("armour=%v gave %.30q", armour, msg)
		}
		if bytes.Contains(msg, plain[:64]) {
			t.Fatal("ciphertext holds plaintext")
		}
		got, err := decrypt(priv, msg)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("armour=%v: decrypt: %v", armour, err)
		}
	}
}

func TestDecryptRefuses(t *testing.T) {
	t.Parallel()
	pub, priv := keyPair(t)
	_, otherPriv := keyPair(t)
	plain := bytes.Repeat([]byte("backup "), 20000)
	msg := encrypt(t, pub, plain, false)
	flipped := func(at int) []byte {
		m := bytes.Clone(msg)
		m[at] ^= 0x40
		return m
	}
	tests := []struct {
		name string
		key  []byte
		msg  []byte
		code shared.Code
	}{
		{"another key", otherPriv, msg, shared.CodeInvalidInput},
		{"a flipped byte in the middle", priv, flipped(len(msg) / 2), shared.CodeChecksumMismatch},
		{"a flipped byte near the end", priv, flipped(len(msg) - 5), shared.CodeChecksumMismatch},
		{"a truncated message", priv, msg[:len(msg)-30], shared.CodeChecksumMismatch},
		{"plaintext", priv, plain, shared.CodeInvalidInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := decrypt(tc.key, tc.msg)
			if err == nil {
				t.Fatalf("decrypted %d bytes without an error", len(got))
			}
			if code := shared.ErrorCode(err); code != tc.code {
				t.Fatalf("code %s, want %s (%v)", code, tc.code, err)
			}
			if tc.code == shared.CodeChecksumMismatch && !errors.Is(err, ErrIntegrity) {
				t.Fatalf("integrity failure not marked: %v", err)
			}
		})
	}
}

func TestReadKeysRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "not a key", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"} {
		if _, err := ReadKeys(bytes.NewReader([]byte(in))); shared.ErrorCode(err) != shared.CodeInvalidInput {
			t.Errorf("ReadKeys(%.20q) = %v, want INVALID_INPUT", in, err)
		}
	}
}

func TestReadKeysRefusesPassphraseProtectedKeys(t *testing.T) {
	t.Parallel()
	_, priv := keyPair(t)
	keys, err := ReadKeys(bytes.NewReader(priv))
	if err != nil {
		t.Fatal(err)
	}
	if err := keys[0].EncryptPrivateKeys([]byte("passphrase"), nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := keys[0].SerializePrivateWithoutSigning(&buf, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeys(&buf); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Fatalf("ReadKeys of a locked key = %v", err)
	}
}

package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"backuprepo/shared/token"
)

// LoadOrCreateSigningKey reads a PEM PKCS#8 Ed25519 private key from path. When the file does
// not exist and create is true, a new key is generated and written with mode 0600.
func LoadOrCreateSigningKey(path string, create bool) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return parsePrivateKey(b)
	}
	if !errors.Is(err, fs.ErrNotExist) || !create {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	// O_EXCL: when two processes race to create the key, the loser reads the winner's key
	// instead of overwriting it after the winner already signed with it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateSigningKey(path, false)
	}
	if err != nil {
		return nil, fmt.Errorf("create signing key file: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close signing key: %w", err)
	}
	return priv, nil
}

func parsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("signing key: not a PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("signing key: not an Ed25519 key")
	}
	return priv, nil
}

// LoadPublicKeys reads verification keys, one PEM file each: a PKIX public key, or a PKCS#8
// private key whose public half is used. Several keys allow rotating the signing key.
func LoadPublicKeys(paths []string) (token.Keys, error) {
	keys := token.Keys{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read verification key: %w", err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("verification key %s: no PEM block", p)
		}
		var pub ed25519.PublicKey
		switch blk.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("verification key %s: %w", p, err)
			}
			var ok bool
			if pub, ok = k.(ed25519.PublicKey); !ok {
				return nil, fmt.Errorf("verification key %s: not an Ed25519 key", p)
			}
		case "PRIVATE KEY":
			priv, err := parsePrivateKey(b)
			if err != nil {
				return nil, fmt.Errorf("verification key %s: %w", p, err)
			}
			pub = priv.Public().(ed25519.PublicKey)
		default:
			return nil, fmt.Errorf("verification key %s: unexpected PEM block %q", p, blk.Type)
		}
		keys[token.KeyID(pub)] = pub
	}
	return keys, nil
}

// WritePublicKey writes pub as a PEM PKIX public key, the file data nodes verify tokens with.
func WritePublicKey(path string, pub ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("encode public key: %w", err)
	}
	// Write then rename, so a data node reading the file never sees half a key.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("write public key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write public key: %w", err)
	}
	return nil
}

// Package crypt encrypts and decrypts backup streams with OpenPGP, so that the repository only
// ever stores ciphertext, and makes the key pairs that do it.
package crypt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"backuprepo/shared"
)

// KeyPair is an ASCII-armoured OpenPGP key pair. Private holds an unprotected secret key: the
// caller stores it with restrictive permissions.
type KeyPair struct {
	Public  []byte
	Private []byte
}

// GenerateKey makes an Ed25519 signing key with a Curve25519 encryption subkey (OpenPGP v4,
// which every current gpg reads) for the identity name <email>.
func GenerateKey(name, email string, now time.Time) (KeyPair, error) {
	cfg := &packet.Config{
		Algorithm: packet.PubKeyAlgoEdDSA,
		Curve:     packet.Curve25519,
		Time:      func() time.Time { return now },
	}
	e, err := openpgp.NewEntity(name, "backupctl", email, cfg)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate key: %w", err)
	}
	var pub, priv bytes.Buffer
	if err := armored(&pub, openpgp.PublicKeyType, e.Serialize); err != nil {
		return KeyPair{}, fmt.Errorf("serialize public key: %w", err)
	}
	if err := armored(&priv, openpgp.PrivateKeyType, func(w io.Writer) error { return e.SerializePrivate(w, cfg) }); err != nil {
		return KeyPair{}, fmt.Errorf("serialize private key: %w", err)
	}
	return KeyPair{Public: pub.Bytes(), Private: priv.Bytes()}, nil
}

func armored(dst io.Writer, blockType string, write func(io.Writer) error) error {
	w, err := armor.Encode(dst, blockType, nil)
	if err != nil {
		return err
	}
	if err := write(w); err != nil {
		return err
	}
	return w.Close()
}

// ReadKeys reads a key ring, armoured or binary. Keys protected by a passphrase are refused:
// backups run unattended, and an unlocked key file with mode 0600 is the model here.
func ReadKeys(r io.Reader) (openpgp.EntityList, error) {
	br := bufio.NewReader(r)
	var (
		keys openpgp.EntityList
		err  error
	)
	if isArmored(br) {
		keys, err = openpgp.ReadArmoredKeyRing(br)
	} else {
		keys, err = openpgp.ReadKeyRing(br)
	}
	if err != nil {
		return nil, shared.Wrap(err, shared.CodeInvalidInput, "not an OpenPGP key: "+err.Error())
	}
	if len(keys) == 0 {
		return nil, shared.Errorf(shared.CodeInvalidInput, "the key file holds no OpenPGP key")
	}
	for _, e := range keys {
		locked := e.PrivateKey != nil && e.PrivateKey.Encrypted
		for _, sk := range e.Subkeys {
			locked = locked || (sk.PrivateKey != nil && sk.PrivateKey.Encrypted)
		}
		if locked {
			return nil, shared.Errorf(shared.CodeInvalidInput,
				"key %X is protected by a passphrase; export it without one (gpg --export-secret-keys after removing the passphrase) for unattended restores", e.PrimaryKey.Fingerprint)
		}
	}
	return keys, nil
}

// isArmored peeks at the start of r for an ASCII armour line.
func isArmored(r *bufio.Reader) bool {
	head, _ := r.Peek(64)
	return bytes.Contains(head, []byte("-----BEGIN PGP"))
}

// Encrypt returns a writer that encrypts what is written to it for recipients and writes the
// OpenPGP message to dst, ASCII-armoured when armour is true. Close finishes the message (it
// does not close dst). The data is not compressed: backups arrive compressed already.
func Encrypt(dst io.Writer, recipients openpgp.EntityList, armour bool, now time.Time) (io.WriteCloser, error) {
	for _, e := range recipients {
		if _, ok := e.EncryptionKey(now); !ok {
			return nil, shared.Errorf(shared.CodeInvalidInput, "key %X has no valid encryption key", e.PrimaryKey.Fingerprint)
		}
	}
	cfg := &packet.Config{Time: func() time.Time { return now }}
	out := dst
	var arm io.WriteCloser
	if armour {
		w, err := armor.Encode(dst, "PGP MESSAGE", nil)
		if err != nil {
			return nil, fmt.Errorf("start armour: %w", err)
		}
		arm, out = w, w
	}
	pt, err := openpgp.Encrypt(out, recipients, nil, &openpgp.FileHints{IsBinary: true}, cfg)
	if err != nil {
		return nil, fmt.Errorf("start encryption: %w", err)
	}
	return &encrypter{pt: pt, arm: arm}, nil
}

type encrypter struct {
	pt  io.WriteCloser
	arm io.WriteCloser
}

func (e *encrypter) Write(p []byte) (int, error) { return e.pt.Write(p) }

func (e *encrypter) Close() error {
	if err := e.pt.Close(); err != nil {
		return fmt.Errorf("finish encryption: %w", err)
	}
	if e.arm != nil {
		if err := e.arm.Close(); err != nil {
			return fmt.Errorf("finish armour: %w", err)
		}
	}
	return nil
}

// ErrIntegrity is in the chain of every error that means the ciphertext was altered.
var ErrIntegrity = errors.New("the encrypted data was altered or damaged")

// Decrypt returns the plaintext of the OpenPGP message in src (armoured or binary), decrypted
// with one of keys. The reader streams: the integrity check of the whole message (MDC or AEAD)
// happens when it reaches the end, so a caller must treat everything read as unconfirmed
// until Read returns io.EOF; any other error means the output must be thrown away.
func Decrypt(src io.Reader, keys openpgp.EntityList) (io.Reader, error) {
	br := bufio.NewReader(src)
	var in io.Reader = br
	if isArmored(br) {
		block, err := armor.Decode(br)
		if err != nil {
			return nil, shared.Wrap(err, shared.CodeInvalidInput, "malformed ASCII armour: "+err.Error())
		}
		in = block.Body
	}
	md, err := openpgp.ReadMessage(in, keys, nil, nil)
	if err != nil {
		return nil, decryptError(err, true)
	}
	if !md.IsEncrypted {
		return nil, shared.Errorf(shared.CodeNotEncrypted, "the data is not an encrypted OpenPGP message")
	}
	return &decrypter{r: md.UnverifiedBody}, nil
}

// decryptError maps the library's errors: atStart says nothing was decrypted yet, where a
// malformed packet means the input is not an OpenPGP message rather than a damaged one.
func decryptError(err error, atStart bool) error {
	var (
		structural pgperrors.StructuralError
		sigErr     pgperrors.SignatureError
		sessErr    pgperrors.DecryptWithSessionKeyError
	)
	switch {
	case errors.Is(err, pgperrors.ErrKeyIncorrect):
		return shared.Wrap(err, shared.CodeInvalidInput, "the private key does not match: the backup was encrypted for another key")
	case atStart && errors.As(err, &structural):
		return shared.Wrap(err, shared.CodeInvalidInput, "not an OpenPGP message: "+err.Error())
	case errors.As(err, &structural), errors.As(err, &sigErr), errors.As(err, &sessErr), errors.Is(err, io.ErrUnexpectedEOF):
		return shared.Wrap(ErrIntegrity, shared.CodeChecksumMismatch, ErrIntegrity.Error()+" ("+err.Error()+")")
	}
	return fmt.Errorf("decrypt: %w", err)
}

// decrypter maps the library's errors to the ones callers act on.
type decrypter struct{ r io.Reader }

func (d *decrypter) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = decryptError(err, false)
	}
	return n, err
}

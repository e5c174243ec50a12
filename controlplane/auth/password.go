// Package auth authenticates control-plane callers: password hashing, signing keys, login with
// rate limits, token issue, verification and revocation, and the HTTP middleware and handlers.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"backuprepo/shared"
)

// Argon2id parameters for new hashes: 32 MiB, 2 passes, 2 lanes, about 30-40 ms on two idle
// cores. That is above OWASP's floor (19 MiB, t=2) and slow enough to make offline guessing
// expensive, yet fast enough that the login rate limit, not CPU, bounds the load. Stored hashes
// carry their own parameters, so these can be raised later without invalidating passwords.
const (
	argonMemoryKiB = 32 * 1024
	argonTime      = 2
	argonThreads   = 2
	argonSaltLen   = 16
	argonKeyLen    = 32
)

// Bounds on parameters read back from a stored hash, so a corrupted or hostile row cannot make
// one check allocate gigabytes or spin for minutes.
const (
	maxMemoryKiB = 1024 * 1024
	maxTime      = 16
	maxThreads   = 16
)

// MinPasswordLength is the shortest password accepted (SPEC §2).
const MinPasswordLength = 12

// maxPasswordLength stops a megabyte "password" from being hashed.
const maxPasswordLength = 1024

var b64 = base64.RawStdEncoding

// ValidatePassword enforces the password policy.
func ValidatePassword(pw string) error {
	n := utf8.RuneCountInString(pw)
	if n < MinPasswordLength {
		return shared.Errorf(shared.CodeInvalidInput, "password must be at least %d characters", MinPasswordLength)
	}
	if len(pw) > maxPasswordLength {
		return shared.Errorf(shared.CodeInvalidInput, "password must be at most %d bytes", maxPasswordLength)
	}
	return nil
}

// HashPassword returns the PHC-format argon2id hash of pw with a fresh random salt:
// $argon2id$v=19$m=32768,t=2,p=2$<salt>$<hash> (unpadded standard base64).
func HashPassword(pw string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("read salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime,
		argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

var errBadHash = errors.New("malformed password hash")

type phc struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

func parsePHC(encoded string) (phc, error) {
	var p phc
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return p, errBadHash
	}
	var threads uint32
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &threads); err != nil || n != 3 {
		return p, errBadHash
	}
	if p.memory == 0 || p.memory > maxMemoryKiB || p.time == 0 || p.time > maxTime || threads == 0 || threads > maxThreads {
		return p, errBadHash
	}
	p.threads = uint8(threads)
	var err error
	if p.salt, err = b64.DecodeString(parts[4]); err != nil || len(p.salt) < 8 {
		return p, errBadHash
	}
	if p.key, err = b64.DecodeString(parts[5]); err != nil || len(p.key) < 16 || len(p.key) > 64 {
		return p, errBadHash
	}
	return p, nil
}

// CheckPassword reports whether pw matches the encoded hash, comparing in constant time.
// An unparsable hash is an error, never a match.
func CheckPassword(encoded, pw string) (bool, error) {
	p, err := parsePHC(encoded)
	if err != nil {
		return false, err
	}
	if len(pw) > maxPasswordLength {
		// Still spend the time of a real check so that length does not become an oracle.
		pw = pw[:maxPasswordLength]
		_ = argon2.IDKey([]byte(pw), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
		return false, nil
	}
	key := argon2.IDKey([]byte(pw), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}

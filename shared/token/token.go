// Package token signs and verifies the Ed25519 JWTs (alg EdDSA) that authenticate every
// request; the data nodes verify them without calling the control plane.
package token

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"backuprepo/shared"
)

// Claims are the JWT claims the product uses.
type Claims struct {
	Subject  string              `json:"sub"`
	TenantID string              `json:"tid,omitempty"`
	ID       string              `json:"jti"`
	IssuedAt int64               `json:"iat"`
	Expiry   int64               `json:"exp"`
	Scope    []shared.ScopeEntry `json:"scope,omitempty"`
	Once     bool                `json:"once,omitempty"`
}

// ExpiresAt returns the expiry as a time.
func (c Claims) ExpiresAt() time.Time { return time.Unix(c.Expiry, 0) }

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
	Kid string `json:"kid"`
}

// MaxLength bounds the size of a token string we are willing to parse.
const MaxLength = 8192

var (
	ErrMalformed = errors.New("malformed token")
	ErrAlgorithm = errors.New("unsupported token algorithm")
	ErrKey       = errors.New("unknown signing key")
	ErrSignature = errors.New("bad token signature")
	ErrExpired   = errors.New("token expired")
)

// enc is strict so that every token has one text form: the lenient decoder accepts non-zero
// unused bits in the last character, which would let a token be re-encoded into a different
// string that still verifies.
var enc = base64.RawURLEncoding.Strict()

// Sign returns the compact JWT for claims signed with key under the key id kid.
func Sign(key ed25519.PrivateKey, kid string, c Claims) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("signing key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	h, err := json.Marshal(header{Alg: "EdDSA", Typ: "JWT", Kid: kid})
	if err != nil {
		return "", fmt.Errorf("encode header: %w", err)
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	sig := ed25519.Sign(key, []byte(signing))
	return signing + "." + enc.EncodeToString(sig), nil
}

// Keys maps key ids to public keys.
type Keys map[string]ed25519.PublicKey

// Verify checks the signature against the key named by the header's kid and the expiry
// against now, and returns the claims.
func Verify(keys Keys, tok string, now time.Time) (Claims, error) {
	var c Claims
	// The base64 decoder skips CR and LF even in strict mode; refuse them so that a token
	// cannot be padded into another string that still verifies.
	if len(tok) == 0 || len(tok) > MaxLength || strings.ContainsAny(tok, "\r\n") {
		return c, ErrMalformed
	}
	first := strings.IndexByte(tok, '.')
	last := strings.LastIndexByte(tok, '.')
	if first < 0 || first == last {
		return c, ErrMalformed
	}
	hb, err := enc.DecodeString(tok[:first])
	if err != nil {
		return c, ErrMalformed
	}
	var h header
	if err := strictUnmarshal(hb, &h); err != nil {
		return c, ErrMalformed
	}
	if h.Alg != "EdDSA" {
		return c, ErrAlgorithm
	}
	pub, ok := keys[h.Kid]
	if !ok || len(pub) != ed25519.PublicKeySize {
		return c, ErrKey
	}
	sig, err := enc.DecodeString(tok[last+1:])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return c, ErrSignature
	}
	if !ed25519.Verify(pub, []byte(tok[:last]), sig) {
		return c, ErrSignature
	}
	pb, err := enc.DecodeString(tok[first+1 : last])
	if err != nil {
		return c, ErrMalformed
	}
	if err := strictUnmarshal(pb, &c); err != nil {
		return c, ErrMalformed
	}
	if c.Subject == "" || c.ID == "" || c.Expiry == 0 {
		return c, ErrMalformed
	}
	if !now.Before(c.ExpiresAt()) {
		return c, ErrExpired
	}
	return c, nil
}

// strictUnmarshal decodes exactly one JSON value with no unknown fields and nothing after it,
// so that one signed token has one meaning.
func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// KeyID derives a short stable key id from a public key.
func KeyID(pub ed25519.PublicKey) string {
	return enc.EncodeToString(pub[:9])
}

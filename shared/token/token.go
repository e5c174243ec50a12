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

var enc = base64.RawURLEncoding

// Sign returns the compact JWT for claims signed with key under the key id kid.
func Sign(key ed25519.PrivateKey, kid string, c Claims) (string, error) {
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
	if len(tok) == 0 || len(tok) > MaxLength {
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

func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// KeyID derives a short stable key id from a public key.
func KeyID(pub ed25519.PublicKey) string {
	return enc.EncodeToString(pub[:9])
}

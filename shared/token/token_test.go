package token

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"backuprepo/shared"
)

var now = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)

// testKey is derived from a fixed seed so that the committed fuzz corpus holds tokens that
// this key really signed.
func testKey(seed byte) (ed25519.PrivateKey, string) {
	priv := ed25519.NewKeyFromSeed([]byte(strings.Repeat(string(rune('a'+seed)), ed25519.SeedSize)))
	return priv, KeyID(priv.Public().(ed25519.PublicKey))
}

func testClaims() Claims {
	return Claims{
		Subject:  "9b2e0c4e-7c1c-4c53-9d1e-0d6f2f0b8a11",
		TenantID: "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f",
		ID:       "jti-1",
		IssuedAt: now.Add(-time.Hour).Unix(),
		Expiry:   now.Add(time.Hour).Unix(),
		Scope: []shared.ScopeEntry{
			{Collection: "nightly-db", Roles: []shared.Role{shared.RoleBackupUploader}},
		},
		Once: true,
	}
}

func keysFor(priv ed25519.PrivateKey, kid string) Keys {
	return Keys{kid: priv.Public().(ed25519.PublicKey)}
}

// signRaw signs arbitrary header and payload JSON, to build tokens Sign would never make.
func signRaw(priv ed25519.PrivateKey, header, payload string) string {
	s := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	return s + "." + enc.EncodeToString(ed25519.Sign(priv, []byte(s)))
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	priv, kid := testKey(0)
	c := testClaims()
	tok, err := Sign(priv, kid, c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("token %q is not three parts", tok)
	}
	got, err := Verify(keysFor(priv, kid), tok, now)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("claims = %+v, want %+v", got, c)
	}
	if !got.ExpiresAt().Equal(now.Add(time.Hour)) {
		t.Fatalf("ExpiresAt = %s", got.ExpiresAt())
	}
	hb, _ := enc.DecodeString(tok[:strings.IndexByte(tok, '.')])
	var h map[string]string
	if err := json.Unmarshal(hb, &h); err != nil || h["alg"] != "EdDSA" || h["kid"] != kid || h["typ"] != "JWT" {
		t.Fatalf("header = %s", hb)
	}
	// Minimal claims: no tenant, no scope.
	min := Claims{Subject: "u", ID: "j", Expiry: now.Add(time.Minute).Unix()}
	tok, _ = Sign(priv, kid, min)
	if got, err := Verify(keysFor(priv, kid), tok, now); err != nil || !reflect.DeepEqual(got, min) {
		t.Fatalf("minimal claims: %+v, %v", got, err)
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldPriv, oldKid := testKey(0)
	newPriv, newKid := testKey(1)
	keys := Keys{oldKid: oldPriv.Public().(ed25519.PublicKey), newKid: newPriv.Public().(ed25519.PublicKey)}
	for _, k := range []struct {
		priv ed25519.PrivateKey
		kid  string
	}{{oldPriv, oldKid}, {newPriv, newKid}} {
		tok, _ := Sign(k.priv, k.kid, testClaims())
		if _, err := Verify(keys, tok, now); err != nil {
			t.Errorf("kid %s: %v", k.kid, err)
		}
	}
	// Signed by the new key but labelled with the old kid: the old key must not verify it.
	tok, _ := Sign(newPriv, oldKid, testClaims())
	if _, err := Verify(keys, tok, now); !errors.Is(err, ErrSignature) {
		t.Errorf("mislabelled kid: %v, want ErrSignature", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	priv, kid := testKey(0)
	other, otherKid := testKey(1)
	keys := keysFor(priv, kid)
	good, _ := Sign(priv, kid, testClaims())
	parts := strings.Split(good, ".")
	payload, _ := enc.DecodeString(parts[1])

	tamperedPayload := parts[0] + "." + enc.EncodeToString([]byte(strings.Replace(string(payload), "jti-1", "jti-2", 1))) + "." + parts[2]
	sig, _ := enc.DecodeString(parts[2])
	sig[10] ^= 1
	tamperedSig := parts[0] + "." + parts[1] + "." + enc.EncodeToString(sig)
	byOther, _ := Sign(other, otherKid, testClaims())
	otherWithOurKid, _ := Sign(other, kid, testClaims())
	expired := testClaims()
	expired.Expiry = now.Unix()
	expiredTok, _ := Sign(priv, kid, expired)
	longAgo := testClaims()
	longAgo.Expiry = -5
	longAgoTok, _ := Sign(priv, kid, longAgo)

	claimsJSON := string(payload)
	tests := []struct {
		name string
		tok  string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"one part", "abc", ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", good + ".x", ErrSignature}, // the signature is checked over everything before the last dot
		{"huge", good + strings.Repeat("A", MaxLength), ErrMalformed},
		{"bad header base64", "!!!." + parts[1] + "." + parts[2], ErrMalformed},
		{"padded header", parts[0] + "==." + parts[1] + "." + parts[2], ErrMalformed},
		{"header not JSON", enc.EncodeToString([]byte("hello")) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"header unknown field", signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`","jku":"http://evil"}`, claimsJSON), ErrMalformed},
		{"bad payload base64", parts[0] + ".%%%." + parts[2], ErrSignature},
		{"bad signature base64", parts[0] + "." + parts[1] + ".%%%", ErrSignature},
		{"short signature", parts[0] + "." + parts[1] + "." + enc.EncodeToString(sig[:32]), ErrSignature},
		{"empty signature", parts[0] + "." + parts[1] + ".", ErrSignature},
		{"tampered payload", tamperedPayload, ErrSignature},
		{"tampered signature", tamperedSig, ErrSignature},
		{"unknown kid", byOther, ErrKey},
		{"other key under our kid", otherWithOurKid, ErrSignature},
		{"alg none", enc.EncodeToString([]byte(`{"alg":"none","kid":"`+kid+`"}`)) + "." + parts[1] + ".", ErrAlgorithm},
		{"alg HS256", signRaw(priv, `{"alg":"HS256","kid":"`+kid+`"}`, claimsJSON), ErrAlgorithm},
		{"alg lowercase", signRaw(priv, `{"alg":"eddsa","kid":"`+kid+`"}`, claimsJSON), ErrAlgorithm},
		{"alg missing", signRaw(priv, `{"kid":"`+kid+`"}`, claimsJSON), ErrAlgorithm},
		{"kid missing", signRaw(priv, `{"alg":"EdDSA"}`, claimsJSON), ErrKey},
		{"expired at exp", expiredTok, ErrExpired},
		{"expired long ago", longAgoTok, ErrExpired},
		{"claims unknown field", signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`"}`, `{"sub":"u","jti":"j","exp":9999999999,"admin":true}`), ErrMalformed},
		{"header trailing data", signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`"} {}`, claimsJSON), ErrMalformed},
		{"claims trailing data", signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`"}`, claimsJSON+`{"sub":"admin"}`), ErrMalformed},
		{"claims not JSON", signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`"}`, `sub=u`), ErrMalformed},
		{"claims wrong type", signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`"}`, `{"sub":"u","jti":"j","exp":"tomorrow"}`), ErrMalformed},
		{"claims no sub", signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`"}`, `{"jti":"j","exp":9999999999}`), ErrMalformed},
		{"claims no jti", signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`"}`, `{"sub":"u","exp":9999999999}`), ErrMalformed},
		{"claims no exp", signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`"}`, `{"sub":"u","jti":"j"}`), ErrMalformed},
		{"claims bad scope role type", signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`"}`, `{"sub":"u","jti":"j","exp":9999999999,"scope":[{"collection":"c","roles":"all"}]}`), ErrMalformed},
	}
	for _, tt := range tests {
		c, err := Verify(keys, tt.tok, now)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: Verify = %+v, %v; want %v", tt.name, c, err, tt.want)
		}
	}
	// A key of the wrong length in the key set is treated as unknown, not a panic.
	if _, err := Verify(Keys{kid: ed25519.PublicKey("short")}, good, now); !errors.Is(err, ErrKey) {
		t.Errorf("short public key: %v, want ErrKey", err)
	}
	if _, err := Verify(nil, good, now); !errors.Is(err, ErrKey) {
		t.Errorf("no keys: %v, want ErrKey", err)
	}
}

// A token's signature has exactly one text form: base64url without padding, unused bits zero.
// Otherwise a token could be altered into a different string that still verifies.
func TestSignatureEncodingIsCanonical(t *testing.T) {
	t.Parallel()
	priv, kid := testKey(0)
	good, _ := Sign(priv, kid, testClaims())
	last := good[len(good)-1]
	// 64 signature bytes take 86 base64 characters; the last holds 2 data bits and 4 unused
	// bits. Flipping one of the unused bits decodes to the same bytes in lenient mode.
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	idx := strings.IndexByte(alphabet, last)
	variant := good[:len(good)-1] + string(alphabet[idx^1])
	if _, err := base64.RawURLEncoding.DecodeString(variant[strings.LastIndexByte(variant, '.')+1:]); err != nil {
		t.Fatalf("test setup: the variant is not even lenient base64: %v", err)
	}
	if _, err := Verify(keysFor(priv, kid), variant, now); err == nil {
		t.Fatalf("a non-canonical re-encoding of the signature verified")
	}
	// The base64 decoder skips CR and LF even in strict mode.
	for _, nl := range []string{"\n", "\r", "\r\n"} {
		withNL := good[:len(good)-10] + nl + good[len(good)-10:]
		if _, err := Verify(keysFor(priv, kid), withNL, now); err == nil {
			t.Fatalf("a signature with %q inside verified", nl)
		}
	}
}

func TestSignRejectsBadKey(t *testing.T) {
	t.Parallel()
	if _, err := Sign(ed25519.PrivateKey("short"), "k", testClaims()); err == nil {
		t.Fatal("Sign with a short key succeeded")
	}
	if _, err := Sign(nil, "k", testClaims()); err == nil {
		t.Fatal("Sign with a nil key succeeded")
	}
}

func TestKeyID(t *testing.T) {
	t.Parallel()
	a, kidA := testKey(0)
	_, kidB := testKey(1)
	if kidA == kidB || kidA == "" {
		t.Fatalf("KeyID not distinct: %q %q", kidA, kidB)
	}
	if KeyID(a.Public().(ed25519.PublicKey)) != kidA {
		t.Fatal("KeyID not stable")
	}
}

// FuzzVerify feeds arbitrary strings to Verify. It must never panic, and whatever it accepts
// must be one of the tokens this test signed: the fuzzer cannot forge an Ed25519 signature,
// so acceptance of anything else means Verify checks less than it should.
func FuzzVerify(f *testing.F) {
	priv, kid := testKey(0)
	keys := keysFor(priv, kid)
	signed := map[string]Claims{}
	add := func(c Claims) {
		tok, err := Sign(priv, kid, c)
		if err != nil {
			f.Fatal(err)
		}
		signed[tok] = c
		f.Add(tok)
	}
	add(testClaims())
	add(Claims{Subject: "u", ID: "j", Expiry: now.Add(time.Minute).Unix()})
	add(Claims{Subject: "u", TenantID: "t", ID: "j2", Expiry: 1 << 40, Scope: []shared.ScopeEntry{{Collection: "c"}}})
	f.Add("")
	f.Add("a.b.c")
	f.Add(signRaw(priv, `{"alg":"none","kid":"`+kid+`"}`, `{"sub":"u","jti":"j","exp":9999999999}`))
	f.Add(signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`"}`, `{"sub":"u","jti":"j","exp":9999999999,"admin":true}`))
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := Verify(keys, tok, now)
		if err != nil {
			for _, known := range []error{ErrMalformed, ErrAlgorithm, ErrKey, ErrSignature, ErrExpired} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("Verify(%q) returned an unexpected error %v", tok, err)
		}
		want, ok := signed[tok]
		if !ok {
			t.Fatalf("Verify accepted %q, which this test never signed", tok)
		}
		if !reflect.DeepEqual(c, want) {
			t.Fatalf("Verify(%q) = %+v, want %+v", tok, c, want)
		}
	})
}

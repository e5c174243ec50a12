package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"backuprepo/shared/token"
)

// writeKey writes a PEM public key file and returns its path and key id.
func writeKey(t *testing.T, dir string) (string, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "key-"+token.KeyID(pub)+".pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, token.KeyID(pub)
}

// goodEnv is a complete configuration given through BR_ variables.
func goodEnv(t *testing.T) ([]string, string) {
	t.Helper()
	dir := t.TempDir()
	key, kid := writeKey(t, dir)
	return []string{
		"BR_NODE_NAME=node-a",
		"BR_PUBLIC_URL=http://node-a.example:8081/",
		"BR_DISKS=" + dir + ", " + t.TempDir(),
		"BR_GOSSIP_KEY=MDEyMzQ1Njc4OWFiY2RlZg==",
		"BR_CONTROLPLANE_URL=http://cp:8080",
		"BR_NODE_SECRET=0123456789abcdef",
		"BR_VERIFY_KEYS=" + key,
		"BR_HEALTH_CHECK_CODE=abc",
	}, kid
}

func TestParseSettings(t *testing.T) {
	t.Parallel()
	env, kid := goodEnv(t)
	s, err := parseSettings([]string{"-reserve", "2GiB", "-zone", "eu-1"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.NodeName != "node-a" || s.PublicURL != "http://node-a.example:8081" || len(s.Disks) != 2 ||
		s.Reserve != 2<<30 || s.Zone != "eu-1" || string(s.NodeSecret) != "0123456789abcdef" ||
		len(s.GossipKey) != 16 || s.VerifyKeys[kid] == nil || s.Listen != "127.0.0.1:8081" ||
		s.BodyIdleTimeout != 2*time.Minute {
		t.Fatalf("settings = %+v", s)
	}
}

func TestParseSettingsRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  string // replaces or adds one variable; "NAME=" empties it
		want string // the setting the one-line error must name
	}{
		{"BR_NODE_NAME=", "BR_NODE_NAME (-node-name) is required"},
		{"BR_PUBLIC_URL=", "BR_PUBLIC_URL (-public-url) is required"},
		{"BR_PUBLIC_URL=node-a:8081", "BR_PUBLIC_URL"},
		{"BR_DISKS=", "BR_DISKS (-disks) is required"},
		{"BR_DISKS=/does/not/exist", "BR_DISKS"},
		{"BR_RESERVE=lots", "BR_RESERVE"},
		{"BR_GOSSIP_KEY=", "BR_GOSSIP_KEY"},
		{"BR_GOSSIP_KEY=c2hvcnQ=", "BR_GOSSIP_KEY"},
		{"BR_GOSSIP_BIND=nohost", "BR_GOSSIP_BIND"},
		{"BR_CONTROLPLANE_URL=", "BR_CONTROLPLANE_URL"},
		{"BR_NODE_SECRET=short", "BR_NODE_SECRET (-node-secret) must be at least 16 bytes"},
		{"BR_VERIFY_KEYS=", "BR_VERIFY_KEYS"},
		{"BR_VERIFY_KEYS=/does/not/exist.pem", "BR_VERIFY_KEYS"},
		{"BR_HEALTH_CHECK_CODE=", "BR_HEALTH_CHECK_CODE"},
		{"BR_LISTEN=8081", "BR_LISTEN"},
		{"BR_LOG_LEVEL=loud", "BR_LOG_LEVEL"},
		{"BR_BODY_IDLE_TIMEOUT=1ms", "BR_BODY_IDLE_TIMEOUT"},
	}
	for _, c := range cases {
		env, _ := goodEnv(t)
		name, _, _ := strings.Cut(c.env, "=")
		replaced := false
		for i, kv := range env {
			if strings.HasPrefix(kv, name+"=") {
				env[i], replaced = c.env, true
			}
		}
		if !replaced {
			env = append(env, c.env)
		}
		_, err := parseSettings(nil, env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line naming %s", c.env, err, c.want)
		}
	}
}

func TestVerifyKeyMustBePublicEd25519(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "x.pem")
	_ = os.WriteFile(notPEM, []byte("hello"), 0o644)
	if _, err := loadPublicKeys([]string{notPEM}); err == nil {
		t.Fatal("a non-PEM file was accepted")
	}
	good, _ := writeKey(t, dir)
	other, _ := writeKey(t, dir)
	keys, err := loadPublicKeys([]string{good, other})
	if err != nil || len(keys) != 2 {
		t.Fatalf("two keys: %v, %v", keys, err)
	}
}

package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"backuprepo/shared/config"
	"backuprepo/shared/size"
	"backuprepo/shared/token"
)

// settings is everything a data node can be configured with.
type settings struct {
	Listen          string
	NodeName        string
	PublicURL       string
	Zone            string
	Disks           []string
	Reserve         int64
	GossipBind      string
	GossipAdvertise string
	GossipJoin      []string
	GossipKey       []byte
	ControlPlaneURL string
	NodeSecret      []byte
	VerifyKeys      token.Keys
	HealthCheckCode string
	BodyIdleTimeout time.Duration
	ShutdownGrace   time.Duration
	CleanupInterval time.Duration
	LogLevel        slog.Level
}

func parseSettings(args, environ []string, stderr io.Writer) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("datanode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.Listen, "listen", "127.0.0.1:8081", "address to serve HTTP on")
	fs.StringVar(&s.NodeName, "node-name", "", "this node's unique name in the cluster (required)")
	fs.StringVar(&s.PublicURL, "public-url", "", "URL clients and the front door reach this node at (required)")
	fs.StringVar(&s.Zone, "zone", "", "zone this node is in, for placement")
	disks := fs.String("disks", "", "comma-separated data directories, one per disk (required)")
	reserve := fs.String("reserve", "1GiB", "free space kept on every disk (with units: 500MiB, 2GB)")
	fs.StringVar(&s.GossipBind, "gossip-bind", "127.0.0.1:7947", "host:port for gossip")
	fs.StringVar(&s.GossipAdvertise, "gossip-advertise", "", "host:port other members reach this one at (default: the bind address)")
	join := fs.String("gossip-join", "", "comma-separated host:port of members to join")
	key := fs.String("gossip-key", "", "base64 of the 16, 24 or 32 byte gossip encryption key (required)")
	fs.StringVar(&s.ControlPlaneURL, "controlplane-url", "", "URL of the control plane's internal API (required)")
	secret := fs.String("node-secret", "", "secret shared with the control plane, at least 16 bytes (required)")
	verify := fs.String("verify-keys", "", "comma-separated PEM files with the control plane's Ed25519 public keys (required)")
	fs.StringVar(&s.HealthCheckCode, "health-check-code", "", "secret for /health?code= (required)")
	fs.DurationVar(&s.BodyIdleTimeout, "body-idle-timeout", 2*time.Minute, "drop an upload that sends nothing for this long")
	fs.DurationVar(&s.CleanupInterval, "cleanup-interval", 30*time.Second, "how often files of deleted versions are removed")
	fs.DurationVar(&s.ShutdownGrace, "shutdown-grace", 5*time.Minute, "how long in-flight transfers may finish on shutdown")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := config.Parse(fs, args, environ); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}

	required := map[string]string{"node-name": s.NodeName, "public-url": s.PublicURL, "disks": *disks,
		"gossip-key": *key, "controlplane-url": s.ControlPlaneURL, "node-secret": *secret,
		"verify-keys": *verify, "health-check-code": s.HealthCheckCode}
	for _, name := range []string{"node-name", "public-url", "disks", "gossip-key", "controlplane-url",
		"node-secret", "verify-keys", "health-check-code"} {
		if strings.TrimSpace(required[name]) == "" {
			return s, config.Invalid(name, "is required")
		}
	}
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		return s, config.Invalid("listen", "must be host:port")
	}
	for _, u := range []struct{ name, value string }{{"public-url", s.PublicURL}, {"controlplane-url", s.ControlPlaneURL}} {
		p, err := url.Parse(u.value)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return s, config.Invalid(u.name, "must be an http(s) URL")
		}
	}
	s.PublicURL = strings.TrimRight(s.PublicURL, "/")
	s.Disks = config.List(*disks)
	for _, d := range s.Disks {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return s, config.Invalid("disks", fmt.Sprintf("names %q, which is not an existing directory", d))
		}
	}
	r, err := size.Parse(*reserve)
	if err != nil {
		return s, config.Invalid("reserve", err.Error())
	}
	s.Reserve = r
	for _, name := range []string{"gossip-bind", "gossip-advertise"} {
		if _, _, err := config.HostPort(name, fs.Lookup(name).Value.String()); err != nil {
			return s, err
		}
	}
	s.GossipJoin = config.List(*join)
	if s.GossipKey, err = config.GossipKey("gossip-key", *key); err != nil {
		return s, err
	}
	if len(*secret) < 16 {
		return s, config.Invalid("node-secret", "must be at least 16 bytes")
	}
	s.NodeSecret = []byte(*secret)
	keys, err := loadPublicKeys(config.List(*verify))
	if err != nil {
		return s, config.Invalid("verify-keys", err.Error())
	}
	s.VerifyKeys = keys
	if s.BodyIdleTimeout < time.Second {
		return s, config.Invalid("body-idle-timeout", "must be at least 1s")
	}
	if s.CleanupInterval < time.Second {
		return s, config.Invalid("cleanup-interval", "must be at least 1s")
	}
	if s.ShutdownGrace < 0 {
		return s, config.Invalid("shutdown-grace", "must not be negative")
	}
	if s.LogLevel, err = config.LogLevel("log-level", *logLevel); err != nil {
		return s, err
	}
	return s, nil
}

// loadPublicKeys reads PEM PKIX Ed25519 public keys, the files the control plane writes next to
// its signing key; several allow rotating that key.
func loadPublicKeys(paths []string) (token.Keys, error) {
	keys := token.Keys{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %w", p, errors.Unwrap(err))
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%s holds no PEM PUBLIC KEY block", p)
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s is not an Ed25519 key", p)
		}
		keys[token.KeyID(pub)] = pub
	}
	if len(keys) == 0 {
		return nil, errors.New("lists no key")
	}
	return keys, nil
}

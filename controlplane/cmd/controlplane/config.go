package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"time"

	"backuprepo/shared/config"
)

// settings is everything the control plane can be configured with.
type settings struct {
	Listen                 string
	BaseURL                string
	AppEnv                 string
	DatabaseURL            string
	RedisURL               string
	RedisPrefix            string
	HealthCheckCode        string
	MetricsCode            string
	GossipBind             string
	GossipAdvertise        string
	GossipHost             string
	GossipPort             int
	GossipAdvertiseHost    string
	GossipAdvertisePort    int
	GossipJoin             []string
	GossipKey              []byte
	NodeName               string
	NodeSecret             []byte
	DataDir                string
	SigningKey             string
	CreateSigningKey       bool
	VerifyKeys             []string
	BootstrapAdminEmail    string
	BootstrapAdminPassword string
	TokenTTL               time.Duration
	MaxTokenTTL            time.Duration
	ConsoleAssetURL        string
	TrustedProxies         []netip.Prefix
	ComplexityLimit        int
	UploadLease            time.Duration
	LogLevel               slog.Level
	GCPercent              int
}

// defaultGCPercent trades memory for CPU: the control plane's live heap is small (tens of MiB)
// and every request allocates short-lived garbage (gqlgen builds a tree of values per answer),
// so with Go's default of 100 the collector ran often enough to take 14% of the CPU of the
// GraphQL collections benchmark. See docs/operations.md for the measurements.
const defaultGCPercent = 400

func parseSettings(args, environ []string, stderr io.Writer) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("controlplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.Listen, "listen", "127.0.0.1:8080", "address to serve HTTP on")
	fs.StringVar(&s.BaseURL, "base-url", "http://127.0.0.1:8080", "public URL of the control plane (reported in metrics)")
	fs.StringVar(&s.AppEnv, "app-env", "prod", "environment name reported in metrics (dev, prod, ...)")
	fs.StringVar(&s.DatabaseURL, "database-url", "", "PostgreSQL URL (required)")
	fs.StringVar(&s.RedisURL, "redis-url", "", "Redis URL (required)")
	fs.StringVar(&s.RedisPrefix, "redis-prefix", "br:", "prefix of every Redis key")
	fs.StringVar(&s.HealthCheckCode, "health-check-code", "", "secret for /health?code= (required)")
	fs.StringVar(&s.MetricsCode, "metrics-code", "", "secret for the InfluxDB metrics endpoint (required, different from the health code)")
	fs.StringVar(&s.GossipBind, "gossip-bind", "127.0.0.1:7946", "host:port for gossip")
	fs.StringVar(&s.GossipAdvertise, "gossip-advertise", "", "host:port other members reach this one at (default: the bind address)")
	join := fs.String("gossip-join", "", "comma-separated host:port of members to join")
	key := fs.String("gossip-key", "", "base64 of the 16, 24 or 32 byte gossip encryption key (required)")
	fs.StringVar(&s.NodeName, "node-name", "controlplane", "this replica's name in the cluster (unique)")
	nodeSecret := fs.String("node-secret", "", "secret shared with the data nodes for the internal API (required, at least 16 bytes)")
	fs.StringVar(&s.DataDir, "data-dir", "var/controlplane", "directory for generated keys")
	fs.StringVar(&s.SigningKey, "signing-key", "", "PEM Ed25519 private key signing tokens (default: <data-dir>/signing-key.pem)")
	fs.BoolVar(&s.CreateSigningKey, "create-signing-key", false, "generate the signing key when the file is missing (development)")
	verify := fs.String("verify-keys", "", "comma-separated PEM public keys also accepted for tokens (key rotation)")
	fs.StringVar(&s.BootstrapAdminEmail, "bootstrap-admin-email", "", "system admin created on first start when no user exists")
	fs.StringVar(&s.BootstrapAdminPassword, "bootstrap-admin-password", "", "password of the bootstrap admin (at least 12 characters)")
	fs.DurationVar(&s.TokenTTL, "token-ttl", 24*time.Hour, "lifetime of login tokens")
	fs.DurationVar(&s.MaxTokenTTL, "max-token-ttl", 366*24*time.Hour, "longest lifetime issueToken grants")
	fs.StringVar(&s.ConsoleAssetURL, "console-asset-url", "", "base URL of the GraphQL console's JS/CSS assets (default: the public CDN; set it for air-gapped installs)")
	proxies := fs.String("trusted-proxies", "", "comma-separated CIDRs of proxies whose X-Forwarded-For is believed")
	fs.IntVar(&s.ComplexityLimit, "graphql-complexity-limit", 5000, "largest GraphQL query complexity accepted")
	fs.DurationVar(&s.UploadLease, "upload-lease", time.Minute, "how long an upload's lock lives without an extend from its data node (at least 1s)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.IntVar(&s.GCPercent, "gc-percent", defaultGCPercent, "Go garbage collection target in percent of the live heap (as GOGC); 0 keeps the runtime's own setting")
	err := config.Parse(fs, args, environ)
	if err != nil {
		return s, err
	}

	required := map[string]string{"database-url": s.DatabaseURL, "redis-url": s.RedisURL,
		"health-check-code": s.HealthCheckCode, "metrics-code": s.MetricsCode, "gossip-key": *key}
	for _, name := range []string{"database-url", "redis-url", "health-check-code", "metrics-code", "gossip-key"} {
		if required[name] == "" {
			return s, config.Invalid(name, "is required")
		}
	}
	if s.HealthCheckCode == s.MetricsCode {
		return s, config.Invalid("metrics-code", "must differ from the health check code")
	}
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		return s, config.Invalid("listen", "must be host:port")
	}
	if u, err := url.Parse(s.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return s, config.Invalid("base-url", "must be an http(s) URL")
	}
	if s.GossipHost, s.GossipPort, err = config.HostPort("gossip-bind", s.GossipBind); err != nil {
		return s, err
	}
	if s.GossipAdvertiseHost, s.GossipAdvertisePort, err = config.HostPort("gossip-advertise", s.GossipAdvertise); err != nil {
		return s, err
	}
	s.GossipJoin = config.List(*join)
	if s.GossipKey, err = config.GossipKey("gossip-key", *key); err != nil {
		return s, err
	}
	if len(*nodeSecret) < 16 {
		return s, config.Invalid("node-secret", "is required and must be at least 16 bytes")
	}
	s.NodeSecret = []byte(*nodeSecret)
	if s.SigningKey == "" {
		s.SigningKey = s.DataDir + "/signing-key.pem"
	}
	s.VerifyKeys = config.List(*verify)
	if (s.BootstrapAdminEmail == "") != (s.BootstrapAdminPassword == "") {
		return s, config.Invalid("bootstrap-admin-password", "and -bootstrap-admin-email go together")
	}
	if s.TokenTTL <= 0 || s.TokenTTL > s.MaxTokenTTL {
		return s, config.Invalid("token-ttl", fmt.Sprintf("must be positive and at most -max-token-ttl (%s)", s.MaxTokenTTL))
	}
	for _, p := range config.List(*proxies) {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return s, config.Invalid("trusted-proxies", fmt.Sprintf("has a bad CIDR %q", p))
		}
		s.TrustedProxies = append(s.TrustedProxies, pfx)
	}
	if s.ComplexityLimit < 100 {
		return s, config.Invalid("graphql-complexity-limit", "must be at least 100")
	}
	if s.UploadLease < time.Second {
		return s, config.Invalid("upload-lease", "must be at least 1s")
	}
	if s.GCPercent < 0 {
		return s, config.Invalid("gc-percent", "must be 0 (keep GOGC) or positive; the collector cannot be turned off")
	}
	if s.LogLevel, err = config.LogLevel("log-level", *logLevel); err != nil {
		return s, err
	}
	return s, nil
}

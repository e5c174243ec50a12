// Package config lets every flag of a binary also be set by a BR_-prefixed environment
// variable, and reports bad settings in one clear line that names the setting.
package config

import (
	"encoding/base64"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
)

// EnvName returns the environment variable that sets a flag: "gossip-bind" -> "BR_GOSSIP_BIND".
func EnvName(flagName string) string {
	return "BR_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs after applying environ (KEY=value lines, as os.Environ gives):
// a flag given on the command line wins over its environment variable.
func Parse(fs *flag.FlagSet, args, environ []string) error {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		if v, ok := env[EnvName(f.Name)]; ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = Invalid(f.Name, e.Error())
			}
		}
	})
	if err != nil {
		return err
	}
	return fs.Parse(args)
}

// Invalid builds the one-line error for a bad setting.
func Invalid(flagName, why string) error {
	return fmt.Errorf("config: %s (-%s) %s", EnvName(flagName), flagName, why)
}

// LogLevel parses a log-level setting: debug, info, warn or error.
func LogLevel(flagName, v string) (slog.Level, error) {
	switch v {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, Invalid(flagName, "must be debug, info, warn or error")
}

// List splits a comma-separated setting, dropping blanks.
func List(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// HostPort checks a host:port setting with a numeric port; an empty value gives "", 0.
func HostPort(flagName, v string) (string, int, error) {
	if v == "" {
		return "", 0, nil
	}
	host, p, err := net.SplitHostPort(v)
	if err != nil {
		return "", 0, Invalid(flagName, "must be host:port")
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, Invalid(flagName, "must have a numeric port")
	}
	return host, port, nil
}

// GossipKey decodes the base64 gossip encryption key (16, 24 or 32 bytes: AES-128/192/256).
func GossipKey(flagName, v string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(v)
	if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
		return nil, Invalid(flagName, "must be base64 of 16, 24 or 32 bytes")
	}
	return k, nil
}

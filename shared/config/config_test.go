package config

import (
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     []string
		want    string
		wantN   int
		wantErr string
	}{
		{name: "default", want: "def", wantN: 1},
		{name: "env", env: []string{"BR_GOSSIP_BIND=env", "BR_COUNT=5"}, want: "env", wantN: 5},
		{name: "flag beats env", args: []string{"-gossip-bind=flag"}, env: []string{"BR_GOSSIP_BIND=env"}, want: "flag", wantN: 1},
		{name: "bad env value", env: []string{"BR_COUNT=x"}, wantErr: "config: BR_COUNT (-count)"},
		{name: "unrelated env ignored", env: []string{"GOSSIP_BIND=x", "BR_OTHER=1"}, want: "def", wantN: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			s := fs.String("gossip-bind", "def", "")
			n := fs.Int("count", 1, "")
			err := Parse(fs, tt.args, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want prefix %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *s != tt.want || *n != tt.wantN {
				t.Fatalf("got %q %d, want %q %d", *s, *n, tt.want, tt.wantN)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	if got := EnvName("health-check-code"); got != "BR_HEALTH_CHECK_CODE" {
		t.Fatalf("got %q", got)
	}
}

func TestHostPortAndGossipKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       string
		host     string
		port     int
		wantFail bool
	}{
		{"", "", 0, false},
		{"127.0.0.1:7946", "127.0.0.1", 7946, false},
		{"[::1]:1", "::1", 1, false},
		{"127.0.0.1", "", 0, true},
		{"h:port", "", 0, true},
		{"h:70000", "", 0, true},
	} {
		h, p, err := HostPort("gossip-bind", tc.in)
		if (err != nil) != tc.wantFail || h != tc.host || p != tc.port {
			t.Errorf("HostPort(%q) = %q %d %v", tc.in, h, p, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "config: BR_GOSSIP_BIND (-gossip-bind)") {
			t.Errorf("HostPort(%q) error %q does not name the setting", tc.in, err)
		}
	}
	if k, err := GossipKey("gossip-key", "MDEyMzQ1Njc4OWFiY2RlZg=="); err != nil || len(k) != 16 {
		t.Errorf("16-byte key: %v", err)
	}
	for _, bad := range []string{"", "not base64!", "MDEyMzQ1Njc4OWFi"} {
		if _, err := GossipKey("gossip-key", bad); err == nil {
			t.Errorf("GossipKey(%q) accepted", bad)
		}
	}
	if got := List(" a, ,b ,"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("List = %q", got)
	}
}

func TestLogLevel(t *testing.T) {
	for v, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo,
		"warn": slog.LevelWarn, "error": slog.LevelError} {
		if got, err := LogLevel("log-level", v); err != nil || got != want {
			t.Errorf("LogLevel(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "INFO", "warning", "loud", "-4"} {
		if _, err := LogLevel("log-level", v); err == nil || !strings.Contains(err.Error(), "BR_LOG_LEVEL (-log-level) must be") {
			t.Errorf("LogLevel(%q) error = %v, want one naming the setting", v, err)
		}
	}
}

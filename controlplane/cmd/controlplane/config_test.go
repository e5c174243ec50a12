package main

import (
	"io"
	"strings"
	"testing"
)

// requiredEnv is the smallest environment parseSettings accepts.
var requiredEnv = []string{
	"BR_DATABASE_URL=postgres://127.0.0.1/db",
	"BR_REDIS_URL=redis://127.0.0.1/0",
	"BR_HEALTH_CHECK_CODE=health-secret",
	"BR_METRICS_CODE=metrics-secret",
	"BR_GOSSIP_KEY=MDEyMzQ1Njc4OWFiY2RlZg==", // base64 of 16 bytes
	"BR_NODE_SECRET=0123456789abcdef",
}

func TestGCPercentSetting(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		args    []string
		env     []string
		want    int
		wantErr string
	}{
		{name: "default", want: defaultGCPercent},
		{name: "flag", args: []string{"-gc-percent", "150"}, want: 150},
		{name: "environment", env: []string{"BR_GC_PERCENT=800"}, want: 800},
		{name: "zero keeps the runtime's setting", env: []string{"BR_GC_PERCENT=0"}, want: 0},
		{name: "negative would turn the collector off", args: []string{"-gc-percent", "-1"}, wantErr: "BR_GC_PERCENT (-gc-percent) must be 0"},
		{name: "not a number", env: []string{"BR_GC_PERCENT=lots"}, wantErr: "BR_GC_PERCENT (-gc-percent)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			env := append(append([]string{}, requiredEnv...), c.env...)
			s, err := parseSettings(c.args, env, io.Discard)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("parseSettings: error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSettings: %v", err)
			}
			if s.GCPercent != c.want {
				t.Errorf("GCPercent = %d, want %d", s.GCPercent, c.want)
			}
		})
	}
}

package internalapi

import (
	"net/http/httptest"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"uploadId":"x"}`)
	tests := []struct {
		name    string
		mutate  func(r *httptestRequest)
		verify  []byte
		at      time.Time
		wantErr error
	}{
		{name: "valid", verify: body, at: now},
		{name: "other body", verify: []byte(`{}`), at: now, wantErr: ErrBadSignature},
		{name: "other secret", verify: body, at: now, mutate: func(r *httptestRequest) { r.secret = []byte("other") }, wantErr: ErrBadSignature},
		{name: "other path", verify: body, at: now, mutate: func(r *httptestRequest) { r.path = PathAbort }, wantErr: ErrBadSignature},
		{name: "renamed node", verify: body, at: now, mutate: func(r *httptestRequest) { r.rename = "dn-evil" }, wantErr: ErrBadSignature},
		{name: "unsigned", verify: body, at: now, mutate: func(r *httptestRequest) { r.unsigned = true }, wantErr: ErrUnsigned},
		{name: "stale", verify: body, at: now.Add(3 * time.Minute), wantErr: ErrStale},
		{name: "future", verify: body, at: now.Add(-3 * time.Minute), wantErr: ErrStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := &httptestRequest{secret: secret, path: PathCommit}
			if tt.mutate != nil {
				tt.mutate(p)
			}
			r := httptest.NewRequest("POST", PathCommit, nil)
			if !p.unsigned {
				signed := httptest.NewRequest("POST", p.path, nil)
				Sign(signed, p.secret, "dn-1", body, now)
				r.Header = signed.Header
				if p.rename != "" {
					r.Header.Set(HeaderNode, p.rename)
				}
			}
			node, err := Verify(r, secret, tt.verify, tt.at)
			if err != tt.wantErr {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && node != "dn-1" {
				t.Fatalf("node = %q", node)
			}
		})
	}
}

type httptestRequest struct {
	secret   []byte
	path     string
	rename   string
	unsigned bool
}

func TestClientIPSignature(t *testing.T) {
	t.Parallel()
	secret := []byte("s3cret-s3cret-s3cret")
	now := time.Unix(1_800_000_000, 0)
	sig := SignClientIP(secret, "203.0.113.7", now)
	if !VerifyClientIP(secret, "203.0.113.7", sig, now.Add(time.Second)) {
		t.Fatal("valid signature refused")
	}
	for name, ok := range map[string]bool{
		"other ip":     VerifyClientIP(secret, "203.0.113.8", sig, now),
		"other secret": VerifyClientIP([]byte("x"), "203.0.113.7", sig, now),
		"stale":        VerifyClientIP(secret, "203.0.113.7", sig, now.Add(time.Hour)),
		"garbage":      VerifyClientIP(secret, "203.0.113.7", "zz", now),
		"empty":        VerifyClientIP(secret, "203.0.113.7", "", now),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

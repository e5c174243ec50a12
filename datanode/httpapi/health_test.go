package httpapi_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"backuprepo/shared"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestHealth(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	for _, q := range []string{"", "?code=", "?code=wrong", "?code=health-code-1x", "?other=health-code-1"} {
		resp, body := e.do(newRequest(t, http.MethodGet, e.url("/health"+q), nil))
		wantRefusal(t, resp, body, http.StatusForbidden, shared.CodeForbidden)
	}
	resp, body := e.do(newRequest(t, http.MethodGet, e.url("/health?code=health-code-1"), nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %d %s", resp.StatusCode, body)
	}
	golden := filepath.Join("testdata", "health_ok.json")
	if *update {
		if err := os.WriteFile(golden, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, want) {
		t.Fatalf("health body\n%s\nwant\n%s", body, want)
	}
	e.assertNoFiles() // the probe file is gone

	// A disk that disappears fails the check.
	if err := os.RemoveAll(e.dirs[1]); err != nil {
		t.Fatal(err)
	}
	resp, body = e.do(newRequest(t, http.MethodGet, e.url("/health?code=health-code-1"), nil))
	var a struct {
		Status       []map[string]bool     `json:"status"`
		Messages     []map[string][]string `json:"messages"`
		GlobalStatus bool                  `json:"global_status"`
		Ident        []string              `json:"ident"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || a.GlobalStatus || a.Status[0]["storage"] ||
		len(a.Messages[0]["storage"]) != 1 || !strings.Contains(a.Messages[0]["storage"][0], e.dirs[1]) ||
		strings.Join(a.Ident, ",") != "global_status=False,storage=False" {
		t.Fatalf("broken disk: %d %s", resp.StatusCode, body)
	}
}

func TestLiveReadyMetrics(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode)
	resp, body := e.do(newRequest(t, http.MethodGet, e.url("/livez"), nil))
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("livez: %d %q", resp.StatusCode, body)
	}
	resp, body = e.do(newRequest(t, http.MethodGet, e.url("/readyz"), nil))
	if resp.StatusCode != 200 {
		t.Fatalf("readyz: %d %q", resp.StatusCode, body)
	}
	e.h.Stopping()
	resp, body = e.do(newRequest(t, http.MethodGet, e.url("/readyz"), nil))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while stopping: %d %q", resp.StatusCode, body)
	}

	down := newRealEnv(t)
	down.real.proxy.Close()
	resp, body = down.do(newRequest(t, http.MethodGet, down.url("/readyz"), nil))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "control plane") {
		t.Fatalf("readyz without control plane: %d %q", resp.StatusCode, body)
	}
	// Without the control plane nothing can be admitted: 503, not a hang or a 500.
	resp, body = down.do(uploadRequest(t, down.url(uploadPath("stable", "c", "versions")), "raw", []byte("x")))
	wantRefusal(t, resp, body, http.StatusServiceUnavailable, shared.CodeDependencyUnavailable)
	down.assertNoFiles()

	e.uploadOK(uploadRequest(t, e.url(uploadPath("stable", "c", "versions")), "raw", []byte("12345")))
	_, body = e.do(newRequest(t, http.MethodGet, e.url("/metrics"), nil))
	text := string(body)
	for _, want := range []string{
		`br_disk_free_bytes{path="` + e.dirs[0] + `"}`,
		`br_disk_total_bytes{path="` + e.dirs[1] + `"}`,
		`br_uploads_in_flight 0`,
		`br_datanode_uploads_total{outcome="ok"} 1`,
		`br_http_requests_total{code="200",method="POST",route="/api/stable/repository/collection/{id}/versions"} 1`,
		`br_http_request_bytes_total{route="/api/stable/repository/collection/{id}/versions"} 5`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

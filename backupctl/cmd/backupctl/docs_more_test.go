package main

import (
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// docsPassword is the password of the accounts the docs tests make.
const docsPassword = "a long password 123"

// runDoc runs every runnable block of docs/NAME, in order, as one bash script with
// "set -euo pipefail" in a fresh working and home directory, with env added to PATH (the
// stack's binaries first) and HOME, and returns its combined output.
func runDoc(t *testing.T, s *stack, name string, minBlocks int, env ...string) string {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "jq", "openssl", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("docs/%s needs %s on PATH: %v", name, tool, err)
		}
	}
	blocks := runnableBlocks(t, filepath.Join(repoRoot(), "docs", name))
	if len(blocks) < minBlocks {
		t.Fatalf("docs/%s: found %d runnable blocks, want at least %d", name, len(blocks), minBlocks)
	}
	home, work := t.TempDir(), t.TempDir()
	cmd := exec.Command("bash", "-c", "set -euo pipefail\n"+strings.Join(blocks, "\n"))
	cmd.Dir = work
	cmd.Env = append([]string{
		"PATH=" + s.Bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + home,
		"BACKUP_URL=" + s.URL,
		"BACKUPCTL_BACKOFF=50ms",
	}, env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docs/%s failed after %s: %v\n%s", name, time.Since(start).Round(time.Millisecond), err, out)
	}
	return string(out)
}

// newStaff makes a hosting-organisation account with systemAdmin and returns its email.
func (s *stack) newStaff(t *testing.T) string {
	t.Helper()
	email := "ops-" + hex.EncodeToString(randomBytes(5)) + "@hosting.example.org"
	if err := s.gql(s.AdminToken, `mutation($in: CreateUserInput!) { createUser(input: $in) { id } }`,
		map[string]any{"in": map[string]any{"email": email, "password": docsPassword, "roles": []string{"systemAdmin"}}}, nil); err != nil {
		t.Fatalf("create staff account: %v", err)
	}
	return email
}

// TestDocsHostingOrg runs docs/hosting-org.md as a system administrator. It is not parallel:
// the page drains the only data node for a moment, which would make other tests' collection
// placements fail; sequential tests finish before the parallel ones start.
func TestDocsHostingOrg(t *testing.T) {
	s := getStack(t)
	email := s.newStaff(t)
	t.Cleanup(func() { // a failure between drain and undrain must not leave the node draining
		var out struct{ UndrainDataNode struct{ State string } }
		_ = s.gql(s.AdminToken, `mutation { undrainDataNode(name: "datanode-1") { state } }`, nil, &out)
	})
	out := runDoc(t, s, "hosting-org.md", 15, "ADMIN_EMAIL="+email, "ADMIN_PASSWORD="+docsPassword)
	for _, want := range []string{"TENANT_QUOTA_EXCEEDED", "COLLECTION_NOT_EMPTY", "NO_CAPACITY", `"state": "draining"`,
		"FIFO_PLUS_OLDER", "REJECT_WHEN_FULL", "storageDeclaredSpace"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var nodes struct {
		DataNodes []struct{ State string } `json:"dataNodes"`
	}
	if err := s.gql(s.AdminToken, `{ dataNodes { state } }`, nil, &nodes); err != nil || len(nodes.DataNodes) != 1 || nodes.DataNodes[0].State != "alive" {
		t.Errorf("the page left the data node as %+v (%v)", nodes, err)
	}
}

// TestDocsRESTAPI runs docs/rest-api.md as a nonprofit's account on an empty collection.
func TestDocsRESTAPI(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	var me struct {
		Me struct{ User struct{ Email string } }
	}
	if err := s.gql(f.Token, `{ me { user { email } } }`, nil, &me); err != nil {
		t.Fatal(err)
	}
	out := runDoc(t, s, "rest-api.md", 20, "BACKUP_EMAIL="+me.Me.User.Email, "BACKUP_PASSWORD="+docsPassword,
		"COLLECTION="+f.Collection, "HEALTH_CHECK_CODE="+s.HealthCode, "METRICS_CODE="+s.MetricsCode)
	for _, want := range []string{`filename="backup-4"`, "global_status=True", "backup_repository_report,"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestDocsGraphQL runs docs/graphql.md as a system administrator.
func TestDocsGraphQL(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	email := s.newStaff(t)
	out := runDoc(t, s, "graphql.md", 12, "ADMIN_EMAIL="+email, "ADMIN_PASSWORD="+docsPassword)
	for _, want := range []string{`"tokenExpiresAt"`, `"createCollection"`, `"CONFLICT"`, `"logout": true`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// specEndpoints are the paths of SPEC §4.1–§4.3, written as the SPEC writes them; the
// reference must name each one literally.
var specEndpoints = []string{
	"POST /api/{stable,alpha}/repository/collection/{id}/{naming}",
	"GET /api/{stable,alpha}/repository/collection/{id}/{naming}",
	"GET /api/{stable,alpha}/repository/collection/{id}/{naming}/{ref}",
	"DELETE /api/{stable,alpha}/repository/collection/{id}/{naming}/{ref}",
	"GET /api/stable/repository/collection/{id}/endpoint",
	"GET /api/stable/repository/collection/{id}/health",
	"POST /api/stable/auth/login",
	"GET /api/stable/auth/whoami",
	"DELETE /api/stable/auth/logout",
	"GET /health",
	"GET /metrics/backup_repository_report/influxdb",
	"GET /metrics",
	"GET /livez",
	"GET /readyz",
}

// specPaths returns the backquoted paths of SPEC §4.1–§4.3 ("/…", with an optional method
// before it and without a query string).
func specPaths(spec string) []string {
	start, end := strings.Index(spec, "### 4.1"), strings.Index(spec, "## 5.")
	if start < 0 || end < start {
		return nil
	}
	re := regexp.MustCompile("`(?:(?:GET|POST|DELETE) )?(/[^`\\s?]*)")
	var paths []string
	for _, m := range re.FindAllStringSubmatch(spec[start:end], -1) {
		paths = append(paths, m[1])
	}
	return paths
}

// TestDocsRESTAPINamesEveryEndpointAndCode checks that docs/rest-api.md documents every
// endpoint of SPEC §4.1–§4.3 (from the SPEC itself when it is next to the repository, as in
// the team's workspace, and always from specEndpoints) and every machine code declared in
// shared/errors.go with the status shared/envelope gives it.
func TestDocsRESTAPINamesEveryEndpointAndCode(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join(repoRoot(), "docs", "rest-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	headings := map[string]bool{}
	for l := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(l, "### ") {
			for _, m := range regexp.MustCompile("`(GET|POST|DELETE) ([^`?]+)").FindAllStringSubmatch(l, -1) {
				headings[m[1]+" "+strings.TrimSpace(m[2])] = true
			}
		}
	}
	for _, e := range specEndpoints {
		if !headings[e] {
			t.Errorf("docs/rest-api.md has no section heading for %s", e)
		}
	}
	if spec, err := os.ReadFile(filepath.Join(repoRoot(), "..", "shared", "SPEC.md")); err == nil {
		paths := specPaths(string(spec))
		if len(paths) < len(specEndpoints) {
			t.Fatalf("found only %d paths in SPEC §4.1–§4.3: %q", len(paths), paths)
		}
		for _, p := range paths {
			if !strings.Contains(text, p) {
				t.Errorf("SPEC path %s is not in docs/rest-api.md", p)
			}
		}
	}

	errs, err := os.ReadFile(filepath.Join(repoRoot(), "shared", "errors.go"))
	if err != nil {
		t.Fatal(err)
	}
	codes := regexp.MustCompile(`(?m)^\s*Code\w+\s+Code\s*=\s*"([A-Z_]+)"`).FindAllStringSubmatch(string(errs), -1)
	if len(codes) < 20 {
		t.Fatalf("found only %d codes in shared/errors.go", len(codes))
	}
	statusOf := codeStatuses(t)
	for _, c := range codes {
		row := regexp.MustCompile("(?m)^\\| `" + c[1] + "` \\| (\\d{3}) \\|").FindStringSubmatch(text)
		if row == nil {
			t.Errorf("machine code %s has no row in the table of docs/rest-api.md", c[1])
			continue
		}
		if want, ok := statusOf[c[1]]; !ok || row[1] != want {
			t.Errorf("docs/rest-api.md gives %s status %s; shared/envelope gives %q", c[1], row[1], want)
		}
	}
}

// codeStatuses reads the code → HTTP status mapping from shared/envelope/envelope.go, so that
// the table in the docs follows the product, not a copy of it.
func codeStatuses(t *testing.T) map[string]string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot(), "shared", "envelope", "envelope.go"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	errs, err := os.ReadFile(filepath.Join(repoRoot(), "shared", "errors.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*(Code\w+)\s+Code\s*=\s*"([A-Z_]+)"`).FindAllStringSubmatch(string(errs), -1) {
		names[m[1]] = m[2]
	}
	httpStatus := map[string]string{
		"StatusBadRequest": "400", "StatusUnauthorized": "401", "StatusForbidden": "403", "StatusNotFound": "404",
		"StatusConflict": "409", "StatusRequestEntityTooLarge": "413", "StatusUnsupportedMediaType": "415",
		"StatusUnprocessableEntity": "422", "StatusTooManyRequests": "429", "StatusInternalServerError": "500",
		"StatusServiceUnavailable": "503", "StatusInsufficientStorage": "507",
	}
	out := map[string]string{}
	cases := regexp.MustCompile(`(?s)case ([^:]+):\s*(?://[^\n]*\n\s*)*return http\.(\w+), true`).FindAllStringSubmatch(string(src), -1)
	for _, c := range cases {
		status, ok := httpStatus[c[2]]
		if !ok {
			t.Fatalf("envelope.go returns http.%s, unknown to this test", c[2])
		}
		for _, name := range regexp.MustCompile(`shared\.(Code\w+)`).FindAllStringSubmatch(c[1], -1) {
			out[names[name[1]]] = status
		}
	}
	if len(out) < len(names) {
		t.Fatalf("read statuses for %d of %d codes from envelope.go", len(out), len(names))
	}
	return out
}

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// keys makes a key pair in dir and returns the public and private key files.
func keys(t *testing.T, dir string) (string, string) {
	t.Helper()
	pub := filepath.Join(dir, "key.asc")
	r := runApp(t, nil, t.TempDir(), nil, "keygen", "--name", "test", "--email", "it@example.org", pub).ok(t)
	if !strings.Contains(r.stdout, "Fingerprint:") {
		t.Fatalf("keygen said %q", r.stdout)
	}
	return pub, filepath.Join(dir, "key.key.asc")
}

func TestKeygenWritesAKeyPair(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pub, priv := keys(t, dir)
	fi, err := os.Stat(priv)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	pb, _ := os.ReadFile(pub)
	sb, _ := os.ReadFile(priv)
	if !bytes.HasPrefix(pb, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) || !bytes.HasPrefix(sb, []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----")) {
		t.Fatalf("not armoured keys:\n%s\n%s", pb[:40], sb[:40])
	}
	// Never overwrite a key: losing the private key loses every backup.
	if r := runApp(t, nil, t.TempDir(), nil, "keygen", pub); r.code == 0 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("second keygen: exit %d, %s", r.code, r.stderr)
	}
	after, _ := os.ReadFile(priv)
	if !bytes.Equal(after, sb) {
		t.Fatal("private key changed")
	}
}

func writeTree(t *testing.T, root string) {
	t.Helper()
	files := map[string][]byte{
		"etc/app.conf":        []byte("listen = 0.0.0.0:80\n"),
		"etc/empty":           nil,
		"var/www/index.html":  []byte("<h1>food bank</h1>"),
		"var/data/random.bin": randomBytes(3 << 20),
		"deep/a/b/c/d/e.txt":  bytes.Repeat([]byte("e"), 10000),
	}
	for p, b := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// tree maps every file under root to its sha256.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		sum := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBackupAndRestoreADirectoryTree(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	dir := t.TempDir()
	pub, priv := keys(t, dir)
	src, out := filepath.Join(dir, "src"), filepath.Join(dir, "out")
	writeTree(t, src)
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	r := s.run(t, f.Token, nil, "backup", "--collection", f.Collection, "--recipient", pub, "--cmd", "tar -c -C "+src+" .", "--json").ok(t)
	var v struct {
		Number int64  `json:"number"`
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Number != 1 || len(v.SHA256) != 64 {
		t.Fatalf("backup --json = %q (%v)", r.stdout, err)
	}
	if !strings.Contains(r.stderr, "backup") || !strings.Contains(r.stderr, "done") {
		t.Fatalf("no progress report on stderr: %q", r.stderr)
	}
	s.run(t, f.Token, nil, "restore", "--collection", f.Collection, "--private-key", priv, "--cmd", "tar -x -C "+out).ok(t)
	want, got := tree(t, src), tree(t, out)
	if len(want) != 5 || len(got) != len(want) {
		t.Fatalf("restored %d files, want %d", len(got), len(want))
	}
	for p, sum := range want {
		if got[p] != sum {
			t.Errorf("%s differs after restore", p)
		}
	}
	// What the repository holds is ciphertext: the raw download is an OpenPGP message whose
	// sha256 is the version's, and it contains none of the plaintext.
	raw := filepath.Join(dir, "raw.gpg")
	s.run(t, f.Token, nil, "download", "--collection", f.Collection, "--version", "v1", "-o", raw).ok(t)
	b, _ := os.ReadFile(raw)
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != v.SHA256 || int64(len(b)) != v.Size {
		t.Fatal("downloaded bytes do not match the version's sha256 and size")
	}
	if b[0]&0x80 == 0 || bytes.Contains(b, []byte("food bank")) || bytes.Contains(b, []byte("listen = ")) {
		t.Fatal("stored data is not an OpenPGP message or holds plaintext")
	}
}

func TestBackupAFileAndStandardInput(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	dir := t.TempDir()
	pub, priv := keys(t, dir)
	plain := randomBytes(5<<20 + 17)
	in := filepath.Join(dir, "db.dump")
	if err := os.WriteFile(in, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	s.run(t, f.Token, nil, "backup", "--collection", f.Collection, "--recipient", pub, in).ok(t)
	stdinPlain := []byte("streamed from a pipe\n")
	r := s.run(t, f.Token, stdinPlain, "backup", "--collection", f.Collection, "--recipient", pub, "--armor", "-").ok(t)
	if !strings.Contains(r.stdout, "Stored version 2") {
		t.Fatalf("backup said %q", r.stdout)
	}

	out := filepath.Join(dir, "restored.dump")
	s.run(t, f.Token, nil, "restore", "--collection", f.Collection, "--version", "v1", "--private-key", priv, "-o", out).ok(t)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, plain) {
		t.Fatal("restored file differs")
	}
	if _, err := os.Stat(out + ".partial"); !os.IsNotExist(err) {
		t.Fatalf("partial file left: %v", err)
	}
	r = s.run(t, f.Token, nil, "restore", "--collection", f.Collection, "--private-key", priv, "-o", "-").ok(t)
	if r.stdout != string(stdinPlain) {
		t.Fatalf("restored stdin backup = %q", r.stdout)
	}
	raw := s.run(t, f.Token, nil, "download", "--collection", f.Collection, "-o", "-").ok(t)
	if !strings.HasPrefix(raw.stdout, "-----BEGIN PGP MESSAGE-----") {
		t.Fatalf("--armor did not store an armoured message: %.40q", raw.stdout)
	}
}

func TestUploadAndDownloadEncryptedFiles(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	dir := t.TempDir()
	blob := append([]byte{0xc1}, randomBytes(1<<20)...) // an already-encrypted file, as far as the server knows
	in := filepath.Join(dir, "site.tar.gz.gpg")
	if err := os.WriteFile(in, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	r := s.run(t, f.Token, nil, "upload", "--collection", f.Collection, in, "--json").ok(t)
	var v struct{ SHA256 string }
	_ = json.Unmarshal([]byte(r.stdout), &v)
	sum := sha256.Sum256(blob)
	if v.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("upload --json = %s", r.stdout)
	}
	s.run(t, f.Token, blob[:1000], "upload", "--collection", f.Collection, "-").ok(t)
	out := filepath.Join(dir, "back.gpg")
	s.run(t, f.Token, nil, "download", "--collection", f.Collection, "--version", "1", "-o", out).ok(t)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, blob) {
		t.Fatal("downloaded file differs")
	}
	r = s.run(t, f.Token, nil, "download", "--collection", f.Collection, "-o", "-").ok(t)
	if r.stdout != string(blob[:1000]) {
		t.Fatal("stdin upload came back different")
	}
}

func TestWrongPrivateKeyIsRefused(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	dir, other := t.TempDir(), t.TempDir()
	pub, _ := keys(t, dir)
	_, wrong := keys(t, other)
	s.run(t, f.Token, []byte("secret"), "backup", "--collection", f.Collection, "--recipient", pub, "-").ok(t)
	out := filepath.Join(dir, "out")
	r := s.run(t, f.Token, nil, "restore", "--collection", f.Collection, "--private-key", wrong, "-o", out)
	if r.code == 0 || !strings.Contains(r.stderr, "private key does not match") {
		t.Fatalf("restore with the wrong key: exit %d, %s", r.code, r.stderr)
	}
	assertNoOutput(t, out)
	// A public key is not a private key.
	if r := s.run(t, f.Token, nil, "restore", "--collection", f.Collection, "--private-key", pub, "-o", out); r.code == 0 || !strings.Contains(r.stderr, "no private key") {
		t.Fatalf("restore with the public key: exit %d, %s", r.code, r.stderr)
	}
	assertNoOutput(t, out)
}

func assertNoOutput(t *testing.T, out string) {
	t.Helper()
	for _, p := range []string{out, out + ".partial"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s exists after a failed restore (%v)", p, err)
		}
	}
}

// storeForTampering backs up 2 MiB of random data and returns the collection fixture, the key
// pair and the stored version's id.
func storeForTampering(t *testing.T, s *stack) (tenantFixture, string, string) {
	t.Helper()
	f := s.newTenant(t)
	dir := t.TempDir()
	pub, priv := keys(t, dir)
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, randomBytes(2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	r := s.run(t, f.Token, nil, "backup", "--collection", f.Collection, "--recipient", pub, in, "--json").ok(t)
	var v struct{ ID string }
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	return f, priv, v.ID
}

// A byte flipped on the data node's disk: the node refuses to serve the damaged copy, the
// user is told, nothing is written, and the hosting organisation sees it in GraphQL.
func TestDamagedStoredCopyIsRefused(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f, priv, id := storeForTampering(t, s)
	stored := filepath.Join(s.Disk, "collections", f.Collection, id)
	b, err := os.ReadFile(stored)
	if err != nil {
		t.Fatalf("stored version not where expected: %v", err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(stored, b, 0o640); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	r := s.run(t, f.Token, nil, "restore", "--collection", f.Collection, "--private-key", priv, "-o", out)
	if r.code == 0 || !strings.Contains(r.stderr, "VERSION_DAMAGED") {
		t.Fatalf("restore of a damaged copy: exit %d, %s", r.code, r.stderr)
	}
	assertNoOutput(t, out)
	r = s.run(t, f.Token, nil, "download", "--collection", f.Collection, "-o", out)
	if r.code == 0 || !strings.Contains(r.stderr, "VERSION_DAMAGED") {
		t.Fatalf("download of a damaged copy: exit %d, %s", r.code, r.stderr)
	}
	assertNoOutput(t, out)
	r = s.run(t, f.Token, nil, "restore", "--collection", f.Collection, "--private-key", priv, "--cmd", "cat > "+out)
	if r.code == 0 {
		t.Fatalf("restore of a damaged copy into a command succeeded: %s", r.stderr)
	}
	var got struct {
		Collection struct {
			Integrity struct {
				Problems []struct {
					VersionID string `json:"versionId"`
					Kind      string `json:"kind"`
					Detail    string `json:"detail"`
				} `json:"problems"`
			} `json:"integrity"`
		} `json:"collection"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.gql(s.AdminToken, `query($id: ID!) { collection(id: $id) { integrity { problems { versionId kind detail } } } }`,
			map[string]any{"id": f.Collection}, &got)
		if err != nil {
			t.Fatal(err)
		}
		p := got.Collection.Integrity.Problems
		if len(p) == 1 && p[0].VersionID == id && p[0].Kind == "unreadable" && strings.Contains(p[0].Detail, "fails its checksum") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GraphQL integrity problems = %+v", p)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A byte flipped on the way (here by a proxy, as a faulty network or middlebox could): the
// node sent good data, so only backupctl's own checks can catch it, and they do.
func TestDamageInTransitIsDetected(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f, priv, _ := storeForTampering(t, s)
	// Every answer body has its byte at 1 MiB flipped on the way.
	target, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		resp.Body = flipper{resp.Body, &flipAt{at: 1 << 20}}
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	base := srv.URL
	out := filepath.Join(t.TempDir(), "out")
	r := s.runAt(t, base, f.Token, nil, "restore", "--collection", f.Collection, "--private-key", priv, "-o", out)
	if r.code == 0 || !strings.Contains(r.stderr, "CHECKSUM_MISMATCH") {
		t.Fatalf("restore of data damaged in transit: exit %d, %s", r.code, r.stderr)
	}
	assertNoOutput(t, out)
	r = s.runAt(t, base, f.Token, nil, "download", "--collection", f.Collection, "-o", out)
	if r.code == 0 || !strings.Contains(r.stderr, "does not match its checksum") {
		t.Fatalf("download of data damaged in transit: exit %d, %s", r.code, r.stderr)
	}
	assertNoOutput(t, out)
	r = s.runAt(t, base, f.Token, nil, "restore", "--collection", f.Collection, "--private-key", priv, "--cmd", "cat > "+out)
	if r.code == 0 {
		t.Fatalf("restore of data damaged in transit into a command succeeded: %s", r.stderr)
	}
}

func TestFailingCommandStoresNothing(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	pub, _ := keys(t, t.TempDir())
	// Megabytes stream out before the command fails, so the upload is well under way.
	r := s.run(t, f.Token, nil, "backup", "--collection", f.Collection, "--recipient", pub, "--cmd", "head -c 4000000 /dev/urandom; exit 3")
	if r.code == 0 || !strings.Contains(r.stderr, "exit status 3") || !strings.Contains(r.stderr, "nothing was stored") {
		t.Fatalf("backup with a failing command: exit %d, %s", r.code, r.stderr)
	}
	r = s.run(t, f.Token, nil, "versions", "--collection", f.Collection, "--json").ok(t)
	var vs []any
	if err := json.Unmarshal([]byte(r.stdout), &vs); err != nil || len(vs) != 0 {
		t.Fatalf("versions after the failed backup = %s (%v)", r.stdout, err)
	}
	entries, _ := os.ReadDir(filepath.Join(s.Disk, "collections", f.Collection))
	for _, e := range entries {
		t.Errorf("left on the data node's disk: %s", e.Name())
	}
}

func TestServerRefusalIsShown(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	other := s.newTenant(t)
	pub, _ := keys(t, t.TempDir())
	// A collection of another tenant: the server refuses and its message reaches the user.
	r := s.run(t, f.Token, []byte("data"), "backup", "--collection", other.Collection, "--recipient", pub, "-")
	if r.code != 1 || !strings.Contains(r.stderr, "(NOT_FOUND)") || !strings.Contains(r.stderr, "collection") {
		t.Fatalf("upload to another tenant's collection: exit %d, %s", r.code, r.stderr)
	}
	// A token narrowed to downloads may not upload.
	var tok struct {
		IssueToken struct{ Token string } `json:"issueToken"`
	}
	if err := s.gql(s.AdminToken, `mutation($u: ID!, $c: ID!) { issueToken(userId: $u, ttl: "1h", scope: [{collection: $c, roles: [backupDownloader]}]) { token } }`,
		map[string]any{"u": f.UserID, "c": f.Collection}, &tok); err != nil {
		t.Fatal(err)
	}
	r = s.run(t, tok.IssueToken.Token, []byte("data"), "backup", "--collection", f.Collection, "--recipient", pub, "-")
	if r.code != 1 || !strings.Contains(r.stderr, "(FORBIDDEN)") {
		t.Fatalf("upload with a download-only token: exit %d, %s", r.code, r.stderr)
	}
	if r := s.run(t, "not-a-token", nil, "versions", "--collection", f.Collection); r.code != 1 || !strings.Contains(r.stderr, "UNAUTHENTICATED") {
		t.Fatalf("bad token: exit %d, %s", r.code, r.stderr)
	}
}

// cuttingProxy forwards TCP to target; the first connection is cut after limit bytes of
// answer, the way a flaky network drops a long download. It records what clients sent.
type cuttingProxy struct {
	ln    net.Listener
	limit int64
	conns atomic.Int32
	mu    sync.Mutex
	sent  bytes.Buffer
}

func newCuttingProxy(t *testing.T, target string, limit int64) *cuttingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, limit: limit}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := p.conns.Add(1)
			go p.serve(c, target, n == 1)
		}
	}()
	return p
}

func (p *cuttingProxy) serve(c net.Conn, target string, cut bool) {
	defer c.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				p.mu.Lock()
				p.sent.Write(buf[:n])
				p.mu.Unlock()
				if _, werr := up.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	var src io.Reader = up
	if cut {
		src = io.LimitReader(up, p.limit)
	}
	_, _ = io.Copy(c, src)
}

// flipper flips one bit of the byte at offset at of the body it reads.
type flipper struct {
	io.ReadCloser
	pos *flipAt
}

type flipAt struct{ at, of int64 }

func (f flipper) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if i := f.pos.at - f.pos.of; i >= 0 && i < int64(n) {
		p[i] ^= 0x01
	}
	f.pos.of += int64(n)
	return n, err
}

func (p *cuttingProxy) requests() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent.String()
}

func TestInterruptedDownloadResumesWithRange(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	dir := t.TempDir()
	pub, priv := keys(t, dir)
	plain := randomBytes(3 << 20)
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	s.run(t, f.Token, nil, "backup", "--collection", f.Collection, "--recipient", pub, in).ok(t)
	proxy := newCuttingProxy(t, strings.TrimPrefix(s.URL, "http://"), 1<<20)
	out := filepath.Join(dir, "out")
	r := s.runAt(t, "http://"+proxy.ln.Addr().String(), f.Token, nil,
		"restore", "--collection", f.Collection, "--private-key", priv, "-o", out, "--json").ok(t)
	var got struct{ Resumed int }
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.Resumed != 1 {
		t.Fatalf("restore --json = %s (%v); stderr %s", r.stdout, err, r.stderr)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, plain) {
		t.Fatal("resumed restore differs")
	}
	if reqs := proxy.requests(); !strings.Contains(reqs, "\r\nRange: bytes=") || !strings.Contains(reqs, "\r\nIf-Range: \"") {
		t.Fatalf("no Range/If-Range request was sent:\n%s", reqs)
	}
	if !strings.Contains(r.stderr, "retry 1") {
		t.Fatalf("the retry was not reported: %s", r.stderr)
	}
}

func TestJSONOutputsParse(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	pub, _ := keys(t, t.TempDir())
	s.run(t, f.Token, []byte("x"), "backup", "--collection", f.Collection, "--recipient", pub, "-").ok(t)
	for _, tc := range []struct {
		token string
		args  []string
		check func(v any) bool
	}{
		{f.Token, []string{"versions", "--collection", f.Collection}, func(v any) bool { return len(v.([]any)) == 1 }},
		{f.Token, []string{"collections"}, func(v any) bool {
			l := v.([]any)
			return len(l) == 1 && l[0].(map[string]any)["id"] == f.Collection
		}},
		{s.AdminToken, []string{"users", "--tenant", f.TenantID}, func(v any) bool { return len(v.([]any)) == 1 }},
		{f.Token, []string{"whoami"}, func(v any) bool { return v.(map[string]any)["user"].(map[string]any)["id"] == f.UserID }},
		{f.Token, []string{"token", "list"}, func(v any) bool { return len(v.([]any)) >= 1 }},
		{s.AdminToken, []string{"tenants"}, func(v any) bool { return len(v.([]any)) >= 1 }},
		{s.AdminToken, []string{"nodes"}, func(v any) bool {
			l := v.([]any)
			return len(l) == 1 && l[0].(map[string]any)["state"] == "alive"
		}},
		{s.AdminToken, []string{"collections", "--tenant", f.TenantID}, func(v any) bool { return len(v.([]any)) == 1 }},
	} {
		r := s.run(t, tc.token, nil, append(tc.args, "--json")...).ok(t)
		var v any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("%v --json: %v\n%s", tc.args, err, r.stdout)
		}
		if !tc.check(v) {
			t.Errorf("%v --json = %s", tc.args, r.stdout)
		}
	}
}

func TestTablesForPeople(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	r := s.run(t, s.AdminToken, nil, "nodes").ok(t)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[1], "datanode-1") ||
		!strings.Contains(lines[1], "alive") || !strings.Contains(lines[1], "%") || !strings.Contains(lines[1], "[") {
		t.Fatalf("nodes table:\n%s", r.stdout)
	}
	r = s.run(t, f.Token, nil, "collections").ok(t)
	if !strings.Contains(r.stdout, f.Collection) || !strings.Contains(r.stdout, "0/5") || !strings.Contains(r.stdout, "FIFO") {
		t.Fatalf("collections table:\n%s", r.stdout)
	}
	// Each listing: its header, then a line holding the row's id.
	for _, tc := range []struct {
		token  string
		args   []string
		header string
		row    string
	}{
		{s.AdminToken, []string{"tenants"}, "SLUG", f.TenantID},
		{s.AdminToken, []string{"users", "--tenant", f.TenantID}, "EMAIL", f.UserID},
		{f.Token, []string{"versions", "--collection", f.Collection}, "VERSION", ""},
	} {
		r := s.run(t, tc.token, nil, tc.args...).ok(t)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if !strings.HasPrefix(lines[0], tc.header) || (tc.row != "" && !slices.ContainsFunc(lines[1:], func(l string) bool {
			return strings.HasSuffix(l, tc.row)
		})) {
			t.Errorf("%v table:\n%s", tc.args, r.stdout)
		}
	}
}

func TestCollectionLifecycle(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	// collectionManager of the tenant, as a nonprofit's admin would be.
	r := s.run(t, f.Token, nil, "collection", "create", "--id", "cli-"+f.TenantID[:8], "--max-backups", "3",
		"--max-version-size", "10MiB", "--max-collection-size", "40MiB", "--window", "0 2 * * *|4h", "--json")
	if r.code != 0 {
		// Only tenant admins may create; use the system admin for the tenant then.
		r = s.run(t, s.AdminToken, nil, "collection", "create", "--tenant", f.TenantID, "--id", "cli-"+f.TenantID[:8], "--max-backups", "3",
			"--max-version-size", "10MiB", "--max-collection-size", "40MiB", "--window", "0 2 * * *|4h", "--json").ok(t)
	}
	var created struct {
		Collection struct {
			ID                string
			MaxCollectionSize int64
			Windows           []struct{ From, Duration string }
		}
		NodeName string
	}
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || created.NodeName != "datanode-1" ||
		created.Collection.MaxCollectionSize != 40<<20 || len(created.Collection.Windows) != 1 {
		t.Fatalf("collection create = %s (%v)", r.stdout, err)
	}
	id := created.Collection.ID
	r = s.run(t, s.AdminToken, nil, "collection", "update", id, "--max-backups", "4", "--no-windows", "--json").ok(t)
	var updated struct {
		MaxBackupsCount int
		Windows         []any
	}
	if err := json.Unmarshal([]byte(r.stdout), &updated); err != nil || updated.MaxBackupsCount != 4 || len(updated.Windows) != 0 {
		t.Fatalf("collection update = %s (%v)", r.stdout, err)
	}
	if r := s.run(t, s.AdminToken, nil, "collection", "create", "--max-backups", "3"); r.code != exitUsage {
		t.Fatalf("create without sizes: exit %d", r.code)
	}
	s.run(t, s.AdminToken, nil, "collection", "delete", id).ok(t)
	if r := s.run(t, s.AdminToken, nil, "versions", "--collection", id); r.code == 0 {
		t.Fatalf("deleted collection still answers: %s", r.stdout)
	}
}

func TestTokenIssueAndRevoke(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	pub, _ := keys(t, t.TempDir())
	r := s.run(t, f.Token, nil, "token", "issue", "--collection", f.Collection, "--role", "backupUploader", "--ttl", "720h", "--once", "--description", "cron").ok(t)
	once := strings.TrimSpace(r.stdout)
	if strings.Count(once, ".") != 2 || !strings.Contains(r.stderr, "shown only this once") {
		t.Fatalf("token issue: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	s.run(t, once, []byte("first"), "backup", "--collection", f.Collection, "--recipient", pub, "-").ok(t)
	if r := s.run(t, once, []byte("second"), "backup", "--collection", f.Collection, "--recipient", pub, "-"); r.code == 0 {
		t.Fatal("a --once token uploaded twice")
	}

	r = s.run(t, f.Token, nil, "token", "issue", "--ttl", "1h", "--json").ok(t)
	var issued struct {
		Token  string
		Record struct{ ID string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &issued); err != nil || issued.Record.ID == "" {
		t.Fatalf("token issue --json = %s", r.stdout)
	}
	s.run(t, issued.Token, nil, "whoami").ok(t)
	r = s.run(t, f.Token, nil, "token", "revoke", issued.Record.ID).ok(t)
	if !strings.Contains(r.stdout, "Revoked token "+issued.Record.ID) {
		t.Fatalf("token revoke said %q", r.stdout)
	}
	if r := s.run(t, issued.Token, nil, "whoami"); r.code == 0 {
		t.Fatal("a revoked token still works")
	}
	r = s.run(t, f.Token, nil, "token", "list").ok(t)
	if !strings.Contains(r.stdout, issued.Record.ID) {
		t.Fatalf("token list:\n%s", r.stdout)
	}
}

func TestLoginSavesTheToken(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	var me struct {
		Me struct{ User struct{ Email string } }
	}
	if err := s.gql(f.Token, `{ me { user { email } } }`, nil, &me); err != nil {
		t.Fatal(err)
	}
	cfg := t.TempDir()
	r := runApp(t, nil, cfg, []byte("a long password 123\n"), "login", "--url", s.URL, "--email", me.Me.User.Email).ok(t)
	if !strings.Contains(r.stdout, "Logged in") {
		t.Fatalf("login said %q", r.stdout)
	}
	fi, err := os.Stat(filepath.Join(cfg, "backupctl", "config.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", fi, err)
	}
	r = runApp(t, nil, cfg, nil, "whoami").ok(t)
	if !strings.Contains(r.stdout, me.Me.User.Email) {
		t.Fatalf("whoami after login: %s", r.stdout)
	}
	// BACKUPCTL_TOKEN overrides the saved token.
	if r := runApp(t, map[string]string{"BACKUPCTL_TOKEN": "bogus"}, cfg, nil, "whoami"); r.code == 0 {
		t.Fatal("BACKUPCTL_TOKEN did not override the saved token")
	}
	if r := runApp(t, nil, cfg, []byte("wrong password 1234\n"), "login", "--email", me.Me.User.Email); r.code != 1 || !strings.Contains(r.stderr, "INVALID_CREDENTIALS") {
		t.Fatalf("wrong password: exit %d, %s", r.code, r.stderr)
	}
}

func TestHelpShowsExamples(t *testing.T) {
	t.Parallel()
	for name := range commands() {
		r := runApp(t, nil, t.TempDir(), nil, name, "--help")
		if r.code != 0 || !strings.Contains(r.stderr, "Usage: backupctl "+name) || !strings.Contains(r.stderr, "Examples:\n  backupctl "+name) {
			t.Errorf("%s --help: exit %d\n%s", name, r.code, r.stderr)
		}
	}
	if r := runApp(t, nil, t.TempDir(), nil, "frobnicate"); r.code != exitUsage {
		t.Errorf("unknown command: exit %d", r.code)
	}
}

func TestBrokenConnectionRetriesOnlyReplayableInput(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	dir := t.TempDir()
	pub, priv := keys(t, dir)
	in := filepath.Join(dir, "in")
	plain := randomBytes(1 << 20)
	if err := os.WriteFile(in, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	target := strings.TrimPrefix(s.URL, "http://")
	// The first connection through each proxy is dropped before any answer.
	proxy := newCuttingProxy(t, target, 0)
	r := s.runAt(t, "http://"+proxy.ln.Addr().String(), f.Token, nil, "backup", "--collection", f.Collection, "--recipient", pub, in).ok(t)
	if !strings.Contains(r.stderr, "retry 1") || proxy.conns.Load() != 2 {
		t.Fatalf("a file backup was not retried once (%d connections): %s", proxy.conns.Load(), r.stderr)
	}
	proxy = newCuttingProxy(t, target, 0)
	r = s.runAt(t, "http://"+proxy.ln.Addr().String(), f.Token, []byte("cannot be replayed"), "backup", "--collection", f.Collection, "--recipient", pub, "-")
	if r.code != 1 || strings.Contains(r.stderr, "retry") || !strings.Contains(r.stderr, "NODE_UNAVAILABLE") {
		t.Fatalf("a stdin backup over a broken connection: exit %d, %s", r.code, r.stderr)
	}
	r = s.run(t, f.Token, nil, "versions", "--collection", f.Collection, "--json").ok(t)
	var vs []any
	if err := json.Unmarshal([]byte(r.stdout), &vs); err != nil || len(vs) != 1 {
		t.Fatalf("versions = %s", r.stdout)
	}
	out := filepath.Join(dir, "out")
	s.run(t, f.Token, nil, "restore", "--collection", f.Collection, "--private-key", priv, "-o", out).ok(t)
	if b, _ := os.ReadFile(out); !bytes.Equal(b, plain) {
		t.Fatal("the retried backup does not restore")
	}
}

package deploy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"backuprepo/e2e/stack"
	"backuprepo/shared/localserver"
)

const (
	routerHost   = "backup.example.org"
	datanodeHost = "datanode-1.backup.example.org"
	// maxNginxRSS is the most a worker may hold while a body streams through it.
	maxNginxRSS = 64 << 20
)

// seedSettings are the router settings deploying.rst makes binding, each server block that
// proxies must carry them.
var seedSettings = []string{
	"proxy_read_timeout 3600s;",
	"proxy_send_timeout 3600s;",
	"proxy_buffering off;",
	"proxy_request_buffering off;",
	"client_max_body_size 30G;",
}

// nginxSite is one copy of deploy/nginx in a temporary prefix, with its listen addresses,
// upstreams, certificates, logs, pid and temporary directories moved into it.
type nginxSite struct {
	bin       string
	dir       string
	conf      string
	httpPort  int
	tlsPort   int
	roots     *x509.CertPool
	bodyTemp  string // client_body_temp_path: must stay empty while bodies stream
	proxyTemp string
}

type siteOptions struct {
	router, datanodes bool
	controlPlane      string // host:port of the control plane upstream
	dataNode          string // host:port of datanode-1's upstream
	// edit changes a file's text after the substitutions (name is "router.conf", ...).
	edit func(name, text string) string
}

// replace replaces old by new in text, failing the test when old is absent: the substitutions
// track deploy/nginx, and a change there must not silently test something else.
func replace(t testing.TB, name, text, old, new string) string {
	t.Helper()
	if !strings.Contains(text, old) {
		t.Fatalf("deploy/nginx/%s no longer contains %q", name, old)
	}
	return strings.ReplaceAll(text, old, new)
}

func newNginxSite(t testing.TB, bin string, o siteOptions) *nginxSite {
	t.Helper()
	dir, err := os.MkdirTemp("", "br-nginx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// nginx's workers run as www-data when the master is root: they must reach the prefix.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &nginxSite{bin: bin, dir: dir, conf: filepath.Join(dir, "nginx.conf"),
		httpPort: freePort(t), tlsPort: freePort(t),
		bodyTemp: filepath.Join(dir, "client_body_temp"), proxyTemp: filepath.Join(dir, "proxy_temp")}
	s.roots = writeCertificates(t, filepath.Join(dir, "tls"))

	if o.controlPlane == "" {
		o.controlPlane = "127.0.0.1:9"
	}
	if o.dataNode == "" {
		o.dataNode = "127.0.0.1:9"
	}
	edit := o.edit
	if edit == nil {
		edit = func(_, text string) string { return text }
	}
	listen := func(name, text string) string {
		text = strings.ReplaceAll(text, "listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", s.httpPort)) // router.conf only
		text = replace(t, name, text, "listen 443 ssl;", fmt.Sprintf("listen 127.0.0.1:%d ssl;", s.tlsPort))
		text = strings.ReplaceAll(text, "listen [::]:80;", "")
		text = replace(t, name, text, "listen [::]:443 ssl;", "")
		return replace(t, name, text, "/etc/nginx/backup-repository/tls/", filepath.Join(dir, "tls")+"/")
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(edit(name, text)), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	router := listen("router.conf", deployFile(t, "nginx/router.conf"))
	router = replace(t, "router.conf", router, "server 127.0.0.1:8080 max_fails=0;", "server "+o.controlPlane+" max_fails=0;")
	write("router.conf", router)

	nodes := listen("datanodes.conf", deployFile(t, "nginx/datanodes.conf"))
	nodes = replace(t, "datanodes.conf", nodes, "10.0.0.11:8081", o.dataNode)
	// The example's other nodes do not exist here; nothing may leave this machine.
	nodes = replace(t, "datanodes.conf", nodes, "10.0.0.12:8081", "127.0.0.1:9")
	nodes = replace(t, "datanodes.conf", nodes, "10.0.0.13:8081", "127.0.0.1:9")
	write("datanodes.conf", nodes)

	main := deployFile(t, "nginx/nginx.conf")
	userLine := ""
	if os.Geteuid() == 0 {
		userLine = "user www-data;"
		if _, err := user.Lookup("www-data"); err != nil {
			userLine = "user nobody;"
		}
	}
	main = replace(t, "nginx.conf", main, "user www-data;", userLine)
	main = replace(t, "nginx.conf", main, "pid /run/nginx-backup-repository.pid;", "pid "+filepath.Join(dir, "nginx.pid")+";")
	main = replace(t, "nginx.conf", main, "/var/log/nginx/backup-repository-", dir+"/")
	main = replace(t, "nginx.conf", main, "client_body_temp_path /var/lib/nginx/body;", "client_body_temp_path "+s.bodyTemp+";")
	var temps string
	for _, k := range []string{"fastcgi", "uwsgi", "scgi"} {
		temps += fmt.Sprintf("\n    %s_temp_path %s;", k, filepath.Join(dir, k+"_temp"))
	}
	main = replace(t, "nginx.conf", main, "proxy_temp_path /var/lib/nginx/proxy;", "proxy_temp_path "+s.proxyTemp+";"+temps)
	for name, on := range map[string]bool{"router.conf": o.router, "datanodes.conf": o.datanodes} {
		line := "include /etc/nginx/backup-repository/" + name + ";"
		if on {
			main = replace(t, "nginx.conf", main, line, "include "+filepath.Join(dir, name)+";")
		} else {
			main = replace(t, "nginx.conf", main, line, "")
		}
	}
	write("nginx.conf", main)
	return s
}

// check runs nginx -t; it returns nginx's output and whether the configuration passed.
func (s *nginxSite) check() (string, bool) {
	out, err := exec.Command(s.bin, "-t", "-p", s.dir+"/", "-c", s.conf).CombinedOutput()
	return string(out), err == nil
}

// start runs nginx in the foreground until the test ends and returns the master's pid.
func (s *nginxSite) start(t testing.TB) int {
	t.Helper()
	if out, ok := s.check(); !ok {
		t.Fatalf("nginx -t:\n%s", out)
	}
	cmd := exec.Command(s.bin, "-p", s.dir+"/", "-c", s.conf, "-g", "daemon off;")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // graceful: workers finish, then exit
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", stderr.String(), log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.tlsPort), time.Second)
		if err == nil {
			c.Close()
			return cmd.Process.Pid
		}
		select {
		case err := <-done:
			t.Fatalf("nginx exited: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %d: %v", s.tlsPort, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client talks to the site as the world would: https://<host>/ reaches the TLS port and
// http://<host>/ the plain one, whatever the host name; redirects are returned, not followed.
func (s *nginxSite) client() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				port := s.httpPort
				if strings.HasSuffix(addr, ":443") {
					port = s.tlsPort
				}
				return dialer.DialContext(ctx, network, "127.0.0.1:"+strconv.Itoa(port))
			},
			TLSClientConfig:    &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12},
			DisableCompression: true,
			// Large writes: the upload's speed should be nginx's, not the client's.
			WriteBufferSize: 256 << 10,
			ReadBufferSize:  64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// writeCertificates makes a self-signed certificate for the router and data node host names
// under every file name the configs use, and returns a pool that trusts it.
func writeCertificates(t testing.TB, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: routerHost},
		DNSNames:     []string{routerHost, "*." + routerHost},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"fullchain.pem": certPEM, "privkey.pem": keyPEM,
		"datanodes-fullchain.pem": certPEM, "datanodes-privkey.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return pool
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := localserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// serverBlocks splits an nginx file into its top-level server { } blocks.
func serverBlocks(text string) []string {
	var blocks []string
	start, depth := -1, 0
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '#':
			for i < len(text) && text[i] != '\n' {
				i++
			}
		case '{':
			if depth == 0 && strings.HasSuffix(strings.TrimSpace(text[:i]), "server") {
				start = i
			}
			depth++
		case '}':
			depth--
			if depth == 0 && start >= 0 {
				blocks = append(blocks, text[start:i+1])
				start = -1
			}
		}
	}
	return blocks
}

func TestNginxConfigs(t *testing.T) {
	t.Parallel()
	bin := ensureCommand(t, "nginx", "nginx")

	// The seed's settings, the streaming plumbing and the internal API block are in every
	// server block that proxies.
	for _, name := range []string{"router.conf", "datanodes.conf"} {
		text := deployFile(t, "nginx/"+name)
		proxying := 0
		for _, b := range serverBlocks(text) {
			if !strings.Contains(b, "proxy_pass") {
				continue
			}
			proxying++
			for _, d := range append(seedSettings, "proxy_http_version 1.1;", `proxy_set_header Connection "";`,
				"proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;") {
				if !regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(d) + `\s*$`).MatchString(b) {
					t.Errorf("%s: a proxying server block lacks %q", name, d)
				}
			}
		}
		if proxying == 0 {
			t.Errorf("%s: no server block proxies anything", name)
		}
	}
	if !regexp.MustCompile(`location \^~ /internal/ \{\s*return 404;\s*\}`).MatchString(deployFile(t, "nginx/router.conf")) {
		t.Error("router.conf does not answer 404 for /internal/")
	}

	for _, c := range []struct {
		name              string
		router, datanodes bool
	}{{"router.conf", true, false}, {"datanodes.conf", false, true}, {"nginx.conf with both", true, true}} {
		s := newNginxSite(t, bin, siteOptions{router: c.router, datanodes: c.datanodes})
		out, ok := s.check()
		if !ok || !strings.Contains(out, "test is successful") {
			t.Errorf("nginx -t on %s:\n%s", c.name, out)
		}
		if strings.Contains(out, "[warn]") {
			t.Errorf("nginx -t on %s warns:\n%s", c.name, out)
		}
	}
	// nginx -t is a real check: a misspelt directive fails it.
	bad := newNginxSite(t, bin, siteOptions{router: true, edit: func(name, text string) string {
		return strings.Replace(text, "proxy_request_buffering off;", "proxy_request_bufering off;", 1)
	}})
	if out, ok := bad.check(); ok {
		t.Errorf("nginx -t accepted a misspelt directive:\n%s", out)
	}
}

// nginxWatch samples nginx while a transfer runs: files in its temporary directories or held
// open there by a worker (a spooled body), and the resident memory of its worker processes.
type nginxWatch struct {
	spooled []string
	maxRSS  int64 // bytes, of the largest worker
	samples int
}

func watchNginx(master int, dirs []string) (stop func() nginxWatch) {
	var (
		mu   sync.Mutex
		w    nginxWatch
		seen = map[string]bool{}
		quit = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var workers []int
		for i := 0; ; i++ {
			if i%50 == 0 { // scanning /proc is dear; workers rarely change
				workers = childrenOf(master)
			}
			mu.Lock()
			for _, d := range dirs {
				_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
					if err == nil && !e.IsDir() && !seen[p] {
						seen[p] = true
						w.spooled = append(w.spooled, p)
					}
					return nil
				})
			}
			for _, pid := range workers {
				w.maxRSS = max(w.maxRSS, vmRSS(pid))
				// nginx unlinks a body's temporary file right after creating it, so the
				// directory always looks empty: the worker's open files tell the truth.
				for _, f := range openFiles(pid) {
					for _, d := range dirs {
						if strings.HasPrefix(f, d+"/") && !seen[f] {
							seen[f] = true
							w.spooled = append(w.spooled, f)
						}
					}
				}
			}
			w.samples++
			mu.Unlock()
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	return func() nginxWatch {
		close(quit)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return w
	}
}

// childrenOf lists the processes whose parent is pid (nginx's workers).
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut after the last ')'.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// openFiles lists the paths a process has open.
func openFiles(pid int) []string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(target, "/") {
			out = append(out, target)
		}
	}
	return out
}

// vmRSS is a process's resident set size in bytes, 0 when it cannot be read.
func vmRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// patternStream yields pseudo-random bytes without holding more than one block: a random
// block whose first 8 bytes are overwritten with a counter at every pass.
type patternStream struct {
	block []byte
	off   int
	pass  uint64
}

func newPatternStream(seed uint64) *patternStream {
	b := make([]byte, 1<<20)
	r := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	_, _ = r.Read(b)
	return &patternStream{block: b}
}

func (p *patternStream) Read(buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		if p.off == len(p.block) {
			p.off = 0
			p.pass++
			for i := range 8 {
				p.block[i] = byte(p.pass >> (8 * i))
			}
		}
		c := copy(buf[n:], p.block[p.off:])
		p.off += c
		n += c
	}
	return n, nil
}

// hashingBody is an upload body of size generated bytes that hashes what it hands out.
type hashingBody struct {
	r    io.Reader
	h    hashState
	done chan struct{}
	once sync.Once
}

type hashState interface {
	io.Writer
	Sum([]byte) []byte
}

func newHashingBody(size int64, seed uint64) *hashingBody {
	h := sha256.New()
	return &hashingBody{r: io.TeeReader(io.LimitReader(newPatternStream(seed), size), h), h: h, done: make(chan struct{})}
}

func (b *hashingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.once.Do(func() { close(b.done) })
	}
	return n, err
}

// sum waits until the whole body was read and returns its sha256.
func (b *hashingBody) sum(ctx context.Context) (string, error) {
	select {
	case <-b.done:
		return hex.EncodeToString(b.h.Sum(nil)), nil
	case <-ctx.Done():
		return "", fmt.Errorf("the body was never read to its end: %w", ctx.Err())
	}
}

type uploadAnswer struct {
	status  int
	raw     []byte
	version stack.Version
	sent    string // sha256 of what was sent
}

// upload streams size generated bytes to the collection at base; chunked sends no
// Content-Length, as Backup Maker does.
func upload(ctx context.Context, c *http.Client, base, token, collection string, size int64, seed uint64, chunked bool) (uploadAnswer, error) {
	body := newHashingBody(size, seed)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/stable/repository/collection/"+collection+"/versions", body)
	if err != nil {
		return uploadAnswer{}, err
	}
	req.ContentLength = size
	if chunked {
		req.ContentLength = -1
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return uploadAnswer{}, err
	}
	defer resp.Body.Close()
	a := uploadAnswer{status: resp.StatusCode}
	if a.raw, err = io.ReadAll(resp.Body); err != nil {
		return a, err
	}
	if a.status == http.StatusOK {
		if a.sent, err = body.sum(ctx); err != nil {
			return a, err
		}
		var env struct {
			Data struct{ Version stack.Version }
		}
		if err := json.Unmarshal(a.raw, &env); err != nil {
			return a, fmt.Errorf("upload answer is not JSON: %q", a.raw)
		}
		a.version = env.Data.Version
	}
	return a, nil
}

// bigUploadBytes is the size of the upload pushed through the router: 2 GiB unless
// E2E_BIG_UPLOAD_BYTES says otherwise (for slow machines).
func bigUploadBytes(t *testing.T) int64 {
	t.Helper()
	v := os.Getenv("E2E_BIG_UPLOAD_BYTES")
	if v == "" {
		return 2 << 30
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1<<20 {
		t.Fatalf("E2E_BIG_UPLOAD_BYTES=%q: want a byte count of at least 1 MiB", v)
	}
	return n
}

// TestNginxInFrontOfTheCluster runs deploy/nginx for real in front of a control plane and a
// data node and pushes a large upload through it.
func TestNginxInFrontOfTheCluster(t *testing.T) {
	bin := ensureCommand(t, "nginx", "nginx")
	st := stack.Start(t, stack.Options{Binaries: bins, DataNodes: 1,
		ControlPlaneEnv: []string{"BR_TRUSTED_PROXIES=127.0.0.1/32"}})
	node := st.Nodes[0]
	cpAddr := strings.TrimPrefix(st.URL, "http://")
	site := newNginxSite(t, bin, siteOptions{router: true, datanodes: true,
		controlPlane: cpAddr, dataNode: strings.TrimPrefix(node.URL, "http://")})
	master := site.start(t)
	client := site.client()
	router, direct := "https://"+routerHost, "https://"+datanodeHost

	bigSize := bigUploadBytes(t)
	maxOne := bigSize + 64<<20
	tenant := st.CreateTenant(t, map[string]any{"quota": 4 * maxOne})
	collection, _ := st.CreateCollection(t, map[string]any{"tenantId": tenant, "id": "nginx-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		"maxBackupsCount": 3, "maxOneVersionSize": maxOne, "maxCollectionSize": 3 * maxOne, "strategy": "FIFO"})
	_, tok := st.Uploader(t, tenant, "backupUploader", "backupDownloader")

	get := func(t *testing.T, rawURL string) (*http.Response, []byte) {
		t.Helper()
		resp, err := client.Get(rawURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	t.Run("plain HTTP redirects to HTTPS", func(t *testing.T) {
		resp, _ := get(t, "http://"+routerHost+"/livez")
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != router+"/livez" {
			t.Fatalf("got %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("router reaches the control plane", func(t *testing.T) {
		for _, p := range []string{"/livez", "/readyz", "/health?code=" + st.HealthCheckCode, "/metrics"} {
			if resp, b := get(t, router+p); resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s through the router: %d %s", p, resp.StatusCode, b)
			}
		}
	})

	t.Run("internal API is hidden", func(t *testing.T) {
		// Straight to the control plane the internal API exists (it refuses the unsigned call)...
		resp, err := http.Post(st.URL+"/internal/v1/uploads/admit", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			t.Fatal("the control plane itself answers 404 on the internal API; this test would prove nothing")
		}
		// ...through the router it does not, however the path is spelt.
		for _, raw := range []string{"/internal/v1/uploads/admit", "/internal", "/internal/", "/%69nternal/v1/uploads/commit",
			"/api/../internal/v1/uploads/admit", "//internal/v1/versions/resolve", "/internal/v1/../v1/uploads/abort"} {
			u, err := url.Parse(router + raw)
			if err != nil {
				t.Fatal(err)
			}
			if u.RequestURI() != raw {
				t.Fatalf("the client would send %q instead of %q", u.RequestURI(), raw)
			}
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				req, _ := http.NewRequest(method, u.String(), strings.NewReader("{}"))
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound || !bytes.Contains(b, []byte("nginx")) {
					t.Errorf("%s %s through the router: %d %q, want nginx's own 404", method, raw, resp.StatusCode, b)
				}
			}
		}
	})

	var small stack.Version
	t.Run("data node host name", func(t *testing.T) {
		if resp, b := get(t, direct+"/livez"); resp.StatusCode != http.StatusOK || string(b) != "ok\n" {
			t.Fatalf("GET /livez on %s: %d %q", datanodeHost, resp.StatusCode, b)
		}
		if resp, _ := get(t, "https://datanode-9.backup.example.org/livez"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("an unknown data node host name answered %d, want 404", resp.StatusCode)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a, err := upload(ctx, client, direct, tok.Token, collection, 8<<20, 1, true)
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusOK || a.version.Size != 8<<20 || a.version.SHA256 != a.sent {
			t.Fatalf("direct upload through nginx: %d %s (sent sha256 %s)", a.status, a.raw, a.sent)
		}
		small = a.version
		// Read it back through the router (front door -> data node).
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, router+"/api/stable/repository/collection/"+collection+"/versions/"+small.ID, nil)
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || n != small.Size || hex.EncodeToString(h.Sum(nil)) != small.SHA256 {
			t.Fatalf("download through the router: %d, %d bytes, err %v", resp.StatusCode, n, err)
		}
	})

	t.Run(fmt.Sprintf("%d MiB upload streams through the router", bigSize>>20), func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		stop := watchNginx(master, []string{site.bodyTemp, site.proxyTemp})
		start := time.Now()
		a, err := upload(ctx, client, router, tok.Token, collection, bigSize, 2, true)
		took := time.Since(start)
		w := stop()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d MiB in %s (%.0f MiB/s); largest nginx worker RSS %.1f MiB over %d samples",
			bigSize>>20, took.Round(time.Millisecond), float64(bigSize>>20)/took.Seconds(), float64(w.maxRSS)/(1<<20), w.samples)
		if a.status != http.StatusOK || a.version.Size != bigSize || a.version.SHA256 != a.sent {
			t.Fatalf("upload through the router: %d %s (sent %d bytes, sha256 %s)", a.status, a.raw, bigSize, a.sent)
		}
		if len(w.spooled) > 0 {
			t.Errorf("nginx spooled the body to disk: %v", w.spooled)
		}
		if w.samples < 5 || w.maxRSS == 0 {
			t.Errorf("the watch took %d samples, max RSS %d: it did not see nginx's workers", w.samples, w.maxRSS)
		}
		if w.maxRSS > maxNginxRSS {
			t.Errorf("an nginx worker grew to %.1f MiB, want under %d MiB", float64(w.maxRSS)/(1<<20), maxNginxRSS>>20)
		}
		// The node hashed the bytes as it wrote them (a.version.SHA256 above); here only check
		// that they are all on its disk.
		if fi, err := os.Stat(filepath.Join(node.Disks[0], "collections", collection, a.version.ID)); err != nil || fi.Size() != bigSize {
			t.Errorf("the stored file: %v, want %d bytes", err, bigSize)
		}
	})

	// The watch above can fail: with request buffering switched on, nginx writes the body to
	// client_body_temp_path before passing it on, and the same watch sees the file.
	t.Run("the watch sees a spooled body", func(t *testing.T) {
		buffered := newNginxSite(t, bin, siteOptions{router: true, controlPlane: cpAddr,
			edit: func(name, text string) string {
				if name != "router.conf" {
					return text
				}
				return replace(t, name, text, "proxy_request_buffering off;", "proxy_request_buffering on;")
			}})
		m := buffered.start(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		stop := watchNginx(m, []string{buffered.bodyTemp})
		a, err := upload(ctx, buffered.client(), router, tok.Token, collection, 256<<20, 3, false)
		w := stop()
		if err != nil || a.status != http.StatusOK {
			t.Fatalf("upload through the buffering router: %v %d %s", err, a.status, a.raw)
		}
		if len(w.spooled) == 0 {
			t.Fatal("the watch saw no spooled body although nginx buffered the request")
		}
	})
}

package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"backuprepo/shared"
	"backuprepo/shared/internalapi"
	"backuprepo/shared/token"

	"github.com/google/uuid"
)

// bodyKind builds an upload request body of one of the shapes clients send.
func uploadRequest(t *testing.T, url, kind string, data []byte) *http.Request {
	t.Helper()
	switch kind {
	case "raw":
		return newRequest(t, http.MethodPost, url, bytes.NewReader(data))
	case "chunked":
		// An opaque reader makes net/http send Transfer-Encoding: chunked and no
		// Content-Type, like Backup Maker.
		req := newRequest(t, http.MethodPost, url, io.MultiReader(bytes.NewReader(data)))
		req.ContentLength = -1
		return req
	case "multipart", "multipart-chunked":
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		_ = mw.WriteField("comment", "nightly")
		fw, err := mw.CreateFormFile("file", "db.sql.gpg")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(data)
		_ = mw.WriteField("after", "ignored")
		_ = mw.Close()
		var body io.Reader = bytes.NewReader(buf.Bytes())
		if kind == "multipart-chunked" {
			body = io.MultiReader(body)
		}
		req := newRequest(t, http.MethodPost, url, body)
		if kind == "multipart-chunked" {
			req.ContentLength = -1
		}
		req.Header.Set("Content-Type", mw.FormDataContentType())
		return req
	}
	t.Fatalf("unknown body kind %q", kind)
	return nil
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("col-1", testNode, func(c *shared.Collection) { c.MaxOneVersionSize, c.MaxBackupsCount = 8<<20, 100 })
	cases := []struct{ prefix, naming, kind string }{
		{"stable", "versions", "raw"},
		{"alpha", "backup", "chunked"},
		{"stable", "backups", "multipart"},
		{"alpha", "version", "multipart-chunked"},
	}
	for i, c := range cases {
		data := randomBytes(t, 1<<20+777*i)
		base := uploadPath(c.prefix, "col-1", c.naming)
		resp, body := e.do(uploadRequest(t, e.url(base), c.kind, data))
		v := wantVersion(t, resp, body)
		if v.Size != int64(len(data)) || v.SHA256 != sha(data) || v.CollectionID != "col-1" || v.Number != int64(i+1) {
			t.Fatalf("%s %s: version = %+v", c.prefix, c.kind, v)
		}
		for _, ref := range []string{v.ID, fmt.Sprintf("v%d", v.Number), fmt.Sprint(v.Number), "latest"} {
			resp, got := e.do(newRequest(t, http.MethodGet, e.url(base+"/"+ref), nil))
			if resp.StatusCode != http.StatusOK || sha(got) != v.SHA256 {
				t.Fatalf("download %s: %d, sha %s, want %s", ref, resp.StatusCode, sha(got), v.SHA256)
			}
			h := resp.Header
			if h.Get("Content-Length") != fmt.Sprint(len(data)) ||
				h.Get("Content-Type") != "application/octet-stream" ||
				h.Get("Content-Disposition") != fmt.Sprintf(`attachment; filename="backup-%d"`, v.Number) ||
				h.Get("ETag") != `"`+v.SHA256+`"` {
				t.Fatalf("download headers = %v", h)
			}
		}
	}
	resp, body := e.do(newRequest(t, http.MethodGet, e.url(uploadPath("alpha", "col-1", "versions")), nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	var list struct {
		Versions []versionJSON `json:"versions"`
	}
	if err := json.Unmarshal(decodeEnvelope(t, body).Data, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Versions) != len(cases) || list.Versions[0].Number != int64(len(cases)) {
		t.Fatalf("list = %+v", list.Versions)
	}
	if f := e.files(); len(f) != len(cases) {
		t.Fatalf("files on disk = %v, want %d", f, len(cases))
	}
}

func TestDownloadRangeConditionalHead(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode)
	data := randomBytes(t, 5000)
	base := uploadPath("stable", "c", "versions")
	v := e.uploadOK(uploadRequest(t, e.url(base), "raw", data))

	req := newRequest(t, http.MethodGet, e.url(base+"/latest"), nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, got := e.do(req)
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, data[100:200]) ||
		resp.Header.Get("Content-Range") != "bytes 100-199/5000" {
		t.Fatalf("range: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), len(got))
	}

	req = newRequest(t, http.MethodGet, e.url(base+"/"+v.ID), nil)
	req.Header.Set("If-None-Match", `"`+v.SHA256+`"`)
	resp, got = e.do(req)
	if resp.StatusCode != http.StatusNotModified || len(got) != 0 {
		t.Fatalf("If-None-Match: %d, %d bytes", resp.StatusCode, len(got))
	}
	req = newRequest(t, http.MethodGet, e.url(base+"/"+v.ID), nil)
	req.Header.Set("If-None-Match", `"something-else"`)
	if resp, got = e.do(req); resp.StatusCode != http.StatusOK || len(got) != len(data) {
		t.Fatalf("other ETag: %d, %d bytes", resp.StatusCode, len(got))
	}

	resp, got = e.do(newRequest(t, http.MethodHead, e.url(base+"/first"), nil))
	if resp.StatusCode != http.StatusOK || len(got) != 0 || resp.ContentLength != int64(len(data)) {
		t.Fatalf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
	}

	resp, got = e.do(newRequest(t, http.MethodGet, e.url(base+"/v9"), nil))
	wantRefusal(t, resp, got, http.StatusNotFound, shared.CodeNotFound)
	resp, got = e.do(newRequest(t, http.MethodGet, e.url(base+"/nonsense"), nil))
	wantRefusal(t, resp, got, http.StatusBadRequest, shared.CodeInvalidInput)
}

func TestBadTokensRefusedWithoutCallingControlPlane(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode)
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// sign makes a token of the test user as the control plane would, with key.
	sign := func(key ed25519.PrivateKey, ttl time.Duration) string {
		now := time.Now()
		tok, err := token.Sign(key, token.KeyID(key.Public().(ed25519.PublicKey)), token.Claims{
			Subject: e.real.user, TenantID: e.real.tenant, ID: uuid.NewString(),
			IssuedAt: now.Add(-time.Hour).Unix(), Expiry: now.Add(ttl).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	base := uploadPath("stable", "c", "versions")
	tokens := []struct {
		name, header string
		code         shared.Code
	}{
		{"missing", "", shared.CodeUnauthenticated},
		{"not bearer", "Basic dXNlcjpwYXNz", shared.CodeUnauthenticated},
		{"garbage", "Bearer not.a.token", shared.CodeUnauthenticated},
		{"other key", "Bearer " + sign(otherKey, time.Hour), shared.CodeUnauthenticated},
		{"expired", "Bearer " + sign(e.real.signingKey(), -time.Minute), shared.CodeTokenExpired},
	}
	routes := []struct{ method, path string }{
		{http.MethodPost, base}, {http.MethodGet, base}, {http.MethodGet, base + "/latest"}, {http.MethodDelete, base + "/latest"},
	}
	for _, tk := range tokens {
		for _, rt := range routes {
			req := newRequest(t, rt.method, e.url(rt.path), strings.NewReader("payload"))
			if tk.header != "" {
				req.Header.Set("Authorization", tk.header)
			}
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantRefusal(t, resp, body, http.StatusUnauthorized, tk.code)
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: no WWW-Authenticate", tk.name, rt.method)
			}
		}
	}
	if n := e.real.callCount(""); n != 0 {
		t.Fatalf("the control plane saw %d calls for bad tokens", n)
	}
	e.assertNoFiles()
	// The same route with the control plane's own valid token does reach it: the count above
	// is zero because of the tokens, not because nothing is counted.
	e.uploadOK(uploadRequest(t, e.url(base), "raw", []byte("payload")))
	if n := e.real.callCount(internalapi.PathAdmit); n != 1 {
		t.Fatalf("admission calls = %d, want 1", n)
	}
}

// uploadResult is what an upload sent in the background got.
type uploadResult struct {
	status int
	body   []byte
	err    error
}

// uploadInBackground sends req from another goroutine, so that the test can hold its body open.
func (e *env) uploadInBackground(req *http.Request) <-chan uploadResult {
	if req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+e.token(time.Hour))
	}
	done := make(chan uploadResult, 1)
	go func() {
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			done <- uploadResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- uploadResult{status: resp.StatusCode, body: b, err: err}
	}()
	return done
}

// heldUpload starts a chunked upload to collection whose body stays open until the returned
// writer is closed, and waits until the control plane holds the collection for it.
func (e *env) heldUpload(collection string) (*io.PipeWriter, <-chan uploadResult) {
	e.t.Helper()
	pr, pw := io.Pipe()
	e.t.Cleanup(func() { pw.Close() })
	req := newRequest(e.t, http.MethodPost, e.url(uploadPath("stable", collection, "versions")), pr)
	req.ContentLength = -1
	done := e.uploadInBackground(req)
	if _, err := pw.Write([]byte("first part ")); err != nil {
		e.t.Fatal(err)
	}
	waitFor(e.t, "the upload to be admitted", func() bool { return e.real.locked(collection) })
	return pw, done
}

func TestAdmitRefusalsRelayed(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	cp := e.real
	data := []byte("data")
	refused := func(name, collection, bearer string, status int, code shared.Code) {
		t.Helper()
		req := uploadRequest(t, e.url(uploadPath("stable", collection, "versions")), "raw", data)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, body := e.do(req)
		if resp.StatusCode != status || decodeEnvelope(t, body).Code != code {
			t.Fatalf("%s: %d %s, want %d %s", name, resp.StatusCode, body, status, code)
		}
	}

	cp.collection("open", testNode)
	reader, _ := cp.issueFor(cp.newUser("reader@example.org", []string{"backupDownloader"}, nil), "1h")
	refused("no backupUploader role", "open", reader, http.StatusForbidden, shared.CodeForbidden)

	// A window that opened 30 minutes ago and lasted one minute.
	from := fmt.Sprintf("%d * * * *", (time.Now().UTC().Minute()+30)%60)
	cp.collection("closed", testNode, func(c *shared.Collection) {
		c.Windows = []shared.Window{{From: from, Duration: time.Minute}}
	})
	refused("window closed", "closed", "", http.StatusForbidden, shared.CodeWindowClosed)

	elsewhere, _ := cp.issueFor(cp.newUser("elsewhere@example.org", []string{"backupUploader"}, []string{"203.0.113.0/24"}), "1h")
	refused("client address not allowed", "open", elsewhere, http.StatusForbidden, shared.CodeIPNotAllowed)

	cp.collection("full", testNode, func(c *shared.Collection) {
		c.Strategy, c.MaxBackupsCount = shared.StrategyRejectWhenFull, 1
	})
	e.uploadOK(uploadRequest(t, e.url(uploadPath("stable", "full", "versions")), "raw", data))
	refused("collection full", "full", "", http.StatusConflict, shared.CodeCollectionFull)

	refused("missing collection", "missing", "", http.StatusNotFound, shared.CodeNotFound)
	refused("bad collection id", "bad..id", "", http.StatusNotFound, shared.CodeNotFound)

	cp.collection("busy", testNode)
	pw, first := e.heldUpload("busy")
	resp, body := e.do(uploadRequest(t, e.url(uploadPath("alpha", "busy", "backup")), "raw", data))
	wantRefusal(t, resp, body, http.StatusConflict, shared.CodeUploadInProgress)
	_, _ = pw.Write([]byte("last part"))
	pw.Close()
	if r := <-first; r.err != nil || r.status != http.StatusOK {
		t.Fatalf("the held upload: %d %s %v", r.status, r.body, r.err)
	}

	revoked, id := cp.issueFor(cp.user, "1h")
	var rec struct {
		RevokeToken struct{ ID string } `json:"revokeToken"`
	}
	cp.graphql(`mutation($id: ID!){ revokeToken(id: $id) { id } }`, map[string]any{"id": id}, &rec)
	refused("revoked token", "open", revoked, http.StatusUnauthorized, shared.CodeTokenRevoked)

	cp.exec(`UPDATE tenants SET suspended = true WHERE id = $1`, cp.tenant)
	refused("tenant suspended", "open", "", http.StatusForbidden, shared.CodeTenantSuspended)

	if f := e.files(); len(f) != 2 {
		t.Fatalf("files = %v, want the two admitted uploads", f)
	}
	if n := cp.callCount(internalapi.PathAbort); n != 0 {
		t.Fatalf("%d aborts for uploads never admitted", n)
	}
}

// countingBody counts what the client transport read of a request body.
type countingBody struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func TestTooLargeByContentLengthBeforeReading(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("small", testNode, func(c *shared.Collection) { c.MaxOneVersionSize, c.MaxCollectionSize = 1000, 10*1000 })
	e.real.collection("quota", testNode, func(c *shared.Collection) { c.MaxBackupsCount, c.MaxCollectionSize = 1, 1000 })
	// With Expect: 100-continue the client sends the body only once the server asks for it,
	// so a body that was never read is proven by the client never reading its own.
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 10 * time.Second}}
	for _, c := range []struct {
		collection string
		code       shared.Code
	}{{"small", shared.CodeVersionTooLarge}, {"quota", shared.CodeCollectionQuotaExceeded}} {
		body := &countingBody{r: bytes.NewReader(make([]byte, 1001))}
		req := newRequest(t, http.MethodPost, e.url(uploadPath("stable", c.collection, "versions")), body)
		req.ContentLength = 1001
		req.Header.Set("Expect", "100-continue")
		req.Header.Set("Authorization", "Bearer "+e.token(time.Hour))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantRefusal(t, resp, got, http.StatusRequestEntityTooLarge, c.code)
		if n := body.n.Load(); n != 0 {
			t.Fatalf("%d body bytes were sent before the refusal", n)
		}
		if e.real.locked(c.collection) {
			t.Fatal("upload not aborted: the collection is still locked")
		}
	}
	// The real control plane refuses such an admission itself, so nothing may be reserved.
	if n := e.real.count(`SELECT count(*) FROM upload_reservations`); n != 0 {
		t.Fatalf("%d reservations left", n)
	}
	e.assertNoFiles()
}

func TestTooLargeChunkedCutAtAllowance(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode, func(c *shared.Collection) { c.MaxBackupsCount, c.MaxCollectionSize = 1, 64<<10 })
	for _, kind := range []string{"chunked", "multipart-chunked"} {
		resp, body := e.do(uploadRequest(t, e.url(uploadPath("alpha", "c", "versions")), kind, randomBytes(t, 64<<10+1)))
		wantRefusal(t, resp, body, http.StatusRequestEntityTooLarge, shared.CodeCollectionQuotaExceeded)
		e.assertNoFiles()
		if e.real.locked("c") {
			t.Fatal("not aborted")
		}
	}
	// Exactly the allowance fits.
	resp, body := e.do(uploadRequest(t, e.url(uploadPath("alpha", "c", "versions")), "chunked", randomBytes(t, 64<<10)))
	if v := wantVersion(t, resp, body); v.Size != 64<<10 {
		t.Fatalf("size = %d", v.Size)
	}
}

func TestEmptyBody(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode)
	base := uploadPath("stable", "c", "versions")
	for _, kind := range []string{"raw", "multipart"} {
		resp, body := e.do(uploadRequest(t, e.url(base), kind, nil))
		wantRefusal(t, resp, body, http.StatusBadRequest, shared.CodeEmptyBody)
	}
	// A chunked body with only the final chunk.
	status, body := rawRequest(t, e, "POST "+base+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+e.token(time.Hour)+
		"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	if !strings.HasPrefix(status, "HTTP/1.1 400") || !strings.Contains(body, string(shared.CodeEmptyBody)) {
		t.Fatalf("empty chunked: %s %s", status, body)
	}
	// Multipart without any file part.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("comment", "no file")
	_ = mw.Close()
	req := newRequest(t, http.MethodPost, e.url(base), &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, b := e.do(req)
	wantRefusal(t, resp, b, http.StatusBadRequest, shared.CodeInvalidInput)
	e.assertNoFiles()
	waitFor(t, "aborts", func() bool { return e.real.callCount(internalapi.PathAbort) == 4 })
}

// rawRequest writes req on a fresh connection and returns the status line and the body.
func rawRequest(t *testing.T, e *env, req string) (string, string) {
	t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Proto + " " + resp.Status, string(b)
}

func TestRequireEncryption(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("enc", testNode, func(c *shared.Collection) { c.RequireEncryption, c.MaxBackupsCount = true, 100 })
	base := uploadPath("stable", "enc", "versions")
	refused := [][]byte{
		[]byte("plain text backup"),
		{0xac, 0x10, 'b', 0, 0, 0, 0, 0}, // old-format literal data packet: signed or not, readable
		{0xc8, 0x05, 0x01, 'x'},          // new-format compressed data packet
		[]byte("-----BEGIN PGP SIGNATURE-----\n"),
	}
	for _, b := range refused {
		for _, kind := range []string{"raw", "chunked", "multipart"} {
			resp, body := e.do(uploadRequest(t, e.url(base), kind, b))
			wantRefusal(t, resp, body, http.StatusBadRequest, shared.CodeNotEncrypted)
		}
	}
	e.assertNoFiles()
	accepted := [][]byte{
		[]byte("-----BEGIN PGP MESSAGE-----\n\nhQEMA...\n-----END PGP MESSAGE-----\n"),
		append([]byte{0x84, 0x8c, 0x03}, randomBytes(t, 300)...), // old-format PKESK
		append([]byte{0xc3, 0x0d, 0x04}, randomBytes(t, 300)...), // new-format SKESK
		append([]byte{0xd2, 0xff}, randomBytes(t, 300)...),       // new-format SEIPD
	}
	for _, b := range accepted {
		for _, kind := range []string{"raw", "multipart-chunked"} {
			v := e.uploadOK(uploadRequest(t, e.url(base), kind, b))
			if v.SHA256 != sha(b) {
				t.Fatalf("stored sha %s, want %s", v.SHA256, sha(b))
			}
		}
	}
}

func TestChecksum(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode, func(c *shared.Collection) { c.MaxBackupsCount = 100 })
	base := uploadPath("alpha", "c", "versions")
	data := randomBytes(t, 100_000)
	sum := sha256.Sum256(data)
	wrong := sha256.Sum256([]byte("something else"))
	b64 := base64.StdEncoding.EncodeToString
	hex := func(b [32]byte) string { return fmt.Sprintf("%x", b) }

	for _, h := range []struct{ name, value string }{
		{"Digest", "sha-256=" + b64(wrong[:])},
		{"Digest", "md5=AAAA, SHA-256=" + b64(wrong[:])},
		{"X-Content-SHA256", hex(wrong)},
		{"Content-Digest", "sha-256=:" + b64(wrong[:]) + ":"},
	} {
		req := uploadRequest(t, e.url(base), "raw", data)
		req.Header.Set(h.name, h.value)
		resp, body := e.do(req)
		wantRefusal(t, resp, body, http.StatusBadRequest, shared.CodeChecksumMismatch)
		e.assertNoFiles()
	}
	for _, name := range []string{"Digest", "X-Content-Sha256"} {
		req := uploadRequest(t, e.url(base), "chunked", data)
		req.Trailer = http.Header{}
		if name == "Digest" {
			req.Trailer.Set(name, "sha-256="+b64(wrong[:]))
		} else {
			req.Trailer.Set(name, hex(wrong))
		}
		resp, body := e.do(req)
		wantRefusal(t, resp, body, http.StatusBadRequest, shared.CodeChecksumMismatch)
		e.assertNoFiles()
	}
	if e.real.locked("c") || e.real.callCount(internalapi.PathCommit) != 0 {
		t.Fatal("a mismatched upload was committed or not aborted")
	}

	// Malformed values are refused before admission.
	req := uploadRequest(t, e.url(base), "raw", data)
	req.Header.Set("X-Content-SHA256", "abc")
	resp, body := e.do(req)
	wantRefusal(t, resp, body, http.StatusBadRequest, shared.CodeInvalidInput)

	// Matching sums in a header and in a trailer are accepted.
	req = uploadRequest(t, e.url(base), "raw", data)
	req.Header.Set("Digest", "sha-256="+b64(sum[:]))
	req.Header.Set("X-Content-SHA256", hex(sum))
	e.uploadOK(req)
	req = uploadRequest(t, e.url(base), "multipart-chunked", data)
	req.Trailer = http.Header{"Digest": {"sha-256=" + b64(sum[:])}}
	e.uploadOK(req)
}

// TestClientGoneLeavesNothing cuts uploads off midway and asserts nothing stays on disk, the
// upload is aborted and no version is committed.
func TestClientGoneLeavesNothing(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode, func(c *shared.Collection) { c.MaxOneVersionSize = 8 << 20 })
	base := uploadPath("stable", "c", "versions")
	data := randomBytes(t, 4<<20)
	chunk := func(b []byte) string { return fmt.Sprintf("%x\r\n%s\r\n", len(b), b) }
	cases := []struct {
		name    string
		headers string
		body    string
	}{
		{"content-length at 50%", fmt.Sprintf("Content-Length: %d\r\n", len(data)), string(data[:len(data)/2])},
		{"chunked at 50%", "Transfer-Encoding: chunked\r\n", chunk(data[:1<<20]) + chunk(data[1<<20:2<<20])},
		{"chunked without the final chunk", "Transfer-Encoding: chunked\r\n", chunk(data[:2<<20]) + chunk(data[2<<20:])},
	}
	for i, c := range cases {
		conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		head := "POST " + base + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + e.token(time.Hour) + "\r\n" + c.headers + "\r\n"
		if _, err := io.WriteString(conn, head+c.body); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "admit", func() bool { return e.real.callCount(internalapi.PathAdmit) == i+1 })
		conn.Close()
		waitFor(t, c.name+": abort", func() bool { return e.real.callCount(internalapi.PathAbort) == i+1 })
		e.assertNoFiles()
		// The proxy counts the abort when it passes; the reservation goes when the control
		// plane has handled it.
		waitFor(t, c.name+": reservation released", func() bool { return !e.real.locked("c") })
		if e.real.versionCount("c") != 0 {
			t.Fatalf("%s: committed", c.name)
		}
	}
}

func TestStalledAndSlowUploads(t *testing.T) {
	t.Parallel()
	// The gaps leave 750 ms to spare: with 100 ms gaps against 300 ms, a loaded 2-core CI
	// machine once delayed one write past the timeout.
	e := newRealEnv(t, withIdleTimeout(time.Second))
	e.real.collection("c", testNode)
	base := uploadPath("stable", "c", "versions")

	// Slow but steady: 12 pieces 250 ms apart take far longer than the idle timeout.
	pr, pw := io.Pipe()
	go func() {
		for range 12 {
			time.Sleep(250 * time.Millisecond)
			if _, err := pw.Write(bytes.Repeat([]byte("x"), 1000)); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req := newRequest(t, http.MethodPost, e.url(base), pr)
	req.ContentLength = -1
	if v := e.uploadOK(req); v.Size != 12000 {
		t.Fatalf("size %d", v.Size)
	}

	// Stalled: half the body, then nothing.
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST "+base+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+e.token(time.Hour)+
		"\r\nContent-Length: 2000\r\n\r\n"+strings.Repeat("y", 1000))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled upload: %s", resp.Status)
	}
	waitFor(t, "abort", func() bool { return e.real.callCount(internalapi.PathAbort) == 1 })
	if f := e.files(); len(f) != 1 {
		t.Fatalf("files = %v, want only the slow upload", f)
	}
}

func TestRotationAndDelete(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode, func(c *shared.Collection) { c.MaxBackupsCount = 2 })
	base := uploadPath("stable", "c", "backups")
	var vs []versionJSON
	for i := range 3 {
		vs = append(vs, e.uploadOK(uploadRequest(t, e.url(base), "raw", []byte(fmt.Sprintf("backup number %d", i)))))
	}
	if f := e.files(); len(f) != 2 || strings.Contains(strings.Join(f, " "), vs[0].ID) {
		t.Fatalf("after rotation files = %v (v1 is %s)", f, vs[0].ID)
	}
	resp, body := e.do(newRequest(t, http.MethodGet, e.url(base+"/first"), nil))
	if resp.StatusCode != 200 || string(body) != "backup number 1" {
		t.Fatalf("first = %d %q", resp.StatusCode, body)
	}

	resp, body = e.do(newRequest(t, http.MethodDelete, e.url(base+"/v2"), nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	var d struct {
		Version versionJSON `json:"version"`
	}
	if err := json.Unmarshal(decodeEnvelope(t, body).Data, &d); err != nil || d.Version.ID != vs[1].ID {
		t.Fatalf("delete answer %s", body)
	}
	if f := e.files(); len(f) != 1 || !strings.Contains(f[0], vs[2].ID) {
		t.Fatalf("after delete files = %v", f)
	}
	resp, body = e.do(newRequest(t, http.MethodGet, e.url(base+"/v2"), nil))
	wantRefusal(t, resp, body, http.StatusNotFound, shared.CodeNotFound)
}

// expireUpload ends the lease of collection's upload in progress, as when the control plane
// stopped hearing from the node.
func (cp *realControlPlane) expireUpload(collection string) {
	cp.t.Helper()
	cp.exec(`UPDATE upload_reservations SET expires_at = now() - interval '1 second' WHERE collection_id = $1`, collection)
}

func TestCommitRetriedAndRefused(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode)
	base := uploadPath("stable", "c", "versions")

	// Failures, then a commit whose answer is lost: the retry gets the same version.
	e.real.failCommits.Store(2)
	e.real.loseCommits.Store(1)
	v := e.uploadOK(uploadRequest(t, e.url(base), "raw", []byte("retried")))
	if e.real.versionCount("c") != 1 || len(e.files()) != 1 {
		t.Fatalf("versions %d, files %v", e.real.versionCount("c"), e.files())
	}
	if n := e.real.callCount(internalapi.PathCommit); n != 4 {
		t.Fatalf("commit calls = %d, want 4", n)
	}
	resp, body := e.do(newRequest(t, http.MethodGet, e.url(base+"/"+v.ID), nil))
	if resp.StatusCode != 200 || string(body) != "retried" {
		t.Fatalf("download %d %q", resp.StatusCode, body)
	}

	// The lease runs out while the body is still arriving: the commit is refused.
	pw, done := e.heldUpload("c")
	e.real.expireUpload("c")
	_, _ = pw.Write([]byte("refused"))
	pw.Close()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if a := decodeEnvelope(t, r.body); r.status != http.StatusConflict || a.Code != shared.CodeConflict {
		t.Fatalf("commit after the lease: %d %s", r.status, r.body)
	}
	if f := e.files(); len(f) != 1 || e.real.versionCount("c") != 1 {
		t.Fatalf("after a refused commit: files %v, versions %d", f, e.real.versionCount("c"))
	}
}

func TestUncertainCommitReconciled(t *testing.T) {
	t.Parallel()
	for _, committed := range []bool{true, false} {
		e := newRealEnv(t, withCommitRetry(300*time.Millisecond))
		e.real.collection("c", testNode)
		base := uploadPath("stable", "c", "versions")
		if committed {
			e.real.loseCommits.Store(1 << 30)
		} else {
			e.real.failCommits.Store(1 << 30)
		}
		resp, body := e.do(uploadRequest(t, e.url(base), "raw", []byte("unsure")))
		wantRefusal(t, resp, body, http.StatusServiceUnavailable, shared.CodeDependencyUnavailable)
		if f := e.files(); len(f) != 1 || !strings.Contains(f[0], ".staged-") {
			t.Fatalf("files = %v, want the staged upload", f)
		}
		if e.real.callCount(internalapi.PathAbort) != 0 {
			t.Fatal("an upload whose commit may have landed was aborted")
		}
		e.real.loseCommits.Store(0)
		e.real.failCommits.Store(0)

		// As after a restart: a new store finds the staged file, the reconciler settles it.
		r := reopen(t, e)
		if n := r.Once(context.Background()); n != 0 {
			t.Fatalf("%d uploads left unsettled", n)
		}
		f := e.files()
		switch {
		case committed && (len(f) != 1 || strings.Contains(f[0], ".staged-") || e.real.versionCount("c") != 1):
			t.Fatalf("committed upload not finalized: files %v, versions %d", f, e.real.versionCount("c"))
		case !committed && (len(f) != 0 || e.real.versionCount("c") != 0):
			t.Fatalf("uncommitted upload not discarded: files %v, versions %d", f, e.real.versionCount("c"))
		case !committed && e.real.locked("c"):
			t.Fatal("uncommitted upload not aborted")
		}
	}
}

func TestExtend(t *testing.T) {
	t.Parallel()
	// A 1 s lease: the node extends every third of a second, and an upload lasting twice the
	// lease only commits if those extends kept it alive.
	e := newRealEnv(t, withUploadLease(time.Second))
	e.real.collection("c", testNode)
	base := uploadPath("stable", "c", "versions")
	slow := func() io.Reader {
		pr, pw := io.Pipe()
		go func() {
			for range 8 {
				time.Sleep(250 * time.Millisecond)
				if _, err := pw.Write([]byte("chunk")); err != nil {
					return
				}
			}
			pw.Close()
		}()
		return pr
	}
	req := newRequest(t, http.MethodPost, e.url(base), slow())
	req.ContentLength = -1
	e.uploadOK(req)
	if n := e.real.callCount(internalapi.PathExtend); n < 3 {
		t.Fatalf("extend calls = %d, want several", n)
	}

	// The lease runs out under the upload: the next extend is refused and so is the upload.
	pw, done := e.heldUpload("c")
	extends := e.real.callCount(internalapi.PathExtend)
	e.real.expireUpload("c")
	waitFor(t, "an extend after the lease ran out", func() bool {
		return e.real.callCount(internalapi.PathExtend) > extends
	})
	r := <-done
	pw.Close()
	if r.err != nil {
		t.Fatal(r.err)
	}
	if a := decodeEnvelope(t, r.body); r.status != http.StatusConflict || a.Code != shared.CodeConflict {
		t.Fatalf("upload whose extend was refused: %d %s", r.status, r.body)
	}
	if f := e.files(); len(f) != 1 || e.real.versionCount("c") != 1 {
		t.Fatalf("files %v, versions %d", f, e.real.versionCount("c"))
	}
}

func TestClientIPFromFrontDoor(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode)
	// The user may upload only from the address the front door vouches for.
	tok, _ := e.real.issueFor(e.real.newUser("behind-door@example.org", []string{"backupUploader"}, []string{"203.0.113.7/32"}), "1h")
	base := e.url(uploadPath("stable", "c", "versions"))
	for _, c := range []struct {
		sig, want string
		status    int
	}{
		{internalapi.SignClientIP(testSecret, "203.0.113.7", time.Now()), "203.0.113.7", http.StatusOK},
		{internalapi.SignClientIP([]byte("another-secret-0123456789"), "203.0.113.7", time.Now()), "127.0.0.1", http.StatusForbidden},
		{"", "127.0.0.1", http.StatusForbidden},
	} {
		req := uploadRequest(t, base, "raw", []byte("x"))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set(internalapi.HeaderClientIP, "203.0.113.7")
		if c.sig != "" {
			req.Header.Set(internalapi.HeaderClientIPSig, c.sig)
		}
		resp, body := e.do(req)
		if got := e.real.lastAdmit().ClientIP; got != c.want {
			t.Fatalf("client IP = %q, want %q", got, c.want)
		}
		if resp.StatusCode != c.status {
			t.Fatalf("client IP %s: %d %s, want %d", c.want, resp.StatusCode, body, c.status)
		}
		if c.status == http.StatusForbidden && decodeEnvelope(t, body).Code != shared.CodeIPNotAllowed {
			t.Fatalf("refusal %s, want IP_NOT_ALLOWED", body)
		}
	}
}

// TestCommitAnswerLost loses the real control plane's answer to a commit that landed: the
// node's retry must get the same version, not a second one.
func TestCommitAnswerLost(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode)
	base := uploadPath("stable", "c", "versions")
	e.real.loseCommits.Store(1)
	v := e.uploadOK(uploadRequest(t, e.url(base), "raw", []byte("retried")))
	if e.real.versionCount("c") != 1 || len(e.files()) != 1 {
		t.Fatalf("versions %d, files %v", e.real.versionCount("c"), e.files())
	}
	if n := e.real.callCount(internalapi.PathCommit); n != 2 {
		t.Fatalf("commit calls = %d, want 2", n)
	}
	resp, body := e.do(newRequest(t, http.MethodGet, e.url(base+"/"+v.ID), nil))
	if resp.StatusCode != 200 || string(body) != "retried" {
		t.Fatalf("download %d %q", resp.StatusCode, body)
	}
}

// A refusal made mid-stream reaches a proxy that is still sending the body: the node reads on
// for a moment after answering, so the proxy's writes are not met with a reset that destroys
// the answer (the front door used to relay about half of these as 503).
func TestRefusalMidStreamReachesAProxy(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode, func(c *shared.Collection) { c.MaxBackupsCount, c.MaxCollectionSize = 1, 1<<20 })
	target, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// The front door's way: the body goes only after the node's 100 Continue.
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{ExpectContinueTimeout: 5 * time.Second}
	// Like the front door, it reads what is left of the client's body after relaying the
	// answer, so that the client's own writes are not reset: only the node's side is tested.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxy.ServeHTTP(w, r)
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(front.Close)
	tok := e.token(time.Hour)
	for i := range 12 {
		req := newRequest(t, http.MethodPost, front.URL+uploadPath("stable", "c", "versions"),
			io.LimitReader(neverEnding('x'), 32<<20))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Expect", "100-continue")
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantRefusal(t, resp, body, http.StatusRequestEntityTooLarge, shared.CodeVersionTooLarge)
	}
	e.assertNoFiles()
	if e.real.locked("c") || e.real.versionCount("c") != 0 {
		t.Fatal("a refused upload left a lock or a version")
	}
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

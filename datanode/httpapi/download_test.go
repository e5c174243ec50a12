package httpapi_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"backuprepo/shared"
)

// flipByteOf flips one bit of the only data file on the node's disks, at offset at.
func (e *env) flipByteOf(at int64) {
	e.t.Helper()
	files := e.files()
	if len(files) != 1 {
		e.t.Fatalf("want one stored file, have %v", files)
	}
	var path string
	for _, d := range e.dirs {
		if _, err := os.Stat(filepath.Join(d, files[0])); err == nil {
			path = filepath.Join(d, files[0])
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		e.t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, at); err != nil {
		e.t.Fatal(err)
	}
}

// A damaged stored file is never served: damage in the first bytes to send answers 500
// VERSION_DAMAGED, damage further on cuts the connection before the damaged bytes, ranges
// that do not touch it are still served, and the control plane records the damage.
func TestDownloadDamaged(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode, func(c *shared.Collection) { c.MaxOneVersionSize = 64 << 20 })
	const size = 20 << 20
	data := randomBytes(t, size)
	base := uploadPath("stable", "c", "versions")
	v := e.uploadOK(uploadRequest(t, e.url(base), "raw", data))
	const damagedAt = 17<<20 + 4321 // in the third 8 MiB segment
	e.flipByteOf(damagedAt)

	// The whole file: a 200 whose body stops before the damaged segment, short of its length.
	req := newRequest(t, http.MethodGet, e.url(base+"/latest"), nil)
	req.Header.Set("Authorization", "Bearer "+e.token(time.Hour))
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != size {
		t.Fatalf("status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading the body: err = %v after %d bytes, want unexpected EOF", err, len(got))
	}
	if len(got) != 16<<20 || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("got %d bytes before the cut, want the 16 MiB before the damaged segment, all as uploaded", len(got))
	}
	waitFor(t, "the control plane records the damage", func() bool {
		return e.real.count(`SELECT count(*) FROM version_checks WHERE version_id = $1 AND NOT ok
			AND node_name = $2 AND detail LIKE 'block 17 (bytes 17825792-18874367) fails its checksum%'`, v.ID, testNode) == 1
	})

	// Ranges: before the damage served, touching it refused with the code.
	req = newRequest(t, http.MethodGet, e.url(base+"/latest"), nil)
	req.Header.Set("Range", "bytes=0-99")
	resp, got = e.do(req)
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, data[:100]) {
		t.Fatalf("undamaged range: %d, %d bytes", resp.StatusCode, len(got))
	}
	// This refusal reports the damage again, in the background. The row is cleared first and
	// the test waits for it to come back, so that this report cannot land after, and replace,
	// the report of the next damage.
	e.real.exec(`DELETE FROM version_checks WHERE version_id = $1`, v.ID)
	req = newRequest(t, http.MethodGet, e.url(base+"/latest"), nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", damagedAt-10))
	resp, got = e.do(req)
	wantRefusal(t, resp, got, http.StatusInternalServerError, shared.CodeVersionDamaged)
	if resp.Header.Get("Content-Range") != "" || resp.Header.Get("Content-Disposition") != "" || resp.Header.Get("ETag") != "" {
		t.Fatalf("refusal carries the body's headers: %v", resp.Header)
	}
	waitFor(t, "the range request's report", func() bool {
		return e.real.count(`SELECT count(*) FROM version_checks WHERE version_id = $1 AND NOT ok
			AND detail LIKE 'block 17 %'`, v.ID) == 1
	})

	// Damage at the start: an error answer, not a 200.
	e.flipByteOf(damagedAt) // repaired
	e.flipByteOf(100)
	resp, got = e.do(newRequest(t, http.MethodGet, e.url(base+"/"+v.ID), nil))
	wantRefusal(t, resp, got, http.StatusInternalServerError, shared.CodeVersionDamaged)
	waitFor(t, "the second damage recorded", func() bool {
		return e.real.count(`SELECT count(*) FROM version_checks WHERE version_id = $1 AND NOT ok
			AND detail LIKE 'block 0 %'`, v.ID) == 1
	})

	// Repaired: served whole again.
	e.flipByteOf(100)
	resp, got = e.do(newRequest(t, http.MethodGet, e.url(base+"/"+v.ID), nil))
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("repaired file: %d, %d bytes", resp.StatusCode, len(got))
	}
}

// Range edge cases the handler answers itself.
func TestDownloadRangeEdges(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	e.real.collection("c", testNode)
	data := randomBytes(t, 3000)
	base := uploadPath("stable", "c", "versions")
	v := e.uploadOK(uploadRequest(t, e.url(base), "raw", data))
	get := func(headers ...string) (*http.Response, []byte) {
		req := newRequest(t, http.MethodGet, e.url(base+"/latest"), nil)
		for i := 0; i < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		return e.do(req)
	}
	resp, got := get("Range", "bytes=3000-")
	wantRefusal(t, resp, got, http.StatusRequestedRangeNotSatisfiable, shared.CodeInvalidInput)
	if resp.Header.Get("Content-Range") != "bytes */3000" {
		t.Fatalf("416 Content-Range = %q", resp.Header.Get("Content-Range"))
	}
	if resp, got = get("Range", "bytes=-10"); resp.StatusCode != http.StatusPartialContent ||
		!bytes.Equal(got, data[2990:]) || resp.Header.Get("Content-Range") != "bytes 2990-2999/3000" {
		t.Fatalf("suffix range: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	// Several ranges, or an If-Range naming another version: the whole version, 200.
	if resp, got = get("Range", "bytes=0-1,5-6"); resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("multi-range: %d, %d bytes", resp.StatusCode, len(got))
	}
	if resp, got = get("Range", "bytes=10-19", "If-Range", `"other"`); resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("stale If-Range: %d, %d bytes", resp.StatusCode, len(got))
	}
	if resp, got = get("Range", "bytes=10-19", "If-Range", `"`+v.SHA256+`"`); resp.StatusCode != http.StatusPartialContent ||
		!bytes.Equal(got, data[10:20]) {
		t.Fatalf("matching If-Range: %d, %d bytes", resp.StatusCode, len(got))
	}
	if resp, got = get("If-None-Match", `W/"x", "`+v.SHA256+`"`); resp.StatusCode != http.StatusNotModified || len(got) != 0 {
		t.Fatalf("If-None-Match list: %d", resp.StatusCode)
	}
	if resp, _ = get("If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"); resp.StatusCode != http.StatusOK {
		t.Fatalf("old If-Modified-Since: %d", resp.StatusCode)
	}
	if resp, _ = get("If-Modified-Since", resp.Header.Get("Last-Modified")); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-Modified-Since = Last-Modified: %d", resp.StatusCode)
	}
}

package upload

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"backuprepo/e2e/stack"
)

// TestRoundTrip uploads through the front door and straight to the data node, under both
// path prefixes and every body framing, then lists and downloads the version back: the bytes
// must hash to what was sent, to what PostgreSQL records and to the file on disk.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{Binaries: bins})
	tenant := s.CreateTenant(t, nil)
	_, tok := s.Uploader(t, tenant, "backupUploader", "backupDownloader")

	bodies := []struct {
		name string
		opts stack.UploadOptions
	}{
		{"raw with Content-Length", stack.UploadOptions{}},
		{"chunked", stack.UploadOptions{Chunked: true}},
		{"multipart", stack.UploadOptions{Multipart: true}},
		{"multipart chunked", stack.UploadOptions{Multipart: true, Chunked: true}},
	}
	for _, r := range routes {
		for _, prefix := range []string{"/api/stable", "/api/alpha"} {
			for i, b := range bodies {
				t.Run(r.name+" "+prefix+" "+b.name, func(t *testing.T) {
					t.Parallel()
					c := newColl(t, s, limits(tenant, 5, 4*mib, 20*mib))
					base := r.base(s, c)
					data := payload(t, 300*kib+i*4099) // odd sizes cross buffer boundaries
					o := b.opts
					o.Prefix = prefix
					o.Naming = []string{"versions", "version", "backups", "backup"}[i]
					cl := client{t, s, tok.Token}
					v := accepted(t, cl.upload(base, c.ID, data, o), data)
					if v.Number != 1 || v.CollectionID != c.ID || v.Filename != "backup-1" {
						t.Errorf("version %+v, want number 1 of %s named backup-1", v, c.ID)
					}
					rows := stored(t, s, c, 1)
					if rows[0].ID != v.ID || rows[0].SHA256 != sha(data) || rows[0].Size != int64(len(data)) || rows[0].NodeName != c.Node.Name {
						t.Errorf("row %+v does not match the upload %+v on %s", rows[0], v, c.Node.Name)
					}

					ro := stack.ReadOptions{Prefix: prefix}
					list := cl.list(base, c.ID, ro)
					if list.Status != 200 {
						t.Fatalf("list: %s", list)
					}
					vs, err := list.Versions()
					if err != nil {
						t.Fatal(err)
					}
					if len(vs) != 1 || vs[0].ID != v.ID || vs[0].SHA256 != v.SHA256 {
						t.Fatalf("list %+v, want just %+v", vs, v)
					}
					for _, ref := range []string{"latest", "1", "v1", v.ID} {
						d := cl.download(base, c.ID, ref, ro)
						if d.Status != 200 {
							t.Fatalf("download %s: %s", ref, d)
						}
						if sha(d.Body) != sha(data) {
							t.Fatalf("download %s: %d bytes hashing to %s, uploaded %d hashing to %s", ref, len(d.Body), sha(d.Body), len(data), sha(data))
						}
					}
				})
			}
		}
	}

	t.Run("front door Range and If-None-Match", func(t *testing.T) {
		t.Parallel()
		c := newColl(t, s, limits(tenant, 5, 4*mib, 20*mib))
		data := payload(t, 100*kib)
		cl := client{t, s, tok.Token}
		accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
		stored(t, s, c, 1)

		full := cl.download(s.URL, c.ID, "latest", stack.ReadOptions{})
		etag := full.Header.Get("ETag")
		if full.Status != 200 || etag != `"`+sha(data)+`"` {
			t.Fatalf("download: %d with ETag %q, want 200 with the quoted sha256", full.Status, etag)
		}
		if cd := full.Header.Get("Content-Disposition"); !strings.Contains(cd, "attachment") || !strings.Contains(cd, `filename="backup-1"`) {
			t.Errorf("Content-Disposition %q", cd)
		}
		if cl := full.Header.Get("Content-Length"); cl != "102400" {
			t.Errorf("Content-Length %q, want 102400", cl)
		}

		part := cl.download(s.URL, c.ID, "latest", stack.ReadOptions{Header: http.Header{"Range": {"bytes=1000-1999"}}})
		if part.Status != http.StatusPartialContent || !bytes.Equal(part.Body, data[1000:2000]) {
			t.Fatalf("Range bytes=1000-1999: %d with %d bytes, want 206 with data[1000:2000]", part.Status, len(part.Body))
		}
		if cr := part.Header.Get("Content-Range"); cr != "bytes 1000-1999/102400" {
			t.Errorf("Content-Range %q", cr)
		}

		same := cl.download(s.URL, c.ID, "latest", stack.ReadOptions{Header: http.Header{"If-None-Match": {etag}}})
		if same.Status != http.StatusNotModified || len(same.Body) != 0 {
			t.Fatalf("If-None-Match with the ETag: %d with %d bytes, want 304 and no body", same.Status, len(same.Body))
		}
		other := cl.download(s.URL, c.ID, "latest", stack.ReadOptions{Header: http.Header{"If-None-Match": {`"` + sha([]byte("other")) + `"`}}})
		if other.Status != 200 || sha(other.Body) != sha(data) {
			t.Fatalf("If-None-Match with another ETag: %d, want 200 with the data", other.Status)
		}
	})
}

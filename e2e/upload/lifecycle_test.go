package upload

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

// TestLifecycle covers what happens around uploads: a client that goes away mid-body, a
// one-shot token, and deletions through GraphQL.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{Binaries: bins})
	tenant := s.CreateTenant(t, nil)
	uploader, up := s.Uploader(t, tenant, "backupUploader", "backupDownloader")

	for _, r := range routes {
		for _, chunked := range []bool{false, true} {
			name := r.name + " Content-Length"
			if chunked {
				name = r.name + " chunked"
			}
			t.Run("client gone at 50% "+name, func(t *testing.T) {
				t.Parallel()
				c := newColl(t, s, limits(tenant, 3, 8*mib, 24*mib))
				data := payload(t, 4*mib)
				length := int64(len(data))
				if chunked {
					length = -1
				}
				raw, err := s.OpenUpload(t.Context(), r.base(s, c), up.Token, c.ID, length, nil)
				if err != nil {
					t.Fatal(err)
				}
				half := data[:len(data)/2]
				if chunked {
					for p := half; len(p) > 0; p = p[min(len(p), 64*kib):] {
						if err := raw.WriteChunk(p[:min(len(p), 64*kib)]); err != nil {
							t.Fatal(err)
						}
					}
				} else if _, err := raw.Write(half); err != nil {
					t.Fatal(err)
				}
				// The node is streaming to a temporary file when at least 1 MiB has arrived.
				waitFor(t, "the upload's temporary file to pass 1 MiB", func() bool {
					for name, size := range c.Node.CollectionFileSizes(t, c.ID) {
						if strings.HasPrefix(name, ".tmp-") && size >= 1*mib {
							return true
						}
					}
					return false
				})
				raw.Close()
				eventuallyStored(t, s, c) // no file, no version, no reservation
				// The lock went with it: the next upload proceeds at once.
				accepted(t, client{t, s, up.Token}.upload(r.base(s, c), c.ID, data, stack.UploadOptions{Chunked: chunked}), data)
				stored(t, s, c, 1)
			})
		}
	}

	t.Run("one-shot token works once", func(t *testing.T) {
		t.Parallel()
		c := newColl(t, s, limits(tenant, 3, 64*kib, 192*kib))
		once := s.IssueToken(t, uploader.ID, stack.TokenOptions{Once: true})
		cl := client{t, s, once.Token}
		data := payload(t, 4*kib)
		// A refused upload does not use the token up.
		refused(t, cl.upload(s.URL, c.ID, nil, stack.UploadOptions{}), 400, "EMPTY_BODY")
		accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
		stored(t, s, c, 1)
		refused(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), 401, "TOKEN_REVOKED")
		refused(t, cl.upload(c.Node.URL, c.ID, data, stack.UploadOptions{Chunked: true}), 401, "TOKEN_REVOKED")
		stored(t, s, c, 1)
		var revoked bool
		if err := s.DB.QueryRow(t.Context(), `SELECT revoked_at IS NOT NULL FROM tokens WHERE id = $1`, once.ID).Scan(&revoked); err != nil || !revoked {
			t.Errorf("token record revoked = %v (err %v), want true", revoked, err)
		}
	})

	t.Run("GraphQL deleteVersion", func(t *testing.T) {
		t.Parallel()
		c := newColl(t, s, limits(tenant, 5, 64*kib, 320*kib))
		cl := client{t, s, up.Token}
		data := payload(t, 4*kib)
		for range 3 {
			accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
		}
		before := stored(t, s, c, 1, 2, 3)
		var out struct {
			DeleteVersion struct {
				ID     string
				Number int64
			}
		}
		if err := s.GraphQL(t.Context(), s.AdminToken, `mutation($c: ID!) { deleteVersion(collectionId: $c, ref: "v2") { id number } }`,
			map[string]any{"c": c.ID}, &out); err != nil {
			t.Fatal(err)
		}
		if out.DeleteVersion.ID != before[1].ID || out.DeleteVersion.Number != 2 {
			t.Fatalf("deleteVersion answered %+v, want version 2 (%s)", out.DeleteVersion, before[1].ID)
		}
		if got := stack.Numbers(s.VersionRows(t, c.ID)); len(got) != 2 || got[0] != 1 || got[1] != 3 {
			t.Fatalf("version rows after deleting v2: %v, want [1 3]", got)
		}
		if d := cl.download(s.URL, c.ID, "v2", stack.ReadOptions{}); d.Status != 404 {
			t.Errorf("download of the deleted version: %s, want 404", d)
		}
		v := accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
		if v.Number != 4 {
			t.Errorf("upload after deleting v2 got number %d, want 4", v.Number)
		}
		fileGone(t, c, before[1].ID)
		stored(t, s, c, 1, 3, 4)
	})

	t.Run("GraphQL force deleteCollection", func(t *testing.T) {
		t.Parallel()
		c := newColl(t, s, limits(tenant, 5, 64*kib, 320*kib))
		cl := client{t, s, up.Token}
		data := payload(t, 4*kib)
		accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
		accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
		rows := stored(t, s, c, 1, 2)
		del := `mutation($c: ID!, $f: Boolean) { deleteCollection(id: $c, force: $f) }`
		var ge *stack.GraphQLError
		if err := s.GraphQL(t.Context(), s.AdminToken, del, map[string]any{"c": c.ID, "f": false}, nil); !errors.As(err, &ge) || ge.Code != "COLLECTION_NOT_EMPTY" {
			t.Fatalf("deleteCollection without force: %v, want COLLECTION_NOT_EMPTY", err)
		}
		stored(t, s, c, 1, 2)
		if err := s.GraphQL(t.Context(), s.AdminToken, del, map[string]any{"c": c.ID, "f": true}, nil); err != nil {
			t.Fatal(err)
		}
		if got := s.VersionRows(t, c.ID); len(got) != 0 {
			t.Fatalf("version rows after a forced deletion: %v", got)
		}
		var n int
		if err := s.DB.QueryRow(t.Context(), `SELECT count(*) FROM collections WHERE id = $1`, c.ID).Scan(&n); err != nil || n != 0 {
			t.Fatalf("collection rows after a forced deletion: %d (err %v)", n, err)
		}
		refused(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), 404, "NOT_FOUND")
		for _, r := range rows {
			fileGone(t, c, r.ID)
		}
		if files := c.Node.CollectionFiles(t, c.ID); len(files) != 0 {
			t.Fatalf("files left of the deleted collection: %v", files)
		}
	})
}

// fileGone waits a few seconds for a deleted version's file to leave the node's disk: the node
// sweeps the control plane's file deletions every second in these tests.
func fileGone(t *testing.T, c coll, versionID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for {
		if _, ok := c.Node.CollectionFileSizes(t, c.ID)[versionID]; !ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the file of deleted version " + versionID + " is still on " + c.Node.Name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

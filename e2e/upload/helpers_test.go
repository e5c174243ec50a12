package upload

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// coll is a collection under test and the data node holding it.
type coll struct {
	ID   string
	Node *stack.Node
}

// newColl creates a collection from in (CreateCollectionInput) and finds its node.
func newColl(t *testing.T, s *stack.Stack, in map[string]any) coll {
	t.Helper()
	id, node := s.CreateCollection(t, in)
	n := s.Node(node)
	if n == nil {
		t.Fatalf("collection %s placed on %q, which is not a node of this stack", id, node)
	}
	return coll{ID: id, Node: n}
}

// route is a way in: through the control plane's front door or straight to the data node.
type route struct {
	name string
	base func(s *stack.Stack, c coll) string
}

var routes = []route{
	{"front door", func(s *stack.Stack, _ coll) string { return s.URL }},
	{"direct", func(_ *stack.Stack, c coll) string { return c.Node.URL }},
}

func payload(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// stored checks the collection holds exactly the versions numbered want, in PostgreSQL and on
// the node's disk — each file named by its version id and hashing to its row's sha256, and no
// temporary, staged or other file beside them — and that no reservation is live.
func stored(t *testing.T, s *stack.Stack, c coll, want ...int64) []stack.VersionRow {
	t.Helper()
	if err := storedErr(s, t, c, want...); err != nil {
		t.Fatal(err)
	}
	return s.VersionRows(t, c.ID)
}

func storedErr(s *stack.Stack, t *testing.T, c coll, want ...int64) error {
	rows := s.VersionRows(t, c.ID)
	if got := stack.Numbers(rows); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		return fmt.Errorf("version rows of %s: numbers %v, want %v", c.ID, got, want)
	}
	if files, ids := c.Node.CollectionFiles(t, c.ID), stack.IDs(rows); !slices.Equal(files, ids) && !(len(files) == 0 && len(ids) == 0) {
		return fmt.Errorf("files of %s on %s: %v, want exactly the versions %v", c.ID, c.Node.Name, files, ids)
	}
	for _, r := range rows {
		if got := c.Node.FileSHA256(t, c.ID, r.ID); got != r.SHA256 {
			return fmt.Errorf("version %d: file hashes to %q, row says %s", r.Number, got, r.SHA256)
		}
	}
	if n := s.LiveReservations(t, c.ID); n != 0 {
		return fmt.Errorf("%d live upload reservations on %s, want 0", n, c.ID)
	}
	return nil
}

// eventuallyStored is stored for outcomes the product reaches asynchronously (a client that
// went away is noticed by the node only when its next read fails).
func eventuallyStored(t *testing.T, s *stack.Stack, c coll, want ...int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := storedErr(s, t, c, want...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// refused checks an answer's status and machine code.
func refused(t *testing.T, a stack.Answer, status int, code string) {
	t.Helper()
	if a.Status != status || a.Code() != code || a.Envelope.Status {
		t.Fatalf("answer %s, want %d with code %s", a, status, code)
	}
}

// accepted checks a 200 upload answer against the bytes sent and returns the version.
func accepted(t *testing.T, a stack.Answer, body []byte) stack.Version {
	t.Helper()
	if a.Status != 200 {
		t.Fatalf("upload answered %s, want 200", a)
	}
	v, err := a.Version()
	if err != nil {
		t.Fatal(err)
	}
	if v.Size != int64(len(body)) || v.SHA256 != sha(body) {
		t.Fatalf("upload answered size %d sha256 %s, sent %d bytes hashing to %s", v.Size, v.SHA256, len(body), sha(body))
	}
	return v
}

// limits is a CreateCollectionInput for tenant with the given limits and FIFO.
func limits(tenant string, count int, one, total int64) map[string]any {
	return map[string]any{"tenantId": tenant, "maxBackupsCount": count, "maxOneVersionSize": one, "maxCollectionSize": total}
}

// with returns a copy of in with the extra fields set.
func with(in map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(in)+len(kv)/2)
	for k, v := range in {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// client calls the collection endpoints as one token's bearer; a transport error fails the
// test (answers, whatever their status, are returned).
type client struct {
	t     *testing.T
	s     *stack.Stack
	token string
}

func (c client) upload(base, collectionID string, body []byte, o stack.UploadOptions) stack.Answer {
	c.t.Helper()
	return c.uploadFrom(base, collectionID, bytes.NewReader(body), o)
}

func (c client) uploadFrom(base, collectionID string, body io.Reader, o stack.UploadOptions) stack.Answer {
	c.t.Helper()
	a, err := c.s.Upload(c.t.Context(), base, c.token, collectionID, body, o)
	if err != nil {
		c.t.Fatalf("upload to %s: %v", base, err)
	}
	return a
}

func (c client) list(base, collectionID string, o stack.ReadOptions) stack.Answer {
	c.t.Helper()
	a, err := c.s.List(c.t.Context(), base, c.token, collectionID, o)
	if err != nil {
		c.t.Fatalf("list at %s: %v", base, err)
	}
	return a
}

func (c client) download(base, collectionID, ref string, o stack.ReadOptions) stack.Answer {
	c.t.Helper()
	a, err := c.s.Download(c.t.Context(), base, c.token, collectionID, ref, o)
	if err != nil {
		c.t.Fatalf("download from %s: %v", base, err)
	}
	return a
}

func (c client) deleteVersion(base, collectionID, ref string) stack.Answer {
	c.t.Helper()
	a, err := c.s.DeleteVersion(c.t.Context(), base, c.token, collectionID, ref, stack.ReadOptions{})
	if err != nil {
		c.t.Fatalf("delete at %s: %v", base, err)
	}
	return a
}

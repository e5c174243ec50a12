package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

// callTimeout bounds one ordinary client request of a scenario.
const callTimeout = 60 * time.Second

// tenant is a tenant with a user allowed to upload and download, and that user's token.
type tenant struct {
	id    string
	token string
	user  stack.User
}

// newTenant creates a tenant (quota 10 GiB) and an uploader/downloader of it.
func newTenant(t *testing.T, c *cluster) tenant {
	t.Helper()
	id := c.api.CreateTenant(t, map[string]any{"quota": "10GiB"})
	u, tok := c.api.Uploader(t, id, "backupUploader", "backupDownloader")
	return tenant{id: id, token: tok.Token, user: u}
}

// newCollection creates a small FIFO collection of tn and returns its id and node.
func newCollection(t *testing.T, c *cluster, tn tenant) (id, node string) {
	t.Helper()
	return c.api.CreateCollection(t, map[string]any{
		"tenantId": tn.id, "description": t.Name(), "maxBackupsCount": 5,
		"maxOneVersionSize": "64MiB", "maxCollectionSize": "320MiB", "strategy": "FIFO",
	})
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// upload sends data as a new version through base (front door or node) as Backup Maker does
// (chunked, no length) and requires a 200 holding a version with the right digest.
func upload(t *testing.T, c *cluster, base, token, collection string, data []byte) stack.Version {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	a, err := c.api.Upload(ctx, base, token, collection, bytes.NewReader(data), stack.UploadOptions{Chunked: true})
	if err != nil {
		t.Fatalf("upload to %s of %s: %v", collection, base, err)
	}
	if a.Status != http.StatusOK {
		t.Fatalf("upload to %s of %s answered %s", collection, base, a)
	}
	v, err := a.Version()
	if err != nil {
		t.Fatal(err)
	}
	if v.SHA256 != sha(data) || v.Size != int64(len(data)) || v.CollectionID != collection {
		t.Fatalf("upload answered version %+v; want %d bytes with sha256 %s in %s", v, len(data), sha(data), collection)
	}
	return v
}

// download fetches ref of collection through base and requires its bytes to hash to want.
func download(t *testing.T, c *cluster, base, token, collection, ref, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	a, err := c.api.Download(ctx, base, token, collection, ref, stack.ReadOptions{})
	if err != nil {
		t.Fatalf("download %s of %s from %s: %v", ref, collection, base, err)
	}
	if a.Status != http.StatusOK {
		t.Fatalf("download %s of %s from %s answered %s", ref, collection, base, a)
	}
	if got := sha(a.Body); got != want {
		t.Fatalf("download %s of %s from %s: sha256 %s, want %s", ref, collection, base, got, want)
	}
	if etag := strings.Trim(a.Header.Get("ETag"), `"`); etag != want {
		t.Errorf("download %s of %s: ETag %q, want the sha256 %s", ref, collection, etag, want)
	}
}

// listIDs lists collection's version ids through base, newest first.
func listIDs(t *testing.T, c *cluster, base, token, collection string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	a, err := c.api.List(ctx, base, token, collection, stack.ReadOptions{})
	if err != nil {
		t.Fatalf("list %s: %v", collection, err)
	}
	if a.Status != http.StatusOK {
		t.Fatalf("list %s answered %s", collection, a)
	}
	vs, err := a.Versions()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(vs))
	for i, v := range vs {
		ids[i] = v.ID
	}
	return ids
}

// requireStored checks that exactly the versions vs of collection are on node's disk, with
// their digests, that no other node holds files of it, and that nothing temporary is left.
func requireStored(t *testing.T, c *cluster, node *dataNode, collection string, vs ...stack.Version) {
	t.Helper()
	want := make([]string, 0, len(vs))
	for _, v := range vs {
		want = append(want, v.ID)
		if got := node.view.FileSHA256(t, collection, v.ID); got != v.SHA256 {
			t.Errorf("%s's disk holds version %d of %s with sha256 %q, want %s", node.name, v.Number, collection, got, v.SHA256)
		}
	}
	slices.Sort(want)
	if got := node.view.CollectionFiles(t, collection); !slices.Equal(got, want) {
		t.Errorf("%s's disk holds %v for %s, want exactly %v", node.name, got, collection, want)
	}
	for _, o := range c.nodes {
		if o != node && len(o.view.CollectionFiles(t, collection)) > 0 {
			t.Errorf("%s holds files of %s, which lives on %s: %v", o.name, collection, node.name, o.view.CollectionFiles(t, collection))
		}
	}
	if left := node.view.Leftovers(t); len(left) > 0 {
		t.Errorf("%s's disk has temporary files after finished uploads: %v", node.name, left)
	}
}

// orphanProblems compares every node's disk with the versions table and describes each
// disagreement: a stored file that is not the file of a version recorded on that node, a
// version recorded on a node without its file, a temporary or staged file.
func orphanProblems(t *testing.T, c *cluster) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	rows, err := c.db.Query(ctx, `SELECT collection_id, id::text, node_name FROM versions`)
	if err != nil {
		t.Fatalf("query versions: %v", err)
	}
	recorded := map[string]string{} // "collection/version" -> node
	for rows.Next() {
		var coll, id, node string
		if err := rows.Scan(&coll, &id, &node); err != nil {
			t.Fatalf("scan versions: %v", err)
		}
		recorded[coll+"/"+id] = node
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read versions: %v", err)
	}
	var problems []string
	onDisk := map[string]string{}
	for _, n := range c.nodes {
		for _, f := range n.view.Files(t) {
			parts := strings.Split(f, string(filepath.Separator))
			if len(parts) != 3 || parts[0] != "collections" {
				continue // not a stored version (e.g. a health probe file)
			}
			if strings.HasPrefix(parts[2], ".tmp-") || strings.HasPrefix(parts[2], ".staged-") {
				problems = append(problems, fmt.Sprintf("%s holds a temporary file %s", n.name, f))
				continue
			}
			key := parts[1] + "/" + parts[2]
			onDisk[key] = n.name
			if node, ok := recorded[key]; !ok {
				problems = append(problems, fmt.Sprintf("orphan file on %s: %s has no version row", n.name, f))
			} else if node != n.name {
				problems = append(problems, fmt.Sprintf("file %s is on %s but its version row says %s", f, n.name, node))
			}
		}
	}
	for key, node := range recorded {
		if onDisk[key] != node {
			problems = append(problems, fmt.Sprintf("version %s is recorded on %s but its file is not there", key, node))
		}
	}
	slices.Sort(problems)
	return problems
}

// slowBody is an upload body that trickles pseudo-random bytes, so that a test can act while
// the upload is in flight. It hashes what it sent and signals once mark bytes are out.
type slowBody struct {
	rnd   *rand.ChaCha8
	total int64
	chunk int
	delay time.Duration

	mu   sync.Mutex // the transport may still read while the test hashes
	hash hash.Hash

	sent   atomic.Int64
	mark   int64
	marked chan struct{}
	once   sync.Once
	closed atomic.Bool
}

var errBodyClosed = errors.New("upload body closed")

// newSlowBody sends total bytes, chunk bytes every delay.
func newSlowBody(total int64, chunk int, delay time.Duration, mark int64) *slowBody {
	var seed [32]byte
	copy(seed[:], randomBytes(32))
	return &slowBody{rnd: rand.NewChaCha8(seed), total: total, chunk: chunk, delay: delay, hash: sha256.New(),
		mark: mark, marked: make(chan struct{})}
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errBodyClosed
	}
	sent := b.sent.Load()
	if sent >= b.total {
		return 0, io.EOF
	}
	time.Sleep(b.delay)
	n := int(min(int64(len(p)), int64(b.chunk), b.total-sent))
	b.mu.Lock()
	_, _ = b.rnd.Read(p[:n])
	b.hash.Write(p[:n])
	b.mu.Unlock()
	if b.sent.Add(int64(n)) >= b.mark {
		b.once.Do(func() { close(b.marked) })
	}
	return n, nil
}

// Close makes further reads fail, so that a transport giving up stops the trickle.
func (b *slowBody) Close() error {
	b.closed.Store(true)
	return nil
}

// sum is the sha256 of everything sent; only valid once the upload returned.
func (b *slowBody) sum() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return hex.EncodeToString(b.hash.Sum(nil))
}

// result is how an upload in flight ended.
type result struct {
	answer stack.Answer
	err    error
	took   time.Duration
}

func (r result) String() string {
	if r.err != nil {
		return "error " + r.err.Error()
	}
	return r.answer.String()
}

// startUpload runs a chunked upload of body in the background; the result arrives on the
// channel. ctx bounds it.
func startUpload(ctx context.Context, api *stack.Stack, base, token, collection string, body io.Reader) <-chan result {
	out := make(chan result, 1)
	go func() {
		start := time.Now()
		a, err := api.Upload(ctx, base, token, collection, body, stack.UploadOptions{Chunked: true})
		out <- result{answer: a, err: err, took: time.Since(start)}
	}()
	return out
}

// waitMark waits until b sent its mark, or fails the test.
func waitMark(t *testing.T, b *slowBody, up <-chan result) {
	t.Helper()
	select {
	case <-b.marked:
	case r := <-up:
		t.Fatalf("the slow upload ended before it was under way: %s", r)
	case <-time.After(30 * time.Second):
		t.Fatalf("the slow upload sent only %d bytes in 30 s", b.sent.Load())
	}
}

// get sends a GET with token to url and returns the status and body.
func get(ctx context.Context, url, token string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAllLimited(resp.Body, 1<<20), nil
}

// retryAfter parses a Retry-After header in seconds; 0 when missing or not a positive number.
func retryAfter(h http.Header) int {
	n, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

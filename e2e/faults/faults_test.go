package faults

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

const (
	mib = 1 << 20
	// bigSize is the upload killed part-way: large enough that its progress can be picked by
	// the byte.
	bigSize = 64 * mib
	// retryWindow is how soon after a crash the same upload must be accepted again: the
	// upload lock's lease in Redis is 60 s.
	retryWindow = 70 * time.Second
)

// body is a deterministic pseudo-random upload body: the same seed gives the same bytes, so
// a retry sends "the same upload" and its hash is known without holding it in memory.
type body struct {
	rng   *rand.ChaCha8
	left  int64
	sent  int64
	sum   hash.Hash
	at    int64  // when sent reaches at, hook runs once, in Read, before more bytes go
	hook  func() // nil: no hook
	fired bool
}

func newBody(seed byte, size int64) *body {
	var s [32]byte
	s[0] = seed
	return &body{rng: rand.NewChaCha8(s), left: size, sum: sha256.New(), at: -1}
}

func (b *body) Read(p []byte) (int, error) {
	if b.hook != nil && !b.fired && b.sent >= b.at {
		b.fired = true
		b.hook()
	}
	if b.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	if b.hook != nil && !b.fired && b.sent+int64(len(p)) > b.at {
		p = p[:b.at-b.sent] // stop exactly at the hook's byte; it runs at the next Read
	}
	_, _ = b.rng.Read(p)
	b.sum.Write(p)
	b.left -= int64(len(p))
	b.sent += int64(len(p))
	return len(p), nil
}

// sha256Of hashes the body a seed gives without sending it.
func sha256Of(seed byte, size int64) string {
	b := newBody(seed, size)
	_, _ = io.Copy(io.Discard, b)
	return hex.EncodeToString(b.sum.Sum(nil))
}

func sha(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:])
}

// world is a stack with one data node, one collection on it and an uploader's token.
type world struct {
	s    *stack.Stack
	node *stack.Node
	coll string
	tok  string
	// committed maps the version ids known committed to their sha256.
	mu        sync.Mutex
	committed map[string]string
}

func newWorld(t *testing.T) *world {
	s := stack.Start(t, stack.Options{Binaries: bins, DataNodes: 1})
	tenant := s.CreateTenant(t, nil)
	id, node := s.CreateCollection(t, map[string]any{"tenantId": tenant, "maxBackupsCount": 50,
		"maxOneVersionSize": 100 * mib, "maxCollectionSize": 5000 * mib})
	_, tok := s.Uploader(t, tenant, "backupUploader", "backupDownloader")
	w := &world{s: s, node: s.Node(node), coll: id, tok: tok.Token, committed: map[string]string{}}
	// A version committed before any crash, which every crash must leave intact.
	w.mustUpload(t, s.URL, 1, 3*mib)
	return w
}

// mustUpload uploads the body of seed and records the committed version.
func (w *world) mustUpload(t *testing.T, base string, seed byte, size int64) stack.Version {
	t.Helper()
	a, err := w.s.Upload(t.Context(), base, w.tok, w.coll, newBody(seed, size), stack.UploadOptions{ContentLength: size})
	if err != nil || a.Status != http.StatusOK {
		t.Fatalf("upload: %v %s", err, a)
	}
	return w.record(t, a, sha256Of(seed, size))
}

func (w *world) record(t *testing.T, a stack.Answer, wantSHA string) stack.Version {
	t.Helper()
	v, err := a.Version()
	if err != nil {
		t.Fatal(err)
	}
	if v.SHA256 != wantSHA {
		t.Fatalf("version %d answered sha256 %s, sent %s", v.Number, v.SHA256, wantSHA)
	}
	w.mu.Lock()
	w.committed[v.ID] = v.SHA256
	w.mu.Unlock()
	return v
}

// adoptLostCommit records as committed a version whose commit happened but whose answer the
// client never got. A node killed during its commit call can die after the control plane has
// committed and before the answer reached the node; the restarted node then learns the
// outcome and finalizes the file. Only a version of the crashed upload (its sha256) that the
// control plane holds is adopted; consistent then demands its file and download like any
// other's.
func (w *world) adoptLostCommit(t *testing.T, sum string) {
	t.Helper()
	rows := w.s.VersionRows(t, w.coll)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range rows {
		if _, ok := w.committed[r.ID]; !ok && r.SHA256 == sum {
			t.Logf("version %d was committed before the node died, though the client got no 200 for it", r.Number)
			w.committed[r.ID] = r.SHA256
		}
	}
}

// consistent checks what a crash may not leave behind: the versions rows are exactly the
// committed versions, the node's disk holds exactly their files (no .tmp-/.staged- file),
// each file and each download through the front door hashes to its row, and the listing
// shows no other version.
func (w *world) consistent(t *testing.T) error {
	t.Helper()
	rows := w.s.VersionRows(t, w.coll)
	w.mu.Lock()
	want := slices.Sorted(func(yield func(string) bool) {
		for id := range w.committed {
			if !yield(id) {
				return
			}
		}
	})
	w.mu.Unlock()
	if got := stack.IDs(rows); !slices.Equal(got, want) {
		return fmt.Errorf("versions rows %v, want the committed %v", got, want)
	}
	if l := w.node.Leftovers(t); len(l) > 0 {
		return fmt.Errorf("temporary or staged files left on %s: %v", w.node.Name, l)
	}
	if files := w.node.CollectionFiles(t, w.coll); !slices.Equal(files, want) {
		return fmt.Errorf("files of the collection on disk %v, want the committed %v", files, want)
	}
	for _, r := range rows {
		if got := w.node.FileSHA256(t, w.coll, r.ID); got != r.SHA256 {
			return fmt.Errorf("stored file of version %d hashes to %s, row says %s", r.Number, got, r.SHA256)
		}
	}
	a, err := w.s.List(t.Context(), w.s.URL, w.tok, w.coll, stack.ReadOptions{})
	if err != nil {
		return err
	}
	listed, err := a.Versions()
	if err != nil {
		return err
	}
	if len(listed) != len(want) {
		return fmt.Errorf("the listing shows %d versions, want %d: %s", len(listed), len(want), a)
	}
	for _, r := range rows {
		d, err := w.s.Download(t.Context(), w.s.URL, w.tok, w.coll, r.ID, stack.ReadOptions{})
		if err != nil {
			return err
		}
		if d.Status != http.StatusOK || sha(d.Body) != r.SHA256 {
			return fmt.Errorf("download of version %d: status %d, sha256 %s, want 200 and %s", r.Number, d.Status, sha(d.Body), r.SHA256)
		}
	}
	return nil
}

// eventually polls check until it passes or within passes.
func eventually(t *testing.T, within time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s, still after %s: %v", what, within, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// retry sends the same upload (seed) again until it is accepted, within retryWindow, and
// reports how long it took and the refusals met on the way.
func (w *world) retry(t *testing.T, base string, seed byte, size int64) (time.Duration, []string) {
	t.Helper()
	start := time.Now()
	var refusals []string
	for {
		a, err := w.s.Upload(t.Context(), base, w.tok, w.coll, newBody(seed, size), stack.UploadOptions{ContentLength: size})
		switch {
		case err == nil && a.Status == http.StatusOK:
			w.record(t, a, sha256Of(seed, size))
			return time.Since(start), refusals
		case err != nil:
			refusals = append(refusals, err.Error())
		default:
			refusals = append(refusals, fmt.Sprintf("%d %s", a.Status, a.Code()))
			// The crashed upload's lock may hold until its lease ends; anything else is a
			// refusal the client cannot make sense of.
			if a.Status != http.StatusConflict || a.Code() != "UPLOAD_IN_PROGRESS" {
				t.Errorf("retry refused with %s, want only 409 UPLOAD_IN_PROGRESS while the old lock lives", a)
			}
		}
		if time.Since(start) > retryWindow {
			t.Fatalf("the same upload was still refused %s after the crash: %v", retryWindow, compact(refusals))
		}
		time.Sleep(2 * time.Second)
	}
}

// compact collapses repeated refusals: "409 UPLOAD_IN_PROGRESS ×12".
func compact(xs []string) []string {
	var out []string
	for i := 0; i < len(xs); {
		j := i
		for j < len(xs) && xs[j] == xs[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, fmt.Sprintf("%s ×%d", xs[i], j-i))
		} else {
			out = append(out, xs[i])
		}
		i = j
	}
	return out
}

// TestDataNodeKilledDuringUpload kills the data node (SIGKILL) while a 64 MiB upload streams
// through the front door, at 10 %, 50 % and 99 % of the body and right after its last byte
// (during the commit), restarts it and checks nothing partial remains, nothing committed is
// lost and the same upload goes through on retry.
func TestDataNodeKilledDuringUpload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		at   int64
	}{
		{"10%", bigSize / 10},
		{"50%", bigSize / 2},
		{"99%", bigSize / 100 * 99},
		{"commit", bigSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			const seed = 7
			b := newBody(seed, bigSize)
			b.at = tc.at
			killed := make(chan time.Time, 1)
			b.hook = func() {
				if tc.at == bigSize {
					// The last byte is out; give the node the moment it needs to take it in,
					// then kill it while it hashes, renames and commits.
					time.Sleep(20 * time.Millisecond)
				}
				_ = w.node.Kill()
				killed <- time.Now()
			}
			a, err := w.s.Upload(t.Context(), w.s.URL, w.tok, w.coll, b, stack.UploadOptions{ContentLength: bigSize})
			// The hook sends on killed once the node has exited; the front door may answer the
			// client a moment before Kill returns, so wait for it rather than expect it.
			select {
			case <-killed:
			case <-time.After(10 * time.Second):
				t.Fatalf("the upload ended without the kill at byte %d: %v %s", tc.at, err, a)
			}
			switch {
			case err != nil:
				t.Logf("client error: %v", err)
			case a.Status == http.StatusOK:
				// The commit beat the kill: then it must be there after the restart.
				t.Logf("the commit beat the kill")
				w.record(t, a, hex.EncodeToString(b.sum.Sum(nil)))
			case a.Status == http.StatusServiceUnavailable && a.Code() != "" && a.Header.Get("Retry-After") != "":
				t.Logf("client got %s", a)
			default:
				t.Errorf("a crash mid-upload answered %s, want a transport error or 503 with a code and Retry-After", a)
			}

			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			if err := w.node.Restart(ctx); err != nil {
				t.Fatalf("restart %s: %v", w.node.Name, err)
			}
			if err := w.s.WaitNodesAlive(ctx, w.node); err != nil {
				t.Fatal(err)
			}
			if tc.at == bigSize && (err != nil || a.Status != http.StatusOK) {
				w.adoptLostCommit(t, hex.EncodeToString(b.sum.Sum(nil)))
			}
			took := eventually(t, 5*time.Second, "after the restart", func() error { return w.consistent(t) })
			t.Logf("consistent %s after the node served again", took.Round(time.Millisecond))
			// The restarted node aborts what it lost: no reservation or lock is left to expire.
			if live := w.s.LiveReservations(t, w.coll); live != 0 {
				t.Errorf("live reservations right after the restart: %d, want 0", live)
			}

			d, refusals := w.retry(t, w.s.URL, seed, bigSize)
			t.Logf("the same upload succeeded %s after the restart; refusals on the way: %v", d.Round(time.Millisecond), compact(refusals))
			if len(refusals) != 0 {
				t.Errorf("the same upload was refused after the node restarted: %v", compact(refusals))
			}
			if err := w.consistent(t); err != nil {
				t.Fatal(err)
			}
			if n := w.s.LiveReservations(t, w.coll); n != 0 {
				t.Errorf("%d live reservations after the retry, want 0", n)
			}
		})
	}
}

// TestControlPlaneKilled kills the control plane (SIGKILL) while a data node admits an upload
// sent to it directly, and while it commits one, then restarts the control plane: the client
// must get a clear error unless the commit happened, the node must keep no file whose commit
// did not happen, and a commit that happened must not be lost.
func TestControlPlaneKilled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// at is the byte of the body at which the control plane dies; 0 is right after the
		// headers, while the node asks for admission.
		at int64
	}{
		{"admit", 0},
		{"commit", bigSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			const seed = 9
			b := newBody(seed, bigSize)
			b.at = tc.at
			killed := make(chan struct{})
			b.hook = func() {
				_ = w.s.ControlPlane.Kill()
				close(killed)
			}
			start := time.Now()
			a, err := w.s.Upload(t.Context(), w.node.URL, w.tok, w.coll, b, stack.UploadOptions{ContentLength: bigSize})
			// The node may answer before the transport has finished the body (and the kill).
			select {
			case <-killed:
			case <-time.After(30 * time.Second):
				t.Fatalf("the upload ended before the control plane was killed: %v %s", err, a)
			}
			t.Logf("answer after %s: %v %s", time.Since(start).Round(time.Millisecond), err, a)
			committedNow := false
			switch {
			case err == nil && a.Status == http.StatusOK:
				committedNow = true
				w.record(t, a, hex.EncodeToString(b.sum.Sum(nil)))
			case err != nil:
				t.Errorf("the node dropped the connection instead of answering: %v", err)
			case a.Status != http.StatusServiceUnavailable || a.Code() == "":
				t.Errorf("with the control plane down the node answered %s, want 503 with a machine code", a)
			}

			// While the control plane is down the node may hold a staged file whose outcome
			// it does not know; it must not be visible, and no temporary file may remain.
			for _, f := range w.node.Leftovers(t) {
				t.Logf("while the control plane is down: %s", f)
			}

			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			if err := w.s.ControlPlane.Restart(ctx); err != nil {
				t.Fatalf("restart the control plane: %v", err)
			}
			if err := w.s.WaitNodesAlive(ctx, w.node); err != nil {
				t.Fatal(err)
			}
			// Did the commit happen? PostgreSQL is the authority.
			rows := w.s.VersionRows(t, w.coll)
			if !committedNow && len(rows) == 2 {
				t.Logf("the commit happened though the client got no 200; the node must keep its file")
				w.mu.Lock()
				w.committed[rows[1].ID] = rows[1].SHA256
				w.mu.Unlock()
				if rows[1].SHA256 != hex.EncodeToString(b.sum.Sum(nil)) {
					t.Errorf("the committed row's sha256 %s is not the body's", rows[1].SHA256)
				}
			}
			// The node settles an unknown outcome a minute after the failed commit.
			took := eventually(t, 90*time.Second, "after the control plane came back", func() error { return w.consistent(t) })
			t.Logf("consistent %s after the control plane served again", took.Round(time.Millisecond))

			d, refusals := w.retry(t, w.node.URL, seed, bigSize)
			t.Logf("the same upload succeeded %s after the restart; refusals on the way: %v", d.Round(time.Millisecond), compact(refusals))
			if err := w.consistent(t); err != nil {
				t.Fatal(err)
			}
		})
	}
}

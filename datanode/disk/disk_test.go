package disk

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"backuprepo/shared"
)

func newID(t testing.TB) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func openStore(t testing.TB, dirs ...string) *Store {
	t.Helper()
	if len(dirs) == 0 {
		dirs = []string{t.TempDir()}
	}
	s, err := Open(context.Background(), Config{Dirs: dirs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// files lists every regular file under dir, relative to it.
func files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func assertEmpty(t testing.TB, dir string) {
	t.Helper()
	if f := files(t, dir); len(f) != 0 {
		t.Fatalf("files left behind in %s: %v", dir, f)
	}
}

func TestOpenRejectsBadDirs(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(base, "missing")
	tests := []struct {
		name string
		dirs []string
		want string
	}{
		{"none", nil, "no directories"},
		{"missing", []string{missing}, missing},
		{"not a dir", []string{file}, file},
		{"twice", []string{base, base + "/."}, "listed twice"},
	}
	for _, tt := range tests {
		_, err := Open(context.Background(), Config{Dirs: tt.dirs})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Open error = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(base, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(context.Background(), Config{Dirs: []string{ro}}); err == nil || !strings.Contains(err.Error(), ro) {
			t.Errorf("read-only dir: Open error = %v, want it to name %s", err, ro)
		}
	}
}

func TestWriteRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	// Sizes around the block boundaries catch off-by-one errors in the pipeline.
	for _, n := range []int{0, 1, defaultBufSize - 1, defaultBufSize, defaultBufSize + 1, 3*defaultBufSize*defaultBufCount + 17} {
		data := randomBytes(t, n)
		up, ver := newID(t), newID(t)
		// iotest-style one-byte-at-a-time reads would be slow; a short-read reader is enough.
		st, err := s.Write(context.Background(), "round-trip", up, &shortReader{r: bytes.NewReader(data), max: 7001}, -1)
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		want := sha256.Sum256(data)
		if st.Size != int64(n) || st.SHA256 != hex.EncodeToString(want[:]) || st.UploadID != up || st.CollectionID != "round-trip" {
			t.Fatalf("size %d: staged = %+v, want size %d sha %x", n, st, n, want)
		}
		if filepath.Base(st.Path) != stagedPrefix+up {
			t.Fatalf("staged path %s", st.Path)
		}
		if err := s.Finalize(st, ver); err != nil {
			t.Fatal(err)
		}
		if err := s.Finalize(st, ver); err != nil {
			t.Fatalf("second Finalize: %v", err)
		}
		f, fi, err := s.OpenVersion("round-trip", ver)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != int64(n) || !bytes.Equal(got, data) {
			t.Fatalf("size %d: read back %d bytes, differ=%v", n, len(got), !bytes.Equal(got, data))
		}
		if err := s.Remove("round-trip", ver); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove("round-trip", ver); err != nil {
			t.Fatalf("second Remove: %v", err)
		}
		if _, _, err := s.OpenVersion("round-trip", ver); !errors.Is(err, ErrNotFound) {
			t.Fatalf("OpenVersion after Remove: %v", err)
		}
	}
	assertEmpty(t, dir)
	if err := s.RemoveCollection("round-trip"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, collectionsDir, "round-trip")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("collection directory still there: %v", err)
	}
}

type shortReader struct {
	r   io.Reader
	max int
}

func (s *shortReader) Read(p []byte) (int, error) {
	if len(p) > s.max {
		p = p[:s.max]
	}
	return s.r.Read(p)
}

func TestWriteLimit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	data := randomBytes(t, 1<<20)
	tests := []struct {
		limit int64
		ok    bool
	}{
		{-1, true},
		{1 << 20, true},
		{1<<20 - 1, false},
		{0, false},
		{100, false},
	}
	for _, tt := range tests {
		r := &countingReader{r: bytes.NewReader(data)}
		st, err := s.Write(context.Background(), "limits", newID(t), r, tt.limit)
		if tt.ok {
			if err != nil || st.Size != int64(len(data)) {
				t.Fatalf("limit %d: %+v, %v", tt.limit, st, err)
			}
			if err := s.Discard(st); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if !errors.Is(err, ErrTooLarge) || shared.ErrorCode(err) != shared.CodePayloadTooLarge {
			t.Fatalf("limit %d: err = %v, want ErrTooLarge", tt.limit, err)
		}
		if r.n > tt.limit+1 {
			t.Errorf("limit %d: read %d bytes, want at most limit+1", tt.limit, r.n)
		}
		assertEmpty(t, dir)
	}
	// An empty body with a zero limit is fine at this layer.
	st, err := s.Write(context.Background(), "limits", newID(t), bytes.NewReader(nil), 0)
	if err != nil || st.Size != 0 {
		t.Fatalf("empty body: %+v, %v", st, err)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// failingReader yields n bytes and then err, like a client that disconnects mid-body.
type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	m := min(len(p), f.n)
	clear(p[:m])
	f.n -= m
	return m, nil
}

func TestWriteReaderErrorLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	for _, n := range []int{0, 10, 5 << 20} {
		_, err := s.Write(context.Background(), "broken", newID(t), &failingReader{n: n, err: io.ErrUnexpectedEOF}, -1)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("after %d bytes: err = %v", n, err)
		}
		assertEmpty(t, dir)
	}
}

// cancellingReader cancels its context after n bytes but keeps producing data, so only the
// store's own check can stop the transfer.
type cancellingReader struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	c.n -= len(p)
	return len(p), nil
}

func TestWriteCancelLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := s.Write(ctx, "cancel", newID(t), &cancellingReader{n: 3 << 20, cancel: cancel}, -1)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertEmpty(t, dir)
}

func TestIDsRefused(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dir := filepath.Join(base, "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir)
	good := newID(t)
	st, err := s.Write(context.Background(), "ok", good, bytes.NewReader([]byte("x")), -1)
	if err != nil {
		t.Fatal(err)
	}
	bad := []string{"", "..", ".", "../x", "a/b", "a\x00b", "%2e%2e", strings.Repeat("a", 65), "collections/../.."}
	for _, c := range bad {
		if _, err := s.Write(context.Background(), c, newID(t), bytes.NewReader(nil), -1); shared.ErrorCode(err) != shared.CodeInvalidInput {
			t.Errorf("Write collection %q: err = %v", c, err)
		}
		if _, _, err := s.OpenVersion(c, good); shared.ErrorCode(err) != shared.CodeInvalidInput {
			t.Errorf("OpenVersion collection %q: err = %v", c, err)
		}
		if err := s.Remove(c, good); shared.ErrorCode(err) != shared.CodeInvalidInput {
			t.Errorf("Remove collection %q: err = %v", c, err)
		}
		if s.Room(c) != 0 {
			t.Errorf("Room(%q) = %d", c, s.Room(c))
		}
	}
	badUUID := append(bad[1:], "ok", good+"x", good[:35]+"/", "../ok/"+good[6:])
	for _, v := range badUUID {
		if _, err := s.Write(context.Background(), "ok", v, bytes.NewReader(nil), -1); shared.ErrorCode(err) != shared.CodeInvalidInput {
			t.Errorf("Write upload %q: err = %v", v, err)
		}
		if _, _, err := s.OpenVersion("ok", v); shared.ErrorCode(err) != shared.CodeInvalidInput {
			t.Errorf("OpenVersion %q: err = %v", v, err)
		}
		if err := s.Finalize(st, v); shared.ErrorCode(err) != shared.CodeInvalidInput {
			t.Errorf("Finalize as %q: err = %v", v, err)
		}
		if err := s.Finalize(Staged{CollectionID: "ok", UploadID: v}, good); shared.ErrorCode(err) != shared.CodeInvalidInput {
			t.Errorf("Finalize upload %q: err = %v", v, err)
		}
		if err := s.Discard(Staged{CollectionID: "ok", UploadID: v}); shared.ErrorCode(err) != shared.CodeInvalidInput {
			t.Errorf("Discard upload %q: err = %v", v, err)
		}
	}
	// Nothing was created outside the disk directory, and inside it only the one staged file
	// (small: no sidecar).
	staged := filepath.Join("disk", collectionsDir, "ok", stagedPrefix+good)
	if got := files(t, base); !slices.Equal(got, []string{staged}) {
		t.Fatalf("files = %v", got)
	}
}

func TestOpenCleansTempAndReportsStaged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	ver := newID(t)
	// Both large enough to have sidecars.
	body := randomBytes(t, noSidecarMax+1)
	committed, err := s.Write(context.Background(), "c1", newID(t), bytes.NewReader(body), -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Finalize(committed, ver); err != nil {
		t.Fatal(err)
	}
	staged, err := s.Write(context.Background(), "c2", newID(t), bytes.NewReader(body), -1)
	if err != nil {
		t.Fatal(err)
	}
	// Simulate a crash mid-upload: temp files in two collections, a temp sidecar, sidecars
	// whose files are gone, and a leftover health probe.
	for _, p := range []string{
		filepath.Join(dir, collectionsDir, "c1", tmpPrefix+"deadbeef"),
		filepath.Join(dir, collectionsDir, "c1", tmpPrefix+"deadbeef"+sumsSuffix),
		filepath.Join(dir, collectionsDir, "c1", "."+newID(t)+sumsSuffix),
		filepath.Join(dir, collectionsDir, "c2", stagedPrefix+newID(t)+sumsSuffix),
		filepath.Join(dir, collectionsDir, "c2", tmpPrefix+"cafe"),
		filepath.Join(dir, checkPrefix+"1234"),
	} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	s2 := openStore(t, dir)
	want := []string{
		filepath.Join(collectionsDir, "c1", "."+ver+sumsSuffix),
		filepath.Join(collectionsDir, "c1", ver),
		filepath.Join(collectionsDir, "c2", stagedPrefix+staged.UploadID),
		filepath.Join(collectionsDir, "c2", stagedPrefix+staged.UploadID+sumsSuffix),
	}
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Fatalf("after Open: files = %v, want %v", got, want)
	}
	pending := s2.Pending()
	if len(pending) != 1 || pending[0].UploadID != staged.UploadID || pending[0].CollectionID != "c2" ||
		pending[0].Size != int64(len(body)) || pending[0].Path != staged.Path {
		t.Fatalf("Pending = %+v, want %+v", pending, staged)
	}
	f, _, err := s2.OpenVersion("c1", ver)
	if err != nil {
		t.Fatalf("committed version lost: %v", err)
	}
	f.Close()
	v2 := newID(t)
	if err := s2.Finalize(pending[0], v2); err != nil {
		t.Fatal(err)
	}
	if len(s2.Pending()) != 0 {
		t.Fatalf("Pending after Finalize = %v", s2.Pending())
	}
	if err := s2.Discard(pending[0]); err != nil {
		t.Fatalf("Discard after Finalize: %v", err)
	}
	if _, _, err := s2.OpenVersion("c2", v2); err != nil {
		t.Fatal(err)
	}
}

func TestDiscard(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	st, err := s.Write(context.Background(), "d", newID(t), bytes.NewReader([]byte("bye")), -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Discard(st); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, dir)
	if err := s.Finalize(st, newID(t)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Finalize after Discard: %v", err)
	}
}

func TestConcurrentWrites(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), t.TempDir())
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers*3)
	for i := range writers {
		wg.Go(func() {
			coll := fmt.Sprintf("coll-%d", i%4) // two writers share each collection
			for range 3 {
				data := make([]byte, 700_000+i*1000)
				if _, err := rand.Read(data); err != nil {
					errs <- err
					return
				}
				st, err := s.Write(context.Background(), coll, newID(t), bytes.NewReader(data), -1)
				if err != nil {
					errs <- err
					return
				}
				ver := newID(t)
				if err := s.Finalize(st, ver); err != nil {
					errs <- err
					return
				}
				f, _, err := s.OpenVersion(coll, ver)
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(f)
				f.Close()
				if err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("%s/%s: read back differs (%v)", coll, ver, err)
					return
				}
				_ = s.Room(coll)
				_ = s.Capacity()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCheckAndCapacity(t *testing.T) {
	t.Parallel()
	a, b := t.TempDir(), t.TempDir()
	s := openStore(t, a, b)
	res := s.Check(context.Background())
	if len(res) != 2 || res[a] != nil || res[b] != nil {
		t.Fatalf("Check = %v", res)
	}
	assertEmpty(t, a)
	// A disk that is no longer writable fails the check.
	if err := os.RemoveAll(b); err != nil {
		t.Fatal(err)
	}
	if res := s.Check(context.Background()); res[a] != nil || res[b] == nil {
		t.Fatalf("Check with a missing disk = %v", res)
	}
	caps := s.Capacity()
	if len(caps) != 2 || caps[0].Path != a || caps[0].Total <= 0 || caps[0].Free <= 0 || caps[0].Free > caps[0].Total {
		t.Fatalf("Capacity = %+v", caps)
	}
	if room := s.Room("new-collection"); room <= 0 || room > caps[0].Free {
		t.Fatalf("Room = %d, capacity %+v", room, caps)
	}
	big, err := Open(context.Background(), Config{Dirs: []string{a}, Reserve: 1 << 62})
	if err != nil {
		t.Fatal(err)
	}
	if room := big.Room("x"); room != 0 {
		t.Fatalf("Room with a huge reserve = %d, want 0", room)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	want := map[string]string{}
	for i := range 5 {
		data := randomBytes(t, 1000*i+300_000)
		coll := fmt.Sprintf("v%d", i%2)
		st, err := s.Write(context.Background(), coll, newID(t), bytes.NewReader(data), -1)
		if err != nil {
			t.Fatal(err)
		}
		ver := newID(t)
		if err := s.Finalize(st, ver); err != nil {
			t.Fatal(err)
		}
		want[coll+"/"+ver] = st.SHA256
		if i == 4 {
			// Flip one byte in the last version: Verify must report a different sum.
			p := filepath.Join(dir, collectionsDir, coll, ver)
			data[1234] ^= 1
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			want[coll+"/"+ver] = hex.EncodeToString(sum[:])
		}
	}
	// A staged upload is not a version.
	if _, err := s.Write(context.Background(), "v0", newID(t), bytes.NewReader([]byte("s")), -1); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	err := s.Verify(context.Background(), func(c, v string, size int64, sum string, err error) {
		if err != nil {
			t.Errorf("%s/%s: %v", c, v, err)
		}
		got[c+"/"+v] = sum
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Verify saw %d versions, want %d", len(got), len(want))
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: sum %s, want %s", k, got[k], w)
		}
	}
}

// The HTTP layer peeks at the OpenPGP header through a bufio.Reader before calling Write; the
// peeked bytes must still be stored and hashed.
func TestWriteAfterPeek(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	data := append([]byte("-----BEGIN PGP MESSAGE-----\n"), randomBytes(t, 1<<20)...)
	br := bufio.NewReaderSize(bytes.NewReader(data), 64)
	head, err := br.Peek(27)
	if err != nil || string(head) != "-----BEGIN PGP MESSAGE-----" {
		t.Fatalf("Peek = %q, %v", head, err)
	}
	st, err := s.Write(context.Background(), "peek", newID(t), br, -1)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	if st.Size != int64(len(data)) || st.SHA256 != hex.EncodeToString(want[:]) {
		t.Fatalf("staged %+v, want size %d", st, len(data))
	}
}

package disk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"backuprepo/shared"
)

// storeVersion writes body as a committed version of collection c and returns its id and
// sha256.
func storeVersion(t *testing.T, s *Store, c string, body []byte) (string, string) {
	t.Helper()
	st, err := s.Write(context.Background(), c, newID(t), bytes.NewReader(body), -1)
	if err != nil {
		t.Fatal(err)
	}
	id := newID(t)
	if err := s.Finalize(st, id); err != nil {
		t.Fatal(err)
	}
	return id, st.SHA256
}

// send opens the version, loads its sums and sends [off, off+n) into a buffer.
func send(t *testing.T, s *Store, c, id string, size int64, sum string, off, n int64) ([]byte, error) {
	t.Helper()
	f, _, err := s.OpenVersion(c, id)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums, err := s.LoadSums(c, id, f, size, sum)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	m, err := s.Send(context.Background(), &out, f, c, id, sums, off, n)
	if m != int64(out.Len()) {
		t.Fatalf("Send reported %d bytes, wrote %d", m, out.Len())
	}
	return out.Bytes(), err
}

func flipByte(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func TestBlockSumsMatchTheFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	// Sizes around the sidecar's threshold and the block boundary, and one spanning several
	// blocks with a short last one.
	for _, size := range []int{0, 1, noSidecarMax, noSidecarMax + 1, sumsBlock - 1, sumsBlock, sumsBlock + 1, 3*sumsBlock + 12345} {
		body := randomBytes(t, size)
		id, sum := storeVersion(t, s, "c", body)
		b, err := os.ReadFile(versionSumsPath(filepath.Join(dir, collectionsDir, "c"), id))
		if size <= noSidecarMax {
			// No sidecar: LoadSums computes the sums after checking the file's sha256.
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("size %d: a sidecar was written for a small version: %v", size, err)
			}
			f, _, err := s.OpenVersion("c", id)
			if err != nil {
				t.Fatal(err)
			}
			sums, err := s.LoadSums("c", id, f, int64(size), sum)
			f.Close()
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			b = sums.encode()
		} else if err != nil {
			t.Fatalf("size %d: sidecar: %v", size, err)
		}
		sums, err := decodeSums(b, int64(size))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if int64(len(sums.Blocks)) != blockCount(int64(size)) {
			t.Fatalf("size %d: %d blocks", size, len(sums.Blocks))
		}
		for i, c := range sums.Blocks {
			want := crc32.Checksum(body[i*sumsBlock:min((i+1)*sumsBlock, size)], castagnoli)
			if c != want {
				t.Fatalf("size %d: block %d crc %08x, want %08x", size, i, c, want)
			}
		}
		got, err := send(t, s, "c", id, int64(size), sum, 0, int64(size))
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("size %d: send whole: %d bytes, err %v", size, len(got), err)
		}
	}
}

func TestSendRanges(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir())
	size := 2*sendSegment + 3*sumsBlock + 777
	body := randomBytes(t, size)
	id, sum := storeVersion(t, s, "c", body)
	for _, r := range [][2]int64{
		{0, 1}, {1, 10}, {sumsBlock - 1, 2}, {sendSegment - 5, 10}, {sendSegment, sendSegment},
		{int64(size) - 1, 1}, {int64(size) - 3*sumsBlock, 3 * sumsBlock}, {12345, int64(size) - 12345}, {5, 0},
	} {
		got, err := send(t, s, "c", id, int64(size), sum, r[0], r[1])
		if err != nil {
			t.Fatalf("range %v: %v", r, err)
		}
		if !bytes.Equal(got, body[r[0]:r[0]+r[1]]) {
			t.Fatalf("range %v: wrong bytes", r)
		}
	}
	if _, err := send(t, s, "c", id, int64(size), sum, int64(size)-1, 2); err == nil {
		t.Fatal("a range past the end was sent")
	}
}

// A flipped byte stops the download before the segment holding it: every byte sent is a byte
// that was uploaded.
func TestSendStopsBeforeDamage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	size := 3*sendSegment + 100
	body := randomBytes(t, size)
	id, sum := storeVersion(t, s, "c", body)
	path := filepath.Join(dir, collectionsDir, "c", id)
	at := int64(2*sendSegment + 5*sumsBlock + 17)
	flipByte(t, path, at)

	got, err := send(t, s, "c", id, int64(size), sum, 0, int64(size))
	var damage *DamagedError
	if !errors.As(err, &damage) || damage.VersionID != id || damage.CollectionID != "c" {
		t.Fatalf("err = %v, want a DamagedError", err)
	}
	if want := "block 21 (bytes 22020096-23068671) fails its checksum"; damage.Detail != want {
		t.Fatalf("detail %q, want %q", damage.Detail, want)
	}
	if int64(len(got)) != 2*sendSegment || !bytes.Equal(got, body[:len(got)]) {
		t.Fatalf("sent %d bytes before stopping, want the %d undamaged ones", len(got), 2*sendSegment)
	}
	// A range that does not touch the damaged block is still served; one that does is not.
	if got, err := send(t, s, "c", id, int64(size), sum, 0, 100); err != nil || !bytes.Equal(got, body[:100]) {
		t.Fatalf("undamaged range: %v", err)
	}
	if got, err := send(t, s, "c", id, int64(size), sum, at, 1); !errors.As(err, &damage) || len(got) != 0 {
		t.Fatalf("damaged range: %d bytes, err %v", len(got), err)
	}
}

// A missing or torn sidecar is rebuilt from the file when the file matches its record, and
// refused when it does not.
func TestLoadSumsRebuilds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	body := randomBytes(t, 2*sumsBlock+3)
	id, sum := storeVersion(t, s, "c", body)
	sp := versionSumsPath(filepath.Join(dir, collectionsDir, "c"), id)
	want, err := os.ReadFile(sp)
	if err != nil {
		t.Fatal(err)
	}

	for name, damage := range map[string]func(){
		"missing": func() { os.Remove(sp) },
		"torn":    func() { os.WriteFile(sp, want[:len(want)/2], 0o600) },
		"flipped": func() { flipByte(t, sp, int64(len(want)-6)) },
		"empty":   func() { os.WriteFile(sp, nil, 0o600) },
	} {
		damage()
		got, err := send(t, s, "c", id, int64(len(body)), sum, 0, int64(len(body)))
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s sidecar: %v", name, err)
		}
		if b, err := os.ReadFile(sp); err != nil || !bytes.Equal(b, want) {
			t.Fatalf("%s sidecar was not rebuilt: %v", name, err)
		}
	}

	// The file itself damaged and the sidecar gone: the rebuild checks the sha256 and refuses.
	flipByte(t, filepath.Join(dir, collectionsDir, "c", id), 5)
	os.Remove(sp)
	_, err = send(t, s, "c", id, int64(len(body)), sum, 0, int64(len(body)))
	var damaged *DamagedError
	if !errors.As(err, &damaged) {
		t.Fatalf("err = %v, want DamagedError", err)
	}
	if _, err := os.Stat(sp); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a sidecar was written for a damaged file")
	}
	// A record that says another size is damage too, sidecar or not.
	_, err = send(t, s, "c", id, int64(len(body))+1, sum, 0, 1)
	if !errors.As(err, &damaged) {
		t.Fatalf("wrong size: err = %v", err)
	}
}

// A version small enough to have no sidecar is checked whole against its recorded sha256: a
// flipped byte is refused before anything is sent, and a sidecar beside it (left by an older
// node) is not trusted.
func TestSmallVersionCheckedBySHA256(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	body := randomBytes(t, 4096)
	id, sum := storeVersion(t, s, "c", body)
	path := filepath.Join(dir, collectionsDir, "c", id)

	// A stale sidecar that would accept anything it is asked about is ignored.
	other := Sums{Size: int64(len(body)), Blocks: []uint32{0}}
	if err := os.WriteFile(versionSumsPath(filepath.Dir(path), id), other.encode(), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := send(t, s, "c", id, int64(len(body)), sum, 0, int64(len(body))); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("intact small version: %d bytes, err %v", len(got), err)
	}

	flipByte(t, path, 4000)
	for _, r := range [][2]int64{{0, int64(len(body))}, {0, 10}} { // the damage outside the range too
		got, err := send(t, s, "c", id, int64(len(body)), sum, r[0], r[1])
		var damaged *DamagedError
		if !errors.As(err, &damaged) || len(got) != 0 {
			t.Fatalf("damaged small version, bytes %d+%d: %d bytes sent, err %v", r[0], r[1], len(got), err)
		}
	}
}

// Remove and Drop take the sidecar with the file, so the directory can go.
func TestRemoveTakesTheSidecar(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	id, _ := storeVersion(t, s, "c", []byte("x"))
	dropped, _ := storeVersion(t, s, "c", []byte("y"))
	if err := s.Remove("c", id); err != nil {
		t.Fatal(err)
	}
	if err := s.Drop("c", dropped); err != nil {
		t.Fatal(err)
	}
	if err := s.Drop("c", dropped); err != nil {
		t.Fatalf("dropping a version already gone: %v", err)
	}
	if err := s.SyncCollection("c"); err != nil {
		t.Fatalf("sync after Drop: %v", err)
	}
	if err := s.SyncCollection("not-here"); err != nil {
		t.Errorf("sync of a collection the node does not hold: %v, want nil", err)
	}
	if err := s.SyncCollection("../c"); shared.ErrorCode(err) != shared.CodeInvalidInput {
		t.Errorf("sync of an invalid collection id: %v, want INVALID_INPUT", err)
	}
	if err := s.RemoveCollection("c"); err != nil {
		t.Fatalf("collection directory not empty after Remove: %v (files %v)", err, files(t, dir))
	}
	st, err := s.Write(context.Background(), "d", newID(t), bytes.NewReader([]byte("y")), -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Discard(st); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveCollection("d"); err != nil {
		t.Fatalf("collection directory not empty after Discard: %v (files %v)", err, files(t, dir))
	}
}

// BenchmarkBlockSums compares the block checksum with sha256 over the same buffer size the
// upload uses: the reason downloads can afford to check every block.
func BenchmarkBlockSums(b *testing.B) {
	buf := make([]byte, defaultBufSize)
	b.Run("crc32c", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		var bs blockSummer
		for b.Loop() {
			bs.Write(buf)
		}
	})
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		h := sha256.New()
		for b.Loop() {
			h.Write(buf)
		}
		_ = hex.EncodeToString(h.Sum(nil))
	})
}

// Overhead covers what a stored version takes on disk beyond its bytes: the sidecar and the
// rounding of both files to whole blocks.
func TestOverheadCoversTheSidecar(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	for _, size := range []int{1, 4095, 4096, noSidecarMax + 1, sumsBlock + 1, 5*sumsBlock + 3} {
		id, _ := storeVersion(t, s, "c", randomBytes(t, size))
		var used int64
		for _, name := range []string{id, "." + id + sumsSuffix} {
			var st syscall.Stat_t
			err := syscall.Stat(filepath.Join(dir, collectionsDir, "c", name), &st)
			if errors.Is(err, syscall.ENOENT) && name != id && size <= noSidecarMax {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			used += st.Blocks * 512
		}
		if used > int64(size)+Overhead(int64(size)) {
			t.Errorf("a version of %d bytes takes %d bytes on disk, more than its size plus Overhead %d",
				size, used, Overhead(int64(size)))
		}
	}
}

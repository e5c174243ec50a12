package disk

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// patternReader yields size bytes of a fixed pattern without allocating, so that allocation
// and time measurements see only the store.
type patternReader struct {
	left    int64
	pattern []byte
	off     int
}

func newPatternReader(size int64) *patternReader {
	p := make([]byte, 4093) // prime length: blocks never line up with the pattern
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return &patternReader{left: size, pattern: p}
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := 0
	for n < len(p) {
		m := copy(p[n:], r.pattern[r.off:])
		n += m
		r.off = (r.off + m) % len(r.pattern)
	}
	r.left -= int64(n)
	return n, nil
}

// Not parallel: MemStats are process-wide.
func TestWriteMemoryIsConstant(t *testing.T) {
	s := openStore(t)
	const size = 256 << 20
	write := func() {
		st, err := s.Write(context.Background(), "memory", newID(t), newPatternReader(size), -1)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size != size {
			t.Fatalf("size %d", st.Size)
		}
		if err := s.Discard(st); err != nil {
			t.Fatal(err)
		}
	}
	write() // fills the buffer pool and places the collection
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	write()
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d bytes for a %d MiB upload", alloc, size>>20)
	if alloc > 1<<20 {
		t.Fatalf("writing %d MiB allocated %d bytes, want < 1 MiB", size>>20, alloc)
	}
	// The buffers a transfer holds are the memory each concurrent upload costs.
	if held := defaultBufSize * defaultBufCount; held > 512<<10 {
		t.Fatalf("each transfer holds %d bytes of buffers", held)
	}
}

// Not parallel: it measures time.
func TestOpenWith100kVersions(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 100,000 files")
	}
	// Creating 100,000 files on a busy ext4 takes minutes; a tmpfs, where root may mount one,
	// takes a second. Open reads directories from the cache in both cases.
	dir, err := mountTmpfs(t, 256<<20)
	if err != nil {
		t.Log(err, "; using the temp directory")
		dir = t.TempDir()
	}
	const collections, versions = 1000, 100
	var wg sync.WaitGroup
	errs := make(chan error, collections)
	sem := make(chan struct{}, 8)
	for c := range collections {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cdir := filepath.Join(dir, collectionsDir, "collection-"+strconv.Itoa(c))
			if err := os.MkdirAll(cdir, 0o755); err != nil {
				errs <- err
				return
			}
			for range versions {
				f, err := os.Create(filepath.Join(cdir, newID(t)))
				if err != nil {
					errs <- err
					return
				}
				f.Close()
			}
			if c%100 == 0 {
				errs <- os.WriteFile(filepath.Join(cdir, tmpPrefix+"stale"), []byte("x"), 0o600)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	s := openStore(t, dir)
	took := time.Since(start)
	t.Logf("Open with %d versions in %d collections took %v", collections*versions, collections, took)
	if took > 2*time.Second {
		t.Fatalf("Open took %v, want under 2 s", took)
	}
	if len(s.where) != collections {
		t.Fatalf("indexed %d collections", len(s.where))
	}
	if _, err := os.Stat(filepath.Join(dir, collectionsDir, "collection-0", tmpPrefix+"stale")); err == nil {
		t.Fatal("stale temp file survived Open")
	}
}

// BenchmarkWrite compares Write with the plain ways of putting the same bytes into a file, so
// the ratio against "copy+fsync" shows what hashing and staging cost:
//
//	go test -run '^$' -bench Write -benchtime 5x ./disk
func BenchmarkWrite(b *testing.B) {
	b.Run("disk", func(b *testing.B) { benchmarkWrite(b, b.TempDir()) })
	// On a tmpfs the disk is out of the way and the CPU cost of hashing shows.
	if dir, err := mountTmpfs(b, 1<<30); err == nil {
		b.Run("tmpfs", func(b *testing.B) { benchmarkWrite(b, dir) })
	}
}

func benchmarkWrite(b *testing.B, dir string) {
	const size = 256 << 20
	plain := func(b *testing.B, hash bool) {
		b.SetBytes(size)
		for b.Loop() {
			f, err := os.CreateTemp(dir, "ref")
			if err != nil {
				b.Fatal(err)
			}
			var w io.Writer = f
			h := sha256.New()
			if hash {
				w = io.MultiWriter(f, h)
			}
			if _, err := io.Copy(w, newPatternReader(size)); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			f.Close()
			h.Sum(nil)
			os.Remove(f.Name())
		}
	}
	b.Run("copy+fsync", func(b *testing.B) { plain(b, false) })
	b.Run("copy+serial-sha256+fsync", func(b *testing.B) { plain(b, true) })

	for _, cfg := range []struct{ size, count int }{
		{defaultBufSize, defaultBufCount},
		{128 << 10, 4},
		{256 << 10, 3},
		{1 << 20, 2},
	} {
		b.Run(fmt.Sprintf("store/%dKiBx%d", cfg.size>>10, cfg.count), func(b *testing.B) {
			s := openStore(b, dir)
			s.bufSize, s.bufCount = cfg.size, cfg.count
			b.SetBytes(size)
			for b.Loop() {
				st, err := s.Write(context.Background(), "bench", newID(b), newPatternReader(size), -1)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Discard(st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

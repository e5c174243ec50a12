package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"backuprepo/shared"
)

// smallDisk mounts a tmpfs of size bytes under a temp directory. Mounting needs root; on a
// developer machine without it the test is skipped, but under CI=true (which runs as root) a
// failed mount fails the test so the full-disk path is never silently untested.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	dir, err := mountTmpfs(t, size)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return dir
}

func mountTmpfs(t testing.TB, size int64) (string, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("cannot mount a tmpfs (needs root): %w: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir, nil
}

func TestWriteDiskFull(t *testing.T) {
	t.Parallel()
	dir := smallDisk(t, 8<<20)
	s := openStore(t, dir)
	_, err := s.Write(context.Background(), "full", newID(t), &failingReader{n: 16 << 20}, -1)
	if !errors.Is(err, ErrNoSpace) || shared.ErrorCode(err) != shared.CodeInsufficientStorage {
		t.Fatalf("err = %v, want ErrNoSpace", err)
	}
	assertEmpty(t, dir)
	// The space is free again: a smaller upload fits.
	st, err := s.Write(context.Background(), "full", newID(t), &failingReader{n: 6 << 20, err: io.EOF}, -1)
	if err != nil || st.Size != 6<<20 {
		t.Fatalf("after a full disk: %+v, %v", st, err)
	}
}

func TestPlacementAcrossDisks(t *testing.T) {
	t.Parallel()
	small, large := smallDisk(t, 16<<20), smallDisk(t, 32<<20)
	s := openStore(t, small, large)
	put := func(coll string, n int) {
		t.Helper()
		st, err := s.Write(context.Background(), coll, newID(t), &failingReader{n: n, err: io.EOF}, -1)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Finalize(st, newID(t)); err != nil {
			t.Fatal(err)
		}
	}
	on := func(dir, coll string) bool {
		_, err := os.Stat(filepath.Join(dir, collectionsDir, coll))
		return err == nil
	}

	put("first", 20<<20) // the large disk has more room; now it has 12 MiB left, the small 16
	if !on(large, "first") || on(small, "first") {
		t.Fatal("first collection not on the disk with most free space")
	}
	put("second", 1<<20)
	if !on(small, "second") {
		t.Fatal("second collection not on the disk that now has most free space")
	}
	put("first", 1<<20) // stays where it is although the small disk has more room
	if on(small, "first") {
		t.Fatal("collection moved disks")
	}
	if r := s.Room("first"); r > 11<<20 || r < 10<<20 {
		t.Errorf("Room(first) = %d, want about 11 MiB (the large disk's free space)", r)
	}

	// The placement survives a restart.
	s2 := openStore(t, small, large)
	if s2.volumeOf("first").dir != large || s2.volumeOf("second").dir != small {
		t.Fatal("index after restart differs")
	}

	// The reserve counts: with 13 MiB reserved the large disk (11 MiB free) has no room and the
	// small one (about 15 MiB) a little.
	s3, err := Open(context.Background(), Config{Dirs: []string{small, large}, Reserve: 13 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if r := s3.Room("first"); r != 0 {
		t.Errorf("Room(first) with reserve = %d, want 0", r)
	}
	if r := s3.Room("second"); r <= 0 || r > 3<<20 {
		t.Errorf("Room(second) with reserve = %d, want a little above 0", r)
	}
	caps := s3.Capacity()
	if caps[0].Path != small || caps[0].Total != 16<<20 || caps[1].Total != 32<<20 {
		t.Errorf("Capacity = %+v", caps)
	}
}

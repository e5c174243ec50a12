package stack

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// OwnFilesystem mounts a tmpfs of size bytes in a new temporary directory of the test and
// returns the directory; the mount goes when the test ends, after everything registered later
// (nodes started on it stop first). A node whose disk is there has free space that no other
// process of the machine moves, which tests about room and announcements need: /dev/shm is
// shared with every process of the machine (PostgreSQL keeps its dynamic shared memory there),
// and e2e TestNodeRoomNeverOvershoots once saw over 1 MiB freed there in the middle of a run.
//
// Mounting needs root (CAP_SYS_ADMIN); when it fails, the error says why and the caller
// chooses a fallback.
func OwnFilesystem(t testing.TB, size int64) (string, error) {
	t.Helper()
	dir, err := os.MkdirTemp(t.TempDir(), "tmpfs-")
	if err != nil {
		return "", err
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("mount a tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir, nil
}

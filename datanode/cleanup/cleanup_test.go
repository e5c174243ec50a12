package cleanup

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/google/uuid"

	"backuprepo/datanode/disk"
	"backuprepo/shared/internalapi"
)

// fakeCP lists pending deletions a page at a time and records what was acknowledged.
type fakeCP struct {
	pending []internalapi.FileRef
	acked   []string
	pages   int
}

func (f *fakeCP) Deletions(_ context.Context, limit int) ([]internalapi.FileRef, error) {
	f.pages++
	return slices.Clone(f.pending[:min(limit, len(f.pending))]), nil
}

func (f *fakeCP) AckDeletions(_ context.Context, ids []string) error {
	f.acked = append(f.acked, ids...)
	f.pending = slices.DeleteFunc(f.pending, func(r internalapi.FileRef) bool { return slices.Contains(ids, r.VersionID) })
	return nil
}

// store writes n committed versions into each collection and returns them.
func store(t *testing.T, s *disk.Store, n int, collections ...string) []internalapi.FileRef {
	t.Helper()
	var refs []internalapi.FileRef
	for _, c := range collections {
		for range n {
			st, err := s.Write(context.Background(), c, uuid.NewString(), bytes.NewReader([]byte("backup")), -1)
			if err != nil {
				t.Fatal(err)
			}
			v := uuid.NewString()
			if err := s.Finalize(st, v); err != nil {
				t.Fatal(err)
			}
			refs = append(refs, internalapi.FileRef{CollectionID: c, VersionID: v})
		}
	}
	return refs
}

// TestSweepRemovesAndAcknowledges sweeps more files than one page holds, in two collections,
// with ids the store refuses and a collection the node does not hold among them: every file
// is gone from the disk and every deletion acknowledged, the files a page at a time.
func TestSweepRemovesAndAcknowledges(t *testing.T) {
	t.Parallel()
	s, err := disk.Open(context.Background(), disk.Config{Dirs: []string{t.TempDir()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	refs := store(t, s, batch/2+10, "col-a", "col-b")
	kept := store(t, s, 2, "col-a")
	odd := []internalapi.FileRef{
		{CollectionID: "../etc", VersionID: uuid.NewString()},
		{CollectionID: "col-a", VersionID: "not-a-uuid"},
		{CollectionID: "never-here", VersionID: uuid.NewString()},
	}
	cp := &fakeCP{pending: append(slices.Clone(refs), odd...)}
	n, err := New(s, cp, slog.New(slog.DiscardHandler)).Once(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := len(refs) + len(odd); n != want || len(cp.acked) != want || len(cp.pending) != 0 {
		t.Fatalf("swept %d, acknowledged %d, %d left; want %d, %d, 0", n, len(cp.acked), len(cp.pending), want, want)
	}
	if cp.pages < 2 {
		t.Errorf("%d pages listed for %d deletions, want at least 2", cp.pages, len(refs)+len(odd))
	}
	for _, r := range refs {
		if _, _, err := s.OpenVersion(r.CollectionID, r.VersionID); err == nil {
			t.Fatalf("version %s/%s still there after the sweep", r.CollectionID, r.VersionID)
		}
	}
	for _, r := range kept {
		f, _, err := s.OpenVersion(r.CollectionID, r.VersionID)
		if err != nil {
			t.Fatalf("a version that was not deleted is gone: %v", err)
		}
		f.Close()
	}
}

package upload

import (
	"bytes"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

// TestStrategies runs sequences of uploads against each strategy and the byte allowance of
// SPEC §3 rules 5 and 6; after every step the versions in PostgreSQL and the files on the
// node must be exactly the expected ones, with their numbers kept.
func TestStrategies(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{Binaries: bins})
	tenant := s.CreateTenant(t, nil)
	_, up := s.Uploader(t, tenant, "backupUploader", "backupDownloader", "collectionManager")

	t.Run("FIFO", func(t *testing.T) {
		t.Parallel()
		c := newColl(t, s, with(limits(tenant, 3, 64*kib, 192*kib), "strategy", "FIFO"))
		cl := client{t, s, up.Token}
		sent := map[int64][]byte{}
		want := [][]int64{{1}, {1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}}
		for i, w := range want {
			data := payload(t, 8*kib+i)
			v := accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{Chunked: i%2 == 1}), data)
			if v.Number != int64(i+1) {
				t.Fatalf("upload %d got number %d", i+1, v.Number)
			}
			sent[v.Number] = data
			stored(t, s, c, w...)
		}
		for ref, n := range map[string]int64{"first": 3, "latest": 5, "v4": 4} {
			if d := cl.download(s.URL, c.ID, ref, stack.ReadOptions{}); d.Status != 200 || !bytes.Equal(d.Body, sent[n]) {
				t.Errorf("download %s: %d, want 200 with version %d's bytes", ref, d.Status, n)
			}
		}
	})

	t.Run("FIFO_PLUS_OLDER keeps the newest older copy", func(t *testing.T) {
		t.Parallel()
		// maxBackupsCount 2, maxOlderCopies 1, keepOlderNotMoreThan 1h: of the versions FIFO
		// rotates out, the newest one stays (it is minutes old).
		c := newColl(t, s, with(limits(tenant, 2, 64*kib, 256*kib), "strategy", "FIFO_PLUS_OLDER",
			"maxOlderCopies", 1, "keepOlderNotMoreThan", "1h"))
		cl := client{t, s, up.Token}
		for _, w := range [][]int64{{1}, {1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}} {
			data := payload(t, 8*kib)
			accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
			stored(t, s, c, w...)
		}
	})

	t.Run("FIFO_PLUS_OLDER lets too old copies go", func(t *testing.T) {
		t.Parallel()
		// keepOlderNotMoreThan 1s: version 1 is older than that when version 3 arrives.
		c := newColl(t, s, with(limits(tenant, 2, 64*kib, 256*kib), "strategy", "FIFO_PLUS_OLDER",
			"maxOlderCopies", 1, "keepOlderNotMoreThan", "1s"))
		cl := client{t, s, up.Token}
		data := payload(t, 8*kib)
		accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
		accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
		time.Sleep(1500 * time.Millisecond)
		accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
		stored(t, s, c, 2, 3)
	})

	t.Run("REJECT_WHEN_FULL", func(t *testing.T) {
		t.Parallel()
		c := newColl(t, s, with(limits(tenant, 2, 64*kib, 128*kib), "strategy", "REJECT_WHEN_FULL"))
		cl := client{t, s, up.Token}
		data := payload(t, 8*kib)
		accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
		accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
		refused(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), 409, "COLLECTION_FULL")
		stored(t, s, c, 1, 2)
		// Deleting a version (REST, collectionManager) makes room; numbers are never reused.
		if a := cl.deleteVersion(s.URL, c.ID, "first"); a.Status != 200 {
			t.Fatalf("delete the first version: %s", a)
		}
		stored(t, s, c, 2)
		v := accepted(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)
		if v.Number != 3 {
			t.Errorf("the upload after a deletion got number %d, want 3", v.Number)
		}
		stored(t, s, c, 2, 3)
		refused(t, cl.upload(s.URL, c.ID, data, stack.UploadOptions{Chunked: true}), 409, "COLLECTION_FULL")
		stored(t, s, c, 2, 3)
	})

	t.Run("extra space allowance", func(t *testing.T) {
		t.Parallel()
		// maxBackupsCount 3, maxOneVersionSize 10 KiB, maxCollectionSize 40 KiB:
		// extra = 40 - 3*10 = 10 KiB, which one or more versions may borrow above 10 KiB.
		c := newColl(t, s, with(limits(tenant, 3, 10*kib, 40*kib), "strategy", "FIFO"))
		cl := client{t, s, up.Token}
		steps := []struct {
			what   string
			size   int
			status int
			code   string
			after  []int64 // version numbers kept afterwards
		}{
			// Empty collection: allowance = 10 + (10 - 0 borrowed) = 20 KiB.
			{"20 KiB + 1 with the whole extra free", 20*kib + 1, 413, "COLLECTION_QUOTA_EXCEEDED", nil},
			{"15 KiB borrows 5 KiB of extra", 15 * kib, 200, "", []int64{1}},
			// Kept: v1 (15, borrows 5). Allowance = 10 + (10 - 5) = 15 KiB.
			{"15 KiB + 1 with 5 KiB of extra left", 15*kib + 1, 413, "COLLECTION_QUOTA_EXCEEDED", []int64{1}},
			{"15 KiB borrows the last 5 KiB", 15 * kib, 200, "", []int64{1, 2}},
			// Kept: v1 (15), v2 (15): the extra is used up, allowance = 10 KiB = maxOneVersionSize.
			{"10 KiB + 1 with no extra left", 10*kib + 1, 413, "VERSION_TOO_LARGE", []int64{1, 2}},
			{"10 KiB fits without borrowing", 10 * kib, 200, "", []int64{1, 2, 3}},
			// Full (15+15+10 = 40 KiB). The next upload rotates v1 out, so only v2 (borrows 5)
			// and v3 count: allowance = 10 + (10 - 5) = 15 KiB; the collection then holds
			// 15 + 10 + 15 = 40 KiB.
			{"15 KiB + 1 counting v1 out", 15*kib + 1, 413, "COLLECTION_QUOTA_EXCEEDED", []int64{1, 2, 3}},
			{"15 KiB replaces v1", 15 * kib, 200, "", []int64{2, 3, 4}},
			// Kept after rotating v2 out: v3 (10), v4 (15, borrows 5): allowance 15 KiB again.
			{"12 KiB replaces v2", 12 * kib, 200, "", []int64{3, 4, 5}},
			// Kept after rotating v3 out: v4 (borrows 5), v5 (borrows 2): allowance = 10 + 3 = 13 KiB.
			{"13 KiB + 1 with 3 KiB of extra left", 13*kib + 1, 413, "COLLECTION_QUOTA_EXCEEDED", []int64{3, 4, 5}},
			{"13 KiB replaces v3", 13 * kib, 200, "", []int64{4, 5, 6}},
		}
		for _, st := range steps {
			for _, chunked := range []bool{false, true} {
				if st.status == 200 && chunked {
					continue // one accepted upload per step
				}
				data := payload(t, st.size)
				a := cl.upload(s.URL, c.ID, data, stack.UploadOptions{Chunked: chunked})
				if st.status == 200 {
					accepted(t, a, data)
				} else if a.Status != st.status || a.Code() != st.code {
					t.Fatalf("%s (chunked %v): %s, want %d %s", st.what, chunked, a, st.status, st.code)
				}
				rows := stored(t, s, c, st.after...)
				var sum int64
				for _, r := range rows {
					sum += r.Size
				}
				if sum > 40*kib {
					t.Fatalf("after %s the versions sum to %d bytes, above maxCollectionSize", st.what, sum)
				}
			}
		}
	})
}

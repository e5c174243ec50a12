package upload

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

// TestNodeRoomNeverOvershoots gives one data node about 1 MiB of room (its reserve is the
// disk's free space minus 1 MiB) and sends 8 concurrent chunked uploads of 256 KiB to 8
// collections of one tenant on it: the bytes accepted must fit the room, the disk's free
// space must never go below the reserve, and the tenant's stored bytes stay within its quota.
func TestNodeRoomNeverOvershoots(t *testing.T) {
	t.Parallel()
	const (
		room  = 1 * mib
		size  = 256 * kib
		count = 8
	)
	// The node's disk must be a filesystem whose free space nothing else moves while the test
	// runs: room is free space minus the reserve, and a megabyte freed by another process
	// would let a fifth upload in legitimately.
	parent, err := stack.OwnFilesystem(t, 64*mib)
	if err != nil {
		t.Skipf("this test needs a filesystem of its own: %v", err)
	}
	// Placement promises every collection its maxCollectionSize, so the 8 collections are
	// placed while the node has room for all of them; the node then restarts with its reserve
	// raised to leave 1 MiB.
	s := stack.Start(t, stack.Options{Binaries: bins, DataNodes: 1,
		Nodes: []stack.NodeOptions{{DiskParent: parent, Room: 4 * count * size}}})
	node := s.Nodes[0]
	tenant := s.CreateTenant(t, map[string]any{"quota": count * size})
	_, up := s.Uploader(t, tenant, "backupUploader")

	colls := make([]coll, count)
	for i := range colls {
		colls[i] = newColl(t, s, limits(tenant, 1, size, size))
	}
	node.SetReserve(node.FreeBytes(t) - room)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := node.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitNodesAlive(ctx, node); err != nil {
		t.Fatal(err)
	}
	datas := make([][]byte, count)
	for i := range datas {
		datas[i] = payload(t, size)
	}

	answers := make([]stack.Answer, count)
	errs := make([]error, count)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range colls {
		wg.Go(func() {
			<-start
			answers[i], errs[i] = s.Upload(t.Context(), node.URL, up.Token, colls[i].ID,
				bytes.NewReader(datas[i]), stack.UploadOptions{Chunked: true})
		})
	}
	close(start)
	wg.Wait()

	var (
		accepted int64
		ok       int
		bugs     []string
	)
	for i, a := range answers {
		if errs[i] != nil {
			t.Errorf("upload %d: %v", i, errs[i])
			continue
		}
		switch {
		case a.Status == 200:
			ok++
			accepted += size
			if err := storedErr(s, t, colls[i], 1); err != nil {
				t.Error(err)
			}
		case a.Status == 507 && a.Code() == "INSUFFICIENT_STORAGE":
			if err := storedErr(s, t, colls[i]); err != nil {
				t.Error(err)
			}
		default:
			t.Errorf("upload %d: %s, want 200 or 507 INSUFFICIENT_STORAGE", i, a)
		}
	}
	free := node.FreeBytes(t)
	t.Logf("%d of %d uploads of %d bytes accepted into a room of %d bytes; %d bytes free, reserve %d",
		ok, count, size, room, free, node.Reserve)
	if accepted > room {
		bugs = append(bugs, fmt.Sprintf("accepted %d bytes on a node with %d bytes of room", accepted, room))
	}
	if free < node.Reserve {
		bugs = append(bugs, fmt.Sprintf("the disk has %d bytes free, %d below the node's reserve", free, node.Reserve-free))
	}
	if ok == 0 {
		t.Error("no upload was accepted although the room holds several")
	}
	if accepted > int64(count*size) {
		t.Errorf("the tenant stores %d bytes, above its quota %d", accepted, count*size)
	}
	if left := node.Leftovers(t); len(left) != 0 {
		t.Errorf("temporary or staged files left: %v", left)
	}
	for _, b := range bugs {
		t.Error(b)
	}
}

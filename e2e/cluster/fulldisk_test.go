package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

const (
	mib = int64(1) << 20
	// smallDisk is the full-disk node's disk: a tmpfs, so that its free space moves only with
	// what the test writes (the other nodes' disks share the busy host's filesystem).
	smallDisk = 256 * mib
	// probeSize is the maxCollectionSize of the collections that probe placement.
	probeSize = 32 * mib
	// announceBound is how soon the control plane's registry must show a node's new free
	// space: the node compares every 200 ms and gossips at once (under a second here);
	// generous for a busy machine.
	announceBound = 10 * time.Second
)

// fullDisk is the state the steps of TestFullDisk share.
type fullDisk struct {
	c     *cluster
	small *dataNode   // the node with the tmpfs disk
	big   []*dataNode // the nodes on the host's disk

	full      tenant // owns the collections on the small node
	unlimited string // a collection of full without a size limit, on the small node
	kept      []stack.Version
	fill      []stack.Version

	other     tenant // owns a collection on a big node
	otherColl string
	otherNode *dataNode
	otherKept []stack.Version

	registryStart int64 // the small node's free space in the registry before any upload
}

// TestFullDisk is issue 6: a data node whose disk (a 256 MiB tmpfs, 64 MiB of it reserved)
// fills up. An upload declared larger than the disk is refused 507 before any byte is read; a
// chunked upload is cut 507 at the node's room, and one that meets a disk filled behind the
// node's back gets 507 too; each leaves no file, no version row and no reservation. Filled
// close to full by accepted uploads, the node re-announces its free space, placement stops
// choosing it, and collections on the other nodes keep working. Deleting versions gives the
// space back, in the registry and to placement.
func TestFullDisk(t *testing.T) {
	pool, cpBin := prepare(t)
	start := time.Now()
	c := startCluster(t, pool, cpBin)
	f := &fullDisk{c: c, big: slices.Clone(c.nodes)}
	f.small = c.addDataNode(t, "datanode-small", smallDisk)
	t.Logf("cluster of %d nodes up in %s", len(c.nodes), time.Since(start).Round(time.Millisecond))

	steps := []struct {
		name string
		run  func(*testing.T)
	}{
		{"1_place_and_upload", f.placeAndUpload},
		{"2a_declared_too_large", f.declaredTooLarge},
		{"2b_chunked_beyond_room", f.chunkedBeyondRoom},
		{"2c_disk_fills_mid_stream", f.diskFillsMidStream},
		{"3_fill_and_reannounce", f.fillAndReannounce},
		{"4_placement_avoids_it", f.placementAvoidsIt},
		{"5_other_nodes_unaffected", f.otherNodesUnaffected},
		{"6_delete_frees_space", f.deleteFreesSpace},
	}
	for _, s := range steps {
		// Each step starts from the state the previous one left.
		if !t.Run(s.name, s.run) {
			t.FailNow()
		}
	}
	if problems := orphanProblems(t, c); len(problems) > 0 {
		t.Errorf("disks and versions table disagree:\n%s", strings.Join(problems, "\n"))
	}
	t.Logf("scenario took %s", time.Since(start).Round(time.Millisecond))
}

// usable is the small node's room as the node computes it: free space minus the reserve.
func (f *fullDisk) usable(t *testing.T) int64 { return f.small.view.FreeBytes(t) - nodeReserve }

// placeAndUpload puts a collection without a size limit on the small node (placement chooses
// it once the other nodes are drained: they have far more room) and uploads two versions.
// Unlimited, because placement promises a bounded collection its maxCollectionSize: only a
// collection it promises nothing can outgrow the node's disk through uploads alone.
func (f *fullDisk) placeAndUpload(t *testing.T) {
	c := f.c
	d := f.registryDisk(t)
	if d.Total > smallDisk || d.Total < smallDisk-mib {
		t.Fatalf("the registry shows a disk of %d bytes for %s, want the %d bytes tmpfs", d.Total, f.small.name, smallDisk)
	}
	if want := f.usable(t); abs(d.Free-want) > f.tolerance() {
		t.Fatalf("the registry shows %d bytes free on %s, the disk has %d above the reserve", d.Free, f.small.name, want)
	}
	f.registryStart = d.Free
	t.Logf("%s: registry shows %d MiB of %d MiB free (reserve %d MiB)", f.small.name, d.Free/mib, d.Total/mib, nodeReserve/mib)

	// A collection elsewhere, for step 5; placement picks a big node by itself.
	f.other = newTenant(t, c)
	coll, node := newCollection(t, c, f.other)
	if node == f.small.name {
		t.Fatalf("collection %s placed on %s, though the other nodes have far more room", coll, node)
	}
	f.otherColl, f.otherNode = coll, c.node(t, node)
	f.otherKept = append(f.otherKept, upload(t, c, c.api.URL, f.other.token, coll, randomBytes(int(2*mib)+11)))

	// Only a system admin may make a collection without a limit, and only in a tenant without
	// a quota.
	f.full = newTenant(t, c)
	c.api.UpdateTenant(t, f.full.id, map[string]any{"quota": 0})
	undrain := f.drainBig(t)
	var probe string
	f.unlimited, node = c.api.CreateCollection(t, map[string]any{"tenantId": f.full.id, "description": "unlimited",
		"maxBackupsCount": 20, "maxOneVersionSize": "64MiB", "maxCollectionSize": 0, "strategy": "FIFO"})
	if node == f.small.name {
		// The same request as step 4's: while the node has room, placement chooses it.
		probe, node = f.createProbe(t)
	}
	undrain()
	if node != f.small.name {
		t.Fatalf("with the other nodes drained, a collection went to %s, want %s", node, f.small.name)
	}
	t.Logf("collections %s (unlimited) and %s (%d MiB) placed on %s", f.unlimited, probe, probeSize/mib, f.small.name)

	for range 2 {
		f.kept = append(f.kept, upload(t, c, c.api.URL, f.full.token, f.unlimited, randomBytes(int(16*mib)+7)))
	}
	requireStored(t, c, f.small, f.unlimited, f.kept...)
	f.requireRows(t)
}

// declaredTooLarge: a Content-Length above what the disk holds is refused before the body is
// read. The test sends the headers only: an answer can only come from a refusal. The
// collection allows any size, so it is the disk's room that binds (SPEC §3 rule 6 caps the
// allowance by it), and the code says so: 507 INSUFFICIENT_STORAGE, not 413.
func (f *fullDisk) declaredTooLarge(t *testing.T) {
	c := f.c
	freeBefore := f.small.view.FreeBytes(t)
	length := freeBefore + mib
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	ru, err := c.api.OpenUpload(ctx, c.api.URL, f.full.token, f.unlimited, length, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ru.Close()
	start := time.Now()
	a, err := ru.Answer(30 * time.Second)
	if err != nil {
		t.Fatalf("no answer to an upload declaring %d bytes, with no body sent: %v", length, err)
	}
	t.Logf("Content-Length %d (%d MiB, the disk has %d MiB free): %d %s in %s, no body byte sent",
		length, length/mib, freeBefore/mib, a.Status, a.Code(), time.Since(start).Round(time.Millisecond))
	refusedFull(t, a)
	f.requireNothingLeft(t, freeBefore)
}

// chunkedBeyondRoom: a chunked body larger than the room is read up to the room and cut,
// through the front door. (The refusal comes in the middle of the body: the node reads on for
// a moment after answering and the front door closes its client's connection after relaying
// it, so the answer is not lost to a reset; before that, half of these came out as 503.)
func (f *fullDisk) chunkedBeyondRoom(t *testing.T) {
	c := f.c
	freeBefore := f.small.view.FreeBytes(t)
	room := freeBefore - nodeReserve
	total := room + 32*mib
	body := newSlowBody(total, int(mib), 0, total)
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	start := time.Now()
	a, err := c.api.Upload(ctx, c.api.URL, f.full.token, f.unlimited, body, stack.UploadOptions{Chunked: true})
	if err != nil {
		t.Fatalf("chunked upload of %d bytes into a room of %d: %v", total, room, err)
	}
	sent := body.sent.Load()
	t.Logf("chunked upload of %d MiB into a room of %d MiB: %d %s after %d MiB sent, in %s",
		total/mib, room/mib, a.Status, a.Code(), sent/mib, time.Since(start).Round(time.Millisecond))
	refusedFull(t, a)
	// The cut came while streaming, at the room: everything below it had been accepted. A
	// little slack, since the health check's probe file moves the free space by a page or two.
	if sent < room-mib {
		t.Errorf("the upload was refused after %d bytes, before it reached the room of %d", sent, room)
	}
	f.requireNothingLeft(t, freeBefore)
}

// diskFillsMidStream: the node admitted an upload within its room, then something else takes
// the rest of the disk (a file written from the host); the node meets ENOSPC and answers 507,
// through the front door as in chunkedBeyondRoom.
func (f *fullDisk) diskFillsMidStream(t *testing.T) {
	c := f.c
	freeBefore := f.small.view.FreeBytes(t)
	const mark = 4 * mib
	body := newSlowBody(96*mib, 256<<10, 10*time.Millisecond, mark)
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	up := startUpload(ctx, c.api, c.api.URL, f.full.token, f.unlimited, body)
	waitMark(t, body, up)
	filler := filepath.Join(f.small.disk, "filler")
	t.Cleanup(func() { _ = os.Remove(filler) })
	filled, err := fillDisk(filler)
	if err != nil {
		t.Fatalf("fill %s's disk: %v", f.small.name, err)
	}
	var r result
	select {
	case r = <-up:
	case <-ctx.Done():
		t.Fatalf("the upload did not end on a full disk: %d bytes sent", body.sent.Load())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatalf("remove the filler: %v", err)
	}
	t.Logf("a %d MiB filler took the disk %d MiB into the upload: %s after %d MiB sent, in %s",
		filled/mib, mark/mib, r, body.sent.Load()/mib, r.took.Round(time.Millisecond))
	if r.err != nil {
		t.Fatalf("upload onto a disk that filled up: %v", r.err)
	}
	refusedFull(t, r.answer)
	if body.sent.Load() >= body.total {
		t.Errorf("the whole body was sent before the answer; the disk filled too late to test anything")
	}
	f.requireNothingLeft(t, freeBefore)
}

// fillAndReannounce fills the node to 16 MiB above its reserve with accepted uploads and
// measures how soon the registry shows it.
func (f *fullDisk) fillAndReannounce(t *testing.T) {
	c := f.c
	room := f.usable(t)
	each := (room - 16*mib) / 3 &^ (mib - 1)
	if each < mib {
		t.Fatalf("the node has only %d bytes of room left before filling", room)
	}
	for range 3 {
		f.fill = append(f.fill, upload(t, c, c.api.URL, f.full.token, f.unlimited, randomBytes(int(each))))
	}
	d, took := f.waitRegistry(t, time.Now())
	requireStored(t, c, f.small, f.unlimited, append(slices.Clone(f.kept), f.fill...)...)
	f.requireRows(t)
	t.Logf("filled with 3 × %d MiB: the registry shows %d MiB free (was %d MiB) %s after the last upload",
		each/mib, d.Free/mib, f.registryStart/mib, took.Round(time.Millisecond))
	if d.Free >= probeSize {
		t.Errorf("the registry shows %d bytes free on the filled node, want under %d", d.Free, probeSize)
	}
}

// placementAvoidsIt: the request that placed a collection on the small node in step 1 now
// finds no room there; with the other nodes back, it goes to one of them.
func (f *fullDisk) placementAvoidsIt(t *testing.T) {
	undrain := f.drainBig(t)
	id, node, err := f.tryProbe(t)
	undrain()
	var ge *stack.GraphQLError
	switch {
	case err == nil:
		t.Fatalf("collection %s placed on %s, which has %d bytes of room", id, node, f.usable(t))
	case !errors.As(err, &ge) || ge.Code != "NO_CAPACITY":
		t.Fatalf("placement with only the full node eligible: %v, want NO_CAPACITY", err)
	}
	t.Logf("only %s eligible: %s", f.small.name, ge.Message)
	id, node = f.createProbe(t)
	if node == f.small.name {
		t.Fatalf("collection %s placed on the full node", id)
	}
	t.Logf("with every node eligible, collection %s went to %s", id, node)
}

// otherNodesUnaffected: a collection on a big node takes an upload and serves every version,
// and the full node still serves its own (the oldest and the newest: every byte read through
// the front door costs time).
func (f *fullDisk) otherNodesUnaffected(t *testing.T) {
	c := f.c
	f.otherKept = append(f.otherKept, upload(t, c, c.api.URL, f.other.token, f.otherColl, randomBytes(int(4*mib)+3)))
	for _, v := range f.otherKept {
		download(t, c, c.api.URL, f.other.token, f.otherColl, v.ID, v.SHA256)
	}
	requireStored(t, c, f.otherNode, f.otherColl, f.otherKept...)
	for _, v := range []stack.Version{f.kept[0], f.fill[len(f.fill)-1]} {
		download(t, c, c.api.URL, f.full.token, f.unlimited, v.ID, v.SHA256)
	}
}

// deleteFreesSpace deletes the filling versions: their files go, the registry shows the space
// again, and placement chooses the node again.
func (f *fullDisk) deleteFreesSpace(t *testing.T) {
	c := f.c
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	for _, v := range f.fill {
		a, err := c.api.DeleteVersion(ctx, c.api.URL, c.api.AdminToken, f.unlimited, v.ID, stack.ReadOptions{})
		if err != nil || a.Status != http.StatusOK {
			t.Fatalf("delete version %d of %s: %s %v", v.Number, f.unlimited, a, err)
		}
	}
	d, took := f.waitRegistry(t, time.Now())
	f.fill = nil
	requireStored(t, c, f.small, f.unlimited, f.kept...)
	f.requireRows(t)
	t.Logf("after deleting: the registry shows %d MiB free %s after the last deletion (%d MiB before any upload)",
		d.Free/mib, took.Round(time.Millisecond), f.registryStart/mib)
	var keptBytes int64
	for _, v := range f.kept {
		keptBytes += v.Size
	}
	if want := f.registryStart - keptBytes; abs(d.Free-want) > f.tolerance() {
		t.Errorf("the registry shows %d bytes free; the node started with %d and keeps %d", d.Free, f.registryStart, keptBytes)
	}
	undrain := f.drainBig(t)
	id, node := f.createProbe(t)
	undrain()
	if node != f.small.name {
		t.Errorf("with the other nodes drained, collection %s went to %s, want %s again", id, node, f.small.name)
	}
}

// requireNothingLeft checks what a refused upload must leave: the kept versions only, on disk
// and in the versions table, no reservation, and the disk's free space as before it.
func (f *fullDisk) requireNothingLeft(t *testing.T, freeBefore int64) {
	t.Helper()
	requireStored(t, f.c, f.small, f.unlimited, f.kept...)
	f.requireRows(t)
	if n := f.c.api.LiveReservations(t, f.unlimited); n != 0 {
		t.Errorf("%d live upload reservations left for %s", n, f.unlimited)
	}
	// A page or two may move with the node's health check file.
	if free := f.small.view.FreeBytes(t); abs(free-freeBefore) > mib {
		t.Errorf("the disk has %d bytes free after the refusal, %d before it", free, freeBefore)
	}
}

// requireRows checks that the versions table holds exactly the versions the test kept, on the
// small node.
func (f *fullDisk) requireRows(t *testing.T) {
	t.Helper()
	rows := f.c.api.VersionRows(t, f.unlimited)
	want := append(slices.Clone(f.kept), f.fill...)
	ok := len(rows) == len(want)
	for i := 0; ok && i < len(rows); i++ {
		ok = rows[i].ID == want[i].ID && rows[i].SHA256 == want[i].SHA256 && rows[i].NodeName == f.small.name
	}
	if !ok {
		t.Errorf("versions table holds %+v for %s, want %d versions on %s", rows, f.unlimited, len(want), f.small.name)
	}
}

// tolerance is how far the registry's free space may be from the disk's: the node announces
// a change of more than 1% of the disk, and its reading may be a second old.
func (f *fullDisk) tolerance() int64 { return smallDisk/100 + mib }

// waitRegistry waits until the registry's free space for the small node is the disk's own
// (within tolerance) and returns it with the time since since.
func (f *fullDisk) waitRegistry(t *testing.T, since time.Time) (registeredDisk, time.Duration) {
	t.Helper()
	var d registeredDisk
	for {
		d = f.registryDisk(t)
		want := f.usable(t)
		if abs(d.Free-want) <= f.tolerance() {
			return d, time.Since(since)
		}
		if time.Since(since) > announceBound {
			t.Fatalf("after %s the registry still shows %d bytes free on %s; the disk has %d above the reserve",
				announceBound, d.Free, f.small.name, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// registeredDisk is a disk as the control plane's registry shows it.
type registeredDisk struct{ Total, Free int64 }

// registryDisk is the small node's disk in the control plane's registry.
func (f *fullDisk) registryDisk(t *testing.T) registeredDisk {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var out struct {
		DataNode *struct {
			State string
			Disks []registeredDisk
		}
	}
	err := f.c.api.GraphQL(ctx, f.c.api.AdminToken, `query($n: String!) { dataNode(name: $n) { state disks { total free } } }`,
		map[string]any{"n": f.small.name}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if out.DataNode == nil || len(out.DataNode.Disks) != 1 || out.DataNode.State != "alive" {
		t.Fatalf("the registry shows %s as %+v, want it alive with one disk", f.small.name, out.DataNode)
	}
	return out.DataNode.Disks[0]
}

// drainBig drains every big node, so that only the small one can get new collections, and
// returns the undrain (also run when the test ends, in case it fails in between).
func (f *fullDisk) drainBig(t *testing.T) func() {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	for _, n := range f.big {
		if err := f.c.api.GraphQL(ctx, f.c.api.AdminToken, `mutation($n: String!) { drainDataNode(name: $n) { name } }`,
			map[string]any{"n": n.name}, nil); err != nil {
			t.Fatalf("drain %s: %v", n.name, err)
		}
	}
	done := false
	undrain := func() {
		if done {
			return
		}
		done = true
		for _, n := range f.big {
			if err := f.c.api.GraphQL(context.Background(), f.c.api.AdminToken, `mutation($n: String!) { undrainDataNode(name: $n) { name } }`,
				map[string]any{"n": n.name}, nil); err != nil {
				t.Errorf("undrain %s: %v", n.name, err)
			}
		}
	}
	t.Cleanup(undrain)
	return undrain
}

// tryProbe asks for a collection of probeSize in full's tenant.
func (f *fullDisk) tryProbe(t *testing.T) (id, node string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var out struct {
		CreateCollection struct {
			Collection struct{ ID string }
			NodeName   string
		}
	}
	err = f.c.api.GraphQL(ctx, f.c.api.AdminToken, `mutation($in: CreateCollectionInput!) {
		createCollection(input: $in) { collection { id } nodeName } }`, map[string]any{"in": map[string]any{
		"tenantId": f.full.id, "description": "placement probe", "maxBackupsCount": 1,
		"maxOneVersionSize": probeSize, "maxCollectionSize": probeSize, "strategy": "FIFO"}}, &out)
	return out.CreateCollection.Collection.ID, out.CreateCollection.NodeName, err
}

// createProbe is tryProbe that must succeed.
func (f *fullDisk) createProbe(t *testing.T) (id, node string) {
	t.Helper()
	id, node, err := f.tryProbe(t)
	if err != nil {
		t.Fatalf("create a %d MiB collection: %v", probeSize/mib, err)
	}
	return id, node
}

// refusedFull requires a 507 INSUFFICIENT_STORAGE answer.
func refusedFull(t *testing.T, a stack.Answer) {
	t.Helper()
	if a.Status != http.StatusInsufficientStorage || a.Code() != "INSUFFICIENT_STORAGE" {
		t.Errorf("answered %s, want 507 INSUFFICIENT_STORAGE", a)
	}
}

// fillDisk writes zeros to path until the filesystem is full and returns how many it wrote.
func fillDisk(path string) (int64, error) {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		w, err := fh.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("write %s: %w", path, err)
		}
	}
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"backuprepo/e2e/stack"
	"backuprepo/shared/internalapi"
	"backuprepo/shared/localserver"
)

// deathBound is how soon SPEC §6's "within seconds" must mark a dead node (issue 4: 10 s).
const deathBound = 10 * time.Second

// lockBound is how long a lock or reservation abandoned by a lost node may live: the control
// plane's lease (60 s, not configurable) plus slack for a busy machine.
const lockBound = 80 * time.Second

// frontDoorBound is how long after a partition an upload through the front door may take to
// fail: the node is dead in the control plane's view within seconds.
const frontDoorBound = 30 * time.Second

// healBound is how soon a node whose network came back must be alive again: a few gossip
// rounds, a push/pull interval (10 s) at most.
const healBound = 30 * time.Second

// drain: a drained node gets no new collection, and its collections still serve.
func (s *suite) drain(t *testing.T) {
	c, n := s.c, s.roomiest
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var drained struct{ DrainDataNode struct{ Name, State string } }
	if err := c.api.GraphQL(ctx, c.api.AdminToken, `mutation($n: String!) { drainDataNode(name: $n) { name state } }`,
		map[string]any{"n": n.name}, &drained); err != nil {
		t.Fatal(err)
	}
	t.Logf("drainDataNode(%s) answered state %s", n.name, drained.DrainDataNode.State)
	undrained := false
	undrain := func() {
		if undrained {
			return
		}
		undrained = true
		if err := c.api.GraphQL(context.Background(), c.api.AdminToken, `mutation($n: String!) { undrainDataNode(name: $n) { name } }`,
			map[string]any{"n": n.name}, nil); err != nil {
			t.Errorf("undrain %s: %v", n.name, err)
		}
	}
	defer undrain() // the later scenarios need the node back

	tn := newTenant(t, c)
	for range 2 {
		coll, node := newCollection(t, c, tn)
		if node == n.name {
			t.Fatalf("collection %s placed on %s, which is drained", coll, node)
		}
		data := randomBytes(512 << 10)
		v := upload(t, c, c.api.URL, tn.token, coll, data)
		download(t, c, c.api.URL, tn.token, coll, "latest", v.SHA256)
		requireStored(t, c, c.node(t, node), coll, v)
	}

	// The drained node's collection still takes uploads and serves downloads.
	data := randomBytes(1<<20 + 7)
	v := upload(t, c, c.api.URL, s.onboarded.token, s.onboardedColl, data)
	download(t, c, c.api.URL, s.onboarded.token, s.onboardedColl, "latest", sha(data))
	download(t, c, c.api.URL, s.onboarded.token, s.onboardedColl, s.onboardedFirst.ID, s.onboardedFirst.SHA256)
	requireStored(t, c, n, s.onboardedColl, s.onboardedFirst, v)

	// Undrained, it is the roomiest again: the drain alone kept placements away.
	undrain()
	if coll, node := newCollection(t, c, tn); node != n.name {
		t.Errorf("after undrain, collection %s placed on %s, want %s", coll, node, n.name)
	}
}

// twoControlPlanes: a second replica behind the same PostgreSQL and Redis refuses a token
// revoked through the first at once, and an upload lock taken through one holds on the other.
func (s *suite) twoControlPlanes(t *testing.T) {
	c := s.c
	cp1 := c.cps[0]
	cp2 := c.newControlPlane(t, "controlplane-2", []string{
		"BR_SIGNING_KEY=" + cp1.dataDir + "/signing-key.pem", "BR_CREATE_SIGNING_KEY=false"})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	started := time.Now()
	if err := cp2.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cp2.Stop(); err != nil {
			t.Errorf("stop %s: %v", cp2.Name, err)
		}
	}()
	if err := cp2.WaitLive(ctx); err != nil {
		t.Fatal(err)
	}
	api2 := *c.api
	api2.URL = cp2.url
	for _, n := range c.nodes {
		if _, err := c.waitState(ctx, &api2, n.name, "alive"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s up and seeing every data node alive through gossip after %s", cp2.Name, time.Since(started).Round(time.Millisecond))

	tn := newTenant(t, c)
	coll, node := newCollection(t, c, tn)
	n := c.node(t, node)
	whoami := func(api *stack.Stack, token string) int {
		t.Helper()
		status, body, err := get(ctx, api.URL+"/api/stable/auth/whoami", token)
		if err != nil {
			t.Fatalf("whoami on %s: %v", api.URL, err)
		}
		t.Logf("whoami on %s: %d %.120s", api.URL, status, body)
		return status
	}
	listStatus := func(api *stack.Stack, token string) int {
		t.Helper()
		a, err := api.List(ctx, api.URL, token, coll, stack.ReadOptions{})
		if err != nil {
			t.Fatalf("list on %s: %v", api.URL, err)
		}
		return a.Status
	}
	// Token revocation: CP2 has seen the token valid (and could have cached that) before it
	// is revoked through CP1.
	doomed := c.api.IssueToken(t, tn.user.ID, stack.TokenOptions{})
	if st := whoami(&api2, doomed.Token); st != http.StatusOK {
		t.Fatalf("whoami on %s with a fresh token answered %d", cp2.Name, st)
	}
	if st := listStatus(&api2, doomed.Token); st != http.StatusOK {
		t.Fatalf("listing through %s with a fresh token answered %d", cp2.Name, st)
	}
	c.api.RevokeToken(t, doomed.ID)
	if st := whoami(&api2, doomed.Token); st != http.StatusUnauthorized {
		t.Errorf("whoami on %s with a token revoked through %s answered %d, want 401", cp2.Name, cp1.Name, st)
	}
	if st := listStatus(&api2, doomed.Token); st != http.StatusUnauthorized {
		t.Errorf("listing through %s with a token revoked through %s answered %d, want 401", cp2.Name, cp1.Name, st)
	}
	if st := whoami(c.api, doomed.Token); st != http.StatusUnauthorized {
		t.Errorf("whoami on %s with a token revoked there answered %d, want 401", cp1.Name, st)
	}

	// Upload lock: a slow upload through CP1 holds it; through CP2 a second one is refused.
	body := newSlowBody(6<<20, 64<<10, 40*time.Millisecond, 256<<10)
	upCtx, upCancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer upCancel()
	up := startUpload(upCtx, c.api, c.api.URL, tn.token, coll, body)
	waitMark(t, body, up)
	second, err := api2.Upload(ctx, api2.URL, tn.token, coll, bytes.NewReader(randomBytes(4096)), stack.UploadOptions{Chunked: true})
	if err != nil {
		t.Fatalf("second upload through %s: %v", cp2.Name, err)
	}
	if second.Status != http.StatusConflict || second.Code() != "UPLOAD_IN_PROGRESS" {
		t.Errorf("second upload through %s while one streams through %s answered %s, want 409 UPLOAD_IN_PROGRESS",
			cp2.Name, cp1.Name, second)
	}
	// The front door of either replica routes to the node, which asks CP1 (its control-plane
	// URL). To see CP2 itself consult the shared lock, ask CP2's internal API as that node does.
	status, code, uploadID := admitOn(t, c, cp2, n.name, tn.token, coll)
	if status != http.StatusConflict || code != "UPLOAD_IN_PROGRESS" {
		t.Errorf("admit on %s while an upload streams through %s answered %d %s, want 409 UPLOAD_IN_PROGRESS",
			cp2.Name, cp1.Name, status, code)
	}
	if uploadID != "" {
		abortOn(t, c, cp2, n.name, uploadID)
	}
	r := <-up
	if r.err != nil || r.answer.Status != http.StatusOK {
		t.Fatalf("the slow upload through %s: %s", cp1.Name, r)
	}
	first, err := r.answer.Version()
	if err != nil || first.SHA256 != body.sum() {
		t.Fatalf("the slow upload answered %+v (%v), want sha256 %s", first, err, body.sum())
	}
	// Released on commit: CP2 now takes the next upload.
	data := randomBytes(300 << 10)
	next := upload(t, c, api2.URL, tn.token, coll, data)
	download(t, c, api2.URL, tn.token, coll, "latest", sha(data))
	download(t, c, c.api.URL, tn.token, coll, first.ID, first.SHA256)
	requireStored(t, c, n, coll, first, next)
}

// admitOn asks cp's internal API, signed as node, to admit a 10-byte upload to collection and
// returns the status, the refusal's code and, when admitted, the upload id.
func admitOn(t *testing.T, c *cluster, cp *controlPlane, node, token, collection string) (int, string, string) {
	t.Helper()
	body, _ := json.Marshal(internalapi.AdmitRequest{Caller: internalapi.Caller{Token: token, ClientIP: c.gateway},
		CollectionID: collection, ContentLength: 10, Room: 1 << 30})
	status, out := internalCall(t, c, cp, node, internalapi.PathAdmit, body)
	var refusal internalapi.ErrorBody
	var grant internalapi.AdmitResponse
	if status == http.StatusOK {
		_ = json.Unmarshal(out, &grant)
	} else {
		_ = json.Unmarshal(out, &refusal)
	}
	return status, string(refusal.Code), grant.UploadID
}

// abortOn gives up an upload admitted by admitOn, so that it holds nothing.
func abortOn(t *testing.T, c *cluster, cp *controlPlane, node, uploadID string) {
	t.Helper()
	body, _ := json.Marshal(internalapi.UploadRef{UploadID: uploadID})
	if status, out := internalCall(t, c, cp, node, internalapi.PathAbort, body); status != http.StatusOK {
		t.Errorf("abort upload %s on %s: %d %s", uploadID, cp.Name, status, out)
	}
}

func internalCall(t *testing.T, c *cluster, cp *controlPlane, node, path string, body []byte) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cp.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	internalapi.Sign(req, []byte(c.nodeSecret), node, body, time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s on %s: %v", path, cp.Name, err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAllLimited(resp.Body, 1<<20)
}

// partition: a node cut off the network during an upload through the front door; the upload
// fails, nothing partial remains, the lock and reservation expire, and after the node is back
// an upload succeeds.
func (s *suite) partition(t *testing.T) {
	c := s.c
	tn := newTenant(t, c)
	coll, node := newCollection(t, c, tn)
	n := c.node(t, node)
	before := upload(t, c, c.api.URL, tn.token, coll, randomBytes(1<<20))

	body := newSlowBody(256<<20, 32<<10, 20*time.Millisecond, 1<<20)
	upCtx, upCancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer upCancel()
	up := startUpload(upCtx, c.api, c.api.URL, tn.token, coll, body)
	waitMark(t, body, up)
	if err := c.disconnect(n); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	reconnected := false
	defer func() {
		if !reconnected {
			if err := c.reconnect(n); err != nil {
				t.Errorf("reconnect %s: %v", n.name, err)
			}
		}
	}()
	t.Logf("%s disconnected after %d bytes of the upload", n.name, body.sent.Load())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	dead, err := c.waitState(ctx, c.api, n.name, "dead")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURED partition: %s marked dead %s after the disconnect", n.name, dead.Round(time.Millisecond))
	if dead > deathBound {
		t.Errorf("partitioned %s marked dead after %s, want within %s", n.name, dead, deathBound)
	}

	// The upload in flight must end, and not as a success. The node gives up on the stalled
	// body after BR_BODY_IDLE_TIMEOUT (5 s here) and the control plane sees the node dead within
	// seconds, so half a minute is plenty for the front door to answer.
	var r result
	select {
	case r = <-up:
	case <-time.After(time.Until(cut.Add(frontDoorBound))):
		t.Errorf("the upload through the front door to partitioned %s was still hanging %s after the disconnect "+
			"(%d bytes sent, the node dead in the control plane's view): the front door does not give up on a "+
			"stalled data node; the client had to", n.name, time.Since(cut).Round(time.Second), body.sent.Load())
		body.Close()
		upCancel()
		r = <-up
	}
	t.Logf("MEASURED partition: the upload in flight ended %s after the disconnect: %s", time.Since(cut).Round(time.Millisecond), r)
	if r.err == nil && r.answer.Status == http.StatusOK {
		t.Fatalf("an upload cut off by a partition succeeded: %s", r)
	}

	// While the node is away its collection answers 503 with Retry-After.
	ctx, cancel = context.WithTimeout(context.Background(), callTimeout)
	a, err := c.api.Upload(ctx, c.api.URL, tn.token, coll, bytes.NewReader(randomBytes(1024)), stack.UploadOptions{Chunked: true})
	cancel()
	if err != nil || a.Status != http.StatusServiceUnavailable || retryAfter(a.Header) == 0 {
		t.Errorf("upload to partitioned %s answered %s (%v), want 503 with Retry-After", n.name, a, err)
	}

	// The node drops the stalled upload by itself (body idle timeout) and keeps nothing of it.
	deadline := time.Now().Add(30 * time.Second)
	for len(n.view.Leftovers(t)) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if left := n.view.Leftovers(t); len(left) > 0 {
		t.Errorf("partitioned %s still holds temporary files of the cut upload: %v", n.name, left)
	}

	// The cut upload's reservation expires while the node is still away: nobody can abort it.
	// Waiting for it here also keeps the partition longer than memberlist's gossip-to-the-dead
	// window (30 s), as real partitions are: healing must not depend on a dead member still
	// being gossiped to.
	for c.api.LiveReservations(t, coll) > 0 {
		if time.Since(cut) > lockBound {
			t.Fatalf("the cut upload's reservation still live %s after the partition", time.Since(cut).Round(time.Second))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("MEASURED partition: no live reservation %s after the disconnect", time.Since(cut).Round(time.Millisecond))

	if err := c.reconnect(n); err != nil {
		t.Fatal(err)
	}
	reconnected = true
	back := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), healBound)
	alive, err := c.waitState(ctx, c.api, n.name, "alive")
	cancel()
	if err != nil {
		// The cluster did not heal by itself. Restart the node (its join list brings it back)
		// so that the rest of the scenario, and the suite, still run.
		t.Errorf("%s not alive again %s after the partition healed: %v", n.name, healBound, err)
		if err := c.pool.Client.RestartContainer(n.containerID, 10); err != nil {
			t.Fatal(err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
		alive, err = c.waitState(ctx, c.api, n.name, "alive")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("MEASURED partition: %s alive %s after a docker restart following the reconnect", n.name, alive.Round(time.Millisecond))
	} else {
		t.Logf("MEASURED partition: %s alive again %s after the reconnect", n.name, alive.Round(time.Millisecond))
	}

	// No partial version anywhere: listing, database, disk.
	if ids := listIDs(t, c, c.api.URL, tn.token, coll); !slices.Equal(ids, []string{before.ID}) {
		t.Errorf("after the partition %s lists %v, want only %s", coll, ids, before.ID)
	}
	if rows := c.api.VersionRows(t, coll); len(rows) != 1 || rows[0].ID != before.ID {
		t.Errorf("after the partition the versions table holds %+v for %s, want only %s", rows, coll, before.ID)
	}
	requireStored(t, c, n, coll, before)

	// The lock expired with the same lease as the reservation: an upload goes through (a 409
	// UPLOAD_IN_PROGRESS is tolerated only while the lease might still run).
	data := randomBytes(2<<20 + 3)
	var after stack.Version
	refusals := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		a, err := c.api.Upload(ctx, c.api.URL, tn.token, coll, bytes.NewReader(data), stack.UploadOptions{Chunked: true})
		cancel()
		if err == nil && a.Status == http.StatusOK {
			if after, err = a.Version(); err != nil {
				t.Fatal(err)
			}
			break
		}
		if err != nil || a.Status != http.StatusConflict || a.Code() != "UPLOAD_IN_PROGRESS" {
			t.Fatalf("upload after the partition answered %s (%v)", a, err)
		}
		refusals++
		if time.Since(cut) > lockBound {
			t.Fatalf("the cut upload's lock still held %s after the partition", time.Since(cut).Round(time.Second))
		}
		time.Sleep(time.Second)
	}
	t.Logf("MEASURED partition: upload accepted again %s after the disconnect (%s after the reconnect; %d refusals with UPLOAD_IN_PROGRESS before)",
		time.Since(cut).Round(time.Millisecond), time.Since(back).Round(time.Millisecond), refusals)
	if after.SHA256 != sha(data) {
		t.Errorf("upload after the partition answered %+v, want sha256 %s", after, sha(data))
	}
	download(t, c, c.api.URL, tn.token, coll, "latest", sha(data))
	requireStored(t, c, n, coll, before, after)
}

// nodeLoss: a killed node is dead within seconds, its collections answer 503 with Retry-After,
// placements avoid it, the rest works; restarted, it is alive with every version intact.
func (s *suite) nodeLoss(t *testing.T) {
	c := s.c
	tn := newTenant(t, c)
	coll, node := newCollection(t, c, tn)
	n := c.node(t, node)
	var kept []stack.Version
	for range 2 {
		kept = append(kept, upload(t, c, c.api.URL, tn.token, coll, randomBytes(1<<20+int(randomInt(1<<16)))))
	}

	if err := c.kill(n); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			if err := c.start(n); err != nil {
				t.Errorf("start %s again: %v", n.name, err)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	dead, err := c.waitState(ctx, c.api, n.name, "dead")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURED node loss: %s marked dead %s after docker kill", n.name, dead.Round(time.Millisecond))
	if dead > deathBound {
		t.Errorf("killed %s marked dead after %s, want within %s", n.name, dead, deathBound)
	}

	// Its collection answers 503 with Retry-After, for uploads and downloads.
	ctx, cancel = context.WithTimeout(context.Background(), callTimeout)
	a, err := c.api.Upload(ctx, c.api.URL, tn.token, coll, bytes.NewReader(randomBytes(4096)), stack.UploadOptions{Chunked: true})
	if err != nil || a.Status != http.StatusServiceUnavailable || retryAfter(a.Header) == 0 {
		t.Errorf("upload to the collection of dead %s answered %s (%v), want 503 with Retry-After", n.name, a, err)
	}
	a, err = c.api.Download(ctx, c.api.URL, tn.token, coll, "latest", stack.ReadOptions{})
	if err != nil || a.Status != http.StatusServiceUnavailable || retryAfter(a.Header) == 0 {
		t.Errorf("download from the collection of dead %s answered %s (%v), want 503 with Retry-After", n.name, a, err)
	}
	cancel()

	// New collections go elsewhere, and the other nodes are unaffected.
	other, otherNode := newCollection(t, c, tn)
	if otherNode == n.name {
		t.Fatalf("collection %s placed on dead %s", other, n.name)
	}
	data := randomBytes(1<<20 + 99)
	v := upload(t, c, c.api.URL, tn.token, other, data)
	download(t, c, c.api.URL, tn.token, other, "latest", sha(data))
	requireStored(t, c, c.node(t, otherNode), other, v)
	for on, ballast := range s.ballastOn {
		data := randomBytes(256 << 10)
		upload(t, c, c.api.URL, s.ballast.token, ballast, data)
		download(t, c, c.api.URL, s.ballast.token, ballast, "latest", sha(data))
		t.Logf("collection %s on %s served while %s was dead", ballast, on, n.name)
	}

	// Back: same disk, same address.
	if err := c.start(n); err != nil {
		t.Fatal(err)
	}
	restarted = true
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	alive, err := c.waitState(ctx, c.api, n.name, "alive")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURED node loss: %s alive again %s after docker start", n.name, alive.Round(time.Millisecond))
	want := []string{kept[1].ID, kept[0].ID}
	if ids := listIDs(t, c, c.api.URL, tn.token, coll); !slices.Equal(ids, want) {
		t.Errorf("after the restart %s lists %v, want %v", coll, ids, want)
	}
	for _, v := range kept {
		download(t, c, c.api.URL, tn.token, coll, v.ID, v.SHA256)
	}
	more := upload(t, c, c.api.URL, tn.token, coll, randomBytes(512<<10))
	requireStored(t, c, n, coll, append(kept, more)...)
}

// controlPlaneRestart: the control plane is killed while one upload streams through its front
// door and another directly to the node; each ends as a failure that left nothing or as a
// success that is fully there, and after the node's next start no orphan file remains.
func (s *suite) controlPlaneRestart(t *testing.T) {
	c := s.c
	cp := c.cps[0]
	tn := newTenant(t, c)
	viaDoor, doorNode := newCollection(t, c, tn)
	direct, directNode := newCollection(t, c, tn)
	nd := c.node(t, directNode)

	doorBody := newSlowBody(8<<20, 32<<10, 25*time.Millisecond, 512<<10)
	directBody := newSlowBody(8<<20, 32<<10, 25*time.Millisecond, 512<<10)
	upCtx, upCancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer upCancel()
	doorUp := startUpload(upCtx, c.api, c.api.URL, tn.token, viaDoor, doorBody)
	directUp := startUpload(upCtx, c.api, nd.url, tn.token, direct, directBody)
	waitMark(t, doorBody, doorUp)
	waitMark(t, directBody, directUp)

	_ = cp.Kill()
	killed := time.Now()
	time.Sleep(time.Second)
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := cp.WaitLive(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURED control-plane restart: %s serving again %s after SIGKILL", cp.Name, time.Since(killed).Round(time.Millisecond))
	for _, n := range c.nodes {
		if _, err := c.waitState(ctx, c.api, n.name, "alive"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("MEASURED control-plane restart: every data node alive in its view %s after SIGKILL", time.Since(killed).Round(time.Millisecond))

	outcomes := []struct {
		name, coll string
		node       *dataNode
		body       *slowBody
		up         <-chan result
	}{
		{"through the front door", viaDoor, c.node(t, doorNode), doorBody, doorUp},
		{"directly to " + directNode, direct, nd, directBody, directUp},
	}
	results := make([]result, len(outcomes))
	for i, o := range outcomes {
		select {
		case results[i] = <-o.up:
		case <-time.After(90 * time.Second):
			t.Errorf("the upload %s was still hanging %s after the control plane was killed", o.name, time.Since(killed).Round(time.Second))
			o.body.Close()
			upCancel()
			results[i] = <-o.up
		}
		t.Logf("MEASURED control-plane restart: upload %s ended after %s: %s", o.name, results[i].took.Round(time.Millisecond), results[i])
	}

	// The node's next start: it reconciles whatever it had staged or half-written.
	restart := time.Now()
	if err := c.pool.Client.RestartContainer(nd.containerID, 10); err != nil {
		t.Fatal(err)
	}
	if doorNode != directNode {
		if err := c.pool.Client.RestartContainer(c.node(t, doorNode).containerID, 10); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.nodes {
		if err := localserver.WaitOK(ctx, n.url+"/livez", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.waitState(ctx, c.api, n.name, "alive"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("MEASURED control-plane restart: restarted data node alive again %s after docker restart", time.Since(restart).Round(time.Millisecond))

	for i, o := range outcomes {
		r := results[i]
		rows := c.api.VersionRows(t, o.coll)
		if r.err == nil && r.answer.Status == http.StatusOK {
			v, err := r.answer.Version()
			if err != nil {
				t.Fatal(err)
			}
			if v.SHA256 != o.body.sum() {
				t.Errorf("upload %s answered sha256 %s, but %s was sent", o.name, v.SHA256, o.body.sum())
			}
			if len(rows) != 1 || rows[0].ID != v.ID {
				t.Errorf("upload %s succeeded as %s, but the versions table holds %+v", o.name, v.ID, rows)
			}
			download(t, c, c.api.URL, tn.token, o.coll, v.ID, v.SHA256)
			requireStored(t, c, o.node, o.coll, v)
			continue
		}
		if r.err == nil && r.answer.Status < 500 && r.answer.Status != http.StatusConflict {
			t.Errorf("upload %s cut by the control plane's restart answered %s, want a 5xx or a broken connection", o.name, r)
		}
		if len(rows) != 0 {
			t.Errorf("upload %s failed (%s), but the versions table holds %+v", o.name, r, rows)
		}
		requireStored(t, c, o.node, o.coll)
	}
	requireNoOrphansEventually(t, c, 20*time.Second)

	// The cluster works again: each collection takes an upload once the cut upload's lock
	// is gone (released by the node's abort, or expired).
	for _, o := range outcomes {
		data := randomBytes(256 << 10)
		deadline := time.Now().Add(lockBound)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			a, err := c.api.Upload(ctx, c.api.URL, tn.token, o.coll, bytes.NewReader(data), stack.UploadOptions{Chunked: true})
			cancel()
			if err == nil && a.Status == http.StatusOK {
				break
			}
			if err != nil || a.Status != http.StatusConflict || time.Now().After(deadline) {
				t.Fatalf("upload %s after the restart answered %s (%v)", o.name, a, err)
			}
			time.Sleep(time.Second)
		}
		download(t, c, c.api.URL, tn.token, o.coll, "latest", sha(data))
	}
	requireNoOrphansEventually(t, c, 20*time.Second)
}

// requireNoOrphansEventually gives nodes that just started time to reconcile, then checks.
func requireNoOrphansEventually(t *testing.T, c *cluster, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if len(orphanProblems(t, c)) == 0 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	if p := orphanProblems(t, c); len(p) > 0 {
		t.Errorf("disks and versions table disagree:\n%s", strings.Join(p, "\n"))
	}
}

package httpapi_test

// controlPlaneDouble is a TEST DOUBLE of the control plane's internal API, served over a real
// socket, written from the contract in shared/internalapi because the real control plane side
// (issue 3, control-plane half) does not exist yet. It verifies the node's HMAC signature,
// keeps one upload lock per collection, computes a byte allowance, makes commit idempotent and
// rotates FIFO. Replace it with the real control plane (pgtest database + Redis) once that
// lands; until then it is the only thing standing in for a remote service in these tests.

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"backuprepo/shared"
	"backuprepo/shared/internalapi"
)

type doubleCollection struct {
	maxOne            int64
	maxCount          int
	requireEncryption bool
	limitCode         shared.Code
	// refuse, when set, is the code admit answers with (rights, windows, tenant...).
	refuse   shared.Code
	versions []shared.Version // oldest first
	next     int64
	lock     string // upload id holding the collection
}

type doubleUpload struct {
	collection string
	allowance  int64
	committed  *internalapi.CommitResponse
	aborted    bool
}

type controlPlaneDouble struct {
	t      *testing.T
	secret []byte
	srv    *httptest.Server

	mu          sync.Mutex
	calls       []string
	admits      []internalapi.AdmitRequest
	collections map[string]*doubleCollection
	uploads     map[string]*doubleUpload
	revoked     map[string]bool
	// failCommits makes that many commits answer 503 before one succeeds.
	failCommits int
	// loseCommitAnswers makes that many commits be recorded but answered 503, as when the
	// answer is lost on the way back.
	loseCommitAnswers int
	// refuseCommit, when set, is the code every commit answers with.
	refuseCommit shared.Code
	// refuseExtend, when set, is the code every extend answers with.
	refuseExtend shared.Code
	extendEvery  time.Duration
}

func newControlPlaneDouble(t *testing.T, secret []byte) *controlPlaneDouble {
	d := &controlPlaneDouble{t: t, secret: secret, collections: map[string]*doubleCollection{},
		uploads: map[string]*doubleUpload{}, revoked: map[string]bool{}}
	d.srv = httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *controlPlaneDouble) addCollection(id string, c doubleCollection) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cc := c
	if cc.maxCount == 0 {
		cc.maxCount = 10
	}
	if cc.limitCode == "" {
		cc.limitCode = shared.CodeVersionTooLarge
	}
	d.collections[id] = &cc
}

func (d *controlPlaneDouble) set(f func(d *controlPlaneDouble)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

func (d *controlPlaneDouble) callCount(path string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.calls {
		if path == "" || c == path {
			n++
		}
	}
	return n
}

func (d *controlPlaneDouble) lastAdmit() internalapi.AdmitRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.admits) == 0 {
		d.t.Fatal("no admit seen")
	}
	return d.admits[len(d.admits)-1]
}

func (d *controlPlaneDouble) locked(collection string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.collections[collection].lock != ""
}

func (d *controlPlaneDouble) versionCount(collection string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.collections[collection].versions)
}

func refuse(w http.ResponseWriter, status int, code shared.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(internalapi.ErrorBody{Code: code, Message: msg})
}

func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// statusOf is the control plane's code-to-status mapping for the codes this double uses.
func statusOf(c shared.Code) int {
	switch c {
	case shared.CodeUnauthenticated, shared.CodeTokenRevoked, shared.CodeTokenExpired:
		return 401
	case shared.CodeForbidden, shared.CodeWindowClosed, shared.CodeTenantSuspended, shared.CodeIPNotAllowed:
		return 403
	case shared.CodeNotFound:
		return 404
	case shared.CodeUploadInProgress, shared.CodeCollectionFull, shared.CodeConflict:
		return 409
	}
	return 500
}

func (d *controlPlaneDouble) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/livez" {
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		refuse(w, 400, shared.CodeInvalidInput, "read body")
		return
	}
	if _, err := internalapi.Verify(r, d.secret, body, time.Now()); err != nil {
		refuse(w, 401, shared.CodeUnauthenticated, "node signature: "+err.Error())
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, r.URL.Path)
	switch r.URL.Path {
	case internalapi.PathAdmit:
		var req internalapi.AdmitRequest
		mustDecode(d.t, body, &req)
		d.admits = append(d.admits, req)
		d.admit(w, req)
	case internalapi.PathExtend:
		var req internalapi.UploadRef
		mustDecode(d.t, body, &req)
		if d.refuseExtend != "" {
			refuse(w, statusOf(d.refuseExtend), d.refuseExtend, "extend refused")
			return
		}
		u := d.uploads[req.UploadID]
		if u == nil || u.aborted || u.committed != nil {
			refuse(w, 404, shared.CodeNotFound, "no such upload")
			return
		}
		answer(w, struct{}{})
	case internalapi.PathCommit:
		var req internalapi.CommitRequest
		mustDecode(d.t, body, &req)
		d.commit(w, req)
	case internalapi.PathAbort:
		var req internalapi.UploadRef
		mustDecode(d.t, body, &req)
		u := d.uploads[req.UploadID]
		if u == nil {
			refuse(w, 404, shared.CodeNotFound, "no such upload")
			return
		}
		if u.committed == nil {
			u.aborted = true
			if c := d.collections[u.collection]; c.lock == req.UploadID {
				c.lock = ""
			}
		}
		answer(w, struct{}{})
	case internalapi.PathOutcome:
		var req internalapi.UploadRef
		mustDecode(d.t, body, &req)
		u := d.uploads[req.UploadID]
		if u == nil {
			refuse(w, 404, shared.CodeNotFound, "no such upload")
			return
		}
		out := internalapi.OutcomeResponse{}
		if u.committed != nil {
			out = internalapi.OutcomeResponse{Committed: true, Version: u.committed.Version}
		}
		answer(w, out)
	case internalapi.PathResolve, internalapi.PathDelete:
		var req internalapi.VersionRequest
		mustDecode(d.t, body, &req)
		c, ok := d.visible(w, req.Caller, req.CollectionID)
		if !ok {
			return
		}
		i := resolve(c.versions, req.Ref)
		if i < 0 {
			refuse(w, 404, shared.CodeNotFound, "version not found")
			return
		}
		v := c.versions[i]
		if r.URL.Path == internalapi.PathDelete {
			c.versions = slices.Delete(c.versions, i, i+1)
		}
		answer(w, internalapi.VersionResponse{Version: v})
	case internalapi.PathList:
		var req internalapi.ListRequest
		mustDecode(d.t, body, &req)
		c, ok := d.visible(w, req.Caller, req.CollectionID)
		if !ok {
			return
		}
		out := slices.Clone(c.versions)
		slices.Reverse(out)
		answer(w, internalapi.ListResponse{Versions: out})
	default:
		refuse(w, 404, shared.CodeNotFound, "no such internal path")
	}
}

func (d *controlPlaneDouble) visible(w http.ResponseWriter, caller internalapi.Caller, id string) (*doubleCollection, bool) {
	if d.revoked[caller.Token] {
		refuse(w, 401, shared.CodeTokenRevoked, "token revoked")
		return nil, false
	}
	c := d.collections[id]
	if c == nil {
		refuse(w, 404, shared.CodeNotFound, "collection not found")
		return nil, false
	}
	return c, true
}

func (d *controlPlaneDouble) admit(w http.ResponseWriter, req internalapi.AdmitRequest) {
	c, ok := d.visible(w, req.Caller, req.CollectionID)
	if !ok {
		return
	}
	if c.refuse != "" {
		refuse(w, statusOf(c.refuse), c.refuse, "refused by the double")
		return
	}
	if c.lock != "" {
		refuse(w, 409, shared.CodeUploadInProgress, "an upload is in progress")
		return
	}
	id := uuid.NewString()
	allowance := min(c.maxOne, req.Room)
	c.lock = id
	d.uploads[id] = &doubleUpload{collection: req.CollectionID, allowance: allowance}
	answer(w, internalapi.AdmitResponse{UploadID: id, Allowance: allowance, LimitCode: c.limitCode,
		RequireEncryption: c.requireEncryption, ExtendEvery: d.extendEvery})
}

func (d *controlPlaneDouble) commit(w http.ResponseWriter, req internalapi.CommitRequest) {
	if d.failCommits > 0 {
		d.failCommits--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if d.refuseCommit != "" {
		refuse(w, statusOf(d.refuseCommit), d.refuseCommit, "commit refused")
		return
	}
	u := d.uploads[req.UploadID]
	if u == nil || u.aborted {
		refuse(w, 409, shared.CodeConflict, "upload not in progress")
		return
	}
	if u.committed != nil {
		if d.loseCommitAnswers > 0 {
			d.loseCommitAnswers--
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		answer(w, *u.committed)
		return
	}
	if req.Size > u.allowance {
		refuse(w, 409, shared.CodeConflict, "size above the allowance")
		return
	}
	c := d.collections[u.collection]
	c.next++
	v := shared.Version{ID: req.UploadID, CollectionID: u.collection, Number: c.next,
		Filename: "backup-" + strconv.FormatInt(c.next, 10), Size: req.Size, SHA256: req.SHA256,
		CreatedAt: time.Now().UTC().Truncate(time.Second)}
	c.versions = append(c.versions, v)
	var rotated []shared.Version
	for len(c.versions) > c.maxCount {
		rotated = append(rotated, c.versions[0])
		c.versions = c.versions[1:]
	}
	c.lock = ""
	res := internalapi.CommitResponse{Version: v, Rotated: rotated}
	u.committed = &res
	if d.loseCommitAnswers > 0 {
		d.loseCommitAnswers--
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	answer(w, res)
}

// resolve finds ref (already canonical: latest, first, vN or an id) in versions, oldest first.
func resolve(versions []shared.Version, ref string) int {
	if len(versions) == 0 {
		return -1
	}
	switch {
	case ref == "latest":
		return len(versions) - 1
	case ref == "first":
		return 0
	case strings.HasPrefix(ref, "v"):
		n, _ := strconv.ParseInt(ref[1:], 10, 64)
		return slices.IndexFunc(versions, func(v shared.Version) bool { return v.Number == n })
	}
	return slices.IndexFunc(versions, func(v shared.Version) bool { return v.ID == ref })
}

func mustDecode(t *testing.T, b []byte, v any) {
	if err := json.Unmarshal(b, v); err != nil {
		t.Errorf("double: decode %s: %v", b, err)
	}
}

package uploads

import (
	"net/http"
	"testing"

	"backuprepo/shared"
	"backuprepo/shared/internalapi"
)

// Every way a version row goes (rotation at commit, delete through the API) leaves a
// tombstone for its node, listed until the node acknowledges it, and only to that node.
func TestFileDeletionTombstones(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.uploader()
	e.collection("tomb", func(c *shared.Collection) { c.MaxBackupsCount = 1 })
	first := e.upload(tok, "tomb", 10)
	second := e.upload(tok, "tomb", 10) // FIFO with one version rotates the first out
	if len(second.Rotated) != 1 || second.Rotated[0].ID != first.Version.ID {
		t.Fatalf("rotated = %+v, want version %s", second.Rotated, first.Version.ID)
	}

	list := func(node string) []internalapi.FileRef {
		t.Helper()
		var out internalapi.DeletionsResponse
		if st, eb := e.call(node, internalapi.PathDeletions, internalapi.DeletionsRequest{Limit: 10}, &out); st != http.StatusOK {
			t.Fatalf("deletions for %s: %d %+v", node, st, eb)
		}
		return out.Files
	}
	if got := list("dn-1"); len(got) != 1 || got[0] != (internalapi.FileRef{CollectionID: "tomb", VersionID: first.Version.ID}) {
		t.Fatalf("dn-1 deletions = %+v", got)
	}
	if got := list("dn-2"); len(got) != 0 {
		t.Fatalf("dn-2 sees another node's deletions: %+v", got)
	}

	var deleted internalapi.VersionResponse
	if st, eb := e.call("dn-1", internalapi.PathDelete, internalapi.VersionRequest{
		Caller: internalapi.Caller{Token: e.token(e.user(e.tenant, shared.RoleCollectionManager), shared.TokenRequest{}), ClientIP: "192.0.2.1"}, CollectionID: "tomb", Ref: "latest"}, &deleted); st != http.StatusOK {
		t.Fatalf("delete: %d %+v", st, eb)
	}
	if got := list("dn-1"); len(got) != 2 || got[1].VersionID != second.Version.ID {
		t.Fatalf("after delete, dn-1 deletions = %+v", got)
	}

	// Another node cannot acknowledge dn-1's files; dn-1 can, and then they are gone.
	ack := internalapi.DeletionsAck{VersionIDs: []string{first.Version.ID, second.Version.ID, "not-a-uuid"}}
	if st, eb := e.call("dn-2", internalapi.PathDeletionsAck, ack, nil); st != http.StatusOK {
		t.Fatalf("ack by dn-2: %d %+v", st, eb)
	}
	if got := list("dn-1"); len(got) != 2 {
		t.Fatalf("dn-2's ack removed dn-1's tombstones: %+v", got)
	}
	if st, eb := e.call("dn-1", internalapi.PathDeletionsAck, ack, nil); st != http.StatusOK {
		t.Fatalf("ack: %d %+v", st, eb)
	}
	if got := list("dn-1"); len(got) != 0 {
		t.Fatalf("after ack, dn-1 deletions = %+v", got)
	}
}

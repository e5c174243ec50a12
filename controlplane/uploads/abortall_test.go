package uploads

import (
	"net/http"
	"testing"

	"backuprepo/shared/internalapi"
)

// A restarted node aborts what it lost: its reservations go and their locks are released at
// once, and another node's uploads are untouched.
func TestAbortAllAfterNodeRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.uploader()
	e.collection("lost")
	if _, st, eb := e.admit(tok, "lost", 10); st != http.StatusOK {
		t.Fatalf("admit: %d %+v", st, eb)
	}
	if _, st, eb := e.admit(tok, "lost", 10); st != http.StatusConflict || eb.Code != "UPLOAD_IN_PROGRESS" {
		t.Fatalf("second admit while the first is in flight: %d %+v", st, eb)
	}

	var out internalapi.AbortAllResponse
	if st, eb := e.call("dn-2", internalapi.PathAbortAll, internalapi.AbortAllRequest{}, &out); st != http.StatusOK || out.Aborted != 0 {
		t.Fatalf("abort-all by another node: %d %+v %+v", st, eb, out)
	}
	if !e.locked("lost") || e.count("SELECT count(*) FROM upload_reservations WHERE collection_id = 'lost'") != 1 {
		t.Fatal("another node's abort-all touched dn-1's upload")
	}
	if st, eb := e.call("dn-1", internalapi.PathAbortAll, internalapi.AbortAllRequest{}, &out); st != http.StatusOK || out.Aborted != 1 {
		t.Fatalf("abort-all: %d %+v %+v", st, eb, out)
	}
	if e.locked("lost") || e.count("SELECT count(*) FROM upload_reservations WHERE collection_id = 'lost'") != 0 {
		t.Fatal("lock or reservation left after abort-all")
	}
	if _, st, eb := e.admit(tok, "lost", 10); st != http.StatusOK {
		t.Fatalf("admit after abort-all: %d %+v", st, eb)
	}
}

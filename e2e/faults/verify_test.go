package faults

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

// runVerify runs `datanode verify` for node with the node's own settings and returns its exit
// status and output.
func runVerify(t *testing.T, s *stack.Stack, node *stack.Node) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.DataNode, "verify")
	cmd.Env = []string{
		"BR_NODE_NAME=" + node.Name,
		"BR_DISKS=" + strings.Join(node.Disks, ","),
		"BR_CONTROLPLANE_URL=" + s.URL,
		"BR_NODE_SECRET=" + s.NodeSecret,
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run datanode verify: %v", err)
	}
	return code, out.String()
}

type integrity struct {
	LastCheckedAt   *time.Time `json:"lastCheckedAt"`
	CheckedVersions int        `json:"checkedVersions"`
	Problems        []struct {
		VersionID string `json:"versionId"`
		Kind      string `json:"kind"`
		Detail    string `json:"detail"`
	} `json:"problems"`
}

func collectionIntegrity(t *testing.T, s *stack.Stack, id string) integrity {
	t.Helper()
	var out struct {
		Collection struct {
			Integrity integrity `json:"integrity"`
		} `json:"collection"`
	}
	err := s.GraphQL(t.Context(), s.AdminToken, `query($id: ID!) { collection(id: $id) {
		integrity { lastCheckedAt checkedVersions problems { versionId kind detail } } } }`, map[string]any{"id": id}, &out)
	if err != nil {
		t.Fatal(err)
	}
	return out.Collection.Integrity
}

func problemsOf(in integrity) map[string]string {
	out := map[string]string{}
	for _, p := range in.Problems {
		out[p.VersionID] = p.Kind
	}
	return out
}

// TestVerifyFindsDamage damages stored versions in every way a disk can (a flipped bit, a
// lost file, a file nobody recorded) and checks that `datanode verify` reports each, that the
// control plane shows them per collection in GraphQL, and that repairs clear them.
func TestVerifyFindsDamage(t *testing.T) {
	t.Parallel()
	w := newWorld(t) // one version already stored
	good := w.mustUpload(t, w.s.URL, 2, 5*mib)
	damaged := w.mustUpload(t, w.s.URL, 3, 9*mib+17)
	lost := w.mustUpload(t, w.s.URL, 4, 1*mib)
	dir := filepath.Join(w.node.Disks[0], "collections", w.coll)

	code, out := runVerify(t, w.s, w.node)
	if code != 0 || !strings.Contains(out, "4 match their records, 0 damaged or unreadable, 0 missing, 0 unknown") {
		t.Fatalf("verify of intact disks: exit %d\n%s", code, out)
	}
	if in := collectionIntegrity(t, w.s, w.coll); in.CheckedVersions != 4 || len(in.Problems) != 0 || in.LastCheckedAt == nil {
		t.Fatalf("integrity after a clean scan = %+v", in)
	}

	// A flipped bit, a file gone (created long enough ago that a scan must have found it), and
	// a file no version records.
	flip := func() {
		f, err := os.OpenFile(filepath.Join(dir, damaged.ID), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, 7*mib+3); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0x04
		if _, err := f.WriteAt(b, 7*mib+3); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	flip()
	if err := os.Remove(filepath.Join(dir, lost.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.s.DB.Exec(t.Context(), "UPDATE versions SET created_at = now() - interval '1 hour' WHERE id = $1", lost.ID); err != nil {
		t.Fatal(err)
	}
	const stray = "0e5c8a52-4b7e-4f0a-9d3c-2b1a0f9e8d7c"
	if err := os.WriteFile(filepath.Join(dir, stray), []byte("nobody recorded me"), 0o640); err != nil {
		t.Fatal(err)
	}

	code, out = runVerify(t, w.s, w.node)
	for _, want := range []string{
		"damaged: collection " + w.coll + ", version " + damaged.ID,
		"missing: 1 versions",
		"unknown file: collection " + w.coll + ", " + stray,
		"2 match their records, 1 damaged or unreadable, 1 missing, 1 unknown",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q", want)
		}
	}
	if code != 3 {
		t.Errorf("verify with problems: exit %d, want 3", code)
	}
	if t.Failed() {
		t.Fatalf("verify output:\n%s", out)
	}
	in := collectionIntegrity(t, w.s, w.coll)
	if p := problemsOf(in); len(p) != 2 || p[damaged.ID] != "damaged" || p[lost.ID] != "missing" {
		t.Fatalf("GraphQL problems after the damage = %+v", in.Problems)
	}
	// verify changed nothing on the disk: the stray file and the damaged one are still there.
	if _, err := os.Stat(filepath.Join(dir, stray)); err != nil {
		t.Fatalf("verify touched the unknown file: %v", err)
	}

	// The damaged copy is not served either: its bytes past 7 MiB are in the first segment.
	d, err := w.s.Download(t.Context(), w.s.URL, w.tok, w.coll, damaged.ID, stack.ReadOptions{})
	if err != nil || d.Status != http.StatusInternalServerError || d.Code() != "VERSION_DAMAGED" {
		t.Fatalf("download of the damaged version: %v %s", err, d)
	}
	if d, err := w.s.Download(t.Context(), w.s.URL, w.tok, w.coll, good.ID, stack.ReadOptions{}); err != nil || sha(d.Body) != good.SHA256 {
		t.Fatalf("download of an intact version: %v %s", err, d)
	}

	// Repairs: the bit flipped back, the lost version deleted, the stray file removed.
	flip()
	if a, err := w.s.DeleteVersion(t.Context(), w.s.URL, w.s.AdminToken, w.coll, lost.ID, stack.ReadOptions{}); err != nil || a.Status != http.StatusOK {
		t.Fatalf("delete the lost version: %v %s", err, a)
	}
	if err := os.Remove(filepath.Join(dir, stray)); err != nil {
		t.Fatal(err)
	}
	code, out = runVerify(t, w.s, w.node)
	if code != 0 || !strings.Contains(out, "3 match their records, 0 damaged or unreadable, 0 missing, 0 unknown") {
		t.Fatalf("verify after the repairs: exit %d\n%s", code, out)
	}
	if in := collectionIntegrity(t, w.s, w.coll); in.CheckedVersions != 3 || len(in.Problems) != 0 {
		t.Fatalf("integrity after the repairs = %+v", in)
	}
	w.mu.Lock()
	delete(w.committed, lost.ID)
	w.mu.Unlock()
	if err := w.consistent(t); err != nil {
		t.Fatal(err)
	}
}

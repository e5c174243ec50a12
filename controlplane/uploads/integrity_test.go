package uploads

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"backuprepo/shared"
	"backuprepo/shared/internalapi"
)

// checkRow is a version_checks row as the test reads it back.
type checkRow struct {
	node, kind, detail string
	ok                 bool
	foundSize          *int64
	foundSHA           *string
	checkedAt          time.Time
}

// checkOf returns the version_checks row of a version; found is false when there is none.
func (e *env) checkOf(versionID string) (checkRow, bool) {
	e.t.Helper()
	var r checkRow
	err := e.db.Pool.QueryRow(e.ctx, `SELECT node_name, kind, detail, ok, found_size, found_sha256, checked_at
		FROM version_checks WHERE version_id = $1`, versionID).Scan(&r.node, &r.kind, &r.detail, &r.ok, &r.foundSize, &r.foundSHA, &r.checkedAt)
	if err != nil {
		if strings.Contains(err.Error(), "no rows") {
			return r, false
		}
		e.t.Fatal(err)
	}
	return r, true
}

func (e *env) report(node string, rep internalapi.IntegrityReport) internalapi.IntegrityResponse {
	e.t.Helper()
	var out internalapi.IntegrityResponse
	if st, eb := e.call(node, internalapi.PathIntegrity, rep, &out); st != http.StatusOK {
		e.t.Fatalf("integrity report from %s: %d %+v", node, st, eb)
	}
	return out
}

func good(collection string, v shared.Version) internalapi.IntegrityCheck {
	return internalapi.IntegrityCheck{CollectionID: collection, VersionID: v.ID, Size: v.Size, SHA256: v.SHA256}
}

// TestIntegrityReport walks one node's reports through every outcome: a match, a size and a
// SHA-256 mismatch, a problem the node found, another node's version, an unknown file, a repair
// and a complete scan that finds versions missing.
func TestIntegrityReport(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.uploader()
	e.collection("integ", func(c *shared.Collection) { c.MaxBackupsCount, c.MaxCollectionSize = 10, 0 })
	vOK, vSize, vSHA, vBad := e.upload(tok, "integ", 10).Version, e.upload(tok, "integ", 11).Version,
		e.upload(tok, "integ", 12).Version, e.upload(tok, "integ", 13).Version
	// Another tenant's collection on dn-2, with a version committed there.
	e.collection("theirs", func(c *shared.Collection) { c.TenantID, c.NodeName = e.newTenant("other"), "dn-2" })
	theirs := shared.Version{ID: uuid.NewString(), Size: 7, SHA256: sha(7)}
	e.exec(`INSERT INTO versions (id, collection_id, number, filename, size, sha256, node_name) VALUES ($1, 'theirs', 1, 'x', 7, $2, 'dn-2')`,
		theirs.ID, theirs.SHA256)
	unknown := internalapi.FileRef{CollectionID: "integ", VersionID: uuid.NewString()}
	const problem = "block 3 (bytes 3145728-4194303) fails its checksum"

	got := e.report("dn-1", internalapi.IntegrityReport{Checks: []internalapi.IntegrityCheck{
		good("integ", vOK),
		{CollectionID: "integ", VersionID: vSize.ID, Size: 99, SHA256: vSize.SHA256},
		{CollectionID: "integ", VersionID: vSHA.ID, Size: 12, SHA256: sha(999)},
		{CollectionID: "integ", VersionID: vBad.ID, Size: 13, Problem: problem},
		{CollectionID: "theirs", VersionID: theirs.ID, Size: 1, SHA256: sha(1)}, // dn-2's file: ignored
		{CollectionID: unknown.CollectionID, VersionID: unknown.VersionID, Size: 5, SHA256: sha(5)},
	}})
	if got.Verified != 1 || len(got.Problems) != 3 || got.Missing != 0 || len(got.Unknown) != 1 || got.Unknown[0] != unknown {
		t.Fatalf("response = %+v; want 1 verified, 3 damaged, %v unknown", got, unknown)
	}
	if r, ok := e.checkOf(vOK.ID); !ok || !r.ok || r.kind != "" || r.node != "dn-1" || r.foundSize != nil || r.foundSHA != nil || r.detail != "" {
		t.Errorf("ok check = %+v (found %v)", r, ok)
	}
	if r, _ := e.checkOf(vSize.ID); r.ok || r.kind != "damaged" || r.foundSize == nil || *r.foundSize != 99 ||
		r.foundSHA == nil || *r.foundSHA != vSize.SHA256 || !strings.Contains(r.detail, "99 bytes; 11 were uploaded") {
		t.Errorf("size mismatch = %+v", r)
	}
	if r, _ := e.checkOf(vSHA.ID); r.ok || r.kind != "damaged" || r.foundSize == nil || *r.foundSize != 12 ||
		r.foundSHA == nil || *r.foundSHA != sha(999) || !strings.Contains(r.detail, "SHA-256") {
		t.Errorf("sha256 mismatch = %+v", r)
	}
	if r, _ := e.checkOf(vBad.ID); r.ok || r.kind != "unreadable" || r.detail != problem || r.foundSHA != nil ||
		r.foundSize == nil || *r.foundSize != 13 {
		t.Errorf("problem = %+v", r)
	}
	if _, ok := e.checkOf(theirs.ID); ok {
		t.Error("dn-1's report recorded a check of dn-2's version")
	}
	if n := e.count("SELECT count(*) FROM version_checks"); n != 4 {
		t.Errorf("%d check rows, want 4", n)
	}

	// dn-2 cannot speak for dn-1's files, not even to clear a problem; it can for its own.
	got = e.report("dn-2", internalapi.IntegrityReport{Checks: []internalapi.IntegrityCheck{
		{CollectionID: "integ", VersionID: vOK.ID, Size: 10, Problem: "read error"},
		good("integ", vSize),
		good("theirs", theirs),
	}})
	if got.Verified != 1 || len(got.Problems) != 0 || len(got.Unknown) != 0 {
		t.Fatalf("dn-2's response = %+v; want only its own version verified", got)
	}
	if r, _ := e.checkOf(vOK.ID); !r.ok || r.node != "dn-1" {
		t.Errorf("dn-2 changed dn-1's good check: %+v", r)
	}
	if r, _ := e.checkOf(vSize.ID); r.ok || r.kind != "damaged" {
		t.Errorf("dn-2 cleared dn-1's problem: %+v", r)
	}
	if r, ok := e.checkOf(theirs.ID); !ok || !r.ok || r.node != "dn-2" {
		t.Errorf("dn-2's own check = %+v (found %v)", r, ok)
	}

	// A repaired file reads whole and matching again: its problem is gone.
	if got := e.report("dn-1", internalapi.IntegrityReport{Checks: []internalapi.IntegrityCheck{good("integ", vSize)}}); got.Verified != 1 || len(got.Problems) != 0 {
		t.Fatalf("repair response = %+v", got)
	}
	if r, _ := e.checkOf(vSize.ID); !r.ok || r.kind != "" || r.foundSize != nil || r.foundSHA != nil || r.detail != "" {
		t.Errorf("after repair = %+v", r)
	}

	// A complete scan: everything so far was created and checked an hour ago; the scan finds
	// vOK only. A version committed after the scan began is not missing, nor is dn-2's.
	e.exec("UPDATE versions SET created_at = created_at - interval '1 hour'")
	e.exec("UPDATE version_checks SET checked_at = checked_at - interval '1 hour'")
	scan := uuid.NewString()
	fresh := e.upload(tok, "integ", 14).Version
	got = e.report("dn-1", internalapi.IntegrityReport{Complete: true, ScanID: scan, ScanAge: 10 * time.Second,
		Checks: []internalapi.IntegrityCheck{good("integ", vOK)}})
	if got.Verified != 1 || len(got.Problems) != 0 || got.Missing != 3 {
		t.Fatalf("complete scan response = %+v; want 1 verified, 3 missing", got)
	}
	for _, v := range []shared.Version{vSize, vSHA, vBad} {
		if r, _ := e.checkOf(v.ID); r.ok || r.kind != "missing" || r.foundSize != nil || r.foundSHA != nil ||
			!strings.Contains(r.detail, "not found by the scan") || time.Since(r.checkedAt) > time.Minute {
			t.Errorf("v%d after the scan = %+v", v.Number, r)
		}
	}
	if _, ok := e.checkOf(fresh.ID); ok {
		t.Error("a version committed after the scan began was recorded")
	}
	if r, _ := e.checkOf(theirs.ID); !r.ok {
		t.Errorf("dn-1's scan touched dn-2's version: %+v", r)
	}
	// The same scan result sent again changes nothing: the missing rows are checked since.
	if got := e.report("dn-1", internalapi.IntegrityReport{Complete: true, ScanID: scan, ScanAge: 11 * time.Second}); got.Missing != 0 {
		t.Errorf("repeated complete report found %d missing, want 0", got.Missing)
	}
}

// TestIntegrityReportRefusals refuses a malformed report as a whole: nothing is recorded.
func TestIntegrityReportRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.collection("refuse")
	v := e.upload(e.uploader(), "refuse", 10).Version
	ok := good("refuse", v)
	with := func(mutate func(*internalapi.IntegrityCheck)) []internalapi.IntegrityCheck {
		c := ok
		mutate(&c)
		return []internalapi.IntegrityCheck{c}
	}
	tooMany := make([]internalapi.IntegrityCheck, internalapi.MaxIntegrityChecks+1)
	for i := range tooMany {
		tooMany[i] = internalapi.IntegrityCheck{CollectionID: "refuse", VersionID: uuid.NewString(), Size: 1, SHA256: sha(1)}
	}
	tooMany[0] = ok
	cases := []struct {
		name string
		rep  internalapi.IntegrityReport
		want string
	}{
		{"batch too large", internalapi.IntegrityReport{Checks: tooMany}, "at most 1000 checks"},
		{"version id", internalapi.IntegrityReport{Checks: with(func(c *internalapi.IntegrityCheck) { c.VersionID = "v1" })}, "versionId"},
		{"braced version id", internalapi.IntegrityReport{Checks: with(func(c *internalapi.IntegrityCheck) { c.VersionID = "{" + v.ID + "}" })}, "versionId"},
		{"collection id", internalapi.IntegrityReport{Checks: with(func(c *internalapi.IntegrityCheck) { c.CollectionID = "../x" })}, "collectionId"},
		{"sha256 not hex", internalapi.IntegrityReport{Checks: with(func(c *internalapi.IntegrityCheck) { c.SHA256 = strings.ToUpper(c.SHA256) })}, "sha256"},
		{"no sha256, no problem", internalapi.IntegrityReport{Checks: with(func(c *internalapi.IntegrityCheck) { c.SHA256 = "" })}, "problem"},
		{"negative size", internalapi.IntegrityReport{Checks: with(func(c *internalapi.IntegrityCheck) { c.Size = -1 })}, "size"},
		{"twice", internalapi.IntegrityReport{Checks: []internalapi.IntegrityCheck{ok, ok}}, "twice"},
		{"complete without scan id", internalapi.IntegrityReport{Complete: true, ScanAge: time.Second, Checks: []internalapi.IntegrityCheck{ok}}, "scanId"},
		{"complete without scan age", internalapi.IntegrityReport{Complete: true, ScanID: uuid.NewString()}, "scanAge"},
		{"scan id not a UUID", internalapi.IntegrityReport{ScanID: "scan-1", Checks: []internalapi.IntegrityCheck{ok}}, "scanId"},
		{"scan older than a month", internalapi.IntegrityReport{Complete: true, ScanID: uuid.NewString(), ScanAge: 31 * 24 * time.Hour}, "scanAge"},
	}
	for _, c := range cases {
		st, eb := e.call("dn-1", internalapi.PathIntegrity, c.rep, nil)
		if st != http.StatusBadRequest || eb.Code != shared.CodeInvalidInput || !strings.Contains(eb.Message, c.want) {
			t.Errorf("%s: %d %+v; want 400 INVALID_INPUT about %q", c.name, st, eb, c.want)
		}
	}
	if n := e.count("SELECT count(*) FROM version_checks"); n != 0 {
		t.Errorf("refused reports recorded %d checks", n)
	}
	// Unsigned is refused before anything is read.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+internalapi.PathIntegrity, strings.NewReader(`{"checks":[]}`))
	if st, eb := e.do(req, nil); st != http.StatusUnauthorized || eb.Code != shared.CodeNodeSignatureInvalid {
		t.Errorf("unsigned: %d %+v", st, eb)
	}
}

// TestIntegrityFullBatch sends a full batch (well above the 64 KiB other internal requests are
// held to) and checks that it is recorded with one upsert, whatever its size.
func TestIntegrityFullBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.collection("bulk", func(c *shared.Collection) { c.MaxBackupsCount = 2000 })
	e.exec(`INSERT INTO versions (id, collection_id, number, filename, size, sha256, node_name)
		SELECT gen_random_uuid(), 'bulk', n, 'b-' || n, n, lpad(to_hex(n), 64, '0'), 'dn-1' FROM generate_series(1, $1::int) n`,
		internalapi.MaxIntegrityChecks)
	rows, err := e.db.Pool.Query(e.ctx, "SELECT id::text, size, sha256 FROM versions WHERE collection_id = 'bulk' ORDER BY number")
	if err != nil {
		t.Fatal(err)
	}
	var checks []internalapi.IntegrityCheck
	for rows.Next() {
		var c internalapi.IntegrityCheck
		if err := rows.Scan(&c.VersionID, &c.Size, &c.SHA256); err != nil {
			t.Fatal(err)
		}
		c.CollectionID = "bulk"
		if c.Size%100 == 0 {
			c.SHA256, c.Problem = "", strings.Repeat("é", 600)+" read error" // cut to 1000 bytes when stored
		}
		checks = append(checks, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	got := e.report("dn-1", internalapi.IntegrityReport{Checks: checks})
	if got.Verified != 990 || len(got.Problems) != 10 || len(got.Unknown) != 0 {
		t.Fatalf("response = %+v; want 990 verified, 10 damaged", got)
	}
	if n := e.count("SELECT count(*) FROM version_checks WHERE ok"); n != 990 {
		t.Errorf("%d ok rows, want 990", n)
	}
	if n := e.count("SELECT count(*) FROM version_checks WHERE kind = 'unreadable' AND octet_length(detail) <= 1003 AND detail LIKE 'é%…'"); n != 10 {
		t.Errorf("%d unreadable rows with a cut detail, want 10", n)
	}

	// The same batch through a traced pool: the statements do not grow with the batch.
	svc, counter := e.tracedService(t)
	counter.take()
	if _, err := svc.Integrity(e.ctx, "dn-1", internalapi.IntegrityReport{Complete: true, ScanID: uuid.NewString(), ScanAge: time.Second, Checks: checks}); err != nil {
		t.Fatal(err)
	}
	stmts, _ := counter.take()
	upserts := 0
	for _, s := range stmts {
		if strings.HasPrefix(s, "INSERT INTO version_checks") && strings.Contains(s, "unnest") {
			upserts++
		}
	}
	t.Logf("a complete report of %d checks: %d statements", len(checks), len(stmts))
	if len(stmts) > 5 || upserts != 1 {
		t.Fatalf("%d statements for one report, want at most 5 (begin, select, upsert, missing, commit):\n%s",
			len(stmts), strings.Join(stmts, "\n"))
	}
}

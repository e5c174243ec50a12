package outage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

const (
	// failFast is how long a request may take to be refused while a dependency is down: the
	// control plane dials Redis with one retry and a 1 s timeout, so a refused dial costs
	// milliseconds and an unanswered one at most about two seconds.
	failFast = 2 * time.Second
	// recoverWithin is how soon after a dependency is back the stack must work again, with
	// no product process restarted.
	recoverWithin = 20 * time.Second
	uploadSize    = 256 << 10
)

// world is a stack on deps of its own, with one collection and an uploader's token.
type world struct {
	s         *stack.Stack
	d         *deps
	node      *stack.Node
	coll      string
	tok       string
	committed map[string]string // version id → sha256 of every version known committed
	pids      map[string]int    // process name → pid at the start
}

// TestOutage runs the Redis and PostgreSQL outages one after the other on one stack: the
// second also proves the first left nothing behind. No t.Parallel: t.Setenv points the
// stack at this test's own servers.
func TestOutage(t *testing.T) {
	// The servers of the environment are not used, but their absence means the suite runs
	// outside `make test` and TestMain built no binaries: skip (fail under CI) as the
	// harness does.
	for _, name := range []string{"TEST_DATABASE_URL", "TEST_REDIS_URL"} {
		if os.Getenv(name) == "" {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not set; run the tests with `make test`", name)
			}
			t.Skipf("%s is not set; run the tests with `make test`", name)
		}
	}
	d := startDeps(t)
	t.Setenv("TEST_DATABASE_URL", d.DatabaseURL())
	t.Setenv("TEST_REDIS_URL", d.RedisURL())
	s := stack.Start(t, stack.Options{Binaries: bins, DataNodes: 1})
	tenant := s.CreateTenant(t, nil)
	id, node := s.CreateCollection(t, map[string]any{"tenantId": tenant, "maxBackupsCount": 50,
		"maxOneVersionSize": 10 << 20, "maxCollectionSize": 500 << 20})
	_, tok := s.Uploader(t, tenant, "backupUploader", "backupDownloader")
	w := &world{s: s, d: d, node: s.Node(node), coll: id, tok: tok.Token, committed: map[string]string{},
		pids: map[string]int{s.ControlPlane.Name: s.ControlPlane.PID(), s.Node(node).Name: s.Node(node).PID()}}
	w.mustUpload(t)

	t.Run("redis", w.redisOutage)
	if t.Failed() {
		return
	}
	t.Run("postgres", w.postgresOutage)
}

func (w *world) redisOutage(t *testing.T) {
	stopped := time.Now()
	w.d.StopRedis(t)
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			w.d.StartRedis(t)
		}
	})
	t.Logf("redis stopped in %s", time.Since(stopped).Round(time.Millisecond))

	w.refusedUpload(t)
	w.expectHealth(t, "redis", false)
	w.expectNotReady(t)

	// PostgreSQL is up: the admin API should still work, or say clearly why not.
	var out struct{ Collection struct{ ID string } }
	start := time.Now()
	err := w.s.GraphQL(t.Context(), w.s.AdminToken, `query($id: ID!) { collection(id: $id) { id } }`,
		map[string]any{"id": w.coll}, &out)
	took := time.Since(start)
	switch {
	case err == nil && out.Collection.ID == w.coll:
		t.Logf("graphql collection query without redis: answered in %s", took.Round(time.Millisecond))
	case isGraphQLCode(err, "DEPENDENCY_UNAVAILABLE"):
		t.Logf("graphql collection query without redis: refused with DEPENDENCY_UNAVAILABLE in %s", took.Round(time.Millisecond))
	default:
		t.Errorf("graphql collection query without redis: %v (data %+v), want an answer or DEPENDENCY_UNAVAILABLE", err, out)
	}
	if took > failFast {
		t.Errorf("graphql collection query without redis took %s, want under %s", took, failFast)
	}
	w.reportDownload(t, "redis")
	w.consistent(t)

	w.d.StartRedis(t)
	restarted = true
	back := time.Now()
	w.recovers(t, "health", w.healthy)
	w.recovers(t, "an upload", w.tryUpload)
	t.Logf("redis back (empty): healthy and accepting uploads after %s, no process restarted", time.Since(back).Round(time.Millisecond))
	w.samePIDs(t)
	w.consistent(t)
}

func (w *world) postgresOutage(t *testing.T) {
	stopped := time.Now()
	w.d.StopPostgres(t)
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			w.d.StartPostgres(t)
		}
	})
	t.Logf("postgres stopped in %s", time.Since(stopped).Round(time.Millisecond))

	w.refusedUpload(t)
	w.expectHealth(t, "database", false)
	w.expectNotReady(t)

	// Login and GraphQL need PostgreSQL: both must say so with 503 DEPENDENCY_UNAVAILABLE.
	start := time.Now()
	status, body := w.postJSON(t, "/api/stable/auth/login",
		map[string]string{"username": w.s.AdminEmail, "password": w.s.AdminPassword}, "")
	took := time.Since(start)
	t.Logf("login without postgres: %d %s in %s", status, body, took.Round(time.Millisecond))
	if status != http.StatusServiceUnavailable || envelopeCode(body) != "DEPENDENCY_UNAVAILABLE" || took > failFast {
		t.Errorf("login without postgres: %d %s in %s, want 503 DEPENDENCY_UNAVAILABLE within %s", status, body, took, failFast)
	}
	start = time.Now()
	status, body = w.postJSON(t, "/graphql",
		map[string]any{"query": `query($id: ID!) { collection(id: $id) { id } }`, "variables": map[string]any{"id": w.coll}}, w.s.AdminToken)
	took = time.Since(start)
	t.Logf("graphql without postgres: %d %s in %s", status, body, took.Round(time.Millisecond))
	// Refused before GraphQL runs (the token check needs PostgreSQL) is an envelope; refused by
	// a resolver is a GraphQL error. Either must carry the code.
	refusedEarly := status == http.StatusServiceUnavailable && envelopeCode(body) == "DEPENDENCY_UNAVAILABLE"
	if (!refusedEarly && graphQLCode(body) != "DEPENDENCY_UNAVAILABLE") || took > failFast {
		t.Errorf("graphql without postgres: %d %s in %s, want the code DEPENDENCY_UNAVAILABLE within %s", status, body, took, failFast)
	}
	w.reportDownload(t, "postgres")

	w.d.StartPostgres(t)
	restarted = true
	back := time.Now()
	w.recovers(t, "health", w.healthy)
	w.recovers(t, "a login", func() error {
		_, err := w.s.Login(t.Context(), w.s.AdminEmail, w.s.AdminPassword)
		return err
	})
	w.recovers(t, "an upload", w.tryUpload)
	t.Logf("postgres back: healthy, login and uploads working after %s, no process restarted", time.Since(back).Round(time.Millisecond))
	w.samePIDs(t)
	// The test's own pool met the restart too: the first query may fail once.
	w.recovers(t, "the test's database pool", func() error { return w.s.DB.Ping(t.Context()) })
	w.consistent(t)
}

// refusedUpload sends an upload through the front door and expects a fast 503
// DEPENDENCY_UNAVAILABLE that stores nothing.
func (w *world) refusedUpload(t *testing.T) {
	t.Helper()
	body := randomBytes(uploadSize)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	a, err := w.s.Upload(ctx, w.s.URL, w.tok, w.coll, bytes.NewReader(body), stack.UploadOptions{})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("upload during the outage: %v after %s", err, took)
	}
	t.Logf("upload during the outage: %s in %s", a, took.Round(time.Millisecond))
	if a.Status != http.StatusServiceUnavailable || a.Code() != "DEPENDENCY_UNAVAILABLE" {
		t.Errorf("upload during the outage answered %s, want 503 DEPENDENCY_UNAVAILABLE", a)
	}
	if took > failFast {
		t.Errorf("upload during the outage took %s, want under %s", took, failFast)
	}
	if files := w.node.CollectionFiles(t, w.coll); len(files) != len(w.committed) {
		t.Errorf("files of the collection after the refused upload: %v, want only the %d committed", files, len(w.committed))
	}
	if l := w.node.Leftovers(t); len(l) > 0 {
		t.Errorf("temporary or staged files after the refused upload: %v", l)
	}
}

// expectHealth wants GET /health to answer 503 with dependency (database, redis) false.
func (w *world) expectHealth(t *testing.T, dependency string, want bool) {
	t.Helper()
	start := time.Now()
	status, rep, raw := w.health(t)
	took := time.Since(start)
	t.Logf("/health: %d %s in %s", status, raw, took.Round(time.Millisecond))
	if status != http.StatusServiceUnavailable || rep.GlobalStatus || len(rep.Status) != 1 {
		t.Errorf("/health answered %d %s, want 503 and global_status false", status, raw)
		return
	}
	if got := rep.Status[0][dependency]; got != want {
		t.Errorf("/health says %s=%v, want %v: %s", dependency, got, want, raw)
	}
	if took > 2*failFast {
		t.Errorf("/health took %s", took)
	}
}

func (w *world) expectNotReady(t *testing.T) {
	t.Helper()
	status, body := w.get(t, "/readyz")
	t.Logf("/readyz: %d %s", status, body)
	if status != http.StatusServiceUnavailable || envelopeCode(body) != "DEPENDENCY_UNAVAILABLE" {
		t.Errorf("/readyz answered %d %s, want 503 DEPENDENCY_UNAVAILABLE", status, body)
	}
}

// healthy is nil once /health and /readyz both answer 200.
func (w *world) healthy() error {
	status, _, raw := w.healthOnce()
	if status != http.StatusOK {
		return fmt.Errorf("/health answered %d %s", status, raw)
	}
	if status, body := w.getOnce("/readyz"); status != http.StatusOK {
		return fmt.Errorf("/readyz answered %d %s", status, body)
	}
	return nil
}

// reportDownload logs what a download of a committed version does during an outage (the
// issue does not bind it); it must not hang and must not serve wrong bytes.
func (w *world) reportDownload(t *testing.T, dependency string) {
	t.Helper()
	for id, sum := range w.committed {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		start := time.Now()
		a, err := w.s.Download(ctx, w.s.URL, w.tok, w.coll, id, stack.ReadOptions{})
		cancel()
		took := time.Since(start).Round(time.Millisecond)
		switch {
		case err != nil:
			t.Errorf("download without %s: %v after %s", dependency, err, took)
		case a.Status == http.StatusOK:
			if sha(a.Body) != sum {
				t.Errorf("download without %s served bytes hashing to %s, want %s", dependency, sha(a.Body), sum)
			}
			t.Logf("download without %s: 200, sha256 verified, in %s", dependency, took)
		default:
			t.Logf("download without %s: %s in %s", dependency, a, took)
			if a.Status != http.StatusServiceUnavailable || a.Code() != "DEPENDENCY_UNAVAILABLE" {
				t.Errorf("download without %s answered %s, want 200 or 503 DEPENDENCY_UNAVAILABLE", dependency, a)
			}
		}
		return // one version is enough to learn the behaviour
	}
}

// consistent checks that the versions rows are exactly the committed versions, the node's disk
// holds exactly their files and no .tmp-/.staged- file, every download verifies, and no
// reservation is left.
func (w *world) consistent(t *testing.T) {
	t.Helper()
	want := make([]string, 0, len(w.committed))
	for id := range w.committed {
		want = append(want, id)
	}
	slices.Sort(want)
	rows := w.s.VersionRows(t, w.coll)
	if got := stack.IDs(rows); !slices.Equal(got, want) {
		t.Errorf("versions rows %v, want the committed %v", got, want)
	}
	if files := w.node.CollectionFiles(t, w.coll); !slices.Equal(files, want) {
		t.Errorf("files of the collection on disk %v, want the committed %v", files, want)
	}
	if l := w.node.Leftovers(t); len(l) > 0 {
		t.Errorf("temporary or staged files left on %s: %v", w.node.Name, l)
	}
	for _, r := range rows {
		if got := w.node.FileSHA256(t, w.coll, r.ID); got != r.SHA256 {
			t.Errorf("stored file of version %d hashes to %s, row says %s", r.Number, got, r.SHA256)
		}
		d, err := w.s.Download(t.Context(), w.s.URL, w.tok, w.coll, r.ID, stack.ReadOptions{})
		if err != nil || d.Status != http.StatusOK || sha(d.Body) != r.SHA256 {
			t.Errorf("download of version %d: %v %d sha256 %s, want 200 and %s", r.Number, err, d.Status, sha(d.Body), r.SHA256)
		}
	}
	if n := w.s.LiveReservations(t, w.coll); n != 0 {
		t.Errorf("%d live upload reservations left", n)
	}
}

// samePIDs checks that no product process was restarted: recovery must come from the
// processes themselves.
func (w *world) samePIDs(t *testing.T) {
	t.Helper()
	for _, p := range []*stack.Process{w.s.ControlPlane, w.node.Process} {
		if !p.Running() || p.PID() != w.pids[p.Name] {
			t.Errorf("%s was restarted or stopped: pid %d running %v, was %d", p.Name, p.PID(), p.Running(), w.pids[p.Name])
		}
	}
}

func (w *world) mustUpload(t *testing.T) {
	t.Helper()
	if err := w.tryUpload(); err != nil {
		t.Fatal(err)
	}
}

// tryUpload uploads fresh random bytes and records the version when it is accepted.
func (w *world) tryUpload() error {
	body := randomBytes(uploadSize)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := w.s.Upload(ctx, w.s.URL, w.tok, w.coll, bytes.NewReader(body), stack.UploadOptions{})
	if err != nil {
		return err
	}
	if a.Status != http.StatusOK {
		return fmt.Errorf("upload answered %s", a)
	}
	v, err := a.Version()
	if err != nil {
		return err
	}
	if v.SHA256 != sha(body) {
		return fmt.Errorf("version %d answered sha256 %s, sent %s", v.Number, v.SHA256, sha(body))
	}
	w.committed[v.ID] = v.SHA256
	return nil
}

// recovers polls check until it passes within recoverWithin.
func (w *world) recovers(t *testing.T, what string, check func() error) {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			t.Logf("%s works again after %s", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > recoverWithin {
			t.Fatalf("%s does not work again within %s of the dependency's return: %v", what, recoverWithin, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type healthReport struct {
	Status       []map[string]bool `json:"status"`
	GlobalStatus bool              `json:"global_status"`
}

func (w *world) health(t *testing.T) (int, healthReport, string) {
	t.Helper()
	status, rep, raw := w.healthOnce()
	if status == 0 {
		t.Fatalf("/health: %s", raw)
	}
	return status, rep, raw
}

func (w *world) healthOnce() (int, healthReport, string) {
	status, body := w.getOnce("/health?code=" + w.s.HealthCheckCode)
	var rep healthReport
	if status != 0 {
		if err := json.Unmarshal(body, &rep); err != nil {
			return status, rep, fmt.Sprintf("not the health shape: %q", body)
		}
	}
	return status, rep, string(body)
}

func (w *world) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	status, body := w.getOnce(path)
	if status == 0 {
		t.Fatalf("GET %s: %s", path, body)
	}
	return status, body
}

// getOnce is a GET of the control plane bounded by 10 s; status 0 carries the error as body.
func (w *world) getOnce(path string) (int, []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.s.URL+path, nil)
	if err != nil {
		return 0, []byte(err.Error())
	}
	return w.send(req)
}

func (w *world) postJSON(t *testing.T, path string, in any, token string) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(in)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.s.URL+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	status, body := w.send(req)
	if status == 0 {
		t.Fatalf("POST %s: %s", path, body)
	}
	return status, body
}

func (w *world) send(req *http.Request) (int, []byte) {
	resp, err := w.s.HTTP.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, []byte(err.Error())
	}
	return resp.StatusCode, body
}

func envelopeCode(body []byte) string {
	var e struct{ Code string }
	_ = json.Unmarshal(body, &e)
	return e.Code
}

func graphQLCode(body []byte) string {
	var ans struct {
		Errors []struct {
			Extensions struct{ Code string }
		}
	}
	if json.Unmarshal(body, &ans) != nil || len(ans.Errors) == 0 {
		return ""
	}
	return ans.Errors[0].Extensions.Code
}

func isGraphQLCode(err error, code string) bool {
	ge, ok := err.(*stack.GraphQLError)
	return ok && ge.Code == code
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func sha(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:])
}

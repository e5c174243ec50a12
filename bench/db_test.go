package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backuprepo/e2e/stack"
)

// statementCounter counts the statements PostgreSQL ran on one database, with
// pg_stat_statements (the server must preload it: scripts/bench.sh starts PostgreSQL so). It
// queries from another database so that its own statements are not counted.
type statementCounter struct {
	conn *pgx.Conn
	dbid uint32
}

func newStatementCounter(t testing.TB, ctx context.Context, stackDB string) *statementCounter {
	t.Helper()
	conn, err := pgx.Connect(ctx, os.Getenv("TEST_DATABASE_URL"))
	if err != nil {
		t.Fatalf("connect to TEST_DATABASE_URL: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		t.Fatalf("create pg_stat_statements: %v", err)
	}
	u, err := url.Parse(stackDB)
	if err != nil {
		t.Fatal(err)
	}
	c := &statementCounter{conn: conn}
	if err := conn.QueryRow(ctx, "SELECT oid FROM pg_database WHERE datname = $1",
		strings.TrimPrefix(u.Path, "/")).Scan(&c.dbid); err != nil {
		t.Fatalf("find the stack's database: %v", err)
	}
	// Fails when the library is not preloaded: the view cannot be read then.
	if _, err := c.total(ctx); err != nil {
		t.Fatalf("read pg_stat_statements (is PostgreSQL started with shared_preload_libraries=pg_stat_statements?): %v", err)
	}
	return c
}

func (c *statementCounter) reset(ctx context.Context) error {
	_, err := c.conn.Exec(ctx, "SELECT pg_stat_statements_reset(0, $1::oid, 0)", c.dbid)
	return err
}

func (c *statementCounter) total(ctx context.Context) (int64, error) {
	var n int64
	err := c.conn.QueryRow(ctx, "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE dbid = $1::oid", c.dbid).Scan(&n)
	return n, err
}

// top lists the most called statements, for the log.
func (c *statementCounter) top(ctx context.Context, n int) string {
	rows, err := c.conn.Query(ctx, `SELECT calls, left(regexp_replace(query, '\s+', ' ', 'g'), 110)
		FROM pg_stat_statements WHERE dbid = $1::oid ORDER BY calls DESC, query LIMIT $2`, c.dbid, n)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var calls int64
		var q string
		if err := rows.Scan(&calls, &q); err != nil {
			return err.Error()
		}
		fmt.Fprintf(&b, "\n  %6d  %s", calls, q)
	}
	if err := rows.Err(); err != nil {
		return err.Error()
	}
	return b.String()
}

func benchDBRoundTrips(t *testing.T, e *env, sz sizes, rep *reporter) {
	ctx := context.Background()
	sc := newStatementCounter(t, ctx, e.s.DatabaseURL)
	// maxBackupsCount 3: after the third upload every upload also rotates one out, the steady
	// state of a real collection.
	cid := e.collection(t, 64*kib, 3)
	body := e.pat.block[:4*kib]
	for range 3 { // warm the control plane's statement caches and reach the steady state
		if _, _, err := e.upload(ctx, e.s.URL, cid, int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	// Three windows, and the median: a statement the control plane runs now and then on its
	// own (the data node's deletion sweeper acknowledging files every 30 s) lands in a window
	// by chance and would count as 1/50 of a statement per upload, while a statement of the
	// upload path is in every window.
	var pers []float64
	var firstTotal int64
	for w := range 3 {
		if err := sc.reset(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for range sz.dbUploads {
			if _, _, err := e.upload(ctx, e.s.URL, cid, int64(len(body))); err != nil {
				t.Fatal(err)
			}
		}
		elapsed := time.Since(start)
		withUploads, err := sc.total(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The statements are listed for the first window and any whose count differs from it.
		listed := w == 0 || withUploads != firstTotal
		var top string
		if listed {
			top = sc.top(ctx, 15)
		}
		// What the control plane runs anyway (gossip mirror, sweeps) in as much time.
		if err := sc.reset(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(elapsed)
		idle, err := sc.total(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pers = append(pers, float64(withUploads-idle)/float64(sz.dbUploads))
		if listed {
			t.Logf("window %d: %d statements during %d uploads in %s, %d in as long idle; most called:%s", w+1,
				withUploads, sz.dbUploads, elapsed.Round(time.Millisecond), idle, top)
		} else {
			t.Logf("window %d: %d statements during %d uploads in %s, %d in as long idle; as many as in window 1",
				w+1, withUploads, sz.dbUploads, elapsed.Round(time.Millisecond), idle)
		}
		if w == 0 {
			firstTotal = withUploads
		}
	}
	per := Median(pers)
	rep.add(t, Result{"db_round_trips_per_upload", per, "<=", 6, "statements"})
}

const collectionsQuery = `query($t: ID) { collections(tenantId: $t, first: 100) {
  items { id description } pageInfo { endCursor hasNextPage } } }`

func benchGraphQL(t *testing.T, e *env, sz sizes, rep *reporter) {
	ctx := context.Background()
	tenant := e.s.CreateTenant(t, map[string]any{"quota": 0})
	start := time.Now()
	if _, err := e.s.DB.Exec(ctx, `INSERT INTO collections
		(id, tenant_id, description, max_backups_count, max_one_version_size, max_collection_size, strategy)
		SELECT 'gql-' || lpad(g::text, 6, '0'), $1::uuid, 'collection number ' || g, 5, 1048576, 5242880, 'FIFO'
		FROM generate_series(1, $2::int) g`, tenant, sz.gqlCollections); err != nil {
		t.Fatalf("insert collections: %v", err)
	}
	if _, err := e.s.DB.Exec(ctx, "ANALYZE collections"); err != nil {
		t.Fatal(err)
	}
	t.Logf("inserted %d collections in %s", sz.gqlCollections, time.Since(start).Round(time.Millisecond))

	var page struct {
		Collections struct {
			Items    []struct{ ID, Description string }
			PageInfo struct {
				EndCursor   string
				HasNextPage bool
			}
		}
	}
	if err := e.s.GraphQL(ctx, e.s.AdminToken, collectionsQuery, map[string]any{"t": tenant}, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Collections.Items) != 100 || !page.Collections.PageInfo.HasNextPage {
		t.Fatalf("collections(first: 100) gave %d items, hasNextPage %t", len(page.Collections.Items),
			page.Collections.PageInfo.HasNextPage)
	}

	body := mustJSON(map[string]any{"query": collectionsQuery, "variables": map[string]any{"t": tenant}})
	client := newClient()
	url := e.s.URL + "/graphql"
	openLoop(client, url, e.s.AdminToken, body, sz.gqlRate, sz.gqlWarmup) // connections, caches, GC pacing
	defer e.prof.during(t, "graphql", sz.gqlWindow)()
	cpPID := e.s.ControlPlane.PID()
	cpuBefore, err := CPUTime(cpPID)
	if err != nil {
		t.Fatal(err)
	}
	res := openLoop(client, url, e.s.AdminToken, body, sz.gqlRate, sz.gqlWindow)
	if cpuAfter, err := CPUTime(cpPID); err == nil && res.sent > 0 {
		// A figure the machine's other load does not distort much: what one request costs.
		perReq := (cpuAfter - cpuBefore).Seconds() * 1000 / float64(res.sent)
		t.Logf("control plane CPU: %.2f ms per request, so at most %.0f requests/s on %d dedicated cores",
			perReq, float64(runtime.NumCPU())*1000/perReq, runtime.NumCPU())
	}
	p99 := Percentile(res.latencies, 99)
	t.Logf("%d requests at %d/s over %s: p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d errors (first: %v); sender lag max %s",
		res.sent, sz.gqlRate, sz.gqlWindow, Percentile(res.latencies, 50), p99, Percentile(res.latencies, 100),
		res.errors, res.firstErr, res.maxLag.Round(time.Microsecond))
	rep.add(t, Result{"graphql_collections_p99_at_600", p99, "<=", 25, "ms"})
	rep.add(t, Result{"graphql_collections_errors_at_600", float64(res.errors), "<=", 0, "errors"})
}

type loopResult struct {
	sent      int
	latencies []float64 // ms, of the successful requests
	errors    int
	firstErr  error
	maxLag    time.Duration // how late the sender was against the schedule, at worst
}

// openLoop sends body to url at a fixed rate for dur, whatever the answers do (open loop: a
// slow server gets more requests in flight, not fewer requests). Latency counts from the
// scheduled send time, so a late sender cannot hide queueing.
func openLoop(client *http.Client, url, token string, body []byte, perSecond int, dur time.Duration) loopResult {
	n := int(float64(perSecond) * dur.Seconds())
	interval := time.Second / time.Duration(perSecond)
	lat := make([]float64, n)
	errs := make([]error, n)
	var res loopResult
	var wg sync.WaitGroup
	start := time.Now().Add(20 * time.Millisecond)
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		res.maxLag = max(res.maxLag, time.Since(due))
		wg.Go(func() {
			errs[i] = graphqlOnce(client, url, token, body)
			lat[i] = float64(time.Since(due)) / float64(time.Millisecond)
		})
	}
	wg.Wait()
	res.sent = n
	for i, err := range errs {
		if err != nil {
			res.errors++
			if res.firstErr == nil {
				res.firstErr = err
			}
			continue
		}
		res.latencies = append(res.latencies, lat[i])
	}
	return res
}

func graphqlOnce(client *http.Client, url, token string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	// A cheap check: decoding every answer would cost the 2 cores the server needs.
	if resp.StatusCode != http.StatusOK || bytes.Contains(b, []byte(`"errors"`)) || !bytes.Contains(b, []byte(`"hasNextPage":true`)) {
		return fmt.Errorf("graphql answered %d: %.200s", resp.StatusCode, b)
	}
	return nil
}

func benchStart(t *testing.T, e *env, sz sizes, rep *reporter) {
	n := e.node
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := createVersions(n.Disks[0], sz.versionDirs, sz.versions); err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d version files in %d collection directories in %s", sz.versions, sz.versionDirs,
		time.Since(start).Round(time.Millisecond))
	var secs []float64
	for r := range sz.startRounds {
		if r > 0 {
			if err := n.Stop(); err != nil {
				t.Fatal(err)
			}
		}
		d, err := timeToReady(n)
		if err != nil {
			t.Fatal(err)
		}
		secs = append(secs, d.Seconds())
	}
	t.Logf("start-up to /readyz 200 with %d versions: %.3f s", sz.versions, secs)
	rep.add(t, Result{"datanode_start_with_100k_versions", Median(secs), "<=", 2, "s"})
}

// createVersions writes count small version files named like committed versions (UUIDs), each
// with its sidecar, spread over dirs collection directories of disk.
func createVersions(disk string, dirs, count int) error {
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	content := bytes.Repeat([]byte("v"), 64)
	for w := range 4 {
		wg.Go(func() {
			for d := w; d < dirs; d += 4 {
				dir := filepath.Join(disk, "collections", fmt.Sprintf("bench-v-%05d", d))
				if err := os.MkdirAll(dir, 0o750); err != nil {
					errs <- err
					return
				}
				for range count / dirs {
					// Each version has its block-checksum sidecar beside it, as on a real node;
					// its content does not matter to start-up, which reads names only.
					id := newUUID()
					for _, name := range []string{id, "." + id + ".sums"} {
						if err := os.WriteFile(filepath.Join(dir, name), content, 0o640); err != nil {
							errs <- err
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// timeToReady starts the stopped node and measures until its /readyz answers 200.
func timeToReady(n *stack.Node) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	start := time.Now()
	restarted := make(chan error, 1)
	go func() { restarted <- n.Restart(ctx) }()
	wait := restarted // nil once Restart has returned
	for {
		resp, err := client.Get(n.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				d := time.Since(start)
				if wait != nil {
					err = <-wait
				}
				return d, err
			}
		}
		select {
		case err := <-wait:
			if err != nil {
				return 0, fmt.Errorf("restart %s: %w", n.Name, err)
			}
			wait = nil // serving; keep polling readiness
		case <-ctx.Done():
			return 0, fmt.Errorf("%s not ready: %w", n.Name, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

package uploads

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"backuprepo/controlplane/auth"
	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
	"backuprepo/shared/internalapi"
)

// statementCounter counts every statement pgx sends, batched ones included, and the round
// trips they take: one per query, one per batch.
type statementCounter struct {
	mu    sync.Mutex
	sql   []string
	trips int
}

func (c *statementCounter) add(sql string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sql = append(c.sql, strings.Join(strings.Fields(sql), " "))
}

func (c *statementCounter) trip() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trips++
}

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.trip()
	c.add(d.SQL)
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *statementCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.trip()
	return ctx
}

func (c *statementCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	c.add(d.SQL)
}

func (c *statementCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// take returns the statements and the round trips counted since the last take.
func (c *statementCounter) take() ([]string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out, trips := c.sql, c.trips
	c.sql, c.trips = nil, 0
	return out, trips
}

// tracedService is a service on its own pool whose statements counter counts.
func (e *env) tracedService(t *testing.T) (*Service, *statementCounter) {
	t.Helper()
	counter := &statementCounter{}
	cfg := e.db.Pool.Config()
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(e.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	traced := &postgres.DB{Pool: pool}
	return New(Config{DB: traced, Redis: e.rdb, Auth: auth.New(auth.Config{DB: traced, Redis: e.rdb, KeyPrefix: e.prefix,
		SigningKey: e.key}), KeyPrefix: e.prefix, NodeSecret: testSecret}), counter
}

// TestStatementsPerUpload counts the PostgreSQL statements of one admitted and committed
// upload, the token check included (issue 7's target: at most 6), and their round trips: the
// token check shares one with the read of the target, the reservation's lock one with the
// reservation.
func TestStatementsPerUpload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.collection("c1", func(c *shared.Collection) { c.MaxCollectionSize = 0 })
	svc, counter := e.tracedService(t)
	tok := e.uploader()
	type count struct {
		sql   []string
		trips int
	}
	upload := func() count {
		counter.take()
		adm, err := svc.Admit(e.ctx, "dn-1", internalapi.AdmitRequest{Caller: internalapi.Caller{Token: tok, ClientIP: "203.0.113.9"},
			CollectionID: "c1", ContentLength: 4096, Room: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Commit(e.ctx, "dn-1", internalapi.CommitRequest{UploadID: adm.UploadID, Size: 4096, SHA256: sha(1)}); err != nil {
			t.Fatal(err)
		}
		sql, trips := counter.take()
		return count{sql, trips}
	}
	first := upload()
	steady := upload()
	for range 3 {
		steady = upload() // FIFO rotation from the fourth upload on
	}
	t.Logf("first upload with a fresh token (records its last use): %d statements in %d round trips", len(first.sql), first.trips)
	t.Logf("steady upload (with rotation): %d statements in %d round trips", len(steady.sql), steady.trips)
	for _, s := range steady.sql {
		t.Logf("  %.90s", s)
	}
	if len(steady.sql) > 6 || steady.trips > 4 {
		t.Fatalf("%d statements in %d round trips per upload, want at most 6 in 4", len(steady.sql), steady.trips)
	}
}

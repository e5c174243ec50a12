package frontdoor_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/hashicorp/memberlist"

	"backuprepo/controlplane/frontdoor"
	"backuprepo/controlplane/gossip"
	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
	"backuprepo/shared/internalapi"
	"backuprepo/shared/nodemeta"
	"backuprepo/shared/token"
)

const nodeSecret = "node-secret-0123456789"

// rig is a front door in front of one data node seen through real gossip. The node side is an
// HTTP server of the test's own, because the point is how the front door copes with what a
// node sends (including a node that cuts a body short); downloads from real data nodes are
// covered by e2e/ and bench/.
type rig struct {
	front    *httptest.Server
	node     *httptest.Server
	token    string
	cluster  *gossip.Cluster
	member   *memberlist.Memberlist
	nodeName string
	newConns atomic.Int64 // TCP connections the node accepted

	mu       sync.Mutex
	requests []*http.Request // as the node received them
}

func (g *rig) seen() []*http.Request {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*http.Request(nil), g.requests...)
}

func (g *rig) url(ref string) string {
	return g.front.URL + "/api/stable/repository/collection/coll-1/version/" + ref
}

// post uploads body to coll-1 through the front door and returns the answer's status and body.
func (g *rig) post(t *testing.T, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.front.URL+"/api/stable/repository/collection/coll-1/versions", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+g.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, answer
}

func (g *rig) get(t *testing.T, method, ref string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, g.url(ref), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+g.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// dataNodeMember is the gossip side of a data node: its metadata, as a node announces it.
type dataNodeMember struct{ meta []byte }

func (m dataNodeMember) NodeMeta(int) []byte           { return m.meta }
func (dataNodeMember) NotifyMsg([]byte)                {}
func (dataNodeMember) GetBroadcasts(int, int) [][]byte { return nil }
func (dataNodeMember) LocalState(bool) []byte          { return nil }
func (dataNodeMember) MergeRemoteState([]byte, bool)   {}

func newRig(t *testing.T, nodeHandler func(g *rig) http.Handler) *rig {
	t.Helper()
	g := &rig{nodeName: pgtest.RandomName("dn-")}
	g.node = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.requests = append(g.requests, r.Clone(context.Background()))
		g.mu.Unlock()
		nodeHandler(g).ServeHTTP(w, r)
	}))
	g.node.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			g.newConns.Add(1)
		}
	}
	g.node.Start()
	t.Cleanup(g.node.Close)

	db := pgtest.NewDB(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO tenants (id, name, slug) VALUES ('00000000-0000-0000-0000-0000000000b1', 'B', 'b')`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO data_nodes (name, public_url, state) VALUES ($1, $2, 'alive')`, g.nodeName, g.node.URL); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO collections (id, tenant_id, max_backups_count, max_one_version_size, max_collection_size, strategy, node_name)
		VALUES ('coll-1', '00000000-0000-0000-0000-0000000000b1', 1, 1000000000, 1000000000, 'FIFO', $1)`, g.nodeName); err != nil {
		t.Fatal(err)
	}

	cluster, key := startCluster(t)
	g.cluster = cluster

	meta, err := nodemeta.Encode(nodemeta.Meta{Role: nodemeta.RoleDataNode, Name: g.nodeName, State: shared.NodeAlive,
		PublicURL: g.node.URL, Total: 1 << 30, Free: 1 << 29})
	if err != nil {
		t.Fatal(err)
	}
	conf := memberlist.DefaultLANConfig()
	conf.Name, conf.BindAddr, conf.BindPort, conf.SecretKey = g.nodeName, "127.0.0.1", 0, key
	conf.GossipVerifyIncoming, conf.GossipVerifyOutgoing = true, true
	conf.LogOutput, conf.Logger = nil, log.New(io.Discard, "", 0)
	conf.Delegate = dataNodeMember{meta: meta}
	ml, err := memberlist.Create(conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	if _, err := ml.Join([]string{cluster.Addr()}); err != nil {
		t.Fatal(err)
	}
	g.member = ml
	waitFor(t, 10*time.Second, "the data node to be alive in gossip", func() bool {
		n, ok := cluster.Node(g.nodeName)
		return ok && n.State == shared.NodeAlive
	})

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	kid := token.KeyID(pub)
	g.token, err = token.Sign(priv, kid, token.Claims{Subject: "u", ID: "j", IssuedAt: time.Now().Unix(), Expiry: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	door := frontdoor.New(frontdoor.Config{Locator: db, Nodes: cluster, Keys: token.Keys{kid: pub},
		Secret: []byte(nodeSecret), ClientIP: func(*http.Request) string { return "192.0.2.1" },
		RetryAfter: 7 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	r := chi.NewRouter()
	// The same wrapper the control plane's metrics middleware puts around every answer: the
	// spliced copy must go through it.
	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(middleware.NewWrapResponseWriter(w, r.ProtoMajor), r)
		})
	})
	door.Routes(r)
	g.front = httptest.NewServer(r)
	t.Cleanup(g.front.Close)
	return g
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// hijackWrite sends a raw answer and returns the connection, bypassing net/http's own
// Content-Length bookkeeping: this is how a node that stops mid-body looks on the wire.
func hijackWrite(t *testing.T, w http.ResponseWriter, head string, body []byte) net.Conn {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return nil
	}
	_, _ = buf.WriteString(head)
	_, _ = buf.Write(body)
	_ = buf.Flush()
	return conn
}

func TestDownloadStreamsVersions(t *testing.T) {
	t.Parallel()
	payload := randomBytes(t, 3<<20+517)
	modTime := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	g := newRig(t, func(g *rig) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path[len("/api/stable/repository/collection/coll-1/version/"):] {
			case "latest":
				// Hop-by-hop headers the front door must not pass on, next to ones it must.
				w.Header().Set("Connection", "X-Node-Hop")
				w.Header().Set("X-Node-Hop", "node-only")
				w.Header().Set("Keep-Alive", "timeout=5")
				w.Header().Set("Proxy-Authenticate", "Basic")
				w.Header().Set("X-Version-Number", "7")
				w.Header().Set("Content-Disposition", `attachment; filename="backup-7"`)
				http.ServeContent(w, r, "", modTime, bytes.NewReader(payload))
			case "missing":
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"status":false,"code":"NOT_FOUND","error":"no such version"}`)
			case "chunked":
				// No Content-Length: net/http answers chunked, and the front door must still stream it.
				w.Header().Set("Trailer", "X-Content-SHA256")
				for i := 0; i < len(payload); i += 1 << 20 {
					_, _ = w.Write(payload[i:min(i+1<<20, len(payload))])
					http.NewResponseController(w).Flush()
				}
				sum := sha256.Sum256(payload)
				w.Header().Set("X-Content-SHA256", fmt.Sprintf("%x", sum))
			}
		})
	})

	t.Run("full GET, keep-alive to the node, headers filtered both ways", func(t *testing.T) {
		for i := range 4 {
			if i > 0 {
				// The front door pools the node's connection just after the client got the
				// last byte; a client that asks again at once can beat it to the pool.
				time.Sleep(250 * time.Millisecond)
			}
			resp := g.get(t, http.MethodGet, "latest", http.Header{
				"Connection":          {"X-Client-Hop"},
				"X-Client-Hop":        {"client-only"},
				"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
				"X-Forwarded-For":     {"203.0.113.9"},
				"Forwarded":           {"for=203.0.113.9"},
				"X-Request-Note":      {"kept"},
			})
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("download %d: %v", i, err)
			}
			if resp.StatusCode != http.StatusOK || !bytes.Equal(got, payload) {
				t.Fatalf("download %d: %d, %d bytes (sha256 %x), want 200 and %d bytes (sha256 %x)", i, resp.StatusCode,
					len(got), sha256.Sum256(got), len(payload), sha256.Sum256(payload))
			}
			if resp.ContentLength != int64(len(payload)) || resp.Header.Get("X-Version-Number") != "7" ||
				resp.Header.Get("Content-Disposition") != `attachment; filename="backup-7"` {
				t.Fatalf("download %d: Content-Length %d, headers %v", i, resp.ContentLength, resp.Header)
			}
			for _, h := range []string{"X-Node-Hop", "Keep-Alive", "Proxy-Authenticate"} {
				if v := resp.Header.Get(h); v != "" {
					t.Errorf("the client got the node's hop-by-hop header %s: %q", h, v)
				}
			}
		}
		reqs := g.seen()
		if len(reqs) != 4 {
			t.Fatalf("the node got %d requests, want 4", len(reqs))
		}
		in := reqs[3]
		for _, h := range []string{"X-Client-Hop", "Proxy-Authorization", "X-Forwarded-For", "Forwarded"} {
			if v := in.Header.Get(h); v != "" {
				t.Errorf("the node got the client's %s: %q", h, v)
			}
		}
		if in.Header.Get("X-Request-Note") != "kept" || in.Header.Get("Authorization") != "Bearer "+g.token {
			t.Errorf("end-to-end headers lost on the way to the node: %v", in.Header)
		}
		if ip := in.Header.Get(internalapi.HeaderClientIP); ip != "192.0.2.1" ||
			!internalapi.VerifyClientIP([]byte(nodeSecret), ip, in.Header.Get(internalapi.HeaderClientIPSig), time.Now()) {
			t.Errorf("client address %q with signature %q: want 192.0.2.1, validly signed", ip, in.Header.Get(internalapi.HeaderClientIPSig))
		}
		if n := g.newConns.Load(); n > 2 {
			t.Errorf("4 sequential downloads opened %d connections to the node, want 1 or 2 (kept alive)", n)
		}
	})

	t.Run("a pooled connection the node closed is replaced", func(t *testing.T) {
		before := g.newConns.Load()
		g.node.CloseClientConnections() // what the node's idle timeout does
		resp := g.get(t, http.MethodGet, "latest", nil)
		got, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, payload) {
			t.Fatalf("got %d, %d bytes, %v; want 200 and the version", resp.StatusCode, len(got), err)
		}
		if n := g.newConns.Load() - before; n != 1 {
			t.Fatalf("the node saw %d new connections, want 1", n)
		}
	})

	t.Run("Range answers 206 with that slice", func(t *testing.T) {
		resp := g.get(t, http.MethodGet, "latest", http.Header{"Range": {"bytes=1000-2098151"}})
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		want := payload[1000:2098152]
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, want) ||
			resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-2098151/%d", len(payload)) {
			t.Fatalf("got %d, %d bytes, Content-Range %q; want 206 and %d bytes", resp.StatusCode, len(got),
				resp.Header.Get("Content-Range"), len(want))
		}
		reqs := g.seen()
		if r := reqs[len(reqs)-1]; r.Header.Get("Range") != "bytes=1000-2098151" {
			t.Fatalf("the node got Range %q", r.Header.Get("Range"))
		}
	})

	t.Run("HEAD answers the length without a body", func(t *testing.T) {
		resp := g.get(t, http.MethodHead, "latest", nil)
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || len(got) != 0 ||
			resp.Header.Get("Content-Length") != strconv.Itoa(len(payload)) || resp.Header.Get("X-Version-Number") != "7" {
			t.Fatalf("got %d, %d body bytes, headers %v", resp.StatusCode, len(got), resp.Header)
		}
		reqs := g.seen()
		if r := reqs[len(reqs)-1]; r.Method != http.MethodHead {
			t.Fatalf("the node got %s, want HEAD", r.Method)
		}
	})

	t.Run("a node's error answer is passed on", func(t *testing.T) {
		resp := g.get(t, http.MethodGet, "missing", nil)
		var env struct {
			Status bool        `json:"status"`
			Code   shared.Code `json:"code"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusNotFound || env.Code != shared.CodeNotFound || env.Status {
			t.Fatalf("got %d %+v, want 404 NOT_FOUND", resp.StatusCode, env)
		}
	})

	t.Run("a chunked body streams with its trailer", func(t *testing.T) {
		resp := g.get(t, http.MethodGet, "chunked", nil)
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(payload)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, payload) || resp.Trailer.Get("X-Content-SHA256") != fmt.Sprintf("%x", sum) {
			t.Fatalf("got %d, %d bytes, trailer %v", resp.StatusCode, len(got), resp.Trailer)
		}
	})
}

// A node that detects corruption while serving aborts its connection before the last byte.
// The client must see a broken download, never a short body that looks complete.
func TestDownloadNodeEndsEarly(t *testing.T) {
	t.Parallel()
	const length = 4 << 20
	payload := randomBytes(t, length)
	g := newRig(t, func(g *rig) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ref := r.URL.Path[len("/api/stable/repository/collection/coll-1/version/"):]
			if ref == "whole" {
				w.Header().Set("Content-Length", strconv.Itoa(length))
				_, _ = w.Write(payload)
				return
			}
			head := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " + strconv.Itoa(length) + "\r\n\r\n"
			conn := hijackWrite(t, w, head, payload[:length/4+3])
			if conn == nil {
				return
			}
			if ref == "reset" {
				_ = conn.(*net.TCPConn).SetLinger(0) // RST instead of FIN
			}
			_ = conn.Close()
		})
	})
	for _, ref := range []string{"close", "reset"} {
		t.Run(ref, func(t *testing.T) {
			resp := g.get(t, http.MethodGet, ref, nil)
			got, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Fatalf("the download ended cleanly with %d of %d bytes; want an error", len(got), length)
			}
			if resp.StatusCode != http.StatusOK || len(got) >= length || !bytes.Equal(got, payload[:len(got)]) {
				t.Fatalf("got %d, %d bytes (a prefix: %v), err %v", resp.StatusCode, len(got), bytes.Equal(got, payload[:len(got)]), err)
			}
		})
	}
	// The broken connections were not pooled: a good download after them is complete.
	resp := g.get(t, http.MethodGet, "whole", nil)
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("download after the aborted ones: %d bytes, %v", len(got), err)
	}
}

// A node declared dead mid-transfer: the front door cuts the client's download at once (the
// node's socket may stay open for minutes), or answers 503 when nothing was sent yet.
func TestDownloadNodeDies(t *testing.T) {
	t.Parallel()
	const length = 64 << 20
	payload := randomBytes(t, 1<<20)
	for _, tc := range []struct {
		name string
		ref  string
	}{{"mid-body", "body"}, {"before the answer", "head"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stall := make(chan struct{})
			g := newRig(t, func(g *rig) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					var conn net.Conn
					if tc.ref == "body" {
						conn = hijackWrite(t, w, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(length)+"\r\n\r\n", payload)
					} else {
						conn, _, _ = http.NewResponseController(w).Hijack()
					}
					if conn != nil {
						<-stall // the socket stays open, silent, until the test ends
						_ = conn.Close()
					}
				})
			})
			t.Cleanup(func() { close(stall) }) // before the rig's cleanups, registered earlier
			type result struct {
				status int
				body   []byte
				err    error
				header http.Header
			}
			done := make(chan result, 1)
			got := make(chan struct{})
			go func() {
				req, _ := http.NewRequest(http.MethodGet, g.url("latest"), nil)
				req.Header.Set("Authorization", "Bearer "+g.token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					done <- result{err: err}
					return
				}
				defer resp.Body.Close()
				var body []byte
				if tc.ref == "body" {
					body = make([]byte, len(payload))
					_, err = io.ReadFull(resp.Body, body)
					close(got)
					if err == nil {
						var rest []byte
						rest, err = io.ReadAll(resp.Body)
						body = append(body, rest...)
					}
				} else {
					body, err = io.ReadAll(resp.Body)
				}
				done <- result{resp.StatusCode, body, err, resp.Header}
			}()
			if tc.ref == "body" {
				select {
				case <-got:
				case <-time.After(20 * time.Second):
					t.Fatal("the first MiB never arrived")
				}
			} else {
				waitFor(t, 10*time.Second, "the request to reach the node", func() bool { return len(g.seen()) == 1 })
			}
			left := time.Now()
			if err := g.member.Leave(2 * time.Second); err != nil {
				t.Fatal(err)
			}
			_ = g.member.Shutdown()
			var res result
			select {
			case res = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the download still hangs 30 s after its node left the cluster")
			}
			if n, _ := g.cluster.Node(g.nodeName); n.State == shared.NodeAlive {
				t.Fatalf("the cluster still shows the node %s", n.State)
			}
			t.Logf("the download ended %s after the node left", time.Since(left).Round(time.Millisecond))
			if tc.ref == "body" {
				if res.err == nil || res.status != http.StatusOK || len(res.body) >= length || !bytes.Equal(res.body[:len(payload)], payload) {
					t.Fatalf("got %d, %d bytes, err %v; want a cut 200 after the first MiB", res.status, len(res.body), res.err)
				}
				return
			}
			var env struct {
				Code shared.Code `json:"code"`
			}
			if res.err != nil || json.Unmarshal(res.body, &env) != nil {
				t.Fatalf("got %v %s", res.err, res.body)
			}
			if res.status != http.StatusServiceUnavailable || env.Code != shared.CodeNodeUnavailable || res.header.Get("Retry-After") != "7" {
				t.Fatalf("got %d %s Retry-After %q, want 503 NODE_UNAVAILABLE, 7", res.status, res.body, res.header.Get("Retry-After"))
			}
		})
	}
}

// Uploads with a Content-Length reach the node through the transport's connection wrapper
// (256 KiB copies); the node must get exactly the client's bytes, framed as the client sent them.
func TestUploadReachesNodeIntact(t *testing.T) {
	t.Parallel()
	payload := randomBytes(t, 5<<20+123)
	var got atomic.Pointer[[]byte]
	g := newRig(t, storingNode(&got))
	for i := range 2 { // the second goes over the kept-alive connection
		status, answer := g.post(t, bytes.NewReader(payload))
		if status != http.StatusOK || !bytes.Contains(answer, fmt.Appendf(nil, "%x", sha256.Sum256(payload))) {
			t.Fatalf("upload %d: %d %s", i, status, answer)
		}
		if b := got.Load(); b == nil || !bytes.Equal(*b, payload) {
			t.Fatalf("upload %d: the node did not get the client's bytes", i)
		}
		reqs := g.seen()
		if in := reqs[len(reqs)-1]; in.ContentLength != int64(len(payload)) || len(in.TransferEncoding) != 0 {
			t.Fatalf("upload %d reached the node with Content-Length %d, Transfer-Encoding %v", i, in.ContentLength, in.TransferEncoding)
		}
	}
}

// storingNode is a node that keeps the last body it got in got and answers with its sha256.
func storingNode(got *atomic.Pointer[[]byte]) func(g *rig) http.Handler {
	return func(g *rig) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			got.Store(&body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"status":true,"sha256":"%x"}`, sha256.Sum256(body))
		})
	}
}

func TestUploadAsksNodeFirstUnlessSmall(t *testing.T) {
	t.Parallel()
	var got atomic.Pointer[[]byte]
	g := newRig(t, storingNode(&got))
	tests := []struct {
		name   string
		size   int
		length bool // false: the client sends the body chunked, of unknown length
		expect string
	}{
		{"4 KiB", 4 << 10, true, ""},
		{"64 KiB", 64 << 10, true, ""},
		{"64 KiB and a byte", 64<<10 + 1, true, "100-continue"},
		{"5 MiB", 5 << 20, true, "100-continue"},
		{"4 KiB chunked", 4 << 10, false, "100-continue"},
	}
	for _, tt := range tests {
		payload := randomBytes(t, tt.size)
		var body io.Reader = bytes.NewReader(payload)
		if !tt.length {
			body = io.MultiReader(body) // hides the length from net/http
		}
		status, answer := g.post(t, body)
		if status != http.StatusOK || !bytes.Contains(answer, fmt.Appendf(nil, "%x", sha256.Sum256(payload))) {
			t.Fatalf("%s: %d %s", tt.name, status, answer)
		}
		reqs := g.seen()
		if got := reqs[len(reqs)-1].Header.Get("Expect"); got != tt.expect {
			t.Errorf("%s: the node got Expect %q, want %q", tt.name, got, tt.expect)
		}
	}
}

// A node that refuses an upload while the client still sends (413 mid-stream) answers at
// once and reads on; the client must hear the answer then, not once the front door has
// finished draining its body (drainFor, 2 s).
func TestRefusalMidStreamReachesClientAtOnce(t *testing.T) {
	t.Parallel()
	g := newRig(t, func(g *rig) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			_ = rc.EnableFullDuplex()
			if _, err := io.CopyN(io.Discard, r.Body, 64<<10); err != nil {
				return
			}
			answer := `{"status":false,"code":"VERSION_TOO_LARGE"}`
			w.Header().Set("Connection", "close")
			w.Header().Set("Content-Type", "application/json")
			// With its length: the front door flushes an answer of unknown length at every
			// write anyway.
			w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			_, _ = io.WriteString(w, answer)
			_ = rc.Flush()
			_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.Copy(io.Discard, r.Body)
		})
	})
	body, sender := io.Pipe()
	answered := make(chan struct{})
	go func() {
		chunk := make([]byte, 64<<10)
		for range 4 {
			if _, err := sender.Write(chunk); err != nil {
				return
			}
		}
		// Send no more until the answer came, or for 5 s.
		select {
		case <-answered:
		case <-time.After(5 * time.Second):
		}
		_ = sender.Close()
	}()
	start := time.Now()
	status, answer := g.post(t, body)
	took := time.Since(start)
	close(answered)
	if status != http.StatusRequestEntityTooLarge || !bytes.Contains(answer, []byte("VERSION_TOO_LARGE")) {
		t.Fatalf("got %d %s", status, answer)
	}
	if took > time.Second {
		t.Fatalf("the answer took %s to reach the client, which was still sending", took)
	}
}

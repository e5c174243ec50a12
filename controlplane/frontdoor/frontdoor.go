// Package frontdoor streams clients' collection requests (uploads, downloads, listings,
// deletions) to and from the data node that holds the collection, without buffering bodies.
package frontdoor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"backuprepo/shared"
	"backuprepo/shared/envelope"
	"backuprepo/shared/internalapi"
	"backuprepo/shared/pacing"
	"backuprepo/shared/token"
)

// Locator finds the data node of a collection.
type Locator interface {
	CollectionNode(ctx context.Context, collectionID string) (string, error)
}

// NodeView is the cluster's current view of the data nodes.
type NodeView interface {
	Node(name string) (shared.DataNode, bool)
}

// Config holds what the front door needs.
type Config struct {
	Locator Locator
	Nodes   NodeView
	// Keys verify tokens so that unauthenticated requests are refused before any routing.
	Keys token.Keys
	// Secret signs the client's address for the data node (the node secret).
	Secret []byte
	// ClientIP returns the caller's address as the control plane determined it.
	ClientIP func(r *http.Request) string
	// RetryAfter is what a client is told to wait when the node is down.
	RetryAfter time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// FrontDoor is the http.Handler side of the routing.
type FrontDoor struct {
	cfg     Config
	proxy   *httputil.ReverseProxy
	nodes   locationCache
	buffers *bufferPool
	conns   nodePool // downloads' connections (download.go)
	tokens  token.Cache
}

// locationTTL is how long a collection's node is remembered. Collections never move between
// nodes, so the entry can only go stale when the collection is deleted, and then the node
// itself answers 404 after asking the control plane.
const locationTTL = 30 * time.Second

// maxLocations bounds the cache; past it, the cache starts over.
const maxLocations = 100_000

// locationCache saves the database lookup of a collection's node on every request.
type locationCache struct {
	mu      sync.Mutex
	entries map[string]location
}

type location struct {
	node string
	at   time.Time
}

func (c *locationCache) get(id string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.entries[id]
	if !ok || now.Sub(l.at) > locationTTL {
		return "", false
	}
	return l.node, true
}

func (c *locationCache) put(id, node string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxLocations {
		c.entries = make(map[string]location)
	}
	c.entries[id] = location{node: node, at: now}
}

// locate returns the node of a collection, from the cache when it can.
func (f *FrontDoor) locate(ctx context.Context, id string) (string, error) {
	now := f.cfg.Now()
	if node, ok := f.nodes.get(id, now); ok {
		return node, nil
	}
	node, err := f.cfg.Locator.CollectionNode(ctx, id)
	if err == nil && node != "" {
		f.nodes.put(id, node, now)
	}
	return node, err
}

// bufferSize is the copy buffer of one transfer: large enough for few syscalls, small
// enough to stay in L2 cache (see docs/BENCHMARKS.md).
const bufferSize = 256 << 10

// askFirstAbove is the largest upload of known length that the front door sends to a node
// without asking first (Expect: 100-continue). The node's "100 Continue" costs every accepted
// upload a round trip between the two processes and its syscalls and wake-ups (about 2 of the
// control plane's 42 reads and writes and 1.4 of its 21 context switches per 4 KiB upload, see
// docs/BENCHMARKS.md); a refused body this small costs the node one read to drop.
const askFirstAbove = 64 << 10

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return *p.pool.Get().(*[]byte) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// uploadBody makes the transport copy an upload to the node in bufferSize pieces: without a
// WriteTo, net/http copies request bodies 32 KiB at a time whatever its buffer sizes, which
// costs the front door a tenth of its upload speed in system calls.
type uploadBody struct {
	io.ReadCloser
	buffers  *bufferPool
	transfer *transfer
}

// Close tells the transfer the transport is done with the client's body, without closing it:
// the front door may still have to read the rest (see drainClient), and net/http closes it
// when the handler returns.
func (b *uploadBody) Close() error {
	b.transfer.released()
	return nil
}

// Read is what the transport uses when the upload has a Content-Length (it reads through an
// io.LimitReader, hiding WriteTo; uploadConn.ReadFrom then brings the large buffer back).
func (b *uploadBody) Read(p []byte) (int, error) { return clientReader{b}.Read(p) }

func (b *uploadBody) WriteTo(w io.Writer) (int64, error) {
	buf := b.buffers.Get()
	defer b.buffers.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{w}, clientReader{b}, buf)
}

// clientReader reads the client's body and remembers why it failed, if it did.
type clientReader struct{ b *uploadBody }

func (c clientReader) Read(p []byte) (int, error) {
	n, err := c.b.ReadCloser.Read(p)
	if n > 0 {
		c.b.transfer.started.Store(true)
	}
	if err == io.EOF {
		c.b.transfer.bodyEnded.Store(true)
	} else if err != nil {
		c.b.transfer.setClientErr(err)
	}
	if err != nil {
		c.b.transfer.released()
	}
	return n, err
}

// uploadConn is the transport's connection to a node. net/http writes a request body with a
// Content-Length as io.Copy(conn, io.LimitReader(body, n)): no WriteTo is reachable there, and
// net.TCPConn.ReadFrom falls back to a 32 KiB copy. This ReadFrom copies in bufferSize pieces.
type uploadConn struct {
	*net.TCPConn
	buffers *bufferPool
}

func (c *uploadConn) ReadFrom(r io.Reader) (int64, error) {
	buf := c.buffers.Get()
	defer c.buffers.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{c.TCPConn}, r, buf)
}

// transfer is one request on its way through the front door.
type transfer struct {
	target *url.URL

	mu        sync.Mutex
	clientErr error // the client's body could not be read: its fault, not the node's
	// started: some of the client's body was read; bodyEnded: all of it.
	started, bodyEnded atomic.Bool
	// done is closed once the transport has stopped reading the client's body.
	done     chan struct{}
	doneOnce sync.Once
}

func (t *transfer) released() { t.doneOnce.Do(func() { close(t.done) }) }

func (t *transfer) setClientErr(err error) {
	t.mu.Lock()
	t.clientErr = err
	t.mu.Unlock()
}

func (t *transfer) clientFailed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.clientErr != nil
}

var collectionIDPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

type ctxKey int

const transferKey ctxKey = 0

// New builds the front door.
func New(cfg Config) *FrontDoor {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = 10 * time.Second
	}
	pool := &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, bufferSize); return &b }}}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: pacing.Control}
	transport := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if tcp, ok := conn.(*net.TCPConn); ok && err == nil {
				return &uploadConn{TCPConn: tcp, buffers: pool}, nil
			}
			return conn, err
		},
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: 10 * time.Second, // forward Expect: 100-continue to the node
		DisableCompression:    true,
		WriteBufferSize:       bufferSize,
		ReadBufferSize:        bufferSize,
	}
	f := &FrontDoor{cfg: cfg, buffers: pool, conns: nodePool{dialer: dialer}}
	f.proxy = &httputil.ReverseProxy{
		Rewrite:    f.rewrite,
		Transport:  transport,
		BufferPool: pool,
		// No FlushInterval: a -1 made ReverseProxy write the answer's header in a write of
		// its own (from a timer goroutine) and flush again after the body, two writes and a
		// goroutine for every small answer; an answer of unknown length is still flushed at
		// every write, and drainClient flushes a refusal before it drains.
		ErrorHandler:   f.proxyError,
		ModifyResponse: closeUnfinished,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return f
}

// closeUnfinished ends the client's connection after an answer the node gave before the
// client's body was all read (a refusal mid-stream, a stalled upload cut with 408). Without
// "Connection: close", net/http first reads on in the unwanted body before it writes the
// answer (golang/go#15527), so a stalled client never heard the node's 408; with it, the
// server answers at once, then half-closes and waits a moment, so that a client still
// sending reads the answer before its writes are refused.
func closeUnfinished(resp *http.Response) error {
	req := resp.Request
	if req == nil || req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	if tr, ok := req.Context().Value(transferKey).(*transfer); ok && !tr.bodyEnded.Load() {
		resp.Header.Set("Connection", "close")
	}
	return nil
}

// Routes mounts every collection path of SPEC §4.1 that carries bytes or lists versions.
func (f *FrontDoor) Routes(r chi.Router) {
	for _, prefix := range []string{"/api/stable", "/api/alpha"} {
		base := prefix + "/repository/collection/{id}/{naming:versions|version|backups|backup}"
		r.Post(base, f.ServeHTTP)
		r.Get(base, f.ServeHTTP)
		r.Get(base+"/{ref}", f.ServeHTTP)
		r.Head(base+"/{ref}", f.ServeHTTP)
		r.Delete(base+"/{ref}", f.ServeHTTP)
	}
}

// ServeHTTP routes one request to the collection's node.
func (f *FrontDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		envelope.WriteError(w, shared.Errorf(shared.CodeUnauthenticated, "an Authorization: Bearer token is required"))
		return
	}
	if _, err := f.tokens.Verify(f.cfg.Keys, strings.TrimSpace(bearer), f.cfg.Now()); err != nil {
		code := shared.CodeUnauthenticated
		if errors.Is(err, token.ErrExpired) {
			code = shared.CodeTokenExpired
		}
		envelope.WriteError(w, shared.Errorf(code, "token refused: %v", err))
		return
	}
	id := chi.URLParam(r, "id")
	if !collectionIDPattern.MatchString(id) {
		envelope.WriteError(w, shared.Errorf(shared.CodeNotFound, "collection not found"))
		return
	}
	nodeName, err := f.locate(r.Context(), id)
	if err != nil {
		if shared.ErrorCode(err) == shared.CodeInternal {
			f.cfg.Logger.Error("locate collection", "collection", id, "err", err)
			err = shared.Wrap(err, shared.CodeDependencyUnavailable, "the database is unavailable")
		}
		f.writeUnavailable(w, err)
		return
	}
	node, known := f.cfg.Nodes.Node(nodeName)
	if nodeName == "" || !known || (node.State != shared.NodeAlive && node.State != shared.NodeDraining) {
		f.writeUnavailable(w, shared.Errorf(shared.CodeNodeUnavailable, "the data node holding this collection is not available; retry later"))
		return
	}
	target, err := url.Parse(node.PublicURL)
	if err != nil || target.Host == "" {
		f.cfg.Logger.Error("data node has a bad public URL", "node", node.Name, "url", node.PublicURL)
		f.writeUnavailable(w, shared.Errorf(shared.CodeNodeUnavailable, "the data node holding this collection is misconfigured"))
		return
	}
	tr := &transfer{target: target, done: make(chan struct{})}
	ctx, cancel := context.WithCancelCause(context.WithValue(r.Context(), transferKey, tr))
	defer cancel(nil)
	go f.watch(ctx, cancel, nodeName)
	if addr := nodeAddr(target); addr != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && chi.URLParam(r, "ref") != "" {
		f.download(w, r.WithContext(ctx), addr)
		return
	}
	upload := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if upload {
		// Reads of the body may follow the answer (drainClient).
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	f.proxy.ServeHTTP(continueOnce{w}, r.WithContext(ctx))
	if upload && !tr.bodyEnded.Load() && !tr.clientFailed() {
		drainClient(w, r, tr)
	}
}

// Bounds of drainClient.
const (
	drainFor = 2 * time.Second
	drainMax = 256 << 20
)

// drainClient runs after an answer relayed before the client's body ended (a refusal
// mid-stream): it keeps reading the body for a moment, first through the transport (the node
// reads on after refusing) and then itself, before the handler returns and net/http closes
// the connection. Closing while the client still sends makes its TCP stack answer with a
// reset, and a client that has not read the answer yet loses it (a Go client reported "broken
// pipe" instead of the 413).
func drainClient(w http.ResponseWriter, r *http.Request, tr *transfer) {
	_ = http.NewResponseController(w).Flush() // the answer goes out before the draining
	deadline := time.Now().Add(drainFor)
	select {
	case <-tr.done:
	case <-time.After(drainFor):
		return
	}
	if tr.bodyEnded.Load() || tr.clientFailed() {
		return
	}
	if !tr.started.Load() && strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return // the client waited for the answer and sent nothing
	}
	_ = http.NewResponseController(w).SetReadDeadline(deadline)
	_, _ = io.CopyN(io.Discard, r.Body, drainMax)
}

// continueOnce drops the node's "100 Continue": the front door asks for it on every upload
// (see rewrite), and net/http already sends the client its own when the proxy starts reading
// the body, to clients that asked for one and only to them.
type continueOnce struct{ http.ResponseWriter }

func (w continueOnce) WriteHeader(code int) {
	if code != http.StatusContinue {
		w.ResponseWriter.WriteHeader(code)
	}
}

// Unwrap lets http.ResponseController reach the connection's Flush and deadlines.
func (w continueOnce) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// errNodeLost cancels transfers to a node the cluster declared dead or gone.
var errNodeLost = errors.New("the data node left the cluster during the transfer")

// watchEvery is how often a transfer checks that its node is still in the cluster.
const watchEvery = time.Second

// watch cancels a transfer when its node dies: a partitioned node's TCP connection can stay
// open for many minutes without a byte moving, and the client deserves an answer now.
func (f *FrontDoor) watch(ctx context.Context, cancel context.CancelCauseFunc, nodeName string) {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, ok := f.cfg.Nodes.Node(nodeName); !ok || n.State == shared.NodeDead || n.State == shared.NodeLeft {
			cancel(errNodeLost)
			return
		}
	}
}

func (f *FrontDoor) rewrite(pr *httputil.ProxyRequest) {
	tr := pr.In.Context().Value(transferKey).(*transfer)
	target := tr.target
	pr.SetURL(target)
	pr.Out.URL.Path = pr.In.URL.Path
	pr.Out.URL.RawPath = pr.In.URL.RawPath
	pr.Out.Host = target.Host
	// Share the trailer map: ReverseProxy's clone copied it before the body was read, and the
	// digest trailers (X-Content-SHA256, Digest) are filled in only at the body's end.
	pr.Out.Trailer = pr.In.Trailer
	if pr.Out.Body != nil && pr.Out.Body != http.NoBody {
		pr.Out.Body = &uploadBody{ReadCloser: pr.Out.Body, buffers: f.buffers, transfer: tr}
		// Ask the node before sending the body, so that a refusal (401, 403, 409, 413...)
		// reaches the client at once instead of after the client sent everything. A small
		// body of known length goes with its headers: the wait for "100 Continue" would cost
		// more than sending it to a node that refuses it.
		if pr.In.ContentLength < 0 || pr.In.ContentLength > askFirstAbove {
			pr.Out.Header.Set("Expect", "100-continue")
		}
	}
	ip := f.cfg.ClientIP(pr.In)
	pr.Out.Header.Del("X-Forwarded-For")
	pr.Out.Header.Set(internalapi.HeaderClientIP, ip)
	pr.Out.Header.Set(internalapi.HeaderClientIPSig, internalapi.SignClientIP(f.cfg.Secret, ip, f.cfg.Now()))
}

func (f *FrontDoor) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(context.Cause(r.Context()), errNodeLost) {
		f.cfg.Logger.Warn("front door cancelled a transfer to a dead data node", "path", r.URL.Path)
		f.writeUnavailable(w, shared.Errorf(shared.CodeNodeUnavailable, "the data node holding this collection became unavailable during the transfer; retry later"))
		return
	}
	if r.Context().Err() != nil {
		return // the client went away; nothing to answer
	}
	if tr, ok := r.Context().Value(transferKey).(*transfer); ok && tr.clientFailed() {
		envelope.WriteError(w, shared.Wrap(err, shared.CodeInvalidInput, "the request body was cut short or malformed"))
		return
	}
	f.cfg.Logger.Warn("front door could not reach data node", "path", r.URL.Path, "err", err)
	f.writeUnavailable(w, shared.Wrap(err, shared.CodeNodeUnavailable, "the data node holding this collection did not answer; retry later"))
}

func (f *FrontDoor) writeUnavailable(w http.ResponseWriter, err error) {
	if envelope.Status(shared.ErrorCode(err)) == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(f.cfg.RetryAfter/time.Second))))
	}
	envelope.WriteError(w, err)
}

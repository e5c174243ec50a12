package frontdoor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Downloads of a version bypass httputil.ReverseProxy: it copies response bodies through a
// user-space buffer (a read and a write syscall per 256 KiB), which cost the control plane
// ~0.8 CPU-s per GiB. Here the node's socket is handed to the client's http.ResponseWriter
// as an io.LimitedReader over a *net.TCPConn, so net/http's response.ReadFrom reaches
// TCPConn.ReadFrom and the kernel splices the bytes from socket to socket
// (docs/BENCHMARKS.md, "Misses and what to change").

// Keep-alive connections to the nodes for downloads. A small pool saves a TCP handshake per
// download (small versions and HEAD requests); a stale pooled connection costs one retry.
const (
	maxIdlePerNode  = 16
	nodeIdleTimeout = 30 * time.Second // well below the nodes' own (2 minutes)
	nodeHeadBuffer  = 4 << 10          // the response head; the body bypasses it
)

// nodeConn is one HTTP/1.1 connection to a data node.
type nodeConn struct {
	tcp    *net.TCPConn
	br     *bufio.Reader
	bw     *bufio.Writer
	reused bool
	idleAt time.Time
}

// nodePool keeps idle download connections per node address.
type nodePool struct {
	dialer *net.Dialer
	mu     sync.Mutex
	idle   map[string][]*nodeConn
}

func (p *nodePool) get(ctx context.Context, addr string, now time.Time) (*nodeConn, error) {
	p.mu.Lock()
	for list := p.idle[addr]; len(list) > 0; list = p.idle[addr] {
		c := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		if now.Sub(c.idleAt) < nodeIdleTimeout {
			p.mu.Unlock()
			c.reused = true
			return c, nil
		}
		_ = c.tcp.Close()
	}
	p.mu.Unlock()
	return p.dial(ctx, addr)
}

func (p *nodePool) dial(ctx context.Context, addr string) (*nodeConn, error) {
	conn, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		_ = conn.Close()
		return nil, fmt.Errorf("dial %s: got a %T, want a TCP connection", addr, conn)
	}
	return &nodeConn{tcp: tcp, br: bufio.NewReaderSize(tcp, nodeHeadBuffer), bw: bufio.NewWriterSize(tcp, nodeHeadBuffer)}, nil
}

func (p *nodePool) put(addr string, c *nodeConn, now time.Time) {
	c.idleAt = now
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idle == nil {
		p.idle = make(map[string][]*nodeConn)
	}
	// The oldest connections come first; drop those past their time, which also bounds what
	// a node that never comes back leaves open.
	list := p.idle[addr]
	for len(list) > 0 && now.Sub(list[0].idleAt) >= nodeIdleTimeout {
		_ = list[0].tcp.Close()
		list = list[1:]
	}
	if len(list) >= maxIdlePerNode {
		_ = c.tcp.Close()
		p.idle[addr] = list
		return
	}
	p.idle[addr] = append(list, c)
}

// nodeAddr is the host:port to dial for target, or "" when the download must go through the
// ReverseProxy (a TLS node: splicing needs the plain socket).
func nodeAddr(target *url.URL) string {
	if target.Scheme != "http" {
		return ""
	}
	port := target.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(target.Hostname(), port)
}

// errShortBody is a node response that ended before its Content-Length.
var errShortBody = errors.New("the data node's response ended before its Content-Length")

// download serves a GET or HEAD of one version. r carries the transfer's context (cancelled
// when the node dies); w must be the ResponseWriter net/http and the middleware gave, so that
// it keeps its io.ReaderFrom.
func (f *FrontDoor) download(w http.ResponseWriter, r *http.Request, addr string) {
	ctx := r.Context()
	out := f.outgoing(r)
	conn, resp, release, err := f.roundTrip(ctx, addr, out)
	if err != nil {
		f.proxyError(w, r, err)
		return
	}
	keep := false
	defer func() {
		// release stops the close-on-cancel; false means it already closed the connection.
		if release() && keep {
			f.conns.put(addr, conn, f.cfg.Now())
			return
		}
		_ = conn.tcp.Close()
	}()

	removeHopByHop(resp.Header)
	splice := r.Method == http.MethodGet && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent) &&
		resp.ContentLength >= 0 && len(resp.TransferEncoding) == 0
	if splice || r.Method == http.MethodHead {
		copyHeader(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		if r.Method == http.MethodHead {
			keep = !resp.Close && conn.br.Buffered() == 0
			return
		}
		if err := f.spliceBody(w, conn, resp.ContentLength); err != nil {
			f.abort(r, err)
		}
		keep = !resp.Close && conn.br.Buffered() == 0
		return
	}
	// Anything else (an error envelope, a chunked body) is small or rare: copy it as
	// ReverseProxy would, trailers included.
	announced := make(map[string]bool, len(resp.Trailer))
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
			announced[k] = true
		}
		w.Header().Add("Trailer", strings.Join(names, ", "))
	}
	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	if err := f.copyFlushing(w, resp.Body); err != nil {
		f.abort(r, err)
	}
	if len(resp.Trailer) > 0 {
		_ = http.NewResponseController(w).Flush() // forces chunking, so the trailers can follow
		for k, vv := range resp.Trailer {
			if !announced[k] {
				k = http.TrailerPrefix + k // net/http sends unannounced trailers so prefixed
			}
			for _, v := range vv {
				w.Header().Add(k, v)
			}
		}
	}
}

// outgoing is the request to the node: the client's, minus hop-by-hop headers, rewritten as
// for the ReverseProxy (target URL, the signed client address).
func (f *FrontDoor) outgoing(r *http.Request) *http.Request {
	out := r.Clone(r.Context())
	out.Body, out.ContentLength, out.TransferEncoding = nil, 0, nil
	out.Close = false
	out.RequestURI = ""
	te := hasTETrailers(r.Header)
	removeHopByHop(out.Header)
	if te {
		out.Header.Set("Te", "trailers")
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // not Go's default
	}
	for _, h := range []string{"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		out.Header.Del(h) // X-Forwarded-For: rewrite
	}
	if v, err := url.ParseQuery(out.URL.RawQuery); err != nil {
		out.URL.RawQuery = v.Encode() // drop what cannot be parsed, as ReverseProxy does
	}
	f.rewrite(&httputil.ProxyRequest{In: r, Out: out})
	return out
}

// roundTrip sends out on a pooled or new connection and reads the response head. A pooled
// connection the node has closed meanwhile fails before any answer; GET and HEAD are
// idempotent, so that is retried on the next pooled connection or a new one. release must be
// called once the connection is no longer read; it reports whether the connection is still
// usable.
func (f *FrontDoor) roundTrip(ctx context.Context, addr string, out *http.Request) (*nodeConn, *http.Response, func() bool, error) {
	for {
		conn, err := f.conns.get(ctx, addr, f.cfg.Now())
		if err != nil {
			return nil, nil, nil, err
		}
		// Closing the socket is what interrupts a blocked read or splice when the client goes
		// away or the watch declares the node lost.
		release := context.AfterFunc(ctx, func() { _ = conn.tcp.Close() })
		resp, err := exchange(conn, out)
		if err == nil {
			return conn, resp, release, nil
		}
		release()
		_ = conn.tcp.Close()
		if !conn.reused || ctx.Err() != nil {
			return nil, nil, nil, err
		}
	}
}

func exchange(conn *nodeConn, out *http.Request) (*http.Response, error) {
	if err := out.Write(conn.bw); err != nil {
		return nil, fmt.Errorf("send request to data node: %w", err)
	}
	if err := conn.bw.Flush(); err != nil {
		return nil, fmt.Errorf("send request to data node: %w", err)
	}
	for {
		resp, err := http.ReadResponse(conn.br, out)
		if err != nil {
			return nil, fmt.Errorf("read data node response: %w", err)
		}
		// Informational answers (103 Early Hints) precede the real one.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
}

// spliceBody writes the length bytes of the body: those the head's reader already holds,
// then the rest straight from the socket.
func (f *FrontDoor) spliceBody(w http.ResponseWriter, conn *nodeConn, length int64) error {
	remaining := length
	if n := int64(conn.br.Buffered()); n > 0 && remaining > 0 {
		k := int(min(n, remaining))
		p, _ := conn.br.Peek(k)
		if _, err := w.Write(p); err != nil {
			return fmt.Errorf("write to client: %w", err)
		}
		_, _ = conn.br.Discard(k)
		remaining -= int64(k)
	}
	if remaining == 0 {
		return nil
	}
	n, err := io.Copy(w, io.LimitReader(conn.tcp, remaining))
	if err != nil {
		return err
	}
	if n < remaining {
		return fmt.Errorf("%w (%d of %d bytes)", errShortBody, length-remaining+n, length)
	}
	return nil
}

// copyFlushing copies a non-spliced body, flushing each piece so that a slow listing streams.
func (f *FrontDoor) copyFlushing(w http.ResponseWriter, body io.Reader) error {
	buf := f.buffers.Get()
	defer f.buffers.Put(buf)
	rc := http.NewResponseController(w)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return fmt.Errorf("write to client: %w", werr)
			}
			_ = rc.Flush()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// abort cuts the client's connection once part of the answer is out: a response shorter than
// its Content-Length must never look complete (the same as ReverseProxy does).
func (f *FrontDoor) abort(r *http.Request, err error) {
	switch {
	case errors.Is(context.Cause(r.Context()), errNodeLost):
		f.cfg.Logger.Warn("front door cancelled a transfer to a dead data node", "path", r.URL.Path)
	case r.Context().Err() != nil:
		// the client went away
	default:
		f.cfg.Logger.Warn("front door aborted a download", "path", r.URL.Path, "err", err)
	}
	panic(http.ErrAbortHandler)
}

// hopHeaders are the headers ReverseProxy drops in both directions (RFC 9110 §7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

func hasTETrailers(h http.Header) bool {
	for _, v := range h["Te"] {
		for name := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(name), "trailers") {
				return true
			}
		}
	}
	return false
}

func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		for _, v := range vv {
			dst.Add(k, v)
		}
	}
}

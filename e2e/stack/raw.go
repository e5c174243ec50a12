package stack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// RawUpload is an upload on its own TCP connection whose body the test writes by hand:
// slowly, partly, or not at all, and whose connection it may drop at any byte. Go's HTTP
// client cannot do this: it waits for the body before it gives up a request.
type RawUpload struct {
	conn    net.Conn
	br      *bufio.Reader
	chunked bool
}

// OpenUpload sends the request line and headers of an upload of collectionID to base.
// contentLength < 0 announces a chunked body (write it with WriteChunk and EndChunks).
func (s *Stack) OpenUpload(ctx context.Context, base, token, collectionID string, contentLength int64, header http.Header) (*RawUpload, error) {
	u, err := url.Parse(collectionURL(base, "", "", collectionID))
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u.Host, err)
	}
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Host", u.Host)
	h.Set("Authorization", "Bearer "+token)
	if contentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(contentLength, 10))
	} else {
		h.Set("Transfer-Encoding", "chunked")
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "POST %s HTTP/1.1\r\n", u.RequestURI())
	if err := h.Write(w); err != nil {
		conn.Close()
		return nil, err
	}
	w.WriteString("\r\n")
	if err := w.Flush(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send headers: %w", err)
	}
	return &RawUpload{conn: conn, br: bufio.NewReader(conn), chunked: contentLength < 0}, nil
}

// Write sends raw body bytes (for a chunked upload, use WriteChunk).
func (r *RawUpload) Write(p []byte) (int, error) { return r.conn.Write(p) }

// WriteChunk sends p as one chunk of a chunked body.
func (r *RawUpload) WriteChunk(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := fmt.Fprintf(r.conn, "%x\r\n", len(p)); err != nil {
		return err
	}
	if _, err := r.conn.Write(p); err != nil {
		return err
	}
	_, err := io.WriteString(r.conn, "\r\n")
	return err
}

// EndChunks sends the last chunk, which completes a chunked body.
func (r *RawUpload) EndChunks() error {
	_, err := io.WriteString(r.conn, "0\r\n\r\n")
	return err
}

// Answer reads the answer, waiting at most timeout.
func (r *RawUpload) Answer(timeout time.Duration) (Answer, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(timeout))
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		return Answer{}, fmt.Errorf("read answer: %w", err)
	}
	defer resp.Body.Close()
	a := Answer{Status: resp.StatusCode, Header: resp.Header}
	a.Body, err = io.ReadAll(resp.Body)
	if err != nil {
		return a, fmt.Errorf("read answer body: %w", err)
	}
	_ = json.Unmarshal(a.Body, &a.Envelope)
	return a, nil
}

// Close drops the connection: a client that goes away.
func (r *RawUpload) Close() error { return r.conn.Close() }

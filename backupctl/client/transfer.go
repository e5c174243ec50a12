package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"backuprepo/shared"
)

// Body is what an upload sends.
type Body struct {
	// Open returns the bytes for one attempt; the client closes them.
	Open func() (io.ReadCloser, error)
	// Replayable says Open may be called again after a failed attempt (a file, not a pipe),
	// which is what allows retrying on 503 and connection errors.
	Replayable bool
	// Size is the body's length, or -1 when unknown.
	Size int64
	// SHA256 is the body's hex digest when known before sending: it goes in the
	// X-Content-SHA256 header with a Content-Length. When empty the client hashes what it
	// sends and puts the digest in an X-Content-SHA256 trailer of a chunked request.
	SHA256 string
}

// Upload stores body as a new version of collection through the front door. A refusal comes
// back as the server's *shared.Error. An error reading the body aborts the request before its
// last chunk, so the server stores nothing, and is returned as it is.
func (c *Client) Upload(ctx context.Context, collection string, body Body) (Version, error) {
	for attempt := 0; ; attempt++ {
		v, retry, wait, err := c.uploadOnce(ctx, collection, body)
		if err == nil {
			return v, nil
		}
		if !retry || !body.Replayable || attempt >= c.opts.Retries {
			return Version{}, err
		}
		if werr := c.wait(ctx, attempt+1, err, wait); werr != nil {
			return Version{}, werr
		}
	}
}

// uploadOnce makes one attempt; retry says whether the failure was the server being
// unavailable or the connection breaking, as opposed to a refusal or a broken source.
func (c *Client) uploadOnce(ctx context.Context, collection string, body Body) (Version, bool, time.Duration, error) {
	src, err := body.Open()
	if err != nil {
		return Version{}, false, 0, err
	}
	defer src.Close()
	sent := &sendReader{r: src, h: sha256.New()}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodPost, versionsPath(collection), sent)
	if err != nil {
		return Version{}, false, 0, err
	}
	// No Content-Type: the API takes the raw body, as Backup Maker sends it.
	if body.SHA256 != "" && body.Size >= 0 {
		req.ContentLength = body.Size
		req.Header.Set("X-Content-SHA256", body.SHA256)
	} else {
		req.ContentLength = -1
		req.Trailer = http.Header{"X-Content-Sha256": nil}
		sent.trailer = req.Trailer
		if body.SHA256 != "" {
			req.Header.Set("X-Content-SHA256", body.SHA256)
		}
	}
	if req.ContentLength == 0 {
		req.Body = http.NoBody // an empty file: let the server say EMPTY_BODY
	}
	resp, err := c.http.Do(req)
	if sent.err != nil {
		// The source failed (a --cmd that exited non-zero, an unreadable file): the request
		// was cut before its final chunk. Say why, not what the transport saw.
		cancel()
		if resp != nil {
			resp.Body.Close()
		}
		return Version{}, false, 0, sent.err
	}
	if err != nil {
		if ctx.Err() != nil {
			return Version{}, false, 0, ctx.Err()
		}
		return Version{}, true, 0, connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout {
		return Version{}, true, retryAfter(resp), readEnvelope(resp, nil)
	}
	var out struct {
		Version Version `json:"version"`
	}
	if err := readEnvelope(resp, &out); err != nil {
		return Version{}, false, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return Version{}, false, 0, shared.Errorf(shared.CodeInternal, "the repository answered %s, not 200 OK", resp.Status)
	}
	if got := sent.sum(); !strings.EqualFold(out.Version.SHA256, got) {
		return Version{}, false, 0, shared.Errorf(shared.CodeChecksumMismatch,
			"the repository stored sha256 %s but backupctl sent %s", out.Version.SHA256, got)
	}
	return out.Version, false, 0, nil
}

// sendReader hashes what the transport reads, puts the digest in the trailer when the body
// ends, and remembers a failure of the source so it is not mistaken for a network error.
type sendReader struct {
	r       io.Reader
	h       hash.Hash
	trailer http.Header
	err     error
}

func (s *sendReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.h.Write(p[:n])
	switch {
	case err == io.EOF:
		if s.trailer != nil {
			// net/http sends the trailer after the body's EOF; it must be set before.
			s.trailer.Set("X-Content-SHA256", s.sum())
		}
	case err != nil:
		s.err = err
	}
	return n, err
}

func (s *sendReader) sum() string { return hex.EncodeToString(s.h.Sum(nil)) }

// Download describes a version being downloaded.
type Download struct {
	// Size is the full length in bytes (-1 when the server sent none).
	Size int64
	// SHA256 is the digest the server announced in its ETag.
	SHA256 string
	// Filename is from Content-Disposition, when there was one.
	Filename string
	// Resumed counts the Range requests it took to finish.
	Resumed int
}

// Download writes version ref of collection to w: the bytes are hashed as they arrive and
// compared with the ETag at the end (CHECKSUM_MISMATCH when they differ, and w has then had
// bad bytes: the caller discards its output). A connection that breaks midway is resumed with
// a Range request pinned to the ETag by If-Range, so a version that changed in between is not
// stitched onto the old one. onStart, when set, hears the size once the answer starts.
func (c *Client) Download(ctx context.Context, collection, ref string, w io.Writer, onStart func(Download)) (Download, error) {
	path := versionsPath(collection) + "/" + url.PathEscape(ref)
	dst := &sinkWriter{w: w}
	h := sha256.New()
	out := io.MultiWriter(h, dst)
	var (
		d       = Download{Size: -1}
		written int64
		etag    string
		fails   int
	)
	for {
		req, err := c.newRequest(ctx, http.MethodGet, path, nil)
		if err != nil {
			return d, err
		}
		req.Header.Set("Accept-Encoding", "identity")
		if written > 0 {
			req.Header.Set("Range", "bytes="+strconv.FormatInt(written, 10)+"-")
			req.Header.Set("If-Range", etag)
		}
		resp, err := c.http.Do(req)
		var retryWait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return d, ctx.Err()
			}
			err = connError(err)
		case resp.StatusCode == http.StatusServiceUnavailable:
			retryWait = retryAfter(resp)
			err = readEnvelope(resp, nil)
			resp.Body.Close()
		default:
			err = c.startDownload(resp, written, &d, &etag)
			if err != nil {
				resp.Body.Close()
				return d, err
			}
			if written == 0 && onStart != nil {
				onStart(d)
			}
			var n int64
			n, err = io.Copy(out, resp.Body)
			resp.Body.Close()
			written += n
			if n > 0 {
				fails = 0
			}
			if dst.err != nil {
				return d, dst.err
			}
			if err == nil && d.Size >= 0 && written < d.Size {
				err = io.ErrUnexpectedEOF
			}
			if err == nil {
				if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, d.SHA256) {
					return d, shared.Errorf(shared.CodeChecksumMismatch,
						"the downloaded data does not match its checksum: sha256 %s, the repository's ETag says %s; the stored copy may be damaged", got, d.SHA256)
				}
				return d, nil
			}
			if ctx.Err() != nil {
				return d, ctx.Err()
			}
			err = connError(fmt.Errorf("download interrupted after %d bytes: %w", written, err))
		}
		fails++
		if fails > c.opts.Retries {
			return d, err
		}
		if written > 0 {
			d.Resumed++
		}
		if werr := c.wait(ctx, fails, err, retryWait); werr != nil {
			return d, werr
		}
	}
}

// startDownload checks the answer to a first request or a resume and records what it says.
func (c *Client) startDownload(resp *http.Response, written int64, d *Download, etag *string) error {
	switch {
	case written == 0 && resp.StatusCode == http.StatusOK:
		*etag = resp.Header.Get("ETag")
		d.SHA256 = strings.Trim(strings.TrimPrefix(*etag, "W/"), `"`)
		if len(d.SHA256) != sha256.Size*2 {
			return shared.Errorf(shared.CodeInternal, "the repository sent no sha256 ETag (%q); the download cannot be verified", *etag)
		}
		d.Size = resp.ContentLength
		if _, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err == nil {
			d.Filename = params["filename"]
		}
		return nil
	case written > 0 && resp.StatusCode == http.StatusPartialContent:
		var start int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-", &start); err != nil || start != written {
			return shared.Errorf(shared.CodeInternal, "the repository resumed at %q, not at byte %d", resp.Header.Get("Content-Range"), written)
		}
		return nil
	case written > 0 && resp.StatusCode == http.StatusOK:
		return shared.Errorf(shared.CodeConflict, "the version changed while it was downloading (new ETag %s); start again", resp.Header.Get("ETag"))
	case resp.StatusCode/100 == 2:
		return shared.Errorf(shared.CodeInternal, "the repository answered %s to a download", resp.Status)
	}
	return readEnvelope(resp, nil)
}

// sinkWriter remembers that the destination failed, which is not a network error to retry.
type sinkWriter struct {
	w   io.Writer
	err error
}

func (s *sinkWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		s.err = err
	}
	return n, err
}

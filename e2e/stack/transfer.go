package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"time"

	"backuprepo/shared/envelope"
)

// UploadOptions say how an upload is sent.
type UploadOptions struct {
	Prefix string // "/api/stable" (default) or "/api/alpha"
	Naming string // "versions" (default), "version", "backups" or "backup"
	// Chunked sends the body without Content-Length (Transfer-Encoding: chunked), as Backup
	// Maker does.
	Chunked bool
	// ContentLength announces a length for a body whose length Go cannot see (a pipe); it
	// may differ from what the body really holds.
	ContentLength int64
	// Multipart wraps the body in multipart/form-data, in the field "file".
	Multipart bool
	Header    http.Header
}

// Answer is a REST answer: status, headers, raw body and, when the body is one, its envelope.
type Answer struct {
	Status   int
	Header   http.Header
	Body     []byte
	Envelope envelope.Envelope
}

// Code is the answer's machine code ("" on success or without an envelope).
func (a Answer) Code() string { return string(a.Envelope.Code) }

func (a Answer) String() string {
	b := a.Body
	if len(b) > 300 {
		b = append(b[:300:300], "…"...)
	}
	return fmt.Sprintf("%d %q", a.Status, b)
}

// Version is a version as the collection endpoints show it.
type Version struct {
	ID           string    `json:"id"`
	CollectionID string    `json:"collectionId"`
	Number       int64     `json:"number"`
	Filename     string    `json:"filename"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"`
	CreatedAt    time.Time `json:"createdAt"`
}

// Version decodes the version of an upload's or a deletion's answer.
func (a Answer) Version() (Version, error) {
	var d struct{ Version *Version }
	if err := json.Unmarshal(a.Envelope.Data, &d); err != nil || d.Version == nil {
		return Version{}, fmt.Errorf("answer holds no version: %s", a)
	}
	return *d.Version, nil
}

// Versions decodes a listing.
func (a Answer) Versions() ([]Version, error) {
	var d struct{ Versions *[]Version }
	if err := json.Unmarshal(a.Envelope.Data, &d); err != nil || d.Versions == nil {
		return nil, fmt.Errorf("answer holds no versions: %s", a)
	}
	return *d.Versions, nil
}

func collectionURL(base, prefix, naming, collectionID string) string {
	if prefix == "" {
		prefix = "/api/stable"
	}
	if naming == "" {
		naming = "versions"
	}
	return base + prefix + "/repository/collection/" + collectionID + "/" + naming
}

// Upload posts body as a new version of collectionID to base (the control plane's URL for
// the front door, or a data node's URL to go direct).
func (s *Stack) Upload(ctx context.Context, base, token, collectionID string, body io.Reader, o UploadOptions) (Answer, error) {
	contentType := ""
	if o.Multipart {
		if o.Chunked {
			pr, pw := io.Pipe()
			mw := multipart.NewWriter(pw)
			contentType = mw.FormDataContentType()
			src := body
			go func() { pw.CloseWithError(writeMultipart(mw, src)) }()
			defer pr.Close()
			body = pr
		} else {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			contentType = mw.FormDataContentType()
			if err := writeMultipart(mw, body); err != nil {
				return Answer{}, err
			}
			body = &buf
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, collectionURL(base, o.Prefix, o.Naming, collectionID), body)
	if err != nil {
		return Answer{}, err
	}
	switch {
	case o.Chunked:
		req.ContentLength = -1
	case o.ContentLength > 0:
		req.ContentLength = o.ContentLength
	}
	for k, vs := range o.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return s.do(req, token)
}

func writeMultipart(mw *multipart.Writer, body io.Reader) error {
	if err := mw.WriteField("description", "e2e upload"); err != nil {
		return err
	}
	fw, err := mw.CreateFormFile("file", "backup.tar.gz.gpg")
	if err != nil {
		return err
	}
	if _, err := io.Copy(fw, body); err != nil {
		return err
	}
	return mw.Close()
}

// ReadOptions say where a listing, download or deletion is sent and with which headers.
type ReadOptions struct {
	Prefix string      // "/api/stable" (default) or "/api/alpha"
	Naming string      // "versions" (default), "version", "backups" or "backup"
	Header http.Header // Range, If-None-Match…
}

// List lists the versions of collectionID (GET …/versions), newest first.
func (s *Stack) List(ctx context.Context, base, token, collectionID string, o ReadOptions) (Answer, error) {
	return s.read(ctx, http.MethodGet, collectionURL(base, o.Prefix, o.Naming, collectionID), token, o.Header)
}

// Download fetches version ref of collectionID; Body holds the bytes.
func (s *Stack) Download(ctx context.Context, base, token, collectionID, ref string, o ReadOptions) (Answer, error) {
	return s.read(ctx, http.MethodGet, collectionURL(base, o.Prefix, o.Naming, collectionID)+"/"+ref, token, o.Header)
}

// DeleteVersion deletes version ref of collectionID through the REST endpoint.
func (s *Stack) DeleteVersion(ctx context.Context, base, token, collectionID, ref string, o ReadOptions) (Answer, error) {
	return s.read(ctx, http.MethodDelete, collectionURL(base, o.Prefix, o.Naming, collectionID)+"/"+ref, token, o.Header)
}

func (s *Stack) read(ctx context.Context, method, url, token string, header http.Header) (Answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return Answer{}, err
	}
	for k, vs := range header {
		req.Header[k] = append([]string(nil), vs...)
	}
	return s.do(req, token)
}

func (s *Stack) do(req *http.Request, token string) (Answer, error) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	a := Answer{Status: resp.StatusCode, Header: resp.Header}
	a.Body, err = io.ReadAll(resp.Body)
	if err != nil {
		return a, fmt.Errorf("read answer: %w", err)
	}
	if bytes.HasPrefix(bytes.TrimSpace(a.Body), []byte("{")) {
		_ = json.Unmarshal(a.Body, &a.Envelope) // a download of JSON bytes is no envelope; fine
	}
	return a, nil
}

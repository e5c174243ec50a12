package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"backuprepo/datanode/disk"
	"backuprepo/shared"
	"backuprepo/shared/internalapi"
	"backuprepo/shared/ref"
)

// versionRequest authenticates the caller and parses the collection id and version ref of a
// download or delete path.
func (h *Handler) versionRequest(r *http.Request) (internalapi.VersionRequest, error) {
	caller, err := h.authenticate(r)
	if err != nil {
		return internalapi.VersionRequest{}, err
	}
	collectionID := chi.URLParam(r, "id")
	if !validCollectionID(collectionID) {
		return internalapi.VersionRequest{}, shared.Errorf(shared.CodeNotFound, "collection not found")
	}
	rf, err := ref.Parse(chi.URLParam(r, "ref"))
	if err != nil {
		return internalapi.VersionRequest{}, err
	}
	return internalapi.VersionRequest{Caller: caller, CollectionID: collectionID, Ref: rf.String()}, nil
}

// download streams a version. Every byte sent is checked first against the version's block
// checksums (disk.Store.Send), so a damaged file is never served: the client gets 500
// VERSION_DAMAGED when the damage is in the first bytes to send, or a connection cut short of
// its Content-Length otherwise, and the control plane records the damage. Single-range Range
// requests (206), If-Range, If-None-Match (304), If-Modified-Since and HEAD are answered here;
// the bytes go from the file to the socket with sendfile.
func (h *Handler) download(w http.ResponseWriter, r *http.Request) {
	req, err := h.versionRequest(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	v, err := h.cp.Resolve(r.Context(), req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	f, fi, err := h.store.OpenVersion(req.CollectionID, v.ID)
	if err != nil {
		if errors.Is(err, disk.ErrNotFound) {
			// The control plane records it here, so its file is lost: an operator must know.
			h.log.Error("version recorded but its file is missing", "collection", req.CollectionID, "version", v.ID)
		}
		h.fail(w, r, fmt.Errorf("open version %s: %w", v.ID, err))
		return
	}
	defer f.Close()
	if fi.Size() != v.Size {
		h.damaged(w, r, fi.Size(), &disk.DamagedError{CollectionID: req.CollectionID, VersionID: v.ID,
			Detail: fmt.Sprintf("file has %d bytes, record says %d", fi.Size(), v.Size)})
		return
	}
	sums, err := h.store.LoadSums(req.CollectionID, v.ID, f, v.Size, v.SHA256)
	if err != nil {
		h.damaged(w, r, fi.Size(), err)
		return
	}

	etag := `"` + v.SHA256 + `"`
	hdr := w.Header()
	hdr.Set("ETag", etag)
	hdr.Set("Last-Modified", v.CreatedAt.UTC().Format(http.TimeFormat))
	hdr.Set("Cache-Control", "private, no-cache")
	hdr.Set("Accept-Ranges", "bytes")
	if notModified(r, etag, v.CreatedAt) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	rangeHeader := r.Header.Get("Range")
	if ir := r.Header.Get("If-Range"); ir != "" && !etagMatches(ir, etag, false) {
		rangeHeader = "" // the client's partial copy is of another version: send it whole
	}
	br, err := parseRange(rangeHeader, v.Size)
	if err != nil {
		hdr.Set("Content-Range", fmt.Sprintf("bytes */%d", v.Size))
		writeErrorStatus(w, http.StatusRequestedRangeNotSatisfiable, shared.CodeInvalidInput,
			fmt.Sprintf("range %q is not satisfiable for a version of %d bytes", r.Header.Get("Range"), v.Size))
		return
	}
	// The body's headers wait for its first checked bytes, so that damage at the start can
	// still be answered with an error instead of a 200.
	body := &deferredHeader{w: w, status: http.StatusOK, header: http.Header{
		"Content-Type":        {"application/octet-stream"},
		"Content-Disposition": {contentDisposition(v.Filename)},
		"Content-Length":      {strconv.FormatInt(br.n, 10)},
	}}
	if br.partial {
		body.status = http.StatusPartialContent
		body.header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", br.off, br.off+br.n-1, v.Size))
	}
	if r.Method == http.MethodHead || br.n == 0 {
		body.writeHeader()
		return
	}
	_, err = h.store.Send(r.Context(), body, f, req.CollectionID, v.ID, sums, br.off, br.n)
	var damage *disk.DamagedError
	switch {
	case errors.As(err, &damage) && !body.wrote:
		h.damaged(w, r, fi.Size(), err)
	case errors.As(err, &damage):
		h.reportDamage(req.CollectionID, v.ID, fi.Size(), damage.Detail)
		// Headers and some bytes are out: only a connection cut short of its Content-Length
		// tells the client the body is not whole.
		panic(http.ErrAbortHandler)
	case err != nil && r.Context().Err() == nil && !body.wrote:
		h.fail(w, r, err)
	case err != nil:
		h.log.Debug("download ended early", "collection", req.CollectionID, "version", v.ID, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// damaged answers VERSION_DAMAGED for a version that fails its checks and reports it.
func (h *Handler) damaged(w http.ResponseWriter, r *http.Request, size int64, err error) {
	var damage *disk.DamagedError
	if !errors.As(err, &damage) {
		h.fail(w, r, err)
		return
	}
	h.reportDamage(damage.CollectionID, damage.VersionID, size, damage.Detail)
	for _, k := range []string{"ETag", "Last-Modified", "Accept-Ranges", "Cache-Control"} {
		w.Header().Del(k) // they describe the version, not this error
	}
	h.fail(w, r, shared.Wrap(err, shared.CodeVersionDamaged,
		"the stored copy of this version is damaged and is not served; the hosting organisation has been told"))
}

// reportDamage logs a damaged version and records it with the control plane, in the
// background: the answer to the client does not wait for it.
func (h *Handler) reportDamage(collectionID, versionID string, size int64, detail string) {
	h.log.Error("stored version is damaged", "collection", collectionID, "version", versionID, "detail", detail)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := h.cp.Integrity(ctx, internalapi.IntegrityReport{Checks: []internalapi.IntegrityCheck{{
			CollectionID: collectionID, VersionID: versionID, Size: size, Problem: detail,
		}}})
		if err != nil {
			h.log.Warn("could not report a damaged version to the control plane", "collection", collectionID,
				"version", versionID, "err", err)
		}
	}()
}

// notModified evaluates If-None-Match, or If-Modified-Since without it (RFC 9110 §13.2.2).
func notModified(r *http.Request, etag string, modified time.Time) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		return etagMatches(inm, etag, true)
	}
	ims := r.Header.Get("If-Modified-Since")
	if ims == "" {
		return false
	}
	t, err := http.ParseTime(ims)
	return err == nil && !modified.Truncate(time.Second).After(t)
}

// deferredHeader sends its status and headers with the first body bytes. It forwards ReadFrom
// so that io.Copy from an *os.File still reaches sendfile.
type deferredHeader struct {
	w      http.ResponseWriter
	status int
	header http.Header
	wrote  bool
}

func (d *deferredHeader) writeHeader() {
	if d.wrote {
		return
	}
	d.wrote = true
	for k, v := range d.header {
		d.w.Header()[k] = v
	}
	d.w.WriteHeader(d.status)
}

func (d *deferredHeader) Write(p []byte) (int, error) {
	d.writeHeader()
	return d.w.Write(p)
}

func (d *deferredHeader) ReadFrom(r io.Reader) (int64, error) {
	d.writeHeader()
	if rf, ok := d.w.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{d.w}, r)
}

// writerOnly hides every method but Write, so io.Copy does not call ReadFrom back.
type writerOnly struct{ io.Writer }

// contentDisposition is `attachment; filename="…"` as SPEC §4.1 shows it, with an RFC 6266
// filename* beside an ASCII fallback when the name is not plain ASCII.
func contentDisposition(name string) string {
	ascii := true
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 || name[i] >= 0x7f {
			ascii = false
			break
		}
	}
	quote := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	if ascii {
		return `attachment; filename="` + quote.Replace(name) + `"`
	}
	fallback := strings.Map(func(c rune) rune {
		if c < 0x20 || c >= 0x7f {
			return '_'
		}
		return c
	}, name)
	return `attachment; filename="` + quote.Replace(fallback) + `"; filename*=UTF-8''` + extValue(name)
}

// extValue percent-encodes every byte outside RFC 5987's attr-char.
func extValue(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// list answers the collection's versions, newest first.
func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	caller, err := h.authenticate(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	collectionID := chi.URLParam(r, "id")
	if !validCollectionID(collectionID) {
		h.fail(w, r, shared.Errorf(shared.CodeNotFound, "collection not found"))
		return
	}
	vs, err := h.cp.List(r.Context(), internalapi.ListRequest{Caller: caller, CollectionID: collectionID})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]versionView, len(vs))
	for i, v := range vs {
		out[i] = viewOf(v)
	}
	writeData(w, map[string]any{"versions": out})
}

// deleteVersion has the control plane check collectionManager and drop the record, then
// removes the file. A file that cannot be removed is logged: the version is already gone for
// everyone, and verification finds the orphan.
func (h *Handler) deleteVersion(w http.ResponseWriter, r *http.Request) {
	req, err := h.versionRequest(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	v, err := h.cp.Delete(r.Context(), req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.store.Remove(req.CollectionID, v.ID); err != nil {
		h.log.Error("remove a deleted version's file", "collection", req.CollectionID, "version", v.ID, "err", err)
	}
	writeData(w, map[string]any{"version": viewOf(v)})
}

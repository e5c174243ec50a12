package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

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

// download streams a version: http.ServeContent on the *os.File itself does Range (206),
// If-None-Match (304) and HEAD, and lets net/http use sendfile.
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
		h.fail(w, r, fmt.Errorf("version %s of collection %s: file has %d bytes, record says %d",
			v.ID, req.CollectionID, fi.Size(), v.Size))
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Content-Disposition", contentDisposition(v.Filename))
	hdr.Set("ETag", `"`+v.SHA256+`"`)
	hdr.Set("Cache-Control", "private, no-cache")
	http.ServeContent(w, r, "", v.CreatedAt, f)
}

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

package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"backuprepo/datanode/admission"
	"backuprepo/datanode/disk"
	"backuprepo/shared"
	"backuprepo/shared/internalapi"
)

const (
	// peekSize covers the ASCII armour line and any binary OpenPGP packet header.
	peekSize = 64
	// maxSkipped bounds the bytes of non-file multipart parts read past; they are form fields,
	// never backups.
	maxSkipped = 1 << 20
	// maxEpilogue bounds what is read after the file part to reach the body's end (and the
	// trailers behind it).
	maxEpilogue = 64 << 10
)

// Upload failures that are about the transfer itself, not a rule.
var (
	errClientGone = errors.New("the request body was cut short")
	errStalled    = errors.New("the request body stalled")
)

// versionView is a version as the collection endpoints show it (SPEC §4.1).
type versionView struct {
	ID           string    `json:"id"`
	CollectionID string    `json:"collectionId"`
	Number       int64     `json:"number"`
	Filename     string    `json:"filename"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"`
	CreatedAt    time.Time `json:"createdAt"`
}

func viewOf(v shared.Version) versionView {
	return versionView{ID: v.ID, CollectionID: v.CollectionID, Number: v.Number, Filename: v.Filename,
		Size: v.Size, SHA256: v.SHA256, CreatedAt: v.CreatedAt}
}

// upload follows SPEC §3 in order: the token is checked here, rules 1 to 6 by the control
// plane's admit, then the body's first bytes, the stream to disk, the checksum and the commit.
func (h *Handler) upload(w http.ResponseWriter, r *http.Request) {
	caller, err := h.authenticate(r)
	if err != nil {
		h.refuseUnread(w, r, err)
		return
	}
	collectionID := chi.URLParam(r, "id")
	if !validCollectionID(collectionID) {
		h.refuseUnread(w, r, shared.Errorf(shared.CodeNotFound, "collection not found"))
		return
	}
	want, err := digestsFrom(r.Header)
	if err != nil {
		h.refuseUnread(w, r, err)
		return
	}
	boundary, err := multipartBoundary(r.Header.Get("Content-Type"))
	if err != nil {
		h.refuseUnread(w, r, err)
		return
	}
	length := r.ContentLength
	if boundary != "" {
		// The file is smaller than the body by the multipart framing, whose size is unknown
		// until it is read; it is counted while streaming instead.
		length = -1
	}
	adm, release, err := h.admit(r.Context(), internalapi.AdmitRequest{
		Caller:        caller,
		CollectionID:  collectionID,
		ContentLength: length,
	})
	if err != nil {
		h.refuseUnread(w, r, err)
		return
	}
	defer release()
	h.metrics.inFlight.Inc()
	defer h.metrics.inFlight.Dec()
	v, err := h.receive(w, r, collectionID, adm, boundary, want)
	if err != nil {
		h.uploadFailed(w, r, collectionID, adm.UploadID, err)
		return
	}
	h.metrics.uploads.WithLabelValues("ok").Inc()
	h.log.Info("upload stored", "collection", collectionID, "version", v.ID, "number", v.Number, "size", v.Size)
	writeData(w, map[string]any{"version": viewOf(v)})
}

// admit asks the control plane to admit an upload with the room the node has now.
//
// A commit that starts after the room was read may release its reservation before this one is
// made, while the bytes its upload wrote after the room was read are on disk: those bytes are
// then counted nowhere, and concurrent uploads could overshoot the disk's reserve (e2e
// TestNodeRoomNeverOvershoots found it). Rather than keep commits out for the whole admit call
// (a lock that made admissions of a node run one at a time, ~330 per second), the bytes of
// every commit started meanwhile are taken off the room the control plane says is left after
// this reservation; when that goes below zero, this upload's allowance shrinks by the
// difference and the disk is what limits it.
//
// The room reported also leaves out the disk.Overhead (checksum sidecar, last block) of every
// upload in flight, this one included: the control plane reserves bytes of data only. Each
// upload's overhead is counted before the room is read and until its files are written
// (release, which the caller must call when the upload ends), so no upload's overhead is
// ever in neither the count nor the free space.
func (h *Handler) admit(ctx context.Context, req internalapi.AdmitRequest) (adm internalapi.AdmitResponse, release func(), err error) {
	before := h.commitsStarted.Load()
	bound := req.ContentLength
	if bound < 0 {
		bound = h.store.Room(req.CollectionID) // an unknown length is at most the room
	}
	own := disk.Overhead(bound)
	total := h.overhead.Add(own)
	release = func() { h.overhead.Add(-own) }
	req.Room = max(h.store.Room(req.CollectionID)-total, 0)
	adm, err = h.cp.Admit(ctx, req)
	if err != nil {
		release()
		return adm, func() {}, err
	}
	if uncounted := h.commitsStarted.Load() - before; uncounted > adm.RoomLeft {
		adm.Allowance = max(adm.Allowance-(uncounted-adm.RoomLeft), 0)
		adm.LimitCode = shared.CodeInsufficientStorage
	}
	return adm, release, nil
}

// refuseUnread answers a refusal made before the body was read. A client that asked
// "Expect: 100-continue" (the front door does for all but small bodies of known length, see
// frontdoor.askFirstAbove) has sent nothing: the answer goes at once and the connection is
// closed. Any other client is already sending its body: the answer goes at once too, then the
// body is read on for a moment as after a refusal mid-stream, so that the client's writes are
// not reset before it reads the answer (a Go client sending 64 MiB then reported "broken pipe"
// instead of the node's 503).
func (h *Handler) refuseUnread(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case r.ContentLength == 0:
		h.fail(w, r, err)
	case strings.EqualFold(r.Header.Get("Expect"), "100-continue"):
		w.Header().Set("Connection", "close")
		h.fail(w, r, err)
	default:
		h.refuseAndDrain(w, r, err)
	}
}

// refusedMidStream is a refusal (too large, disk full, malformed) made while the client was
// still sending the body.
type refusedMidStream struct{ err error }

func (e *refusedMidStream) Error() string { return e.err.Error() }
func (e *refusedMidStream) Unwrap() error { return e.err }

// Bounds of the reading refuseAndDrain does after its answer.
const (
	drainFor = 2 * time.Second
	drainMax = 256 << 20
)

// refuseAndDrain answers a refusal while the client is still sending the body, then goes on
// reading (and dropping) the body for a moment before the connection closes. The answer is
// flushed first, so a client that waits for it before sending more hears it at once. net/http closes a
// connection with an unread body at once when the request asked for 100-continue, as the
// front door's do; the peer's TCP stack then answers its next writes with a reset, which can
// destroy the answer before the peer has read it: the front door answered 503 instead of
// 413/507 to about half of the chunked uploads refused mid-stream (found by e2e TestFullDisk).
func (h *Handler) refuseAndDrain(w http.ResponseWriter, r *http.Request, err error) {
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex() // read the body after answering
	w.Header().Set("Connection", "close")
	h.fail(w, r, err)
	if rc.Flush() != nil {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(drainFor))
	_, _ = io.CopyN(io.Discard, r.Body, drainMax)
}

// uncertainError is a failure after which the commit may or may not have been recorded; the
// staged file is left to the reconciler and the upload is not aborted.
type uncertainError struct{ err error }

func (e *uncertainError) Error() string { return e.err.Error() }
func (e *uncertainError) Unwrap() error { return e.err }

func (h *Handler) uploadFailed(w http.ResponseWriter, r *http.Request, collectionID, uploadID string, err error) {
	if _, uncertain := errors.AsType[*uncertainError](err); !uncertain {
		h.abort(r.Context(), uploadID)
	}
	switch {
	case errors.Is(err, errClientGone):
		h.metrics.uploads.WithLabelValues("client_gone").Inc()
		h.log.Info("upload cut short by the client; nothing kept", "collection", collectionID, "upload", uploadID, "err", err)
		// The client is most likely gone, but if it is not it must never see 200 (which
		// net/http would send for an empty answer): Backup Maker trusts the status line.
		w.Header().Set("Connection", "close")
		writeError(w, shared.Errorf(shared.CodeInvalidInput, "%s", errClientGone.Error()))
	case errors.Is(err, errStalled):
		h.metrics.uploads.WithLabelValues("stalled").Inc()
		h.log.Info("upload stalled; nothing kept", "collection", collectionID, "upload", uploadID)
		w.Header().Set("Connection", "close")
		writeErrorStatus(w, http.StatusRequestTimeout, shared.CodeInvalidInput,
			fmt.Sprintf("no data arrived for %s", h.idle))
	default:
		h.metrics.uploads.WithLabelValues(string(shared.ErrorCode(err))).Inc()
		if _, ok := errors.AsType[*refusedMidStream](err); ok {
			h.refuseAndDrain(w, r, err)
			return
		}
		h.fail(w, r, err)
	}
}

// abort releases the upload's lock and reservation now rather than when they expire.
func (h *Handler) abort(ctx context.Context, uploadID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := h.cp.Abort(ctx, uploadID); err != nil {
		h.log.Warn("abort failed; the reservation will expire on its own", "upload", uploadID, "err", err)
	}
}

// receive streams the admitted body to disk, checks it and commits it. On error nothing is
// left on disk, except a staged file whose commit outcome is unknown (uncertainError).
func (h *Handler) receive(w http.ResponseWriter, r *http.Request, collectionID string,
	adm internalapi.AdmitResponse, boundary string, want []digest) (shared.Version, error) {
	limitCode := adm.LimitCode
	if limitCode == "" {
		limitCode = shared.CodeVersionTooLarge
	}
	tooLarge := shared.Errorf(limitCode, "the upload is larger than the %d bytes this collection allows now", adm.Allowance)
	if boundary == "" && r.ContentLength > adm.Allowance {
		return shared.Version{}, tooLarge
	}
	if r.ContentLength == 0 {
		return shared.Version{}, shared.Errorf(shared.CodeEmptyBody, "the request body is empty")
	}

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	body := &bodyReader{r: r.Body, rc: http.NewResponseController(w), idle: h.idle}
	stopKeepAlive := h.keepAlive(ctx, cancel, body.interrupt, adm)
	staged, err := h.stream(ctx, r, body, collectionID, adm, boundary)
	stopKeepAlive()
	if err != nil {
		err = h.streamFailure(ctx, err, body, tooLarge)
		if _, refused := errors.AsType[*shared.Error](err); refused && body.read > 0 && !body.eof && body.err == nil {
			return shared.Version{}, &refusedMidStream{err}
		}
		return shared.Version{}, err
	}

	if err := checkDigests(staged.SHA256, want, r.Trailer); err != nil {
		h.discard(staged)
		return shared.Version{}, err
	}
	// The body is complete and durable: the commit must not depend on the client staying.
	cctx := context.WithoutCancel(r.Context())
	h.commitsStarted.Add(staged.Size) // before the call: its reservation may go at any moment
	res, err := h.cp.Commit(cctx, internalapi.CommitRequest{UploadID: adm.UploadID, Size: staged.Size, SHA256: staged.SHA256})
	if err != nil {
		if admission.Unavailable(err) {
			h.reconciler.Add(staged)
			return shared.Version{}, &uncertainError{shared.Wrap(err, shared.CodeDependencyUnavailable,
				"the upload could not be recorded because the control plane is unavailable; try again")}
		}
		h.discard(staged)
		return shared.Version{}, err
	}
	if err := h.store.Finalize(staged, res.Version.ID); err != nil {
		h.reconciler.Add(staged)
		return shared.Version{}, &uncertainError{fmt.Errorf("finalize upload %s: %w", adm.UploadID, err)}
	}
	for _, old := range res.Rotated {
		if old.CollectionID != "" && old.CollectionID != collectionID {
			h.log.Error("control plane rotated a version of another collection; ignored",
				"collection", collectionID, "rotated", old.ID, "of", old.CollectionID)
			continue
		}
		// Its tombstone stays until the sweeper has removed it durably, so no fsync here.
		if err := h.store.Drop(collectionID, old.ID); err != nil {
			h.log.Error("remove a rotated-out version", "collection", collectionID, "version", old.ID, "err", err)
		}
	}
	return res.Version, nil
}

// stream applies rule 7 to the first bytes and writes the body (or its file part) to disk.
func (h *Handler) stream(ctx context.Context, r *http.Request, body *bodyReader, collectionID string,
	adm internalapi.AdmitResponse, boundary string) (disk.Staged, error) {
	var (
		src    io.Reader = body
		finish func() error
	)
	if boundary != "" {
		var err error
		if src, finish, err = multipartFile(body, boundary); err != nil {
			return disk.Staged{}, err
		}
	}
	br := bufio.NewReaderSize(src, peekSize)
	head, err := br.Peek(peekSize)
	if len(head) == 0 && err == io.EOF {
		return disk.Staged{}, shared.Errorf(shared.CodeEmptyBody, "the request body is empty")
	}
	if err != nil && err != io.EOF {
		return disk.Staged{}, err
	}
	if adm.RequireEncryption && !openPGPStart(head) {
		return disk.Staged{}, shared.Errorf(shared.CodeNotEncrypted,
			"this collection requires encrypted backups: the body must start with an OpenPGP message")
	}
	staged, err := h.store.Write(ctx, collectionID, adm.UploadID, br, adm.Allowance)
	if err != nil {
		return disk.Staged{}, err
	}
	if finish != nil {
		// Read to the end, so that a body cut after the file part is refused too and the
		// trailers become readable.
		if err := finish(); err != nil {
			h.discard(staged)
			return disk.Staged{}, err
		}
	}
	return staged, nil
}

// streamFailure turns a failed transfer into what the client is told.
func (h *Handler) streamFailure(ctx context.Context, err error, body *bodyReader, tooLarge error) error {
	if cause := context.Cause(ctx); cause != nil {
		if _, ok := errors.AsType[*shared.Error](cause); ok {
			return cause // the control plane refused to extend the upload
		}
	}
	if body.err != nil {
		if errors.Is(body.err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("%w: %w", errStalled, body.err)
		}
		return fmt.Errorf("%w: %w", errClientGone, body.err)
	}
	switch {
	case errors.Is(err, disk.ErrTooLarge):
		return tooLarge
	case errors.Is(err, disk.ErrNoSpace):
		return shared.Wrap(err, shared.CodeInsufficientStorage, "the data node ran out of disk space")
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %w", errClientGone, ctx.Err())
	}
	if er, ok := errors.AsType[*malformedError](err); ok {
		return shared.Wrap(er, shared.CodeInvalidInput, "malformed multipart body")
	}
	if _, ok := errors.AsType[*shared.Error](err); ok {
		return err
	}
	return fmt.Errorf("store upload: %w", err)
}

func (h *Handler) discard(st disk.Staged) {
	if err := h.store.Discard(st); err != nil {
		h.log.Error("discard a refused upload", "collection", st.CollectionID, "upload", st.UploadID, "err", err)
	}
}

// keepAlive calls Extend every adm.ExtendEvery while the body streams. A refusal (the
// reservation is gone) cancels the upload; an unreachable control plane does not, since the
// commit will tell. The returned stop waits for the loop to end.
func (h *Handler) keepAlive(ctx context.Context, cancel context.CancelCauseFunc, interrupt func(),
	adm internalapi.AdmitResponse) (stop func()) {
	if adm.ExtendEvery <= 0 {
		return func() {}
	}
	ectx, ecancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(adm.ExtendEvery)
		defer t.Stop()
		for {
			select {
			case <-ectx.Done():
				return
			case <-t.C:
			}
			err := h.cp.Extend(ectx, adm.UploadID)
			if err == nil {
				continue
			}
			if ectx.Err() != nil || admission.Unavailable(err) {
				h.log.Warn("extend failed; upload continues", "upload", adm.UploadID, "err", err)
				continue
			}
			cancel(err)
			interrupt()
			return
		}
	})
	return func() {
		ecancel()
		wg.Wait()
	}
}

// bodyReader reads the request body, pushing the connection's read deadline forward as data
// arrives (no whole-request timeout: a slow but steady upload must finish) and remembering the
// first transport error so a cut body is told apart from a refused one.
type bodyReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
	next time.Time
	err  error
	read int64 // bytes read so far
	eof  bool  // the whole body is in
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if now := time.Now(); now.After(b.next) {
		if err := b.rc.SetReadDeadline(now.Add(b.idle)); err == nil {
			b.next = now.Add(b.idle / 4)
		} else {
			b.next = now.Add(time.Hour) // not supported by this connection; stop trying
		}
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	switch {
	case err == io.EOF:
		b.eof = true
		// The whole body is in: net/http now watches the connection for the client closing,
		// and a deadline firing during the commit would cancel the request's context.
		_ = b.rc.SetReadDeadline(time.Time{})
		b.next = time.Now().Add(time.Hour)
	case err != nil && b.err == nil:
		b.err = err
	}
	return n, err
}

// interrupt makes a blocked Read return now; it is called from the keep-alive goroutine.
func (b *bodyReader) interrupt() { _ = b.rc.SetReadDeadline(time.Now()) }

// malformedError marks an error of the multipart framing, as opposed to the transport.
type malformedError struct{ err error }

func (e *malformedError) Error() string { return e.err.Error() }
func (e *malformedError) Unwrap() error { return e.err }

// partReader marks non-EOF errors of a multipart part as framing errors; when the transport
// failed underneath, bodyReader.err says so and wins.
type partReader struct{ p *multipart.Part }

func (r partReader) Read(b []byte) (int, error) {
	n, err := r.p.Read(b)
	if err != nil && err != io.EOF {
		err = &malformedError{err}
	}
	return n, err
}

// multipartBoundary returns the boundary of a multipart/form-data body, or "" for a raw body
// (any other or no Content-Type: Backup Maker sends none).
func multipartBoundary(contentType string) (string, error) {
	if contentType == "" {
		return "", nil
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" {
		return "", nil
	}
	b := params["boundary"]
	if b == "" || len(b) > 70 {
		return "", shared.Errorf(shared.CodeInvalidInput, "multipart/form-data needs a boundary of 1 to 70 characters")
	}
	return b, nil
}

// multipartFile returns the file part of a multipart/form-data body as a stream, and finish,
// which reads the rest of the body once that stream is consumed. Framing errors are
// *malformedError or INVALID_INPUT; a read error of body may come back as a *malformedError
// too, which is why bodyReader remembers it (see streamFailure).
func multipartFile(body io.Reader, boundary string) (file io.Reader, finish func() error, err error) {
	cw := newCloseWatcher(body, boundary)
	mr := multipart.NewReader(cw, boundary)
	part, err := filePart(mr)
	if err != nil {
		return nil, nil, err
	}
	return partReader{part}, func() error { return finishMultipart(mr, cw, body) }, nil
}

// closeWatcher notes whether the body held the closing delimiter ("--boundary--" at the start
// of a line). multipart.Reader reports a body that ends inside a part's headers as a clean
// io.EOF, the same as a body that ends properly, so finishMultipart asks this instead.
type closeWatcher struct {
	r    io.Reader
	want []byte
	tail []byte // the last len(want)-1 bytes read, for a delimiter split between reads
	seen bool
}

func newCloseWatcher(r io.Reader, boundary string) *closeWatcher {
	want := []byte("\n--" + boundary + "--")
	// A body may start with the delimiter: as if a line ended just before it. Room for the
	// tail and as much again keeps Read from allocating.
	tail := append(make([]byte, 0, 2*len(want)), '\n')
	return &closeWatcher{r: r, want: want, tail: tail}
}

func (c *closeWatcher) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.seen || n == 0 {
		return n, err
	}
	k := len(c.want) - 1
	head := append(c.tail, p[:min(n, k)]...)
	c.seen = bytes.Contains(head, c.want) || bytes.Contains(p[:n], c.want)
	if n >= k {
		c.tail = append(c.tail[:0], p[n-k:n]...)
	} else {
		c.tail = append(c.tail[:0], head[max(len(head)-k, 0):]...)
	}
	return n, err
}

// filePart advances to the part named "file" or, failing that, the first part with a file
// name, whichever comes first: the body streams, so a later "file" field cannot be looked for.
// Parts before it are form fields and are skipped, up to maxSkipped bytes.
func filePart(mr *multipart.Reader) (*multipart.Part, error) {
	var skipped int64
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil, shared.Errorf(shared.CodeInvalidInput, "the multipart body holds no file part (field \"file\")")
		}
		if err != nil {
			return nil, &malformedError{err}
		}
		if p.FormName() == "file" || p.FileName() != "" {
			return p, nil
		}
		n, err := io.Copy(io.Discard, io.LimitReader(p, maxSkipped-skipped+1))
		skipped += n
		if err != nil {
			return nil, &malformedError{err}
		}
		if skipped > maxSkipped {
			return nil, shared.Errorf(shared.CodeInvalidInput, "the form fields before the file part exceed %d bytes", maxSkipped)
		}
	}
}

// finishMultipart reads the parts after the file and the epilogue, so that only a body that
// ends properly is kept.
func finishMultipart(mr *multipart.Reader, cw *closeWatcher, body io.Reader) error {
	var skipped int64
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			if !cw.seen {
				return &malformedError{fmt.Errorf("the body ends before the closing delimiter: %w", io.ErrUnexpectedEOF)}
			}
			break
		}
		if err != nil {
			return &malformedError{err}
		}
		n, err := io.Copy(io.Discard, io.LimitReader(p, maxSkipped-skipped+1))
		skipped += n
		if err != nil {
			return &malformedError{err}
		}
		if skipped > maxSkipped {
			return shared.Errorf(shared.CodeInvalidInput, "the form fields after the file part exceed %d bytes", maxSkipped)
		}
	}
	// An epilogue longer than this is legal but pointless; the body is complete either way
	// and only trailers behind it are missed.
	if _, err := io.Copy(io.Discard, io.LimitReader(body, maxEpilogue)); err != nil {
		return err
	}
	return nil
}

// openPGPStart reports whether head begins an encrypted OpenPGP message: the ASCII armour line,
// or a binary packet header (RFC 9580 §4.2, old or new format) whose tag can start an
// encrypted message — PKESK (1), SKESK (3), symmetrically encrypted data (9), marker (10),
// SEIPD (18) or AEAD (20). Literal, compressed and signature packets are refused: a message
// starting with one of them is not encrypted.
func openPGPStart(head []byte) bool {
	if bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("-----BEGIN PGP MESSAGE-----")) {
		return true
	}
	if len(head) < 2 || head[0]&0x80 == 0 {
		return false
	}
	var tag byte
	if head[0]&0x40 != 0 {
		tag = head[0] & 0x3f
	} else {
		tag = (head[0] >> 2) & 0x0f
	}
	switch tag {
	case 1, 3, 9, 10, 18, 20:
		return true
	}
	return false
}

// digest is a sha256 the client said its body has, and where it said so.
type digest struct {
	source string
	sum    []byte
}

// digestsFrom reads the sha256 a client announces in Digest (RFC 3230, "sha-256=<base64>"),
// Content-Digest (RFC 9530, "sha-256=:<base64>:") or X-Content-SHA256 (hex). Other algorithms
// are ignored; a malformed sha-256 value is refused before any byte is stored.
func digestsFrom(h http.Header) ([]digest, error) {
	var out []digest
	for _, name := range []string{"Digest", "Content-Digest"} {
		for _, v := range h.Values(name) {
			for item := range strings.SplitSeq(v, ",") {
				alg, val, ok := strings.Cut(strings.TrimSpace(item), "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(alg), "sha-256") {
					continue
				}
				val = strings.TrimSpace(val)
				if name == "Content-Digest" {
					val = strings.TrimSuffix(strings.TrimPrefix(val, ":"), ":")
				}
				sum, err := base64.StdEncoding.DecodeString(val)
				if err != nil || len(sum) != 32 {
					return nil, shared.Errorf(shared.CodeInvalidInput, "malformed %s header: want sha-256=<base64 of 32 bytes>", name)
				}
				out = append(out, digest{source: name, sum: sum})
			}
		}
	}
	for _, v := range h.Values("X-Content-SHA256") {
		sum, err := hex.DecodeString(strings.TrimSpace(v))
		if err != nil || len(sum) != 32 {
			return nil, shared.Errorf(shared.CodeInvalidInput, "malformed X-Content-SHA256 header: want 64 hex digits")
		}
		out = append(out, digest{source: "X-Content-SHA256", sum: sum})
	}
	return out, nil
}

// checkDigests compares the stored body's sha256 with what the client announced in headers
// and, for chunked bodies, in trailers (readable only now that the body is fully read).
func checkDigests(gotHex string, want []digest, trailer http.Header) error {
	fromTrailer, err := digestsFrom(trailer)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(gotHex)
	if err != nil {
		return fmt.Errorf("stored sha256 %q: %w", gotHex, err)
	}
	for _, d := range append(want, fromTrailer...) {
		if subtle.ConstantTimeCompare(got, d.sum) != 1 {
			return shared.Errorf(shared.CodeChecksumMismatch,
				"the body's sha256 is %s but %s says %s", gotHex, d.source, hex.EncodeToString(d.sum))
		}
	}
	return nil
}

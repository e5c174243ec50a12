package uploads

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/go-chi/chi/v5"

	"backuprepo/shared"
	"backuprepo/shared/envelope"
	"backuprepo/shared/internalapi"
)

// maxRequestBody bounds an internal request; the largest carries a token and a few ids.
const maxRequestBody = 64 << 10

// Routes mounts the internal API on r. Every route requires a valid node signature; a user
// token alone, or no signature, is 401. Answers are the bare internalapi messages on 200 and
// an internalapi.ErrorBody otherwise.
func (s *Service) Routes(r chi.Router) {
	r.Post(internalapi.PathAdmit, handle(s, s.Admit))
	r.Post(internalapi.PathExtend, handle(s, noAnswer(s.Extend)))
	r.Post(internalapi.PathCommit, handle(s, s.Commit))
	r.Post(internalapi.PathAbort, handle(s, noAnswer(s.Abort)))
	r.Post(internalapi.PathOutcome, handle(s, s.Outcome))
	r.Post(internalapi.PathAbortAll, handle(s, s.AbortAll))
	r.Post(internalapi.PathResolve, handle(s, s.Resolve))
	r.Post(internalapi.PathList, handle(s, s.List))
	r.Post(internalapi.PathDelete, handle(s, s.Delete))
	r.Post(internalapi.PathDeletions, handle(s, s.Deletions))
	r.Post(internalapi.PathDeletionsAck, handle(s, noAnswer(s.AckDeletions)))
	r.Post(internalapi.PathIntegrity, handleUpTo(s, maxIntegrityBody, s.Integrity))
}

// noAnswer adapts a call that answers nothing but success or an error.
func noAnswer[Req any](fn func(context.Context, string, Req) error) func(context.Context, string, Req) (struct{}, error) {
	return func(ctx context.Context, node string, req Req) (struct{}, error) {
		return struct{}{}, fn(ctx, node, req)
	}
}

// handle reads and authenticates an internal request, decodes it, calls fn with the signing
// node's name and writes the answer.
func handle[Req, Resp any](s *Service, fn func(context.Context, string, Req) (Resp, error)) http.HandlerFunc {
	return handleUpTo(s, maxRequestBody, fn)
}

// handleUpTo is handle for a request body of at most limit bytes.
func handleUpTo[Req, Resp any](s *Service, limit int64, fn func(context.Context, string, Req) (Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				s.writeError(w, r, shared.Errorf(shared.CodePayloadTooLarge, "request body is larger than %d bytes", limit))
				return
			}
			s.writeError(w, r, shared.Wrap(err, shared.CodeInvalidInput, "cannot read the request body"))
			return
		}
		node, err := internalapi.Verify(r, s.secret, body, s.now())
		if err != nil {
			if claimed := r.Header.Get(internalapi.HeaderNode); claimed != "" {
				s.log.WarnContext(r.Context(), "internal API request with a bad node signature", "path", r.URL.Path,
					"node", claimed, "remote", r.RemoteAddr, "err", err)
			}
			s.writeError(w, r, shared.Wrap(err, shared.CodeNodeSignatureInvalid, "a valid data node signature is required"))
			return
		}
		var req Req
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			s.writeError(w, r, shared.Wrap(err, shared.CodeInvalidInput, "malformed request body"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
		defer cancel()
		resp, err := fn(ctx, node, req)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		b, err := json.Marshal(resp)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b) // a failed write means the node left; it retries or reconciles
	}
}

// writeError answers with the error's code and its caller-safe message. Failures that are not
// refusals are logged here, at the edge.
func (s *Service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := shared.ErrorCode(err)
	switch code {
	case shared.CodeInternal:
		s.log.ErrorContext(r.Context(), "internal API request failed", "path", r.URL.Path, "err", err)
	case shared.CodeDependencyUnavailable:
		s.log.WarnContext(r.Context(), "internal API dependency unavailable", "path", r.URL.Path, "err", err)
	}
	b, mErr := json.Marshal(internalapi.ErrorBody{Code: code, Message: shared.ErrorMessage(err)})
	if mErr != nil {
		b = []byte(`{"code":"INTERNAL","error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(envelope.Status(code))
	_, _ = w.Write(b)
}
